"""The live event feed: what happens in the server, for the dashboard and the CLI.

Every event is a JSON-ready mapping with ``event`` (its kind), ``seq`` (1, 2, 3, ... in
the order they happened) and ``time`` (seconds since 1970), plus the kind's own fields:

- ``client.connected`` / ``client.disconnected``: ``client``, ``endpoint``, ``clients``
  (how many are connected to that endpoint now);
- ``frame.sent``: ``run_id``, ``scenario``, ``step``, ``endpoint``, ``to`` (a client id,
  or null for every client), ``clients`` (how many took it), ``frame`` (the text; a
  binary frame's bytes in hex with ``binary: true``);
- ``frame.received``: ``client``, ``endpoint``, ``frame``;
- ``run.started``, ``run.step`` (``step``: the step being played), ``run.waiting``,
  ``run.finished``, ``run.failed``, ``run.cancelled``: ``run_id``, ``scenario`` and, for
  the start and the end, the run's summary as ``run``;
- ``scenario.added``, ``scenario.changed``, ``scenario.removed``, ``scenario.invalid``:
  ``scenario``, ``file`` and, when invalid, ``problems``.

Publishing never waits. Each subscriber has a bounded queue: one that falls
:data:`BACKLOG` events behind loses the events it cannot hold and then gets a
``lagged`` event saying how many it missed, so a slow reader never slows the replay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

#: Events a subscriber may fall behind by before it starts missing some.
BACKLOG = 1000


class Feed:
    """One server's event feed."""

    def __init__(self, backlog: int = BACKLOG) -> None:
        self.backlog = backlog
        self.seq = 0
        self.closed = False
        self._subscribers: set[_Subscriber] = set()

    def close(self) -> None:
        """End every subscription (the server is stopping); later ones end at once."""
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.end()

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes (publishers skip building events otherwise)."""
        return bool(self._subscribers)

    def publish(self, kind: str, **fields: Any) -> None:
        """Hand an event to every subscriber; never waits."""
        self.seq += 1
        if not self._subscribers:
            return
        event = {"event": kind, "seq": self.seq, "time": time.time(), **fields}
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def subscribe(
        self, kinds: str | Collection[str] = (), heartbeat: float | None = None
    ) -> Subscription:
        """Events from now on. ``kinds`` keeps only events whose kind is listed or starts
        with a listed prefix ending in ``.`` (``"run."``); empty keeps all. With
        ``heartbeat``, a ``{"event": "heartbeat"}`` comes after that many quiet seconds.

        The subscription starts when this is called, not when iteration starts; close it
        (``await subscription.aclose()``) when done with it, read or not.
        """
        wanted = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        subscriber = _Subscriber(self.backlog, wanted)
        self._subscribers.add(subscriber)
        if self.closed:
            subscriber.end()
        return Subscription(self, subscriber, heartbeat)


class Subscription:
    """One reader's events, as an async iterator; see :meth:`Feed.subscribe`."""

    def __init__(self, feed: Feed, subscriber: _Subscriber, heartbeat: float | None) -> None:
        self._feed = feed
        self._subscriber = subscriber
        self._heartbeat = heartbeat

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            event = await asyncio.wait_for(self._subscriber.queue.get(), self._heartbeat)
        except TimeoutError:
            return {"event": "heartbeat", "seq": self._feed.seq, "time": time.time()}
        if event is None:
            await self.aclose()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop the subscription (safe to call more than once)."""
        self._feed._subscribers.discard(self._subscriber)


class _Subscriber:
    def __init__(self, backlog: int, kinds: tuple[str, ...]) -> None:
        # Two slots more than the backlog: a lagged notice, and the end of the subscription.
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=backlog + 2)
        self.backlog = backlog
        self.kinds = kinds
        self.missed = 0
        self.ended = False

    def offer(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if self.ended or (
            self.kinds
            and not any(
                kind == wanted or (wanted.endswith(".") and kind.startswith(wanted))
                for wanted in self.kinds
            )
        ):
            return
        if self.queue.qsize() >= self.backlog:
            self.missed += 1
            return
        if self.missed:
            # Told where the gap is: after what was kept, before what comes next.
            self.queue.put_nowait({"event": "lagged", "missed": self.missed, "seq": event["seq"]})
            self.missed = 0
        self.queue.put_nowait(event)

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(None)
