"""`iothub mosquitto export`: Mosquitto password and ACL files for external-broker mode."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Annotated

import typer

from hub.config import load_settings
from hub.db import Database
from hub.errors import ConfigError, HubError
from hub.logmask import masked
from provisioning.credentials import CredentialEvents, CredentialStore, SecretBox
from provisioning.mosquitto_export import ExportResult, export_mosquitto

__all__ = ["mosquitto_app"]

mosquitto_app = typer.Typer(help="External Mosquitto broker: password and ACL files.", no_args_is_help=True)
EnvFile = Annotated[Path, typer.Option("--env-file", help="Settings file read before HUB_* variables.")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry in some containers
        return "cli"


@mosquitto_app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="Directory for password_file and acl_file.")],
    issue_passwords: Annotated[
        bool,
        typer.Option(
            "--issue-passwords",
            help="Rotate devices that have no Mosquitto hash yet and print their new passwords once.",
        ),
    ] = False,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Write the files; the hub's own user is HUB_MQTT_USERNAME (default: HUB_MQTT_CLIENT_ID)."""

    async def run() -> ExportResult:
        settings = load_settings(env_file)
        db = Database(settings.database)
        await db.start()
        try:
            store = CredentialStore(db, SecretBox(settings.secret_key.get_secret_value()), CredentialEvents())
            password = settings.mqtt.password.get_secret_value() if settings.mqtt.password else None
            return await export_mosquitto(
                db,
                store,
                out,
                hub_user=settings.mqtt.username or settings.mqtt.client_id,
                hub_password=password,
                issue=issue_passwords,
                actor=_actor(),
            )
        finally:
            await db.stop()

    try:
        result = asyncio.run(run())
    except ConfigError as exc:
        typer.echo(f"iothub: error: {masked(exc.message)}", err=True)
        raise typer.Exit(2) from None
    except (HubError, OSError) as exc:
        typer.echo(f"iothub: error: {masked(str(exc))}", err=True)
        raise typer.Exit(1) from None
    for serial, password in result.issued.items():
        typer.echo(f"{serial}\t{password}")
    if result.hub_password is not None:
        typer.echo(f"hub\t{result.hub_password}\t(set HUB_MQTT_PASSWORD to this)")
    typer.echo(
        f"wrote {out}: {len(result.kept)} kept, {len(result.issued)} issued, {len(result.skipped)} skipped",
        err=True,
    )
    if result.issued or result.hub_password:
        typer.echo("store these passwords now: they are shown only once", err=True)
    if result.skipped and not issue_passwords:
        typer.echo(
            "skipped devices have no Mosquitto hash: rerun with --issue-passwords to rotate them", err=True
        )
