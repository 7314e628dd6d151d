"""Pytest fixtures for the real servers; loaded with ``pytest_plugins = ["tests.servers.fixtures"]``."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from .influxdb import InfluxServer
from .mosquitto import MosquittoServer
from .nats import NatsCluster, NatsNode
from .postgres import PostgresDatabase
from .prism import PrismServer
from .rabbitmq import RabbitMqServer

__all__ = [
    "influx_database",
    "influxdb",
    "mosquitto",
    "nats_cluster",
    "nats_mqtt",
    "postgres_database",
    "postgres_url",
    "prism",
    "rabbitmq",
]


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxServer]:
    """Run one InfluxDB for the session (no auth); tests may stop and start it again."""
    server = InfluxServer(tmp_path_factory.mktemp("influxdb"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def influx_database(influxdb: InfluxServer) -> str:
    """Create a fresh database on the session InfluxDB (restarting it if a test left it stopped)."""
    influxdb.start()
    name = f"test_{secrets.token_hex(6)}"
    influxdb.create_database(name)
    return name


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """Run one anonymous Mosquitto for the session."""
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    """Three NATS nodes with MQTT listeners, one JetStream cluster; a test may kill nodes (each test its own)."""
    # A QoS 1 message delivered to a client that died is sent again after ack_wait: short here.
    with NatsCluster(tmp_path_factory.mktemp("nats"), ack_wait="3s") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    """Create a throw-away database ``iothub_<random>`` on the local PostgreSQL; drop it at session end."""
    with PostgresDatabase() as database:
        yield database


@pytest.fixture(scope="session")
def postgres_url(postgres_database: PostgresDatabase) -> str:
    """Return the SQLAlchemy asyncpg URL of the session's throw-away database."""
    return postgres_database.asyncpg_url


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrismServer]:
    """Run one Prism serving Twilio's OpenAPI spec for the session."""
    server = PrismServer(tmp_path_factory.mktemp("prism"))
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def nats_mqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsNode]:
    """Run one NATS server (JetStream, an MQTT listener) for the session."""
    node = NatsNode(tmp_path_factory.mktemp("nats") / "n1", "n1")
    node.configure([], 1)
    try:
        node.start()
        yield node
    finally:
        node.close()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMqServer]:
    """Run one private RabbitMQ node with its MQTT plug-in for the session (it takes seconds to start)."""
    server = RabbitMqServer(tmp_path_factory.mktemp("rabbitmq"))
    try:
        server.start()
        yield server
    finally:
        server.close()
