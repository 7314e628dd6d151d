"""Every error leaves the API as RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.errors import HubError
from hub.logmask import Masker

__all__ = ["install_problem_handlers", "problem"]

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})
_UNPARSABLE = "There was an error parsing the body"
_DATA_ERRORS = {
    "22001": "a text longer than its field takes",
    "22003": "a number out of the range its field takes",
    "22021": "text the database cannot store (a NUL character)",
}


def problem(status: int, title: str, detail: str, request: Request, **extra: Any) -> JSONResponse:
    """A problem+json response; the detail passes the app's secret mask (a peer's error may quote a URL)."""
    masker: Masker = getattr(request.app.state, "masker", None) or Masker()
    body = {"type": "about:blank", "title": title, "status": status, "detail": masker(detail)}
    body["instance"] = request.url.path
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


async def _hub_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    if exc.status >= 500:
        log.error("%s on %s: %s", type(exc).__name__, request.url.path, exc.message)
    response = problem(exc.status, exc.key, exc.message, request, field=exc.field)
    if exc.status == 401:
        # RFC 9110: every 401 carries a challenge.
        response.headers["WWW-Authenticate"] = 'Bearer realm="iothub"'
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(int(retry_after))
    return response


def _validation_entry(err: Any) -> dict[str, str]:
    """One pydantic error as ``{field, in, message}``: the field a client sent, never an internal offset."""
    loc = [str(part) for part in err["loc"]]
    where = loc.pop(0) if loc and loc[0] in _LOCATIONS else "body"
    if err.get("type") == "json_invalid":
        # FastAPI puts the character offset of a JSON syntax error in ``loc``: it is a position, not a field.
        reason = (err.get("ctx") or {}).get("error") or "not valid JSON"
        position = loc[0] if loc else "0"
        return {"field": "body", "in": "body", "message": f"invalid JSON at character {position}: {reason}"}
    message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return {"field": ".".join(loc) or where, "in": where, "message": message}


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_validation_entry(err) for err in exc.errors()]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem(
        422, "invalid", detail, request, errors=errors, field=errors[0]["field"] if errors else None
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE:
        # FastAPI's answer to a body it cannot even decode (not UTF-8): the same 422 as a JSON syntax error.
        message = "not a JSON document in UTF-8"
        errors = [{"field": "body", "in": "body", "message": message}]
        return problem(422, "invalid", f"body: {message}", request, errors=errors, field="body")
    title = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    response = problem(exc.status_code, title.get(exc.status_code, "error"), str(exc.detail), request)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # SQLSTATE class 22 is "data exception": a value the database would not take (too long, out of range).
    # The API's own checks should have refused it; say so plainly rather than answer 500.
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")
    if not sqlstate.startswith("22"):
        return await _unexpected(request, exc)
    log.warning("the database refused a value on %s (SQLSTATE %s)", request.url.path, sqlstate)
    why = _DATA_ERRORS.get(sqlstate, "a value out of the range or length its field takes")
    return problem(422, "invalid", f"the request holds {why}", request)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return problem(500, "internal", "internal error; see the hub's log", request)


def install_problem_handlers(app: FastAPI) -> None:
    """Map the hub's errors, validation errors and HTTP errors to problem+json."""
    app.add_exception_handler(HubError, _hub_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
