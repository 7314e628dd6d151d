"""Components start in order and stop in reverse under a timeout; background tasks are named and held."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Component", "ComponentHealth", "Lifecycle", "TaskSet"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """What /readyz says of one component."""

    name: str
    ok: bool
    detail: str


class Component(Protocol):
    """Anything the lifespan starts and stops."""

    name: str

    async def start(self) -> None:
        """Start serving."""

    async def stop(self) -> None:
        """Stop and release every resource."""

    async def health(self) -> tuple[bool, str]:
        """Say whether it works, and why not."""


class TaskSet:
    """Holds named background tasks so none is fire-and-forget; cancels them all at stop."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start ``coro`` as a task called ``name`` and keep it until it ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def names(self) -> list[str]:
        """The names of the tasks still running."""
        return sorted(t.get_name() for t in self._tasks)

    async def stop(self, timeout: float) -> None:
        """Cancel every task and wait for them, at most ``timeout`` seconds."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                log.warning("task %s did not stop within %.1fs", task.get_name(), timeout)


class Lifecycle:
    """Starts components in order and stops the started ones in reverse."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.components: list[Component] = []
        self._started: list[Component] = []

    def add(self, component: Component) -> None:
        """Register ``component``; it starts after the ones added before it."""
        self.components.append(component)

    async def start(self) -> None:
        """Start every component; on a failure stop those already started and re-raise."""
        for component in self.components:
            log.debug("starting %s", component.name)
            try:
                await component.start()
            except BaseException:
                await self.stop()
                raise
            self._started.append(component)

    async def stop(self) -> None:
        """Stop the started components in reverse order, each under the timeout."""
        while self._started:
            component = self._started.pop()
            try:
                async with asyncio.timeout(self.timeout):
                    await component.stop()
            except TimeoutError:
                log.error("%s did not stop within %.1fs", component.name, self.timeout)
            except Exception:
                log.exception("%s failed to stop cleanly", component.name)

    async def health(self) -> list[ComponentHealth]:
        """Ask every component how it is."""
        results = []
        for component in self.components:
            if component not in self._started:
                results.append(ComponentHealth(component.name, False, "not started"))
                continue
            try:
                async with asyncio.timeout(2.0):
                    ok, detail = await component.health()
            except TimeoutError:
                ok, detail = False, "health check timed out"
            results.append(ComponentHealth(component.name, ok, detail))
        return results
