"""Which case an alert belongs to, and why: fingerprint dedup, declared building correlation, reopening (a reason)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, null, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import OPEN_STATES, CaseState
from drivers.base import Correlate
from hub.db.cases import Case, CaseAlert

__all__ = [
    "AlertFacts",
    "Decision",
    "DedupPolicy",
    "DedupReason",
    "classify",
    "decide",
    "decision_of",
    "lookup",
]

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
    """What dedup needs of an alert: identity, category, whether it fires, where, when, and who shares it."""

    fingerprint: str
    category: str
    firing: bool
    building_id: int | None
    at: dt.datetime
    # The alert's declared correlation: only "building" alerts may join another device's case.
    correlate: Correlate = "none"


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


def _open_case(fingerprint: str) -> Any:
    return (
        select(Case.id)
        .join(CaseAlert, CaseAlert.case_id == Case.id)
        .where(CaseAlert.fingerprint == fingerprint, Case.state.in_(_OPEN))
        .order_by(Case.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def _correlated(facts: AlertFacts, policy: DedupPolicy) -> Any:
    # A personal emergency never joins a neighbour's case; whether a building shares a hazard is the
    # alert's declared data (driver event, rule, category table), not this stage's rule.
    if facts.building_id is None or facts.correlate != "building":
        return null()
    # Resolved cases are left out: a new fire after one was put out is a new fire.
    active = [str(s) for s in (CaseState.DISCOVERED, CaseState.ACCEPTED, CaseState.IN_PROGRESS)]
    return (
        select(Case.id)
        .where(
            Case.building_id == facts.building_id,
            Case.category == facts.category,
            Case.state.in_(active),
            Case.last_alert_at >= facts.at - policy.correlation_window,
        )
        .order_by(Case.id)
        .limit(1)
        .scalar_subquery()
    )


def _recently_closed(facts: AlertFacts, policy: DedupPolicy) -> Any:
    return (
        select(Case.id)
        .join(CaseAlert, CaseAlert.case_id == Case.id)
        .where(
            CaseAlert.fingerprint == facts.fingerprint,
            Case.state == CaseState.CLOSED,
            Case.closed_at >= facts.at - policy.reopen_within,
        )
        .order_by(Case.closed_at.desc())
        .limit(1)
        .scalar_subquery()
    )


def lookup(facts: AlertFacts, policy: DedupPolicy) -> Select[Any]:
    """The fingerprint's open case (id, state), a correlated case in the building, a recently closed one."""
    # One statement for the three look-ups (each an indexed probe): this runs on every alert's path.
    open_id = _open_case(facts.fingerprint)
    state = select(Case.state).where(Case.id == open_id).scalar_subquery()
    return select(open_id, state, _correlated(facts, policy), _recently_closed(facts, policy))


def decision_of(facts: AlertFacts, row: Sequence[Any]) -> Decision:
    """The decision from the first four columns of a ``lookup`` row."""
    found, found_state, correlated, closed = row[:4]
    open_case = None if found is None else (int(found), str(found_state))
    return classify(facts, open_case=open_case, correlated=correlated, recently_closed=closed)


async def decide(session: AsyncSession, facts: AlertFacts, policy: DedupPolicy) -> Decision:
    """Run the look-ups and classify."""
    return decision_of(facts, (await session.execute(lookup(facts, policy))).one())
