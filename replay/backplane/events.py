"""The event feed of the whole cluster: each node's events reach the feed of every node
somebody follows, on a channel of their own (``replay:NAME:events``).

What it costs, and when:

- a node whose feed has followers (``GET /events``, the dashboard) listens on the events
  channel; one that has none does not;
- about once a second (:data:`LOOK_EVERY`) each node asks the backplane how many listen
  (Redis: ``PUBSUB NUMSUB``); it publishes its events only while another node does. A
  cluster nobody watches sends no event at all, and a node whose own dashboard is the
  only one watching sends nothing either;
- events go in batches: every :data:`BATCH_EVERY` seconds or :data:`BATCH_EVENTS` events
  (or :data:`BATCH_BYTES` bytes), whichever comes first, from a task of their own. Taking
  an event is appending it to a buffer: a slow or unreachable Redis never holds up a
  client or a run. The buffer holds :data:`MAX_BUFFER` events (:data:`MAX_BUFFER_BYTES`
  bytes): when full, the oldest go, and so do batches Redis refused; the followers then get
  ``feed.dropped`` (``node``, ``dropped``: how many of that node's events they missed).

Every event carries ``node`` (its node's id) in a cluster. ``node.*`` events (presence)
are not sent: every node makes its own. A follower gets each event once: a node does not
take its own events back, and a batch heard twice is taken once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from replay.backplane.interface import Backplane
from replay.errors import BackplaneUnreachable
from replay.feed import Feed, event_size

log = logging.getLogger("replay.backplane")

#: Seconds between looks at who follows the feed in the cluster.
LOOK_EVERY = 1.0
#: Seconds between looks at this node's own followers (no Redis call).
FOLLOWERS_EVERY = 0.1
#: Seconds an event may wait for the rest of its batch.
BATCH_EVERY = 0.05
#: Events in one batch at most (a batch this full goes at once).
BATCH_EVENTS = 200
#: Bytes (as :func:`replay.feed.event_size` counts them) in one batch at most: a batch
#: holds at least one event, however large.
BATCH_BYTES = 1024 * 1024
#: Events waiting to be published at most: beyond it, the oldest are dropped (counted).
MAX_BUFFER = 10_000
#: Bytes of events waiting to be published at most (large frames): as MAX_BUFFER.
MAX_BUFFER_BYTES = 16 * 1024 * 1024
#: Seconds closing waits for the tasks it cancelled.
CLOSE_WAIT = 1.0
#: Kinds no node forwards: each node emits its own.
LOCAL_KINDS = ("node.",)


@dataclass
class Batch:
    """Events of one node, in its order, as one message on the events channel."""

    origin: str
    number: int
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Events of ``origin`` lost before these (buffer full, or a batch refused).
    dropped: int = 0

    def encode(self) -> bytes:
        message = {"o": self.origin, "n": self.number, "d": self.dropped, "e": self.events}
        return json.dumps(message, separators=(",", ":"), default=str).encode()

    @staticmethod
    def decode(data: bytes) -> Batch:
        """Raises ValueError for anything but an encoded batch."""
        try:
            message = json.loads(data)
            batch = Batch(str(message["o"]), int(message["n"]), list(message["e"]))
            batch.dropped = int(message["d"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"not a batch of events ({error})") from None
        if not all(isinstance(event, dict) and "event" in event for event in batch.events):
            raise ValueError("not a batch of events (an event without a kind)")
        return batch


class ClusterEvents:
    """This node's part of the cluster's feed: publishes its events while others follow,
    and hands the other nodes' events to its own followers."""

    def __init__(
        self,
        backplane: Backplane,
        feed: Feed,
        node: str,
        max_buffer: int = MAX_BUFFER,
        max_buffer_bytes: int = MAX_BUFFER_BYTES,
    ) -> None:
        self.backplane = backplane
        self.max_buffer = max_buffer
        self.max_buffer_bytes = max_buffer_bytes
        self.feed = feed
        self.node = node
        feed.node = node
        #: Whether this node publishes its events now (another node follows).
        self.publishing = False
        #: Batches and events published, and events dropped (all since the start).
        self.batches = 0
        self.published = 0
        self.dropped = 0
        self._buffer: deque[dict[str, Any]] = deque()
        self._held = 0
        #: Dropped since the last batch that went out: told with the next one.
        self._untold = 0
        self._ready = asyncio.Event()
        self._numbered = 0
        #: The last batch taken from each other node (a batch heard twice is taken once).
        self._last: dict[str, int] = {}
        self._listening: asyncio.Task[None] | None = None
        #: Subscriptions cancelled and not ended yet (a cancellation lost in a Redis call
        #: on Python 3.11): cancelled again at each look, and not counted as followers.
        self._stopping: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._failing = False

    def start(self) -> None:
        """Start looking at who follows, and sending batches."""
        self._tasks = [
            asyncio.create_task(self._look_often(), name="replay-events-look"),
            asyncio.create_task(self._send_batches(), name="replay-events-send"),
        ]

    async def close(self) -> None:
        self._stop_publishing()
        tasks = [*self._tasks, *self._stopping, *([self._listening] if self._listening else [])]
        for task in tasks:
            task.cancel()
        # Bounded: a cancellation can be lost inside a Redis call (asyncio.wait_for on
        # Python 3.11); the backplane's close ends such a task's loop afterwards.
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)
        self._listening = None

    async def look(self) -> None:
        """Look once at who follows: listen on the events channel while this node's feed
        has followers, publish while another node listens. Never raises: a backplane that
        cannot tell means nobody is sent anything until it can."""
        if self.feed.followers and self._listening is None:
            self._listening = asyncio.create_task(
                self.backplane.listen_events(self._heard), name="replay-events-listen"
            )
        elif not self.feed.followers and self._listening is not None:
            self._stopping.add(self._listening)
            self._listening = None
        for task in list(self._stopping):
            if task.done():
                self._stopping.discard(task)
            else:
                task.cancel()
        try:
            listeners = await self.backplane.followers()
        except BackplaneUnreachable:
            listeners = 0
        ours = len(self._stopping) + (1 if self._listening is not None else 0)
        others = listeners - ours
        if others > 0:
            self._start_publishing()
        else:
            self._stop_publishing()

    async def _look_often(self) -> None:
        while True:
            try:
                await self.look()
            except Exception:  # whatever it is, the next look must happen
                log.exception("node %s: looking at the cluster's feed failed", self.node)
            # A first follower here (or the last one gone) is looked at at once, not at
            # the next look: a dashboard just opened hears the others a second sooner.
            wanted = bool(self.feed.followers)
            for _ in range(round(LOOK_EVERY / FOLLOWERS_EVERY)):
                await asyncio.sleep(FOLLOWERS_EVERY)
                if bool(self.feed.followers) != wanted:
                    break

    def _start_publishing(self) -> None:
        if not self.publishing:
            self.publishing = True
            self.feed.recorders.append(self.take)

    def _stop_publishing(self) -> None:
        if self.publishing:
            self.publishing = False
            self.feed.recorders.remove(self.take)
            # Nobody left to send them to, nor to tell of a loss.
            self._buffer.clear()
            self._held = self._untold = 0

    def take(self, event: dict[str, Any]) -> None:
        """Hold ``event`` (one of this node's) for the next batch; never waits."""
        if event["event"].startswith(LOCAL_KINDS):
            return
        self._buffer.append(event)
        self._held += event_size(event)
        while len(self._buffer) > self.max_buffer or (
            self._held > self.max_buffer_bytes and len(self._buffer) > 1
        ):
            self._drop(1)
        self._ready.set()

    def _drop(self, count: int) -> None:
        for _ in range(count):
            self._held -= event_size(self._buffer.popleft())
        self.dropped += count
        self._untold += count

    async def _send_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._buffer:
                self._ready.clear()
                await self._ready.wait()
            # The first event waits BATCH_EVERY at most for others to go with it.
            deadline = loop.time() + BATCH_EVERY
            while len(self._buffer) < BATCH_EVENTS and loop.time() < deadline:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), deadline - loop.time())
            batch = self._next_batch()
            if batch.events:
                await self._publish(batch)

    def _next_batch(self) -> Batch:
        self._numbered += 1
        batch = Batch(self.node, self._numbered, dropped=self._untold)
        size = 0
        while self._buffer and len(batch.events) < BATCH_EVENTS:
            cost = event_size(self._buffer[0])
            if batch.events and size + cost > BATCH_BYTES:
                break
            batch.events.append(self._buffer.popleft())
            self._held -= cost
            size += cost
        return batch

    async def _publish(self, batch: Batch) -> None:
        try:
            await self.backplane.publish_events(batch.encode())
        except Exception as error:  # whatever it is, the next batch must go
            # Lost: the followers are told how many with the next batch that goes.
            self.dropped += len(batch.events)
            self._untold += len(batch.events)
            if not self._failing:
                self._failing = True
                reason = error.reason if isinstance(error, BackplaneUnreachable) else repr(error)
                log.warning(
                    "node %s: its events do not reach the cluster's feed (%s)", self.node, reason
                )
            return
        self._untold -= batch.dropped
        self.batches += 1
        self.published += len(batch.events)
        if self._failing:
            self._failing = False
            log.warning("node %s: its events reach the cluster's feed again", self.node)

    def _heard(self, data: bytes) -> None:
        try:
            batch = Batch.decode(data)
        except ValueError as error:
            log.warning("node %s: ignored a message on the events channel (%s)", self.node, error)
            return
        if batch.origin == self.node or batch.number <= self._last.get(batch.origin, 0):
            return
        self._last[batch.origin] = batch.number
        if batch.dropped:
            self.feed.deliver(
                {
                    "event": "feed.dropped",
                    "seq": self.feed.seq,
                    "time": time.time(),
                    "node": batch.origin,
                    "dropped": batch.dropped,
                }
            )
        for event in batch.events:
            if not event["event"].startswith(LOCAL_KINDS):
                self.feed.deliver(event)
