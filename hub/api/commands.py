"""Commands down to a device (silence a smoke alarm, start a body-cam recording) and their results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hub.api.auth import Principal, require_roles
from hub.api.deps import HubDep, Int64
from hub.api.telemetry import device_for
from hub.errors import InvalidInput, NotFound, TransportError

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["commands"])
Commander = Annotated[Principal, Depends(require_roles("operator", "technician"))]


class CommandBody(BaseModel):
    """A command by name, its parameters, and how long to wait for the device's answer."""

    model_config = {"extra": "forbid"}

    name: str = Field(min_length=1, max_length=64)
    params: dict[str, Any] = Field(default_factory=dict)
    wait: float = Field(
        default=0.0, ge=0, le=30, description="seconds to wait for the result (0: do not wait)"
    )


def _commands(hub: Any) -> Any:
    commands = getattr(hub.mqtt, "commands", None)
    if commands is None:
        raise TransportError("no MQTT transport is running to carry commands")
    return commands


@router.post("/devices/{serial}/commands")
async def send_command(serial: str, body: CommandBody, hub: HubDep, principal: Commander) -> JSONResponse:
    """Send a command the device's driver knows; 202 while it is pending, 200 with the result."""
    entry = await device_for(hub, serial, principal)
    if body.name not in entry.driver.commands:
        known = ", ".join(sorted(entry.driver.commands)) or "none"
        raise InvalidInput(f"a {entry.kind} has no command {body.name!r}; it has {known}", field="name")
    commands = _commands(hub)
    record = await hub.mqtt.send_command(serial, body.name, body.params)
    if body.wait > 0:
        record = await commands.wait(record, body.wait)
    return JSONResponse(record.as_dict(), status_code=202 if record.status == "sent" else 200)


@router.get("/devices/{serial}/commands/{cid}")
async def command_status(serial: str, cid: Int64, hub: HubDep, principal: Commander) -> dict[str, Any]:
    """What became of one command."""
    await device_for(hub, serial, principal)
    record = _commands(hub).get(cid)
    if record is None or record.serial != serial:
        raise NotFound(f"no command {cid} for device {serial}", field="cid")
    result: dict[str, Any] = record.as_dict()
    return result
