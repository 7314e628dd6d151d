"""The telemetry store chosen by the settings, as a lifecycle component."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from hub.config import Settings
from hub.telemetry.base import TelemetryStore
from hub.telemetry.influx import InfluxStore
from hub.telemetry.sqlite import SQLiteStore, SQLiteStoreConfig

__all__ = ["TelemetryComponent", "make_store"]

_DEFAULT_SPOOL = Path("var/telemetry-spool")


def make_store(settings: Settings, clock: Callable[[], float] = time.time) -> TelemetryStore:
    """InfluxDB or the embedded SQLite store, with files under the hub's var dir."""
    if settings.telemetry.backend == "influxdb":
        config = settings.influx
        if config.spool_dir == _DEFAULT_SPOOL:
            config = config.model_copy(update={"spool_dir": settings.var_dir / "telemetry-spool"})
        return InfluxStore(config, clock=clock)
    sqlite = SQLiteStoreConfig(
        path=settings.telemetry_sqlite_path, retention_days=float(settings.telemetry.retention_days)
    )
    return SQLiteStore(sqlite, clock=clock)


class TelemetryComponent:
    """Starts and closes the store; its health is the store's."""

    name = "telemetry"

    def __init__(self, store: TelemetryStore, backend: str) -> None:
        self.store = store
        self.backend = backend

    async def start(self) -> None:
        """Open the store and its writer."""
        await self.store.start()

    async def stop(self) -> None:
        """Flush and close."""
        await self.store.close()

    async def health(self) -> tuple[bool, str]:
        """The store's own answer, prefixed by its backend."""
        ok, detail = await self.store.health()
        return ok, f"{self.backend}: {detail}"
