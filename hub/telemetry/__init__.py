"""Telemetry stores: the Protocol, InfluxDB (production) and SQLite (embedded default)."""

from __future__ import annotations

from hub.telemetry.base import Sample, StoreStats, TelemetryPoint, TelemetryStore, Value
from hub.telemetry.influx import InfluxStore, InfluxStoreConfig
from hub.telemetry.lineproto import LineEncoder, encode_points
from hub.telemetry.sqlite import SQLiteStore, SQLiteStoreConfig

__all__ = [
    "InfluxStore",
    "InfluxStoreConfig",
    "LineEncoder",
    "SQLiteStore",
    "SQLiteStoreConfig",
    "Sample",
    "StoreStats",
    "TelemetryPoint",
    "TelemetryStore",
    "Value",
    "encode_points",
]
