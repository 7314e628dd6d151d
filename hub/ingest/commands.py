"""Commands down to devices, and their results matched back by command id, in a bounded in-memory table."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from drivers.codec import SEQ_MAX
from hub.errors import DecodeError, InvalidInput, NotFound, TransportError
from hub.ingest.directory import DeviceDirectory, DeviceEntry
from hub.ingest.pipeline import Pipeline
from hub.ingest.topics import cmd_topic

__all__ = ["CommandRecord", "CommandStatus", "Commands", "Publish"]

CommandStatus = Literal["sent", "ok", "failed", "timeout"]
# publish(topic, payload, qos): the broker's internal publish (embedded) or the client's (external).
Publish = Callable[[str, bytes, int], Awaitable[None]]


@dataclass(slots=True)
class CommandRecord:
    """One command sent to a device and what became of it."""

    cid: int
    serial: str
    command: str
    params: dict[str, Any]
    sent_at: float
    status: CommandStatus = "sent"
    result: dict[str, Any] | None = None
    done_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for the API."""
        return {
            "cid": self.cid,
            "device": self.serial,
            "command": self.command,
            "params": self.params,
            "sent_at": self.sent_at,
            "status": self.status,
            "result": self.result,
            "done_at": self.done_at,
        }


class Commands:
    """Encode with the device's driver, publish on ``devices/{serial}/cmd``, match ``cmd/result`` by cid."""

    def __init__(
        self,
        directory: DeviceDirectory,
        pipeline: Pipeline,
        clock: Callable[[], float],
        *,
        timeout: float = 30.0,
        keep: int = 10_000,
        qos: int = 1,
    ) -> None:
        self.directory = directory
        self.pipeline = pipeline
        self.clock = clock
        self.timeout = timeout
        self.keep = keep
        self.qos = qos
        self.publish: Publish | None = None
        self._records: OrderedDict[int, CommandRecord] = OrderedDict()
        # Random start: a result meant for a hub run before a restart does not match a new command.
        self._cids = itertools.count(secrets.randbelow(SEQ_MAX // 2))

    def get(self, cid: int) -> CommandRecord | None:
        """The record of command ``cid``, if still kept."""
        return self._records.get(cid)

    def pending(self, serial: str | None = None) -> list[CommandRecord]:
        """Commands still waiting for a result, oldest first."""
        self.expire()
        return [r for r in self._records.values() if r.status == "sent" and serial in (None, r.serial)]

    async def send(self, serial: str, name: str, params: Mapping[str, Any] | None = None) -> CommandRecord:
        """Publish one command; NotFound for an unknown device, InvalidInput for a bad command."""
        if self.publish is None:
            raise TransportError("MQTT is not started: no command can be sent")
        entry = await self.directory.lookup(serial)
        if entry is None or not entry.accepting:
            raise NotFound(f"no active device with serial {serial!r}", field="serial")
        args = dict(params or {})
        cid = next(self._cids) % (SEQ_MAX + 1)
        payload = entry.driver.encode_command(name, args, cid=cid)
        record = CommandRecord(cid, serial, name, args, self.clock())
        self._remember(record)
        try:
            await self.publish(cmd_topic(serial), payload, self.qos)
        except Exception as exc:
            self._records.pop(cid, None)
            raise TransportError(f"publishing command {name} to {serial} failed: {exc}") from exc
        return record

    async def wait(self, record: CommandRecord, timeout: float | None = None) -> CommandRecord:
        """Wait for the result of ``record``; its status says "timeout" when none came in time."""
        try:
            await asyncio.wait_for(record.done.wait(), self.timeout if timeout is None else timeout)
        except TimeoutError:
            self._finish(record, "timeout", None)
        return record

    def on_result(self, entry: DeviceEntry, payload: bytes, transport: str) -> CommandRecord | None:
        """Record a device's answer; refuses (counted, dead-lettered) what cannot be read or matched."""
        try:
            result = entry.driver.decode_command_result(payload)
        except DecodeError as exc:
            self.pipeline.refuse(transport, entry.serial, exc.reason, exc.message, payload)
            return None
        record = self._match(entry.serial, result)
        if record is None:
            detail = f"no command {result['command']} with cid {result['cid']} is pending"
            self.pipeline.refuse(transport, entry.serial, "unmatched_result", detail, payload)
            return None
        self._finish(record, "ok" if result["ok"] else "failed", result)
        return record

    def expire(self) -> int:
        """Mark commands older than the timeout as timed out (by the injected clock); returns how many."""
        limit = self.clock() - self.timeout
        stale = [r for r in self._records.values() if r.status == "sent" and r.sent_at <= limit]
        for record in stale:
            self._finish(record, "timeout", None)
        return len(stale)

    def _match(self, serial: str, result: dict[str, Any]) -> CommandRecord | None:
        cid = result["cid"]
        if cid is not None:
            record = self._records.get(cid)
            ok = record is not None and record.serial == serial and record.command == result["command"]
            return record if ok else None
        # A device that does not echo cids: the oldest pending command of that name.
        for record in self._records.values():
            if record.serial == serial and record.command == result["command"] and record.status == "sent":
                return record
        return None

    def _finish(self, record: CommandRecord, status: CommandStatus, result: dict[str, Any] | None) -> None:
        # A late answer still replaces "timeout": the device did act, the operator should see it.
        if record.status != "sent" and result is None:
            return
        record.status = status
        record.result = result
        record.done_at = self.clock()
        record.done.set()

    def _remember(self, record: CommandRecord) -> None:
        if record.cid in self._records:
            raise InvalidInput("command id collision; retry", field="cid")
        self._records[record.cid] = record
        while len(self._records) > self.keep:
            self._records.popitem(last=False)
