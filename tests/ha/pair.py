"""Two ``iothub serve`` processes as active and standby on one PostgreSQL and a broker cluster (tests and bench).

``HaSite`` holds what both share (database, brokers, InfluxDB, Prism); ``HubNode`` is one process that can
be asked (``/readyz``, ``/metrics``), killed with SIGKILL, paused with SIGSTOP. ``build_site`` makes the
street: a building per panic button with its leader, a building of telemetry sensors, silent sensors with
a short inactivity rule, and a quick escalation policy for panic cases.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from alerts.escalation import save_policy
from alerts.rulestore import save_rule
from drivers import DRIVERS
from hub.db import Database
from provisioning.places import PlaceData, create_place
from provisioning.responders import ResponderData, create_responder
from tests.fleet import TEST_SECRET_KEY, enroll
from tests.servers._process import ManagedProcess, free_port

__all__ = ["HaSite", "HubNode", "Site", "build_site", "stored_seqs"]

SID, TOKEN = "AC" + "0123456789abcdef" * 2, "ha-test-auth-token"
_COUNTER = re.compile(r'^iothub_ingest_messages_total\{kind="[^"]+",transport="mqtt"\} ([0-9.e+]+)$', re.M)


@dataclass(frozen=True)
class HaSite:
    """What both hubs share, as HUB_* settings."""

    database_url: str
    servers: str
    influx_url: str
    influx_database: str
    prism_url: str
    lease: float = 3.0
    renew: float = 1.0

    def env(self, node: str, root: Path, port: int) -> dict[str, str]:
        """The environment of one hub process (and nothing else of HUB_*)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        return base | {
            "HUB_DATABASE_URL": self.database_url,
            "HUB_SECRET_KEY": TEST_SECRET_KEY,
            "HUB_VAR_DIR": str(root),
            "HUB_WEB_PORT": str(port),
            "HUB_COAP_ENABLED": "false",
            "HUB_MQTT_MODE": "external",
            "HUB_MQTT_SERVERS": self.servers,
            "HUB_MQTT_CLIENT_ID": "iothub-ha",  # one persistent session, whichever node holds the lease
            "HUB_HA_ENABLED": "true",
            "HUB_HA_NODE": node,
            "HUB_HA_LEASE": str(self.lease),
            "HUB_HA_RENEW": str(self.renew),
            "HUB_TELEMETRY_BACKEND": "influxdb",
            "HUB_INFLUX_URL": self.influx_url,
            "HUB_INFLUX_DATABASE": self.influx_database,
            "HUB_INFLUX_SPOOL_DIR": str(root / "spool"),
            "HUB_INFLUX_FLUSH_INTERVAL": "0.2",
            "HUB_TWILIO_ACCOUNT_SID": SID,
            "HUB_TWILIO_AUTH_TOKEN": TOKEN,
            "HUB_TWILIO_FROM_NUMBER": "+15005550006",
            "HUB_TWILIO_BASE_URL": self.prism_url,
            # Every step its own SMS (no bundling), so each can be counted.
            "HUB_TWILIO_POLICY": '{"bundle_window_s": 0}',
        }


class HubNode:
    """One hub process of the pair."""

    def __init__(self, name: str, site: HaSite, root: Path) -> None:
        self.name = name
        self.root = root
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "hub", "serve", "--env-file", str(root / "none.env")]
        self.process = ManagedProcess(
            f"hub-{name}", argv, cwd=root, log_path=root / "hub.log", env=site.env(name, root, self.port)
        )
        self.exit_status: int | None = None

    def start(self) -> None:
        """Start the process (it campaigns for the lease in the background)."""
        self.exit_status = None
        self.process.start()

    def status(self) -> dict[str, Any] | None:
        """``/readyz`` as JSON, or None when it does not answer."""
        try:
            return dict(httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).json())
        except (httpx.HTTPError, ValueError):
            return None

    def role(self) -> str | None:
        """``active``, ``taking over``, ``standby`` or None (not answering)."""
        status = self.status()
        return None if status is None else str(status.get("ha", {}).get("role"))

    def ingested(self) -> float:
        """Uplinks this process accepted from MQTT (its /metrics), or -1 when it does not answer."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return -1.0
        return sum(float(v) for v in _COUNTER.findall(text))

    def kill(self) -> None:
        """SIGKILL: the process dies with no goodbye."""
        pid = self.process.pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        self.stop()

    def signal(self, sig: signal.Signals) -> None:
        """Send a signal (SIGSTOP, SIGCONT)."""
        pid = self.process.pid
        if pid is not None and self.exited() is None:
            os.kill(pid, sig)

    def exited(self) -> int | None:
        """The exit status once the process has ended by itself."""
        status = self.process.returncode
        if status is not None:
            self.exit_status = status
        return self.exit_status

    def stop(self) -> None:
        """SIGTERM (then SIGKILL); keeps the exit status."""
        self.exited()
        self.process.stop()

    def log_tail(self) -> str:
        """The end of the hub's log."""
        return self.process.log_tail()


@dataclass
class Site:
    """Serials made by ``build_site``."""

    buttons: list[str] = field(default_factory=list)
    smoke: list[str] = field(default_factory=list)
    silent: list[str] = field(default_factory=list)
    leaders: dict[str, str] = field(default_factory=dict)  # button serial -> its building leader's phone


async def _place(db: Database, code: str, level: str, parent: str | None) -> None:
    async with db.session() as session:
        data = PlaceData(code=code, level=level, name=code, parent=parent)
        await create_place(session, data, actor="test", channel="cli")


async def build_site(db: Database, *, buttons: int, smoke: int, silent: int, silent_after: float) -> Site:
    """The street (see the module doc); ``silent`` sensors raise "silent" after ``silent_after`` s without uplink."""
    site, parent = Site(), None
    for level in ("district", "street", "community", "grid"):
        await _place(db, f"HA-{level}", level, parent)
        parent = f"HA-{level}"
    for n in range(buttons + 1):
        building, home = f"HA-B{n:03d}", f"HA-B{n:03d}-H"
        await _place(db, building, "building", parent)
        await _place(db, home, "household", building)
        if n == buttons:  # the last building holds the sensors
            for k in range(smoke):
                site.smoke.append((await enroll(db, f"HS-{k:03d}", "smoke", home)).device.serial)
            break
        phone = f"+86139{n:08d}"
        async with db.session() as session:
            data = ResponderData(name=f"leader {n}", phone=phone, role="building_leader", places=[building])
            await create_responder(session, data, actor="test", channel="cli")
        serial = (await enroll(db, f"HP-{n:03d}", "panic_button", home)).device.serial
        site.buttons.append(serial)
        site.leaders[serial] = phone
    for k in range(silent):  # each in a building of its own: their alarms are separate cases
        await _place(db, f"HA-Q{k:02d}", "building", parent)
        await _place(db, f"HA-Q{k:02d}-H", "household", f"HA-Q{k:02d}")
        site.silent.append((await enroll(db, f"HQ-{k:02d}", "smoke", f"HA-Q{k:02d}-H")).device.serial)
    now = dt.datetime.now(dt.UTC)
    async with db.session() as session:
        # Three SMS to the building leader, two seconds apart: steps fall due across a takeover.
        steps = [{"role": "building_leader", "channel": "sms", "wait_s": 2}] * 2
        steps.append({"role": "building_leader", "channel": "sms", "wait_s": 600})
        await save_policy(
            session,
            {"name": "ha-panic", "category": "panic", "steps": steps},
            actor="test",
            channel="cli",
            now=now,
        )
        for serial in site.silent:
            body = {
                "name": "silent",
                "type": "inactivity",
                "device": serial,
                "interval_s": silent_after,
                "severity": "major",
                "category": "fault",
            }
            await save_rule(session, body, DRIVERS, actor="test", channel="cli", now=now)
    return site


def stored_seqs(influx_url: str, database: str, base: int) -> dict[str, set[int]]:
    """Per smoke sensor, the sequence numbers InfluxDB holds (an uplink n is stamped ``base + n`` seconds)."""
    query = 'SELECT "battery" FROM "smoke" GROUP BY "device_id"'
    params = {"db": database, "q": query, "epoch": "s"}
    body = httpx.post(f"{influx_url}/query", params=params, timeout=60).json()
    out: dict[str, set[int]] = {}
    for series in body["results"][0].get("series", []):
        out[series["tags"]["device_id"]] = {int(row[0]) - base for row in series["values"]}
    return out


def wait_for(check: Any, what: str, timeout: float) -> float:
    """Poll ``check`` every 20 ms until truthy; return when (time.time()); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.time()
