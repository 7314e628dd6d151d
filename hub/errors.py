"""The hub's one exception tree.

HubError
├── ConfigError              a setting is missing or wrong (CLI exits 2 with one line)
├── StartupError             a component could not start (port in use, server unreachable)
├── DecodeError              a payload could not be understood (reason is a short key)
│   └── ValidationFailed     decoded, but a value is out of range or of the wrong type
├── AuthError                credentials missing, wrong or revoked
│   └── Forbidden            authenticated, but not allowed to do this
├── NotFound                 a referenced object does not exist
├── Conflict                 the object exists already / the state does not allow it
├── InvalidInput             a request is well-formed but its content is wrong (field named)
├── RateLimited              too many attempts; try again later (``retry_after`` seconds)
├── TransportError           a broker, CoAP or HTTP peer failed
├── StoreError               the telemetry store or database failed
│   └── StoreUnavailable     it is down: retry later (spool)
└── NotifierError            a notification could not be sent (``retryable`` says if a retry makes sense)

Library errors are translated at the boundary with ``raise ... from exc``; the API maps
each class to one HTTP status in ``hub.api.problems``.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "Conflict",
    "DecodeError",
    "Forbidden",
    "HubError",
    "InvalidInput",
    "NotFound",
    "NotifierError",
    "RateLimited",
    "StartupError",
    "StoreError",
    "StoreUnavailable",
    "TransportError",
    "ValidationFailed",
]


class HubError(Exception):
    """Base of every error the hub raises on purpose."""

    status = 500
    key = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ConfigError(HubError):
    """A setting is missing or has a wrong value."""

    key = "config"

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}", field=setting)
        self.setting = setting


class StartupError(HubError):
    """A component could not start."""

    status = 503
    key = "startup"


class DecodeError(HubError):
    """A payload could not be decoded; ``reason`` is a short metric-friendly key."""

    status = 400
    key = "decode"

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


class ValidationFailed(DecodeError):
    """A decoded value is out of range or of the wrong type."""


class AuthError(HubError):
    """Credentials are missing, wrong or revoked."""

    status = 401
    key = "unauthorized"


class Forbidden(AuthError):
    """The caller is known but may not do this."""

    status = 403
    key = "forbidden"


class NotFound(HubError):
    """A referenced object does not exist."""

    status = 404
    key = "not_found"


class Conflict(HubError):
    """The object exists already, or its state does not allow the change."""

    status = 409
    key = "conflict"


class InvalidInput(HubError):
    """The request's content is wrong; ``field`` names the culprit."""

    status = 422
    key = "invalid"


class RateLimited(HubError):
    """Too many attempts in a window; ``retry_after`` says when to try again."""

    status = 429
    key = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransportError(HubError):
    """A broker, CoAP or HTTP peer failed."""

    status = 502
    key = "transport"


class StoreError(HubError):
    """The telemetry store or database failed."""

    status = 500
    key = "store"


class StoreUnavailable(StoreError):
    """The store is down; the caller should keep the data and retry later."""

    status = 503
    key = "store_unavailable"


class NotifierError(HubError):
    """A notification could not be sent."""

    status = 502
    key = "notifier"

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable
