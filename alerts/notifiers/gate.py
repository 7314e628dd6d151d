"""Decide, for the due rows of one worker cycle, what goes out now, merged how, and what waits or stops."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
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

    @property
    def urgent(self) -> bool:
        """Whether any of its rows is urgent (a bundle may be led by a minor one)."""
        return any(row.urgent for row in self.rows)


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


Recent = dict[object, list[tuple[str, dt.datetime]]]


def _went_out_since(since: dt.datetime) -> Any:
    """Sent since ``since``, or claimed since then and still in flight (sends run while the next claim does)."""
    m = OutboxMessage
    return or_(m.sent_at >= since, and_(m.status == "sending", m.claimed_at >= since))


async def _recent(
    session: AsyncSession,
    cases: set[int],
    case_since: dt.datetime,
    phones: set[str],
    phone_since: dt.datetime,
) -> tuple[Recent, Recent]:
    """(channel, time) of messages gone out lately, by case (every row) and by phone (requests only)."""
    by_case: Recent = defaultdict(list)
    by_phone: Recent = defaultdict(list)
    if not cases and not phones:
        return by_case, by_phone
    m = OutboxMessage
    # One statement for both windows: this runs between an alarm and its first SMS.
    query = select(m.case_id, m.phone, m.channel, func.coalesce(m.sent_at, m.claimed_at), m.bundle_id)
    query = query.where(
        or_(
            and_(m.case_id.in_(cases), _went_out_since(case_since)),
            and_(m.phone.in_(phones), _went_out_since(phone_since)),
        )
    )
    for case_id, phone, channel, at, bundle_id in await session.execute(query):
        if case_id in cases and at >= case_since:
            by_case[case_id].append((channel, at))
        if phone in phones and at >= phone_since and bundle_id is None:  # followers rode on a request
            by_phone[phone].append((channel, at))
    return by_case, by_phone


async def _spent(session: AsyncSession, streets: set[int], since: dt.datetime) -> dict[int, float]:
    if not streets:
        return {}
    cost = func.sum(func.coalesce(OutboxMessage.price, OutboxMessage.cost_estimate))
    query = (
        select(OutboxMessage.street_id, cost)
        .where(OutboxMessage.street_id.in_(streets), _went_out_since(since))
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
        Notification.caseless_sms(
            f"budget-warning:{street.id}:{day.isoformat()}:{r.id}",
            "budget_warning",
            r.id,
            r.phone,
            r.language,
            now,
            facts,
        )
        for r in (await session.execute(query)).scalars()
    ]


async def form_groups(
    session: AsyncSession,
    rows: Sequence[OutboxMessage],
    now: dt.datetime,
    policy: NotifyPolicy,
    gather_url: GatherUrl,
    opted_out: set[int] | None = None,
) -> list[Group]:
    """Suppress opted-out and over-budget rows, defer rate-limited ones, merge the rest into groups.

    ``opted_out``: the responders among the rows who sent STOP, when the caller read it with the rows.
    """
    if opted_out is None:
        opted_out = await _opted_out(session, rows)
    live: list[OutboxMessage] = []
    for row in rows:
        if row.responder_id in opted_out and row.channel == "sms":
            _suppress(row, now, "opt_out")
        else:
            live.append(row)
    window = max(policy.per_responder_window_s, policy.bundle_window_s)
    by_case, by_phone = await _recent(
        session,
        {r.case_id for r in live if r.case_id},
        now - dt.timedelta(seconds=policy.per_case_window_s),
        {r.phone for r in live},
        now - dt.timedelta(seconds=window),
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
            if later is None and not group.urgent:
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
    if policy.daily_budget is None and not policy.street_budgets:  # no budget anywhere: nothing to look up
        for group in groups:
            render(group, gather_url)
            group.cost = estimate_cost(group.leader.channel, group.body, policy)
        return groups
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
    unknown = [n for n in notifications if n.facts.get("street_id") is None]
    codes = {str(n.facts["place_code"]) for n in unknown if n.facts.get("place_code")}
    ids = {int(n.facts["place_id"]) for n in unknown if n.facts.get("place_id") is not None}
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
