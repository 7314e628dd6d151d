"""Cases, their timeline and alerts, escalation policies and planned steps, stored rules, household away mode."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.base import Base
from hub.db.places import PATH_TYPE

__all__ = [
    "CASE_STATES",
    "STEP_STATES",
    "AlertRuleRow",
    "Case",
    "CaseAlert",
    "CaseCounter",
    "CaseEvent",
    "EscalationPolicyRow",
    "EscalationStep",
    "HouseholdAway",
]

CASE_STATES = ("discovered", "accepted", "in_progress", "resolved", "closed", "cancelled")
STEP_STATES = ("planned", "done", "skipped", "cancelled")


class Case(Base):
    """One incident followed from discovery to closing; ``code`` is what people see (e.g. C-20261128-0042)."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(
            "state IN ('discovered', 'accepted', 'in_progress', 'resolved', 'closed', 'cancelled')",
            name="state",
        ),
        # Correlation looks for an open case of one category in one building.
        Index("ix_cases_building_category_state", "building_id", "category", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(24), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    # The alert fingerprint that opened the case (None for a person's report).
    fingerprint: Mapped[str | None] = mapped_column(String(32), index=True)
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"), index=True)
    place_path: Mapped[str | None] = mapped_column(PATH_TYPE, index=True)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    # The summary in each language people read, {"zh-CN": …, "en": …} (None: only ``summary``, as typed).
    summary_texts: Mapped[dict[str, str] | None] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    reporter_phone: Mapped[str | None] = mapped_column(String(16))
    alert_count: Mapped[int] = mapped_column(Integer, default=0)
    # Whether any of the case's alert conditions still holds (a cleared condition does not close a case).
    condition_active: Mapped[bool] = mapped_column(Boolean, default=False)
    overdue: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    # The place the case has been escalated to (one level up per overdue step), None while not escalated.
    escalated_place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"))
    reopened: Mapped[int] = mapped_column(Integer, default=0)
    accepted_by: Mapped[str | None] = mapped_column(String(120))
    accepted_responder_id: Mapped[int | None] = mapped_column(
        ForeignKey("responders.id", ondelete="SET NULL")
    )
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(Integer)
    accept_due: Mapped[dt.datetime | None]
    reply_due: Mapped[dt.datetime | None]
    # True while reply_due counted days no State Council notice decides (estimated from the holidays library).
    reply_due_estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    resolve_due: Mapped[dt.datetime | None]
    opened_at: Mapped[dt.datetime] = mapped_column(index=True)
    last_alert_at: Mapped[dt.datetime | None]
    accepted_at: Mapped[dt.datetime | None]
    resolved_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    updated_at: Mapped[dt.datetime]


class CaseAlert(Base):
    """One alert fingerprint joined to a case: first and last seen, how many times, and whether it holds now."""

    __tablename__ = "case_alerts"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    name: Mapped[str] = mapped_column(String(100))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"))
    count: Mapped[int] = mapped_column(Integer, default=1)
    firing: Mapped[bool] = mapped_column(Boolean, default=True)
    first_at: Mapped[dt.datetime]
    last_at: Mapped[dt.datetime]
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CaseEvent(Base):
    """One line of a case's timeline: a transition, an alert merged (with the dedup reason), a step, a flag."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(120))
    channel: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CaseCounter(Base):
    """The last case number handed out on one day (Asia/Shanghai), for short human codes."""

    __tablename__ = "case_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class EscalationPolicyRow(Base):
    """Ordered steps for cases in a place subtree (None = everywhere), optionally for one category."""

    __tablename__ = "escalation_policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="CASCADE"), index=True)
    category: Mapped[str | None] = mapped_column(String(32))
    # [{"role": "grid_worker", "channel": "sms", "wait_s": 120}, ...]
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class EscalationStep(Base):
    """A planned notification step of a case: stored with its due time so a restart neither loses nor repeats it."""

    __tablename__ = "escalation_steps"
    __table_args__ = (
        CheckConstraint("state IN ('planned', 'done', 'skipped', 'cancelled')", name="state"),
        Index("ix_escalation_steps_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    wait_s: Mapped[int] = mapped_column(Integer)
    # Why the step exists: "policy", "fallback" (a failed SMS becomes a call), "overdue" (escalated a level up).
    origin: Mapped[str] = mapped_column(String(16), default="policy")
    place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id", ondelete="RESTRICT"))
    state: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime]
    done_at: Mapped[dt.datetime | None]
    responder_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    note: Mapped[str] = mapped_column(Text, default="")


class AlertRuleRow(Base):
    """A rule defined through the API; ``body`` is the validated rule (alerts.rules) as JSON."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    type: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class HouseholdAway(Base):
    """A household whose residents are away: its activity window is suppressed until they are back."""

    __tablename__ = "household_away"

    place_id: Mapped[int] = mapped_column(ForeignKey("places.id", ondelete="CASCADE"), primary_key=True)
    since: Mapped[dt.datetime]
    until: Mapped[dt.datetime | None]
    set_by: Mapped[str] = mapped_column(String(120))
    channel: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
