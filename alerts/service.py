"""The hub component of the case side: consumes the AlertQueue, ticks the engine and the escalation scheduler."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.exc import SQLAlchemyError

from alerts.alert import Alert, AlertQueue
from alerts.casestore import CaseConfig
from alerts.contracts import Notifier
from alerts.desk import AwayHook, CaseDesk
from alerts.directory import Directory
from alerts.feedback import EscalationFeedback
from alerts.pipeline import AlertPipeline
from alerts.ruleset import RuleSet
from alerts.rulestore import RuleReloader
from drivers.base import Driver
from hub.db import Database
from hub.errors import HubError
from hub.lifecycle import TaskSet

__all__ = ["CaseService"]

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]


class CaseService:
    """Owns the alert → case path, the scheduler tick, the desk (``CaseActions``) and the feedback side."""

    name = "cases"

    def __init__(
        self,
        db: Database,
        queue: AlertQueue,
        notifier: Notifier,
        cfg: CaseConfig,
        clock: Callable[[], dt.datetime],
        *,
        drivers: Mapping[str, Driver] | None = None,
        swap_rules: Callable[[RuleSet], None] | None = None,
        engine_tick: Callable[[float], int] | None = None,
        away_hook: AwayHook | None = None,
        interval: float = 1.0,
        sleep: Sleep = asyncio.sleep,
        stop_timeout: float = 5.0,
    ) -> None:
        from alerts.scheduler import EscalationScheduler

        self.db, self.queue, self.clock = db, queue, clock
        # Places, responders and policies in memory for the alert path (see alerts/directory.py).
        self.directory = Directory(db)
        self.scheduler = EscalationScheduler(db, notifier, cfg, clock, directory=self.directory)
        self.pipeline = AlertPipeline(db, cfg, clock, self.scheduler)
        self.desk = CaseDesk(db, cfg, clock, away_hook)
        self.feedback = EscalationFeedback(db, clock)
        self.reloader = (
            None if drivers is None or swap_rules is None else RuleReloader(db, drivers, swap_rules)
        )
        self.engine_tick, self.interval, self.sleep, self.stop_timeout = (
            engine_tick,
            interval,
            sleep,
            stop_timeout,
        )
        self.errors = 0
        self.ticks = 0
        # HA: whether this node still holds the lease, asked before each alert and tick (hub/ha).
        self.fence: Callable[[], bool] | None = None
        self._tasks = TaskSet()

    async def start(self) -> None:
        """Load stored rules into the engine, then start the consumer and the ticker (named, held tasks)."""
        if self.reloader is not None:
            await self.reloader.reload()
        await self.directory.start()
        self._tasks.spawn(self._consume(), "cases-alert-consumer")
        self._tasks.spawn(self._tick_loop(), "cases-escalation-tick")

    async def stop(self) -> None:
        """Stop both tasks; alerts still queued are handled first, within the timeout."""
        try:
            await asyncio.wait_for(self.drain(), self.stop_timeout)
        except TimeoutError:
            log.warning("cases: %d alerts left in the queue at stop", len(self.queue))
        await self._tasks.stop(self.stop_timeout)
        await self.directory.stop()

    async def health(self) -> tuple[bool, str]:
        """Healthy while both tasks run."""
        names = self._tasks.names
        ok = len(names) == 2
        return ok, f"tasks {', '.join(names) or 'none'}; {self.pipeline.handled} alerts, {self.errors} errors"

    async def drain(self) -> int:
        """Handle every alert queued now (tests and stop); returns how many."""
        alerts = self.queue.drain()
        for alert in alerts:
            await self._handle(alert)
        return len(alerts)

    async def tick_once(self) -> None:
        """One tick: the engine's timers (for-durations, deadman, households), then due escalation steps."""
        if self.engine_tick is not None:
            self.engine_tick(self.clock().timestamp())
        await self.scheduler.tick()
        self.ticks += 1

    async def _handle(self, alert: Alert) -> None:
        if self.fence is not None and not self.fence():
            self.queue.done(alert)
            return  # no longer the active hub: the new one raises it again from what it receives
        try:
            await self.pipeline.handle(alert)
        except (HubError, SQLAlchemyError):
            # One bad alert must not stop the loop; it is logged and counted for /metrics.
            self.errors += 1
            log.exception("cases: alert could not be handled")
        finally:
            self.queue.done(alert)

    async def _consume(self) -> None:
        while True:
            await self._handle(await self.queue.get())

    async def _tick_loop(self) -> None:
        while True:
            try:
                if self.fence is None or self.fence():
                    await self.tick_once()
            except (HubError, SQLAlchemyError):
                self.errors += 1
                log.exception("cases: escalation tick failed")
            await self.sleep(self.interval)
