"""The outbox: notifications become rows in the caller's transaction; a named worker task sends them.

At least once, never twice for one step and person: the idempotency key is UNIQUE, and a row is
claimed as "sending" (committed) *before* the request to Twilio. A row still "sending" after the lease
(the worker died between send and record) is never resent blindly: a status callback for its outbox
id settles it, or the sweep marks it "unknown" and tells ``DeliveryFeedback`` so the escalation moves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import case, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.contracts import CaseActions, DeliveryFeedback, Notification
from alerts.limits import NotifyPolicy, backoff, is_urgent
from alerts.notifiers.base import ChannelSender, Outgoing, Sent
from alerts.notifiers.delivery import report_feedback, sweep_lost
from alerts.notifiers.faults import Poisoned, claim_groups, park_poisoned, send_crashed
from alerts.notifiers.gate import Group, streets_of
from alerts.notifiers.rows import insert_ignoring_duplicates, jsonable
from alerts.parking import ParkingLot
from hub.config import Settings
from hub.db import Database
from hub.db.outbox import IN_FLIGHT_STATUSES, OutboxMessage
from hub.db.people import Responder
from hub.errors import NotifierError
from hub.lifecycle import TaskSet
from hub.priority import UrgentLane
from provisioning.audit import record, utcnow

__all__ = ["Outbox"]

log = logging.getLogger(__name__)


class Outbox:
    """The ``Notifier`` of the case side, and the component whose worker task delivers the rows."""

    name = "outbox"

    def __init__(
        self,
        db: Database,
        settings: Settings,
        channels: Mapping[str, ChannelSender],
        *,
        policy: NotifyPolicy | None = None,
        actions: CaseActions | None = None,
        feedback: DeliveryFeedback | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        registry: CollectorRegistry | None = None,
        lane: UrgentLane | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.channels = dict(channels)
        self.policy = policy or settings.twilio.policy
        self.actions = actions
        self.feedback = feedback
        self.clock = clock
        registry = registry or CollectorRegistry()
        self.requests = Counter(
            "iothub_twilio_requests", "Requests sent to Twilio", ["channel"], registry=registry
        )
        self.outcomes = Counter(
            "iothub_outbox_outcomes", "Outbox rows by outcome", ["channel", "outcome"], registry=registry
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sends = TaskSet()
        self._limit = asyncio.Semaphore(self.policy.concurrency)
        self._books_now = False
        self._in_flight = 0
        # Urgent rows committed and not yet handed to their channel hold the lane (hub/priority.py).
        self.lane = lane
        self._urgent_holds: list[Callable[[], None]] = []
        self._urgent_sending: set[int] = set()  # leader ids of urgent groups not yet handed over
        self.parking: ParkingLot | None = None  # where rows that keep failing for the hub's reasons go
        self.fence: Callable[[], bool] | None = None  # HA: this node still holds the lease (hub/ha)

    # -- Notifier ---------------------------------------------------------------------------------

    async def enqueue(self, session: AsyncSession, notifications: list[Notification]) -> int:
        """Store the notifications not stored before (by idempotency key); returns how many were new."""
        unique = list({n.idempotency_key: n for n in reversed(notifications)}.values())[::-1]
        if not unique:
            return 0
        now = self.clock()
        streets = await streets_of(session, unique)
        rows = [
            {
                "idempotency_key": n.idempotency_key,
                "kind": n.kind,
                "channel": n.channel,
                "case_id": n.case_id,
                "case_code": n.case_code,
                "step_id": n.step_id,
                "responder_id": n.responder_id,
                "phone": n.phone,
                "language": n.language,
                "street_id": street,
                "urgent": is_urgent(n.kind, n.facts, self.policy),
                "facts": jsonable(n.facts),
                "status": "pending",
                "due_at": n.due_at,
                "next_attempt_at": n.due_at,
                "created_at": now,
                "attempts": 0,
                "cost_estimate": 0.0,
            }
            for n, street in zip(unique, streets, strict=True)
        ]
        stmt = insert_ignoring_duplicates(session.get_bind().dialect.name)
        new = len((await session.execute(stmt.returning(OutboxMessage.id), rows)).all())
        if new:
            # Wake the worker once the caller's transaction commits (not before: it could roll back).
            urgent = any(row["urgent"] for row in rows)
            event.listen(session.sync_session, "after_commit", lambda _s: self._arrived(urgent), once=True)
        return new

    def _arrived(self, urgent: bool) -> None:
        self._wake.set()
        if urgent and self.lane is not None:
            self._urgent_holds.append(self.lane.hold())

    def _settle_urgent(self) -> None:
        """Release the lane once no urgent row waits to be handed to its channel."""
        if not self._urgent_sending:
            while self._urgent_holds:
                self._urgent_holds.pop()()

    # -- Component --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker task, and warm the channels up in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-worker")
            for channel in {id(c): c for c in self.channels.values()}.values():
                warm = getattr(channel, "warm", None)
                if warm is not None:
                    self._sends.spawn(self._warm(channel.name, warm), f"outbox-warm-{channel.name}")

    async def _warm(self, name: str, warm: Callable[[], Awaitable[None]]) -> None:
        # The first request of a process otherwise pays DNS, TCP and TLS between an alarm and its SMS.
        try:
            await warm()
        except NotifierError as exc:
            log.warning("outbox: %s channel warm-up failed: %s", name, exc.message)

    async def stop(self) -> None:
        """Stop the worker (a row it was sending stays "sending" for the sweep) and close the channels."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._sends.stop(self.policy.request_timeout_s)
        for channel in {id(c): c for c in self.channels.values()}.values():
            await channel.close()

    async def health(self) -> tuple[bool, str]:
        """Healthy while the worker runs; says how many rows wait."""
        running = self._task is not None and not self._task.done()
        async with self.db.session() as session:
            waiting = await session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")
            )
        return running, f"{'running' if running else 'stopped'}, {waiting} pending"

    def wake(self) -> None:
        """Make the worker look for due rows now."""
        self._wake.set()

    def report_soon(self) -> None:
        """Tell the escalation of settled failures at the worker's next turn, not after a poll interval."""
        self._books_now = True
        self._wake.set()

    def callback_url(self, outbox_id: int) -> str | None:
        """Where Twilio reports the status of this row's request."""
        base = self.settings.web.public_base_url
        return f"{base.rstrip('/')}/twilio/status/{outbox_id}" if base else None

    def gather_url(self, outbox_id: int) -> str | None:
        """Where Twilio posts the key pressed during this row's call."""
        base = self.settings.web.public_base_url
        return f"{base.rstrip('/')}/twilio/voice/{outbox_id}/gather" if base else None

    # -- Worker -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        books_due = 0.0
        while True:
            self._wake.clear()
            try:
                # Sends go on in their own tasks: an alarm never waits for another one's request to Twilio.
                # No new claim while every slot is taken, though: claimed rows must not queue for long (a
                # row "sending" past the lease is swept as lost), so at most one batch waits, as before.
                if self._in_flight < self.policy.concurrency and self._spawn(await self._claim()):
                    continue
                self._settle_urgent()  # nothing (more) due now: urgent rows were suppressed or bundled
                # Bookkeeping when idle, at most once a poll interval (or sooner when a send failed).
                if loop.time() >= books_due or self._books_now:
                    self._books_now, books_due = False, loop.time() + self.policy.poll_interval_s
                    await sweep_lost(self)
                    await report_feedback(self)
                # Ask the database first: a coroutine made before an await that fails would never be awaited.
                timeout = await self._idle_wait()
            except Exception:  # the loop must outlive a bad cycle (database hiccup); the next one retries
                log.exception("outbox cycle failed")
                timeout = self.policy.poll_interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _spawn(self, groups: list[Group]) -> int:
        for group in groups:
            self._in_flight += 1
            if group.urgent:
                self._urgent_sending.add(group.leader.id)
            self._sends.spawn(self._send_tracked(group), f"outbox-send-{group.leader.id}")
        return len(groups)

    async def _send_tracked(self, group: Group) -> None:
        try:
            await self._send_limited(group)
        finally:
            self._handed(group)  # already, unless the send failed or was cancelled before its request
            full = self._in_flight >= self.policy.concurrency
            self._in_flight -= 1
            if full:  # the worker stopped claiming: a slot is free now
                self._wake.set()

    async def _send_limited(self, group: Group) -> None:
        async with self._limit:
            await self._send(group)

    async def _idle_wait(self) -> float:
        async with self.db.session() as session:
            due = await session.scalar(
                select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.status == "pending")
            )
        if due is None:
            return self.policy.poll_interval_s
        return min(max((due - self.clock()).total_seconds(), 0.001), self.policy.poll_interval_s)

    async def run_once(self) -> int:
        """One cycle: claim due rows, send them, then settle lost rows; returns how many requests were made."""
        # Sending first: the sweep is bookkeeping and must not stand between an alarm and its SMS.
        groups = await self._claim()
        if groups:
            async with asyncio.TaskGroup() as tasks:
                for group in groups:
                    tasks.create_task(self._send_limited(group), name=f"outbox-send-{group.leader.id}")
        await sweep_lost(self)
        await report_feedback(self)
        return len(groups)

    async def _claim(self) -> list[Group]:
        if self.fence is not None and not self.fence():
            return []  # no longer the active hub: the new one claims the rows
        now = self.clock()
        poisoned: list[Poisoned] = []
        async with self.db.session() as session:
            # The responder's STOP comes with the rows (one statement less between an alarm and its SMS).
            query = (
                select(OutboxMessage, Responder.sms_opt_out)
                .outerjoin(Responder, Responder.id == OutboxMessage.responder_id)
                .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now)
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(self.policy.batch_size)
                .with_for_update(skip_locked=True, of=OutboxMessage)
            )
            found = (await session.execute(query)).all()
            if not found:
                return []
            rows = [row for row, _stop in found]
            opted_out = {row.responder_id for row, stop in found if stop and row.responder_id is not None}
            groups, poisoned = await claim_groups(self, session, rows, now, opted_out)
            for group in groups:
                for row in group.rows:
                    row.status, row.claimed_at, row.attempts = "sending", now, row.attempts + 1
                    row.bundle_id = None if row is group.leader else group.leader.id
                group.leader.body, group.leader.cost_estimate = group.body, group.cost
                if group.warnings:
                    await self.enqueue(session, group.warnings)
            for row in rows:
                if row.status == "suppressed":
                    self.outcomes.labels(row.channel, f"suppressed_{row.reason}").inc()
                    record(
                        session,
                        "outbox",
                        "system",
                        "notify_suppressed",
                        "outbox",
                        row.id,
                        {"reason": row.reason},
                        self.clock,
                    )
        await park_poisoned(self, poisoned)
        return groups

    async def _send(self, group: Group) -> None:
        leader = group.leader
        channel = self.channels[leader.channel]
        message = Outgoing(leader.id, leader.phone, group.body, group.twiml, self.callback_url(leader.id))
        # Released before the await: the SDK builds the request within this step, before the readers'
        # next turn; holding the lane until Twilio answers would pause telemetry for a network round trip.
        self._handed(group)
        try:
            sent = await channel.send(message)
        except NotifierError as exc:
            await self._failed(group, exc)
            return
        except Exception as exc:  # not Twilio's answer but the hub's fault: retried, then parked
            await send_crashed(self, group, exc)
            return
        await self._record(group, sent)

    def _handed(self, group: Group) -> None:
        if group.leader.id in self._urgent_sending:
            self._urgent_sending.discard(group.leader.id)
            self._settle_urgent()

    async def _record(self, group: Group, sent: Sent) -> None:
        # The create answer is the first status only; outcomes come from status callbacks.
        status = sent.status if sent.status in IN_FLIGHT_STATUSES else "queued"
        ids = [r.id for r in group.rows]
        now = self.clock()
        async with self.db.session() as session:
            # A status callback may have come first: then it holds the newer status.
            keep = case((OutboxMessage.status == "sending", status), else_=OutboxMessage.status)
            values = {"status": keep, "twilio_sid": sent.sid, "sent_at": now, "reason": None}
            await session.execute(update(OutboxMessage).where(OutboxMessage.id.in_(ids)).values(**values))
            if sent.price is not None:
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == group.leader.id)
                    .values(price=sent.price, price_unit=sent.price_unit)
                )
        self.outcomes.labels(group.leader.channel, "sent").inc(len(ids))

    async def _failed(self, group: Group, exc: NotifierError) -> None:
        now = self.clock()
        leader = group.leader
        ids = [r.id for r in group.rows]
        retry = exc.retryable and leader.attempts < self.policy.max_attempts
        async with self.db.session() as session:
            base = update(OutboxMessage).where(OutboxMessage.id.in_(ids), OutboxMessage.status == "sending")
            if retry:
                later = now + backoff(leader.attempts, self.policy)
                await session.execute(
                    base.values(
                        status="pending", next_attempt_at=later, bundle_id=None, reason=exc.message[:200]
                    )
                )
            else:
                await session.execute(base.values(status="failed", settled_at=now, reason=exc.message[:200]))
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(ids), OutboxMessage.step_id.is_not(None))
                    .values(feedback="due")
                )
                record(
                    session,
                    "outbox",
                    "system",
                    "notify_failed",
                    "outbox",
                    leader.id,
                    {"rows": ids, "error": exc.message},
                    self.clock,
                )
        self.outcomes.labels(leader.channel, "retry" if retry else "failed").inc(len(ids))
        if not retry:  # the escalation hears of it at the worker's next turn, not after a poll interval
            self._books_now = True
            self._wake.set()
        log.warning("outbox #%s: %s (%s)", leader.id, exc.message, "will retry" if retry else "gave up")
