"""Alert rules: pydantic models discriminated by ``type``, parsed from YAML or driver defaults."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.base import Correlate, Text
from drivers.rules import CATEGORIES
from hub.errors import InvalidInput

__all__ = [
    "OPS",
    "BatteryRule",
    "EventRule",
    "HouseholdRule",
    "InactivityRule",
    "OfflineRule",
    "Rule",
    "ThresholdRule",
    "Window",
    "load_yaml",
    "parse_rules",
]

Op = Literal["<", "<=", ">", ">="]
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_PATH = r"^/(?:[0-9]+/)+$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
Duration = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Level = Annotated[float, Field(allow_inf_nan=False)]


class _Rule(BaseModel):
    """What every rule has: a name, how bad, which case category, and where it applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=100, pattern=_NAME)
    severity: Literal["critical", "major", "minor", "info"]
    category: str
    kind: str | None = None
    place: str | None = Field(default=None, pattern=_PATH, description="a place subtree, e.g. /1/5/")
    device: str | None = Field(default=None, min_length=1, description="one device's serial")
    enabled: bool = True
    description: str = ""
    # What the alert says to people, {"zh-CN": …, "en": …}; without it, the event's or one made from the rule.
    text: dict[str, str] | None = None
    # "building": alerts of one building fold into one case; "none": each its own; unset: the event's, or the
    # category's (alerts/data/categories.yaml).
    correlate: Correlate | None = None

    @field_validator("text")
    @classmethod
    def _both_languages(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        try:
            Text.of(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from exc
        if any(len(v) > 200 for v in value.values()):
            raise ValueError("a text is at most 200 characters")
        return value

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise ValueError(f"category {value!r} is not one of {', '.join(CATEGORIES)}")
        return value

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Device beats place subtree (deeper beats shallower) beats kind."""
        depth = self.place.count("/") - 1 if self.place else 0
        return (self.device is not None, depth, self.kind is not None)

    @property
    def scope(self) -> tuple[str, str | None, str | None, str | None]:
        """The identity of a rule: two rules with one scope are the same rule."""
        return (self.name, self.kind, self.place, self.device)

    def matches(self, kind: str, path: str | None, serial: str | None) -> bool:
        """Whether a device of this kind, place path and serial is in the rule's scope."""
        if self.kind is not None and self.kind != kind:
            return False
        if self.device is not None and self.device != serial:
            return False
        return self.place is None or (path is not None and path.startswith(self.place))


class ThresholdRule(_Rule):
    """A metric beyond a value for ``for_s`` seconds; resolved once it is back past ``clear``."""

    type: Literal["threshold"]
    metric: str = Field(min_length=1)
    op: Op
    value: Level
    clear: Level
    for_s: Duration = 0.0

    @field_validator("clear")
    @classmethod
    def _clear_side(cls, clear: float, info: ValidationInfo) -> float:
        # The clear level must sit on the far side of the trigger, or the alert would flap.
        op, value = info.data.get("op"), info.data.get("value")
        if op is None or value is None:
            return clear  # op or value failed already; that error is the one to report
        below = op in ("<", "<=")
        if (below and clear < value) or (not below and clear > value):
            side = "at or above" if below else "at or below"
            raise ValueError(f"clear {clear} must be {side} the trigger ({op} {value})")
        return clear


class BatteryRule(_Rule):
    """Battery below ``below`` percent; resolved at ``clear`` percent (a threshold on ``battery``)."""

    type: Literal["battery"]
    severity: Literal["critical", "major", "minor", "info"] = "minor"
    category: str = "battery"
    below: float = Field(default=15, gt=0, le=100)
    clear: float = Field(default=20, gt=0, le=100)
    for_s: Duration = 0.0

    @field_validator("clear")
    @classmethod
    def _clear_side(cls, clear: float, info: ValidationInfo) -> float:
        below = info.data.get("below")
        if below is not None and clear < below:
            raise ValueError(f"clear {clear} must be at or above below={below}")
        return clear


class EventRule(_Rule):
    """A device event opens an alert; ``clear_event`` (if any) resolves it."""

    type: Literal["event"]
    event: str = Field(min_length=1)
    clear_event: str | None = None
    cooldown_s: Duration = Field(default=0.0, description="repeats within this time are not re-emitted")


class OfflineRule(_Rule):
    """The device went offline (last will, lost session) and stayed so for ``for_s`` seconds."""

    type: Literal["offline"]
    category: str = "fault"
    for_s: Duration = 0.0


class InactivityRule(_Rule):
    """Deadman: no uplink at all within the heartbeat interval × ``factor`` (or ``interval_s``)."""

    type: Literal["inactivity"]
    category: str = "fault"
    factor: float = Field(default=2.5, ge=1, allow_inf_nan=False)
    interval_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)


class Window(BaseModel):
    """A span of the local day, start inclusive, end exclusive; it may not cross midnight."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start: dt.time
    end: dt.time

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end <= self.start:
            raise ValueError(f"window {self.start}-{self.end} is empty or crosses midnight")
        return self

    @property
    def seconds(self) -> float:
        """The length of the window."""
        day = dt.date(2000, 1, 1)
        return (dt.datetime.combine(day, self.end) - dt.datetime.combine(day, self.start)).total_seconds()


class HouseholdRule(_Rule):
    """No activity from any device of a household in a window of the day, or for ``idle_hours`` in daytime."""

    type: Literal["household"]
    category: str = "activity"
    zone: str = "Asia/Shanghai"
    window: Window | None = None
    daytime: Window = Window(start=dt.time(7), end=dt.time(21))
    idle_hours: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("idle_hours")
    @classmethod
    def _fits_daytime(cls, hours: float | None, info: ValidationInfo) -> float | None:
        daytime = info.data.get("daytime")
        if hours is not None and daytime is not None and hours * 3600 > daytime.seconds:
            raise ValueError(f"idle_hours {hours} is longer than the daytime {daytime.start}-{daytime.end}")
        return hours

    @model_validator(mode="after")
    def _shape(self) -> HouseholdRule:
        if (self.window is None) == (self.idle_hours is None):
            raise ValueError("a household rule needs exactly one of window or idle_hours")
        if self.kind is not None or self.device is not None:
            raise ValueError("a household rule is scoped by place only (no kind or device)")
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The rule's time zone."""
        return ZoneInfo(self.zone)


Rule = Annotated[
    ThresholdRule | BatteryRule | EventRule | OfflineRule | InactivityRule | HouseholdRule,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Rule] = TypeAdapter(Rule)
_TAGS = frozenset(("threshold", "battery", "event", "offline", "inactivity", "household"))


def _where(source: str, index: int, loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in _TAGS]  # the union tag is noise in a field path
    return f"{source}[{index}]" + "".join(f".{p}" for p in parts)


def parse_rules(data: Any, *, source: str = "rules", kind: str | None = None) -> list[Rule]:
    """Validate a list of rule mappings; InvalidInput names the first bad one and its field."""
    if not isinstance(data, list):
        raise InvalidInput(f"{source} must be a list of rules, not {type(data).__name__}", field=source)
    out: list[Rule] = []
    for index, raw in enumerate(data):
        item = {"kind": kind, **raw} if kind is not None and isinstance(raw, dict) else raw
        try:
            out.append(_ADAPTER.validate_python(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = _where(source, index, tuple(first["loc"]))
            msg = str(first["msg"]).removeprefix("Value error, ")
            name = item.get("name") if isinstance(item, dict) else None
            label = f" ({name})" if name else ""
            raise InvalidInput(f"{where}{label}: {msg}", field=where) from exc
    return out


def load_yaml(text: str, *, source: str = "rules") -> list[Rule]:
    """Rules from a YAML document: a list, or a mapping with a ``rules`` list."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML: {exc}", field=source) from exc
    if isinstance(data, dict) and set(data) == {"rules"}:
        data = data["rules"]
    if data is None:
        return []
    return parse_rules(data, source=source)
