"""Active/standby: campaign for the lease, take over in steps, keep the lease, and fence when it is lost.

A standby serves the API and consumes nothing: the consumers (rules, outbox, cases, CoAP, MQTT) are in a
``Lifecycle`` of their own that only the lease holder starts. Taking over is a list of steps run in
order once the fence wait is over; each asks the lease first. Losing the lease ends the process
(``on_lost``, by default exit status 75): it stops consuming at once, as after ``kill -9``, which the hub
survives by design, and its supervisor starts it again as a standby.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge

from hub.config_ha import HaSettings
from hub.ha.holder import Holder
from hub.ha.lease import LeaderLease
from hub.lifecycle import ComponentHealth, Lifecycle, TaskSet

__all__ = ["EXIT_LEASE_LOST", "HaCoordinator", "Step", "exit_on_lost"]

log = logging.getLogger(__name__)
EXIT_LEASE_LOST = 75  # EX_TEMPFAIL: the supervisor should start the process again
Role = Literal["standby", "taking over", "active"]


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a takeover, run before the consumers start."""

    name: str
    run: Callable[[], Awaitable[object]]


def exit_on_lost(reason: str) -> None:
    """The default fence: stop this process now, consuming nothing more, with a status that asks for a restart."""
    log.critical("leader lease lost (%s): exiting so that the standby can take over", reason)
    sys.stderr.flush()
    os._exit(EXIT_LEASE_LOST)


class HaCoordinator:
    """The ``ha`` component: its health says the role and the holder; ``fence`` is the consumers' check."""

    name = "ha"

    def __init__(
        self,
        settings: HaSettings,
        lease: LeaderLease,
        consumers: Sequence[Lifecycle],
        steps: Sequence[Step],
        *,
        holder: Callable[[], Awaitable[Holder | None]] | None = None,
        on_lost: Callable[[str], None] = exit_on_lost,
        registry: CollectorRegistry | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.lease = lease
        self.consumers = list(consumers)
        self.steps = list(steps)
        self.holder = holder
        self.on_lost = on_lost
        self.wall = wall
        self.role: Role = "standby"
        self.locked_at: float | None = None  # wall clock, when this node took the lock
        self.active_at: float | None = None  # wall clock, when its consumers had started
        self.step_seconds: dict[str, float] = {}
        self.fenced: str | None = None
        self._tasks = TaskSet()
        registry = registry or CollectorRegistry()
        self._leader_gauge = Gauge(
            "iothub_ha_leader", "1 on the node that holds the lease and consumes", registry=registry
        )
        self._takeover_gauge = Gauge(
            "iothub_ha_takeover_seconds",
            "From taking the lock to consuming, last takeover",
            registry=registry,
        )

    @property
    def fence_wait(self) -> float:
        """How long a new holder waits before consuming: the lease, plus a heartbeat for an action in flight."""
        return self.settings.lease + self.settings.renew

    def fence(self) -> bool:
        """True while this node may consume; past the lease it fences itself (and returns False)."""
        if self.lease.valid():
            return True
        self._lost("the lease ran out before a heartbeat confirmed it")
        return False

    async def start(self) -> None:
        """Campaign in the background; the API serves meanwhile."""
        self._tasks.spawn(self._campaign(), name="ha-campaign")

    async def stop(self) -> None:
        """Stop the consumers (if active), then give the lock back: the standby may take it at once."""
        await self._tasks.stop(2.0)
        for lifecycle in reversed(self.consumers):
            await lifecycle.stop()
        await self.lease.release()
        self.role = "standby"
        self._leader_gauge.set(0)

    async def health(self) -> tuple[bool, str]:
        """Ready in both roles; says which this node is and who holds the lease."""
        status = await self.status()
        detail = f"{self.role} ({self.settings.node})"
        if self.role == "active" and self.active_at is not None and self.locked_at is not None:
            detail += f", took over in {self.active_at - self.locked_at:.2f} s"
        holder = status.get("holder")
        if isinstance(holder, dict):
            detail += f"; lease held by {holder['node']} since {holder['since']}"
        elif "holder" in status:
            detail += "; lease free"
        if self.lease.last_error and self.role == "standby":
            detail += f"; last attempt: {self.lease.last_error}"
        return True, detail

    async def consumer_health(self) -> list[ComponentHealth]:
        """The consumers' own health on the active; on a standby each one is fine where it is: not here."""
        if self.role == "active":
            return [h for lifecycle in self.consumers for h in await lifecycle.health()]
        where = f"{self.role}: runs on the lease holder"
        return [ComponentHealth(c.name, True, where) for lc in self.consumers for c in lc.components]

    async def status(self) -> dict[str, object]:
        """Role, node and the lease holder for ``/readyz`` (the holder as PostgreSQL sees it)."""
        out: dict[str, object] = {"role": self.role, "node": self.settings.node}
        if self.active_at is not None:
            out["active_since"] = _iso(self.active_at)
        if self.holder is not None:
            try:
                holder = await self.holder()
            except Exception as exc:  # the database may be down: say so instead of failing the probe
                out["holder_error"] = type(exc).__name__
            else:
                out["holder"] = None if holder is None else {"node": holder.node, "since": _iso(holder.since)}
        return out

    async def _campaign(self) -> None:
        while not await self.lease.try_acquire():  # noqa: ASYNC110 - polling the database is the point
            await asyncio.sleep(self.settings.poll)
        self.role, self.locked_at = "taking over", self.wall()
        log.info("ha: %s took the lock; consuming in %.1f s", self.settings.node, self.fence_wait)
        # The previous holder stops by the end of its lease; keep ours alive meanwhile.
        await self._keep(until=self.lease.clock() + self.fence_wait)
        for step in self.steps:
            if not self.fence():
                return
            started = time.perf_counter()
            try:
                await step.run()
            except Exception as exc:
                # Holding the lock without consuming would stall everyone: give it up (the process restarts).
                log.exception("ha: takeover step %r failed", step.name)
                self._lost(f"takeover step {step.name!r} failed: {type(exc).__name__}: {exc}")
                return
            self.step_seconds[step.name] = time.perf_counter() - started
        if not self.fence():
            return
        self.role, self.active_at = "active", self.wall()
        self._leader_gauge.set(1)
        self._takeover_gauge.set(self.active_at - self.locked_at)
        log.info("ha: %s is active (%s)", self.settings.node, _steps(self.step_seconds))
        await self._keep(until=None)

    async def _keep(self, until: float | None) -> None:
        """Heartbeat every ``renew`` seconds (until ``until`` on the lease clock); fence when the lock is gone."""
        lost = asyncio.ensure_future(self.lease.lost.wait())
        try:
            while until is None or self.lease.clock() < until:
                pause = self.settings.renew
                if until is not None:
                    pause = min(pause, max(until - self.lease.clock(), 0.0))
                done, _ = await asyncio.wait({lost}, timeout=pause)
                if done or not await self.lease.heartbeat():
                    self._lost(self.lease.last_error or "the lock connection ended")
                    return
        finally:
            lost.cancel()

    def _lost(self, reason: str) -> None:
        if self.fenced is None:
            self.fenced = reason
            self._leader_gauge.set(0)
            self.on_lost(reason)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _steps(seconds: dict[str, float]) -> str:
    return ", ".join(f"{name} {value * 1000:.0f} ms" for name, value in seconds.items())
