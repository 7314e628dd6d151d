"""`iothub devices …` and `iothub labels` end to end on a real database."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app
from hub.config import DatabaseSettings
from hub.db import Database
from hub.errors import AuthError
from tests.provisioning.test_auth_kit import ManualClock
from tests.provisioning.test_devices_kit import Street, make_store, make_street


def _street(url: str) -> Street:
    async def build() -> Street:
        db = Database(DatabaseSettings(url=url))
        await db.start()
        try:
            return await make_street(db, ManualClock()())
        finally:
            await db.stop()

    return asyncio.run(build())


def _login(url: str, serial: str, password: str) -> bool:
    """Whether the device's MQTT login would be accepted now."""

    async def check() -> bool:
        db = Database(DatabaseSettings(url=url))
        await db.start()
        try:
            await make_store(db, ManualClock()).verify_mqtt_password(serial, password)
        except AuthError:
            return False
        finally:
            await db.stop()
        return True

    return asyncio.run(check())


def test_batch_labels_claim_import_and_credentials(database_url: str, tmp_path: Path) -> None:
    """A factory batch gets codes and labels, is claimed by URL; a CSV imports once; rotate/revoke work."""
    street = _street(database_url)
    env = {"HUB_DATABASE_URL": database_url, "HUB_WEB_PUBLIC_BASE_URL": "https://hub.example.cn"}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [*args, "--env-file", str(tmp_path / "none.env")], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    factory = tmp_path / "factory.csv"
    factory.write_text("serial,kind,transport\nF-1,smoke,coap\nF-2,door,mqtt\n", encoding="utf-8")
    codes_file = tmp_path / "codes.csv"
    assert "2 devices registered" in run(
        "devices", "batch", str(factory), "--out", str(codes_file), "--batch", "b1"
    )
    assert codes_file.stat().st_mode & 0o077 == 0
    codes = list(csv.DictReader(codes_file.read_text(encoding="utf-8").splitlines()))
    assert codes[0]["claim_url"].startswith("https://hub.example.cn/claim/F-1?c=")

    labels_out = runner.invoke(app, ["labels", str(codes_file), "--out", str(tmp_path / "labels")]).output
    assert "2 PNG labels" in labels_out and (tmp_path / "labels" / "F-2.png").exists()

    claimed = json.loads(run("devices", "claim", codes[0]["claim_url"], "--household", street.h1))
    assert claimed["device"]["state"] == "claimed" and len(claimed["secrets"]["psk_hex"]) == 32

    good = tmp_path / "good.csv"
    good.write_text("serial,kind,household\nSD-1,smoke,H1-101\nSD-2,smoke,H2-201\n", encoding="utf-8")
    assert "2 created, 0 unchanged, 0 bad; applied" in run("devices", "import", str(good))
    assert "0 created, 2 unchanged" in run("devices", "import", str(good))

    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("serial,kind,household,position\nSD-3,smoke,H1-101,厨房\n".encode("gbk"))
    refused = runner.invoke(
        app, ["devices", "import", str(gbk), "--env-file", str(tmp_path / "none.env")], env=env
    )
    assert refused.exit_code == 1 and "not UTF-8" in refused.output and "GBK" in refused.output

    bad = tmp_path / "bad.csv"
    bad.write_text("serial,kind,household\nSD-4,smoke,H1-101\nSD-5,lamp,H1-101\n", encoding="utf-8")
    result = runner.invoke(
        app, ["devices", "import", str(bad), "--env-file", str(tmp_path / "none.env")], env=env
    )
    assert (
        result.exit_code == 1
        and "line 3: unknown kind 'lamp'" in result.output
        and "NOT applied" in result.output
    )

    listed = run("devices", "list")
    assert [line.split("\t")[1] for line in listed.strip().splitlines()] == ["F-1", "F-2", "SD-1", "SD-2"]
    assert json.loads(run("devices", "test", "SD-1", "--minutes", "15"))["state"] == "test"
    rotated = json.loads(run("devices", "rotate", "SD-1"))
    password = rotated["secrets"]["mqtt_password"]
    assert rotated["device"] == "SD-1" and _login(database_url, "SD-1", password)
    assert "revoked the credentials of SD-1" in run("devices", "revoke", "SD-1", "--note", "lost")
    assert not _login(database_url, "SD-1", password)
    assert json.loads(run("devices", "show", "SD-2"))["serial"] == "SD-2"
