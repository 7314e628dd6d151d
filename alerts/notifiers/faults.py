"""What the outbox does with a message that fails for the hub's own reasons (not Twilio's answer).

Two faults: a row that cannot be rendered or grouped (it must not hold up the rows claimed with it), and a send that
raises something other than ``NotifierError``. Either is retried with the hub's jittered backoff up to the policy's
``max_attempts``, then the row is ``parked``: never sent again by itself, the escalation told (as for a failed
message), and an item in the parking lot an operator lists and retries (``GET/POST /api/v1/parked``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.limits import NotifyPolicy
from alerts.notifiers.gate import Group, form_groups
from hub.db.outbox import OutboxMessage
from hub.errors import Conflict, NotFound
from hub.retry import RetryPolicy, delay

if TYPE_CHECKING:
    from alerts.outbox import Outbox

__all__ = ["Poisoned", "claim_groups", "feedback_failed", "park_poisoned", "refeed", "send_crashed", "unpark"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Poisoned:
    """A row that failed for the last time in this cycle, to be parked once the claim has committed."""

    row_id: int
    summary: str
    error: Exception
    attempts: int


def _policy(policy: NotifyPolicy) -> RetryPolicy:
    """The outbox's retry bound and waits, as the hub's one jittered policy."""
    return RetryPolicy(
        attempts=policy.max_attempts, initial_s=policy.backoff_base_s, max_s=policy.backoff_max_s
    )


def _summary(row: OutboxMessage) -> str:
    return f"{row.kind} by {row.channel} to responder {row.responder_id} about {row.case_code or '-'}"


def _failed_row(
    row: OutboxMessage, exc: Exception, now: dt.datetime, policy: NotifyPolicy
) -> Poisoned | None:
    """Count one failed attempt on ``row``: pending again after a jittered wait, or parked (returned)."""
    row.attempts += 1
    row.reason = f"{type(exc).__name__}: {exc}"[:200]
    row.bundle_id = None
    if row.attempts < policy.max_attempts:
        row.status = "pending"
        row.next_attempt_at = now + dt.timedelta(seconds=delay(_policy(policy), row.attempts))
        return None
    row.status, row.settled_at = "parked", now
    if row.step_id is not None and row.feedback != "done":
        row.feedback = "due"  # the escalation moves on, as for a message that failed
    return Poisoned(row.id, _summary(row), exc, row.attempts)


async def claim_groups(
    outbox: Outbox,
    session: AsyncSession,
    rows: Sequence[OutboxMessage],
    now: dt.datetime,
    opted_out: set[int],
) -> tuple[list[Group], list[Poisoned]]:
    """Groups of the claimed rows; when that fails, row by row, so one bad row costs only its own send."""
    policy = outbox.policy
    try:
        return await form_groups(session, rows, now, policy, outbox.gather_url, opted_out), []
    except Exception:
        log.warning(
            "outbox: %d claimed rows could not be grouped together; trying them one by one", len(rows)
        )
    groups: list[Group] = []
    poisoned: list[Poisoned] = []
    for row in rows:
        try:
            groups += await form_groups(session, [row], now, policy, outbox.gather_url, opted_out)
        except Exception as exc:
            outbox.outcomes.labels(row.channel, "error").inc()
            parked = _failed_row(row, exc, now, policy)
            if parked is not None:
                poisoned.append(parked)
    return groups, poisoned


async def park_poisoned(outbox: Outbox, poisoned: Sequence[Poisoned]) -> None:
    """Park the rows given up on (after the claim committed their "parked" status)."""
    for item in poisoned:
        outbox.outcomes.labels("-", "parked").inc()
        if outbox.parking is not None:
            await outbox.parking.park(
                "message",
                str(item.row_id),
                item.summary,
                {"outbox_id": item.row_id},
                item.error,
                item.attempts,
            )
    if poisoned:
        outbox.report_soon()


async def send_crashed(outbox: Outbox, group: Group, exc: Exception) -> None:
    """A send raised something unexpected: the group's rows are retried like a retryable failure, then parked."""
    log.error("outbox #%s: the send raised %s", group.leader.id, type(exc).__name__, exc_info=exc)
    now = outbox.clock()
    poisoned: list[Poisoned] = []
    async with outbox.db.session() as session:
        for stale in group.rows:
            row = await session.get(OutboxMessage, stale.id, with_for_update=True)
            if row is None or row.status != "sending":
                continue  # a status callback settled it meanwhile
            row.attempts -= 1  # the claim counted this attempt already
            parked = _failed_row(row, exc, now, outbox.policy)
            if parked is not None:
                poisoned.append(parked)
    outbox.outcomes.labels(group.leader.channel, "error").inc(len(group.rows))
    await park_poisoned(outbox, poisoned)
    outbox.wake()


async def unpark(outbox: Outbox, payload: dict[str, Any]) -> None:
    """An operator's retry of a parked message: pending again with fresh attempts, the worker woken."""
    outbox_id = int(payload["outbox_id"])
    async with outbox.db.session() as session:
        query = (
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id, OutboxMessage.status == "parked")
            .values(
                status="pending", attempts=0, next_attempt_at=outbox.clock(), reason=None, settled_at=None
            )
        )
        if (await session.execute(query)).rowcount != 1:  # type: ignore[attr-defined]
            if await session.get(OutboxMessage, outbox_id) is None:
                raise NotFound(f"no outbox message {outbox_id}")
            raise Conflict(f"outbox message {outbox_id} is not parked")
    outbox.wake()


async def feedback_failed(outbox: Outbox, row: OutboxMessage, exc: Exception) -> bool:
    """Telling the escalation of a failed message failed: True (parked) once it failed ``max_attempts`` times."""
    if outbox.parking is None:
        return False
    attempts = outbox.parking.tried(f"feedback:{row.id}")
    if attempts < outbox.policy.max_attempts:
        return False
    outbox.parking.forget(f"feedback:{row.id}")
    summary = f"escalation not told that message #{row.id} ({row.channel}) {row.reason or row.status}"
    await outbox.parking.park("feedback", str(row.id), summary, {"outbox_id": row.id}, exc, attempts)
    return True


async def refeed(outbox: Outbox, payload: dict[str, Any]) -> None:
    """An operator's retry of parked feedback: owed again, told at the worker's next turn."""
    outbox_id = int(payload["outbox_id"])
    async with outbox.db.session() as session:
        query = (
            update(OutboxMessage)
            .where(OutboxMessage.id == outbox_id, OutboxMessage.feedback == "parked")
            .values(feedback="due")
        )
        if (await session.execute(query)).rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"outbox message {outbox_id} owes no parked feedback")
    outbox.report_soon()
