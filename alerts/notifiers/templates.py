"""Message texts in the responder's language (zh-CN, en): SMS bodies, call scripts, webhook replies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from alerts.categories import category_name
from alerts.limits import SHANGHAI

__all__ = ["MessageFacts", "render_sms", "render_voice", "reply_text"]

SEVERITIES = {"critical": ("紧急", "URGENT"), "major": ("重要", "MAJOR"), "minor": ("一般", "minor")}

SMS = {
    "case_alert": (
        "【{sev}】{code} {cat}\n地点：{place}\n时间：{when}{summary}\n回复1接受；处理完回复“DONE 备注”。",
        "[{sev}] {code} {cat}\nWhere: {place}\nWhen: {when}{summary}\nReply 1 to accept; DONE <note> when handled.",
    ),
    "bundle_head": ("【{sev}】{n}条告警：", "[{sev}] {n} alerts:"),
    # One case of a bundle: what happened in words (its summary, or its category's name), where, when.
    "bundle_line": ("{code} {what}，{place}，{when}", "{code} {what}, {place}, {when}"),
    "bundle_tail": ("回复“1 事件编号”接受其中一件。", "Reply 1 <code> to accept one."),
    "rating_request": (
        "事件{code}已处理完毕。请回复1-5为本次服务评分（5为非常满意）。",
        "Case {code} has been handled. Please rate our service: reply 1-5 (5 = very satisfied).",
    ),
    "test_confirmation": (
        "【测试】已收到{device}的{cat}测试报警（{place}，{when}）。设备工作正常，未通知应急人员。",
        "[TEST] {cat} test alarm received from {device} ({place}, {when}). The device works; "
        "no responder was notified.",
    ),
    "reply_ack": ("事件{code}：{text}", "Case {code}: {text}"),
    "budget_warning": (
        "【费用提醒】{place}今日通知费用已达预算的{pct}%（{spent}/{budget}）。超出预算后仅发送紧急告警。",
        "[Cost] {place} has used {pct}% of today's notification budget ({spent}/{budget}). "
        "Past the budget only urgent alerts go out.",
    ),
}
VOICE = (
    "这里是社区应急平台。{place}发生{cat}，事件编号{code}，时间{when}。{summary}接受请按1，转给下一位请按2。",
    "This is the community emergency desk. {cat} at {place}, case {code}, at {when}. {summary}"
    "Press 1 to accept, or 2 to pass it to the next responder.",
)
REPLIES = {
    "accepted": ("已确认：事件{code}由您处理。", "Confirmed: case {code} is yours."),
    "resolved": ("已记录：事件{code}已处理。谢谢！", "Recorded: case {code} is handled. Thank you!"),
    "passed": ("已转给下一位处理人。", "Passed on to the next responder."),
    "rated": ("感谢您的评分！", "Thank you for your rating!"),
    "away": ("已设为外出模式。回复BACK恢复。", "Away mode is on. Reply BACK when you are home."),
    "back": ("欢迎回家，已恢复正常看护。", "Welcome back: normal monitoring is on again."),
    "opted_out": ("您已退订短信通知，回复START可恢复。", "You will get no more SMS. Reply START to resume."),
    "opted_in": ("已恢复短信通知。", "SMS notifications are on again."),
    "unknown_number": (
        "抱歉，此号码未登记为应急联系人，无法处理您的回复。",
        "Sorry, this number is not registered with us, so we cannot act on your reply.",
    ),
    "not_yours": ("抱歉，事件{code}不在您负责的范围内。", "Sorry, case {code} is not in your area."),
    "no_case": ("您目前没有待处理的事件。", "You have no open case to answer."),
    "conflict": ("事件{code}当前无法这样处理：{why}", "Case {code} cannot be changed that way now: {why}"),
    "help": (
        "回复1接受，DONE+备注表示已处理，PASS转给下一位，STOP退订。",
        "Reply 1 to accept, DONE <note> when handled, PASS to pass on, STOP to opt out.",
    ),
    "no_input": ("未收到按键，再见。", "No key pressed. Goodbye."),
}
SAY_LANGUAGE = {"zh-CN": "zh-CN", "en": "en-US"}


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """One row's worth of what a text needs."""

    kind: str
    language: str
    case_code: str | None
    facts: Mapping[str, Any] = field(default_factory=dict)


def _i(language: str) -> int:
    return 0 if language == "zh-CN" else 1


def _when(value: object) -> str:
    """Shanghai local "MM-DD HH:MM" of a datetime or ISO string; anything else as it is."""
    when: object = value
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if not isinstance(when, dt.datetime):
        return "?" if when is None else str(when)
    local = when.astimezone(SHANGHAI) if when.tzinfo else when
    return local.strftime("%m-%d %H:%M")


def _place(facts: Mapping[str, Any], language: str) -> str:
    place = (
        facts.get("place")
        or facts.get("place_path")
        or ("未知地点" if language == "zh-CN" else "unknown place")
    )
    if isinstance(place, list | tuple):
        return ("/" if language == "zh-CN" else " / ").join(str(p) for p in place)
    return str(place)


def _in_language(text: object, language: str) -> str:
    """A text stored per language ({"zh-CN": …, "en": …}) in ``language``; a plain string as it is."""
    if isinstance(text, Mapping):
        found = text.get(language) or text.get("zh-CN") or next(iter(text.values()), "")
        return str(found or "")
    return str(text or "")


def _fields(m: MessageFacts) -> dict[str, str]:
    i, f = _i(m.language), m.facts
    category = str(f.get("category", ""))
    severity = str(f.get("severity", "minor"))
    said = _in_language(f.get("summary"), m.language)
    if not said:
        summary = ""
    elif m.kind == "voice":  # a sentence of its own before "press 1"
        summary = said.rstrip("。.!！ ") + ("。" if i == 0 else ". ")
    else:
        summary = "\n" + said
    cat = category_name(category, m.language)
    return {
        "code": m.case_code or "",
        "cat": cat,
        # A case's words in a bundle line: an alert's text (kept per language); a person's report (one string,
        # maybe long) by its category.
        "what": said if said and isinstance(f.get("summary"), Mapping) else cat,
        "sev": SEVERITIES.get(severity, SEVERITIES["minor"])[i],
        "place": _place(f, m.language),
        "when": _when(f.get("opened_at")),
        "summary": summary,
        "device": str(f.get("device", "?")),
        "text": str(f.get("text", "")),
        "pct": str(f.get("pct", "")),
        "spent": str(f.get("spent", "")),
        "budget": str(f.get("budget", "")),
    }


def _severity_rank(message: MessageFacts) -> int:
    order = list(SEVERITIES)
    severity = str(message.facts.get("severity", "minor"))
    return order.index(severity) if severity in order else len(order)


def render_sms(messages: Sequence[MessageFacts]) -> str:
    """The SMS body for one message, or one merged text for a bundle of case alerts."""
    first = messages[0]
    i = _i(first.language)
    by_case = list({m.case_code or str(n): m for n, m in enumerate(messages)}.values())
    if len(by_case) == 1:
        return SMS[first.kind][i].format(**_fields(first))
    worst = min(by_case, key=_severity_rank)
    lines = [SMS["bundle_head"][i].format(sev=_fields(worst)["sev"], n=len(by_case))]
    lines += [SMS["bundle_line"][i].format(**_fields(m)) for m in by_case]
    lines.append(SMS["bundle_tail"][i])
    return "\n".join(lines)


def render_voice(message: MessageFacts, gather_url: str | None) -> tuple[str, str]:
    """(what the call says, its TwiML): say the case twice inside a one-key gather, then goodbye."""
    i = _i(message.language)
    fields = _fields(MessageFacts("voice", message.language, message.case_code, message.facts))
    spoken = VOICE[i].format(**fields)
    language = SAY_LANGUAGE.get(message.language, "en-US")
    response = VoiceResponse()
    gather = response.gather(num_digits=1, action=gather_url, method="POST", timeout=8)
    gather.say(spoken, language=language, loop=2)
    response.say(REPLIES["no_input"][i], language=language)
    return spoken, str(response)


def reply_text(key: str, language: str, **values: object) -> str:
    """A short answer to a responder's SMS or keypress."""
    return REPLIES[key][_i(language)].format(**{k: str(v) for k, v in values.items()})
