"""The case loop as a pure state machine: states, actions, allowed transitions, short human case codes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from hub.errors import Conflict, InvalidInput

__all__ = [
    "CASE_CATEGORIES",
    "CASE_CHANNELS",
    "OPEN_STATES",
    "Action",
    "CaseSource",
    "CaseState",
    "EventKind",
    "Move",
    "allowed",
    "case_code",
    "check_category",
    "check_channel",
    "next_state",
]

# China keeps UTC+8 all year: the day in a case code is the street's day, not UTC's.
_SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
CASE_CHANNELS = ("api", "sms", "voice", "central", "system", "cli")
# The drivers' alert categories plus what only people report or the hub itself notices.
CASE_CATEGORIES = (
    "fire",
    "panic",
    "fall",
    "sos",
    "intrusion",
    "tamper",
    "fault",
    "battery",
    "activity",
    "offline",
    "test",
    "citizen_report",
)


class CaseState(StrEnum):
    """Where a case is in its loop: discover → accept → handle → resolve → close (or cancel)."""

    DISCOVERED = "discovered"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


OPEN_STATES = (CaseState.DISCOVERED, CaseState.ACCEPTED, CaseState.IN_PROGRESS, CaseState.RESOLVED)


class CaseSource(StrEnum):
    """Who opened a case: the sensors, a citizen, or a grid worker on the round."""

    SENSOR = "sensor"
    CITIZEN = "citizen"
    GRID_WORKER = "grid_worker"


class Action(StrEnum):
    """What people (or the hub) do to a case."""

    ACCEPT = "accept"
    START = "start"
    RESOLVE = "resolve"
    CLOSE = "close"
    CANCEL = "cancel"
    REOPEN = "reopen"


class EventKind(StrEnum):
    """The kinds of timeline lines."""

    OPENED = "opened"
    TRANSITION = "transition"
    ALERT = "alert"
    CLEARED = "cleared"
    OVERDUE = "overdue"
    ESCALATED = "escalated"
    STEP = "step"
    FEEDBACK = "feedback"
    RATED = "rated"
    DEADLINE = "deadline"  # a due time computed again (an estimated reply deadline firmed up by a notice)


_S = CaseState
_MOVES: dict[tuple[CaseState, Action], CaseState] = {
    (_S.DISCOVERED, Action.ACCEPT): _S.ACCEPTED,
    (_S.DISCOVERED, Action.CANCEL): _S.CANCELLED,
    (_S.ACCEPTED, Action.START): _S.IN_PROGRESS,
    (_S.ACCEPTED, Action.RESOLVE): _S.RESOLVED,
    (_S.ACCEPTED, Action.CANCEL): _S.CANCELLED,
    (_S.IN_PROGRESS, Action.RESOLVE): _S.RESOLVED,
    (_S.IN_PROGRESS, Action.CANCEL): _S.CANCELLED,
    (_S.RESOLVED, Action.CLOSE): _S.CLOSED,
    (_S.RESOLVED, Action.REOPEN): _S.DISCOVERED,
    (_S.CLOSED, Action.REOPEN): _S.DISCOVERED,
}


@dataclass(frozen=True, slots=True)
class Move:
    """One allowed transition."""

    action: Action
    before: CaseState
    after: CaseState


def allowed(state: CaseState) -> list[Action]:
    """The actions the state allows, in the loop's order."""
    return [action for (s, action) in _MOVES if s is state]


def next_state(state: str, action: str) -> Move:
    """The transition ``action`` makes from ``state``; Conflict (naming the state) when it is not allowed."""
    try:
        current, act = CaseState(state), Action(action)
    except ValueError as exc:
        raise InvalidInput(f"unknown action {action!r}", field="action") from exc
    after = _MOVES.get((current, act))
    if after is None:
        can = ", ".join(allowed(current)) or "nothing (the case is over)"
        raise Conflict(f"cannot {act} a case that is {current}; from {current} one can: {can}")
    return Move(act, current, after)


def check_channel(channel: str) -> str:
    """The channel itself, or InvalidInput."""
    if channel not in CASE_CHANNELS:
        raise InvalidInput(f"channel {channel!r} is not one of {', '.join(CASE_CHANNELS)}", field="channel")
    return channel


def check_category(category: str) -> str:
    """The category itself, or InvalidInput naming it."""
    if category not in CASE_CATEGORIES:
        raise InvalidInput(
            f"category {category!r} is not one of {', '.join(CASE_CATEGORIES)}", field="category"
        )
    return category


def case_code(at: dt.datetime, number: int) -> str:
    """The short code people read in an SMS: C-<Shanghai date>-<number of the day, 4+ digits>."""
    return f"C-{at.astimezone(_SHANGHAI):%Y%m%d}-{number:04d}"
