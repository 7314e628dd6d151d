"""Every setting takes the values its docs show, typed as an operator types them in .env."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from hub.config import Settings, load_settings
from hub.errors import ConfigError
from tests.ingest.test_mqtt_tls_kit import make_authority

ROOT = Path(__file__).resolve().parents[2]
# `HUB_X=value` in backticks anywhere in the docs; whole lines in .env.example (also commented out).
_QUOTED = re.compile(r"`(HUB_[A-Z0-9_]+=[^`]*)`")
_LINE = re.compile(r"^#?\s*(HUB_[A-Z0-9_]+=.*)$")
_COMPOSE = re.compile(r"^\s+(HUB_[A-Z0-9_]+): (.*)$")
# Settings that take a file the operator brings: the docs' path is accepted as a path; the file is not here.
FILE_SETTINGS = ("HUB_MQTT_CA_FILE", "HUB_MQTT_CERT_FILE", "HUB_MQTT_KEY_FILE")
# What a TLS setting needs beside it (a file setting with TLS off is refused on purpose).
COMPANIONS = {
    "HUB_MQTT_TLS_SERVER_NAME": "HUB_MQTT_TLS=true",
    **dict.fromkeys(FILE_SETTINGS, "HUB_MQTT_TLS=true"),
    # High availability shares one PostgreSQL and an external broker (refused without them, on purpose).
    "HUB_HA_ENABLED": "HUB_DATABASE_URL=postgresql+asyncpg://hub@db.example/hub\nHUB_MQTT_MODE=external",
}


def documented_examples() -> list[tuple[str, str]]:
    """(where, `HUB_X=value` line) for every example in README, docs/, .env.example and docker-compose.yml."""
    found: list[tuple[str, str]] = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            found += [(f"{doc.name}:{number}", m) for m in _QUOTED.findall(line)]
    for number, line in enumerate((ROOT / ".env.example").read_text(encoding="utf-8").splitlines(), 1):
        if match := _LINE.match(line):
            found.append((f".env.example:{number}", match.group(1)))
    for number, line in enumerate((ROOT / "docker-compose.yml").read_text(encoding="utf-8").splitlines(), 1):
        if (match := _COMPOSE.match(line)) and "${" not in match.group(2):
            found.append((f"docker-compose.yml:{number}", f"{match.group(1)}={match.group(2).strip()}"))
    return found


EXAMPLES = documented_examples()


def test_the_docs_have_examples() -> None:
    names = {line.split("=", 1)[0] for _, line in EXAMPLES}
    assert {"HUB_MQTT_MODE", "HUB_MQTT_TLS", "HUB_DATABASE_URL", "HUB_TWILIO", "HUB_MQTT_CA_FILE"} <= names


SINGLE = [(where, line) for where, line in EXAMPLES if line.split("=", 1)[0] not in FILE_SETTINGS]


@pytest.mark.parametrize(("where", "line"), SINGLE, ids=[f"{w}:{line}" for w, line in SINGLE])
def test_documented_example_is_accepted(tmp_path: Path, where: str, line: str) -> None:
    name, value = line.split("=", 1)
    lines = [line]
    if name in COMPANIONS:
        lines.insert(0, COMPANIONS[name])
    if name == "HUB_MODE" and value.strip("'\"").lower() == "production":
        lines.append("HUB_SECRET_KEY=a-real-secret-for-this-test")
    env = tmp_path / ".env"
    env.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_settings(env)


def test_env_example_tls_block_uncommented_is_accepted(tmp_path: Path) -> None:
    """The external-broker block of .env.example, uncommented, with its files where it says (under a temp root)."""
    block = [line for where, line in EXAMPLES if where.startswith(".env.example") and "_MQTT_" in line]
    assert {line.split("=", 1)[0] for line in block} >= set(FILE_SETTINGS)
    ca = make_authority(tmp_path / "ca", "docs")
    client = ca.issue("iothub", server=False)
    sources = {".crt": client.cert, ".key": client.key}
    lines = []
    for line in block:
        name, value = line.split("=", 1)
        if name in FILE_SETTINGS:
            target = tmp_path / value.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = ca.ca_file if name == "HUB_MQTT_CA_FILE" else sources[target.suffix]
            target.write_bytes(source.read_bytes())
            value = str(target)
        lines.append(f"{name}={value}")
    env = tmp_path / ".env"
    env.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(env)
    assert settings.mqtt.tls and settings.mqtt.mode == "external"
    assert settings.mqtt.key_file == tmp_path / "etc/iothub/mqtt-hub.key"


def _as_typed(value: Any) -> str | None:
    """A default as an operator would write it in .env; None when it is not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str | Path):
        return str(value)
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return None


def _defaults(model: BaseModel, prefix: str) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel) and prefix == "HUB_":
            out += _defaults(value, f"HUB_{name.upper()}_")
        elif (text := _as_typed(value)) is not None:
            out.append((f"{prefix}{name.upper()}", text, value))
    return out


DEFAULTS = _defaults(Settings(_env_file=None), "HUB_")  # type: ignore[call-arg]


def test_every_default_written_out_is_accepted(tmp_path: Path) -> None:
    """`HUB_MQTT_QOS=1` and every other default, typed out in .env, give the same settings back."""
    assert ("HUB_MQTT_QOS", "1", 1) in DEFAULTS
    env = tmp_path / ".env"
    env.write_text("".join(f"{name}={text}\n" for name, text, _ in DEFAULTS), encoding="utf-8")
    typed = load_settings(env)
    assert typed.model_dump() == Settings(_env_file=None).model_dump()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("line", "path", "expected"),
    [
        ("HUB_MQTT_QOS=0", ("mqtt", "qos"), 0),
        ("HUB_LOG_LEVEL=DEBUG", ("log_level",), "debug"),
        ("HUB_MODE=Development", ("mode",), "development"),
        ("HUB_TELEMETRY_BACKEND=InfluxDB", ("telemetry", "backend"), "influxdb"),
        ("HUB_MQTT_MODE=External ", ("mqtt", "mode"), "external"),
    ],
)
def test_words_are_read_as_operators_type_them(
    tmp_path: Path, line: str, path: tuple[str, ...], expected: Any
) -> None:
    env = tmp_path / ".env"
    env.write_text(line + "\n", encoding="utf-8")
    value: Any = load_settings(env)
    for part in path:
        value = getattr(value, part)
    assert value == expected


@pytest.mark.parametrize(
    ("line", "setting"), [("HUB_MQTT_QOS=2", "HUB_MQTT_QOS"), ("HUB_LOG_LEVEL=loud", "HUB_LOG_LEVEL")]
)
def test_wrong_values_are_still_refused_by_name(tmp_path: Path, line: str, setting: str) -> None:
    env = tmp_path / ".env"
    env.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.setting == setting
