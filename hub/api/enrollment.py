"""Enrollment: direct enrollment, claim codes (scanned claim URLs) and CSV bulk import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, model_validator

from hub.api.auth import ClockDep, Principal, require_roles
from hub.api.deps import HubDep, Id
from hub.api.devices import credential_store, device_out
from hub.errors import InvalidInput
from provisioning import bulk, claims, enroll
from provisioning.devices import Actor

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["enrollment"])
Technician = Annotated[Principal, Depends(require_roles("technician"))]
MAX_CSV_BYTES = 64 * 1024 * 1024


class Placement(BaseModel):
    """Where a device goes: a household (id or code), or the grid worker wearing a body-cam."""

    model_config = {"extra": "forbid"}
    household: Id | str | None = None
    responder_id: Id | None = None
    position: str = Field(default="", max_length=200)


class EnrollBody(Placement):
    """A device enrolled directly by serial."""

    serial: str = Field(min_length=1, max_length=64)
    kind: str
    transport: str = "mqtt"
    model: str = Field(default="", max_length=64)
    firmware: str = Field(default="", max_length=32)
    imei: str | None = Field(default=None, max_length=20)


class ClaimBody(Placement):
    """A claim: the scanned claim URL, or serial and code typed from the box."""

    url: str | None = None
    serial: str | None = Field(default=None, max_length=64)
    code: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _url_or_code(self) -> ClaimBody:
        if self.url is None and not (self.serial and self.code):
            raise ValueError("give the scanned claim url, or serial and code")
        return self


def _enrolled(result: enroll.Enrolled, clock: ClockDep, household: int | str | None) -> JSONResponse:
    now = clock()
    code = household if isinstance(household, str) else None
    body = {"device": device_out(result.device, now, code), "secrets": result.secrets.public()}
    return JSONResponse(body, status_code=201)


@router.post("/devices", status_code=201)
async def enroll_device(
    body: EnrollBody, hub: HubDep, principal: Technician, clock: ClockDep
) -> JSONResponse:
    """Enroll a serial into a household (403 outside the caller's places, 409 for a known serial)."""
    spec = enroll.DeviceSpec(**body.model_dump())
    store = credential_store(hub, clock)
    async with hub.db.session() as session:
        result = await enroll.enroll_direct(
            session, spec, actor=Actor(principal.actor, "api"), store=store, principal=principal, clock=clock
        )
    # After the commit: ingest forgets any "unknown serial" it remembered for this device.
    store.announce(result.device.id, "enrolled")
    return _enrolled(result, clock, body.household)


@router.post("/claims", status_code=201)
async def claim(body: ClaimBody, hub: HubDep, principal: Technician, clock: ClockDep) -> JSONResponse:
    """Assign a pre-registered device by its claim code; any mismatch is the same 401 refusal."""
    if body.url is not None:
        serial, code = claims.parse_claim_url(body.url)
    else:
        serial, code = body.serial or "", body.code or ""
    store = credential_store(hub, clock)
    result = await enroll.claim_device(
        hub.db,
        serial,
        code,
        enroll.DeviceSpec(serial=serial, kind="", **body.model_dump(exclude={"url", "serial", "code"})),
        actor=Actor(principal.actor, "api"),
        store=store,
        secret_key=hub.settings.secret_key.get_secret_value(),
        principal=principal,
        clock=clock,
    )
    store.announce(result.device.id, "claimed")
    return _enrolled(result, clock, body.household)


@router.post("/devices/import")
async def import_csv(
    request: Request, hub: HubDep, principal: Technician, clock: ClockDep, skip_invalid: bool = False
) -> JSONResponse:
    """Import a CSV body (text/csv, UTF-8); nothing is written unless every row is good or skip_invalid."""
    data = await request.body()
    if len(data) > MAX_CSV_BYTES:
        raise InvalidInput(
            f"the CSV is over {MAX_CSV_BYTES // (1024 * 1024)} MiB; use `iothub devices import`", field="file"
        )
    async with hub.db.session() as session:
        report = await bulk.import_devices(
            session,
            data,
            actor=Actor(principal.actor, "api"),
            principal=principal,
            skip_invalid=skip_invalid,
            clock=clock,
        )
    out: dict[str, Any] = {
        "applied": report.applied,
        "rows": report.rows,
        "created": report.created,
        "unchanged": report.unchanged,
        "notes": report.notes,
        "errors": [{"line": e.line, "serial": e.serial, "reason": e.reason} for e in report.errors],
    }
    return JSONResponse(out, status_code=200 if report.applied else 422)
