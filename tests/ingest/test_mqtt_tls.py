"""TLS from the hub to a real Mosquitto: the broker's CA, a wrong CA, server names, client certificates, settings."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.config import DatabaseSettings, MqttSettings, load_settings
from hub.db import Database
from hub.errors import ConfigError, TransportError
from hub.ingest.mqtt_client import ExternalMqtt
from hub.ingest.mqtt_tls import broker_tls
from tests.ingest.test_mqtt_embedded import reading
from tests.ingest.test_mqtt_external import hub_client
from tests.ingest.test_mqtt_kit import Device, Rig, accepted, eventually, ingest_rig
from tests.ingest.test_mqtt_tls_kit import Authority, Pair, encrypted_copy, make_authority
from tests.servers.mosquitto import MosquittoServer, MosquittoTls


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite only: the registry's backend plays no part in TLS."""
    database = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"))
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    """The broker's CA, and another CA nobody uses for the broker."""
    root = tmp_path_factory.mktemp("pki")
    return make_authority(root, "street"), make_authority(root, "other")


@pytest.fixture(scope="module")
def broker_pair(pki: tuple[Authority, Authority]) -> Pair:
    """The broker's certificate, for localhost and 127.0.0.1."""
    return pki[0].issue("broker", server=True, names=("localhost", "127.0.0.1"))


@pytest.fixture(scope="module")
def hub_pair(pki: tuple[Authority, Authority]) -> Pair:
    """The hub's client certificate, signed by the broker's CA."""
    return pki[0].issue("hub", server=False)


def tls_broker(
    root: Path, pki: tuple[Authority, Authority], pair: Pair, *, require_certificate: bool = False
) -> MosquittoServer:
    """A Mosquitto with a plain listener for the devices and a TLS one for the hub."""
    tls = MosquittoTls(pki[0].ca_file, pair.cert, pair.key, require_certificate=require_certificate)
    return MosquittoServer(root, tls=tls)


@pytest.fixture
def broker(tmp_path: Path, pki: tuple[Authority, Authority], broker_pair: Pair) -> Iterator[MosquittoServer]:
    """A TLS Mosquitto that does not ask for client certificates."""
    with tls_broker(tmp_path / "mosq", pki, broker_pair) as server:
        yield server


def tls_hub(rig: Rig, server: MosquittoServer, **settings: object) -> ExternalMqtt:
    """The hub's MQTT client on the broker's TLS port."""
    return hub_client(rig, server, port=server.tls_port, tls=True, **settings)


async def uplink_arrives(rig: Rig, server: MosquittoServer, serial: str) -> None:
    """A device publishes on the plain port; its reading must be stored."""
    device = Device(serial, server.port, None)
    assert await device.connect()
    try:
        await device.up(reading(1, 19.5))
        await eventually(lambda: accepted(rig.metrics) == 1, "the uplink through TLS")
        assert await rig.stored(serial, "temperature") == [19.5]
    finally:
        device.close()


async def refused(hub: ExternalMqtt, fragment: str) -> str:
    """Wait for the hub's connection error containing ``fragment``; it must never have connected."""
    await hub.start()
    try:
        await eventually(lambda: fragment in (hub.last_error or ""), f"an error saying {fragment!r}")
        ok, detail = await hub.health()
        assert not ok and fragment in detail
        assert hub.connects == 0
        return detail
    finally:
        await hub.stop()


@pytest.mark.parametrize("server_name", [None, "localhost"])
async def test_uplinks_arrive_over_tls_with_the_brokers_ca(
    db: Database,
    tmp_path: Path,
    pki: tuple[Authority, Authority],
    broker: MosquittoServer,
    server_name: str | None,
) -> None:
    """Trusting the broker's CA (checking 127.0.0.1, or the name given instead), the hub ingests."""
    async with ingest_rig(db, tmp_path) as rig:
        await rig.enroll("T-1")
        hub = tls_hub(rig, broker, ca_file=pki[0].ca_file, tls_server_name=server_name)
        await hub.start()
        try:
            await eventually(hub.connected.is_set, "the TLS subscription")
            await uplink_arrives(rig, broker, "T-1")
            assert (await hub.health())[0]
        finally:
            await hub.stop()


@pytest.mark.parametrize("trust", ["other CA", "system store"])
async def test_a_broker_certificate_from_an_untrusted_ca_is_refused(
    db: Database, tmp_path: Path, pki: tuple[Authority, Authority], broker: MosquittoServer, trust: str
) -> None:
    """Another CA, or the system's store: certificate verify failed, shown in health; no session."""
    ca_file = pki[1].ca_file if trust == "other CA" else None
    async with ingest_rig(db, tmp_path) as rig:
        detail = await refused(tls_hub(rig, broker, ca_file=ca_file), "certificate verify failed")
        assert f"{broker.host}:{broker.tls_port}" in detail
        assert ("system trust store" in detail) == (ca_file is None)


async def test_a_certificate_for_another_name_is_refused(
    db: Database, tmp_path: Path, pki: tuple[Authority, Authority], broker: MosquittoServer
) -> None:
    """The right CA, but the broker's certificate does not carry the name the hub checks."""
    async with ingest_rig(db, tmp_path) as rig:
        hub = tls_hub(rig, broker, ca_file=pki[0].ca_file, tls_server_name="mqtt.elsewhere.example")
        detail = await refused(hub, "certificate verify failed")
        assert "mqtt.elsewhere.example" in detail


async def test_a_broker_that_requires_a_client_certificate(
    db: Database, tmp_path: Path, pki: tuple[Authority, Authority], broker_pair: Pair, hub_pair: Pair
) -> None:
    """With HUB_MQTT_CERT_FILE and _KEY_FILE the hub ingests; without them the broker drops it."""
    with tls_broker(tmp_path / "mosq", pki, broker_pair, require_certificate=True) as server:
        async with ingest_rig(db, tmp_path) as rig:
            await rig.enroll("C-1")
            detail = await refused(tls_hub(rig, server, ca_file=pki[0].ca_file), "client certificate")
            assert f"{server.host}:{server.tls_port}" in detail
            hub = tls_hub(rig, server, ca_file=pki[0].ca_file, cert_file=hub_pair.cert, key_file=hub_pair.key)
            await hub.start()
            try:
                await eventually(hub.connected.is_set, "the subscription with a client certificate")
                await uplink_arrives(rig, server, "C-1")
            finally:
                await hub.stop()


def test_tls_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, pki: tuple[Authority, Authority], hub_pair: Pair
) -> None:
    """HUB_MQTT_TLS, _CA_FILE, _CERT_FILE, _KEY_FILE and _TLS_SERVER_NAME reach MqttSettings."""
    env = {
        "HUB_MQTT_TLS": "true",
        "HUB_MQTT_CA_FILE": str(pki[0].ca_file),
        "HUB_MQTT_CERT_FILE": str(hub_pair.cert),
        "HUB_MQTT_KEY_FILE": str(hub_pair.key),
        "HUB_MQTT_TLS_SERVER_NAME": "mqtt.street.example",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    mqtt = load_settings(None).mqtt
    assert mqtt.tls and mqtt.ca_file == pki[0].ca_file and mqtt.tls_server_name == "mqtt.street.example"
    assert (mqtt.cert_file, mqtt.key_file) == (hub_pair.cert, hub_pair.key)


# Each wrong TLS setting: the files given (by role), the setting named, a fragment of the message.
WRONG = [
    pytest.param({"cert_file": "cert"}, "HUB_MQTT_KEY_FILE", "set both or neither", id="cert without key"),
    pytest.param({"key_file": "key"}, "HUB_MQTT_KEY_FILE", "set both or neither", id="key without cert"),
    pytest.param({"ca_file": "missing"}, "HUB_MQTT_CA_FILE", "cannot read", id="missing CA file"),
    pytest.param({"ca_file": "garbage"}, "HUB_MQTT_CA_FILE", "no PEM certificate", id="CA not PEM"),
    pytest.param(
        {"cert_file": "garbage", "key_file": "key"}, "HUB_MQTT_CERT_FILE", "no PEM", id="cert not PEM"
    ),
    pytest.param(
        {"cert_file": "cert", "key_file": "garbage"},
        "HUB_MQTT_KEY_FILE",
        "no PEM private key",
        id="key not PEM",
    ),
    pytest.param(
        {"cert_file": "cert", "key_file": "encrypted key"},
        "HUB_MQTT_KEY_FILE",
        "the key is encrypted",
        id="encrypted key",
    ),
    pytest.param(
        {"cert_file": "cert", "key_file": "other key"},
        "HUB_MQTT_KEY_FILE",
        "is not the key",
        id="key mismatch",
    ),
]


@pytest.mark.parametrize(("given", "setting", "fragment"), WRONG)
def test_a_wrong_tls_setting_is_one_config_error_naming_it(
    tmp_path: Path,
    pki: tuple[Authority, Authority],
    hub_pair: Pair,
    given: dict[str, str],
    setting: str,
    fragment: str,
) -> None:
    """Files are loaded with the settings, so `iothub serve` stops at once with the setting's name."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    files = {
        "cert": hub_pair.cert,
        "key": hub_pair.key,
        "other key": pki[1].pair.key,
        "encrypted key": encrypted_copy(hub_pair.key, tmp_path / "encrypted.key"),
        "missing": tmp_path / "nope.crt",
        "garbage": garbage,
    }
    overrides = {name: files[role] for name, role in given.items()}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, mqtt={"mode": "external", "tls": True, **overrides})
    assert caught.value.setting == setting and fragment in caught.value.message


def test_a_file_gone_since_the_start_is_a_transport_error(
    tmp_path: Path, pki: tuple[Authority, Authority]
) -> None:
    """The context is built at the first connect: a CA file removed meanwhile says so (and is retried)."""
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(pki[0].ca_file.read_bytes())
    settings = MqttSettings(mode="external", tls=True, ca_file=ca_file)
    ca_file.unlink()
    with pytest.raises(TransportError) as caught:
        broker_tls(settings)
    assert caught.value.message.startswith("HUB_MQTT_CA_FILE: cannot load")


def test_tls_files_without_tls_are_refused(pki: tuple[Authority, Authority]) -> None:
    """A CA file with HUB_MQTT_TLS false would otherwise mean a connection in the clear."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, mqtt={"mode": "external", "ca_file": pki[0].ca_file})
    assert caught.value.setting == "HUB_MQTT_CA_FILE" and "HUB_MQTT_TLS" in caught.value.message


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path: Path, hub_pair: Pair) -> None:
    """`iothub config show` (like serve) with a certificate but no key: one line, exit status 2."""
    env = tmp_path / ".env"
    env.write_text(f"HUB_MQTT_MODE=external\nHUB_MQTT_TLS=true\nHUB_MQTT_CERT_FILE={hub_pair.cert}\n")
    result = CliRunner().invoke(app, ["config", "show", "--env-file", str(env)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "iothub: error: HUB_MQTT_KEY_FILE: not set, but HUB_MQTT_CERT_FILE is: set both or neither"
    ]


def test_env_example_names_real_mqtt_settings() -> None:
    """The (commented) external-broker lines of .env.example name MqttSettings fields."""
    text = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    names = set(re.findall(r"^# (HUB_MQTT_[A-Z_]+)=", text, re.M))
    assert {"HUB_MQTT_TLS", "HUB_MQTT_CA_FILE", "HUB_MQTT_TLS_SERVER_NAME"} <= names
    for name in names:
        assert name.removeprefix("HUB_MQTT_").lower() in MqttSettings.model_fields, name
