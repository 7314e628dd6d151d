"""Escalation policies per place subtree (most specific wins) and the stored plan of a case's steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.cases import check_category
from hub.db.cases import EscalationPolicyRow, EscalationStep
from hub.db.people import RESPONDER_ROLES
from hub.db.places import Place
from hub.errors import InvalidInput
from provisioning.audit import record
from provisioning.places import ancestor_ids, get_place

__all__ = [
    "DEFAULT_ORDINARY",
    "DEFAULT_URGENT",
    "LEVEL_ROLE",
    "PolicySpec",
    "StepSpec",
    "cancel_planned",
    "list_steps",
    "parent_place",
    "pick_policy",
    "plan_steps",
    "policy_for",
    "save_policy",
]

# Whom to call when a case goes one level up: the level's own duty role.
LEVEL_ROLE = {
    "building": "building_leader",
    "grid": "grid_worker",
    "community": "community_duty",
    "street": "street_command",
    "district": "district",
}


class StepSpec(BaseModel):
    """One step: notify everyone of ``role`` for the case's place by ``channel``, then wait ``wait_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    role: str
    channel: Literal["sms", "voice"] = "sms"
    wait_s: int = Field(gt=0, le=30 * 86400)

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in RESPONDER_ROLES:
            raise ValueError(f"role must be one of {', '.join(RESPONDER_ROLES)}")
        return value


class PolicySpec(BaseModel):
    """A named policy for a place subtree (None: everywhere) and optionally one category."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    place: str | None = None
    category: str | None = None
    steps: list[StepSpec] = Field(min_length=1, max_length=20)

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        return None if value is None else check_category(value)


# Minutes for life-safety cases: building leader, grid worker, a call, then the community and street.
DEFAULT_URGENT = (
    StepSpec(role="building_leader", channel="sms", wait_s=120),
    StepSpec(role="grid_worker", channel="sms", wait_s=120),
    StepSpec(role="grid_worker", channel="voice", wait_s=180),
    StepSpec(role="community_duty", channel="voice", wait_s=300),
    StepSpec(role="street_command", channel="voice", wait_s=600),
)
DEFAULT_ORDINARY = (
    StepSpec(role="grid_worker", channel="sms", wait_s=86400),
    StepSpec(role="community_duty", channel="sms", wait_s=86400),
)


async def save_policy(
    session: AsyncSession, data: PolicySpec | dict[str, object], *, actor: str, channel: str, now: dt.datetime
) -> EscalationPolicyRow:
    """Create or replace (by name) a policy; an unknown place or a bad step → InvalidInput naming the field."""
    try:
        spec = data if isinstance(data, PolicySpec) else PolicySpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidInput(str(first["msg"]).removeprefix("Value error, "), field=field) from exc
    place = None if spec.place is None else await get_place(session, spec.place, field="place")
    row = await session.scalar(select(EscalationPolicyRow).where(EscalationPolicyRow.name == spec.name))
    steps = [s.model_dump() for s in spec.steps]
    if row is None:
        row = EscalationPolicyRow(name=spec.name, steps=steps, created_at=now, updated_at=now)
        session.add(row)
    row.place_id = None if place is None else place.id
    row.category, row.steps, row.updated_at = spec.category, steps, now
    await session.flush()
    detail = spec.model_dump(mode="json")
    record(session, actor, channel, "save", "escalation_policy", row.id, detail, lambda: now)
    return row


async def policy_for(
    session: AsyncSession, path: str | None, category: str, *, urgent: bool
) -> tuple[StepSpec, ...]:
    """The steps of the most specific policy: deepest place first, a category match before a catch-all."""
    chain = ancestor_ids(path) if path else []
    query = select(EscalationPolicyRow).where(
        or_(EscalationPolicyRow.place_id.is_(None), EscalationPolicyRow.place_id.in_(chain)),
        or_(EscalationPolicyRow.category.is_(None), EscalationPolicyRow.category == category),
    )
    return pick_policy(list((await session.execute(query)).scalars()), path, category, urgent=urgent)


def pick_policy(
    rows: Sequence[EscalationPolicyRow], path: str | None, category: str, *, urgent: bool
) -> tuple[StepSpec, ...]:
    """Of ``rows``, the steps of the policy that fits best (the defaults when none fits)."""
    chain = ancestor_ids(path) if path else []
    depth = {pid: i + 1 for i, pid in enumerate(chain)}
    fits = [
        row
        for row in rows
        if (row.place_id is None or row.place_id in depth) and row.category in (None, category)
    ]
    if not fits:
        return DEFAULT_URGENT if urgent else DEFAULT_ORDINARY

    def rank(row: EscalationPolicyRow) -> tuple[int, int, int]:
        return (depth.get(row.place_id, 0) if row.place_id else 0, row.category is not None, row.id)

    best = max(fits, key=rank)
    return tuple(StepSpec.model_validate(s) for s in best.steps)


async def plan_steps(
    session: AsyncSession,
    case_id: int,
    place_id: int | None,
    steps: Sequence[StepSpec],
    now: dt.datetime,
    *,
    first_seq: int = 0,
) -> list[EscalationStep]:
    """Store the steps with their due times: the first now, each next one after the previous step's wait."""
    params, due = [], now
    for seq, spec in enumerate(steps, start=first_seq):
        params.append(
            {
                "case_id": case_id,
                "seq": seq,
                "role": spec.role,
                "channel": spec.channel,
                "wait_s": spec.wait_s,
                "origin": "policy",
                "place_id": place_id,
                "state": "planned",
                "due_at": due,
                "done_at": None,
                "responder_ids": [],
                "note": "",
            }
        )
        due = due + dt.timedelta(seconds=spec.wait_s)
    if not params:
        return []
    # One INSERT for all steps: this runs inside the alert path, where every round trip is latency.
    result = await session.scalars(insert(EscalationStep).returning(EscalationStep), params)
    return sorted(result.all(), key=lambda step: step.seq)


async def cancel_planned(session: AsyncSession, case_id: int, why: str) -> int:
    """Cancel every step not taken yet (the case was accepted, cancelled or resolved); returns how many."""
    result = await session.execute(
        update(EscalationStep)
        .where(EscalationStep.case_id == case_id, EscalationStep.state == "planned")
        .values(state="cancelled", note=why)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def list_steps(session: AsyncSession, case_id: int) -> list[EscalationStep]:
    """The case's steps, planned and done, by due time."""
    query = select(EscalationStep).where(EscalationStep.case_id == case_id)
    query = query.order_by(EscalationStep.due_at, EscalationStep.seq, EscalationStep.id)
    return list((await session.execute(query)).scalars())


async def parent_place(session: AsyncSession, place: Place) -> Place | None:
    """The place one level up, or None at the top."""
    chain = ancestor_ids(place.path)
    return None if len(chain) < 2 else await session.get(Place, chain[-2])
