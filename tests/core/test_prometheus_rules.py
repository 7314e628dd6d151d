"""The Prometheus alert rules name only metrics a running hub exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hub.app import build_hub
from hub.config import Settings

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b(iothub_[a-z_]+)\b")


async def test_every_alert_uses_an_exported_metric(tmp_path: Path, postgres_url: str) -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {
        "IotHubRuleEngineStalled",
        "IotHubComponentDown",
        "IotHubNoActiveHub",
    }
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}"},
        mqtt={"port": 0},
        coap={"enabled": False},
        var_dir=tmp_path,
    )
    # A high-availability hub exports its role too.
    ha = Settings(
        database={"url": postgres_url},
        mqtt={"mode": "external", "servers": "127.0.0.1:1"},
        coap={"enabled": False},
        var_dir=tmp_path / "ha",
        ha={"enabled": True},
    )
    exported = await _exported(settings) | await _exported(ha)
    for rule in rules:
        names = METRIC.findall(rule["expr"])
        assert names, rule["alert"]
        for name in names:
            assert name in exported, f"{rule['alert']} uses {name}, which /metrics does not export"
        assert rule["labels"]["severity"] in {"critical", "warning"}


async def _exported(settings: Settings) -> set[str]:
    """The metric names a hub built from ``settings`` exports once started."""
    hub = build_hub(settings)
    await hub.start()
    try:
        # Make the labelled series exist, as traffic and /readyz would.
        hub.metrics.ingest_rejected.labels("mqtt", "bad_json").inc()
        hub.metrics.ingest_alarms_refused.labels("mqtt", "smoke", "replayed").inc()
        hub.metrics.ingest_messages.labels("mqtt", "smoke").inc()
        hub.metrics.component_up.labels("database").set(1)
        hub.metrics.rules_last_tick.set(1.0)
        hub.metrics.workday_notice_missing.labels("2027").set(1)
        hub.metrics.rules_failures.labels("heat-high").inc()
        return {
            line.split("{")[0].split(" ")[0]
            for line in hub.metrics.render().decode().splitlines()
            if not line.startswith("#")
        }
    finally:
        await hub.stop()
