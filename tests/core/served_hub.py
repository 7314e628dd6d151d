"""Shared helpers (no tests): a hub started as `iothub serve` starts it, with keys made by `iothub keys create`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServedHub", "iothub_env", "run_iothub", "served_hub"]

BAD_LOG_LINES = ("Traceback", "unhandled error", "Task was destroyed", "never awaited")


def iothub_env(database_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of an `iothub` subprocess: only the given HUB_* settings, free ports, no CoAP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        {
            "HUB_DATABASE_URL": database_url,
            "HUB_VAR_DIR": str(var_dir),
            "HUB_WEB_PORT": "0",
            "HUB_MQTT_PORT": "0",
            "HUB_COAP_ENABLED": "false",
            "HUB_SECRET_KEY": "served-hub-test-secret-key",
        }
    )
    env.update(extra)
    return env


def run_iothub(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `python -m hub ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "hub", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class ServedHub:
    """A running `iothub serve`: its URL, an admin key, and where its output goes."""

    url: str
    admin_key: str
    stderr: Path
    stdout_lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        """Everything the hub wrote to stderr so far."""
        return self.stderr.read_text(encoding="utf-8", errors="replace")


@contextmanager
def served_hub(env: dict[str, str], cwd: Path) -> Iterator[ServedHub]:
    """Migrate, make an admin key with the CLI, start `iothub serve`; stop it with SIGINT at the end."""
    upgraded = run_iothub("db", "upgrade", env=env, cwd=cwd)
    assert upgraded.returncode == 0, upgraded.stderr
    created = run_iothub("keys", "create", "--role", "admin", "--name", "served", env=env, cwd=cwd)
    assert created.returncode == 0, created.stderr
    admin_key = next(line for line in created.stdout.split() if line.startswith("hub_"))
    stderr = cwd / "serve.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve"],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while True:
            line = proc.stdout.readline()
            assert line, f"iothub serve ended early: {stderr.read_text()}"
            lines.append(line)
            if "HTTP on " in line:
                break
        yield ServedHub(line.split("HTTP on ", 1)[1].strip(), admin_key, stderr, lines)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        lines.append(out)
        assert proc.returncode == 0, stderr.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
