"""The State Council's yearly holiday notice as a data file: its schema, the shipped notices, reading one file."""

from __future__ import annotations

from datetime import date
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hub.errors import ConfigError

__all__ = [
    "NOTICES_SETTING",
    "SHIPPED_NOTICES",
    "CalendarFile",
    "CalendarYear",
    "Festival",
    "read_notice_file",
    "shipped_notices",
]

# The setting that lists the operator's notice files; every error about a notice file names it.
NOTICES_SETTING = "HUB_ALERTS_WORKDAY_NOTICES"
# One file per notice, in `alerts/data/`: 2024 (published 2023-10-25), 2025 (2024-11-12), 2026 (2025-11-04).
SHIPPED_NOTICES = ("cn_notice_2024.yaml", "cn_notice_2025.yaml", "cn_notice_2026.yaml")


class Festival(BaseModel):
    """One holiday of a notice: the days off and the weekend days worked in exchange."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)
    rest_days: tuple[date, ...] = Field(min_length=1)
    makeup_workdays: tuple[date, ...] = ()


class CalendarYear(BaseModel):
    """The State Council's arrangement for one year."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    notice: str = ""
    published: date | None = None
    festivals: tuple[Festival, ...] = Field(min_length=1)


class CalendarFile(BaseModel):
    """The shape of every notice file (shipped or the operator's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    version: Literal[1] = 1
    years: dict[int, CalendarYear] = Field(min_length=1)


def shipped_notices() -> list[CalendarFile]:
    """The notices shipped with the hub (2024-2026), oldest first."""
    out = []
    for name in SHIPPED_NOTICES:
        source = resources.files("alerts.data").joinpath(name)
        out.append(parse_notice(source.read_text(encoding="utf-8"), f"alerts/data/{name}", NOTICES_SETTING))
    return out


def read_notice_file(path: Path | str, setting: str = NOTICES_SETTING) -> CalendarFile:
    """Read and validate one notice file (blocking: call at start, not in the loop)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(setting, f"cannot read {path}: {reason}") from exc
    return parse_notice(text, str(path), setting)


def parse_notice(text: str, origin: str, setting: str = NOTICES_SETTING) -> CalendarFile:
    """Validate the text of one notice file; ConfigError naming the setting and the file otherwise."""
    try:
        return CalendarFile.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise ConfigError(setting, f"{origin} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise ConfigError(
            setting, f"{origin} does not match the notice schema: {where}: {first['msg']}"
        ) from exc
