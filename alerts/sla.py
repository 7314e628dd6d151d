"""SLA policies per case category and the clock that turns them into due times."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.workdays import WorkdayCalendar
from hub.errors import Conflict, InvalidInput

__all__ = [
    "Milestone",
    "SlaClock",
    "SlaPolicies",
    "SlaPolicy",
    "Urgency",
    "default_policies",
]


class Urgency(StrEnum):
    """How a category's deadlines are counted: wall-clock minutes or working days."""

    URGENT = "urgent"
    ORDINARY = "ordinary"


class Milestone(StrEnum):
    """A step of a case that has a due time, in the order a case reaches them."""

    ACCEPT = "accept"
    REPLY = "reply"
    RESOLVE = "resolve"


_ORDER = tuple(Milestone)


class SlaPolicy(BaseModel):
    """Targets of one category; wall-clock targets are timedeltas, the reply target counts working days."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    urgency: Urgency
    accept_within: timedelta | None = Field(default=None, gt=timedelta(0))
    resolve_within: timedelta | None = Field(default=None, gt=timedelta(0))
    reply_within_workdays: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _has_a_target(self) -> SlaPolicy:
        if self.accept_within is None and self.resolve_within is None and self.reply_within_workdays is None:
            raise ValueError("a policy needs at least one target")
        return self


class SlaPolicies(BaseModel):
    """Policies by case category, with the one used for categories not listed."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    categories: dict[str, SlaPolicy]
    default: SlaPolicy | None = None

    def for_category(self, category: str) -> SlaPolicy:
        """The policy of `category`; an unlisted one gets `default`, or is refused when there is none."""
        policy = self.categories.get(category, self.default)
        if policy is None:
            raise InvalidInput(f"no SLA policy for case category {category!r}", field="category")
        return policy


def default_policies() -> SlaPolicies:
    """The street's rules: life-safety categories in minutes, everything else within 5 working days."""
    urgent = SlaPolicy(
        urgency=Urgency.URGENT, accept_within=timedelta(minutes=5), resolve_within=timedelta(hours=2)
    )
    ordinary = SlaPolicy(urgency=Urgency.ORDINARY, reply_within_workdays=5)
    categories = {name: urgent for name in ("fire", "panic", "sos", "fall")}
    categories |= {name: ordinary for name in ("battery", "offline", "tamper", "citizen_report")}
    return SlaPolicies(categories=categories, default=ordinary)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware", field=name)
    return value


@dataclass(frozen=True)
class SlaClock:
    """Due times of one case and the milestones it has met; every query takes an explicit `now`."""

    policy: SlaPolicy
    opened_at: datetime
    due: Mapping[Milestone, datetime]
    met: Mapping[Milestone, datetime] = field(default_factory=dict)
    # Milestones whose due time counted days no holiday notice decides (the library's estimate did).
    estimated: frozenset[Milestone] = frozenset()

    @classmethod
    def start(cls, policy: SlaPolicy, opened_at: datetime, calendar: WorkdayCalendar) -> SlaClock:
        """Compute the due times of a case opened at `opened_at` (the calendar counts working days)."""
        opened_at = _aware(opened_at, "opened_at")
        due: dict[Milestone, datetime] = {}
        estimated: set[Milestone] = set()
        if policy.accept_within is not None:
            due[Milestone.ACCEPT] = opened_at + policy.accept_within
        if policy.reply_within_workdays is not None:
            reply = calendar.due_after(opened_at, policy.reply_within_workdays)
            due[Milestone.REPLY] = reply.at
            if reply.estimated:
                estimated.add(Milestone.REPLY)
        if policy.resolve_within is not None:
            due[Milestone.RESOLVE] = opened_at + policy.resolve_within
        return cls(policy, opened_at, MappingProxyType(due), MappingProxyType({}), frozenset(estimated))

    @property
    def accept_due(self) -> datetime | None:
        """When the case must have been accepted, if the policy says."""
        return self.due.get(Milestone.ACCEPT)

    @property
    def reply_due(self) -> datetime | None:
        """When the case must have been answered, if the policy says."""
        return self.due.get(Milestone.REPLY)

    @property
    def resolve_due(self) -> datetime | None:
        """When the case must have been resolved, if the policy says."""
        return self.due.get(Milestone.RESOLVE)

    def meet(self, milestone: Milestone, at: datetime) -> SlaClock:
        """Record `milestone` reached at `at`; it also meets earlier steps that have a due time."""
        at = _aware(at, "at")
        if at < self.opened_at:
            raise InvalidInput("a milestone cannot precede the opening of the case", field="at")
        if milestone in self.met:
            raise Conflict(f"milestone {milestone} already met at {self.met[milestone].isoformat()}")
        met = dict(self.met)
        met[milestone] = at
        for step in _ORDER[: _ORDER.index(milestone)]:
            if step in self.due:
                met.setdefault(step, at)
        return replace(self, met=MappingProxyType(met))

    def pending(self) -> list[tuple[Milestone, datetime]]:
        """Milestones with a due time not met yet, earliest due first."""
        left = [(m, due) for m, due in self.due.items() if m not in self.met]
        return sorted(left, key=lambda item: item[1])

    def overdue(self, now: datetime) -> list[Milestone]:
        """Pending milestones whose due time has come (a due time is the first overdue instant)."""
        now = _aware(now, "now")
        return [m for m, due in self.pending() if now >= due]

    def is_overdue(self, now: datetime) -> bool:
        """True when any pending milestone is due at `now`."""
        return bool(self.overdue(now))

    def remaining(self, now: datetime) -> timedelta | None:
        """Time to the earliest pending due time (negative once overdue); None when nothing is pending."""
        now = _aware(now, "now")
        pending = self.pending()
        return pending[0][1] - now if pending else None

    def breached(self) -> list[Milestone]:
        """Milestones met, but after their due time (for reports)."""
        return [m for m, at in self.met.items() if m in self.due and at >= self.due[m]]
