"""Prism mocking Twilio's REST API from Twilio's own OpenAPI spec, on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import httpx

from hub.errors import StartupError

from ._process import LocalServer, ManagedProcess, free_port

__all__ = ["PRISM_DIR", "TWILIO_SPEC", "PrismServer"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PRISM_DIR = REPO_ROOT / "tests" / "prism"
# shared/ sits beside the repository, in a working tree and in CI alike.
TWILIO_SPEC = REPO_ROOT.parent / "shared" / "twilio" / "twilio_api_v2010.json"


class PrismServer(LocalServer):
    """One ``prism mock`` process serving a spec; it validates requests but keeps no history."""

    name = "prism"
    # Prism parses the ~4 MB spec before listening (about 1-2 s here); leave room for a loaded CI machine.
    ready_timeout = 60.0

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

    def _check(self) -> None:
        """The spec and the installed prism must be there."""
        if not self.spec.is_file():
            raise StartupError(f"prism: spec not found at {self.spec} (shared/ must sit beside the repo)")
        if not self.binary.exists():
            raise StartupError(f"prism: {self.binary} missing; run `npm ci` in {self.binary.parents[2]}")

    def _ready(self) -> bool:
        # Any status will do: "/" matches no route (404), but an answer means prism is serving.
        try:
            httpx.get(f"{self.url}/", timeout=1)
        except httpx.TransportError:
            return False
        return True
