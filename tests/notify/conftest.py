"""Fixtures of the notifier tests: a street with responders, recording stand-ins for the case side, Prism."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerts.contracts import CaseView, Channel, Notification
from alerts.notifiers import build_outbox
from alerts.outbox import Outbox
from hub.config import Settings
from hub.db import Database
from hub.errors import Forbidden
from provisioning.places import PlaceData, create_place
from provisioning.responders import ResponderData, create_responder
from tests.servers.prism import PrismServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-0123456789"
PUBLIC = "https://hub.example.org"
T0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)  # 09:00 in Shanghai


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class RecordingCaseActions:
    """Stands for the case side's CaseActions: records each call, refuses codes listed as foreign."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    latest: dict[int, str] = field(default_factory=dict)
    foreign: set[str] = field(default_factory=set)
    households: dict[str, list[int]] = field(default_factory=dict)

    def _view(self, code: str) -> CaseView:
        if code in self.foreign:
            raise Forbidden(f"case {code} is outside your places")
        return CaseView(1, code, "accepted", "fire", "critical", None, None, T0)

    async def latest_open_case_for(self, responder_id: int) -> CaseView | None:
        code = self.latest.get(responder_id)
        return None if code is None else self._view(code)

    async def accept(self, case_code: str, responder_id: int, channel: str, note: str = "") -> CaseView:
        view = self._view(case_code)
        self.calls.append(("accept", case_code, responder_id, channel, note))
        return view

    async def pass_on(self, case_code: str, responder_id: int, channel: str) -> CaseView:
        view = self._view(case_code)
        self.calls.append(("pass_on", case_code, responder_id, channel))
        return view

    async def resolve(self, case_code: str, responder_id: int, channel: str, note: str = "") -> CaseView:
        view = self._view(case_code)
        self.calls.append(("resolve", case_code, responder_id, channel, note))
        return view

    async def rate(self, case_code: str, score: int, phone: str) -> CaseView:
        self.calls.append(("rate", case_code, score, phone))
        return self._view(case_code)

    async def set_away(self, phone: str, away: bool) -> list[int]:
        self.calls.append(("set_away", phone, away))
        return self.households.get(phone, [])


@dataclass
class RecordingFeedback:
    """Stands for the escalation scheduler's DeliveryFeedback: records what it is told."""

    failed: list[tuple[int, Channel, str]] = field(default_factory=list)
    unanswered: list[tuple[int, str]] = field(default_factory=list)

    async def delivery_failed(self, step_id: int, channel: Channel, reason: str) -> None:
        self.failed.append((step_id, channel, reason))

    async def call_unanswered(self, step_id: int, reason: str) -> None:
        self.unanswered.append((step_id, reason))


@dataclass
class Street:
    """Places and people of the test street."""

    street_id: int
    building_code: str
    worker_id: int
    worker_phone: str
    english_id: int
    english_phone: str
    command_phone: str


def make_settings(database_url: str, tmp_path: Path, prism_url: str, **policy: Any) -> Settings:
    """Settings with Twilio pointed at Prism and a public URL for the webhooks."""
    return Settings(
        database={"url": database_url},
        mqtt={"port": 0},
        coap={"enabled": False},
        var_dir=tmp_path,
        web={"public_base_url": PUBLIC},
        twilio={
            "account_sid": ACCOUNT_SID,
            "auth_token": AUTH_TOKEN,
            "from_number": "+15005550006",
            "base_url": prism_url,
            "policy": {"bundle_window_s": 0, **policy},
        },
    )


async def make_street(db: Database) -> Street:
    """District → street → community → grid → building, a grid worker (zh-CN), an English one, street command."""
    async with db.session() as s:
        parent = None
        places = {}
        for level in ("district", "street", "community", "grid", "building"):
            data = PlaceData(code=f"T-{level}", level=level, name=f"{level}-名", parent=parent)
            places[level] = await create_place(s, data, actor="test", channel="cli")
            parent = data.code
        people = []
        for name, phone, lang, role, place in (
            ("王芳", "+8613800000001", "zh-CN", "grid_worker", "T-grid"),
            ("Ann", "+447700900002", "en", "grid_worker", "T-grid"),
            ("指挥", "+8613800000003", "zh-CN", "street_command", "T-street"),
        ):
            data = ResponderData(name=name, phone=phone, language=lang, role=role, places=[place])
            people.append(await create_responder(s, data, actor="test", channel="cli"))
    return Street(
        places["street"].id,
        "T-building",
        people[0].id,
        people[0].phone,
        people[1].id,
        people[1].phone,
        people[2].phone,
    )


def alert(
    key: str,
    responder_id: int | None,
    phone: str,
    *,
    now: dt.datetime,
    channel: Channel = "sms",
    code: str = "C-20260302-0001",
    case_id: int = 1,
    step_id: int | None = 10,
    language: str = "zh-CN",
    category: str = "fire",
    severity: str = "critical",
    kind: str = "case_alert",
    place_code: str = "T-building",
) -> Notification:
    """A notification as the escalation scheduler would hand it over."""
    facts = {
        "category": category,
        "severity": severity,
        "place": "阳光社区/3号楼",
        "place_code": place_code,
        "opened_at": now.isoformat(),
        "summary": "烟感报警",
        "device": "SMK-0001",
    }
    return Notification(
        key,
        kind,
        channel,
        responder_id,
        phone,
        language,
        case_id,
        code,
        step_id,
        now,
        facts,  # type: ignore[arg-type]
    )


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock starting at 09:00 Shanghai time."""
    return FakeClock()


@pytest.fixture
def actions() -> RecordingCaseActions:
    """The recording CaseActions."""
    return RecordingCaseActions()


@pytest.fixture
def feedback() -> RecordingFeedback:
    """The recording DeliveryFeedback."""
    return RecordingFeedback()


@pytest.fixture
async def street(db: Database) -> Street:
    """The test street in the migrated database."""
    return await make_street(db)


@pytest.fixture
async def outbox_factory(
    db: Database,
    database_url: str,
    tmp_path: Path,
    prism: PrismServer,
    clock: FakeClock,
    actions: RecordingCaseActions,
    feedback: RecordingFeedback,
) -> AsyncIterator[Any]:
    """Build outboxes (closed at the end) sharing one metrics registry, so requests are counted across restarts."""
    registry = CollectorRegistry()
    built: list[Outbox] = []

    def factory(**policy: Any) -> Outbox:
        settings = make_settings(database_url, tmp_path, prism.url, **policy)
        outbox = build_outbox(
            db,
            settings,
            actions=actions,
            feedback=feedback,
            clock=clock,
            registry=registry if not built else None,
        )
        if built:  # a restarted worker counts into the same product metric
            outbox.requests = built[0].requests
        built.append(outbox)
        return outbox

    yield factory
    for outbox in built:
        await outbox.stop()


def requests_sent(outbox: Outbox, channel: str) -> float:
    """Requests that left for Twilio on ``channel``, from the outbox's metric."""
    for metric in outbox.requests.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("channel") == channel:
                return sample.value
    return 0.0
