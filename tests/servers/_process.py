"""A server subprocess in its own process group, with bounded readiness and sure cleanup."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from hub.errors import StartupError

__all__ = ["LocalServer", "ManagedProcess", "free_port", "wait_until"]

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 10.0
_POLL_S = 0.05
_TAIL_LINES = 40


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str) -> None:
    """Poll ``ready`` until it is true; raise StartupError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise StartupError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(_POLL_S)


def _death_signal_hook() -> Callable[[], None] | None:
    """Return a pre-exec hook that kills the child if its parent thread dies (Linux only)."""
    # Only from the main thread: the signal fires when the *thread* that forked exits.
    if threading.current_thread() is not threading.main_thread():
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)  # loaded before fork: no dlopen in the child

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return hook


class ManagedProcess:
    """One server command: start in a new session, log to a file, stop the whole group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.log_path = log_path
        self.env = None if env is None else dict(env)  # None: this process's environment
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Return the pid of the running process, or None."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (None while it runs or before it started)."""
        return self._proc.poll() if self._proc is not None else None

    def alive(self) -> bool:
        """Tell whether the process is running."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the command; its output is appended to the log file."""
        if self.alive():
            return
        self._log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches every child
                preexec_fn=_death_signal_hook(),  # noqa: PLW1509 - the hook only calls prctl
            )
        except OSError as exc:
            self._close_log()
            raise StartupError(f"{self.name}: cannot run {self.argv[0]}: {exc}") from exc
        atexit.register(self.stop)

    def wait_ready(self, probe: Callable[[], bool], *, timeout: float) -> None:
        """Poll ``probe`` until true; on exit or timeout, stop and raise with the log tail."""
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll() if self._proc is not None else -1
            if code is not None:
                self.stop()
                raise StartupError(self.failure(f"exited with code {code} before it was ready"))
            if probe():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise StartupError(self.failure(f"not ready after {timeout:.0f} s"))
            time.sleep(_POLL_S)

    def failure(self, reason: str) -> str:
        """Format a failure message with the command and the tail of the log."""
        return f"{self.name}: {reason}\ncommand: {' '.join(self.argv)}\nlog tail:\n{self.log_tail()}"

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """Return the last lines of the log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the process group; kill it if it does not exit in time."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            # Children that ignored SIGTERM die with their leader's group.
            _signal_group(proc.pid, signal.SIGKILL)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LocalServer:
    """What every test server shares: a managed process, a readiness probe, start/stop/close, a context manager."""

    name = "server"
    ready_timeout = 30.0
    root: Path
    _process: ManagedProcess

    @property
    def running(self) -> bool:
        """Tell whether the server process runs."""
        return self._process.alive()

    @property
    def pid(self) -> int | None:
        """Return the server's process id while it runs."""
        return self._process.pid

    def log_tail(self) -> str:
        """Return the end of the server's log."""
        return self._process.log_tail()

    def _check(self) -> None:
        """Raise StartupError when something the server needs is missing (override)."""

    def _ready(self) -> bool:
        """Whether the server answers (override)."""
        raise NotImplementedError

    def _after_start(self) -> None:
        """Run once the server answers (override)."""

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers."""
        if self.running:
            return
        self._check()
        self._process.start()
        self._process.wait_ready(self._ready, timeout=self.ready_timeout)
        self._after_start()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its files stay for the next ``start()``."""
        self._process.stop()

    def close(self) -> None:
        """Stop the server and delete its temp dir."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except StartupError:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
