"""The live event feed: what happens in the server, for the dashboard and the CLI.

Every event is a JSON-ready mapping with ``event`` (its kind), ``seq`` (1, 2, 3, ... in
the order they happened) and ``time`` (seconds since 1970), plus the kind's own fields:

- ``client.connected`` / ``client.disconnected``: ``client``, ``endpoint``, ``clients``
  (how many are connected to that endpoint now); a disconnection also has ``code`` (the
  close code, or null when the TCP connection was lost with no close frame) and
  ``dropped`` (true when the server cut or dropped it: a ``drop`` step, a full queue);
- ``frame.sent``: ``run_id``, ``scenario``, ``step``, ``endpoint``, ``to`` (a client id,
  or null for every client), ``clients`` (how many took it), ``frame`` (the text; a
  binary frame's bytes in hex with ``binary: true``), ``offset`` (when it was planned, in
  the run's run time: see :mod:`replay.pacing`), ``at`` (the run time it went out) and
  ``lateness`` (``at - offset``). Under ``serve --upstream`` (see
  :mod:`replay.record.live`) a run's frames also have ``injected: true``, and each frame
  the real backend sent a client is one too, with ``upstream: true``, ``to`` that client
  and null ``run_id``, ``scenario`` and ``step``;
- ``upstream.failed``: under ``serve --upstream``, a client whose upstream could not be
  reached (it was closed with 1011): ``client``, ``endpoint``, ``path``, ``upstream``
  (the URL, without credentials), ``reason``;
- ``frame.received``: ``client``, ``endpoint``, ``frame``;
- ``run.started``, ``run.step`` (``step``: the step being played), ``run.waiting``,
  ``run.finished``, ``run.failed``, ``run.cancelled``: ``run_id``, ``scenario`` and, for
  the start and the end, the run's summary as ``run``;
- ``run.paused``, ``run.resumed``, ``run.speed``, ``run.stepped`` (run control): ``run_id``,
  ``scenario``, ``run`` (the summary) and, for a step, ``stepped`` (what it let happen);
- ``run.wait`` (a wait began: ``step``, ``offset``, ``expects``), ``run.waited`` (it ended:
  ``step``, ``offset``, ``ended_by``, ``client``, ``frame``) and ``run.hangup`` (a
  ``disconnect`` or ``drop``: ``step``, ``offset``, ``endpoints``, ``to``, ``code``,
  ``reason``, ``drop``, ``clients``), each with ``run_id`` and ``scenario``;
- ``scenario.added``, ``scenario.changed``, ``scenario.removed``, ``scenario.invalid``:
  ``scenario``, ``file`` and, when invalid, ``problems``;
- ``protocol.changed``: the protocol file (``_protocol.yaml``) was added, edited or
  removed, as the server read it: ``file`` (its path, or null when the folder has none
  and speaks Schwarm), ``endpoints`` (the paths of the endpoints it declares now, in
  order) and ``problems`` (as a scenario's; empty when the file is fine). Scenarios are
  read again against it: those whose problems change get ``scenario.*`` events too;
- ``http.request``: a request a declared route answered (see :mod:`replay.backend`):
  ``method``, ``path``, ``route`` (the declared path), ``message_type`` (the route's
  ``METHOD /path``), ``status``, ``client``, ``query``, ``params``, ``endpoint``
  (``"http"``), ``frame`` (the request as the JSON text scenarios see) and ``runs`` (the
  runs that kept it);
- ``state.changed``: ``changes`` (the keys set and their new values; after a reset, every
  value) and ``by`` (``"route POST /break"``, ``"PUT /state"``, ``"reset"``, ...).

On a cluster's node every event also has ``node`` (see :attr:`Feed.node`), and the other
nodes' events reach this feed's subscribers too, with ``feed.dropped`` (``node``,
``dropped``) when some were lost on the way (see :mod:`replay.backplane.events`).

Publishing never waits. Each subscriber has a bounded queue: one that falls
:data:`BACKLOG` events or :data:`BACKLOG_BYTES` bytes behind loses the events it cannot
hold and then gets a ``lagged`` event saying how many it missed, so a slow reader never
slows the replay, nor holds more than that much memory however large the frames are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Any

#: Events a subscriber may fall behind by before it starts missing some.
BACKLOG = 1000
#: Bytes of events (see :func:`event_size`) a subscriber may fall behind by before it
#: starts missing some: without it, a thousand 1 MiB frames would be a gigabyte held for
#: one stalled reader.
BACKLOG_BYTES = 8 * 1024 * 1024
#: What an event is counted as besides its frame: a dict of a dozen small fields.
EVENT_BYTES = 1024


def event_size(event: dict[str, Any]) -> int:
    """An estimate of the memory ``event`` holds: its ``frame``'s length plus EVENT_BYTES.

    Cheap on purpose (nothing is serialised): frames are the only part of an event a
    client or a scenario can make large."""
    frame = event.get("frame")
    return EVENT_BYTES + (len(frame) if isinstance(frame, str | bytes) else 0)


class Feed:
    """One server's event feed."""

    def __init__(self, backlog: int = BACKLOG, backlog_bytes: int = BACKLOG_BYTES) -> None:
        self.backlog = backlog
        self.backlog_bytes = backlog_bytes
        self.seq = 0
        self.closed = False
        self._subscribers: set[_Subscriber] = set()
        #: Called with every event, synchronously (the journal): must not block.
        self.recorders: list[Callable[[dict[str, Any]], None]] = []
        #: This server's node id in a cluster (see :mod:`replay.backplane.events`): every
        #: event then carries it as ``node``. None: a single process, no ``node`` field.
        self.node: str | None = None

    def close(self) -> None:
        """End every subscription (the server is stopping); later ones end at once."""
        self.closed = True
        for subscriber in self._subscribers:
            subscriber.end()

    @property
    def subscribers(self) -> int:
        """How many readers subscribe now."""
        return len(self._subscribers)

    @property
    def followers(self) -> int:
        """How many readers want the other nodes' events too (see :meth:`subscribe`)."""
        return sum(1 for subscriber in self._subscribers if not subscriber.local)

    @property
    def listening(self) -> bool:
        """Whether anyone subscribes (publishers skip building events otherwise)."""
        return bool(self._subscribers or self.recorders)

    def publish(self, kind: str, **fields: Any) -> None:
        """Hand an event to every recorder and subscriber; never waits."""
        self.seq += 1
        if not (self._subscribers or self.recorders):
            return
        event = {"event": kind, "seq": self.seq, "time": time.time(), **fields}
        if self.node is not None:
            event.setdefault("node", self.node)  # a node.* event names its subject
        for record in self.recorders:
            record(event)
        for subscriber in self._subscribers:
            subscriber.offer(event)

    def deliver(self, event: dict[str, Any]) -> None:
        """Hand another node's ``event`` to every subscriber (not to the recorders: this
        node's journal is of its own clients); never waits."""
        for subscriber in self._subscribers:
            if not subscriber.local:
                subscriber.offer(event)

    def subscribe(
        self,
        kinds: str | Collection[str] = (),
        heartbeat: float | None = None,
        local: bool = False,
    ) -> Subscription:
        """Events from now on. ``kinds`` keeps only events whose kind is listed or starts
        with a listed prefix ending in ``.`` (``"run."``); empty keeps all. With
        ``heartbeat``, a ``{"event": "heartbeat"}`` comes after that many quiet seconds.
        With ``local``, only this server's own events (in a cluster, not the other
        nodes'): such a reader does not make the other nodes send theirs.

        The subscription starts when this is called, not when iteration starts; close it
        (``await subscription.aclose()``) when done with it, read or not.
        """
        wanted = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        subscriber = _Subscriber(self.backlog, self.backlog_bytes, wanted, local)
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
        self._subscriber.held -= event_size(event)
        return event

    async def aclose(self) -> None:
        """Stop the subscription (safe to call more than once)."""
        self._feed._subscribers.discard(self._subscriber)


class _Subscriber:
    def __init__(
        self, backlog: int, backlog_bytes: int, kinds: tuple[str, ...], local: bool = False
    ) -> None:
        #: Whether it takes this server's own events only (not the other nodes').
        self.local = local
        # Two slots more than the backlog: a lagged notice, and the end of the subscription.
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=backlog + 2)
        self.backlog = backlog
        self.backlog_bytes = backlog_bytes
        #: The bytes (see event_size) of the events queued and not yet read.
        self.held = 0
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
        # Room for the event, and for the lagged notice before it if one is due; a reader
        # holding nothing takes any event, however large: it is not behind.
        size = event_size(event) + (EVENT_BYTES if self.missed else 0)
        if self.queue.qsize() >= self.backlog or (
            self.held and self.held + size > self.backlog_bytes
        ):
            self.missed += 1
            return
        if self.missed:
            # Told where the gap is: after what was kept, before what comes next.
            self._put({"event": "lagged", "missed": self.missed, "seq": event["seq"]})
            self.missed = 0
        self._put(event)

    def _put(self, event: dict[str, Any]) -> None:
        self.held += event_size(event)
        self.queue.put_nowait(event)

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(None)
