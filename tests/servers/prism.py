"""Prism mocking Twilio's REST API from Twilio's own OpenAPI spec, on a free loopback port."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from hub.errors import StartupError

from ._process import ManagedProcess, free_port

__all__ = ["PRISM_DIR", "TWILIO_SPEC", "PrismServer"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PRISM_DIR = REPO_ROOT / "tests" / "prism"
# shared/ sits beside the repository, in a working tree and in CI alike.
TWILIO_SPEC = REPO_ROOT.parent / "shared" / "twilio" / "twilio_api_v2010.json"
# Prism parses the ~4 MB spec before listening (about 1-2 s here); leave room for a loaded CI machine.
_READY_TIMEOUT_S = 60.0


class PrismServer:
    """One ``prism mock`` process serving a spec; it validates requests but keeps no history."""

    def __init__(self, root: Path, *, spec: Path = TWILIO_SPEC, prism_dir: Path = PRISM_DIR) -> None:
        self.root = root
        self.spec = spec
        self.binary = prism_dir / "node_modules" / ".bin" / "prism"
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        self._process = ManagedProcess(
            "prism",
            [str(self.binary), "mock", "-h", "127.0.0.1", "-p", str(self.port), str(spec)],
            cwd=root,
            log_path=root / "prism.log",
        )

    @property
    def url(self) -> str:
        """Return the base URL to give the Twilio client (``client.api.base_url``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Tell whether prism is running."""
        return self._process.alive()

    def start(self) -> None:
        """Start prism and wait until it answers HTTP."""
        if self.running:
            return
        if not self.spec.is_file():
            raise StartupError(f"prism: spec not found at {self.spec} (shared/ must sit beside the repo)")
        if not self.binary.exists():
            raise StartupError(f"prism: {self.binary} missing; run `npm ci` in {self.binary.parents[2]}")
        self._process.start()
        self._process.wait_ready(self._answers_http, timeout=_READY_TIMEOUT_S)

    def stop(self) -> None:
        """Stop prism (SIGTERM, then SIGKILL)."""
        self._process.stop()

    def close(self) -> None:
        """Stop prism and delete its temp dir."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        """Return the server's process id while it runs."""
        return self._process.pid

    def log_tail(self) -> str:
        """Return the end of prism's log."""
        return self._process.log_tail()

    def _answers_http(self) -> bool:
        # Any status will do: "/" matches no route (404), but an answer means prism is serving.
        try:
            httpx.get(f"{self.url}/", timeout=1)
        except httpx.TransportError:
            return False
        return True

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
