"""CSV bulk enrollment: validate the whole file first, report every bad row, then insert in bulk."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.base import AuditEvent
from hub.db.devices import Device, DeviceEvent
from hub.db.places import Place
from hub.errors import InvalidInput
from provisioning.apikeys import Principal
from provisioning.audit import Clock, utcnow
from provisioning.devices import KINDS, TRANSPORTS, Actor

__all__ = [
    "COLUMNS",
    "REQUIRED",
    "CsvRow",
    "ImportReport",
    "RowError",
    "decode_csv",
    "import_devices",
    "parse_rows",
]

REQUIRED = ("serial", "kind", "household")
COLUMNS = (*REQUIRED, "position", "transport", "model", "firmware", "imei")
BOM = b"\xef\xbb\xbf"
CHUNK = 2000


@dataclass(frozen=True, slots=True)
class RowError:
    """One bad row: its line number in the file and why."""

    line: int
    serial: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class CsvRow:
    """A syntactically valid row."""

    line: int
    serial: str
    kind: str
    household: str
    position: str
    transport: str
    model: str
    firmware: str
    imei: str | None


@dataclass
class ImportReport:
    """What an import found and did."""

    rows: int = 0
    created: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    applied: bool = False


def decode_csv(data: bytes) -> tuple[str, list[str]]:
    """UTF-8 text of the file; a UTF-8 BOM is accepted and noted, any other encoding refused."""
    notes = []
    if data.startswith(BOM):
        data = data[len(BOM) :]
        notes.append("a UTF-8 byte-order mark (BOM) was found and ignored")
    try:
        return data.decode("utf-8"), notes
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        hint = ""
        try:
            data.decode("gb18030")
            hint = " It looks like GBK/GB18030 (e.g. saved by Excel on Chinese Windows): convert it with `iconv -f GBK -t UTF-8`."
        except UnicodeDecodeError:
            pass
        raise InvalidInput(
            f"the CSV is not UTF-8 (bad byte 0x{data[exc.start]:02x} on line {line}).{hint}", field="file"
        ) from exc


def parse_rows(text: str, report: ImportReport) -> list[CsvRow]:
    """Check the header and every row's syntax; bad rows go to ``report.errors``."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s): " + ", ".join(unknown))
        raise InvalidInput(
            f"bad CSV header ({'; '.join(parts)}); expected {','.join(COLUMNS)}", field="header"
        )
    reader.fieldnames = header
    rows: list[CsvRow] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        report.rows += 1
        cells = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        serial, kind = cells.get("serial", ""), cells.get("kind", "")
        transport = cells.get("transport") or "mqtt"
        reason = None
        if None in raw:
            reason = "more cells than columns"
        elif not serial or len(serial) > 64:
            reason = "serial is empty" if not serial else "serial is longer than 64 characters"
        elif kind not in KINDS:
            reason = f"unknown kind {kind!r} (one of {', '.join(KINDS)})"
        elif transport not in TRANSPORTS:
            reason = f"unknown transport {transport!r} (mqtt or coap)"
        elif not cells.get("household"):
            reason = "household is empty"
        elif serial in seen:
            reason = f"serial {serial} appears again (first on line {seen[serial]})"
        if reason:
            report.errors.append(RowError(line, serial, reason))
            continue
        seen[serial] = line
        rows.append(
            CsvRow(
                line,
                serial,
                kind,
                cells["household"],
                cells.get("position", ""),
                transport,
                cells.get("model", ""),
                cells.get("firmware", ""),
                cells.get("imei") or None,
            )
        )
    return rows


async def _lookup(
    session: AsyncSession, column: object, keys: Sequence[str], *cols: object
) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = []
    for start in range(0, len(keys), CHUNK):
        query = select(*cols).where(column.in_(keys[start : start + CHUNK]))  # type: ignore[attr-defined,call-overload]
        found.extend(tuple(r) for r in (await session.execute(query)).all())
    return found


async def _check_registry(
    session: AsyncSession, rows: list[CsvRow], report: ImportReport, principal: Principal | None
) -> tuple[list[CsvRow], dict[str, int]]:
    """Resolve households and compare with the registry; return the rows to create and household ids."""
    codes = sorted({r.household for r in rows})
    places = {
        code: (pid, level, path)
        for code, pid, level, path in await _lookup(
            session, Place.code, codes, Place.code, Place.id, Place.level, Place.path
        )
    }
    existing = {
        serial: (did, pid)
        for serial, did, pid in await _lookup(
            session, Device.serial, [r.serial for r in rows], Device.serial, Device.id, Device.place_id
        )
    }
    todo = []
    for row in rows:
        place = places.get(row.household)
        reason = None
        if place is None:
            reason = f"unknown household {row.household!r}"
        elif place[1] != "household":
            reason = f"place {row.household!r} is a {place[1]}, not a household"
        elif principal is not None and not principal.may_act_in(str(place[2])):
            reason = f"not allowed to enroll in household {row.household!r}"
        elif row.serial in existing:
            device_id, place_id = existing[row.serial]
            if place_id == place[0]:
                report.unchanged += 1
                continue
            reason = f"serial {row.serial} is already enrolled as device {device_id} in another place"
        if reason:
            report.errors.append(RowError(row.line, row.serial, reason))
        else:
            todo.append(row)
    return todo, {str(code): int(str(v[0])) for code, v in places.items()}


async def import_devices(
    session: AsyncSession,
    data: bytes,
    *,
    actor: Actor,
    principal: Principal | None = None,
    skip_invalid: bool = False,
    progress: Callable[[int], None] | None = None,
    clock: Clock = utcnow,
) -> ImportReport:
    """Validate the whole file, then (if clean, or ``skip_invalid``) insert the new devices in bulk."""
    report = ImportReport()
    text, report.notes = decode_csv(data)
    rows = parse_rows(text, report)
    todo, place_ids = await _check_registry(session, rows, report, principal)
    report.errors.sort(key=lambda e: e.line)
    if report.errors and not skip_invalid:
        return report
    now = clock()
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        values = [
            {
                "serial": r.serial,
                "imei": r.imei,
                "kind": r.kind,
                "model": r.model,
                "firmware": r.firmware,
                "transport": r.transport,
                "place_id": place_ids[r.household],
                "responder_id": None,
                "position": r.position,
                "state": "claimed",
                "created_at": now,
                "updated_at": now,
            }
            for r in chunk
        ]
        created = (await session.execute(insert(Device).returning(Device.id, Device.serial), values)).all()
        events = [
            {
                "device_id": i,
                "at": now,
                "actor": actor.name,
                "channel": actor.channel,
                "from_state": None,
                "to_state": "claimed",
                "note": "imported from CSV",
            }
            for i, _ in created
        ]
        await session.execute(insert(DeviceEvent), events)
        audits = [
            {
                "at": now,
                "actor": actor.name,
                "channel": actor.channel,
                "action": "device.imported",
                "object_type": "device",
                "object_id": str(i),
                "detail": {"serial": s},
            }
            for i, s in created
        ]
        await session.execute(insert(AuditEvent), audits)
        report.created += len(created)
        if progress is not None:
            progress(len(chunk))
    report.applied = True
    return report
