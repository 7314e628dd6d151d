"""The running hub and the 2027 calendar: /readyz warns and /metrics shows a gauge from 1 December, cases say
when their deadline is estimated, a notice file from the setting makes it official, a bad file stops the start."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.app import build_hub, create_app
from hub.config import Settings
from hub.errors import ConfigError
from provisioning.apikeys import create_key
from tests.alerts.test_cases_kit import make_town
from tests.alerts.test_workday_estimates import NOTICE_2027
from tests.clocks import ManualClock
from tests.core.test_cli import assert_one_line_error, iothub

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
GAUGE = 'iothub_workday_notice_missing{year="2027"} 1.0'


def _settings(database_url: str, tmp_path: Path, notices: list[Path] | None = None) -> Settings:
    return Settings(
        database={"url": database_url},
        mqtt={"port": 0},
        coap={"enabled": False},
        var_dir=tmp_path,
        alerts={"workday_notices": notices or []},
    )


@asynccontextmanager
async def running(
    settings: Settings, clock: ManualClock, *, first: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    hub = build_hub(settings, clock=clock)
    app = create_app(settings, hub)
    async with app.router.lifespan_context(app):
        if first:
            await make_town(hub.db)
        async with hub.db.session() as session:
            name = "ops" if first else "ops-again"
            _, key = await create_key(
                session, name=name, role="operator", places=[], actor="t", channel="system"
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            yield client, {"Authorization": f"Bearer {key}"}


async def _report(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    body = {
        "source": "citizen",
        "category": "citizen_report",
        "place": "T-D-S-C-G-B-U01",
        "description": "lamp",
    }
    made = await client.post("/api/v1/cases", json=body, headers=headers)
    assert made.status_code == 201, made.text
    shown: dict[str, Any] = (await client.get(f"/api/v1/cases/{made.json()['code']}", headers=headers)).json()
    return shown


async def _ready(client: httpx.AsyncClient) -> httpx.Response:
    """/readyz once the rule engine has ticked at the clock's new time (a jump looks like a stall until then)."""
    for _ in range(100):
        ready = await client.get("/readyz")
        if ready.status_code == 200:
            return ready
        await asyncio.sleep(0.05)
    return ready


def _at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(SHANGHAI)


async def test_without_a_2027_notice(database_url: str, tmp_path: Path) -> None:
    clock = ManualClock(dt.datetime(2026, 11, 30, 23, 0, tzinfo=SHANGHAI))
    async with running(_settings(database_url, tmp_path), clock) as (client, headers):
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["warnings"] == []
        assert GAUGE not in (await client.get("/metrics")).text
        # A case whose deadline stays within 2026 rests on the notice: not estimated.
        november = await _report(client, headers)
        assert november["reply_due_estimated"] is False
        assert _at(november["reply_due"]) == dt.datetime(2026, 12, 8, tzinfo=SHANGHAI)

        clock.now = dt.datetime(2026, 12, 1, 0, 0, tzinfo=SHANGHAI)
        ready = await _ready(client)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        [warning] = ready.json()["warnings"]
        assert "2027" in warning and "HUB_ALERTS_WORKDAY_NOTICES" in warning
        assert GAUGE in (await client.get("/metrics")).text

        clock.now = dt.datetime(2026, 12, 28, 10, 0, tzinfo=SHANGHAI)
        case = await _report(client, headers)
        # New Year's Day is a holiday in the estimate too: due at the end of Tue 5 Jan, not Mon 4 Jan.
        assert _at(case["reply_due"]) == dt.datetime(2027, 1, 6, tzinfo=SHANGHAI)
        assert case["reply_due_estimated"] is True
        listed = (await client.get("/api/v1/cases", headers=headers)).json()
        assert [c["reply_due_estimated"] for c in listed] == [True, False]


async def test_with_a_2027_notice_file(database_url: str, tmp_path: Path) -> None:
    notice = tmp_path / "cn_notice_2027.yaml"
    notice.write_text(NOTICE_2027, encoding="utf-8")
    clock = ManualClock(dt.datetime(2026, 12, 28, 10, 0, tzinfo=SHANGHAI))
    async with running(_settings(database_url, tmp_path, [notice]), clock) as (client, headers):
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["warnings"] == []
        assert GAUGE not in (await client.get("/metrics")).text
        case = await _report(client, headers)
        assert _at(case["reply_due"]) == dt.datetime(2027, 1, 6, tzinfo=SHANGHAI)
        assert case["reply_due_estimated"] is False


async def test_a_notice_added_later_firms_up_the_estimated_deadlines(
    database_url: str, tmp_path: Path
) -> None:
    clock = ManualClock(dt.datetime(2026, 12, 28, 10, 0, tzinfo=SHANGHAI))
    async with running(_settings(database_url, tmp_path), clock) as (client, headers):
        case = await _report(client, headers)
        assert case["reply_due_estimated"] is True and _at(case["reply_due"]) == dt.datetime(
            2027, 1, 6, tzinfo=SHANGHAI
        )
    # The operator adds the 2027 notice (here one that also gives Monday 4 January off) and restarts the hub.
    notice = tmp_path / "cn_notice_2027.yaml"
    notice.write_text(NOTICE_2027.replace("2027-01-03]", "2027-01-03, 2027-01-04]"), encoding="utf-8")
    clock.now = dt.datetime(2026, 12, 29, 9, 0, tzinfo=SHANGHAI)
    async with running(_settings(database_url, tmp_path, [notice]), clock, first=False) as (client, headers):
        shown = (await client.get(f"/api/v1/cases/{case['code']}", headers=headers)).json()
        assert shown["reply_due_estimated"] is False
        assert _at(shown["reply_due"]) == dt.datetime(2027, 1, 7, tzinfo=SHANGHAI)
        [line] = [e for e in shown["timeline"] if e["kind"] == "deadline"]
        assert line["actor"] == "system" and "notice" in line["note"]


@pytest.mark.parametrize(
    ("write", "needle"),
    [
        (lambda p: p.write_text("years: [unclosed", encoding="utf-8"), "not valid YAML"),
        (lambda p: None, "cannot read"),
        (
            lambda p: p.write_text(
                "version: 1\nyears:\n  2027:\n    festivals:\n"
                "      - {zh: 元旦, en: New Year's Day, rest_days: [2027-01-01], makeup_workdays: [2027-01-04]}\n",
                encoding="utf-8",
            ),
            "not a weekend day",
        ),
    ],
)
def test_a_bad_notice_file_stops_the_start(tmp_path: Path, write: Callable[[Path], Any], needle: str) -> None:
    bad = tmp_path / "notice.yaml"
    write(bad)
    with pytest.raises(ConfigError) as caught:
        build_hub(_settings(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}", tmp_path, [bad]))
    assert caught.value.setting == "HUB_ALERTS_WORKDAY_NOTICES" and needle in caught.value.message


def test_iothub_serve_names_the_setting_of_a_bad_notice_file(tmp_path: Path) -> None:
    bad = tmp_path / "notice.yaml"
    bad.write_text("version: 1\nyears: {2027: {festivals: []}}\n", encoding="utf-8")
    env = {
        "HUB_ALERTS_WORKDAY_NOTICES": str(bad),
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'h.db'}",
        "HUB_MQTT_PORT": "0",
        "HUB_COAP_ENABLED": "false",
        "HUB_WEB_PORT": "0",
    }
    assert_one_line_error(
        iothub("serve", cwd=tmp_path, env=env, timeout=30), "HUB_ALERTS_WORKDAY_NOTICES", str(bad)
    )
