"""Twilio webhooks: status callbacks, inbound SMS and call keypresses, each signed by Twilio."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from twilio.request_validator import RequestValidator

from hub.api.deps import HubDep, Id
from hub.errors import Forbidden, StartupError

if TYPE_CHECKING:
    from alerts.outbox import Outbox
    from hub.app import Hub

__all__ = ["router"]

router = APIRouter(prefix="/twilio", tags=["twilio"])
TWIML = "application/xml"
# What the OpenAPI document says these answer: TwiML.
TWIML_DOC: dict[int | str, dict[str, Any]] = {
    200: {"description": "TwiML", "content": {TWIML: {"schema": {"type": "string"}}}}
}


def _outbox(hub: Hub) -> Outbox:
    outbox: Outbox | None = getattr(hub, "outbox", None)
    if outbox is None:
        raise StartupError("notifications are not running")
    return outbox


async def signed_params(request: Request, hub: Hub) -> dict[str, str]:
    """The form parameters, once ``X-Twilio-Signature`` proves Twilio sent them; Forbidden otherwise."""
    token = hub.settings.twilio.auth_token
    signature = request.headers.get("X-Twilio-Signature")
    body = (await request.body()).decode("utf-8", errors="replace")
    params = dict(parse_qsl(body, keep_blank_values=True))
    if token is None or not signature:
        raise Forbidden("unsigned Twilio webhook")
    # Twilio signs the URL it called: the public one when the hub sits behind a proxy.
    base = hub.settings.web.public_base_url
    url = str(request.url)
    if base:
        url = base.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not RequestValidator(token.get_secret_value()).validate(url, params, signature):
        raise Forbidden("Twilio signature does not match")
    return params


@router.post("/status/{outbox_id}", status_code=204)
async def status_callback(outbox_id: Id, request: Request, hub: HubDep) -> Response:
    """Twilio reports a message's or call's status: the outbox row (and its bundle) moves on."""
    params = await signed_params(request, hub)
    from alerts.notifiers.delivery import settle_status

    await settle_status(_outbox(hub), outbox_id, params)
    return Response(status_code=204)


@router.post("/sms", response_class=Response, responses=TWIML_DOC)
async def inbound_sms(request: Request, hub: HubDep) -> Response:
    """A reply by SMS: accept, resolve, pass, away/back, a rating, STOP/START; answered in TwiML."""
    params = await signed_params(request, hub)
    from alerts.notifiers.replies import handle_sms

    return Response(await handle_sms(_outbox(hub), params), media_type=TWIML)


@router.post("/voice/{outbox_id}/gather", response_class=Response, responses=TWIML_DOC)
async def call_keypress(outbox_id: Id, request: Request, hub: HubDep) -> Response:
    """A key pressed during a call: 1 accepts, 2 passes on; answered with TwiML the call says."""
    params = await signed_params(request, hub)
    from alerts.notifiers.replies import handle_gather

    return Response(await handle_gather(_outbox(hub), outbox_id, params), media_type=TWIML)
