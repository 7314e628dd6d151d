"""What people read and hear: every default rule's alert in zh-CN and en, never a rule id, on SMS, call and case."""

from __future__ import annotations

import re
from typing import Any

import pytest

from alerts.casestore import get_case
from alerts.notifiers.templates import MessageFacts, render_sms, render_voice
from drivers import DRIVERS
from hub.db import Database
from tests.alerts.test_engine_kit import Rig, engine_rig

# Every default rule of every driver: (kind, rule).
DEFAULTS = [(kind, rule) for kind, driver in sorted(DRIVERS.items()) for rule in driver.default_rules]
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['name']}"


async def _fire(rig: Rig, kind: str, rule: dict[str, Any]) -> Any:
    serial = f"{kind.upper()}-1"
    await rig.device(serial, kind)
    if rule["type"] == "event":
        return await rig.event(serial, rule["event"])
    if rule["type"] == "threshold":
        beyond = rule["value"] + (1 if rule["op"].startswith(">") else -1)
        return await rig.uplink(serial, **{rule["metric"]: beyond})
    assert rule["type"] == "inactivity"
    return await rig.silence(serial)


@pytest.mark.parametrize("item", DEFAULTS, ids=[_id(i) for i in DEFAULTS])
async def test_every_default_rule_reads_as_a_person_would_say_it(
    db: Database, item: tuple[str, dict[str, Any]]
) -> None:
    kind, rule = item
    rig = await engine_rig(db)
    outcome = await _fire(rig, kind, rule)
    assert outcome.case_id is not None
    async with db.session() as session:
        case = await get_case(session, outcome.case_id)
    name = rule["name"]
    # The case's summary is the description, never the rule's id.
    assert case.summary and name not in case.summary
    sent = [n for n in rig.notifier.sent.values() if n.case_id == case.id]
    assert sent, "the case's first step notified nobody"
    facts = sent[0].facts
    said = {}
    for language in ("zh-CN", "en"):
        sms = render_sms([MessageFacts("case_alert", language, case.code, facts)])
        spoken, twiml = render_voice(MessageFacts("case_alert", language, case.code, facts), None)
        said[language] = (sms, spoken, twiml)
    zh_sms, zh_spoken, zh_twiml = said["zh-CN"]
    en_sms, en_spoken, en_twiml = said["en"]
    # A rule id is ASCII: a Chinese text that contains it leaked it.
    for text in (zh_sms, zh_spoken, zh_twiml):
        assert name not in text
    # Hyphenated ids ("panic-long") never occur in English either; plain words ("fall") may.
    if "-" in name:
        for text in (en_sms, en_spoken, en_twiml):
            assert name not in text
    # Each language has its own description: Chinese in zh-CN, none in en.
    zh_line, en_line = zh_sms.splitlines()[3], en_sms.splitlines()[3]
    assert _CJK.search(zh_line) and not _CJK.search(en_line), (zh_sms, en_sms)
    assert zh_line in zh_spoken and en_line in en_spoken


async def test_a_long_press_is_described_in_both_languages(db: Database) -> None:
    rig = await engine_rig(db)
    await rig.device("PB-1", "panic_button")
    outcome = await rig.event("PB-1", "pressed_long")
    facts = next(iter(rig.notifier.sent.values())).facts
    zh = render_sms([MessageFacts("case_alert", "zh-CN", outcome.case_code, facts)])
    en = render_sms([MessageFacts("case_alert", "en", outcome.case_code, facts)])
    assert "紧急按钮长按求助" in zh and "panic button held" not in zh
    assert "panic button held" in en.lower() and "紧急按钮长按求助" not in en
    spoken, _twiml = render_voice(MessageFacts("case_alert", "en", outcome.case_code, facts), None)
    assert "panic button held" in spoken.lower() and "panic-long" not in spoken
    async with db.session() as session:
        case = await get_case(session, outcome.case_id or 0)
    assert case.summary == "紧急按钮长按求助"
    assert case.summary_texts == {"zh-CN": "紧急按钮长按求助", "en": "Panic button held"}
