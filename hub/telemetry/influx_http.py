"""InfluxDB v1 HTTP API over httpx: line protocol to ``/write``, InfluxQL to ``/query``."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import httpx

from hub.errors import AuthError, InvalidInput, StoreError, StoreUnavailable
from hub.telemetry.base import Sample

__all__ = ["InfluxHTTP", "Outcome", "WriteResult", "quote_ident", "quote_string", "samples", "select_query"]


class Outcome(enum.Enum):
    """What a write answer means for the batch."""

    OK = "ok"
    RETRY = "retry"  # unreachable, timeout, 5xx, 429: spool and replay later
    AUTH = "auth"  # 401/403: the data is fine, the credentials are not; spool it
    NO_DATABASE = "no_database"  # 404: misconfigured, spool it
    BAD = "bad"  # other 4xx: some points are wrong; split to find them


@dataclass(frozen=True, slots=True)
class WriteResult:
    """A classified answer to one ``/write``."""

    outcome: Outcome
    status: int
    reason: str


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def select_query(
    device_id: str,
    metric: str,
    start: float,
    end: float,
    *,
    every: float | None,
    retention_policy: str | None,
) -> str:
    """InfluxQL for one device's metric in ``[start, end)`` over every kind; ``every`` → mean per bucket."""
    source = "/.*/"  # a device has one kind, and the caller need not know it
    if retention_policy:
        source = f"{quote_ident(retention_policy)}.{source}"
    where = f'"device_id" = {quote_string(device_id)} AND time >= {_ns(start)} AND time < {_ns(end)}'
    if every is None:
        return f"SELECT {quote_ident(metric)} FROM {source} WHERE {where}"
    if _ns(every) <= 0:
        raise InvalidInput("every must be positive", field="every")
    # fill(none) omits empty buckets; buckets align on the epoch, as SQLiteStore's do.
    group = f"GROUP BY time({_ns(every)}ns) fill(none)"
    return f"SELECT mean({quote_ident(metric)}) FROM {source} WHERE {where} {group}"


def samples(series: list[dict[str, Any]]) -> list[Sample]:
    """(epoch seconds, value) pairs of a two-column answer, merged over series and sorted."""
    out: list[Sample] = [
        (row[0] / 1e9, row[1]) for s in series for row in s.get("values", []) if row[1] is not None
    ]
    out.sort(key=lambda sample: sample[0])
    return out


def _error_text(resp: httpx.Response) -> str:
    """InfluxDB's own error message, falling back to the raw body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or resp.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return resp.text.strip()[:500]


class InfluxHTTP:
    """A thin client of one database; credentials are held only inside the httpx client."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.database = database
        self.retention_policy = retention_policy
        headers = {"Authorization": f"Token {token}"} if token else {}
        auth = httpx.BasicAuth(username, password or "") if username and not token else None
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers, auth=auth, timeout=timeout
        )
        self._write_params = {"db": database, "precision": "ns"}
        if retention_policy:
            self._write_params["rp"] = retention_policy

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def write(self, body: bytes) -> WriteResult:
        """POST one batch of lines and classify the answer (never raises for HTTP trouble)."""
        try:
            resp = await self._client.post(
                "/write",
                params=self._write_params,
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            return WriteResult(Outcome.RETRY, 0, f"{type(exc).__name__}: {exc}")
        status = resp.status_code
        if status < 300:
            return WriteResult(Outcome.OK, status, "")
        reason = _error_text(resp)
        if status in (401, 403):
            return WriteResult(Outcome.AUTH, status, reason)
        if status == 404:
            return WriteResult(Outcome.NO_DATABASE, status, reason)
        if status == 429 or status >= 500:
            return WriteResult(Outcome.RETRY, status, reason)
        return WriteResult(Outcome.BAD, status, reason)

    async def query(self, q: str, *, method: str = "GET") -> list[dict[str, Any]]:
        """Run one InfluxQL statement; return its series (epoch ns times)."""
        params = {"db": self.database, "q": q, "epoch": "ns"}
        try:
            resp = await self._client.request(method, "/query", params=params)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(f"InfluxDB unreachable: {exc}") from exc
        if resp.status_code in (401, 403):
            raise AuthError(f"InfluxDB refused the credentials ({resp.status_code}): {_error_text(resp)}")
        if resp.status_code >= 500:
            raise StoreUnavailable(f"InfluxDB answered {resp.status_code}: {_error_text(resp)}")
        if resp.status_code >= 300:
            raise StoreError(f"InfluxDB answered {resp.status_code}: {_error_text(resp)}")
        results = resp.json().get("results") or [{}]
        first = results[0]
        if "error" in first:
            raise StoreError(f"InfluxQL error: {first['error']}")
        series: list[dict[str, Any]] = first.get("series") or []
        return series

    async def ping(self) -> tuple[bool, str]:
        """Whether ``/ping`` answers, and the server version."""
        try:
            resp = await self._client.get("/ping")
        except httpx.HTTPError as exc:
            return False, f"unreachable: {type(exc).__name__}: {exc}"
        version = resp.headers.get("X-Influxdb-Version", "?")
        return resp.status_code in (200, 204), f"version {version}"
