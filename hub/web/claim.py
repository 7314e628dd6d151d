"""The claim page: a box's QR code opens it on the technician's phone; the form claims the device, no app needed."""

from __future__ import annotations

import html
from importlib import resources
from string import Template
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from hub.api.deps import HubDep
from hub.errors import HubError, InvalidInput
from provisioning.apikeys import authenticate
from provisioning.devices import Actor
from provisioning.enroll import DeviceSpec, claim_device

__all__ = ["MAX_FORM", "router"]

router = APIRouter(tags=["pages"], include_in_schema=False)
# A claim form is three short fields; anything larger is not one.
MAX_FORM = 8 * 1024
_PAGE = Template(resources.files("hub.web").joinpath("claim.html").read_text(encoding="utf-8"))


def _page(
    serial: str,
    code: str,
    *,
    message: str = "",
    ok: bool = False,
    status: int = 200,
    values: dict[str, str] | None = None,
) -> HTMLResponse:
    values = values or {}
    note = (
        f'<p class="note {"ok" if ok else "err"}" role="status">{html.escape(message)}</p>' if message else ""
    )
    body = _PAGE.substitute(
        serial=html.escape(serial),
        serial_q=quote(serial, safe=""),
        code=html.escape(code),
        message=note,
        household=html.escape(values.get("household", "")),
        position=html.escape(values.get("position", "")),
    )
    return HTMLResponse(
        body, status_code=status, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


@router.get("/claim/{serial}")
async def claim_page(serial: str, c: str = "") -> HTMLResponse:
    """The form, with the serial and code from the QR code filled in."""
    return _page(serial, c)


@router.post("/claim/{serial}")
async def claim_submit(serial: str, request: Request, hub: HubDep) -> HTMLResponse:
    """Claim the device into the household typed in, as the technician whose key was given."""
    raw = await request.body()
    if len(raw) > MAX_FORM:
        return _page(serial, "", message="表单过大 Form too large", status=413)
    form = dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))
    code, household, position = (
        form.get("c", ""),
        form.get("household", "").strip(),
        form.get("position", "").strip(),
    )
    values = {"household": household, "position": position}
    try:
        if not household:
            raise InvalidInput("住户编码必填 the household code is required", field="household")
        async with hub.db.session() as session:
            principal = await authenticate(session, form.get("key", "").strip(), hub.clock)
        if principal.role not in ("technician", "admin"):
            return _page(
                serial,
                code,
                message="此密钥不能认领设备 this key may not claim devices",
                status=403,
                values=values,
            )
        from hub.api.devices import credential_store

        store = credential_store(hub, hub.clock)
        done = await claim_device(
            hub.db,
            serial,
            code,
            DeviceSpec(serial=serial, kind="", household=household, position=position),
            actor=Actor(principal.actor, "web"),
            store=store,
            secret_key=hub.settings.secret_key.get_secret_value(),
            principal=principal,
            clock=hub.clock,
        )
        store.announce(done.device.id, "claimed")
    except HubError as exc:
        return _page(serial, code, message=exc.message, status=exc.status, values=values)
    secrets = done.secrets.public()
    shown = f"已认领 Claimed: {done.device.kind} → {household}. MQTT 密码 password (只显示一次 shown once): {secrets['mqtt_password']}"
    return _page(serial, "", message=shown, ok=True, status=201, values=values)
