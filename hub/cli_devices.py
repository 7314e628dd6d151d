"""`iothub devices …` (enroll, claim, batch, import, list, show, test, rotate, revoke) and `iothub labels`."""

from __future__ import annotations

import csv
import getpass
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hub.config import Settings
from hub.db import Database
from hub.db.devices import Device
from hub.errors import InvalidInput, NotFound
from hub.logmask import masked
from provisioning import bulk, claims, devices, enroll, testmode
from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox

__all__ = ["devices_app", "labels"]

devices_app = typer.Typer(help="Device enrollment, credentials and test mode.", no_args_is_help=True)
EnvFile = Annotated[Path, typer.Option("--env-file", help="Settings file read before HUB_* variables.")]
T = TypeVar("T")


def _actor() -> devices.Actor:
    return devices.Actor(f"cli:{getpass.getuser()}", "cli")


def _with_db(env_file: Path, work: Callable[[Settings, Database, CredentialStore], Awaitable[T]]) -> T:
    """Load settings, open the database, run ``work``; errors become one line and an exit status."""
    from hub.cli import _load, _run

    settings = _load(env_file)
    result: list[T] = []

    async def main() -> None:
        db = Database(settings.database)
        await db.start()
        try:
            store = CredentialStore(db, SecretBox(settings.secret_key.get_secret_value()), CredentialEvents())
            result.append(await work(settings, db, store))
        finally:
            await db.stop()

    _run(main())
    return result[0]


async def _find(db: Database, ref: str) -> Device:
    async with db.session() as session:
        device = await devices.get_device_by_serial(session, ref)
        if device is None and ref.isdigit():
            device = await session.get(Device, int(ref))
    if device is None:
        raise NotFound(f"no device with serial or id {ref}")
    return device


def _read_csv(file: Path) -> str:
    """The file's text, or one line naming what is wrong with it and exit status 1."""
    try:
        text, _notes = bulk.decode_csv(file.read_bytes())
    except (OSError, InvalidInput) as exc:
        typer.echo(f"iothub: error: {file}: {masked(str(getattr(exc, 'message', exc)))}", err=True)
        raise typer.Exit(1) from None
    return text


def _echo(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _summary(device: Device) -> dict[str, Any]:
    keys = (
        "id",
        "serial",
        "kind",
        "transport",
        "place_id",
        "responder_id",
        "position",
        "state",
        "test_until",
    )
    return {k: getattr(device, k) for k in keys}


@devices_app.command("enroll")
def enroll_cmd(
    serial: str,
    kind: Annotated[str, typer.Option(help="smoke, door, bodycam or panic_button")],
    household: Annotated[str | None, typer.Option(help="household place code")] = None,
    responder_id: Annotated[int | None, typer.Option(help="wearer of a body-cam")] = None,
    position: str = "",
    transport: str = "mqtt",
    model: str = "",
    firmware: str = "",
    imei: str | None = None,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Enroll a serial into a household and print its secrets (shown this once)."""
    spec = enroll.DeviceSpec(
        serial, kind, household, responder_id, position, transport, model, firmware, imei
    )

    async def work(_s: Settings, db: Database, store: CredentialStore) -> None:
        async with db.session() as session:
            done = await enroll.enroll_direct(session, spec, actor=_actor(), store=store)
        _echo({"device": _summary(done.device), "secrets": done.secrets.public()})

    _with_db(env_file, work)


@devices_app.command("claim")
def claim_cmd(
    url_or_serial: Annotated[str, typer.Argument(help="the scanned claim URL, or the serial")],
    code: Annotated[str | None, typer.Option(help="claim code, when a serial is given")] = None,
    household: str | None = None,
    responder_id: int | None = None,
    position: str = "",
    env_file: EnvFile = Path(".env"),
) -> None:
    """Claim a pre-registered device with the code from its box."""
    if "://" in url_or_serial:
        serial, code = claims.parse_claim_url(url_or_serial)
    elif code is None:
        raise typer.BadParameter("give --code with a serial, or the whole claim URL")
    else:
        serial = url_or_serial
    spec = enroll.DeviceSpec(serial, "", household, responder_id, position)

    async def work(settings: Settings, db: Database, store: CredentialStore) -> None:
        key = settings.secret_key.get_secret_value()
        done = await enroll.claim_device(
            db, serial, code or "", spec, actor=_actor(), store=store, secret_key=key
        )
        _echo({"device": _summary(done.device), "secrets": done.secrets.public()})

    _with_db(env_file, work)


@devices_app.command("batch")
def batch_cmd(
    file: Annotated[Path, typer.Argument(help="CSV with serial,kind[,transport,model,firmware,imei]")],
    out: Annotated[Path, typer.Option(help="where to write serial,claim_code,claim_url (mode 0600)")],
    batch: Annotated[str, typer.Option(help="factory batch name")],
    base_url: Annotated[
        str | None, typer.Option(help="public base URL; default HUB_WEB_PUBLIC_BASE_URL")
    ] = None,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Pre-register a factory batch: each device gets a claim code, written once to --out."""
    text = _read_csv(file)
    specs = []
    for row in csv.DictReader(text.splitlines()):
        fields = {k: (row.get(k) or "").strip() for k in ("serial", "kind", "transport", "model", "firmware")}
        specs.append(
            enroll.DeviceSpec(
                serial=fields["serial"],
                kind=fields["kind"],
                transport=fields["transport"] or "mqtt",
                model=fields["model"],
                firmware=fields["firmware"],
                imei=(row.get("imei") or "").strip() or None,
            )
        )

    async def work(settings: Settings, db: Database, _store: CredentialStore) -> int:
        url = base_url or settings.web.public_base_url
        if not url:
            raise InvalidInput(
                "set --base-url or HUB_WEB_PUBLIC_BASE_URL for the claim URLs", field="base_url"
            )
        key = settings.secret_key.get_secret_value()
        async with db.session() as session:
            codes = await enroll.preregister_batch(
                session, specs, batch=batch, secret_key=key, actor=_actor()
            )
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["serial", "claim_code", "claim_url"])
            writer.writerows([s, c, claims.claim_url(url, s, c)] for s, c in codes)
        return len(codes)

    count = _with_db(env_file, work)
    typer.echo(
        f"{count} devices registered in batch {batch}; claim codes in {out} (print labels, then delete it)"
    )


@devices_app.command("import")
def import_cmd(
    file: Path,
    skip_invalid: Annotated[bool, typer.Option(help="apply the good rows even if some are bad")] = False,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Enroll devices from a UTF-8 CSV (serial,kind,household[,position,transport,model,firmware,imei])."""
    from rich.progress import Progress

    data = file.read_bytes()

    async def work(_s: Settings, db: Database, _store: CredentialStore) -> bulk.ImportReport:
        with Progress(transient=True) as bar:
            task = bar.add_task("importing", total=max(data.count(b"\n") - 1, 1))
            async with db.session() as session:
                return await bulk.import_devices(
                    session,
                    data,
                    actor=_actor(),
                    skip_invalid=skip_invalid,
                    progress=lambda n: bar.advance(task, n),
                )

    report = _with_db(env_file, work)
    for note in report.notes:
        typer.echo(f"note: {note}")
    for error in report.errors:
        typer.echo(f"{file}: {error}", err=True)
    verb = "applied" if report.applied else "NOT applied (fix the rows above, or use --skip-invalid)"
    typer.echo(
        f"{report.rows} rows: {report.created} created, {report.unchanged} unchanged, "
        f"{len(report.errors)} bad; {verb}"
    )
    if not report.applied:
        raise typer.Exit(1)


@devices_app.command("list")
def list_cmd(
    kind: str | None = None, state: str | None = None, limit: int = 100, env_file: EnvFile = Path(".env")
) -> None:
    """List devices by id."""

    async def work(_s: Settings, db: Database, _store: CredentialStore) -> None:
        async with db.session() as session:
            found = await devices.list_devices(session, kind=kind, state=state, limit=limit)
        for d in found:
            typer.echo(f"{d.id}\t{d.serial}\t{d.kind}\t{d.state}\t{d.place_id or '-'}\t{d.position}")

    _with_db(env_file, work)


@devices_app.command("show")
def show_cmd(device: str, env_file: EnvFile = Path(".env")) -> None:
    """Show one device (by serial or id)."""

    async def work(_s: Settings, db: Database, _store: CredentialStore) -> None:
        _echo(_summary(await _find(db, device)))

    _with_db(env_file, work)


@devices_app.command("test")
def test_cmd(device: str, minutes: int = 30, env_file: EnvFile = Path(".env")) -> None:
    """Put a device in test for N minutes (1-240)."""

    async def work(_s: Settings, db: Database, _store: CredentialStore) -> None:
        found = await _find(db, device)
        async with db.session() as session:
            found = await devices.get_device(session, found.id)
            await testmode.start_test(session, found, minutes, actor=_actor())
        _echo(_summary(found))

    _with_db(env_file, work)


@devices_app.command("rotate")
def rotate_cmd(device: str, env_file: EnvFile = Path(".env")) -> None:
    """Issue new secrets (printed once); the old ones stop working."""

    async def work(_s: Settings, db: Database, store: CredentialStore) -> None:
        found = await _find(db, device)
        async with db.session() as session:
            issued = await store.issue(session, found, _actor().name, "cli")
        _echo({"device": found.serial, "secrets": issued.public()})

    _with_db(env_file, work)


@devices_app.command("revoke")
def revoke_cmd(device: str, note: str = "", env_file: EnvFile = Path(".env")) -> None:
    """Revoke a device's secrets: its next connect is refused."""

    async def work(_s: Settings, db: Database, store: CredentialStore) -> None:
        found = await _find(db, device)
        async with db.session() as session:
            await store.revoke(session, found, _actor().name, "cli", note)
        typer.echo(f"revoked the credentials of {found.serial}")

    _with_db(env_file, work)


def labels(
    file: Annotated[
        Path, typer.Argument(help="CSV with serial and claim_url (from `devices batch`) or serial only")
    ],
    out: Annotated[Path, typer.Option(help="directory for <serial>.png and labels.pdf")] = Path("labels"),
) -> None:
    """Print QR labels: a PNG per device and an A4 PDF sheet."""
    from provisioning.labels import Label, write_labels

    text = _read_csv(file)
    items = [
        Label(row["serial"], row.get("claim_url") or row["serial"], row.get("kind") or "")
        for row in csv.DictReader(text.splitlines())
        if row.get("serial")
    ]
    sheet = write_labels(items, out)
    typer.echo(f"{len(sheet.pngs)} PNG labels and {sheet.pdf} ({sheet.pages} pages) written")
