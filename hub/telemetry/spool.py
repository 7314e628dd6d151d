"""Durable on-disk spool of line-protocol batches (one ordered segment file each) and a dead-letter file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from hub.errors import StoreError, StoreUnavailable

__all__ = ["DeadLetters", "Spool"]

_SUFFIX = ".lp"


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Batches waiting for InfluxDB, replayed in sequence order; blocking calls, run them in a thread."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._segments: dict[int, int] = {}  # seq -> size in bytes
        self._unsynced: set[int] = set()
        self._bytes = 0
        self._next = 1
        self._lock = threading.Lock()  # the loop (overflow spill) and a worker thread both touch it

    def open(self) -> None:
        """Create the directory, drop half-written files, index the committed segments."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for tmp in self.directory.glob("*.tmp"):
                tmp.unlink()  # never renamed, so never acknowledged
            for path in self.directory.glob(f"*{_SUFFIX}"):
                self._segments[int(path.stem)] = path.stat().st_size
            self._bytes = sum(self._segments.values())
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot open spool {self.directory}: {exc}") from exc
        self._next = max(self._segments, default=0) + 1

    @property
    def empty(self) -> bool:
        """True when nothing waits."""
        return not self._segments

    @property
    def size(self) -> int:
        """Bytes spooled."""
        return self._bytes  # a counter: summing the dict could race with the worker thread

    def __len__(self) -> int:
        return len(self._segments)

    def reserve(self) -> int:
        """Take the next sequence number (taken when a batch is formed, so order follows intake)."""
        with self._lock:
            seq = self._next
            self._next += 1
            return seq

    def has_room(self, nbytes: int, replacing: int | None = None) -> bool:
        """Whether ``nbytes`` more fit under ``max_bytes`` (net of a segment being replaced)."""
        with self._lock:
            freed = self._segments.get(replacing, 0) if replacing is not None else 0
            return self._bytes - freed + nbytes <= self.max_bytes

    def append(self, seq: int, body: bytes, *, sync: bool = True) -> None:
        """Commit one batch as segment ``seq`` (replacing it if present): temp file, fsync, rename."""
        if not self.has_room(len(body), replacing=seq):
            raise StoreUnavailable(f"spool full ({self.size} of {self.max_bytes} bytes)")
        path = self.directory / f"{seq:020d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(body)
                if sync:
                    fh.flush()
                    os.fsync(fh.fileno())
            tmp.rename(path)
            if sync:
                _fsync_dir(self.directory)
        except OSError as exc:
            raise StoreError(f"cannot spool batch {seq}: {exc}") from exc
        with self._lock:
            self._bytes += len(body) - self._segments.get(seq, 0)
            self._segments[seq] = len(body)
            if not sync:
                self._unsynced.add(seq)

    def sync(self) -> None:
        """Fsync segments that were appended without it."""
        with self._lock:
            pending, self._unsynced = self._unsynced, set()
        try:
            for seq in sorted(pending):
                try:
                    fd = os.open(self.directory / f"{seq:020d}{_SUFFIX}", os.O_RDONLY)
                except FileNotFoundError:
                    continue  # already replayed
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if pending:
                _fsync_dir(self.directory)
        except OSError as exc:
            raise StoreError(f"cannot sync spool {self.directory}: {exc}") from exc

    def oldest(self) -> int | None:
        """Sequence number of the oldest segment, if any."""
        with self._lock:
            return min(self._segments, default=None)

    def read(self, seq: int) -> bytes:
        """Content of segment ``seq``."""
        try:
            return (self.directory / f"{seq:020d}{_SUFFIX}").read_bytes()
        except OSError as exc:
            raise StoreError(f"cannot read spool segment {seq}: {exc}") from exc

    def remove(self, seq: int) -> None:
        """Forget segment ``seq`` once InfluxDB took it."""
        try:
            (self.directory / f"{seq:020d}{_SUFFIX}").unlink(missing_ok=True)
            _fsync_dir(self.directory)
        except OSError as exc:
            raise StoreError(f"cannot remove spool segment {seq}: {exc}") from exc
        with self._lock:
            self._bytes -= self._segments.pop(seq, 0)
            self._unsynced.discard(seq)


class DeadLetters:
    """Points InfluxDB refused, as JSON lines with its reason; bounded by one rotation."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def append(self, records: list[tuple[float, str, str]]) -> None:
        """Append ``(ts, reason, line)`` records (blocking; run in a thread)."""
        data = "".join(
            json.dumps({"ts": ts, "reason": reason, "line": line}, ensure_ascii=False) + "\n"
            for ts, reason, line in records
        ).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size + len(data) > self.max_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with open(self.path, "ab") as fh:
                fh.write(data)
        except OSError as exc:
            raise StoreError(f"cannot write dead letters {self.path}: {exc}") from exc

    def read(self) -> list[dict[str, object]]:
        """Records of the current file (for tests and the operator)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
