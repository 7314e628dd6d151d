"""Settings of high availability (an active and a standby hub on one PostgreSQL) and of a broker cluster's list."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, model_validator

if TYPE_CHECKING:
    from hub.config import DatabaseSettings, MqttSettings

__all__ = ["HaSettings", "ServerList", "check_ha", "parse_servers"]


def _default_node() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class HaSettings(BaseModel):
    """Active/standby: leadership is a PostgreSQL advisory lock held on a dedicated connection (docs/operations.md)."""

    model_config = {"extra": "forbid"}

    enabled: bool = False
    # The name this process shows as the lease holder (``/readyz``, pg_stat_activity.application_name).
    node: str = Field(default_factory=_default_node, min_length=1, max_length=40)
    # The fence: an active whose last successful heartbeat began this long ago stops consuming, and a node
    # that has just taken the lock waits this long before it starts. PostgreSQL also ends a lock session
    # that has said nothing for this long (idle_in_transaction_session_timeout).
    lease: float = Field(default=5.0, ge=1.0, le=120.0)
    # The active's heartbeat on its lock connection.
    renew: float = Field(default=1.0, gt=0.0, le=30.0)
    # How often a standby tries to take the lock.
    poll: float = Field(default=0.5, gt=0.0, le=30.0)

    @model_validator(mode="after")
    def _renew_within_lease(self) -> HaSettings:
        if self.renew * 3 > self.lease:
            raise ValueError(
                f"HUB_HA_RENEW ({self.renew:g} s) must be at most a third of HUB_HA_LEASE ({self.lease:g} s): "
                "a heartbeat or two may be late without the active giving up its lease"
            )
        return self


def parse_servers(value: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (a bare host means port 1883; ``[v6]:port`` for IPv6) as (host, port) pairs."""
    out: list[tuple[str, int]] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"empty entry in {value!r}; give host:port,host:port")
        host, port = item, "1883"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"{item!r} is not [address]:port")
                port = rest[1:]
        elif item.count(":") == 1:
            host, port = item.split(":")
        elif ":" in item:
            raise ValueError(f"{item!r}: write an IPv6 address as [address]:port")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not host:port with a port from 1 to 65535")
        if (host, int(port)) in out:
            raise ValueError(f"{item!r} is listed twice")
        out.append((host, int(port)))
    return out


def _servers(value: str) -> str:
    parse_servers(value)
    return value


# ``HUB_MQTT_SERVERS=host1:1883,host2:1883`` as an operator types it in .env, checked at load.
ServerList = Annotated[str, AfterValidator(_servers)]


def check_ha(cls: Any, ha: HaSettings, info: ValidationInfo) -> HaSettings:
    """Refuse HA where it cannot work: on SQLite (one box) or with the embedded broker (devices on one hub)."""
    if not ha.enabled:
        return ha
    database: DatabaseSettings | None = info.data.get("database")
    mqtt: MqttSettings | None = info.data.get("mqtt")
    if database is not None and not database.url.startswith("postgresql"):
        raise ValueError(
            "HUB_HA_ENABLED needs PostgreSQL in HUB_DATABASE_URL (both hubs share it); with SQLite the hub is "
            "a single box and high availability is off"
        )
    if mqtt is not None and mqtt.mode != "external":
        raise ValueError(
            "HUB_HA_ENABLED needs HUB_MQTT_MODE=external: devices must reach a broker (cluster), not one hub"
        )
    return ha
