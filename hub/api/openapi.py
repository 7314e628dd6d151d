"""The OpenAPI document: the API-key security schemes and the problem+json answers of every operation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from hub.api.problems import MEDIA_TYPE

__all__ = ["FieldError", "Problem", "document_problems", "serve_problem_schema"]

_REF = "#/components/schemas/{model}"
_WHY = {
    401: "No API key, or an unknown, malformed or revoked one (with a `WWW-Authenticate: Bearer` challenge).",
    403: "The key's role may not do this, or the object lies outside the key's places.",
    404: "No such object.",
    409: "The object exists already, or its state does not allow the change.",
    422: "The request is well-formed HTTP but its content is wrong: `field` names the culprit.",
    429: "Too many attempts; `Retry-After` says when to try again.",
    503: "A component this needs is not running.",
}


class FieldError(BaseModel):
    """One wrong input."""

    field: str = Field(description="the parameter or body field, dotted (`outline.coordinates`), or `body`")
    in_: str = Field(alias="in", description="path, query, header or body")
    message: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str = Field(description="a short key: unauthorized, forbidden, not_found, conflict, invalid, …")
    status: int
    detail: str = Field(description="what was wrong, in words")
    instance: str | None = Field(default=None, description="the request's path")
    field: str | None = Field(default=None, description="the input at fault, when there is one")
    errors: list[FieldError] | None = Field(default=None, description="every wrong input (422)")


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    if dependant.call is not None:
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def _codes(route: APIRoute, authenticated: Callable[..., Any]) -> list[int]:
    """The problems an operation can answer: auth ones where a key is needed, 409 for writes, 429 for claims."""
    calls = set(_calls(route.dependant))
    writes = bool((route.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"})
    dependant = route.dependant
    codes = [409] if writes else []
    if "{" in route.path:
        codes.append(404)
    if writes or dependant.path_params or dependant.query_params or route.body_field is not None:
        codes.append(422)
    if authenticated in calls:
        codes += [401, 403]
    if route.path.startswith("/twilio"):
        codes += [403, 503]
    if route.path.startswith("/api/v1/claims"):
        codes.append(429)
    return sorted(set(codes))


def document_problems(router: APIRouter, authenticated: Callable[..., Any]) -> None:
    """Declare the problem answers of each operation of ``router`` (before it is included)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema and route.path != "/metrics":
            for code in _codes(route, authenticated):
                route.responses.setdefault(
                    code,
                    {
                        "description": _WHY[code],
                        "content": {MEDIA_TYPE: {"schema": {"$ref": _REF.format(model="Problem")}}},
                    },
                )


def serve_problem_schema(app: FastAPI) -> None:
    """Put the Problem schema the operations refer to into the app's OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes, description=app.description
            )
            _, defs = models_json_schema([(Problem, "validation")], ref_template=_REF)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
