"""The alert path as small stages: test mode → facts (fingerprint, building) → dedup → case → notify → record."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, false
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.alert import Alert
from alerts.caseflow import apply_alert, open_alert_case
from alerts.casestore import CaseConfig
from alerts.dedup import AlertFacts, Decision, DedupReason, decision_of
from alerts.dedup import lookup as dedup_lookup
from alerts.directory import Directory, PlaceInfo
from alerts.scheduler import EscalationScheduler
from alerts.sla import Urgency
from alerts.testmode import TestAlarm, device_in_test, handle_test_alert
from hub.db import Database
from hub.db.cases import Case
from hub.db.devices import Device
from hub.db.places import LEVELS

__all__ = ["AlertPipeline", "Outcome", "alert_facts"]

log = logging.getLogger(__name__)
_BUILDING = LEVELS.index("building")
# Reasons after which steps may be due at once (a new or reopened case notifies without waiting for a tick).
_URGENT_REASONS = (DedupReason.NEW_CASE, DedupReason.REOPENED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one alert."""

    fingerprint: str
    reason: DedupReason
    case_id: int | None
    case_code: str | None
    notifications: int = 0
    # An alarm of a device in technician test mode: confirmed to the technician, no case.
    test: TestAlarm | None = None


def _in_test(alert: Alert, now: dt.datetime) -> Any:
    """SQL for ``provisioning.testmode.is_in_test`` of the alert's device (which then decides)."""
    if alert.device_id is None or not alert.firing:
        return false()
    return exists().where(
        Device.id == alert.device_id,
        Device.state == "test",
        Device.test_until.is_not(None),
        Device.test_until > now,
    )


def alert_facts(alert: Alert, chain: Sequence[PlaceInfo], now: dt.datetime) -> AlertFacts:
    """Stage 1: what dedup needs, with the building taken from the place's chain (root first)."""
    building = chain[_BUILDING].id if len(chain) > _BUILDING else None
    return AlertFacts(alert.fingerprint, alert.category, alert.firing, building, now, alert.correlate)


class AlertPipeline:
    """Runs the stages for one alert; each stage is also a function of its own, testable alone."""

    def __init__(
        self,
        db: Database,
        cfg: CaseConfig,
        clock: Callable[[], dt.datetime],
        scheduler: EscalationScheduler | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.db, self.cfg, self.clock, self.scheduler = db, cfg, clock, scheduler
        self.directory = directory or (scheduler.directory if scheduler is not None else Directory(db))
        self.reasons: Counter[str] = Counter()
        self.handled = 0
        # The live event stream (the hub wires ``ingest.bus.publish``): test alarms are announced there.
        self.events: Callable[[dict[str, Any]], None] | None = None

    async def handle(self, alert: Alert) -> Outcome:
        """Test mode, dedup and case in one transaction, with the steps due (the first one of a new case)."""
        now = self.clock()
        test: TestAlarm | None = None
        async with self.db.session() as session:
            chain = await self.directory.chain(session, alert.place_id)
            facts = alert_facts(alert, chain, now)
            # Whether the device is in test comes with the dedup look-ups: one statement for both.
            query = dedup_lookup(facts, self.cfg.dedup).add_columns(_in_test(alert, now))
            row = (await session.execute(query)).one()
            device = await device_in_test(session, alert, now) if row[-1] else None
            if device is None:
                outcome = await self._case(session, alert, now, chain, decision_of(facts, row))
            else:
                notifier = None if self.scheduler is None else self.scheduler.notifier
                test = await handle_test_alert(session, device, alert, now, notifier)
        if test is not None:  # announced once committed
            return self._tested(alert, test)
        self.record(outcome.reason)
        return outcome

    async def _case(
        self,
        session: AsyncSession,
        alert: Alert,
        now: dt.datetime,
        chain: Sequence[PlaceInfo],
        decision: Decision,
    ) -> Outcome:
        case: Case | None
        planned = None
        if decision.reason is DedupReason.NEW_CASE:
            urgent = self.cfg.sla.for_category(alert.category).urgency is Urgency.URGENT
            path = chain[-1].path if chain else None
            steps = await self.directory.steps(session, path, alert.category, urgent=urgent)
            place = chain[-1] if chain else None
            case, planned = await open_alert_case(session, self.cfg, alert, now, place=place, steps=steps)
        else:
            case = await apply_alert(session, self.cfg, alert, decision, now)
        if case is None:
            return Outcome(alert.fingerprint, decision.reason, None, None)
        sent = 0
        if decision.reason in _URGENT_REASONS and self.scheduler is not None:
            # The first step goes in the case's own transaction: one commit, and the outbox wakes on it.
            sent = await self.scheduler.run_case(session, case, now, planned)
        return Outcome(alert.fingerprint, decision.reason, case.id, case.code, sent)

    def _tested(self, alert: Alert, test: TestAlarm) -> Outcome:
        if self.events is not None:
            self.events(test.event())
        self.handled += 1
        self.reasons["test_mode"] += 1
        return Outcome(alert.fingerprint, DedupReason.NO_CASE, None, None, int(test.notified), test)

    def record(self, reason: DedupReason) -> None:
        """Last stage: count outcomes by reason (for /metrics)."""
        self.handled += 1
        self.reasons[str(reason)] += 1
