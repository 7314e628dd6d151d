"""`iothub mosquitto export`: the files it writes, checked by a real Mosquitto started with them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app
from hub.config import MqttSettings
from hub.db import Database
from hub.ingest.mqtt_client import ExternalMqtt
from provisioning.mosquitto_export import export_mosquitto, mosquitto_hash, mosquitto_verify
from tests.ingest.test_mqtt_embedded import reading
from tests.ingest.test_mqtt_kit import Device, accepted, eventually, ingest_rig
from tests.servers.mosquitto import MOSQUITTO_PASSWD, MosquittoServer


def test_hash_format_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    """Our $7$ hash verifies mosquitto_passwd's own output, and the other way round is checked live below."""
    path = tmp_path / "pw"
    path.write_text("u1:s3cret-pw\n")
    subprocess.run([MOSQUITTO_PASSWD, "-U", str(path)], check=True, timeout=30)
    theirs = path.read_text().strip().split(":", 1)[1]
    assert theirs.startswith("$7$101$") and mosquitto_verify(theirs, "s3cret-pw")
    assert not mosquitto_verify(theirs, "s3cret-px")
    ours = mosquitto_hash("s3cret-pw")
    assert ours.split("$")[1:3] == ["7", "101"] and mosquitto_verify(ours, "s3cret-pw")


async def test_exported_files_drive_a_real_mosquitto(db: Database, tmp_path: Path) -> None:
    """Right password in, wrong out; a device's publish on another's topic is not delivered."""
    async with ingest_rig(db, tmp_path) as rig:
        for serial in ("E-1", "E-2", "E-3"):
            await rig.enroll(serial)
        await rig.revoke("E-3")
        out = tmp_path / "mosq-files"
        first = await export_mosquitto(db, rig.credentials, out, hub_user="iothub", hub_password="hub-pw")
        assert first.skipped == ["E-1", "E-2"] and not first.issued
        second = await export_mosquitto(db, rig.credentials, out, hub_user="iothub", issue=True)
        assert sorted(second.issued) == ["E-1", "E-2"] and second.hub_password is None
        assert second.issued["E-1"] != rig.passwords["E-1"]  # issued means rotated
        third = await export_mosquitto(db, rig.credentials, out, hub_user="iothub")
        assert sorted(third.kept) == ["E-1", "E-2"] and not third.issued and not third.skipped
        assert "E-3" not in (out / "password_file").read_text()
        for serial in ("E-1", "E-2"):
            await rig.ingest.directory.refresh(rig.ingest.directory.get(serial).id)  # type: ignore[union-attr]

        root = tmp_path / "broker"
        with MosquittoServer(root, password_file=out / "password_file", acl_file=out / "acl_file") as server:
            settings = MqttSettings(
                mode="external",
                port=server.port,
                username="iothub",
                password="hub-pw",
                client_id="iothub",  # type: ignore[arg-type]
            )
            hub = ExternalMqtt(settings, rig.ingest, time.time, backoff=(0.05, 0.2))
            await hub.start()
            try:
                await eventually(hub.connected.is_set, "the hub logged in with its exported password")
                for serial, password in [("E-1", "wrong"), ("E-3", rig.passwords["E-3"]), ("NOPE", "x")]:
                    refused = Device(serial, server.port, password)
                    assert not await refused.connect(), f"{serial} was let in"
                    refused.client.loop_stop()
                intruder = Device("E-1", server.port, second.issued["E-1"])
                assert await intruder.connect()
                await intruder.publish("devices/E-2/up", reading(1, 30.0), qos=0)
                # Mosquitto 2.0.11 drops the connection of a 3.1.1 client after a denied publish.
                await eventually(intruder.disconnected.is_set, "the intruder dropped")
                intruder.client.loop_stop()
                device = Device("E-1", server.port, second.issued["E-1"])
                assert await device.connect()
                await device.up(reading(2, 20.0))
                await eventually(lambda: accepted(rig.metrics) == 1, "the device's own uplink")
                record = await hub.send_command("E-1", "silence")
                device.client.subscribe("devices/E-1/cmd", qos=1)
                await device.publish(
                    "devices/E-1/cmd/result", b'{"cmd":"silence","ok":true,"cid":%d}' % record.cid
                )
                assert (await hub.commands.wait(record, timeout=5)).status == "ok"
                assert await rig.stored("E-2", "temperature") == []
                assert await rig.stored("E-1", "temperature") == [20.0]
                device.close()
            finally:
                await hub.stop()


def test_the_cli_writes_both_files_and_prints_the_hub_password(tmp_path: Path) -> None:
    """On an empty registry: an ACL with the hub's user, and the hub's new password printed once."""
    env = tmp_path / ".env"
    env.write_text(
        f"HUB_DATABASE_URL=sqlite+aiosqlite:///{tmp_path / 'hub.db'}\n"
        "HUB_SECRET_KEY=test-secret-key-0123456789\nHUB_MQTT_CLIENT_ID=hub-7\n"
    )
    out = tmp_path / "files"
    result = CliRunner().invoke(app, ["mosquitto", "export", "--out", str(out), "--env-file", str(env)])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.stdout.splitlines() if row.startswith("hub\t"))
    password = line.split("\t")[1]
    user, stored = (out / "password_file").read_text().strip().split(":", 1)
    assert user == "hub-7" and mosquitto_verify(stored, password)
    assert "user hub-7\n" in (out / "acl_file").read_text()
    assert (out / "password_file").stat().st_mode & 0o077 == 0
