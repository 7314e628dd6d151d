"""Every Grafana panel's InfluxQL runs against a real InfluxDB holding readings written by the hub's store."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from hub.telemetry import InfluxStore, InfluxStoreConfig, TelemetryPoint
from tests.servers.influxdb import InfluxServer

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "grafana" / "dashboards").glob("*.json"))


def _queries(path: Path) -> list[tuple[str, str]]:
    board: dict[str, Any] = json.loads(path.read_text())
    return [
        (panel["title"], target["query"]) for panel in board["panels"] for target in panel.get("targets", [])
    ]


def _as_grafana_would(query: str) -> str:
    # Grafana fills these macros before sending the query.
    return query.replace("$timeFilter", "time > now() - 1h").replace("$__interval", "1m")


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
async def test_every_panel_query_answers_with_data(
    path: Path, influxdb: InfluxServer, influx_database: str, tmp_path: Path
) -> None:
    store = InfluxStore(
        InfluxStoreConfig(url=influxdb.url, database=influx_database, spool_dir=tmp_path / "spool")
    )
    await store.start()
    now = time.time()
    for n, kind in enumerate(("smoke", "door", "bodycam", "panic_button")):
        store.write(TelemetryPoint(f"D-{n}", kind, now - 60, {"battery": 50 + n}))
        store.write(TelemetryPoint(f"D-{n}", kind, now - 30, {"battery": 40 + n}))
    await store.close()
    queries = _queries(path)
    assert queries, f"{path.name} has no panel queries"
    for title, query in queries:
        assert not re.search(r"\$(?!timeFilter|__interval)\w+", query), f"{title}: unknown macro in {query}"
        answer = influxdb.query(_as_grafana_would(query), influx_database)
        result = answer["results"][0]
        assert "error" not in result, f"{title}: {result.get('error')}"
        series = result.get("series", [])
        values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
        assert values, f"{title}: no data for {query}"
