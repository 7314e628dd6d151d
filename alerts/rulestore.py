"""Rules defined through the API, stored in the database, laid over the drivers' defaults, swapped in live."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.rules import Rule, parse_rules
from alerts.ruleset import RuleSet
from drivers.base import Driver
from hub.db import Database
from hub.db.cases import AlertRuleRow
from hub.db.places import Place
from hub.errors import Conflict, InvalidInput, NotFound
from provisioning.audit import record

__all__ = [
    "RuleReloader",
    "build_ruleset",
    "check_rule",
    "delete_rule",
    "get_rule",
    "list_rules",
    "save_rule",
]

# Durations a person sets on purpose: zero or less is a mistake (leave the field out for "at once").
_DURATIONS = ("for_s", "cooldown_s", "interval_s", "idle_hours")


async def _place_path(session: AsyncSession, ref: str) -> str:
    query = select(Place.path).where(Place.path == ref if ref.startswith("/") else Place.code == ref)
    path = await session.scalar(query)
    if path is None:
        raise InvalidInput(f"unknown place {ref!r}", field="place")
    return path


async def check_rule(session: AsyncSession, body: Mapping[str, Any], drivers: Mapping[str, Driver]) -> Rule:
    """Validate one rule (shape, kind's metrics and events, durations, place); InvalidInput names the field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("a rule is a JSON object", field="body")
    data = dict(body)
    for key in _DURATIONS:
        value = data.get(key)
        if isinstance(value, int | float) and value <= 0:
            raise InvalidInput(f"{key} must be more than 0, not {value}", field=key)
    if isinstance(data.get("place"), str):
        data["place"] = await _place_path(session, data["place"])
    try:
        rule = parse_rules([data], source="rule")[0]
        RuleSet.build(drivers, [rule], defaults=False, source="rule")
    except InvalidInput as exc:
        field = (exc.field or "").removeprefix("rule[0]").lstrip(".") or "body"
        raise InvalidInput(exc.message.removeprefix("rule[0]").lstrip(". :"), field=field) from exc
    return rule


async def save_rule(
    session: AsyncSession,
    body: Mapping[str, Any],
    drivers: Mapping[str, Driver],
    *,
    actor: str,
    channel: str,
    now: dt.datetime,
    rule_id: int | None = None,
) -> AlertRuleRow:
    """Create (or replace ``rule_id``); two stored rules with one name and scope are a Conflict."""
    rule = await check_rule(session, body, drivers)
    for other in await list_rules(session):
        if other.id != rule_id and _scope(other) == rule.scope:
            raise Conflict(f"rule {rule.name!r} exists for this scope already (id {other.id})", field="name")
    row = None if rule_id is None else await get_rule(session, rule_id)
    dumped = rule.model_dump(mode="json", exclude_defaults=False)
    if row is None:
        row = AlertRuleRow(
            name=rule.name,
            type=rule.type,
            body=dumped,
            created_by=actor[:120],
            created_at=now,
            updated_at=now,
        )
        session.add(row)
    else:
        row.name, row.type, row.body, row.updated_at = rule.name, rule.type, dumped, now
    await session.flush()
    record(session, actor, channel, "save", "rule", row.id, dumped, lambda: now)
    return row


def _scope(row: AlertRuleRow) -> tuple[str, str | None, str | None, str | None]:
    body = row.body
    return (body["name"], body.get("kind"), body.get("place"), body.get("device"))


async def get_rule(session: AsyncSession, rule_id: int) -> AlertRuleRow:
    """One stored rule, or NotFound."""
    row = await session.get(AlertRuleRow, rule_id)
    if row is None:
        raise NotFound(f"no rule {rule_id}")
    return row


async def list_rules(session: AsyncSession) -> list[AlertRuleRow]:
    """Stored rules by id."""
    return list((await session.execute(select(AlertRuleRow).order_by(AlertRuleRow.id))).scalars())


async def delete_rule(
    session: AsyncSession, rule_id: int, *, actor: str, channel: str, now: dt.datetime
) -> None:
    """Remove a stored rule (a driver default of the same name and scope applies again)."""
    row = await get_rule(session, rule_id)
    await session.delete(row)
    record(session, actor, channel, "delete", "rule", rule_id, {"name": row.name}, lambda: now)


async def build_ruleset(session: AsyncSession, drivers: Mapping[str, Driver]) -> RuleSet:
    """The drivers' defaults overlaid with every stored rule."""
    rows = await list_rules(session)
    return RuleSet.build(drivers, parse_rules([r.body for r in rows], source="stored"), source="stored")


class RuleReloader:
    """Rebuilds the rule set from the database and hands it to ``swap`` (e.g. the engine's), without a restart."""

    def __init__(self, db: Database, drivers: Mapping[str, Driver], swap: Callable[[RuleSet], None]) -> None:
        self.db, self.drivers, self.swap = db, drivers, swap
        self.reloads = 0

    async def reload(self) -> RuleSet:
        """Load, build and swap in; returns the new set."""
        async with self.db.session() as session:
            rules = await build_ruleset(session, self.drivers)
        self.swap(rules)
        self.reloads += 1
        return rules
