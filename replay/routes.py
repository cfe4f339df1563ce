"""Declared HTTP routes (a stub: the routes helper replaces this module)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Route(BaseModel):
    """One declared HTTP route (stub)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "GET"
    path: str
    status: int = 200
    body: Any = None
