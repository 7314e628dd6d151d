"""Smoke tests of the real-server harness: each server is started and exercised for real."""

from __future__ import annotations

import queue
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psutil  # type: ignore[import-untyped]
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from twilio.base import values
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from hub.errors import StartupError
from tests.servers.influxdb import InfluxServer
from tests.servers.mosquitto import MosquittoServer, write_password_file
from tests.servers.prism import PrismServer

WAIT_S = 10.0
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


async def test_influxdb_write_then_query(influxdb: InfluxServer, influx_database: str) -> None:
    async with httpx.AsyncClient(base_url=influxdb.url, timeout=WAIT_S) as http:
        written = await http.post(
            "/write",
            params={"db": influx_database, "precision": "s"},
            content=b"smoke,device=d1 temperature=21.5 1700000000",
        )
        assert written.status_code == 204, written.text
        answer = await http.get(
            "/query", params={"db": influx_database, "q": "SELECT temperature FROM smoke WHERE device='d1'"}
        )
    series = answer.json()["results"][0]["series"][0]
    assert series["values"] == [["2023-11-14T22:13:20Z", 21.5]]


def test_influxdb_auth_survives_restart_on_same_port(tmp_path: Path) -> None:
    with InfluxServer(tmp_path / "influx", admin=("admin", "pw-smoke")) as server:
        url, port = server.url, server.port
        anonymous = httpx.post(f"{url}/write", params={"db": "x"}, content=b"m v=1")
        assert anonymous.status_code == 401
        server.create_database("auth_db")
        server.write_lines("auth_db", ["m,device=d2 v=7i 1000000000"])

        server.stop()
        assert not server.running
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/ping", timeout=2)

        server.start()
        assert server.port == port
        rows = server.query("SELECT v FROM m", db="auth_db")["results"][0]["series"][0]["values"]
        assert rows == [["1970-01-01T00:00:01Z", 7]]
        assert httpx.get(f"{url}/query", params={"q": "SHOW DATABASES"}).status_code == 401
        pid = server.pid
    assert pid is not None and not psutil.pid_exists(pid)


def test_server_that_cannot_start_fails_loudly(tmp_path: Path) -> None:
    server = MosquittoServer(tmp_path / "broker", acl_file=tmp_path / "no-such-acl")
    with pytest.raises(StartupError, match="exited with code") as failure:
        server.start()
    assert "no-such-acl" in failure.value.message  # the log tail says why
    assert not server.running


@contextmanager
def mqtt_client(
    server: MosquittoServer, inbox: queue.Queue[mqtt.MQTTMessage], auth: tuple[str, str] | None = None
) -> Iterator[tuple[mqtt.Client, ReasonCode]]:
    """Connect a paho client in its own thread; yield it with the CONNACK reason code."""
    connacks: queue.Queue[ReasonCode] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"smoke-{secrets.token_hex(4)}")
    client.on_connect = lambda _c, _u, _f, reason, _p: connacks.put(reason)
    client.on_message = lambda _c, _u, message: inbox.put(message)
    if auth:
        client.username_pw_set(*auth)
    client.connect(server.host, server.port)
    client.loop_start()
    try:
        yield client, connacks.get(timeout=WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


def subscribe_and_wait(client: mqtt.Client, topic: str) -> None:
    """Subscribe at QoS 1 and block until the broker acknowledged it."""
    subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
    client.on_subscribe = lambda _c, _u, _mid, reasons, _p: subacks.put(reasons)
    client.subscribe(topic, qos=1)
    assert not subacks.get(timeout=WAIT_S)[0].is_failure


def test_mosquitto_publish_and_receive(mosquitto: MosquittoServer) -> None:
    inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    with mqtt_client(mosquitto, inbox) as (client, connack):
        assert connack == "Success"
        subscribe_and_wait(client, "smoke/+/alarm")
        client.publish("smoke/d1/alarm", b'{"smoke": true}', qos=1).wait_for_publish(WAIT_S)
        message = inbox.get(timeout=WAIT_S)
    assert (message.topic, message.payload) == ("smoke/d1/alarm", b'{"smoke": true}')


def test_mosquitto_password_and_acl(tmp_path: Path) -> None:
    password_file = write_password_file(tmp_path / "passwords", {"dev1": "right", "hub": "hub-pw"})
    acl_file = tmp_path / "acl"
    acl_file.write_text("user dev1\ntopic readwrite devices/dev1/#\n\nuser hub\ntopic readwrite devices/#\n")
    inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    with MosquittoServer(tmp_path / "broker", password_file=password_file, acl_file=acl_file) as broker:
        with mqtt_client(broker, inbox, auth=("dev1", "wrong")) as (_, refused):
            assert refused.is_failure
        with (
            mqtt_client(broker, inbox, auth=("dev1", "right")) as (device, connack),
            mqtt_client(broker, queue.Queue(), auth=("hub", "hub-pw")) as (hub, _),
        ):
            assert connack == "Success"
            subscribe_and_wait(device, "devices/#")
            # In order from one publisher: if the ACL let dev2's message through, it would come first.
            hub.publish("devices/dev2/state", b"foreign", qos=1).wait_for_publish(WAIT_S)
            hub.publish("devices/dev1/state", b"own", qos=1).wait_for_publish(WAIT_S)
            assert inbox.get(timeout=WAIT_S).payload == b"own"


async def test_postgres_round_trip(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+asyncpg://postgres@127.0.0.1:5432/iothub_")
    engine = create_async_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE smoke_rows (id serial PRIMARY KEY, device text NOT NULL)"))
            await conn.execute(text("INSERT INTO smoke_rows (device) VALUES (:d)"), {"d": "door-7"})
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, device FROM smoke_rows"))).all()
            await conn.execute(text("DROP TABLE smoke_rows"))
            await conn.commit()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "door-7")]


async def test_prism_accepts_sms_and_rejects_missing_to(prism: PrismServer) -> None:
    http_client = AsyncTwilioHttpClient()
    try:
        client = Client(ACCOUNT_SID, "token", http_client=http_client)
        client.api.base_url = prism.url
        message = await client.messages.create_async(to="+8613800000000", from_="+15005550006", body="smoke")
        assert message.sid is not None and message.sid.startswith(("SM", "MM"))
        with pytest.raises(TwilioRestException) as refused:
            await client.messages.create_async(to=values.unset, from_="+15005550006", body="smoke")
        assert refused.value.status == 422
    finally:
        await http_client.close()
