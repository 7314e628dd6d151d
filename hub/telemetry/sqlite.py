"""Embedded SQLite telemetry store: its own WAL-mode file, batched inserts, retention purge."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import aiosqlite
from pydantic import BaseModel, ConfigDict, Field

from hub.errors import InvalidInput, StoreError, StoreUnavailable
from hub.telemetry.base import Sample, StoreStats, TelemetryPoint, Value
from hub.telemetry.intake import Close, Flush, Intake

__all__ = ["SQLiteStore", "SQLiteStoreConfig"]

log = logging.getLogger(__name__)

Row = tuple[str, str, int, str, Value, int, str | None]

# One row per field (long format); an untyped ``value`` column keeps each value's own type.
# The primary key makes a rewrite of the same point an overwrite, as in InfluxDB.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    device_id TEXT NOT NULL, metric TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    kind TEXT NOT NULL, value, is_bool INTEGER NOT NULL, tags TEXT,
    PRIMARY KEY (device_id, metric, ts_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS telemetry_ts ON telemetry (ts_ns);
"""
_INSERT = "INSERT OR REPLACE INTO telemetry VALUES (?, ?, ?, ?, ?, ?, ?)"


class SQLiteStoreConfig(BaseModel):
    """Settings of the embedded store."""

    model_config = ConfigDict(extra="forbid")

    path: Path = Path("var/telemetry.sqlite3")
    batch_size: int = Field(2000, ge=1)
    flush_interval: float = Field(0.5, gt=0)
    queue_max: int = Field(100_000, ge=1)
    retention_days: float | None = Field(30.0, gt=0)
    purge_interval: float = Field(3600.0, gt=0)


def _rows(point: TelemetryPoint) -> list[Row]:
    """Rows of one point; refuses what the InfluxDB store refuses too."""
    if not point.fields:
        raise InvalidInput("a point needs at least one field", field="fields")
    if not math.isfinite(point.ts):
        raise InvalidInput(f"non-finite timestamp {point.ts}", field="ts")
    ts_ns = round(point.ts * 1_000_000_000)
    tags = json.dumps(point.tags, sort_keys=True) if point.tags else None
    rows: list[Row] = []
    for key, value in point.fields.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"non-finite float {key}={value}", field=key)
        rows.append((point.device_id, key, ts_ns, point.kind, value, int(isinstance(value, bool)), tags))
    return rows


class SQLiteStore:
    """TelemetryStore in a local SQLite file (aiosqlite: the blocking calls run in its thread)."""

    def __init__(self, config: SQLiteStoreConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._stats = StoreStats()
        self._intake: Intake[list[Row]] = Intake(config.queue_max)
        self._db: aiosqlite.Connection | None = None
        self._writer: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None

    @property
    def stats(self) -> StoreStats:
        """Point counters."""
        return self._stats

    @property
    def queued(self) -> int:
        """Points waiting in the intake queue."""
        return len(self._intake)

    def drained_to(self, level: int) -> asyncio.Future[None]:
        """Resolves once at most ``level`` points wait in the intake queue."""
        return self._intake.drained_to(level)

    async def start(self) -> None:
        """Open the file in WAL mode, create the table, start the writer and purge tasks."""
        try:
            self.config.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self.config.path)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent after a crash
            await self._db.executescript(_SCHEMA)
            await self._db.commit()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open telemetry database {self.config.path}: {exc}") from exc
        self._writer = asyncio.create_task(self._run(), name="telemetry-sqlite-writer")
        if self.config.retention_days is not None:
            self._purger = asyncio.create_task(self._purge_loop(), name="telemetry-sqlite-purge")

    async def close(self) -> None:
        """Write what is queued, stop the tasks, close the file."""
        if self._purger is not None:
            self._purger.cancel()
            await asyncio.gather(self._purger, return_exceptions=True)
            self._purger = None
        if self._writer is not None:
            self._intake.put_marker(Close())
            await self._writer
            self._writer = None
        if self._db is not None:
            await self._db.close()
            self._db = None

    def write(self, point: TelemetryPoint) -> None:
        """Enqueue one point; StoreUnavailable when the queue is full (there is no spool to fall back on)."""
        if not self._intake.put_nowait(_rows(point)):
            self._stats.dropped += 1
            raise StoreUnavailable("telemetry queue is full")

    async def flush(self) -> None:
        """Wait until every point written before now is committed."""
        await self._intake.flushed(self._writer)

    async def _run(self) -> None:
        cfg = self.config
        while True:
            got = await self._intake.next_batch(cfg.batch_size, cfg.flush_interval, None)
            points, marker = got if got is not None else ([], None)
            if points:
                await self._insert(points)
            if isinstance(marker, Flush):
                marker.done.set_result(None)
            elif isinstance(marker, Close):
                return

    async def _insert(self, points: list[list[Row]]) -> None:
        assert self._db is not None
        try:
            await self._db.executemany(_INSERT, [row for rows in points for row in rows])
            await self._db.commit()
        except sqlite3.Error as exc:  # a full disk must not kill the writer
            log.error("telemetry batch of %d points lost: %s", len(points), exc)
            self._stats.dropped += len(points)
            return
        self._stats.written += len(points)
        self._stats.batches += 1

    async def purge(self) -> int:
        """Delete rows older than the retention (by the injected clock); return how many."""
        if self._db is None or self.config.retention_days is None:
            return 0
        cutoff = round((self._clock() - self.config.retention_days * 86400) * 1_000_000_000)
        try:
            cursor = await self._db.execute("DELETE FROM telemetry WHERE ts_ns < ?", (cutoff,))
            await self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"telemetry purge failed: {exc}") from exc
        return cursor.rowcount

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.purge_interval)
            try:
                deleted = await self.purge()
            except StoreError as exc:
                log.error("%s", exc)
            else:
                log.info("telemetry retention purge deleted %d rows", deleted)

    async def query(
        self, device_id: str, metric: str, start: float, end: float, every: float | None = None
    ) -> list[Sample]:
        """Samples in ``[start, end)``; with ``every``, the mean of numbers per epoch-aligned bucket."""
        if self._db is None:
            raise StoreUnavailable("SQLite store is not started")
        lo, hi = round(start * 1_000_000_000), round(end * 1_000_000_000)
        args: tuple[object, ...]
        if every is None:
            sql = (
                "SELECT ts_ns, value, is_bool FROM telemetry WHERE device_id = ? AND metric = ?"
                " AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns"
            )
            args = (device_id, metric, lo, hi)
        else:
            step = round(every * 1_000_000_000)
            if step <= 0:
                raise InvalidInput("every must be positive", field="every")
            # Like InfluxDB's mean: numbers only (not booleans), empty buckets omitted (fill(none)).
            sql = (
                "SELECT (ts_ns / ?) * ? AS bucket, AVG(value), 0 FROM telemetry WHERE device_id = ?"
                " AND metric = ? AND ts_ns >= ? AND ts_ns < ? AND is_bool = 0"
                " AND typeof(value) IN ('integer', 'real') GROUP BY bucket ORDER BY bucket"
            )
            args = (step, step, device_id, metric, lo, hi)
        try:
            async with self._db.execute(sql, args) as cursor:
                rows = await cursor.fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"telemetry query failed: {exc}") from exc
        return [(ts / 1e9, bool(value) if is_bool else value) for ts, value, is_bool in rows]

    async def health(self) -> tuple[bool, str]:
        """Whether the file answers, and the queue length."""
        if self._db is None:
            return False, "not started"
        try:
            await self._db.execute("SELECT 1")
        except sqlite3.Error as exc:
            return False, f"SQLite error: {exc}"
        return True, f"SQLite {self.config.path} ok; queued {len(self._intake)}"
