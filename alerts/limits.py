"""Notification limits: rate windows, the daily street budget, bundling and retry backoff (pure policy).

The outbox asks these functions what to do with a group of due messages; the database counting is
the caller's (this module imports no tables, so ``hub.config`` can hold ``NotifyPolicy``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "SHANGHAI",
    "BudgetState",
    "NotifyPolicy",
    "backoff",
    "budget_state",
    "day_start",
    "estimate_cost",
    "is_urgent",
    "rate_defer",
    "sms_segments",
]

# Budgets are per calendar day of the street, which keeps UTC+8 all year.
SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
# GSM 03.38 basic set: a message of only these characters packs 160 to a segment.
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
BudgetState = Literal["ok", "warn", "stop"]


class NotifyPolicy(BaseModel):
    """Limits, budget and retry policy of the notifiers; amounts in Twilio's price unit (USD)."""

    model_config = {"extra": "forbid"}

    per_responder_max: int = Field(default=6, ge=1)
    per_responder_window_s: float = Field(default=600.0, gt=0)
    per_case_max: int = Field(default=30, ge=1)
    per_case_window_s: float = Field(default=3600.0, gt=0)
    # Messages to one phone and channel within this many seconds of the last one are merged into one.
    bundle_window_s: float = Field(default=10.0, ge=0)
    # Per street and Shanghai day; None = no budget. ``street_budgets`` overrides by street place code.
    daily_budget: float | None = Field(default=None, gt=0)
    street_budgets: dict[str, float] = Field(default_factory=dict)
    warn_ratio: float = Field(default=0.8, gt=0, lt=1)
    sms_segment_price: float = Field(default=0.05, ge=0)
    voice_minute_price: float = Field(default=0.10, ge=0)
    call_minutes_estimate: float = Field(default=1.0, gt=0)
    # Case alerts that go out even past the budget and skip the per-responder window.
    urgent_categories: tuple[str, ...] = ("fire", "panic", "fall", "sos")
    urgent_severities: tuple[str, ...] = ("critical",)
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    # A row still "sending" this long after its claim was lost between send and record.
    sending_lease_s: float = Field(default=120.0, gt=0)
    request_timeout_s: float = Field(default=10.0, gt=0)
    poll_interval_s: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=100, ge=1)
    concurrency: int = Field(default=16, ge=1)

    def budget_for(self, street_code: str | None) -> float | None:
        """The daily budget of a street (its override, or the default)."""
        if street_code is not None and street_code in self.street_budgets:
            return self.street_budgets[street_code]
        return self.daily_budget


def is_urgent(kind: str, facts: Mapping[str, Any], policy: NotifyPolicy) -> bool:
    """Tell whether a message must go out whatever the budget (urgent case alerts, budget warnings)."""
    if kind == "budget_warning":
        return True
    if kind != "case_alert":
        return False
    return (
        str(facts.get("category", "")) in policy.urgent_categories
        or str(facts.get("severity", "")) in policy.urgent_severities
    )


def sms_segments(text: str) -> int:
    """How many SMS segments Twilio will bill for ``text`` (GSM-7 or UCS-2)."""
    if all(ch in _GSM7 for ch in text):
        single, multi = 160, 153
    else:
        single, multi = 70, 67
    length = len(text.encode("utf-16-le")) // 2 if single == 70 else len(text)
    if length <= single:
        return 1
    return -(-length // multi)


def estimate_cost(channel: str, body: str, policy: NotifyPolicy) -> float:
    """A cost estimate before Twilio reports the price: per SMS segment, or per expected call minute."""
    if channel == "sms":
        return sms_segments(body) * policy.sms_segment_price
    if channel == "voice":
        return policy.call_minutes_estimate * policy.voice_minute_price
    return 0.0


def day_start(now: dt.datetime) -> dt.datetime:
    """The start (in UTC) of the street's calendar day holding ``now``."""
    local = now.astimezone(SHANGHAI)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


def budget_state(spent: float, next_cost: float, budget: float | None, policy: NotifyPolicy) -> BudgetState:
    """Where spending would stand after this message: ok, past the warning ratio, or past the budget."""
    if budget is None:
        return "ok"
    after = spent + next_cost
    if after > budget:
        return "stop"
    if after >= budget * policy.warn_ratio:
        return "warn"
    return "ok"


def rate_defer(
    sent_times: Sequence[dt.datetime], now: dt.datetime, limit: int, window_s: float
) -> dt.datetime | None:
    """When a new message may go out under "``limit`` per ``window_s``", or None if it may go now."""
    window = dt.timedelta(seconds=window_s)
    recent = sorted(t for t in sent_times if t > now - window)
    if len(recent) < limit:
        return None
    # The window frees up when the oldest message that keeps it full drops out.
    return recent[len(recent) - limit] + window


def backoff(attempts: int, policy: NotifyPolicy) -> dt.timedelta:
    """The wait before attempt ``attempts + 1``: exponential, capped."""
    seconds = min(policy.backoff_base_s * 2 ** max(attempts - 1, 0), policy.backoff_max_s)
    return dt.timedelta(seconds=seconds)
