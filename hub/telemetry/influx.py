"""InfluxDB telemetry store: batched writes, a durable spool while it is away, dead letters for bad points."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hub.errors import AuthError, StoreError, StoreUnavailable
from hub.telemetry.base import Sample, StoreStats, TelemetryPoint
from hub.telemetry.influx_http import InfluxHTTP, Outcome, WriteResult, quote_ident, samples, select_query
from hub.telemetry.intake import Close, Intake
from hub.telemetry.lineproto import LineEncoder
from hub.telemetry.spool import DeadLetters, Spool

__all__ = ["InfluxStore", "InfluxStoreConfig"]

log = logging.getLogger(__name__)


class InfluxStoreConfig(BaseModel):
    """Settings of the InfluxDB store (nested as ``influx`` in the hub's Settings)."""

    model_config = ConfigDict(extra="forbid")

    url: str = "http://127.0.0.1:8086"
    database: str = "iothub"
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None  # 2.x/3.x compatibility API, or 1.8+ "user:password"
    batch_size: int = Field(5000, ge=1)
    # Batches posted at once: InfluxDB parses a body on one core, so a second one in flight keeps
    # another busy (the ingest bench's tail after the last message halved with 2).
    max_in_flight: int = Field(2, ge=1, le=16)
    flush_interval: float = Field(1.0, gt=0)
    queue_max: int = Field(100_000, ge=1)
    spool_dir: Path = Path("var/telemetry-spool")
    spool_max_bytes: int = Field(1 << 30, ge=1)
    dead_letter_max_bytes: int = Field(16 << 20, ge=1)
    timeout: float = Field(10.0, gt=0)
    retry_max: float = Field(30.0, gt=0)
    create_database: bool = False


class InfluxStore:
    """TelemetryStore on InfluxDB's v1 HTTP API; ``clock`` (epoch seconds) stamps dead letters."""

    def __init__(self, config: InfluxStoreConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self._stats = StoreStats()
        self._encoder = LineEncoder()
        self._spool = Spool(config.spool_dir, config.spool_max_bytes)
        self.dead_letters = DeadLetters(config.spool_dir / "dead-letters.jsonl", config.dead_letter_max_bytes)
        self._intake: Intake[str] = Intake(config.queue_max)
        self._http: InfluxHTTP | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._last_failure: WriteResult | None = None

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

    @property
    def spooled_batches(self) -> int:
        """Batches waiting in the spool."""
        return len(self._spool)

    async def start(self) -> None:
        """Index the spool, open the HTTP client and start the writer task."""
        await asyncio.to_thread(self._spool.open)
        c = self.config
        self._http = InfluxHTTP(
            c.url,
            c.database,
            retention_policy=c.retention_policy,
            username=c.username,
            password=c.password.get_secret_value() if c.password else None,
            token=c.token.get_secret_value() if c.token else None,
            timeout=c.timeout,
        )
        if c.create_database:
            try:
                await self._http.query(f"CREATE DATABASE {quote_ident(c.database)}", method="POST")
            except StoreError as exc:
                log.warning("cannot create database %s: %s", c.database, exc)
        self._task = asyncio.create_task(self._run(), name="telemetry-influx-writer")

    async def close(self) -> None:
        """Store what is queued (to InfluxDB or the spool), then stop."""
        if self._task is not None:
            self._intake.put_marker(Close())
            await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def write(self, point: TelemetryPoint) -> None:
        """Encode and enqueue; on overflow spill the queue to the spool; InvalidInput for bad points."""
        line = self._encoder.encode(point) + "\n"
        if self._intake.put_nowait(line):
            return
        # Overload: the writer is behind. Spill the queue as one segment (page cache, fsync later).
        items = self._intake.drain_items()
        items.append(line)
        body = "".join(items).encode()
        try:
            if not self._spool.has_room(len(body)):
                raise StoreUnavailable("telemetry queue and spool are full")
            self._spool.append(self._spool.reserve(), body, sync=False)
        except StoreError:
            items.pop()
            self._intake.push_back(items)
            self._stats.dropped += 1
            raise
        self._stats.spooled += len(items)

    async def flush(self) -> None:
        """Wait until every point written before now is in InfluxDB or the spool; retry the spool now."""
        await self._intake.flushed(self._task)

    async def _run(self) -> None:
        """The writer: batches from the intake, replay of the spool first, in order."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                idle = None if self._spool.empty else max(0.0, self._retry_at - loop.time())
                got = await self._intake.next_batch(cfg.batch_size, cfg.flush_interval, idle)
                lines, marker = got if got is not None else ([], None)
                if not self._spool.empty:
                    await _settle(in_flight)  # a replay goes alone, oldest first
                    # Disk failures are logged and counted: they must not kill the writer.
                    try:
                        await self._replay(force=marker is not None)
                    except StoreError as exc:
                        log.error("spool replay failed: %s", exc)
                        self._retry_at = loop.time() + cfg.retry_max  # not a busy loop on a bad disk
                if lines:
                    while len(in_flight) >= cfg.max_in_flight:
                        await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    task = loop.create_task(self._deliver_logged(lines), name="telemetry-influx-post")
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if marker is not None:
                    await _settle(in_flight)
                    try:
                        await asyncio.to_thread(self._spool.sync)
                    except StoreError as exc:
                        log.error("%s", exc)
                    if isinstance(marker, Close):
                        return
                    if not marker.done.done():
                        marker.done.set_result(None)
        finally:
            await _settle(in_flight)

    async def _deliver_logged(self, lines: list[str]) -> None:
        try:
            await self._deliver(lines)
        except StoreError as exc:
            log.error("telemetry batch of %d points lost: %s", len(lines), exc)
            self._stats.dropped += len(lines)

    async def _post(self, body: bytes) -> WriteResult:
        assert self._http is not None
        result = await self._http.write(body)
        if result.outcome is Outcome.OK:
            self._last_failure = None
            self._backoff = 0.5
            self._stats.batches += 1
        elif result.outcome is not Outcome.BAD:
            self._last_failure = result
            loop = asyncio.get_running_loop()
            self._retry_at = loop.time() + self._backoff
            self._backoff = min(self._backoff * 2, self.config.retry_max)
            log.warning(
                "InfluxDB write failed (%s %s): %s", result.outcome.value, result.status, result.reason
            )
        return result

    async def _deliver(self, lines: list[str]) -> None:
        """Send a fresh batch, or spool it (also whenever older batches are still spooled)."""
        seq = self._spool.reserve()  # taken before sending, so a spill meanwhile sorts after it
        if self._spool.empty:
            lines = await self._send(lines)
        if lines:
            await self._to_spool(seq, lines)

    async def _to_spool(self, seq: int, lines: list[str]) -> None:
        try:
            await asyncio.to_thread(self._spool.append, seq, "".join(lines).encode())
        except StoreUnavailable as exc:
            log.error("telemetry dropped: %s", exc)
            self._stats.dropped += len(lines)
            return
        self._stats.spooled += len(lines)

    async def _send(self, lines: list[str]) -> list[str]:
        """Write lines, splitting on 4xx to dead-letter the bad ones; return those still to spool."""
        result = await self._post("".join(lines).encode())
        if result.outcome is Outcome.OK:
            self._stats.written += len(lines)
            return []
        if result.outcome is not Outcome.BAD:
            return lines
        if len(lines) == 1:
            await asyncio.to_thread(self.dead_letters.append, [(self._clock(), result.reason, lines[0])])
            self._stats.dead_lettered += 1
            return []
        mid = len(lines) // 2
        left = await self._send(lines[:mid])
        if left:  # InfluxDB went away mid-split: keep the rest in order
            return left + lines[mid:]
        return await self._send(lines[mid:])

    async def _replay(self, *, force: bool) -> None:
        """Send spooled segments oldest first until one fails."""
        loop = asyncio.get_running_loop()
        if not force and loop.time() < self._retry_at:
            return
        while (seq := self._spool.oldest()) is not None:
            body = await asyncio.to_thread(self._spool.read, seq)
            # A damaged byte must not stop the replay: InfluxDB refuses that line, it is dead-lettered.
            lines = body.decode(errors="replace").splitlines(keepends=True)
            before = self._stats.written
            rest = await self._send(lines)
            self._stats.replayed += self._stats.written - before
            if rest:
                if len(rest) != len(lines):
                    await asyncio.to_thread(self._spool.append, seq, "".join(rest).encode())
                return
            # A crash between the write and this unlink replays the segment once more; InfluxDB
            # keeps one point per series and timestamp, so that second write changes nothing.
            await asyncio.to_thread(self._spool.remove, seq)

    async def query(
        self, device_id: str, metric: str, start: float, end: float, every: float | None = None
    ) -> list[Sample]:
        """Samples of ``metric`` for one device across all kinds; with ``every``, means per bucket."""
        if self._http is None:
            raise StoreUnavailable("InfluxDB store is not started")
        q = select_query(
            device_id, metric, start, end, every=every, retention_policy=self.config.retention_policy
        )
        return samples(await self._http.query(q))

    async def health(self) -> tuple[bool, str]:
        """Reachability, credentials and database, plus the spool backlog."""
        if self._http is None:
            return False, "not started"
        backlog = (
            f"spool {len(self._spool)} batches ({self._spool.size} B), "
            f"dead-lettered {self._stats.dead_lettered}"
        )
        up, version = await self._http.ping()
        if not up:
            return False, f"InfluxDB {version}; {backlog}"
        try:
            await self._http.query("SHOW MEASUREMENTS LIMIT 1")
        except AuthError as exc:
            return False, f"auth failed: {exc.message}; {backlog}"
        except StoreError as exc:
            return False, f"{exc.message}; {backlog}"
        last = self._last_failure
        if last is not None and last.outcome in (Outcome.AUTH, Outcome.NO_DATABASE):
            kind = "auth failed" if last.outcome is Outcome.AUTH else "database missing"
            return False, f"{kind} on write ({last.status}): {last.reason}; {backlog}"
        return True, f"InfluxDB {version} ok; {backlog}"


async def _settle(tasks: set[asyncio.Task[None]]) -> None:
    """Wait for every batch in flight (each logs its own failure)."""
    if tasks:
        await asyncio.wait(set(tasks))
