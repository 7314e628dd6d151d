"""Secrets stay out of output: every log record (the hub's and every library's), error detail and reason is masked.

Two nets: the exact values of the secret settings (and the passwords inside URL settings), and patterns that
give a secret away wherever it comes from — a URL's ``user:password@``, ``password=…``/``'psk': …`` pairs, a
bearer token, an API key ``hub_<id>_<secret>``. Device credentials are only caught by the patterns: amqtt's
debug log prints a client's ``mqtt://serial:password@host`` and its CONNECT packet.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, SecretStr

__all__ = ["MASK", "MaskFilter", "Masker", "install_mask", "masked"]

MASK = "***"
# Shorter values would mangle ordinary words; secrets that short are refused in production anyway.
MIN_SECRET = 4
_NAMES = r"password|passwd|pwd|secret|secret_key|secret_hex|master_secret|psk|psk_hex|token|auth_token|api_key|apikey"
_PATTERNS = (
    # scheme://user:password@host
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@'\"]*):([^\s@/'\"]+)@"), rf"\1:{MASK}@"),
    # password=…, 'password': '…', "psk": "…", password: … (reprs, JSON, query strings, YAML)
    (
        re.compile(rf"(?i)\b([A-Za-z0-9_-]*?(?:{_NAMES}))(['\"]?\s*[=:]\s*b?['\"]?)([^'\"\s,;)}}&\]]+)"),
        rf"\1\2{MASK}",
    ),
    # InfluxDB v1 query-string credentials: ?u=…&p=…
    (re.compile(r"([?&]p=)[^&\s'\"]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # An API key: its id may show, never its secret.
    (re.compile(r"\b(hub_[0-9a-f]{6,32})_[A-Za-z0-9_-]{8,}"), rf"\1_{MASK}"),
)


def _secrets_of(model: BaseModel) -> Iterator[str]:
    for name in type(model).model_fields:
        value: Any = getattr(model, name)
        if isinstance(value, SecretStr):
            yield value.get_secret_value()
        elif isinstance(value, BaseModel):
            yield from _secrets_of(value)
        elif isinstance(value, str) and "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                continue
            if password:
                yield password


class Masker:
    """Replace known secret values and secret-shaped text with ``***``."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        known = {v for v in values if len(v) >= MIN_SECRET}
        known |= {quote(v, safe="") for v in known}
        self.values = sorted(known, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: BaseModel) -> Masker:
        """A masker for every SecretStr of ``settings`` and every password inside one of its URLs."""
        return cls(_secrets_of(settings))

    def __call__(self, text: str) -> str:
        """``text`` with every secret masked."""
        for value in self.values:
            if value in text:
                text = text.replace(value, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def walk(self, data: Any) -> Any:
        """``data`` (JSON-like) with every string in it masked."""
        if isinstance(data, str):
            return self(data)
        if isinstance(data, dict):
            return {key: self.walk(value) for key, value in data.items()}
        if isinstance(data, list):
            return [self.walk(item) for item in data]
        return data


class MaskFilter(logging.Filter):
    """A handler filter that masks a record's message, arguments, traceback and stack before it is written."""

    def __init__(self, masker: Masker) -> None:
        super().__init__("iothub-mask")
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record in place; always keep it."""
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string: keep what can be shown
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self.masker(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.masker(record.exc_text)
        if record.stack_info:
            record.stack_info = self.masker(record.stack_info)
        return True


def masked(text: str) -> str:
    """``text`` through the mask installed on the root logger (the patterns alone when none is)."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, MaskFilter):
                return found.masker(text)
    return Masker()(text)


def install_mask(masker: Masker, logger: logging.Logger | None = None) -> None:
    """Put a MaskFilter on every handler of ``logger`` (the root logger), replacing one put there before."""
    for handler in (logger or logging.getLogger()).handlers:
        for old in [f for f in handler.filters if isinstance(f, MaskFilter)]:
            handler.removeFilter(old)
        handler.addFilter(MaskFilter(masker))
