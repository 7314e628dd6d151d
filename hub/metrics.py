"""Prometheus metrics held per app (its own registry, no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["HubMetrics"]


class HubMetrics:
    """Every metric the hub exports; one instance per app, passed to the components."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge("iothub_info", "Hub version", ["version"], registry=r)
        self.component_up = Gauge(
            "iothub_component_up", "1 when a component is healthy", ["component"], registry=r
        )
        self.ingest_messages = Counter(
            "iothub_ingest_messages", "Uplinks accepted", ["transport", "kind"], registry=r
        )
        self.ingest_rejected = Counter(
            "iothub_ingest_rejected", "Uplinks refused, by reason", ["transport", "reason"], registry=r
        )
        self.ingest_alarms_refused = Counter(
            "iothub_ingest_alarms_refused",
            "Refused uplinks that carried an alarm or emergency event, by reason",
            ["transport", "kind", "reason"],
            registry=r,
        )
        self.mqtt_connections = Gauge(
            "iothub_mqtt_connections", "Open TCP connections to the embedded MQTT broker", registry=r
        )
        self.mqtt_connections_limit = Gauge(
            "iothub_mqtt_connections_limit", "The embedded broker's HUB_MQTT_MAX_CONNECTIONS", registry=r
        )
        self.mqtt_closed = Counter(
            "iothub_mqtt_closed",
            "Connections the embedded MQTT broker refused or closed, by reason",
            ["reason"],
            registry=r,
        )
        self.http_requests = Counter(
            "iothub_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "iothub_http_request_seconds", "HTTP request duration", ["route"], registry=r
        )

        self.rules = Gauge(
            "iothub_rules", "Rule engine figures (readings, firing, deadman lag, ...)", ["stat"], registry=r
        )
        self.rules_last_tick = Gauge(
            "iothub_rules_last_tick_timestamp_seconds",
            "When the rule engine last ticked without failing",
            registry=r,
        )
        self.rules_failures = Counter(
            "iothub_rules_evaluation_failures",
            "Rule evaluations that raised (one rule for one device or household), by rule",
            ["rule"],
            registry=r,
        )
        self.rules_failed_ticks = Counter(
            "iothub_rules_failed_ticks", "Engine ticks that raised or had a failed evaluation", registry=r
        )

        self.workday_notice_missing = Gauge(
            "iothub_workday_notice_missing",
            "1 for a year whose working-day deadlines are estimated now (no State Council notice on file)",
            ["year"],
            registry=r,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
