"""Claim codes: the format printed on a device's box, the claim URL in its QR, and the keyed hash kept."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.db.base import AuditEvent
from hub.errors import AuthError, InvalidInput

__all__ = [
    "CLAIM_ALPHABET",
    "CLAIM_FAILURE_ACTION",
    "ClaimLimit",
    "claim_url",
    "code_hash",
    "codes_equal",
    "ensure_claims_allowed",
    "new_claim_code",
    "normalize_code",
    "parse_claim_url",
    "refused",
]

# Crockford base32: no I, L, O or U, so a code read aloud or typed from a box survives.
CLAIM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_GROUPS, _GROUP_LEN = 3, 4  # 12 symbols = 60 random bits
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
CLAIM_FAILURE_ACTION = "device.claim_refused"
REFUSAL = "claim refused: the serial and code do not match an unclaimed device"


def new_claim_code() -> str:
    """Draw a random code such as ``7K3M-Q9XD-2HBT``."""
    chars = "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(_GROUPS * _GROUP_LEN))
    return "-".join(chars[i : i + _GROUP_LEN] for i in range(0, len(chars), _GROUP_LEN))


def normalize_code(code: str) -> str:
    """Upper-case, drop separators, and map look-alike letters to digits."""
    cleaned = "".join(ch for ch in code.upper() if ch not in "- _").translate(_CONFUSABLE)
    return cleaned


def code_hash(secret_key: str, serial: str, code: str) -> str:
    """HMAC-SHA256 of serial and code under the hub key.

    The code has 60 random bits, so a fast keyed hash suffices (a slow hash would make pre-registering
    a 100 k batch take minutes); binding the serial stops a code being replayed on another device.
    """
    message = f"{serial}\x00{normalize_code(code)}".encode()
    return hmac.new(secret_key.encode(), message, hashlib.sha256).hexdigest()


def codes_equal(stored: str | None, candidate: str) -> bool:
    """Compare hashes in constant time; a missing hash never matches."""
    return stored is not None and hmac.compare_digest(stored, candidate)


def claim_url(base_url: str, serial: str, code: str) -> str:
    """The URL printed as the box's QR code."""
    return f"{base_url.rstrip('/')}/claim/{quote(serial, safe='')}?c={quote(code, safe='-')}"


def parse_claim_url(url: str) -> tuple[str, str]:
    """Take serial and code out of a scanned claim URL."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    codes = parse_qs(parts.query).get("c", [])
    if len(segments) < 2 or segments[-2] != "claim" or not codes:
        raise InvalidInput("not a claim URL: expected <base>/claim/<serial>?c=<code>", field="url")
    from urllib.parse import unquote

    return unquote(segments[-1]), codes[0]


def refused() -> AuthError:
    """The single answer for an unknown serial, a wrong code and a used code alike."""
    return AuthError(REFUSAL)


@dataclass(frozen=True, slots=True)
class ClaimLimit:
    """At most ``failures`` refused claims per principal within ``window``."""

    failures: int = 5
    window: dt.timedelta = dt.timedelta(minutes=15)


async def ensure_claims_allowed(
    session: AsyncSession, actor: str, now: dt.datetime, limit: ClaimLimit
) -> None:
    """Refuse with 429 once a principal has had too many refused claims recently.

    Refusals are counted in the audit log, so the limit holds across restarts and hub workers.
    """
    since = now - limit.window
    count = await session.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == CLAIM_FAILURE_ACTION, AuditEvent.actor == actor, AuditEvent.at > since)
    )
    if (count or 0) >= limit.failures:
        from hub.errors import RateLimited

        raise RateLimited(
            f"too many refused claims; try again after {int(limit.window.total_seconds() // 60)} minutes",
            retry_after=limit.window.total_seconds(),
        )
