"""A run's mailbox: the client frames it may consume, kept in order from its start.

A client (or a UI test) often answers faster than a scenario reaches its ``wait``: the
``chat`` scenario pauses after CHAT_REQUESTED, and an answer sent at once arrives during
that pause. So every run keeps, from the moment it starts, each client frame it may
consume, and a ``wait`` takes the oldest unconsumed frame that matches it. The rules:

- A run may consume a frame when one of the ``wait`` steps the run may play (its
  scenario's, and those of the scenarios it plays) accepts it (its message type, and
  its ``match`` and ``fields`` if it has them) and, if the run has a target client
  (``?client=``, an on-connect run), the frame comes from that client. Other frames
  never enter its mailbox.
- Every run that may consume a frame gets it: runs with different targets never see each
  other's clients' frames, so with ``?client=`` isolation nothing depends on timing; two
  runs without a target both get a frame either may consume.
- A frame that at least one run may consume does not start a reaction: it was an answer.
- A mailbox holds at most :data:`MAX_FRAMES` frames and :data:`MAX_BYTES` of text; a
  frame beyond that is dropped and counted (``mailbox.dropped`` in the run's summary).
- What is still unread when the run ends is forgotten with the run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from replay.matching import ClientFrame, matches
from replay.scenario import ClientFrameMatch

#: Frames one run's mailbox may hold unread.
MAX_FRAMES = 1000
#: Text one run's mailbox may hold unread (a single frame is kept whatever its size).
MAX_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Waiter:
    """A wait step of a run, waiting for a frame that ``match`` accepts from ``source``
    (None: any client)."""

    match: ClientFrameMatch
    source: str | None
    future: asyncio.Future[ClientFrame]

    def accepts(self, frame: ClientFrame) -> bool:
        return (self.source is None or frame.client == self.source) and matches(self.match, frame)


@dataclass
class Mailbox:
    """The frames one run may consume (see the module's docstring)."""

    #: What the run's wait steps accept.
    awaits: Collection[ClientFrameMatch]
    #: The run's target client, if it has one: only its frames are kept.
    client: str | None = None
    kept: int = 0
    taken: int = 0
    dropped: int = 0
    _frames: deque[ClientFrame] = field(default_factory=deque, repr=False)
    _bytes: int = 0
    _waiters: list[Waiter] = field(default_factory=list, repr=False)

    def wants(self, frame: ClientFrame) -> bool:
        """Whether the run may consume ``frame``."""
        if self.client is not None and frame.client != self.client:
            return False
        return frame.message_type is not None and any(
            matches(match, frame) for match in self.awaits
        )

    def offer(self, frame: ClientFrame) -> bool:
        """Give ``frame`` to a waiting step that accepts it, or keep it for a later one;
        False if the run may not consume it (then it is not this run's business)."""
        if not self.wants(frame):
            return False
        for waiter in self._waiters:
            if not waiter.future.done() and waiter.accepts(frame):
                waiter.future.set_result(frame)
                self._waiters.remove(waiter)
                self.taken += 1
                return True
        size = len(frame.text or "")
        full = len(self._frames) >= MAX_FRAMES or (self._frames and self._bytes + size > MAX_BYTES)
        if full:
            self.dropped += 1
        else:
            self._frames.append(frame)
            self._bytes += size
            self.kept += 1
        return True

    def take(self, waiter: Waiter) -> ClientFrame | None:
        """The oldest kept frame ``waiter`` accepts, taken out of the mailbox; or None,
        and then ``waiter`` gets the next frame it accepts (see :meth:`offer`)."""
        for frame in self._frames:
            if waiter.accepts(frame):
                self._frames.remove(frame)
                self._bytes -= len(frame.text or "")
                self.taken += 1
                return frame
        self._waiters.append(waiter)
        return None

    def forget(self, waiter: Waiter) -> None:
        """``waiter`` stopped waiting (it timed out, or its run was cancelled)."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def clear(self) -> None:
        """Forget every unread frame."""
        self._frames.clear()
        self._bytes = 0

    def summary(self) -> dict[str, Any]:
        """Counts for the run's summary."""
        return {
            "kept": self.kept,
            "taken": self.taken,
            "unread": len(self._frames),
            "dropped": self.dropped,
        }
