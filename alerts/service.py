"""The hub component of the case side: consumes the AlertQueue, ticks the engine and the escalation scheduler."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from alerts.alert import Alert, AlertQueue
from alerts.casestore import CaseConfig
from alerts.contracts import Notifier
from alerts.desk import AwayHook, CaseDesk
from alerts.directory import Directory
from alerts.estimates import firm_up_estimates
from alerts.failures import TickHealth
from alerts.feedback import EscalationFeedback
from alerts.parking import ParkingLot, alert_from_json, alert_to_json
from alerts.pipeline import AlertPipeline
from alerts.ruleset import RuleSet
from alerts.rulestore import RuleReloader
from drivers.base import Driver
from hub.db import Database
from hub.errors import StoreError
from hub.lifecycle import TaskSet
from hub.retry import RetryPolicy, delay, retrying

__all__ = ["TRANSIENT", "CaseService"]

log = logging.getLogger(__name__)
Sleep = Callable[[float], Awaitable[None]]
_CONSUMER, _TICKER, _RETRY = "cases-alert-consumer", "cases-escalation-tick", "cases-retry-"
# Errors worth another attempt (the database or the network); anything else is parked at once.
TRANSIENT: tuple[type[Exception], ...] = (SQLAlchemyError, OSError, TimeoutError, StoreError)


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
        parking: ParkingLot | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        from alerts.scheduler import EscalationScheduler

        self.db, self.queue, self.clock, self.config = db, queue, clock, cfg
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
        # An alert that fails is tried again (bounded, jittered) in a task of its own, then parked.
        self.parking = parking or ParkingLot(db, clock)
        self.parking.handlers["alert"] = self._handle_parked
        self.retry = retry or RetryPolicy()
        self.tick_health = TickHealth()
        self.last_tick_error = ""

    async def start(self) -> None:
        """Load stored rules into the engine, then start the consumer and the ticker (named, held tasks)."""
        if self.reloader is not None:
            await self.reloader.reload()
        async with self.db.session() as session:
            await firm_up_estimates(session, self.config, self.clock())
        await self.directory.start()
        self._tasks.spawn(self._consume(), _CONSUMER)
        self._tasks.spawn(self._tick_loop(), _TICKER)

    async def stop(self) -> None:
        """Stop both tasks; alerts still queued are handled first, within the timeout."""
        try:
            await asyncio.wait_for(self.drain(), self.stop_timeout)
        except TimeoutError:
            log.warning("cases: %d alerts left in the queue at stop", len(self.queue))
        await self._tasks.stop(self.stop_timeout)
        await self.directory.stop()

    async def health(self) -> tuple[bool, str]:
        """Healthy while both tasks run (alerts being retried run in tasks of their own)."""
        names = self._tasks.names
        ok = {_CONSUMER, _TICKER} <= set(names)
        retrying = sum(name.startswith(_RETRY) for name in names)
        detail = f"tasks {', '.join(n for n in names if not n.startswith(_RETRY)) or 'none'}; "
        detail += f"{self.pipeline.handled} alerts, {self.errors} errors, {retrying} retrying"
        if self.tick_health.degraded:  # escalation steps and overdue flags are not being done
            failing = (
                f"{self.tick_health.failed} of the last {self.tick_health.window} escalation ticks failed"
            )
            return False, f"DEGRADED: {failing}: {self.last_tick_error}; {detail}"
        return ok, detail

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
        except Exception as exc:
            # One bad alert must not hold up the next: it is retried beside the loop, then parked.
            self.errors += 1
            log.warning(
                "cases: alert %s of %s failed (%s: %s)",
                alert.name,
                alert.device_serial,
                type(exc).__name__,
                exc,
            )
            self._tasks.spawn(self._retry(alert, exc), f"{_RETRY}{alert.fingerprint}-{self.errors}")
        finally:
            self.queue.done(alert)

    async def _retry(self, alert: Alert, first: Exception) -> None:
        """Try a failed alert again with backoff (transient errors only), then park it where operators look."""
        attempts, error = 1, first
        try:
            if isinstance(first, TRANSIENT) and self.retry.attempts > 1:
                await self.sleep(delay(self.retry, 1))
                rest = self.retry.model_copy(update={"attempts": self.retry.attempts - 1})
                async for attempt in retrying(rest, on=TRANSIENT, sleep=self.sleep):
                    with attempt:
                        attempts += 1
                        await self.pipeline.handle(alert)
                return
        except asyncio.CancelledError:
            await self._park(alert, RuntimeError("the hub stopped while the alert was retried"), attempts)
            raise
        except Exception as exc:
            error = exc
        await self._park(alert, error, attempts)

    async def _park(self, alert: Alert, error: BaseException, attempts: int) -> None:
        where = alert.device_serial or alert.labels.get("household", "-")
        summary = f"{alert.state} {alert.name} ({alert.category}, {alert.severity}) from {where}"
        await self.parking.park("alert", alert.fingerprint, summary, alert_to_json(alert), error, attempts)

    async def _handle_parked(self, payload: dict[str, Any]) -> None:
        """An operator's retry of a parked alert: handled once more, raising when it fails again."""
        await self.pipeline.handle(alert_from_json(payload))

    async def _consume(self) -> None:
        while True:
            await self._handle(await self.queue.get())

    async def _tick_loop(self) -> None:
        while True:
            try:
                if self.fence is None or self.fence():
                    await self.tick_once()
                self.tick_health.record(True)
            except Exception as exc:  # the next tick tries the due steps again (they are rows)
                self.errors += 1
                self.tick_health.record(False)
                self.last_tick_error = f"{type(exc).__name__}: {exc}"[:300]
                log.exception("cases: escalation tick failed")
            await self.parking.flush()  # items parked while the database refused them
            await self.sleep(self.interval)
