"""Responders' answers from their phones: SMS keywords and call keypresses, turned into case actions."""

from __future__ import annotations

import datetime as dt
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from alerts.notifiers.templates import SAY_LANGUAGE, MessageFacts, render_voice, reply_text
from hub.db.outbox import OutboxMessage
from hub.db.people import Responder
from hub.errors import Conflict, Forbidden, NotFound, StartupError
from provisioning.audit import record
from provisioning.responders import update_responder

if TYPE_CHECKING:
    from alerts.contracts import CaseActions
    from alerts.outbox import Outbox

__all__ = ["Command", "handle_gather", "handle_sms", "parse_command"]

log = logging.getLogger(__name__)

STOP = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "TD", "退订"}
START = {"START", "UNSTOP", "YES"}
WORDS = {
    "accept": {"1", "ACK", "OK", "收到", "确认", "接受"},
    "resolve": {"2", "DONE", "完成", "已处理"},
    "pass": {"PASS", "转交"},
    "away": {"AWAY", "外出"},
    "back": {"BACK", "回来", "在家"},
}
CASE_CODE = re.compile(r"^C-\d{8}-\d{4,}$", re.IGNORECASE)
RATING_TTL = dt.timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed reply: the verb, the case it names (if any) and the free text after it."""

    verb: str
    word: str
    case_code: str | None = None
    note: str = ""


def parse_command(body: str) -> Command:
    """Read "1", "ACK C-20261128-0001", "DONE C-… fixed", "STOP", "外出"… (full-width forms folded)."""
    text = unicodedata.normalize("NFKC", body).strip()
    parts = text.split(maxsplit=1)
    word = parts[0].upper() if parts else ""
    rest = parts[1] if len(parts) > 1 else ""
    verb = "stop" if word in STOP else "start" if word in START else "help"
    for name, words in WORDS.items():
        if word in words:
            verb = name
    code = None
    head, _, tail = rest.partition(" ")
    if CASE_CODE.match(head):
        code, rest = head.upper(), tail
    return Command(verb, word, code, rest.strip())


def _twiml_message(text: str) -> str:
    response = MessagingResponse()
    response.message(text)
    return str(response)


def _guess_language(body: str, phone: str) -> str:
    return "zh-CN" if phone.startswith("+86") or any("\u4e00" <= ch <= "\u9fff" for ch in body) else "en"


def _actions(outbox: Outbox) -> CaseActions:
    if outbox.actions is None:
        raise StartupError("case actions are not wired to the notifier")
    return outbox.actions


async def _refuse(outbox: Outbox, phone: str, reason: str, body: str) -> None:
    """Log and audit a reply the hub will not act on."""
    log.info("refused SMS from %s: %s", phone, reason)
    async with outbox.db.session() as session:
        record(
            session,
            phone,
            "sms",
            "sms_refused",
            "phone",
            phone,
            {"reason": reason, "body": body[:160]},
            outbox.clock,
        )


async def _rating_request(outbox: Outbox, phone: str) -> OutboxMessage | None:
    """The rating request this phone was asked last, if it is the last thing it was sent and unanswered."""
    async with outbox.db.session() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.phone == phone, OutboxMessage.sent_at.is_not(None))
            .order_by(OutboxMessage.sent_at.desc(), OutboxMessage.id.desc())
            .limit(1)
        )
        last = await session.scalar(query)
    if last is None or last.kind != "rating_request" or last.answer is not None or last.sent_at is None:
        return None
    return last if outbox.clock() - last.sent_at < RATING_TTL else None


async def _set_answer(outbox: Outbox, row_id: int, answer: str) -> None:
    async with outbox.db.session() as session:
        row = await session.get(OutboxMessage, row_id)
        if row is not None and row.answer is None:
            row.answer = answer


async def handle_sms(outbox: Outbox, params: Mapping[str, str]) -> str:
    """Answer one inbound SMS (already signature-checked) with a TwiML reply."""
    phone, body = params.get("From", ""), params.get("Body", "")
    command = parse_command(body)
    async with outbox.db.session() as session:
        responder = await session.scalar(select(Responder).where(Responder.phone == phone))
        language = responder.language if responder else _guess_language(body, phone)
        if command.verb in ("stop", "start") and responder is not None:
            opt_out = command.verb == "stop"
            await update_responder(
                session,
                responder.id,
                {"sms_opt_out": opt_out},
                actor=f"phone:{phone}",
                channel="sms",
                clock=outbox.clock,
            )
    if command.verb in ("stop", "start"):
        return _twiml_message(reply_text("opted_out" if command.verb == "stop" else "opted_in", language))
    rating = await _rating_request(outbox, phone) if command.word in {"1", "2", "3", "4", "5"} else None
    if rating is not None and rating.case_code:
        await _actions(outbox).rate(rating.case_code, int(command.word), phone)
        await _set_answer(outbox, rating.id, f"rated:{command.word}")
        return _twiml_message(reply_text("rated", language))
    if command.verb in ("away", "back"):
        changed = await _actions(outbox).set_away(phone, command.verb == "away")
        if changed:
            return _twiml_message(reply_text(command.verb, language))
        await _refuse(outbox, phone, "no household", body)
        return _twiml_message(reply_text("unknown_number", language))
    if responder is None:
        await _refuse(outbox, phone, "unknown number", body)
        return _twiml_message(reply_text("unknown_number", language))
    if command.verb == "help":
        return _twiml_message(reply_text("help", language))
    return _twiml_message(await _case_command(outbox, responder, command, language, body))


async def _case_command(
    outbox: Outbox, responder: Responder, command: Command, language: str, body: str
) -> str:
    actions = _actions(outbox)
    code = command.case_code
    if code is None:
        latest = await actions.latest_open_case_for(responder.id)
        if latest is None:
            return reply_text("no_case", language)
        code = latest.code
    try:
        if command.verb == "accept":
            await actions.accept(code, responder.id, "sms", command.note)
            return reply_text("accepted", language, code=code)
        if command.verb == "resolve":
            await actions.resolve(code, responder.id, "sms", command.note)
            return reply_text("resolved", language, code=code)
        await actions.pass_on(code, responder.id, "sms")
        return reply_text("passed", language)
    except (Forbidden, NotFound) as exc:
        # An unknown code gets the same answer as someone else's case: a reply reveals nothing.
        await _refuse(outbox, responder.phone, f"case {code}: {exc.message}", body)
        return reply_text("not_yours", language, code=code)
    except Conflict as exc:
        return reply_text("conflict", language, code=code, why=exc.message)


async def handle_gather(outbox: Outbox, outbox_id: int, params: Mapping[str, str]) -> str:
    """Answer a keypress during a call: 1 accepts, 2 passes on, anything else asks again."""
    async with outbox.db.session() as session:
        row = await session.get(OutboxMessage, outbox_id)
    if row is None or row.channel != "voice":
        raise NotFound(f"no call {outbox_id}")
    call_sid = params.get("CallSid")
    if row.twilio_sid and call_sid and call_sid != row.twilio_sid:
        raise Forbidden("the keypress belongs to another call")
    digits, language = params.get("Digits", ""), row.language
    say = SAY_LANGUAGE.get(language, "en-US")
    response = VoiceResponse()
    if digits not in ("1", "2") or row.case_code is None or row.responder_id is None:
        _spoken, twiml = render_voice(
            MessageFacts(row.kind, language, row.case_code, row.facts), outbox.gather_url(row.id)
        )
        return twiml
    await _set_answer(outbox, row.id, digits)
    actions = _actions(outbox)
    try:
        if digits == "1":
            await actions.accept(row.case_code, row.responder_id, "voice")
            text = reply_text("accepted", language, code=row.case_code)
        else:
            await actions.pass_on(row.case_code, row.responder_id, "voice")
            text = reply_text("passed", language)
    except (Forbidden, NotFound):
        text = reply_text("not_yours", language, code=row.case_code)
    except Conflict as exc:
        text = reply_text("conflict", language, code=row.case_code, why=exc.message)
    response.say(text, language=say)
    return str(response)
