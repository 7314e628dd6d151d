"""The ingest component: directory, device state, pipeline, dead letters and the live stream, started as one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from drivers.base import Driver
from hub.db import Database
from hub.ingest.deadletter import DeadLetters
from hub.ingest.directory import DeviceDirectory
from hub.ingest.events import EventBus
from hub.ingest.pipeline import Pipeline
from hub.ingest.state import DeviceStates
from hub.lifecycle import TaskSet
from hub.metrics import HubMetrics
from hub.telemetry.base import TelemetryStore
from provisioning.credentials import CredentialEvents

__all__ = ["IngestService"]

log = logging.getLogger(__name__)


class IngestService:
    """Loads the registry into memory, runs the pipeline, and writes device state behind it."""

    name = "ingest"

    def __init__(
        self,
        db: Database,
        store: TelemetryStore,
        drivers: Mapping[str, Driver],
        metrics: HubMetrics,
        credential_events: CredentialEvents,
        clock: Callable[[], float],
        *,
        state_flush_interval: float = 2.0,
    ) -> None:
        self.directory = DeviceDirectory(db, drivers)
        self.states = DeviceStates(db, clock)
        self.dead_letters = DeadLetters(clock=clock)
        self.bus = EventBus()
        self.pipeline = Pipeline(self.states, store, self.dead_letters, self.bus, metrics, clock)
        self.credential_events = credential_events
        self.flush_interval = state_flush_interval
        self._tasks = TaskSet()
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        """Load devices and their last state, then keep writing state behind the ingest path."""
        devices = await self.directory.load_all()
        states = await self.states.load()
        log.info("ingest: %d devices, %d with stored state", devices, states)
        self._unsubscribe = self.credential_events.subscribe(self._on_credentials)
        self._tasks.spawn(self._flush_loop(), name="ingest-state-flush")

    def _on_credentials(self, device_id: int, what: str) -> None:
        # Rotation, revocation or enrollment: the cached entry must not outlive the change.
        self._tasks.spawn(self.directory.refresh(device_id), name=f"ingest-refresh-{device_id}")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.states.flush()
            except Exception:
                log.exception("ingest: writing device state failed; will retry")

    async def stop(self) -> None:
        """Stop the flusher and write the last state."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self._tasks.stop(2.0)
        await self.states.flush()

    async def health(self) -> tuple[bool, str]:
        """Devices known and refused uplinks so far."""
        return True, f"{len(self.directory)} devices, {self.dead_letters.total} refused"
