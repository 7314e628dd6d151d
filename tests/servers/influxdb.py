"""InfluxDB 1.x on a free loopback port, with its data in a temp dir that survives restarts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from hub.errors import StoreError

from ._process import LocalServer, ManagedProcess, free_port

__all__ = ["InfluxServer"]

INFLUXD = "/usr/bin/influxd"

_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"
  logging-enabled = false

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[continuous_queries]
  log-enabled = false
"""


class InfluxServer(LocalServer):
    """One influxd process; ``stop()``/``start()`` keep its port, data and users."""

    name = "influxd"
    ready_timeout = 30.0

    def __init__(self, root: Path, *, admin: tuple[str, str] | None = None) -> None:
        self.root = root
        self.admin = admin
        self.port = free_port()
        self.rpc_port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "influxdb.conf"
        self.config_path.write_text(
            _CONFIG.format(
                root=root,
                rpc_port=self.rpc_port,
                http_port=self.port,
                auth="true" if admin else "false",
            )
        )
        self._admin_created = False
        self._process = ManagedProcess(
            "influxd",
            [INFLUXD, "-config", str(self.config_path)],
            cwd=root,
            log_path=root / "influxd.log",
        )

    @property
    def url(self) -> str:
        """Return the base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    def _after_start(self) -> None:
        """Create the admin on the first start."""
        if self.admin and not self._admin_created:
            user, password = self.admin
            # With auth on, InfluxDB 1.x accepts exactly one unauthenticated statement: the first admin.
            self._post_query(
                f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES", auth=False
            )
            self._admin_created = True

    def create_database(self, name: str) -> None:
        """Create a database (idempotent)."""
        self.query(f'CREATE DATABASE "{name}"')

    def query(self, q: str, db: str | None = None) -> dict[str, Any]:
        """Run InfluxQL and return the decoded JSON; raise StoreError on any statement error."""
        return self._post_query(q, db=db, auth=True)

    def write_lines(self, db: str, lines: Iterable[str], precision: str = "ns") -> None:
        """Write line-protocol lines; raise StoreError unless InfluxDB answers 204."""
        body = "\n".join(lines).encode()
        params = {"db": db, "precision": precision}
        try:
            response = httpx.post(
                f"{self.url}/write", params=params, content=body, auth=self.admin, timeout=30
            )
        except httpx.HTTPError as exc:
            raise StoreError(f"influxdb write failed: {exc}") from exc
        if response.status_code != 204:
            raise StoreError(f"influxdb write answered {response.status_code}: {response.text}")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/ping", timeout=1).status_code == 204
        except httpx.TransportError:
            return False

    def _post_query(self, q: str, *, db: str | None = None, auth: bool) -> dict[str, Any]:
        params = {"q": q} | ({"db": db} if db else {})
        try:
            response = httpx.post(
                f"{self.url}/query", params=params, auth=self.admin if auth else None, timeout=30
            )
        except httpx.HTTPError as exc:
            raise StoreError(f"influxdb query failed: {exc}") from exc
        if response.status_code != 200:
            raise StoreError(f"influxdb query answered {response.status_code}: {response.text}")
        result: dict[str, Any] = response.json()
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if errors:
            raise StoreError(f"influxdb query {q!r}: {'; '.join(errors)}")
        return result
