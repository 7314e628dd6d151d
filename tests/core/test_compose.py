"""docker-compose.yml and the Dockerfile name only things that exist (no Docker engine runs here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(:?[?-])?([^}]*)\}")
HA_HUBS = ("hub-a", "hub-b")
NATS = ("nats-1", "nats-2", "nats-3")


def profile(name: str) -> set[str]:
    """The services of a profile ("" for those that run without one)."""
    return {s for s, spec in SERVICES.items() if name in spec.get("profiles", [""])}


def test_expected_services_with_healthchecks() -> None:
    assert profile("") == {"hub", "influxdb", "mosquitto", "grafana"}
    assert profile("ha") == {"postgres", *NATS, *HA_HUBS}
    for name in ("influxdb", "mosquitto", "grafana", "postgres", *NATS):
        assert "healthcheck" in SERVICES[name], name
    for name, service in SERVICES.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            assert cond["condition"] == "service_healthy"
            assert "healthcheck" in SERVICES[dep]
    assert SERVICES["influxdb"]["image"].startswith("influxdb:1.8")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_mounted_paths_and_volumes_exist(name: str) -> None:
    for volume in SERVICES[name].get("volumes", []):
        source = volume.split(":", 1)[0]
        if source.startswith("."):
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"
        else:
            assert source in COMPOSE["volumes"], f"{name} uses undeclared volume {source}"
    build = SERVICES[name].get("build")
    if build:
        assert (ROOT / build / "Dockerfile").exists()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_ports_are_well_formed_and_unique(name: str) -> None:
    for port in SERVICES[name].get("ports", []):
        assert re.fullmatch(r"\d{2,5}:\d{2,5}(/udp)?", port), port
    host_ports = [
        p.split(":")[0] + p[p.find("/") :] * ("/" in p) for s in SERVICES.values() for p in s.get("ports", [])
    ]
    assert len(host_ports) == len(set(host_ports))


def test_required_secrets_are_documented_and_enforced() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    names = {m.group(1): m.group(2) for m in VARIABLE.finditer(text)}
    assert {"HUB_SECRET_KEY", "INFLUXDB_ADMIN_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= set(names)
    for var, how in names.items():
        assert re.search(rf"^{var}=", example, re.M), f"{var} missing from .env.example"
        if ("SECRET" in var or "PASSWORD" in var) and not var.startswith("TWILIO"):
            assert how == ":?", f"{var} must be required with ${{{var}:?...}}"


@pytest.mark.parametrize("hub", ["hub", *HA_HUBS])
def test_hub_environment_names_real_settings(hub: str) -> None:
    """Every HUB_* variable given to a hub is read by Settings (a typo would be silently ignored)."""
    env = {k: "x" for k in SERVICES[hub]["environment"]}
    fields = Settings.model_fields
    for key in env:
        assert key.startswith("HUB_"), key
        section, _, rest = key.removeprefix("HUB_").lower().partition("_")
        if key.removeprefix("HUB_").lower() in fields:
            continue
        assert section in fields, key
        sub = fields[section].annotation
        assert rest in sub.model_fields, key  # type: ignore[union-attr]


def test_grafana_provisioning_points_at_influxdb() -> None:
    ds = yaml.safe_load((ROOT / "grafana/provisioning/datasources/influxdb.yaml").read_text())["datasources"][
        0
    ]
    assert ds["type"] == "influxdb" and ds["url"] == "http://influxdb:8086"
    assert ds["jsonData"]["dbName"] == SERVICES["influxdb"]["environment"]["INFLUXDB_DB"]
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/iothub.yaml").read_text())[
        "providers"
    ]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["grafana"]["volumes"] if v.startswith(".")}
    assert providers[0]["options"]["path"] in mounted
    assert list((ROOT / mounted[providers[0]["options"]["path"]]).glob("*.json"))


def test_dockerfile_copies_existing_paths() -> None:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src


def _resolved(env: dict[str, str]) -> dict[str, str]:
    """The environment with every ${VAR...} replaced by a stand-in value."""
    return {k: VARIABLE.sub("stand-in-secret-value", str(v)) for k, v in env.items()}


def test_ha_hubs_share_one_session_and_load_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both HA hubs: PostgreSQL, every NATS node, one client id, their own node name; Settings accept them."""
    envs = [_resolved(SERVICES[hub]["environment"]) for hub in HA_HUBS]
    assert envs[0]["HUB_MQTT_CLIENT_ID"] == envs[1]["HUB_MQTT_CLIENT_ID"]
    assert {e["HUB_HA_NODE"] for e in envs} == set(HA_HUBS)
    for hub, env in zip(HA_HUBS, envs, strict=True):
        assert SERVICES[hub]["restart"] == "unless-stopped", "a hub that lost its lease must come back"
        assert set(SERVICES[hub]["depends_on"]) == {"postgres", "influxdb", *NATS}
        for key in [k for k in os.environ if k.startswith("HUB_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(None)
        assert settings.ha.enabled and settings.database.url.startswith("postgresql+asyncpg://")
        assert settings.mqtt.brokers == [(name, 1883) for name in NATS]


@pytest.mark.parametrize("name", NATS)
def test_nats_nodes_load_their_config(name: str, tmp_path: Path) -> None:
    """Each node mounts the one config, its own store, and nats-server itself accepts the file for it."""
    spec = SERVICES[name]
    assert spec["environment"]["NATS_NAME"] == name
    assert f"./deploy/nats/nats.conf:{spec['command'][1]}:ro" in spec["volumes"]
    assert f"{name}-data:/data" in spec["volumes"]
    text = (ROOT / "deploy/nats/nats.conf").read_text()
    assert all(f"nats-route://{node}:6222" in text for node in NATS)
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    done = subprocess.run(
        [binary, "-t", "-c", str(ROOT / "deploy/nats/nats.conf")],
        env={"NATS_NAME": name, "PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0 and "is valid" in done.stdout + done.stderr, done.stderr
