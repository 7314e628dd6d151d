"""Typed dependencies and bounded parameter types shared by the routers."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

from annotated_types import Ge, Le
from fastapi import Depends, Request
from pydantic import AfterValidator

if TYPE_CHECKING:
    from hub.app import Hub

__all__ = [
    "ID_MAX",
    "ID_MIN",
    "INSTANT_HELP",
    "INT64_MAX",
    "INT64_MIN",
    "TIME_MAX",
    "TIME_MIN",
    "HubDep",
    "Id",
    "Instant",
    "Int64",
    "get_hub",
]

# What both databases take as a count (LIMIT/OFFSET: SQLite INTEGER, PostgreSQL BIGINT).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# What a row id column holds: PostgreSQL INTEGER (SERIAL) is 32 bits.
ID_MIN = -(2**31)
ID_MAX = 2**31 - 1
# Telemetry time is 64-bit nanoseconds since 1970 (InfluxDB and the SQLite store):
# 1677-09-21 to 2262-04-11, kept inside with a margin for a default one-day window.
TIME_MIN = dt.datetime(1678, 1, 1, tzinfo=dt.UTC)
TIME_MAX = dt.datetime(2262, 1, 1, tzinfo=dt.UTC)


def get_hub(request: Request) -> Hub:
    """The running hub, set by the lifespan."""
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated["Hub", Depends(get_hub)]

# Integers a path, query or body takes, bounded so the OpenAPI says so and no database overflows:
# counts and offsets, and row ids (an id beyond 32 bits cannot exist: it is 404's neighbour, 422).
Int64 = Annotated[int, Ge(INT64_MIN), Le(INT64_MAX)]
Id = Annotated[int, Ge(ID_MIN), Le(ID_MAX)]


def _in_time_range(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None and not TIME_MIN <= value < TIME_MAX:
        raise ValueError(
            f"must lie between {TIME_MIN:%Y-%m-%d} and {TIME_MAX:%Y-%m-%d} (telemetry time is 64-bit nanoseconds)"
        )
    return value


# A point in time a telemetry query may name.
Instant = Annotated[dt.datetime, AfterValidator(_in_time_range)]
INSTANT_HELP = f"RFC 3339 with a time zone, from {TIME_MIN:%Y-%m-%d} to {TIME_MAX:%Y-%m-%d}"
