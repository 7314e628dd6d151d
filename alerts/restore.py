"""After a start or a takeover, silence alerts that a case already holds are not raised a second time.

The rule engine keeps its timers in memory and re-arms them from the stored last-seen and last-activity
times (``RuleEngine.rearm``). A device silent since before the start is then past its deadline again,
and its inactivity alert fires at the first tick with the same fingerprint and the same start time
(last seen + span), as it did on the process that raised it before (household windows alike). Sent on,
it would join the open case as a repeat, or reopen a case a responder had just closed and text them
again. ``AlreadyRecorded`` sits between the engine and the alert queue: a firing alert whose fingerprint
a case holds as still firing, recorded at or after the alert's start, is the same alert, and is held
back. The engine still counts it as firing, so the device's next uplink resolves the case as usual.
"""

from __future__ import annotations

from sqlalchemy import func, select

from alerts.alert import Alert, AlertSink
from hub.db import Database
from hub.db.cases import CaseAlert

__all__ = ["AlreadyRecorded", "recorded_firing"]


async def recorded_firing(db: Database) -> dict[str, float]:
    """Fingerprint → when a case last recorded it, for every alert a case holds as still firing."""
    query = (
        select(CaseAlert.fingerprint, func.max(CaseAlert.last_at))
        .where(CaseAlert.firing.is_(True))
        .group_by(CaseAlert.fingerprint)
    )
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    return {fingerprint: last.timestamp() for fingerprint, last in rows if last is not None}


class AlreadyRecorded:
    """A sink in front of the alert queue that holds back the alerts a case already has."""

    def __init__(self, sink: AlertSink) -> None:
        self.sink = sink
        self.recorded: dict[str, float] = {}
        self.held = 0

    def __call__(self, alert: Alert) -> None:
        """Pass the alert on unless a case recorded this very alert (same fingerprint, started before)."""
        if self.recorded and alert.firing:
            last = self.recorded.pop(alert.fingerprint, None)
            if last is not None and alert.started_at <= last:
                self.held += 1
                return
        self.sink(alert)
