"""Device drivers: one module per kind, each a DRIVER of data plus a pure decoder."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from drivers import bodycam, door, panic_button, smoke
from drivers.base import Driver
from hub.errors import NotFound

__all__ = ["ALL", "DRIVERS", "get_driver"]

# Listed by hand: the registry must not depend on which modules happen to be imported.
ALL: tuple[Driver, ...] = (smoke.DRIVER, door.DRIVER, bodycam.DRIVER, panic_button.DRIVER)
DRIVERS: Mapping[str, Driver] = MappingProxyType({d.kind: d for d in ALL})


def get_driver(kind: str) -> Driver:
    """The driver of a device kind; NotFound names the kinds there are."""
    try:
        return DRIVERS[kind]
    except KeyError:
        raise NotFound(f"no driver for kind {kind!r} (known: {', '.join(DRIVERS)})", field="kind") from None
