"""The telemetry store contract: one point, the store Protocol and its counters."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Sample", "StoreStats", "TelemetryPoint", "TelemetryStore", "Value"]

Value = float | int | bool | str
Sample = tuple[float, Value]


@dataclass(slots=True)
class TelemetryPoint:
    """One reading of one device at one time: measurement = kind, tags = device_id + tags."""

    device_id: str
    kind: str
    ts: float
    fields: dict[str, Value]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StoreStats:
    """Point counters of a store; ``written`` includes the ``replayed`` ones."""

    written: int = 0
    spooled: int = 0
    replayed: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    batches: int = 0


@runtime_checkable
class TelemetryStore(Protocol):
    """Where device telemetry goes: enqueue fast, flush in batches, query back."""

    @property
    def stats(self) -> StoreStats:
        """Counters since the store was created."""
        ...

    @property
    def queued(self) -> int:
        """Points taken by ``write`` that the writer has not yet stored or spooled (for backpressure)."""
        ...

    def drained_to(self, level: int) -> Awaitable[None]:
        """Resolves once at most ``level`` points are queued."""
        ...

    async def start(self) -> None:
        """Open connections and start the background writer."""
        ...

    async def close(self) -> None:
        """Flush what is queued and stop."""
        ...

    def write(self, point: TelemetryPoint) -> None:
        """Enqueue one point without waiting; raises StoreUnavailable only if nothing can take it."""
        ...

    async def flush(self) -> None:
        """Return once every point written before the call is stored (or durably spooled)."""
        ...

    async def query(
        self, device_id: str, metric: str, start: float, end: float, every: float | None = None
    ) -> list[Sample]:
        """Samples of one metric in ``[start, end)``; with ``every``, the mean per epoch-aligned bucket."""
        ...

    async def health(self) -> tuple[bool, str]:
        """Whether the store works now, and a short human detail."""
        ...
