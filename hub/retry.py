"""One retry policy for the hub: bounded attempts, exponential backoff with jitter (tenacity).

Two ways to use it: ``retrying(policy)`` for work that is awaited again in place (``async for attempt in ...``),
and ``delay(policy, attempt)`` for work that waits in a row until its next attempt is due (the outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

__all__ = ["RetryPolicy", "Sleep", "delay", "retrying"]

Sleep = Callable[[float], Awaitable[None]]


class RetryPolicy(BaseModel):
    """How often and how patiently to try again: ``attempts`` in all, waits from ``initial_s`` up to ``max_s``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    attempts: int = Field(default=5, ge=1)
    initial_s: float = Field(default=0.5, gt=0)
    max_s: float = Field(default=10.0, gt=0)
    jitter_s: float = Field(default=0.5, ge=0)

    def wait(self) -> wait_exponential_jitter:
        """tenacity's wait strategy for this policy."""
        return wait_exponential_jitter(multiplier=self.initial_s, max=self.max_s, jitter=self.jitter_s)


def retrying(
    policy: RetryPolicy,
    *,
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    sleep: Sleep = asyncio.sleep,
) -> AsyncRetrying:
    """Attempts of awaited work: ``on`` exceptions are retried, the last one is re-raised when attempts run out."""
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=policy.wait(),
        retry=retry_if_exception_type(on),
        sleep=sleep,
        reraise=True,
    )


def delay(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first), jitter included."""
    state = RetryCallState(AsyncRetrying(), None, (), {})
    state.attempt_number = max(attempt, 1)
    return float(policy.wait()(state))
