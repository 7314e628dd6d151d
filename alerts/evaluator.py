"""The rule engine as a hub component: hooked into ingest, ticking on a named task, watched for stalls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from sqlalchemy import select

from alerts.alert import AlertQueue
from alerts.engine import RuleEngine
from alerts.failures import ENGINE, RuleFailures, TickHealth
from alerts.restore import AlreadyRecorded, recorded_firing
from alerts.ruleset import RuleSet
from drivers.base import Driver
from hub.db import Database
from hub.db.cases import HouseholdAway
from hub.db.places import Place
from hub.errors import NotFound
from hub.ingest.service import IngestService
from hub.lifecycle import TaskSet
from hub.metrics import HubMetrics

__all__ = ["RuleEvaluator"]

log = logging.getLogger(__name__)
# Detection lag is at most one tick; 0.5 s keeps p99 under the 1 s goal (docs/rules.md).
TICK = 0.5
PLACES_REFRESH = 30.0
# A tick this late means the evaluator stalled: /readyz says so, so silence is never missed silently.
MAX_LAG = 5.0


class RuleEvaluator:
    """Owns the RuleEngine and the queue of alerts it emits for the case side."""

    name = "rules"

    def __init__(
        self,
        db: Database,
        ingest: IngestService,
        drivers: Mapping[str, Driver],
        metrics: HubMetrics,
        clock: Callable[[], float],
        rules: RuleSet | None = None,
        queue: AlertQueue | None = None,
    ) -> None:
        self.db = db
        self.ingest = ingest
        self.metrics = metrics
        self.clock = clock
        self.queue = queue if queue is not None else AlertQueue()  # an empty queue is falsy
        self.failures = RuleFailures(on_failure=lambda rule: metrics.rules_failures.labels(rule).inc())
        # Silence alerts a case already holds are not raised again after a start (alerts/restore.py).
        self.restore = AlreadyRecorded(self.queue)
        self.engine = RuleEngine(
            rules or RuleSet.build(drivers, []),
            self.restore,
            devices=ingest.directory.by_id,
            failures=self.failures,
        )
        self.ticks = TickHealth()
        # HA: the consumers' check that this node still holds the lease (hub/ha); None on a single node.
        self.fence: Callable[[], bool] | None = None
        self._tasks = TaskSet()
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        """Learn the places, re-arm deadlines from stored state, hook into ingest, start ticking."""
        await self.refresh_places()
        await self._restore_away()
        self.restore.recorded = await recorded_firing(self.db)
        armed = self.engine.rearm(self.ingest.directory.entries(), self.ingest.states.all(), self.clock())
        log.info("rules: %d rules, %d devices armed", len(self.engine.rules), armed)
        self.ingest.pipeline.hooks.append(self.engine)
        self.ingest.pipeline.offline_hooks.append(self.engine.on_offline)
        self._unsubscribe = self.ingest.credential_events.subscribe(self._on_device_change)
        self._tasks.spawn(self._tick_loop(), name="rules-tick")

    def _on_device_change(self, device_id: int, what: str) -> None:
        # A device enrolled while the hub runs must be watched for silence from now, not from its first uplink:
        # one that never speaks after installation is exactly what the deadman is for.
        if what in ("enrolled", "claimed"):
            self._tasks.spawn(self._arm_new(device_id), name=f"rules-arm-{device_id}")

    async def _arm_new(self, device_id: int) -> None:
        entry = await self.ingest.directory.refresh(device_id)
        if entry is None:
            return
        if entry.place_id is not None and not self.engine.knows_place(entry.place_id):
            await self.refresh_places()
        status = self.ingest.states.get(device_id)
        self.engine.rearm([entry], [status] if status is not None else [], self.clock())

    async def refresh_places(self) -> None:
        """Reload the place id → path map the engine scopes rules and households with."""
        async with self.db.session() as session:
            rows = (await session.execute(select(Place.id, Place.path))).all()
        self.engine.set_places({row.id: row.path for row in rows})

    def set_away(self, place_id: int, away: bool) -> None:
        """Away mode on or off for a household; a place newer than the engine's map is learned first."""
        try:
            self._apply_away(place_id, away)
        except NotFound:
            self._tasks.spawn(self._away_after_refresh(place_id, away), name=f"rules-away-{place_id}")

    def _apply_away(self, place_id: int, away: bool) -> None:
        if away:
            self.engine.set_away(place_id, self.clock())
        else:
            self.engine.clear_away(place_id, self.clock())

    async def _away_after_refresh(self, place_id: int, away: bool) -> None:
        await self.refresh_places()
        try:
            self._apply_away(place_id, away)
        except NotFound:
            log.warning("rules: away mode for unknown place %s ignored", place_id)

    async def _restore_away(self) -> None:
        # Away mode is stored; the engine must know it again after a restart, or absent residents raise alarms.
        now = self.clock()
        async with self.db.session() as session:
            rows = (await session.execute(select(HouseholdAway.place_id, HouseholdAway.until))).all()
        for row in rows:
            if row.until is None or row.until.timestamp() > now:
                self.engine.set_away(row.place_id, now)

    async def _tick_loop(self) -> None:
        since_places = 0.0
        while True:
            await asyncio.sleep(TICK)
            if self.fence is not None and not self.fence():
                continue  # no longer the active hub: raise nothing
            now = self.clock()
            self.tick(now)
            # Past deadlines fired at the first tick after the re-arm; what was held back is settled.
            self.restore.recorded.clear()
            for stat, value in self.engine.stats().items():
                self.metrics.rules.labels(stat).set(value)
            since_places += TICK
            if since_places >= PLACES_REFRESH:
                since_places = 0.0
                try:
                    await self.refresh_places()
                except Exception:
                    log.exception("rules: reloading places failed")

    def tick(self, now: float) -> bool:
        """One engine tick, counted: True when nothing in it failed (only then does the last-tick time move)."""
        try:
            self.engine.tick(now)
            ok = self.engine.last_tick_failures == 0
        except Exception as exc:  # isolation failed somewhere: the whole tick is lost, and says so
            self.failures(ENGINE, None, exc, now)
            ok = False
        self.ticks.record(ok)
        if ok:
            self.metrics.rules_last_tick.set(now)
        else:
            self.metrics.rules_failed_ticks.inc()
        return ok

    async def stop(self) -> None:
        """Unhook from ingest and stop ticking."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.engine in self.ingest.pipeline.hooks:
            self.ingest.pipeline.hooks.remove(self.engine)
        if self.engine.on_offline in self.ingest.pipeline.offline_hooks:
            self.ingest.pipeline.offline_hooks.remove(self.engine.on_offline)
        await self._tasks.stop(2.0)

    async def health(self) -> tuple[bool, str]:
        """Not ready when the deadman tracker stopped ticking or runs late, or when ticks keep failing."""
        stalled = self.engine.deadman.stalled(self.clock(), MAX_LAG)
        stats = self.engine.stats()
        detail = f"{len(self.engine.rules)} rules, {int(stats['firing'])} firing, queue {len(self.queue)}"
        if self.failures.total:
            detail += f", {self.failures.total} failed evaluations"
        if self.ticks.degraded:
            rule, last = max(self.failures.last.items(), key=lambda item: item[1].at)
            failing = f"{self.ticks.failed} of the last {self.ticks.window} ticks failed"
            detail = f"DEGRADED: {failing}; last: {rule} for {last.subject or '-'}: {last.error}; {detail}"
        return not stalled and not self.ticks.degraded, ("STALLED: " if stalled else "") + detail
