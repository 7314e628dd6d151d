"""API keys: hashing, place limits, responder keys, the last admin, and the CLI."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hub.cli import app
from hub.config import DatabaseSettings
from hub.db import Database
from hub.db.people import ApiKey
from hub.errors import AuthError, Conflict, Forbidden, InvalidInput
from provisioning import apikeys, placefile, responders
from provisioning.apikeys import ensure_place_allowed
from provisioning.places import get_place
from provisioning.responders import ResponderData
from tests.provisioning.test_auth_kit import ManualClock

WHO = {"actor": "test", "channel": "system"}
TREE = b"code,level,name,parent\nD01,district,d,\nS01,street,s1,D01\nS02,street,s2,D01\nC01,community,c,S01\n"


async def test_only_a_hash_is_stored_and_last_use_is_coarse(db: Database) -> None:
    """The secret is not in the table; last_used_at moves only every few minutes."""
    clock = ManualClock()
    async with db.session() as s:
        key, text = await apikeys.create_key(s, name="ops", role="operator", **WHO, clock=clock)
    secret = text.split("_", 2)[2]
    async with db.session() as s:
        stored = (await s.execute(select(ApiKey))).scalar_one()
        await apikeys.authenticate(s, text, clock)
    assert stored.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored.__dict__)
    first = clock.now
    clock.advance(minutes=1)
    async with db.session() as s:
        await apikeys.authenticate(s, text, clock)
    clock.advance(minutes=5)
    async with db.session() as s:
        assert (await s.get(ApiKey, key.id)).last_used_at == first  # type: ignore[union-attr]
        await apikeys.authenticate(s, text, clock)
    async with db.session() as s:
        assert (await s.get(ApiKey, key.id)).last_used_at == clock.now  # type: ignore[union-attr]


async def test_place_limited_keys_act_only_in_their_subtree(db: Database) -> None:
    """A technician of street S01 may act in its community but not in street S02."""
    async with db.session() as s:
        await placefile.import_places(s, TREE, "csv", **WHO)
        _, text = await apikeys.create_key(s, name="tech", role="technician", places=["S01"], **WHO)
    async with db.session() as s:
        principal = await apikeys.authenticate(s, text)
        inside, outside = await get_place(s, "C01"), await get_place(s, "S02")
    ensure_place_allowed(principal, inside)
    with pytest.raises(Forbidden):
        ensure_place_allowed(principal, outside)


async def test_responder_keys_take_the_responders_places(db: Database) -> None:
    """A responder key acts where its responder is assigned, and dies with the responder's activity."""
    async with db.session() as s:
        await placefile.import_places(s, TREE, "csv", **WHO)
        r = await responders.create_responder(
            s, ResponderData(name="r", phone="+8613800000031", role="grid_worker", places=["S02"]), **WHO
        )
        _, text = await apikeys.create_key(s, name="r", role="responder", responder_id=r.id, **WHO)
    async with db.session() as s:
        principal = await apikeys.authenticate(s, text)
        s02 = await get_place(s, "S02")
    assert principal.responder_id == r.id and principal.place_ids == {s02.id}
    async with db.session() as s:
        await responders.update_responder(s, r.id, {"active": False}, **WHO)
    async with db.session() as s:
        with pytest.raises(AuthError, match="not active"):
            await apikeys.authenticate(s, text)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"role": "root"}, "role"),
        ({"role": "technician"}, "places"),
        ({"role": "operator", "places": ["NOPE"]}, "places"),
        ({"role": "responder", "responder_id": 999}, "responder_id"),
        ({"role": "operator", "name": " "}, "name"),
    ],
)
async def test_bad_key_requests_name_the_field(db: Database, kwargs: dict[str, object], field: str) -> None:
    """Unknown roles, unplaced technicians, unknown places or responders and blank names are refused."""
    async with db.session() as s:
        with pytest.raises(InvalidInput) as info:
            await apikeys.create_key(s, **({"name": "k"} | kwargs), **WHO)  # type: ignore[arg-type]
    assert info.value.field == field


async def test_the_last_admin_key_cannot_be_revoked(db: Database) -> None:
    """Somebody must always be able to manage keys."""
    async with db.session() as s:
        first, _ = await apikeys.create_key(s, name="a1", role="admin", **WHO)
    async with db.session() as s:
        with pytest.raises(Conflict, match="last active admin"):
            await apikeys.revoke_key(s, first.id, **WHO)
    async with db.session() as s:
        await apikeys.create_key(s, name="a2", role="admin", **WHO)
        await apikeys.revoke_key(s, first.id, **WHO)
    async with db.session() as s:
        assert [i.key.name for i in await apikeys.list_keys(s)] == ["a2"]


async def _authenticate(database_url: str, key: str) -> apikeys.Principal:
    database = Database(DatabaseSettings(url=database_url))
    await database.start()
    try:
        async with database.session() as s:
            return await apikeys.authenticate(s, key)
    finally:
        await database.stop()


def test_cli_bootstraps_lists_and_revokes(database_url: str, tmp_path: Path) -> None:
    """`iothub keys create` prints a working key once; list shows it; revoke takes it away."""
    env = tmp_path / "hub.env"
    env.write_text(f"HUB_DATABASE_URL={database_url}\n", encoding="utf-8")
    runner = CliRunner()
    made = runner.invoke(
        app, ["keys", "create", "--role", "admin", "--name", "首个管理员", "--env-file", str(env)]
    )
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[0]
    assert key.startswith("hub_")
    principal = asyncio.run(_authenticate(database_url, key))
    assert (principal.name, principal.role) == ("首个管理员", "admin")
    ops = runner.invoke(
        app, ["keys", "create", "--role", "operator", "--name", "ops", "--env-file", str(env)]
    )
    assert ops.exit_code == 0, ops.output
    listed = runner.invoke(app, ["keys", "list", "--env-file", str(env)])
    assert "首个管理员" in listed.stdout and "operator" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout  # the secret is printed once, at creation
    ops_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if "\tops\t" in line)
    assert runner.invoke(app, ["keys", "revoke", ops_id, "--env-file", str(env)]).exit_code == 0
    again = runner.invoke(app, ["keys", "revoke", ops_id, "--env-file", str(env)])
    bad = runner.invoke(app, ["keys", "create", "--role", "root", "--name", "x", "--env-file", str(env)])
    assert again.exit_code == 1 and "already revoked" in again.output
    assert bad.exit_code == 1 and "role must be one of" in bad.output
