"""The `iothub` command line."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from hub import __version__
from hub.cli_devices import devices_app, labels
from hub.cli_keys import keys_app
from hub.cli_mosquitto import mosquitto_app
from hub.cli_simulate import simulate
from hub.config import Settings, load_settings
from hub.errors import ConfigError, HubError, StartupError
from hub.logmask import Masker, install_mask, masked

__all__ = ["app", "main"]

app = typer.Typer(help="IoT device-management and alerting hub.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Settings.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
app.add_typer(devices_app, name="devices")
app.add_typer(mosquitto_app, name="mosquitto")
app.command("labels")(labels)
app.command("simulate")(simulate)

EnvFile = Annotated[Path, typer.Option("--env-file", help="Settings file read before HUB_* variables.")]


def _settings(env_file: Path, **overrides: object) -> Settings:
    settings = load_settings(env_file, **overrides)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.log_level != "debug":
        # Their INFO lines are about their own internals, not the hub's work.
        for noisy in ("alembic", "transitions", "amqtt", "aiocoap"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    # Every record of every library passes the root handler: no secret reaches the log at any level.
    install_mask(Masker.from_settings(settings))
    return settings


def demo_overrides(var_dir: Path) -> dict[str, object]:
    """Embedded defaults for the demo: SQLite, embedded broker, console notifier, any free port."""
    return {
        "mode": "development",
        "var_dir": var_dir,
        "database": {"url": f"sqlite+aiosqlite:///{var_dir / 'hub.db'}"},
        "mqtt": {"mode": "embedded", "port_fallback": True},
        "coap": {"port_fallback": True},
        "telemetry": {"backend": "sqlite"},
        "web": {"port_fallback": True},
        "simulate": {"enabled": True},
    }


async def _serve(settings: Settings) -> None:
    import uvicorn

    from hub.app import build_hub, create_app
    from hub.http_server import HubServer
    from hub.netutil import bind_tcp

    preflight_ports(settings)
    hub = build_hub(settings)
    sock = bind_tcp(
        settings.web.host, settings.web.port, fallback=settings.web.port_fallback, setting="HUB_WEB_PORT"
    )
    try:
        await hub.start()
        # Everything built so far lives as long as the process: keep it out of the collector's scans.
        # A full collection over the ~190,000 start-up objects took 150-230 ms, the alert path's worst
        # tail (docs/benchmarks.md, alert latency); frozen, 9 ms. The process is ours, not a library's.
        gc.collect()
        gc.freeze()
        host, port = sock.getsockname()[:2]
        typer.echo(f"iothub {__version__}: HTTP on http://{host}:{port}", err=False)
        for name, where in hub.listening.items():
            typer.echo(f"iothub: {name} on {where}")
        sys.stdout.flush()
        config = uvicorn.Config(
            create_app(settings, hub),
            log_level="warning",
            lifespan="on",
            access_log=False,
            # A backstop: a response still open this long after a stop began is cancelled.
            timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
            # uvicorn's records go to the root handler too, through the secret mask.
            log_config=None,
        )
        await HubServer(config, hub.ingest.bus).serve(sockets=[sock])
    finally:
        await hub.stop()
        sock.close()
    typer.echo("iothub: stopped")


def preflight_ports(settings: Settings) -> None:
    """Refuse busy fixed ports before anything starts, so the error is the only line printed."""
    import socket

    from hub.netutil import port_is_free

    checks = [
        (
            "HUB_MQTT_PORT",
            settings.mqtt.host,
            settings.mqtt.port,
            settings.mqtt.port_fallback,
            socket.SOCK_STREAM,
        )
    ]
    if settings.mqtt.mode != "embedded":
        checks.clear()
    if settings.coap.enabled:
        checks.append(
            (
                "HUB_COAP_PORT",
                settings.coap.host,
                settings.coap.port,
                settings.coap.port_fallback,
                socket.SOCK_DGRAM,
            )
        )
    for setting, host, port, fallback, kind in checks:
        if port and not fallback and not port_is_free(host, port, kind):
            raise ConfigError(setting, f"port {port} on {host} is in use")


def _run(coro_factory: object) -> None:
    """Run a coroutine; turn the hub's configuration errors into one line and exit status 2."""
    try:
        asyncio.run(coro_factory)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    except (ConfigError, StartupError) as exc:
        typer.echo(f"iothub: error: {masked(exc.message)}", err=True)
        raise typer.Exit(2) from None
    except HubError as exc:
        typer.echo(f"iothub: error: {masked(exc.message)}", err=True)
        raise typer.Exit(1) from None


def _load(env_file: Path, **overrides: object) -> Settings:
    try:
        return _settings(env_file, **overrides)
    except ConfigError as exc:
        typer.echo(f"iothub: error: {masked(exc.message)}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(env_file: EnvFile = Path(".env")) -> None:
    """Run the hub with the configured settings."""
    _run(_serve(_load(env_file)))


@app.command()
def demo(
    env_file: EnvFile = Path(".env"),
    var_dir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path("var/demo"),
) -> None:
    """Run the hub on embedded defaults (SQLite, embedded broker, console notifier)."""
    _run(_serve(_load(env_file, **demo_overrides(var_dir))))


@db_app.command("upgrade")
def db_upgrade(env_file: EnvFile = Path(".env"), revision: str = "head") -> None:
    """Bring the database schema up to date."""
    from hub.db import Database

    settings = _load(env_file)

    async def upgrade() -> None:
        db = Database(settings.database)
        await db.start(migrate=False)
        try:
            await db.upgrade(revision)
        finally:
            await db.stop()
        typer.echo(f"database {db.safe_url} upgraded to {revision}")

    _run(upgrade())


@config_app.command("show")
def config_show(env_file: EnvFile = Path(".env")) -> None:
    """Print the effective settings, secrets masked (also passwords inside URLs)."""
    settings = _load(env_file)
    shown = Masker.from_settings(settings).walk(settings.model_dump(mode="json"))
    typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))


@app.command()
def version() -> None:
    """Print the hub's version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point of the `iothub` script."""
    app()
