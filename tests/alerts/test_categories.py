"""The category table: every case category named in zh-CN and en, and whether a building shares it."""

from __future__ import annotations

import re

from alerts.cases import CASE_CATEGORIES
from alerts.categories import categories, category_name
from drivers import DRIVERS
from drivers.rules import CATEGORIES

_CJK = re.compile(r"[\u4e00-\u9fff]")


def test_the_table_covers_every_category_in_both_languages() -> None:
    table = categories()
    assert tuple(table) == CASE_CATEGORIES
    assert set(CATEGORIES) <= set(table)
    for name, category in table.items():
        assert _CJK.search(category.name.zh_cn), name
        assert category.name.en and not _CJK.search(category.name.en), name
    assert category_name("panic", "zh-CN") == "紧急呼救" and category_name("panic", "en") == "Panic button"
    assert category_name("no-such", "en") == "no-such"


def test_shared_hazards_correlate_by_building_and_personal_emergencies_do_not() -> None:
    table = categories()
    assert table["fire"].correlate == "building"
    for personal in ("panic", "sos", "fall", "activity"):
        assert table[personal].correlate == "none", personal


def test_no_driver_declares_a_personal_emergency_building_wide() -> None:
    table = categories()
    for driver in DRIVERS.values():
        for event in driver.events.values():
            if table[event.category].correlate == "none":
                assert event.correlate == "none", (driver.kind, event.name)
