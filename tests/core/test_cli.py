"""The `iothub` command: bad settings end in one line and exit status 2; the demo starts and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def iothub(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m hub ARGS` with only the given HUB_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        check=False,
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, one line on stderr naming what is wrong, no traceback."""
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port held by a listening socket for the test's duration."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_bad_database_url(tmp_path: Path) -> None:
    done = iothub("config", "show", cwd=tmp_path, env={"HUB_DATABASE_URL": "nonsense://x"})
    assert_one_line_error(done, "HUB_DATABASE_URL", "nonsense")


def test_bad_value_from_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HUB_WEB_PORT=seventy\n")
    done = iothub("config", "show", cwd=tmp_path)
    assert_one_line_error(done, "HUB_WEB_PORT")


@pytest.mark.parametrize("kind", ["directory", "not-utf8"])
def test_unreadable_env_file(tmp_path: Path, kind: str) -> None:
    env_file = tmp_path / ".env"
    if kind == "directory":
        env_file.mkdir()
    else:
        env_file.write_bytes(b"HUB_MODE=\xff\xfe\xfa\n")
    done = iothub("config", "show", cwd=tmp_path)
    assert_one_line_error(done, ".env", "cannot read")


def test_placeholder_secret_refused_in_production(tmp_path: Path) -> None:
    done = iothub(
        "config", "show", cwd=tmp_path, env={"HUB_MODE": "production", "HUB_SECRET_KEY": "changethis"}
    )
    assert_one_line_error(done, "HUB_SECRET_KEY", "placeholder")


def test_web_port_in_use(tmp_path: Path, busy_port: int) -> None:
    env = {"HUB_WEB_PORT": str(busy_port), "HUB_MQTT_PORT": "0", "HUB_VAR_DIR": str(tmp_path)}
    done = iothub("serve", cwd=tmp_path, env=env)
    assert_one_line_error(done, "HUB_WEB_PORT", str(busy_port), "in use")


def test_mqtt_port_in_use_without_fallback(tmp_path: Path, busy_port: int) -> None:
    env = {
        "HUB_WEB_PORT": "0",
        "HUB_MQTT_PORT": str(busy_port),
        "HUB_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/h.db",
    }
    done = iothub("serve", cwd=tmp_path, env=env)
    assert_one_line_error(done, "HUB_MQTT_PORT", "in use")


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    env = {"HUB_TWILIO_AUTH_TOKEN": "supersecret-token", "HUB_DATABASE_URL": "postgresql+asyncpg://h/db"}
    done = iothub("config", "show", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert "supersecret-token" not in done.stdout
    assert shown["twilio"]["auth_token"] == "**********"
    assert shown["database"]["url"] == "postgresql+asyncpg://h/db"


def test_db_upgrade_then_version(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    done = iothub("db", "upgrade", cwd=tmp_path, env={"HUB_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert "upgraded to head" in done.stdout
    assert (tmp_path / "x.db").exists()
    assert iothub("version", cwd=tmp_path).stdout.strip() == "0.1.0"


def test_demo_starts_on_a_busy_mqtt_port_and_stops_cleanly(tmp_path: Path, busy_port: int) -> None:
    """The demo takes a free port when 1883 (here: a busy port) is taken, is ready, and Ctrl-C stops it cleanly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        {
            "HUB_MQTT_PORT": str(busy_port),
            "HUB_WEB_PORT": "0",
            "HUB_COAP_PORT": "0",
            "PYTHONWARNINGS": "default",
        }
    )
    # A small simulated street keeps the start quick; the fleet must still connect and publish.
    env.update(
        {"HUB_SIMULATE_COMMUNITIES": "1", "HUB_SIMULATE_GRIDS_PER_COMMUNITY": "1", "HUB_SIMULATE_RATE": "20"}
    )
    # stderr goes to a file: a pipe nobody reads would fill up and stall the hub.
    err_file = (tmp_path / "stderr.txt").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", "-m", "hub", "demo", "--var-dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=err_file,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: dict[str, str] = {}
        while "HTTP" not in lines or "mqtt" not in lines:
            line = proc.stdout.readline()
            assert line, f"demo ended early: {(tmp_path / 'stderr.txt').read_text()}"
            if "HTTP on" in line:
                lines["HTTP"] = line.split("HTTP on ", 1)[1].strip()
            elif "mqtt on" in line:
                lines["mqtt"] = line.split(" on ", 1)[1].strip()
        assert not lines["mqtt"].endswith(f":{busy_port}")
        ready = httpx.get(lines["HTTP"] + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert all(c["ok"] for c in ready.json()["components"].values())
        assert {"database", "telemetry", "ingest", "coap", "mqtt", "demo-fleet"} <= set(
            ready.json()["components"]
        )
        assert ready.json()["components"]["demo-fleet"]["detail"].startswith("25 connected, 0 refused")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        err_file.close()
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, err
    assert "iothub: stopped" in out
    for bad in ("Task was destroyed", "Unclosed", "ResourceWarning", "Traceback", "never awaited"):
        assert bad not in err, err


def test_the_demo_stops_while_a_console_watches_the_live_stream(tmp_path: Path) -> None:
    """Ctrl-C with an open /api/v1/events stream: the hub still stops (it used to wait for the watcher forever)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({"HUB_MQTT_PORT": "0", "HUB_WEB_PORT": "0", "HUB_COAP_PORT": "0", "HUB_SHUTDOWN_TIMEOUT": "2"})
    env.update({"HUB_SIMULATE_COMMUNITIES": "1", "HUB_SIMULATE_GRIDS_PER_COMMUNITY": "1"})
    err_file = (tmp_path / "stderr.txt").open("w+")
    var = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "demo", "--var-dir", str(var)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=err_file,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = ""
        while not base:
            line = proc.stdout.readline()
            assert line, f"demo ended early: {(tmp_path / 'stderr.txt').read_text()}"
            if "HTTP on" in line:
                base = line.split("HTTP on ", 1)[1].strip()
        db = {"HUB_DATABASE_URL": f"sqlite+aiosqlite:///{var / 'hub.db'}"}
        made = iothub("keys", "create", "--role", "operator", "--name", "console", cwd=tmp_path, env=db)
        key = made.stdout.split()[0]
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as watcher:
            request = f"GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n\r\n"
            watcher.sendall(request.encode())
            assert b"200 OK" in watcher.recv(4096)
            proc.send_signal(signal.SIGINT)
            heard = b""
            while chunk := watcher.recv(4096):  # until the hub closes the stream
                heard += chunk
            out, _ = proc.communicate(timeout=30)
        # The stream's last event tells the console the hub is going away.
        assert b"event: closing" in heard
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        err_file.close()
    err = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, err
    assert "iothub: stopped" in out
    assert "Traceback" not in err, err
