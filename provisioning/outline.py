"""A place's outline: a GeoJSON Polygon or MultiPolygon (RFC 7946), checked by geojson-pydantic."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from geojson_pydantic import MultiPolygon, Polygon
from pydantic import Field, TypeAdapter, ValidationError

__all__ = ["GEOMETRIES", "check_outline", "explain"]

GEOMETRIES = ("Polygon", "MultiPolygon")
_OUTLINE: TypeAdapter[Polygon | MultiPolygon] = TypeAdapter(
    Annotated[Polygon | MultiPolygon, Field(discriminator="type")]
)
# Names pydantic puts in an error's location for the member of a union it tried: not part of the path.
_UNION_TAGS = frozenset({*GEOMETRIES, "Position2D", "Position3D"})
_PLAIN = {
    "Input should be a valid number": "must be a number",
    "Input should be a valid list": "must be a list",
    "Input should be a valid array": "must be a list",
    "Field required": "is missing",
    "Input should be a valid dictionary": "must be an object",
}


def explain(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """(field, message) of the first error of ``exc``, in words: no pydantic URL, no union member names."""
    err = exc.errors(include_url=False)[0]
    path = prefix
    for part in err["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in _UNION_TAGS and "[" not in part:
            path += f".{part}" if path else str(part)
    message = str(err["msg"]).removeprefix("Value error, ")
    message = _PLAIN.get(message, message)
    if "at least 4 items" in message:
        message = "needs at least 4 positions (a linear ring ends where it starts)"
    elif "same start and end" in message:
        message = "has a linear ring that does not end where it starts"
    return path or prefix, message


def _positions(coordinates: Any) -> Iterator[Sequence[float]]:
    if coordinates and isinstance(coordinates[0], int | float):
        yield coordinates
        return
    for item in coordinates:
        yield from _positions(item)


def check_outline(value: Any) -> dict[str, Any]:
    """The outline as plain GeoJSON to store, or ValueError saying in words what is wrong with it."""
    if not isinstance(value, dict):
        raise ValueError("outline must be a GeoJSON object with 'type' Polygon or MultiPolygon")
    kind = value.get("type")
    if kind not in GEOMETRIES:
        raise ValueError(f"outline must be a GeoJSON Polygon or MultiPolygon geometry, not type {kind!r}")
    try:
        # Strict: "114.3" is text, not a longitude.
        geometry = _OUTLINE.validate_python(value, strict=True)
    except ValidationError as exc:
        field, message = explain(exc)
        raise ValueError(f"{field} {message}" if message[:1].islower() else f"{field}: {message}") from None
    plain: dict[str, Any] = geometry.model_dump(mode="json", exclude_none=True)
    if not plain["coordinates"]:
        raise ValueError("coordinates hold no ring: an outline needs at least one")
    for position in _positions(plain["coordinates"]):
        lon, lat = position[0], position[1]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ValueError(
                f"position [{lon}, {lat}] is not [longitude, latitude] in degrees (WGS 84, RFC 7946)"
            )
    return plain
