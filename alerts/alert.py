"""The Alert a rule emits, its fingerprint, and the queue that carries alerts off the ingest path."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from alerts.categories import correlate_of
from drivers.base import Correlate
from hub.priority import UrgentLane

__all__ = ["Alert", "AlertQueue", "AlertSink", "AlertState", "fingerprint", "make_alert"]

# Labels that say *which* condition this is; the fingerprint hashes exactly these (Alertmanager style).
_IDENTIFYING = ("alertname", "device", "household", "kind", "place", "rule_type")


class AlertState(StrEnum):
    """Whether the condition holds now or held and is over."""

    FIRING = "firing"
    RESOLVED = "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit hash of the sorted labels; equal labels give an equal fingerprint."""
    digest = hashlib.blake2b(digest_size=8)
    for key in sorted(labels):
        # NUL cannot occur in a label, so "a=b" + "c" and "a=bc" never collide.
        digest.update(f"{key}\x00{labels[key]}\x00".encode())
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Alert:
    """One firing or resolved condition of one rule for one device or household."""

    name: str
    rule_type: str
    severity: str
    category: str
    state: AlertState
    started_at: float
    labels: Mapping[str, str]
    fingerprint: str
    device_id: int | None = None
    device_serial: str | None = None
    kind: str | None = None
    place_id: int | None = None
    value: float | str | None = None
    ended_at: float | None = None
    # What happened, for people: {"zh-CN": …, "en": …} (the rule's text; empty only for hand-made alerts).
    text: Mapping[str, str] = field(default_factory=dict)
    # "building": alerts of one building and category fold into one case; "none": this alert's own case.
    correlate: Correlate = "none"

    @property
    def firing(self) -> bool:
        """True while the condition holds."""
        return self.state is AlertState.FIRING

    def resolved(self, now: float, value: float | str | None = None) -> Alert:
        """The same alert, over at ``now`` (the value that ended it, if any)."""
        return replace(
            self, state=AlertState.RESOLVED, ended_at=now, value=self.value if value is None else value
        )


def make_alert(
    *,
    name: str,
    rule_type: str,
    severity: str,
    category: str,
    started_at: float,
    device_id: int | None = None,
    device_serial: str | None = None,
    kind: str | None = None,
    place_id: int | None = None,
    household: int | None = None,
    value: float | str | None = None,
    text: Mapping[str, str] | None = None,
    correlate: Correlate | None = None,
    summary: str = "",
) -> Alert:
    """Build a firing alert with its identifying labels and fingerprint.

    ``text`` is what it says to people (``summary``: one string for both languages); ``correlate`` defaults
    to the category's (alerts/data/categories.yaml).
    """
    labels = {"alertname": name, "rule_type": rule_type}
    if device_serial is not None:
        labels["device"] = device_serial
    if kind is not None:
        labels["kind"] = kind
    if household is not None:
        labels["household"] = str(household)
    if place_id is not None:
        labels["place"] = str(place_id)
    frozen = MappingProxyType(labels)
    return Alert(
        name=name,
        rule_type=rule_type,
        severity=severity,
        category=category,
        state=AlertState.FIRING,
        started_at=started_at,
        labels=frozen,
        fingerprint=fingerprint({k: v for k, v in labels.items() if k in _IDENTIFYING}),
        device_id=device_id,
        device_serial=device_serial,
        kind=kind,
        place_id=place_id,
        value=value,
        text=MappingProxyType(dict(text) if text else ({"zh-CN": summary, "en": summary} if summary else {})),
        correlate=correlate_of(category) if correlate is None else correlate,
    )


AlertSink = Callable[[Alert], None]


class AlertQueue:
    """A sink for the engine: puts alerts on an asyncio queue for an async consumer (never blocks).

    With a lane, an urgent firing alert holds it from here until the consumer calls ``done``.
    """

    def __init__(
        self,
        maxsize: int = 0,
        lane: UrgentLane | None = None,
        urgent_severities: Collection[str] = ("critical",),
    ) -> None:
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.put_total = 0
        self.lane = lane
        self.urgent_severities = frozenset(urgent_severities)
        self._holds: dict[int, Callable[[], None]] = {}  # id(alert) -> release of its hold

    def __call__(self, alert: Alert) -> None:
        """Enqueue one alert; when a bounded queue is full the alert is counted as dropped."""
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self.put_total += 1
        if self.lane is not None and alert.firing and alert.severity in self.urgent_severities:
            self._holds[id(alert)] = self.lane.hold()

    def done(self, alert: Alert) -> None:
        """The consumer has handled this alert (its case and messages are stored)."""
        release = self._holds.pop(id(alert), None)
        if release is not None:
            release()

    def __len__(self) -> int:
        return self._queue.qsize()

    async def get(self) -> Alert:
        """The next alert, waiting for one."""
        return await self._queue.get()

    def drain(self) -> list[Alert]:
        """Every alert queued now, without waiting."""
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out
