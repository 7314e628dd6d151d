"""Cases in the database: open (with SLA due times and planned steps), timeline lines, look-ups, filters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import and_, false, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import CaseState, EventKind, case_code, check_category, check_channel
from alerts.dedup import DedupPolicy
from alerts.escalation import StepSpec, plan_steps, policy_for
from alerts.sla import Milestone, SlaClock, SlaPolicies, Urgency, default_policies
from alerts.workdays import WorkdayCalendar
from hub.db.cases import Case, CaseCounter, CaseEvent, EscalationStep
from hub.db.places import LEVELS, subtree_bounds
from hub.errors import NotFound
from provisioning.audit import record
from provisioning.places import ancestor_ids

__all__ = [
    "CaseConfig",
    "CaseFilter",
    "NewCase",
    "add_event",
    "get_case",
    "list_cases",
    "next_code",
    "open_case",
    "open_planned",
    "timeline",
]

_BUILDING = LEVELS.index("building")
_HOUSEHOLD = LEVELS.index("household")


@dataclass(frozen=True)
class CaseConfig:
    """What opening and updating cases needs: SLA policies, the working-day calendar, dedup windows."""

    calendar: WorkdayCalendar
    sla: SlaPolicies = field(default_factory=default_policies)
    dedup: DedupPolicy = field(default_factory=DedupPolicy)
    # After an escalation for being overdue, how long until the case goes one more level up.
    reescalate_after: dict[str, dt.timedelta] = field(
        default_factory=lambda: {"urgent": dt.timedelta(minutes=5), "ordinary": dt.timedelta(days=1)}
    )


class PlaceRef(Protocol):
    """A place as a case needs it: a stored ``Place`` or the alert path's ``PlaceInfo``."""

    @property
    def id(self) -> int:
        """The place id."""

    @property
    def path(self) -> str:
        """The materialised path, root first."""


@dataclass(frozen=True)
class NewCase:
    """A case to open, from an alert or a person."""

    source: str
    category: str
    severity: str
    place: PlaceRef | None
    summary: str = ""
    description: str = ""
    # The summary in each language ({"zh-CN": …, "en": …}) when it is known in each (alerts).
    summary_texts: Mapping[str, str] | None = None
    fingerprint: str | None = None
    device_id: int | None = None
    reporter_phone: str | None = None


@dataclass(frozen=True)
class CaseFilter:
    """List filters; ``scopes`` limits to place subtrees (a caller's places)."""

    state: str | None = None
    category: str | None = None
    place_path: str | None = None
    overdue: bool | None = None
    scopes: tuple[str, ...] | None = None
    limit: int = 100
    offset: int = 0


def _shanghai_day(now: dt.datetime) -> str:
    return now.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y%m%d")


async def next_code(session: AsyncSession, now: dt.datetime) -> str:
    """The next case code of the day; an upsert, so two workers never hand out one number."""
    day = _shanghai_day(now)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(CaseCounter).values(day=day, last=1)
    stmt = stmt.on_conflict_do_update(index_elements=["day"], set_={"last": CaseCounter.last + 1})
    number = await session.scalar(stmt.returning(CaseCounter.last))
    return case_code(now, int(number or 1))


def add_event(
    session: AsyncSession,
    case: Case,
    kind: EventKind,
    *,
    actor: str,
    channel: str,
    at: dt.datetime,
    note: str = "",
    reason: str | None = None,
    before: str | None = None,
    after: str | None = None,
    detail: dict[str, Any] | None = None,
) -> CaseEvent:
    """Add a timeline line and its audit event (both commit with the change they describe)."""
    event = CaseEvent(
        case_id=case.id,
        at=at,
        kind=str(kind),
        from_state=before,
        to_state=after,
        actor=actor[:120],
        channel=check_channel(channel),
        reason=reason,
        note=note,
        detail=detail or {},
    )
    session.add(event)
    audit = {"code": case.code, "note": note, "reason": reason, "from": before, "to": after} | (detail or {})
    record(session, actor, channel, str(kind), "case", case.id, audit, lambda: at)
    return event


async def open_case(
    session: AsyncSession, cfg: CaseConfig, new: NewCase, *, actor: str, channel: str, now: dt.datetime
) -> Case:
    """Open a case: code, SLA due times, building/household, planned escalation steps, an 'opened' line."""
    case, _steps = await open_planned(session, cfg, new, actor=actor, channel=channel, now=now)
    return case


async def open_planned(
    session: AsyncSession,
    cfg: CaseConfig,
    new: NewCase,
    *,
    actor: str,
    channel: str,
    now: dt.datetime,
    steps: Sequence[StepSpec] | None = None,
    alerted: bool = False,
) -> tuple[Case, list[EscalationStep]]:
    """``open_case``, returning the planned steps too; ``steps`` given skip the policy look-up.

    ``alerted``: the case opens with its first alert joined (count, last alert time) in its INSERT.
    """
    check_category(new.category)
    policy = cfg.sla.for_category(new.category)
    clock = SlaClock.start(policy, now, cfg.calendar)
    chain = ancestor_ids(new.place.path) if new.place is not None else []
    case = Case(
        code=await next_code(session, now),
        source=new.source,
        category=new.category,
        severity=new.severity,
        urgency=str(policy.urgency),
        state=str(CaseState.DISCOVERED),
        fingerprint=new.fingerprint,
        place_id=None if new.place is None else new.place.id,
        place_path=None if new.place is None else new.place.path,
        building_id=chain[_BUILDING] if len(chain) > _BUILDING else None,
        household_id=chain[_HOUSEHOLD] if len(chain) > _HOUSEHOLD else None,
        device_id=new.device_id,
        summary=new.summary,
        summary_texts=None if new.summary_texts is None else dict(new.summary_texts),
        description=new.description,
        reporter_phone=new.reporter_phone,
        alert_count=1 if alerted else 0,
        condition_active=alerted,
        overdue=False,
        escalated=False,
        reopened=0,
        accept_due=clock.accept_due,
        reply_due=clock.reply_due,
        reply_due_estimated=Milestone.REPLY in clock.estimated,
        resolve_due=clock.resolve_due,
        opened_at=now,
        last_alert_at=now if alerted else None,
        updated_at=now,
    )
    session.add(case)
    await session.flush()
    if steps is None:
        urgent = policy.urgency is Urgency.URGENT
        steps = await policy_for(session, case.place_path, case.category, urgent=urgent)
    planned = await plan_steps(session, case.id, case.place_id, steps, now)
    detail = {"source": new.source, "category": new.category, "severity": new.severity, "steps": len(steps)}
    add_event(
        session, case, EventKind.OPENED, actor=actor, channel=channel, at=now, after=case.state, detail=detail
    )
    return case, planned


async def get_case(session: AsyncSession, ref: str | int, *, lock: bool = False) -> Case:
    """A case by code ("C-20261128-0042") or id; NotFound otherwise."""
    query = select(Case).where(
        Case.code == ref if isinstance(ref, str) and not ref.isdigit() else Case.id == int(ref)
    )
    if lock:
        query = query.with_for_update()
    case = await session.scalar(query)
    if case is None:
        raise NotFound(f"no case {ref}")
    return case


async def timeline(session: AsyncSession, case_id: int) -> list[CaseEvent]:
    """A case's timeline, oldest first."""
    query = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.at, CaseEvent.id)
    return list((await session.execute(query)).scalars())


async def list_cases(session: AsyncSession, flt: CaseFilter) -> list[Case]:
    """Cases newest first, filtered by state, category, place subtree, overdue, and the caller's places."""
    query = select(Case).order_by(Case.opened_at.desc(), Case.id.desc()).limit(flt.limit).offset(flt.offset)
    if flt.state is not None:
        query = query.where(Case.state == flt.state)
    if flt.category is not None:
        query = query.where(Case.category == flt.category)
    if flt.overdue is not None:
        query = query.where(Case.overdue.is_(flt.overdue))
    if flt.place_path is not None:
        lo, hi = subtree_bounds(flt.place_path)
        query = query.where(Case.place_path >= lo, Case.place_path < hi)
    if flt.scopes is not None:
        ranges = [
            and_(Case.place_path >= lo, Case.place_path < hi) for lo, hi in map(subtree_bounds, flt.scopes)
        ]
        query = query.where(or_(*ranges) if ranges else false())
    return list((await session.execute(query)).scalars())
