"""The backplane's interface, and the backend a URL names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from replay.backplane.command import StartCommand
from replay.backplane.heard import Shared
from replay.backplane.messages import Message
from replay.errors import BackplaneInvalid

#: What a subscription calls with each start command, shared client frame or state
#: change, beat, question and answer it hears (on the event loop), in the order the
#: backplane carried them.
Deliver = Callable[[StartCommand | Shared | Message], None]
#: What an events subscription calls with each batch of another node's feed events it
#: hears (on the event loop), as published: see :mod:`replay.backplane.events`.
DeliverEvents = Callable[[bytes], None]


class Backplane(Protocol):
    """Carries start commands and shared client frames to every node of a cluster, the
    sender included, in one order."""

    #: The URL it was opened with (shown in errors; a password is not part of it).
    url: str

    async def publish_start(self, command: StartCommand) -> None:
        """Send ``command`` to every node subscribed now. Raises BackplaneUnreachable
        (within a few seconds, never hanging) if it cannot, or if this node's own
        subscription is down (it would not hear its own trigger)."""
        ...

    async def publish_frame(self, frame: Shared) -> None:
        """Send ``frame`` (a client frame or a state change) to every node subscribed now,
        after what this node sent before.
        Raises BackplaneUnreachable (within a few seconds) if it cannot."""
        ...

    async def publish(self, message: Message) -> None:
        """Send a beat, question or answer (see :mod:`replay.backplane.messages`) to every
        node subscribed now. Raises BackplaneUnreachable (within a few seconds) if it
        cannot."""
        ...

    async def listen(self, deliver: Deliver) -> None:
        """Call ``deliver`` with every start command, frame and state change heard,
        until cancelled or closed; a broken connection is reconnected, with back-off.
        Never raises for the backplane's faults."""
        ...

    async def publish_events(self, batch: bytes) -> None:
        """Send ``batch`` (encoded feed events) on the cluster's events channel, apart from
        start commands and frames. Raises BackplaneUnreachable (within a few seconds)."""
        ...

    async def listen_events(self, deliver: DeliverEvents) -> None:
        """Call ``deliver`` with every batch heard on the events channel (this node's own
        included), until cancelled; reconnects with back-off, never raises for the
        backplane's faults. While it listens, this node counts in :meth:`followers`."""
        ...

    async def followers(self) -> int:
        """How many subscriptions listen on the events channel now (this node's included).
        Raises BackplaneUnreachable (within a few seconds) if it cannot tell."""
        ...

    @property
    def subscribed(self) -> bool:
        """Whether :meth:`listen` hears commands now."""
        ...

    async def close(self) -> None:
        """Stop listening and let go of connections."""
        ...


def open_backplane(url: str) -> Backplane:
    """The backend ``url`` names: ``memory://NAME`` (this process only; nodes in one
    process with the same NAME share it) or ``redis://HOST:PORT/DB`` (``rediss://`` for
    TLS; ``?cluster=NAME`` separates clusters sharing one Redis, default ``replay``).
    Raises BackplaneInvalid for anything else."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from replay.backplane.memory import MemoryBackplane

        return MemoryBackplane(url)
    if scheme in ("redis", "rediss"):
        from replay.backplane.redis_pubsub import RedisBackplane

        return RedisBackplane(url)
    raise BackplaneInvalid(url, "expected memory://NAME or redis://HOST:PORT/DB")
