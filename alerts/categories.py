"""The category table (alerts/data/categories.yaml): each case category's name for people and its correlation."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from alerts.cases import CASE_CATEGORIES
from drivers.base import LANGUAGES, Correlate, Text
from hub.errors import InvalidInput

__all__ = ["Category", "categories", "category_name", "correlate_of"]

_FILE = "categories.yaml"


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    correlate: Correlate
    name: dict[str, str]


@dataclass(frozen=True, slots=True)
class Category:
    """One case category: what it is called, and whether the alerts of one building fold into one case."""

    key: str
    name: Text
    correlate: Correlate


def parse_table(text: str, source: str = _FILE) -> Mapping[str, Category]:
    """Read and check a category table; InvalidInput names the category and field that are wrong."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or list(data) != list(CASE_CATEGORIES):
        raise InvalidInput(
            f"{source} must list exactly {', '.join(CASE_CATEGORIES)}, in that order", field=source
        )
    table = {}
    for key, raw in data.items():
        try:
            row = _Row.model_validate(raw)
            name = Text.of(row.name)
        except (ValidationError, InvalidInput) as exc:
            raise InvalidInput(f"{source}: {key}: {exc}", field=f"{source}.{key}") from exc
        table[key] = Category(key, name, row.correlate)
    return MappingProxyType(table)


@functools.cache
def categories() -> Mapping[str, Category]:
    """The shipped table, read once (it is part of the package, like the drivers)."""
    return parse_table(resources.files("alerts.data").joinpath(_FILE).read_text(encoding="utf-8"))


def category_name(key: str, language: str) -> str:
    """The category's name in ``language`` (one of LANGUAGES); an unknown key is shown as it is."""
    found = categories().get(key)
    return key if found is None else found.name.get(language if language in LANGUAGES else "zh-CN")


def correlate_of(key: str) -> Correlate:
    """Whether alerts of the category correlate by building (unknown categories: never)."""
    found = categories().get(key)
    return "none" if found is None else found.correlate
