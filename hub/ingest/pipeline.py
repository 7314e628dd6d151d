"""The ingest pipeline: authenticated uplink → driver → validated reading → state → store → rules → live stream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from drivers.base import DecodeMeta, Format, Reading
from hub.errors import DecodeError, HubError
from hub.ingest.deadletter import AlarmRefusal, DeadLetters
from hub.ingest.directory import DeviceEntry
from hub.ingest.events import EventBus
from hub.ingest.state import DeviceStates
from hub.metrics import HubMetrics
from hub.telemetry.base import TelemetryPoint, TelemetryStore

__all__ = ["MAX_CLOCK_SKEW", "Pipeline", "ReadingHook"]

log = logging.getLogger(__name__)
# A device clock further off than this is not believed: the reading is stored at its arrival time.
MAX_CLOCK_SKEW = 86_400.0
_METAS = {fmt: DecodeMeta(fmt) for fmt in ("auto", "json", "cbor", "binary")}


class ReadingHook(Protocol):
    """Called for every accepted reading (the rule engine plugs in here); must not block."""

    def __call__(self, device: DeviceEntry, reading: Reading, now: float) -> None:
        """Look at one reading."""


class Pipeline:
    """Turns raw uplinks of known, authenticated devices into stored readings; refuses the rest with a reason."""

    def __init__(
        self,
        states: DeviceStates,
        store: TelemetryStore,
        dead_letters: DeadLetters,
        bus: EventBus,
        metrics: HubMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.states = states
        self.store = store
        self.dead_letters = dead_letters
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.hooks: list[ReadingHook] = []
        # Called with (device, now) when a device goes offline (the rule engine's offline rules).
        self.offline_hooks: list[Callable[[DeviceEntry, float], None]] = []
        self._accepted: dict[tuple[str, str], Any] = {}
        self._refused: dict[tuple[str, str], Any] = {}
        # One shared, never mutated tag dict per place: stores only read tags.
        self._tags: dict[int | None, dict[str, str]] = {}

    @staticmethod
    def _place_tags(place_id: int | None) -> dict[str, str]:
        return {"place": str(place_id)} if place_id is not None else {}

    def accept(
        self,
        device: DeviceEntry,
        payload: bytes,
        transport: str,
        fmt: Format = "auto",
        *,
        redelivery: bool = False,
    ) -> Reading:
        """Decode, check and record one uplink; raises DecodeError (with ``reason``) when refused.

        ``redelivery``: the transport marked the uplink as possibly sent before (MQTT DUP).
        """
        try:
            reading = device.driver.decode(payload, _METAS[fmt])
        except DecodeError as exc:
            self.refuse(transport, device.serial, exc.reason, exc.message, payload, entry=device)
            raise
        seq = reading.seq
        if seq is not None and not self.states.seq_ok(device.id, seq, payload, redelivery=redelivery):
            detail = f"sequence number {seq} seen before in this session"
            self.refuse(transport, device.serial, "replayed", detail, payload, entry=device, reading=reading)
            raise DecodeError("replayed", f"sequence number {seq} was seen before")
        now = self.clock()
        came_back = self.states.touch(device.id, reading, now)
        ts = reading.ts if reading.ts is not None and abs(reading.ts - now) < MAX_CLOCK_SKEW else now
        fields: dict[str, Any] = reading.metrics
        if reading.events:
            fields = {**fields, "events": ",".join(reading.events)}
        if fields:
            tags = self._tags.get(device.place_id)
            if tags is None:
                tags = self._tags[device.place_id] = self._place_tags(device.place_id)
            try:
                self.store.write(TelemetryPoint(device.serial, device.kind, ts, fields, tags))
            except HubError as exc:
                # Only when the queue and the spool are both full: say so, and let the device retry.
                self.refuse(
                    transport,
                    device.serial,
                    "store_full",
                    exc.message,
                    payload,
                    entry=device,
                    reading=reading,
                )
                raise DecodeError("store_full", exc.message) from exc
        for hook in self.hooks:
            try:
                hook(device, reading, now)
            except Exception:
                log.exception("reading hook %r failed for %s", hook, device.serial)
        if self.bus.subscribers:
            self.bus.publish(
                {
                    "type": "reading",
                    "device": device.serial,
                    "kind": device.kind,
                    "at": now,
                    "metrics": reading.metrics,
                    "events": list(reading.events),
                    "back_online": came_back,
                }
            )
        counter = self._accepted.get((transport, device.kind))
        if counter is None:
            counter = self._accepted[(transport, device.kind)] = self.metrics.ingest_messages.labels(
                transport, device.kind
            )
        counter.inc()
        return reading

    def refuse(
        self,
        transport: str,
        device: str,
        reason: str,
        detail: str,
        payload: bytes,
        *,
        entry: DeviceEntry | None = None,
        reading: Reading | None = None,
    ) -> None:
        """Count, dead-letter and (rate-limited) log one refused uplink.

        ``entry``: the uplink is that device's own (authenticated), so an alarm it carries is reported too:
        read from ``reading`` when it was decoded, else guessed by the driver from the bytes.
        """
        counter = self._refused.get((transport, reason))
        if counter is None:
            counter = self._refused[(transport, reason)] = self.metrics.ingest_rejected.labels(
                transport, reason
            )
        counter.inc()
        if entry is not None:
            if reading is not None:
                alarms = tuple(e for e in reading.events if e in entry.driver.alarm_events)
            else:
                alarms = entry.driver.alarm_hint(payload)
            if alarms:
                decoded = reading is not None
                report = AlarmRefusal(transport, entry.serial, entry.kind, reason, detail, alarms, decoded)
                self.alarm_refused(report, payload)
                return
        self.dead_letters.add(transport, device, reason, detail, payload)

    def alarm_refused(self, report: AlarmRefusal, payload: bytes) -> None:
        """An uplink carrying an alarm was refused: count it by reason, log it, keep it, tell the live stream."""
        r = report
        self.dead_letters.add(r.transport, r.device, r.reason, r.detail, payload, alarms=r.alarms, quiet=True)
        self.metrics.ingest_alarms_refused.labels(r.transport, r.kind, r.reason).inc()
        log.warning(
            "refused an alarm (%s) from %s %s over %s: %s (%s)",
            ", ".join(r.alarms),
            r.kind,
            r.device,
            r.transport,
            r.reason,
            r.detail,
        )
        if self.bus.subscribers:
            self.bus.publish(report.event(self.clock()))

    def went_offline(self, device: DeviceEntry, why: str) -> None:
        """Mark a device offline (last will, lost session) and tell the live stream."""
        self.states.set_online(device.id, False)
        now = self.clock()
        for hook in self.offline_hooks:
            try:
                hook(device, now)
            except Exception:
                log.exception("offline hook %r failed for %s", hook, device.serial)
        if self.bus.subscribers:
            self.bus.publish({"type": "offline", "device": device.serial, "kind": device.kind, "why": why})
