"""TLS from the hub to an external MQTT broker: the client context, and what a failed connection says."""

from __future__ import annotations

import ssl

from hub.config import MqttSettings, refuse_key_password
from hub.errors import TransportError

__all__ = ["broker_tls", "tls_failure"]


def broker_tls(settings: MqttSettings) -> ssl.SSLContext:
    """The hub's TLS context for the broker: its CA (or the system's), the hub's certificate, names checked."""
    # HUB_MQTT_TLS_SERVER_NAME is not the context's: ExternalMqtt passes it as the connection's server_hostname.
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)  # None: the system trust store
    except OSError as exc:
        raise TransportError(f"HUB_MQTT_CA_FILE: cannot load {settings.ca_file}: {exc}") from exc
    if settings.cert_file is not None and settings.key_file is not None:
        try:
            context.load_cert_chain(settings.cert_file, settings.key_file, password=refuse_key_password)
        except (OSError, ValueError) as exc:
            where = f"{settings.cert_file} and {settings.key_file}"
            raise TransportError(f"HUB_MQTT_CERT_FILE, _KEY_FILE: cannot load {where}: {exc}") from exc
    return context


def tls_failure(exc: TransportError, settings: MqttSettings, address: str | None = None) -> str:
    """Say what went wrong on a TLS connection to ``address`` (host:port): the verification's reason, or what the broker did."""
    address = address or f"{settings.host}:{settings.port}"
    where = f"the MQTT broker at {address}"
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        trust = settings.ca_file or "the system trust store"
        return f"TLS to {where}: certificate verify failed: {cause.verify_message} (checked against {trust})"
    if isinstance(cause, ssl.SSLError):
        return f"TLS to {where} failed: {cause.reason or cause}"
    if address in exc.message:  # a CONNACK refusal, no CONNACK, a refused TCP connect: already said
        return exc.message
    # Lost after the handshake, before the CONNACK: Mosquitto just resets a client without a certificate.
    hint = "" if settings.cert_file else "; does it require a client certificate (HUB_MQTT_CERT_FILE)?"
    return f"TLS to {where}: connection lost before the CONNACK ({exc.message}){hint}"
