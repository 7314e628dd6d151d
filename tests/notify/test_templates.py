"""Texts in zh-CN and en, call TwiML, reply parsing and the pure limit arithmetic."""

from __future__ import annotations

import datetime as dt

from alerts.limits import (
    NotifyPolicy,
    backoff,
    budget_state,
    day_start,
    estimate_cost,
    is_urgent,
    rate_defer,
    sms_segments,
)
from alerts.notifiers.replies import parse_command
from alerts.notifiers.templates import MessageFacts, render_sms, render_voice, reply_text

OPENED = "2026-03-02T01:05:00+00:00"
FACTS = {
    "category": "fire",
    "severity": "critical",
    "place": ["阳光社区", "3号楼", "502"],
    "opened_at": OPENED,
    "summary": "烟感报警",
}


def test_case_alert_in_chinese_and_english() -> None:
    zh = render_sms([MessageFacts("case_alert", "zh-CN", "C-20260302-0001", FACTS)])
    assert zh.startswith("【紧急】C-20260302-0001 火警")
    assert "阳光社区/3号楼/502" in zh and "03-02 09:05" in zh and "回复1接受" in zh
    en = render_sms([MessageFacts("case_alert", "en", "C-20260302-0001", FACTS | {"place": "Sunshine / B3"})])
    assert en.startswith("[URGENT] C-20260302-0001 Fire alarm") and "When: 03-02 09:05" in en
    assert "Reply 1 to accept" in en


def test_bundle_lists_each_case_once() -> None:
    rows = [
        MessageFacts("case_alert", "en", "C-20260302-0001", FACTS | {"severity": "major"}),
        MessageFacts("case_alert", "en", "C-20260302-0001", FACTS | {"severity": "major"}),
        MessageFacts("case_alert", "en", "C-20260302-0002", FACTS | {"category": "panic"}),
    ]
    text = render_sms(rows)
    assert text.startswith("[URGENT] 2 alerts:")
    assert text.count("C-20260302-0001") == 1 and "Panic button" in text and "Reply 1 <code>" in text


def test_voice_twiml_says_in_the_language_and_gathers_one_key() -> None:
    spoken, twiml = render_voice(
        MessageFacts("case_alert", "zh-CN", "C-1", FACTS), "https://hub/twilio/voice/7/gather"
    )
    assert "接受请按1" in spoken
    assert '<Gather action="https://hub/twilio/voice/7/gather" method="POST" numDigits="1"' in twiml
    assert '<Say language="zh-CN" loop="2">' in twiml
    _spoken, en = render_voice(MessageFacts("case_alert", "en", "C-1", FACTS), None)
    assert '<Say language="en-US"' in en and "Press 1 to accept" in en


def test_test_confirmation_and_budget_warning() -> None:
    facts = FACTS | {"device": "SMK-0042", "category": "fire"}
    zh = render_sms([MessageFacts("test_confirmation", "zh-CN", None, facts)])
    assert zh.startswith("【测试】已收到SMK-0042的火警测试报警") and "未通知应急人员" in zh
    en = render_sms([MessageFacts("test_confirmation", "en", None, facts)])
    assert "[TEST] Fire alarm test alarm received from SMK-0042" in en and "no responder was notified" in en
    warn = render_sms(
        [
            MessageFacts(
                "budget_warning",
                "en",
                None,
                {"place": "Street", "pct": 85, "spent": "8.50", "budget": "10.00"},
            )
        ]
    )
    assert "85%" in warn and "8.50/10.00" in warn
    assert reply_text("accepted", "en", code="C-9") == "Confirmed: case C-9 is yours."


def test_parse_replies() -> None:
    assert parse_command("１").verb == "accept"  # full-width digit from a Chinese keyboard
    done = parse_command("done c-20260302-0012 灭火完毕")
    assert (done.verb, done.case_code, done.note) == ("resolve", "C-20260302-0012", "灭火完毕")
    assert parse_command("退订").verb == "stop" and parse_command("Start").verb == "start"
    assert parse_command("外出").verb == "away" and parse_command("hello").verb == "help"
    assert parse_command("PASS").verb == "pass"


def test_limit_arithmetic() -> None:
    policy = NotifyPolicy(daily_budget=10.0)
    now = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    assert day_start(now) == dt.datetime(2026, 3, 1, 16, 0, tzinfo=dt.UTC)  # midnight in Shanghai
    assert sms_segments("a" * 160) == 1 and sms_segments("a" * 161) == 2
    assert sms_segments("火" * 70) == 1 and sms_segments("火" * 71) == 2
    assert estimate_cost("sms", "火" * 71, policy) == 2 * policy.sms_segment_price
    assert budget_state(7.0, 0.5, 10.0, policy) == "ok"
    assert budget_state(7.6, 0.5, 10.0, policy) == "warn"
    assert budget_state(9.8, 0.5, 10.0, policy) == "stop"
    times = [now - dt.timedelta(seconds=s) for s in (500, 300, 100)]
    assert rate_defer(times, now, 4, 600) is None
    assert rate_defer(times, now, 3, 600) == now + dt.timedelta(seconds=100)
    assert backoff(1, policy) == dt.timedelta(seconds=2) and backoff(20, policy) == dt.timedelta(seconds=300)
    assert is_urgent("case_alert", {"category": "panic", "severity": "minor"}, policy)
    assert not is_urgent("case_alert", {"category": "battery", "severity": "minor"}, policy)
    assert not is_urgent("test_confirmation", {"category": "fire", "severity": "critical"}, policy)


def test_the_case_description_is_in_the_readers_language() -> None:
    facts = FACTS | {"summary": {"zh-CN": "紧急按钮长按求助", "en": "Panic button held"}, "category": "panic"}
    zh = render_sms([MessageFacts("case_alert", "zh-CN", "C-1", facts)])
    en = render_sms([MessageFacts("case_alert", "en", "C-1", facts)])
    assert "紧急按钮长按求助" in zh and "Panic button held" not in zh
    assert "Panic button held" in en and "紧急按钮长按求助" not in en
    zh_said, _ = render_voice(MessageFacts("case_alert", "zh-CN", "C-1", facts), None)
    en_said, en_twiml = render_voice(MessageFacts("case_alert", "en", "C-1", facts), None)
    # The description is a sentence of its own before what to press.
    assert "紧急按钮长按求助。接受请按1" in zh_said and "Panic button held. Press 1" in en_said
    assert "Panic button held. Press 1" in en_twiml
    # In a bundle each case says what happened, in the reader's language.
    other = facts | {"summary": {"zh-CN": "烟感报警", "en": "Smoke alarm"}, "category": "fire"}
    rows = [MessageFacts("case_alert", "en", "C-1", facts), MessageFacts("case_alert", "en", "C-2", other)]
    bundle = render_sms(rows)
    assert "C-1 Panic button held" in bundle and "C-2 Smoke alarm" in bundle and "烟" not in bundle
    zh_rows = [MessageFacts("case_alert", "zh-CN", m.case_code, m.facts) for m in rows]
    assert "C-1 紧急按钮长按求助" in render_sms(zh_rows)
    # A stored row of an older hub (one string) still reads.
    old = render_sms([MessageFacts("case_alert", "en", "C-1", FACTS)])
    assert "烟感报警" in old
