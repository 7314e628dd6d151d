"""Import and export the place hierarchy as CSV or YAML: all rows valid, or nothing applied."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.places import LEVELS, Place, level_index
from hub.errors import InvalidInput
from provisioning.audit import Clock, record, utcnow
from provisioning.places import EDITABLE, PlaceData, snapshot, subtree

__all__ = ["COLUMNS", "ImportReport", "RowError", "export_places", "import_places", "parse_places"]

Format = Literal["csv", "yaml"]
COLUMNS = ("code", "level", "name", "name_en", "parent", "lat", "lon", "outline", "contacts")
REQUIRED = ("code", "level", "name", "parent")
JSON_COLUMNS = ("outline", "contacts")


@dataclass(frozen=True)
class RowError:
    """One bad row: its line in the file and why."""

    line: int
    code: str | None
    reason: str


@dataclass
class ImportReport:
    """What an import did (or would do, with ``dry_run``)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0


class PlaceFileError(InvalidInput):
    """The file is unusable; ``errors`` lists every bad row with its line number."""

    def __init__(self, message: str, errors: Sequence[RowError] = ()) -> None:
        shown = "; ".join(f"line {e.line}: {e.reason}" for e in list(errors)[:20])
        more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
        super().__init__(f"{message}: {shown}{more}" if errors else message, field="file")
        self.errors = list(errors)


def _decode(raw: bytes, encoding: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise PlaceFileError("the file is UTF-16; save it as UTF-8 (CSV UTF-8 in Excel)")
    try:
        return raw.decode(
            "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        )
    except LookupError as exc:
        raise PlaceFileError(f"unknown encoding {encoding!r}") from exc
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PlaceFileError(
            f"the file is not valid {encoding} (line {line}); save it as UTF-8, or pass encoding=gb18030 "
            "for a file saved by Excel on Chinese Windows"
        ) from exc


def _csv_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise PlaceFileError("the file is empty")
    missing = [c for c in REQUIRED if c not in header]
    unknown = [h for h in header if h not in COLUMNS]
    if missing or unknown:
        parts = [f"missing column(s): {', '.join(missing)}"] if missing else []
        parts += [f"unknown column(s): {', '.join(unknown)}"] if unknown else []
        raise PlaceFileError(f"{'; '.join(parts)}; the header must name {', '.join(COLUMNS)}")
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        row: dict[str, Any] = {k: (v.strip() or None) for k, v in zip(header, values, strict=False)}
        if len(values) > len(header):
            row["__extra__"] = values[len(header) :]
        rows.append((reader.line_num, row))
    return rows


def _yaml_rows(text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PlaceFileError(f"not valid YAML: {exc}") from exc
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode):
        data = data.get("places")
        root = next((v for k, v in root.value if k.value == "places"), None)
    if not isinstance(data, list) or not isinstance(root, yaml.SequenceNode):
        raise PlaceFileError("the YAML must be a list of places (or a mapping with a 'places' list)")
    return [(node.start_mark.line + 1, item) for node, item in zip(root.value, data, strict=True)]


def _cell(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if name in JSON_COLUMNS and isinstance(value, str):
        return json.loads(value)
    return value


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    # An empty contacts cell means "none", not "null".
    return {k: _cell(row, k) for k in row if not (k == "contacts" and row[k] is None)}


def _parse(raw: bytes, fmt: Format, encoding: str) -> tuple[list[tuple[int, PlaceData]], list[RowError]]:
    """Good rows and the errors of the others."""
    text = _decode(raw, encoding)
    rows = _csv_rows(text) if fmt == "csv" else _yaml_rows(text)
    good, errors = [], []
    for line, row in rows:
        code = row.get("code") if isinstance(row, dict) else None
        try:
            if not isinstance(row, dict):
                raise ValueError("expected a mapping of column names to values")
            if "__extra__" in row:
                raise ValueError("more values than columns")
            good.append((line, PlaceData.model_validate(_fields(row))))
        except ValidationError as exc:
            reason = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors())
            errors.append(RowError(line, code, reason.replace("Value error, ", "")))
        except ValueError as exc:  # JSONDecodeError included
            errors.append(RowError(line, code, str(exc)))
    return good, errors


def parse_places(raw: bytes, fmt: Format, *, encoding: str = "utf-8") -> list[tuple[int, PlaceData]]:
    """Parse and validate every row on its own; PlaceFileError lists every bad one."""
    good, errors = _parse(raw, fmt, encoding)
    if errors:
        raise PlaceFileError(f"{len(errors)} bad row(s), nothing imported", errors)
    return good


def _check(
    rows: list[tuple[int, PlaceData]], existing: dict[str, Place], unparsed: set[str | None]
) -> list[RowError]:
    """Every row's problems against the rest of the file and what the hub holds."""
    by_id = {p.id: p for p in existing.values()}
    in_file = {d.code: d for _, d in rows}
    errors, seen = [], set[str]()
    for line, data in rows:
        if data.code in seen:
            errors.append(RowError(line, data.code, f"code {data.code} appears twice in the file"))
        seen.add(data.code)
        parent_level = None
        if data.parent is not None:
            known = in_file.get(data.parent) or existing.get(data.parent)
            if known is None and data.parent in unparsed:
                continue  # its parent's own row is reported already
            if known is None:
                errors.append(
                    RowError(line, data.code, f"parent {data.parent} is neither in the file nor in the hub")
                )
                continue
            parent_level = known.level
        depth = level_index(data.level)
        if depth == 0 and data.parent is not None:
            errors.append(RowError(line, data.code, "a district has no parent"))
        elif depth > 0 and parent_level != LEVELS[depth - 1]:
            where = f"under {parent_level} {data.parent}" if data.parent else "without a parent"
            errors.append(
                RowError(line, data.code, f"a {data.level} belongs under a {LEVELS[depth - 1]}, not {where}")
            )
        old = existing.get(data.code)
        if old is not None:
            old_parent = by_id[old.parent_id].code if old.parent_id in by_id else None
            if old.level != data.level:
                errors.append(RowError(line, data.code, f"is a {old.level} in the hub, not a {data.level}"))
            elif old_parent != data.parent:
                errors.append(
                    RowError(line, data.code, f"has parent {old_parent} in the hub; use move to change it")
                )
    return errors


async def _insert(session: AsyncSession, new: list[PlaceData], existing: dict[str, Place], now: Any) -> None:
    """Insert new places level by level (parents first), in bulk, then set their paths."""
    paths = {code: p.path for code, p in existing.items()}
    ids = {code: p.id for code, p in existing.items()}
    for level in LEVELS:
        batch = [d for d in new if d.level == level]
        if not batch:
            continue
        values = [
            d.model_dump(exclude={"parent"})
            | {
                "parent_id": ids[d.parent] if d.parent else None,
                "path": "",
                "created_at": now,
                "updated_at": now,
            }
            for d in batch
        ]
        # The path holds the row's own id, known only after the insert: insert, then one bulk update.
        for pid, code in await session.execute(insert(Place).returning(Place.id, Place.code), values):
            ids[code] = pid
        for d in batch:
            paths[d.code] = f"{paths[d.parent] if d.parent else '/'}{ids[d.code]}/"
        await session.execute(update(Place), [{"id": ids[d.code], "path": paths[d.code]} for d in batch])


async def import_places(
    session: AsyncSession,
    raw: bytes,
    fmt: Format,
    *,
    actor: str,
    channel: str,
    encoding: str = "utf-8",
    dry_run: bool = False,
    clock: Clock = utcnow,
) -> ImportReport:
    """Validate the whole file against itself and the hub, then create or update in bulk."""
    rows, bad = _parse(raw, fmt, encoding)
    existing = {p.code: p for p in (await session.execute(select(Place))).scalars()}
    errors = sorted(bad + _check(rows, existing, {e.code for e in bad}), key=lambda e: e.line)
    if errors:
        raise PlaceFileError(f"{len(errors)} bad row(s), nothing imported", errors)
    report, now = ImportReport(), clock()
    new = [d for _, d in rows if d.code not in existing]
    report.created = [d.code for d in new]
    for _, data in rows:
        old = existing.get(data.code)
        if old is None:
            continue
        after = data.model_dump()
        if all(getattr(old, k) == after[k] for k in EDITABLE):
            report.unchanged += 1
            continue
        report.updated.append(data.code)
        if not dry_run:
            for k in EDITABLE:
                setattr(old, k, after[k])
            old.updated_at = now
    if dry_run:
        return report
    await _insert(session, new, existing, now)
    if report.created or report.updated:
        detail = {"format": fmt, "created": len(report.created), "updated": len(report.updated)}
        record(
            session,
            actor,
            channel,
            "import",
            "place",
            "*",
            detail | {"updated_codes": report.updated[:50]},
            clock,
        )
    return report


async def export_places(session: AsyncSession, fmt: Format, *, root: Place | None = None) -> bytes:
    """The whole hierarchy (or ``root``'s subtree), parents first, in a file ``import_places`` accepts."""
    if root is not None:
        places = list(await subtree(session, root))
    else:
        places = list((await session.execute(select(Place).order_by(Place.path))).scalars())
    codes = {p.id: p.code for p in places}
    if root is not None and root.parent_id is not None:
        codes[root.parent_id] = (
            await session.scalar(select(Place.code).where(Place.id == root.parent_id)) or ""
        )
    rows = [snapshot(p, codes.get(p.parent_id) if p.parent_id else None) for p in places]
    rows = [{c: row[c] for c in COLUMNS} for row in rows]
    if fmt == "yaml":
        text = yaml.safe_dump({"places": rows}, allow_unicode=True, sort_keys=False)
        return text.encode()
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = {
            k: json.dumps(v, ensure_ascii=False) if k in JSON_COLUMNS and v else v for k, v in row.items()
        }
        writer.writerow({k: "" if v is None or v == [] else v for k, v in flat.items()})
    return out.getvalue().encode()
