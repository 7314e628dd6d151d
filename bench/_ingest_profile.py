"""Profile the hub child with py-spy (sampling, attached by pid) and print its top frames, self and inclusive."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

__all__ = ["Profiler", "top_frames"]

# py-spy's raw frames read "function (path/to/file.py:line)"; the line number would split one function.
_LINE = re.compile(r":\d+\)$")


def _short(frame: str) -> str:
    frame = _LINE.sub(")", frame)
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in frame:
            head, _sep, tail = frame.partition(marker)
            frame = head.split("(")[0] + "(" + tail
    return frame


def top_frames(path: Path, limit: int = 15) -> str:
    """The ``limit`` functions with the most samples on top of the stack (self) and anywhere (inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _sep, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "  (no samples)"
    out = [f"  {total} samples; self:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(limit)]
    out.append("  inclusive:")
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(limit + 10)]
    return "\n".join(out)


class Profiler:
    """``py-spy record`` attached to one process until ``stop``."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.pid, self.out, self.rate = pid, out, rate
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Attach (py-spy from this interpreter's bin directory, or PATH)."""
        exe = Path(sys.executable).with_name("py-spy")
        spy = str(exe) if exe.exists() else shutil.which("py-spy")
        if spy is None:
            raise SystemExit("--profile needs py-spy: pip install py-spy")
        args = ["record", "--pid", str(self.pid), "--rate", str(self.rate), "--format", "raw"]
        self.proc = await asyncio.create_subprocess_exec(
            spy,
            *args,
            "--nonblocking",
            "--output",
            str(self.out),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def stop(self) -> str:
        """Detach, write the samples, and return the top frames."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(self.proc.wait(), 60)
            self.proc = None
        return top_frames(self.out)
