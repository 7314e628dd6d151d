"""Which case an alert belongs to, and why: fingerprint dedup, building correlation, reopening (a reason enum)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import OPEN_STATES, CaseState
from hub.db.cases import Case, CaseAlert

__all__ = ["AlertFacts", "Decision", "DedupPolicy", "DedupReason", "classify", "decide"]

_OPEN = [str(s) for s in OPEN_STATES]


class DedupReason(StrEnum):
    """Why an alert went where it went (stored on the case timeline, like Alertmanager's DedupStage)."""

    NEW_CASE = "new_case"
    REPEAT = "repeat"
    CORRELATED = "correlated_building"
    REOPENED = "reopened"
    CLEARED = "condition_cleared"
    NO_CASE = "resolved_without_case"


@dataclass(frozen=True, slots=True)
class DedupPolicy:
    """How long alerts of one building correlate, and how long a closed case can come back."""

    correlation_window: dt.timedelta = dt.timedelta(minutes=10)
    reopen_within: dt.timedelta = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What dedup needs of an alert: identity, category, whether it fires, where, and when."""

    fingerprint: str
    category: str
    firing: bool
    building_id: int | None
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """The case to update (None: open a new one) and the reason."""

    reason: DedupReason
    case_id: int | None = None


def classify(
    facts: AlertFacts,
    *,
    open_case: tuple[int, str] | None,
    correlated: int | None,
    recently_closed: int | None,
) -> Decision:
    """Decide from what the lookups found; ``open_case`` is (id, state) of the fingerprint's open case."""
    if not facts.firing:
        if open_case is None:
            return Decision(DedupReason.NO_CASE)
        return Decision(DedupReason.CLEARED, open_case[0])
    if open_case is not None:
        # A resolved (not yet closed) case whose condition comes back is live again.
        reopened = open_case[1] == CaseState.RESOLVED
        return Decision(DedupReason.REOPENED if reopened else DedupReason.REPEAT, open_case[0])
    if correlated is not None:
        return Decision(DedupReason.CORRELATED, correlated)
    if recently_closed is not None:
        return Decision(DedupReason.REOPENED, recently_closed)
    return Decision(DedupReason.NEW_CASE)


async def _open_case(session: AsyncSession, fingerprint: str) -> tuple[int, str] | None:
    query = (
        select(Case.id, Case.state)
        .join(CaseAlert, CaseAlert.case_id == Case.id)
        .where(CaseAlert.fingerprint == fingerprint, Case.state.in_(_OPEN))
        .order_by(Case.id.desc())
        .limit(1)
    )
    row = (await session.execute(query)).first()
    return None if row is None else (row[0], row[1])


async def _correlated(session: AsyncSession, facts: AlertFacts, policy: DedupPolicy) -> int | None:
    if facts.building_id is None:
        return None
    # Resolved cases are left out: a new fire after one was put out is a new fire.
    active = [str(s) for s in (CaseState.DISCOVERED, CaseState.ACCEPTED, CaseState.IN_PROGRESS)]
    query = (
        select(Case.id)
        .where(
            Case.building_id == facts.building_id,
            Case.category == facts.category,
            Case.state.in_(active),
            Case.last_alert_at >= facts.at - policy.correlation_window,
        )
        .order_by(Case.id)
        .limit(1)
    )
    found: int | None = await session.scalar(query)
    return found


async def _recently_closed(session: AsyncSession, facts: AlertFacts, policy: DedupPolicy) -> int | None:
    query = (
        select(Case.id)
        .join(CaseAlert, CaseAlert.case_id == Case.id)
        .where(
            CaseAlert.fingerprint == facts.fingerprint,
            Case.state == CaseState.CLOSED,
            Case.closed_at >= facts.at - policy.reopen_within,
        )
        .order_by(Case.closed_at.desc())
        .limit(1)
    )
    found: int | None = await session.scalar(query)
    return found


async def decide(session: AsyncSession, facts: AlertFacts, policy: DedupPolicy) -> Decision:
    """Look up the fingerprint's open case, a correlated case in the building, a recently closed one."""
    open_case = await _open_case(session, facts.fingerprint)
    if not facts.firing or open_case is not None:
        return classify(facts, open_case=open_case, correlated=None, recently_closed=None)
    correlated = await _correlated(session, facts, policy)
    closed = None if correlated is not None else await _recently_closed(session, facts, policy)
    return classify(facts, open_case=None, correlated=correlated, recently_closed=closed)
