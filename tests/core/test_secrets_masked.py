"""Secrets stay out of output: every secret setting and a device's credentials, set to recognisable values, are
found in no output of the CLI, of `iothub serve` and of the demo at debug level, nor in /readyz, error details or
the audit trail — except where a secret is handed over on purpose, once (a new key, a device's new credentials).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.config import DatabaseSettings
from hub.db import Database
from tests.core.served_hub import iothub_env, run_iothub, served_hub
from tests.fleet import Street, build_street
from tests.servers.postgres import PostgresDatabase

pytestmark = pytest.mark.timeout(300)

DB_PASSWORD = "S3cret-db-password-1"
SETTINGS_SECRETS = {
    "HUB_SECRET_KEY": "S3cret-hub-key-0002",
    "HUB_TWILIO_AUTH_TOKEN": "S3cret-twilio-token-3",
    "HUB_MQTT_PASSWORD": "S3cret-mqtt-password-4",
    "HUB_INFLUX_PASSWORD": "S3cret-influx-password-5",
    "HUB_INFLUX_TOKEN": "S3cret-influx-token-6",
    "HUB_GRAFANA_API_KEY": "S3cret-grafana-key-7",
    "HUB_CENTRAL_SECRET": "S3cret-central-secret-8",
}


def closed_port() -> int:
    """A loopback port nothing listens on (a failing connection)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def secret_env(url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """Every secret setting set, debug logging, and peers that do not answer."""
    dead = closed_port()
    env = iothub_env(url, var_dir, HUB_LOG_LEVEL="debug", HUB_COAP_ENABLED="true", HUB_COAP_PORT="0")
    env["HUB_DATABASE_ECHO"] = "true"  # SQLAlchemy prints every statement and its parameters
    env.update(SETTINGS_SECRETS)
    env.update(
        {
            "HUB_TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "HUB_TWILIO_FROM_NUMBER": "+15005550006",
            "HUB_TWILIO_BASE_URL": f"http://127.0.0.1:{dead}",
            "HUB_INFLUX_USERNAME": "hubuser",
            "HUB_GRAFANA_URL": f"http://127.0.0.1:{dead}",
            "HUB_CENTRAL_URL": f"http://127.0.0.1:{dead}",
        }
    )
    env.update(extra)
    return env


def strings(data: Any) -> list[str]:
    """Every secret-looking string inside ``data`` (keys naming a password, PSK or secret)."""
    if isinstance(data, dict):
        found = []
        for key, value in data.items():
            if isinstance(value, str) and any(w in key for w in ("password", "psk", "secret")):
                found.append(value)
            found += strings(value)
        return found
    return [s for item in data for s in strings(item)] if isinstance(data, list) else []


class Outputs:
    """Everything the hub printed or answered, by where it came from."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, label: str, text: str) -> None:
        self.texts[label] = self.texts.get(label, "") + text

    def run(self, label: str, *args: str, env: dict[str, str], cwd: Path, ok: bool = True) -> str:
        """Run `iothub ARGS`, keep its stderr; return its stdout (kept too unless it hands a secret over)."""
        done = run_iothub(*args, env=env, cwd=cwd)
        assert (done.returncode == 0) == ok, f"{args}: {done.stdout}\n{done.stderr}"
        self.add(f"{label} (stderr)", done.stderr)
        return done.stdout

    def leaks(self, secrets: dict[str, str]) -> list[str]:
        return [
            f"{what} ({value!r}) in {label}"
            for label, text in self.texts.items()
            for what, value in secrets.items()
            if value and value in text
        ]


def test_no_secret_in_any_output(tmp_path: Path) -> None:
    out = Outputs()
    with PostgresDatabase("iothub_secret") as pg:
        url = pg.asyncpg_url.replace("://postgres@", f"://postgres:{DB_PASSWORD}@")
        env = secret_env(url, tmp_path / "var", HUB_TELEMETRY_BACKEND="influxdb")
        env["HUB_INFLUX_URL"] = (
            f"http://hubuser:{SETTINGS_SECRETS['HUB_INFLUX_PASSWORD']}@127.0.0.1:{closed_port()}"
        )
        handed: dict[str, str] = {}
        out.add("config show", out.run("config show", "config", "show", env=env, cwd=tmp_path))
        assert "postgres:***@" in out.texts["config show"]
        out.add("db upgrade", out.run("db upgrade", "db", "upgrade", env=env, cwd=tmp_path))
        created = out.run(
            "keys create", "keys", "create", "--role", "admin", "--name", "ops", env=env, cwd=tmp_path
        )
        admin = next(w for w in created.split() if w.startswith("hub_"))
        handed["api key"] = admin.split("_", 2)[2]
        out.add("keys list", out.run("keys list", "keys", "list", env=env, cwd=tmp_path))
        street = asyncio.run(make_street(url))
        for serial, transport in (("SEC-MQTT-1", "mqtt"), ("SEC-COAP-1", "coap")):
            args = ("devices", "enroll", serial, "--kind", "smoke", "--transport", transport)
            enrolled = out.run("enroll", *args, "--household", street.households[0], env=env, cwd=tmp_path)
            handed |= {f"{serial} secret {n}": s for n, s in enumerate(strings(json.loads(enrolled)))}
            out.add("devices show", out.run("show", "devices", "show", serial, env=env, cwd=tmp_path))
        rotated = out.run("rotate", "devices", "rotate", "SEC-MQTT-1", env=env, cwd=tmp_path)
        handed |= {f"rotated secret {n}": s for n, s in enumerate(strings(json.loads(rotated)))}
        out.add("devices list", out.run("list", "devices", "list", env=env, cwd=tmp_path))
        export = tmp_path / "mosquitto"
        out.add(
            "mosquitto",
            out.run("mosquitto", "mosquitto", "export", "--out", str(export), env=env, cwd=tmp_path),
        )
        for file in export.iterdir():
            out.add(f"mosquitto file {file.name}", file.read_text(errors="replace"))
        dead_db = f"postgresql+asyncpg://postgres:{DB_PASSWORD}@127.0.0.1:{closed_port()}/iothub"
        out.run(
            "failing db", "db", "upgrade", env=env | {"HUB_DATABASE_URL": dead_db}, cwd=tmp_path, ok=False
        )
        assert "***" in out.texts["failing db (stderr)"]
        external = {"HUB_MQTT_MODE": "external", "HUB_MQTT_PORT": str(closed_port())}
        handed |= serve(out, env | external, tmp_path, admin, street.households[1])
        fleet = demo(out, env, tmp_path)
        handed |= {f"demo device secret {n}": s for n, s in enumerate(strings(fleet))}
    secrets = {name: value for name, value in SETTINGS_SECRETS.items()} | {"database password": DB_PASSWORD}
    assert len(handed) >= 6 and len(fleet) > 10, handed
    leaks = out.leaks(secrets | handed)
    assert not leaks, "\n".join(leaks)


async def make_street(url: str) -> Street:
    """A street to enroll into (set-up, not under test: made straight in the database)."""
    db = Database(DatabaseSettings(url=url))
    await db.start(migrate=False)
    try:
        return await build_street(db, households=2, prefix="SEC")
    finally:
        await db.stop()


def serve(out: Outputs, env: dict[str, str], cwd: Path, admin: str, household: str) -> dict[str, str]:
    """`iothub serve` against peers that do not answer: its log, /readyz, an error, the audit trail."""
    (cwd / "serve").mkdir()
    with served_hub(env, cwd / "serve") as hub:
        headers = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=hub.url, headers=headers, timeout=30) as http:
            deadline = time.monotonic() + 20
            ready = http.get("/readyz")
            while "refused" not in ready.text.lower() and time.monotonic() < deadline:
                time.sleep(0.5)  # the influx and MQTT connections have failed at least once
                ready = http.get("/readyz")
            out.add("serve /readyz", ready.text)
            enrolled = http.post(
                "/api/v1/devices", json={"serial": "SEC-API-1", "kind": "smoke", "household": household}
            )
            assert enrolled.status_code == 201, enrolled.text
            handed = {f"API secret {n}": v for n, v in enumerate(strings(enrolled.json()))}
            out.add("serve rotate-unknown", http.post("/api/v1/devices/999999/rotate").text)
            out.add(
                "serve bad key",
                http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {admin}x"}).text,
            )
            out.add("serve audit", http.get("/api/v1/audit", params={"limit": 1000}).text)
        out.add("serve stdout", "".join(hub.stdout_lines))
    out.add("serve log", hub.log())
    return handed


def demo(out: Outputs, env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """`iothub demo` at debug level until its fleet is connected, then stopped; returns its fleet file."""
    var = cwd / "demo"
    small = {
        "HUB_SIMULATE_COMMUNITIES": "1",
        "HUB_SIMULATE_GRIDS_PER_COMMUNITY": "1",
        "HUB_SIMULATE_RATE": "20",
    }
    err = (cwd / "demo.stderr").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--var-dir", str(var)],
        env=env | small | {"HUB_WEB_PORT": "0", "HUB_MQTT_PORT": "0"},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = ""
        while "HTTP on" not in line:
            line = proc.stdout.readline()
            assert line, (cwd / "demo.stderr").read_text()[-3000:]
            out.add("demo stdout", line)
        url = line.split("HTTP on ", 1)[1].strip()
        deadline = time.monotonic() + 30
        ready = httpx.get(f"{url}/readyz", timeout=10)
        while " 0 connected" in ready.text or ready.status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.5)
            ready = httpx.get(f"{url}/readyz", timeout=10)
        out.add("demo /readyz", ready.text)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        out.add("demo stdout", rest)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        err.close()
    out.add("demo log", (cwd / "demo.stderr").read_text(errors="replace"))
    fleet: list[dict[str, Any]] = json.loads((var / "fleet.json").read_text())
    return fleet


def test_mask_is_installed_only_by_the_cli() -> None:
    """No import-time side effect: importing the hub leaves logging alone."""
    code = "import logging, hub.app, hub.cli, hub.logmask; print(sum(len(h.filters) for h in logging.getLogger().handlers))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True
    )
    assert done.stdout.strip() == "0"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "Connecting to: mqtt://DEMO-U01-SM:u5ocQiExwX-9QkZzHx_JGA@127.0.0.1:1883/",
            "u5ocQiExwX-9QkZzHx_JGA",
        ),
        (
            "ConnectPayload(client_id=SM-1, username=SM-1, password=pzR0E8QMaPH2ujrS6EPc4g)",
            "pzR0E8QMaPH2ujrS6EPc4g",
        ),
        ("{'psk_hex': '00112233445566778899aabbccddeeff'}", "00112233445566778899aabbccddeeff"),
        ('{"mqtt_password": "X75Evn8gd1SrtYX6fnq6dg"}', "X75Evn8gd1SrtYX6fnq6dg"),
        ("POST /write?db=iothub&u=admin&p=influx-pw-1", "influx-pw-1"),
        (
            "Authorization: Bearer hub_0123456789ab_Zx7mi2d3VJ1BwqMrFbb4oZUdTGOy8",
            "Zx7mi2d3VJ1BwqMrFbb4oZUdTGOy8",
        ),
        ("unknown key hub_0123456789ab_Zx7mi2d3VJ1BwqMrFbb4", "Zx7mi2d3VJ1BwqMrFbb4"),
        ("token rejected: S3cret-influx-token-6", "S3cret-influx-token-6"),
        ("postgresql+asyncpg://u:p%40ss%2Fword@db/x", "p%40ss%2Fword"),
    ],
)
def test_masker_patterns_and_values(text: str, secret: str) -> None:
    from hub.logmask import Masker

    shown = Masker(["S3cret-influx-token-6"])(text)
    assert secret not in shown and "***" in shown, shown


def test_mask_filter_covers_arguments_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    from hub.logmask import Masker, install_mask

    logger = logging.getLogger("test.mask")
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        install_mask(Masker(["S3cret-central-secret-8"]), logger)
        logger.debug("pushing with %s", "S3cret-central-secret-8")
        try:
            raise ConnectionError("mqtt://hub:S3cret-mqtt-password-4@broker:8883 refused")
        except ConnectionError:
            logger.exception("connect failed")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "S3cret" not in err and err.count("***") >= 2 and "Traceback" in err, err
