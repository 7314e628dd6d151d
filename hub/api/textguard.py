"""Text no database can store (NUL, unpaired surrogates) is refused at the door, the field named, on both backends.

PostgreSQL refuses ``\\u0000`` in text and every driver refuses a lone surrogate (it is not encodable as UTF-8);
SQLite takes NUL but not surrogates. Checked once for every route: path and query parameters, and JSON bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

__all__ = ["refuse_unstorable_text", "unstorable"]

# A body larger than this is not walked (none of the API's JSON bodies comes near it).
MAX_WALK = 1 << 20


def unstorable(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which no text column stores"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired surrogate: not Unicode text"
    return None


def _strings(value: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*loc, str(key)), str(key)
            yield from _strings(item, (*loc, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*loc, index))


async def _body(request: Request, route: APIRoute | None) -> Any:
    if route is None or route.body_field is None:
        return None  # routes that read a raw body (CSV, YAML) check what they decode
    if "json" not in request.headers.get("content-type", ""):
        return None
    raw = await request.body()
    if not raw or len(raw) > MAX_WALK:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None  # FastAPI answers a body it cannot parse itself, with the position


async def refuse_unstorable_text(request: Request) -> None:
    """422 naming every path, query or body field whose text no database can store."""
    route = request.scope.get("route")
    route = route if isinstance(route, APIRoute) else None
    declared = {p.alias for p in route.dependant.query_params} if route else set()
    found: list[tuple[tuple[str | int, ...], str]] = []
    found += [
        (("path", name), value) for name, value in request.path_params.items() if isinstance(value, str)
    ]
    found += [(("query", k), v) for k, v in request.query_params.multi_items() if k in declared]
    found += list(_strings(await _body(request, route), ("body",)))
    errors = []
    for loc, text in found:
        why = unstorable(text)
        if why is not None:
            errors.append({"type": "unstorable_text", "loc": loc, "msg": f"the text {why}", "input": None})
    if errors:
        raise RequestValidationError(errors)
