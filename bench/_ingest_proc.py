"""Bench children: a Python script in its own process, spoken to in JSON lines, and its CPU and RSS."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = ["Child", "Usage", "emit", "read_commands"]

HERE = Path(__file__).resolve().parent
_EVENT_TIMEOUT_S = 120.0


def emit(event: str, **data: Any) -> None:
    """Write one event line to stdout (the parent reads it)."""
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


async def read_commands() -> asyncio.StreamReader:
    """Stdin as an asyncio stream, for children that keep their loop running while they wait."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


@dataclass
class Usage:
    """CPU seconds and peak RSS of one process over a measured window."""

    cpu_s: float = 0.0
    wall_s: float = 0.0
    peak_rss: int = 0

    @property
    def cpu_pct(self) -> float:
        """CPU time as a percentage of one core over the window."""
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class Child:
    """One ``bench/<script>.py`` child; events come on its stdout, its stderr goes to a log file."""

    script: str
    args: list[str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    usage: Usage = field(default_factory=Usage)
    _ps: psutil.Process | None = None
    _mark: tuple[float, float] = (0.0, 0.0)

    async def start(self) -> None:
        """Spawn the script with this interpreter."""
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(HERE / self.script),
                *self.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=1 << 22,
            )
        self._ps = psutil.Process(self.proc.pid)

    async def send(self, cmd: str, **data: Any) -> None:
        """Write one command line to the child's stdin."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **data}) + "\n").encode())
        await self.proc.stdin.drain()

    async def expect(self, event: str, timeout: float = _EVENT_TIMEOUT_S) -> dict[str, Any]:
        """Wait for the next event line, which must be ``event``."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise SystemExit(
                f"{self.script}: no {event!r} within {timeout:.0f} s; see {self.log_path}"
            ) from None
        if not line:
            raise SystemExit(f"{self.script} exited before {event!r}; see {self.log_path}")
        got: dict[str, Any] = json.loads(line)
        if got.get("event") != event:
            raise SystemExit(f"{self.script}: expected {event!r}, got {got}; see {self.log_path}")
        return got

    def mark(self) -> None:
        """Start a measured window: CPU and wall time from now."""
        assert self._ps is not None
        cpu = self._ps.cpu_times()
        self._mark = (time.monotonic(), cpu.user + cpu.system)
        self.usage = Usage(peak_rss=self._ps.memory_info().rss)

    def sample(self) -> None:
        """Update the window's CPU, wall time and peak RSS (call it often; the peak is sampled)."""
        assert self._ps is not None
        try:
            cpu = self._ps.cpu_times()
            rss = self._ps.memory_info().rss
        except psutil.NoSuchProcess:
            return
        self.usage.wall_s = time.monotonic() - self._mark[0]
        self.usage.cpu_s = cpu.user + cpu.system - self._mark[1]
        self.usage.peak_rss = max(self.usage.peak_rss, rss)

    def rss(self) -> int:
        """Resident set size now."""
        assert self._ps is not None
        return int(self._ps.memory_info().rss)

    async def close(self, timeout: float = 30.0) -> None:
        """Close stdin (children exit on EOF) and wait; kill the child if it hangs."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        self.proc = None
