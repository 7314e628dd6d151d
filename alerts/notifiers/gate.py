"""Decide, for the due rows of one worker cycle, what goes out now, merged how, and what waits or stops."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.contracts import Notification
from alerts.limits import SHANGHAI, NotifyPolicy, budget_state, day_start, estimate_cost, rate_defer
from alerts.notifiers.templates import MessageFacts, render_sms, render_voice
from hub.db.outbox import OutboxMessage
from hub.db.people import Responder, responder_places
from hub.db.places import Place

__all__ = ["GatherUrl", "Group", "form_groups", "render", "streets_of"]

GatherUrl = Callable[[int], str | None]


@dataclass
class Group:
    """Rows that go out as one request (the leader first), with the rendered text."""

    rows: list[OutboxMessage]
    body: str = ""
    twiml: str | None = None
    cost: float = 0.0
    warnings: list[Notification] = field(default_factory=list)

    @property
    def leader(self) -> OutboxMessage:
        """The row whose id the request and its callbacks carry."""
        return self.rows[0]


def _facts(row: OutboxMessage) -> MessageFacts:
    return MessageFacts(row.kind, row.language, row.case_code, row.facts)


def render(group: Group, gather_url: GatherUrl) -> None:
    """Fill in the group's text (and TwiML for a call, whose keypress goes to the leader's gather URL)."""
    leader = group.leader
    if leader.channel == "voice":
        group.body, group.twiml = render_voice(_facts(leader), gather_url(leader.id))
    else:
        group.body = render_sms([_facts(r) for r in group.rows])


def _suppress(row: OutboxMessage, now: dt.datetime, reason: str) -> None:
    row.status, row.reason, row.settled_at = "suppressed", reason, now
    row.feedback = "due" if row.step_id is not None else None


def _bundle_key(row: OutboxMessage) -> tuple[object, ...]:
    if row.kind != "case_alert":
        return ("single", row.id)
    # One call speaks of one case (a keypress must name it); one SMS may list several.
    return (row.phone, row.channel, row.case_id if row.channel == "voice" else None)


async def _opted_out(session: AsyncSession, rows: Sequence[OutboxMessage]) -> set[int]:
    ids = {r.responder_id for r in rows if r.channel == "sms" and r.responder_id is not None}
    if not ids:
        return set()
    query = select(Responder.id).where(Responder.id.in_(ids), Responder.sms_opt_out.is_(True))
    return set((await session.execute(query)).scalars())


async def _sent_times(
    session: AsyncSession, column: str, keys: Iterable[object], since: dt.datetime, *, requests_only: bool
) -> dict[object, list[tuple[str, dt.datetime]]]:
    keys = set(keys)
    out: dict[object, list[tuple[str, dt.datetime]]] = defaultdict(list)
    if not keys:
        return out
    col = getattr(OutboxMessage, column)
    query = select(col, OutboxMessage.channel, OutboxMessage.sent_at).where(
        col.in_(keys), OutboxMessage.sent_at >= since
    )
    if requests_only:  # bundled followers rode on their leader's request
        query = query.where(OutboxMessage.bundle_id.is_(None))
    for key, channel, at in await session.execute(query):
        out[key].append((channel, at))
    return out


async def _spent(session: AsyncSession, streets: set[int], since: dt.datetime) -> dict[int, float]:
    if not streets:
        return {}
    cost = func.sum(func.coalesce(OutboxMessage.price, OutboxMessage.cost_estimate))
    query = (
        select(OutboxMessage.street_id, cost)
        .where(OutboxMessage.street_id.in_(streets), OutboxMessage.sent_at >= since)
        .group_by(OutboxMessage.street_id)
    )
    return {int(sid or 0): float(total or 0.0) for sid, total in await session.execute(query)}


async def _budget_warnings(
    session: AsyncSession, street: Place, spent: float, budget: float, now: dt.datetime, policy: NotifyPolicy
) -> list[Notification]:
    query = (
        select(Responder)
        .join(responder_places, responder_places.c.responder_id == Responder.id)
        .where(
            responder_places.c.place_id == street.id,
            Responder.role == "street_command",
            Responder.active.is_(True),
        )
    )
    day = now.astimezone(SHANGHAI).date()
    facts = {
        "place": street.name,
        "street_id": street.id,  # the warning's own cost counts against the street too
        "pct": round(100 * spent / budget),
        "spent": f"{spent:.2f}",
        "budget": f"{budget:.2f}",
    }
    return [
        Notification(
            idempotency_key=f"budget-warning:{street.id}:{day.isoformat()}:{r.id}",
            kind="budget_warning",
            channel="sms",
            responder_id=r.id,
            phone=r.phone,
            language="en" if r.language == "en" else "zh-CN",
            case_id=None,
            case_code=None,
            step_id=None,
            due_at=now,
            facts=facts,
        )
        for r in (await session.execute(query)).scalars()
    ]


async def form_groups(
    session: AsyncSession,
    rows: Sequence[OutboxMessage],
    now: dt.datetime,
    policy: NotifyPolicy,
    gather_url: GatherUrl,
) -> list[Group]:
    """Suppress opted-out and over-budget rows, defer rate-limited ones, merge the rest into groups."""
    opted_out = await _opted_out(session, rows)
    live: list[OutboxMessage] = []
    for row in rows:
        if row.responder_id in opted_out and row.channel == "sms":
            _suppress(row, now, "opt_out")
        else:
            live.append(row)
    case_since = now - dt.timedelta(seconds=policy.per_case_window_s)
    by_case = await _sent_times(
        session, "case_id", {r.case_id for r in live if r.case_id}, case_since, requests_only=False
    )
    allowed: list[OutboxMessage] = []
    for row in live:
        if row.case_id is not None:
            times = [at for _c, at in by_case[row.case_id]]
            later = rate_defer(times, now, policy.per_case_max, policy.per_case_window_s)
            if later is not None:
                row.next_attempt_at, row.reason = later, "case rate limit"
                continue
            by_case[row.case_id].append((row.channel, now))
        allowed.append(row)
    groups: dict[tuple[object, ...], Group] = {}
    for row in allowed:
        groups.setdefault(_bundle_key(row), Group([])).rows.append(row)
    window = max(policy.per_responder_window_s, policy.bundle_window_s)
    by_phone = await _sent_times(
        session, "phone", {r.phone for r in allowed}, now - dt.timedelta(seconds=window), requests_only=True
    )
    ready: list[Group] = []
    for group in groups.values():
        leader = group.leader
        if leader.kind == "case_alert":
            sent = by_phone[leader.phone]
            same_channel = [at for ch, at in sent if ch == leader.channel]
            later, why = None, "bundled"
            if same_channel and policy.bundle_window_s > 0:
                opens = max(same_channel) + dt.timedelta(seconds=policy.bundle_window_s)
                later = opens if opens > now else None
            if later is None and not any(r.urgent for r in group.rows):
                times = [at for _ch, at in sent]
                later = rate_defer(times, now, policy.per_responder_max, policy.per_responder_window_s)
                why = "responder rate limit"
            if later is not None:
                for row in group.rows:
                    row.next_attempt_at, row.reason = later, why
                continue
            sent.append((leader.channel, now))
        ready.append(group)
    return await _apply_budget(session, ready, now, policy, gather_url)


async def _apply_budget(
    session: AsyncSession, groups: list[Group], now: dt.datetime, policy: NotifyPolicy, gather_url: GatherUrl
) -> list[Group]:
    streets = {g.leader.street_id for g in groups if g.leader.street_id is not None}
    places = (
        {p.id: p for p in (await session.execute(select(Place).where(Place.id.in_(streets)))).scalars()}
        if streets
        else {}
    )
    spent = await _spent(session, streets, day_start(now))
    out: list[Group] = []
    warned: set[int] = set()
    for group in groups:
        render(group, gather_url)
        group.cost = estimate_cost(group.leader.channel, group.body, policy)
        street = places.get(group.leader.street_id or -1)
        budget = policy.budget_for(street.code) if street else None
        if street is None or budget is None:
            out.append(group)
            continue
        state = budget_state(spent.get(street.id, 0.0), group.cost, budget, policy)
        if state == "stop" and not all(r.urgent for r in group.rows):
            keep = [r for r in group.rows if r.urgent]
            for row in group.rows:
                if not row.urgent:
                    _suppress(row, now, "budget")
            if not keep:
                continue
            group.rows = keep
            render(group, gather_url)
            group.cost = estimate_cost(group.leader.channel, group.body, policy)
        spent[street.id] = spent.get(street.id, 0.0) + group.cost
        if state != "ok" and street.id not in warned:
            warned.add(street.id)
            group.warnings = await _budget_warnings(session, street, spent[street.id], budget, now, policy)
        out.append(group)
    return out


async def streets_of(session: AsyncSession, notifications: Sequence[Notification]) -> list[int | None]:
    """The street each notification's cost counts against: ``street_id``, or the street above its place."""
    codes = {str(n.facts["place_code"]) for n in notifications if n.facts.get("place_code")}
    ids = {int(n.facts["place_id"]) for n in notifications if n.facts.get("place_id") is not None}
    paths: dict[object, str] = {}
    if codes or ids:
        query = select(Place.id, Place.code, Place.path).where(or_(Place.code.in_(codes), Place.id.in_(ids)))
        for pid, code, place_path in await session.execute(query):
            paths[pid] = paths[code] = place_path
    out: list[int | None] = []
    for n in notifications:
        if n.facts.get("street_id") is not None:
            out.append(int(n.facts["street_id"]))
            continue
        key = n.facts.get("place_code") or n.facts.get("place_id")
        path = paths.get(key)
        chain = [int(p) for p in path.strip("/").split("/")] if path else []
        # Paths run district → street → …: the street is the second id.
        out.append(chain[1] if len(chain) > 1 else None)
    return out
