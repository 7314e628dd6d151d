"""Parked work: an alert or a message that still failed after bounded retries, kept where an operator sees it.

Parking is a row (``parked_items``), a counter (``iothub_parked_total{kind}``), a gauge of what waits
(``iothub_parked_waiting{kind}``), a warning in /readyz, and ``GET/POST /api/v1/parked`` to list and retry. When the
database refuses even the parking row, the item waits in memory (listed, counted) until a later flush stores it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select

from alerts.alert import Alert, AlertState
from hub.db import Database
from hub.db.parked import PARKED_KINDS, ParkedItem
from hub.errors import Conflict, NotFound

__all__ = ["ParkingLot", "alert_from_json", "alert_to_json"]

log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], Awaitable[None]]
_FIELDS = (
    "id",
    "kind",
    "ref",
    "summary",
    "error",
    "attempts",
    "state",
    "parked_at",
    "retried_at",
    "retried_by",
)


def alert_to_json(alert: Alert) -> dict[str, Any]:
    """Everything needed to handle the alert again."""
    return {
        "name": alert.name,
        "rule_type": alert.rule_type,
        "severity": alert.severity,
        "category": alert.category,
        "state": str(alert.state),
        "started_at": alert.started_at,
        "labels": dict(alert.labels),
        "fingerprint": alert.fingerprint,
        "device_id": alert.device_id,
        "device_serial": alert.device_serial,
        "kind": alert.kind,
        "place_id": alert.place_id,
        "value": alert.value,
        "ended_at": alert.ended_at,
        "text": dict(alert.text),
        "correlate": alert.correlate,
    }


def alert_from_json(data: Mapping[str, Any]) -> Alert:
    """The alert ``alert_to_json`` stored."""
    fields = dict(data)
    fields["state"] = AlertState(fields["state"])
    fields["labels"] = MappingProxyType(dict(fields["labels"]))
    fields["text"] = MappingProxyType(dict(fields.get("text") or {}))
    return Alert(**fields)


class ParkingLot:
    """Parks failed work, lists it, and hands it back to its kind's handler when an operator retries it."""

    def __init__(
        self, db: Database, clock: Callable[[], dt.datetime], registry: CollectorRegistry | None = None
    ) -> None:
        self.db, self.clock = db, clock
        registry = registry or CollectorRegistry()
        self.parked_total = Counter(
            "iothub_parked", "Work parked after bounded retries, by kind", ["kind"], registry=registry
        )
        self.waiting = Gauge(
            "iothub_parked_waiting",
            "Parked work no retry has settled yet, by kind",
            ["kind"],
            registry=registry,
        )
        for kind in PARKED_KINDS:  # the series exist before the first parking, so alerts can watch them
            self.parked_total.labels(kind)
            self.waiting.labels(kind).set(0)
        self.handlers: dict[str, Handler] = {}
        self.unstored: list[dict[str, Any]] = []
        self._tries: dict[str, int] = {}  # failures so far of work retried in rows (see ``tried``)

    async def park(
        self, kind: str, ref: str, summary: str, payload: dict[str, Any], error: BaseException, attempts: int
    ) -> None:
        """Park one piece of work (never raises: a database that refuses keeps it in memory)."""
        item = {
            "kind": kind,
            "ref": ref[:64],
            "summary": summary[:200],
            "payload": payload,
            "error": f"{type(error).__name__}: {error}"[:2000],
            "attempts": attempts,
            "state": "parked",
            "parked_at": self.clock(),
        }
        self.parked_total.labels(kind).inc()
        log.error("parked %s %s after %d attempts: %s", kind, ref, attempts, item["error"])
        self.unstored.append(item)
        await self.flush()

    def tried(self, key: str) -> int:
        """Count one more failure of row-held work (retried by its own loop); returns the count so far."""
        self._tries[key] = self._tries.get(key, 0) + 1
        return self._tries[key]

    def forget(self, key: str) -> None:
        """Stop counting ``key`` (it succeeded, or it is parked)."""
        self._tries.pop(key, None)

    async def flush(self) -> int:
        """Store the items parked while the database was refusing; returns how many are stored now."""
        if not self.unstored:
            return 0
        items, self.unstored = self.unstored, []
        try:
            async with self.db.session() as session:
                session.add_all([ParkedItem(**item) for item in items])
        except Exception:
            log.exception("parking: %d item(s) kept in memory, the database refused them", len(items))
            self.unstored = items + self.unstored
            return 0
        return len(items)

    async def counts(self) -> dict[str, int]:
        """Parked items by kind (stored and in memory); also sets the gauge."""
        await self.flush()
        found = dict.fromkeys(PARKED_KINDS, 0)
        async with self.db.session() as session:
            query = (
                select(ParkedItem.kind, func.count())
                .where(ParkedItem.state == "parked")
                .group_by(ParkedItem.kind)
            )
            for kind, count in await session.execute(query):
                found[kind] = int(count)
        for item in self.unstored:
            found[item["kind"]] += 1
        for kind, count in found.items():
            self.waiting.labels(kind).set(count)
        return found

    async def items(
        self, *, state: str | None = "parked", kind: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Parked items, newest first (those only in memory first, without an id)."""
        await self.flush()
        query = select(ParkedItem).order_by(ParkedItem.id.desc()).limit(limit).offset(offset)
        if state is not None:
            query = query.where(ParkedItem.state == state)
        if kind is not None:
            query = query.where(ParkedItem.kind == kind)
        async with self.db.session() as session:
            rows = list((await session.execute(query)).scalars())
        memory = [{"id": None} | {k: v for k, v in i.items() if k != "payload"} for i in self.unstored]
        wanted = [i for i in memory if (kind is None or i["kind"] == kind) and state in (None, "parked")]
        return wanted + [self._out(row) for row in rows]

    @staticmethod
    def _out(row: ParkedItem) -> dict[str, Any]:
        return {f: getattr(row, f) for f in _FIELDS}

    async def retry(self, item_id: int, actor: str) -> dict[str, Any]:
        """Hand a parked item to its handler once: done when it succeeds, still parked (new error) when not."""
        async with self.db.session() as session:
            row = await session.get(ParkedItem, item_id)
            if row is None:
                raise NotFound(f"no parked item {item_id}")
            if row.state != "parked":
                raise Conflict(f"parked item {item_id} is {row.state} already")
            kind, payload = row.kind, dict(row.payload)
        handler = self.handlers.get(kind)
        error: str | None = None
        try:
            if handler is None:
                raise NotFound(f"nothing handles parked {kind} items in this hub")
            await handler(payload)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            log.warning("parked %s #%s retried by %s failed again: %s", kind, item_id, actor, error)
        async with self.db.session() as session:
            row = await session.get(ParkedItem, item_id, with_for_update=True)
            assert row is not None
            row.retried_at, row.retried_by = self.clock(), actor[:120]
            row.attempts += 1
            if error is None:
                row.state = "done"
            else:
                row.error = error
            out = self._out(row)
        await self.counts()
        return out
