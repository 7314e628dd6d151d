"""The hub's one Settings object, read from HUB_* variables and an optional .env file."""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerts.limits import NotifyPolicy
from hub.config_ha import HaSettings, ServerList, check_ha, parse_servers
from hub.telemetry.influx import InfluxStoreConfig

__all__ = [
    "PLACEHOLDER_SECRETS",
    "AlertsSettings",
    "CentralSettings",
    "CoapSettings",
    "DatabaseSettings",
    "GrafanaSettings",
    "HaSettings",
    "MqttSettings",
    "Settings",
    "SimulateSettings",
    "TelemetrySettings",
    "TwilioSettings",
    "WebSettings",
    "load_settings",
    "refuse_key_password",
]

# Secrets nobody should run a real deployment with.
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "changeme", "secret", "password", "admin"})
DB_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


def _folded(value: object) -> object:
    """A word as an operator may type it in .env (``INFO``, `` Production``): stripped, lower case."""
    return value.strip().lower() if isinstance(value, str) else value


# A choice among words, read case-insensitively.
Choice = BeforeValidator(_folded)


class _Section(BaseModel):
    model_config = {"extra": "forbid"}


class DatabaseSettings(_Section):
    """Where the registry, cases and outbox live."""

    url: str = "sqlite+aiosqlite:///./var/hub.db"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in DB_SCHEMES:
            raise ValueError(
                f"unsupported database URL scheme {scheme or value!r}; use one of "
                + ", ".join(f"{s}://" for s in DB_SCHEMES)
            )
        return value


class MqttSettings(_Section):
    """MQTT: the embedded amqtt broker, or a client of an external broker."""

    mode: Annotated[Literal["embedded", "external"], Choice] = "embedded"
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=0, le=65535)
    # Demo and development: take a free port when the configured one is busy.
    port_fallback: bool = False
    # A broker cluster (external mode): ``host:port,host:port``, tried in order; replaces host and port.
    servers: ServerList | None = None
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "iothub"
    shared_group: str | None = None
    # With shared_group: how long a probe may take to come back through the shared filter before the
    # broker is taken not to deliver $share subscriptions (docs/mqtt.md); longer while messages flow.
    shared_probe_timeout: float = Field(default=5.0, gt=0)
    # An int, not Literal[0, 1]: a literal takes no "1" from .env (pydantic compares literals strictly).
    qos: int = Field(default=1, ge=0, le=1)
    max_payload: int = Field(default=64 * 1024, gt=0)
    # The embedded broker's limits (docs/mqtt.md): a whole CONNECT within connect_timeout seconds of the
    # TCP connection; connections past max_connections closed at once. Keep the cap under `ulimit -n`.
    connect_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=10_000, gt=0)
    # TLS to the external broker. Each file is loaded here, so a bad one stops the start with its name.
    tls: bool = False
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # the hub's client certificate, with key_file: both or neither
    key_file: Path | None = Field(default=None, validate_default=True)
    tls_server_name: str | None = None  # the name the broker's certificate must carry, if not ``host``

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """The external brokers to connect to, in failover order."""
        return parse_servers(self.servers) if self.servers else [(self.host, self.port)]

    @field_validator("tls_server_name")
    @classmethod
    def _name_needs_tls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _needs_tls(info)
        return value

    @field_validator("ca_file", "cert_file")
    @classmethod
    def _certificate_loads(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None:
            _needs_tls(info)
            _load_pem(value, "certificate", lambda ctx: ctx.load_verify_locations(cafile=value))
        return value

    @field_validator("key_file")
    @classmethod
    def _key_matches(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        cert = info.data.get("cert_file")
        if value is None:
            if cert is not None:
                raise ValueError("not set, but HUB_MQTT_CERT_FILE is: set both or neither")
            return value
        _needs_tls(info)
        if cert is None:
            if "cert_file" in info.data:  # else the certificate's own error comes first
                raise ValueError("set without HUB_MQTT_CERT_FILE: set both or neither")
            return value
        _load_pem(
            value,
            "private key",
            lambda ctx: ctx.load_cert_chain(cert, value, password=refuse_key_password),
        )
        return value


def refuse_key_password() -> bytes:
    """Refuse an encrypted private key (OpenSSL would otherwise prompt on the terminal)."""
    raise ValueError("the key is encrypted; give an unencrypted key file")


def _needs_tls(info: ValidationInfo) -> None:
    if not info.data.get("tls", True):
        # Silently connecting in the clear would be the worse failure.
        raise ValueError("set, but HUB_MQTT_TLS is false: set HUB_MQTT_TLS=true to use it")


def _load_pem(path: Path, what: str, load: Callable[[ssl.SSLContext], None]) -> None:
    """Load a PEM file into a throw-away context; ValueError saying what is wrong with it."""
    try:
        load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"{path} is not the key of HUB_MQTT_CERT_FILE's certificate") from exc
        raise ValueError(f"no PEM {what} in {path} ({exc.reason or exc.strerror})") from exc
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror or exc})") from exc


class CoapSettings(_Section):
    """CoAP uplinks: DTLS-PSK and OSCORE, plain only on a private network."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=5683, ge=0, le=65535)
    port_fallback: bool = False
    allow_plain: bool = False


class TelemetrySettings(_Section):
    """Which telemetry store holds readings."""

    backend: Annotated[Literal["sqlite", "influxdb"], Choice] = "sqlite"
    sqlite_path: Path | None = None
    retention_days: int = Field(default=30, gt=0)


class TwilioSettings(_Section):
    """Twilio SMS and voice; unset means the console notifier."""

    account_sid: str | None = None
    auth_token: SecretStr | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    # Only tests point the SDK elsewhere (Prism).
    base_url: str | None = None
    # Rate limits, daily street budget, bundling and retries of the notifiers (alerts/limits.py).
    policy: NotifyPolicy = Field(default_factory=NotifyPolicy)

    @property
    def configured(self) -> bool:
        """Tell whether real Twilio credentials are set."""
        return bool(self.account_sid and self.auth_token)


class GrafanaSettings(_Section):
    """Grafana API, for annotations and dashboard upload."""

    url: str | None = None
    api_key: SecretStr | None = None


class CentralSettings(_Section):
    """The central governance platform the district pushes cases to."""

    url: str | None = None
    secret: SecretStr | None = None


class AlertsSettings(_Section):
    """The case side: the working-day calendar of SLA deadlines (alerts/workdays.py), retries of failed alerts."""

    # State Council holiday notices, one YAML file each, laid over the shipped 2024-2026 ones (a later file replaces
    # whole years); read and checked at start. In the environment: a JSON list or comma-separated paths.
    workday_notices: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    timezone: str = "Asia/Shanghai"
    # An alert the case path fails to handle: tried this many times in all, waits growing from the initial one
    # (jittered) up to the max, then parked (GET /api/v1/parked).
    retry_attempts: int = Field(default=5, ge=1)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=10.0, gt=0)

    @field_validator("workday_notices", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list of paths ({exc.msg} at character {exc.pos})") from exc
            return [part.strip() for part in text.split(",") if part.strip()]
        return value


class WebSettings(_Section):
    """The HTTP API and command-center page."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    port_fallback: bool = False
    public_base_url: str | None = None


class SimulateSettings(_Section):
    """The simulated fleet the demo runs inside the hub."""

    enabled: bool = False
    rate: float = Field(default=2.0, gt=0)
    communities: int = Field(default=2, ge=1)
    grids_per_community: int = Field(default=2, ge=1)
    buildings_per_grid: int = Field(default=2, ge=1)
    households_per_building: int = Field(default=4, ge=1)
    scenario_every: float = Field(default=120.0, ge=0)
    # Share of households whose smoke and door sensors speak CoAP (OSCORE), like NB-IoT devices.
    coap_share: float = Field(default=0.25, ge=0, le=1)


class Settings(BaseSettings):
    """Every setting of the hub; HUB_<SECTION>_<NAME>, e.g. HUB_DATABASE_URL."""

    model_config = SettingsConfigDict(
        env_prefix="HUB_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_ignore_empty=True,
        extra="ignore",
    )

    mode: Annotated[Literal["development", "production"], Choice] = "development"
    var_dir: Path = Path("var")
    log_level: Annotated[Literal["debug", "info", "warning", "error"], Choice] = "info"
    secret_key: SecretStr = SecretStr("changethis")
    shutdown_timeout: float = Field(default=5.0, gt=0)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    coap: CoapSettings = Field(default_factory=CoapSettings)
    influx: InfluxStoreConfig = Field(default_factory=InfluxStoreConfig)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    grafana: GrafanaSettings = Field(default_factory=GrafanaSettings)
    central: CentralSettings = Field(default_factory=CentralSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    simulate: SimulateSettings = Field(default_factory=SimulateSettings)
    ha: HaSettings = Field(default_factory=HaSettings)

    _ha_needs = field_validator("ha")(check_ha)

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.mode != "production":
            return self
        secrets: dict[str, SecretStr | None] = {
            "secret_key": self.secret_key,
            "twilio_auth_token": self.twilio.auth_token,
            "influx_password": self.influx.password,
            "influx_token": self.influx.token,
            "grafana_api_key": self.grafana.api_key,
            "central_secret": self.central.secret,
            "mqtt_password": self.mqtt.password,
        }
        for name, value in secrets.items():
            if value is not None and value.get_secret_value().strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError(f"HUB_{name.upper()} is a placeholder; set a real secret in production")
        return self

    @property
    def telemetry_sqlite_path(self) -> Path:
        """Where the embedded telemetry store keeps its file."""
        return self.telemetry.sqlite_path or self.var_dir / "telemetry.db"


def load_settings(env_file: Path | None = Path(".env"), **overrides: object) -> Settings:
    """Build Settings, turning every problem into one ConfigError that names the setting."""
    from pydantic import ValidationError

    from hub.errors import ConfigError

    if env_file is not None and env_file.exists():
        try:
            env_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(str(env_file), f"cannot read the .env file ({reason})") from exc
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type,call-arg]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first["loc"]]
        setting = "HUB_" + "_".join(loc).upper() if loc else "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(setting, message) from exc
