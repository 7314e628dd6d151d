"""The IoT device-management and alerting hub."""

__version__ = "0.1.0"
