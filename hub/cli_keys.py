"""`iothub keys`: create (bootstrap the first admin), list and revoke API keys."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from hub.config import load_settings
from hub.db import Database
from hub.errors import ConfigError, HubError
from hub.logmask import masked
from provisioning import apikeys

__all__ = ["keys_app"]

T = TypeVar("T")
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
EnvFile = Annotated[Path, typer.Option("--env-file", help="Settings file read before HUB_* variables.")]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry in some containers
        return "cli"


def _in_session(env_file: Path, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction on a migrated database; errors become one line and exit 1 or 2."""

    async def run() -> T:
        db = Database(load_settings(env_file).database)
        await db.start()
        try:
            async with db.session() as session:
                return await work(session)
        finally:
            await db.stop()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        typer.echo(f"iothub: error: {masked(exc.message)}", err=True)
        raise typer.Exit(2) from None
    except HubError as exc:
        typer.echo(f"iothub: error: {masked(exc.message)}", err=True)
        raise typer.Exit(1) from None


@keys_app.command("create")
def create(
    role: Annotated[str, typer.Option(help=f"One of {', '.join(apikeys.ROLES)}.")],
    name: Annotated[str, typer.Option(help="Who or what holds the key.")],
    place: Annotated[list[str] | None, typer.Option(help="Limit to this place code (repeatable).")] = None,
    responder_id: Annotated[int | None, typer.Option(help="Tie the key to a responder.")] = None,
    env_file: EnvFile = Path(".env"),
) -> None:
    """Create a key and print it once (it is not stored, only its hash)."""

    async def work(session: AsyncSession) -> str:
        _, text = await apikeys.create_key(
            session,
            name=name,
            role=role,
            places=place or [],
            responder_id=responder_id,
            actor=_actor(),
            channel="cli",
        )
        return text

    text = _in_session(env_file, work)
    typer.echo(text)
    typer.echo("store this key now: it is shown only once", err=True)


@keys_app.command("list")
def list_(
    include_revoked: Annotated[bool, typer.Option(help="Show revoked keys too.")] = False,
    env_file: EnvFile = Path(".env"),
) -> None:
    """List keys: id, role, name, places, state."""

    async def work(session: AsyncSession) -> list[apikeys.KeyInfo]:
        return await apikeys.list_keys(session, include_revoked=include_revoked)

    for info in _in_session(env_file, work):
        key = info.key
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        places = ",".join(info.place_codes) or "*"
        typer.echo(f"{key.id}\t{key.role}\t{key.name}\t{places}\t{state}")


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (hub_<id>_...).")],
    env_file: EnvFile = Path(".env"),
) -> None:
    """Revoke a key at once."""

    async def work(session: AsyncSession) -> None:
        await apikeys.revoke_key(session, key_id, actor=_actor(), channel="cli")

    _in_session(env_file, work)
    typer.echo(f"revoked {key_id}")
