"""Failed rule evaluations: counted per rule with the last error, logged without flooding; the ticks' recent health.

One failure costs one evaluation (one rule for one device or household), never the tick or the reading: the
engine catches it where it happens and reports it here (Prometheus' ``rule_evaluation_failures_total`` manner).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ENGINE", "FailureSink", "LastError", "RuleFailures", "TickHealth"]

log = logging.getLogger(__name__)
# The label of failures no single rule can be blamed for (the device lookup, the rule set's compilation).
ENGINE = "engine"
# (rule name, device serial or household, exception, now in epoch seconds)
FailureSink = Callable[[str, str | None, Exception, float], None]


@dataclass(frozen=True, slots=True)
class LastError:
    """The most recent failure of one rule."""

    at: float
    subject: str | None  # the device serial, or "household <id>"
    error: str

    def as_dict(self) -> dict[str, Any]:
        """For the API."""
        return {"at": self.at, "subject": self.subject, "error": self.error}


class RuleFailures:
    """Counts failures per rule and keeps the last error of each; logs a rule's first failure, then one a minute."""

    def __init__(self, on_failure: Callable[[str], None] | None = None, log_every: float = 60.0) -> None:
        self.counts: Counter[str] = Counter()
        self.last: dict[str, LastError] = {}
        self.total = 0
        self.on_failure = on_failure
        self._log_every = log_every
        self._logged: dict[str, float] = {}

    def __call__(self, rule: str, subject: str | None, exc: Exception, now: float) -> None:
        """Record one failed evaluation (the engine's ``FailureSink``)."""
        self.total += 1
        self.counts[rule] += 1
        self.last[rule] = LastError(now, subject, f"{type(exc).__name__}: {exc}"[:500])
        if self.on_failure is not None:
            self.on_failure(rule)
        logged = self._logged.get(rule)
        if logged is None or now - logged >= self._log_every:
            self._logged[rule] = now
            log.error(
                "rules: %s failed for %s (%d failures so far)",
                rule,
                subject or "-",
                self.counts[rule],
                exc_info=exc,
            )

    def of(self, rule: str) -> dict[str, Any]:
        """A rule's failures and last error, for the API."""
        last = self.last.get(rule)
        return {"failures": self.counts[rule], "last_error": None if last is None else last.as_dict()}


class TickHealth:
    """The last ``window`` ticks: degraded when at least half of them failed (ticks that keep failing)."""

    def __init__(self, window: int = 20) -> None:
        self._recent: deque[bool] = deque(maxlen=window)
        self.failed_total = 0

    def record(self, ok: bool) -> None:
        """One tick ran; ``ok`` is false when it raised or any evaluation in it failed."""
        self._recent.append(ok)
        self.failed_total += not ok

    @property
    def failed(self) -> int:
        """Failed ticks among the recent ones."""
        return sum(not ok for ok in self._recent)

    @property
    def window(self) -> int:
        """How many recent ticks are kept."""
        return self._recent.maxlen or 0

    @property
    def degraded(self) -> bool:
        """At least half a window's worth of the recent ticks failed (10 of the last 20: 5 s at 0.5 s a tick)."""
        return 2 * self.failed >= self.window
