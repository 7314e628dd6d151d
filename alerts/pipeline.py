"""The alert path as small stages: test mode → facts (fingerprint, building) → dedup → case → notify → record."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.alert import Alert
from alerts.caseflow import apply_alert
from alerts.casestore import CaseConfig
from alerts.dedup import AlertFacts, Decision, DedupReason, decide
from alerts.scheduler import EscalationScheduler
from alerts.testmode import TestAlarm, device_in_test, handle_test_alert
from hub.db import Database
from hub.db.places import LEVELS, Place
from provisioning.places import ancestor_ids

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


async def alert_facts(session: AsyncSession, alert: Alert, now: dt.datetime) -> AlertFacts:
    """Stage 1: what dedup needs, with the building found from the place's materialised path."""
    building = None
    if alert.place_id is not None:
        place = await session.get(Place, alert.place_id)
        chain = ancestor_ids(place.path) if place is not None else []
        building = chain[_BUILDING] if len(chain) > _BUILDING else None
    return AlertFacts(alert.fingerprint, alert.category, alert.firing, building, now)


class AlertPipeline:
    """Runs the stages for one alert; each stage is also a function of its own, testable alone."""

    def __init__(
        self,
        db: Database,
        cfg: CaseConfig,
        clock: Callable[[], dt.datetime],
        scheduler: EscalationScheduler | None = None,
    ) -> None:
        self.db, self.cfg, self.clock, self.scheduler = db, cfg, clock, scheduler
        self.reasons: Counter[str] = Counter()
        self.handled = 0
        # The live event stream (the hub wires ``ingest.bus.publish``): test alarms are announced there.
        self.events: Callable[[dict[str, Any]], None] | None = None

    async def handle(self, alert: Alert) -> Outcome:
        """Dedup and case in one transaction, then run the steps due (the first one of a new case)."""
        now = self.clock()
        async with self.db.session() as session:
            device = await device_in_test(session, alert, now)
            notifier = None if self.scheduler is None else self.scheduler.notifier
            test = None if device is None else await handle_test_alert(session, device, alert, now, notifier)
        if test is not None:
            return self._tested(alert, test)
        async with self.db.session() as session:
            facts = await alert_facts(session, alert, now)
            decision: Decision = await decide(session, facts, self.cfg.dedup)
            case = await apply_alert(session, self.cfg, alert, decision, now)
            case_id, code = (None, None) if case is None else (case.id, case.code)
            sent = 0
            if case is not None and decision.reason in _URGENT_REASONS and self.scheduler is not None:
                # The first step goes in the case's own transaction: one commit, and the outbox wakes on it.
                await session.flush()
                sent = await self.scheduler.run_case(session, case.id, now)
        self.record(decision.reason)
        return Outcome(alert.fingerprint, decision.reason, case_id, code, sent)

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
