"""The Twilio SDK's async client, counted per channel, and its errors mapped to NotifierError."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from hub.config import TwilioSettings
from hub.errors import ConfigError, NotifierError

__all__ = ["CountingHttpClient", "close_client", "make_client", "twilio_errors", "warm_client"]

OnRequest = Callable[[str], None]


def _channel_of(url: str) -> str:
    if url.endswith("/Messages.json"):
        return "sms"
    if url.endswith("/Calls.json"):
        return "voice"
    return "other"


class CountingHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The SDK's aiohttp client, telling ``on_request`` of every request as it leaves (metrics)."""

    def __init__(self, on_request: OnRequest, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._on_request = on_request

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Count the request (by channel), then send it."""
        if method.upper() == "POST":
            self._on_request(_channel_of(url))
        if auth is not None:  # aiohttp deprecates BasicAuth objects, which the SDK would build
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        response: Response = await super().request(
            method, url, params, data, headers, None, timeout, allow_redirects
        )
        return response


def make_client(settings: TwilioSettings, on_request: OnRequest, timeout: float) -> Client:
    """A Twilio REST client on the counting async HTTP client; ``base_url`` only for tests (Prism)."""
    if not settings.account_sid or settings.auth_token is None:
        raise ConfigError("HUB_TWILIO_ACCOUNT_SID", "Twilio channels need an account SID and auth token")
    http = CountingHttpClient(on_request, timeout=timeout)
    client = Client(settings.account_sid, settings.auth_token.get_secret_value(), http_client=http)
    if settings.base_url:
        client.api.base_url = settings.base_url.rstrip("/")
    return client


async def warm_client(client: Client) -> None:
    """Read the account once: DNS, TCP and TLS to Twilio and the SDK's lazy parts are ready for an alarm.

    Also checks the credentials at start (a refusal is logged by the caller, nothing else happens).
    """
    with twilio_errors("warm-up"):
        await client.api.v2010.accounts(client.account_sid).fetch_async()


async def close_client(client: Client) -> None:
    """Close the client's HTTP session."""
    http: Any = client.http_client
    await http.close()


@contextmanager
def twilio_errors(what: str) -> Iterator[None]:
    """Map the SDK's and aiohttp's errors: 5xx, 429, timeouts and connection errors are retryable."""
    try:
        yield
    except TwilioRestException as exc:
        retryable = exc.status >= 500 or exc.status == 429
        detail = f"{what}: Twilio answered {exc.status} (code {exc.code}): {exc.msg}"
        raise NotifierError(detail, retryable=retryable) from exc
    except TimeoutError as exc:
        raise NotifierError(f"{what}: Twilio did not answer in time", retryable=True) from exc
    except aiohttp.ClientError as exc:
        raise NotifierError(f"{what}: {exc.__class__.__name__}: {exc}", retryable=True) from exc
    except TwilioException as exc:
        raise NotifierError(f"{what}: {exc}", retryable=False) from exc
