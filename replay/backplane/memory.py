"""The in-process backplane: start commands and shared frames go to the subscribers of
this process."""

from __future__ import annotations

import asyncio
import weakref

from replay.backplane.command import StartCommand
from replay.backplane.heard import Shared, decode_message
from replay.backplane.interface import Deliver, DeliverEvents
from replay.backplane.messages import Message

#: The subscribers of each ``memory://`` URL in this process.
_HUBS: dict[str, weakref.WeakSet[MemoryBackplane]] = {}


class MemoryBackplane:
    """Nodes in one process with the same ``memory://NAME`` hear each other. Commands go
    through their encoding, as they would through Redis."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._deliver: list[tuple[asyncio.AbstractEventLoop, Deliver]] = []
        self._deliver_events: list[tuple[asyncio.AbstractEventLoop, DeliverEvents]] = []
        _HUBS.setdefault(url, weakref.WeakSet()).add(self)

    @property
    def subscribed(self) -> bool:
        return bool(self._deliver)

    async def publish_start(self, command: StartCommand) -> None:
        self._publish(command.encode())

    async def publish_frame(self, frame: Shared) -> None:
        self._publish(frame.encode())

    async def publish(self, message: Message) -> None:
        self._publish(message.encode())

    def _publish(self, message: bytes) -> None:
        for node in list(_HUBS.get(self.url, ())):
            for loop, deliver in node._deliver:
                # Each node's own loop (nodes may run in threads of their own).
                loop.call_soon_threadsafe(deliver, decode_message(message))

    async def listen(self, deliver: Deliver) -> None:
        entry = (asyncio.get_running_loop(), deliver)
        self._deliver.append(entry)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            if entry in self._deliver:  # not if closed meanwhile
                self._deliver.remove(entry)

    async def publish_events(self, batch: bytes) -> None:
        for node in list(_HUBS.get(self.url, ())):
            for loop, deliver in node._deliver_events:
                loop.call_soon_threadsafe(deliver, batch)

    async def listen_events(self, deliver: DeliverEvents) -> None:
        entry = (asyncio.get_running_loop(), deliver)
        self._deliver_events.append(entry)
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            if entry in self._deliver_events:
                self._deliver_events.remove(entry)

    async def followers(self) -> int:
        return sum(len(node._deliver_events) for node in list(_HUBS.get(self.url, ())))

    async def close(self) -> None:
        self._deliver.clear()
        self._deliver_events.clear()
        _HUBS.get(self.url, weakref.WeakSet()).discard(self)
