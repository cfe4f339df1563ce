"""The backplane: how the replay nodes of a cluster hear each other's triggers.

A tiny interface (:class:`Backplane`) with backends chosen by URL (``memory://NAME``:
in this process; ``redis://HOST:PORT/DB``: Redis pub/sub), after the shape of the
``broadcaster`` library. What travels is one :class:`StartCommand` per trigger, not
every frame: each node plays the run to its own clients (see :mod:`replay.backplane.node`).
"""

from __future__ import annotations

from replay.backplane.command import MAX_START_BYTES, StartCommand
from replay.backplane.interface import Backplane, Deliver, open_backplane

__all__ = ["MAX_START_BYTES", "Backplane", "Deliver", "StartCommand", "open_backplane"]
