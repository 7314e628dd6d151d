"""Typed dependencies shared by the routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

if TYPE_CHECKING:
    from hub.app import Hub

__all__ = ["HubDep", "get_hub"]


def get_hub(request: Request) -> Hub:
    """The running hub, set by the lifespan."""
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated["Hub", Depends(get_hub)]
