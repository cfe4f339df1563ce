"""Presence: which nodes of the cluster are alive, from each node's own hearing.

Every node publishes a :class:`~replay.backplane.messages.Beat` every :data:`BEAT_EVERY`
seconds (its id, pid, host, address, start time, clients and runs) and keeps the table
of the nodes it hears. A node not heard for :data:`LOST_AFTER` seconds is lost: logged
once, and ``node.lost`` on this node's event feed; a node shutting down cleanly says
goodbye (``node.left``); a node heard for the first time is ``node.joined``. Each node
emits these from its own view: they are not forwarded.

A node that cannot hear (its subscription is down, or it has not heard its own beat for
LOST_AFTER seconds: the broker is slow or restarting) declares no one lost: it cannot
tell. The others are ``unknown`` until it hears again, and then each has LOST_AFTER
seconds to be heard before it is lost.

The core (:meth:`Presence.heard`, :meth:`Presence.check`) takes the time as an argument;
only :meth:`Presence.run` reads a clock (given, for tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from replay.backplane.messages import Beat
from replay.errors import BackplaneUnreachable
from replay.feed import Feed

log = logging.getLogger("replay.backplane")

#: Seconds between a node's beats.
BEAT_EVERY = 1.0
#: Seconds without a beat after which a node is lost.
LOST_AFTER = 3.0
#: Seconds a goodbye may take to publish when a node stops.
BYE_TIMEOUT = 1.0
#: Lost nodes remembered (to flag runs whose origin was lost).
KEEP_LOST = 1000


@dataclass
class Peer:
    """A node as last heard: its beat, and when (this node's clock)."""

    beat: Beat
    last_heard: float


class Presence:
    """The nodes this node hears (see the module's docstring)."""

    def __init__(
        self,
        node: str,
        publish: Callable[[Beat], Awaitable[None]],
        subscribed: Callable[[], bool],
        state: Callable[[], tuple[int, int]],
        feed: Feed | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self._publish = publish
        self._subscribed = subscribed
        #: This node's client count and run count, now.
        self._state = state
        self.feed = feed or Feed()
        self.clock = clock
        #: The address this node serves, once known (set by the server).
        self.url: str | None = None
        self.started = time.time()
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.peers: dict[str, Peer] = {}
        #: Nodes lost, and when (seconds since 1970), the oldest forgotten first.
        self.lost: OrderedDict[str, float] = OrderedDict()
        self._self_heard: float | None = None
        self._deaf = False
        self._begun = clock()

    def beat(self, bye: bool = False) -> Beat:
        """This node's beat now."""
        clients, runs = self._state()
        return Beat(self.node, self.pid, self.host, self.url, self.started, clients, runs, bye)

    @property
    def hears(self) -> bool:
        """Whether this node hears the cluster now (see the module's docstring)."""
        return not self._deaf

    def alive(self) -> list[str]:
        """The ids of the nodes taken to be alive (this one first): those heard within
        LOST_AFTER seconds, and, while this node cannot hear, those it heard before."""
        return [self.node, *sorted(n for n in self.peers if n != self.node)]

    def heard(self, beat: Beat, now: float) -> None:
        """A beat heard at ``now``."""
        if beat.node == self.node:
            self._self_heard = now
            if self._deaf:
                self._hear_again(now)
            return
        if beat.bye:
            if self.peers.pop(beat.node, None) is not None:
                log.info("node %s (%s, pid %d) left the cluster", beat.node, beat.host, beat.pid)
                self._publish_event("node.left", beat)
            return
        known = self.peers.get(beat.node)
        self.peers[beat.node] = Peer(beat, now)
        if known is None:
            self.lost.pop(beat.node, None)
            log.info("node %s (%s, pid %d) joined the cluster", beat.node, beat.host, beat.pid)
            self._publish_event("node.joined", beat)

    def check(self, now: float) -> list[str]:
        """Declare lost the nodes not heard for LOST_AFTER seconds (unless this node
        cannot hear); returns their ids."""
        if self._cannot_hear(now):
            if not self._deaf:
                self._deaf = True
                log.warning(
                    "node %s cannot hear the cluster: the other nodes are unknown until it does",
                    self.node,
                )
            return []
        lost = [n for n, peer in self.peers.items() if now - peer.last_heard > LOST_AFTER]
        for node in lost:
            beat = self.peers.pop(node).beat
            self.lost[node] = time.time()
            while len(self.lost) > KEEP_LOST:
                self.lost.popitem(last=False)
            log.warning(
                "node %s (%s, pid %d) stopped answering: its clients are gone; runs go on "
                "on the other nodes",
                node,
                beat.host,
                beat.pid,
            )
            self._publish_event("node.lost", beat)
        return lost

    def table(self, now: float) -> list[dict[str, Any]]:
        """Every node taken to be alive, with its beat, ``last_heard`` (seconds ago) and
        ``state`` (``alive``; ``unknown`` while this node cannot hear)."""
        mine = {**self.beat().data(), "last_heard": 0.0, "state": "alive"}
        others = [
            {
                **self.peers[n].beat.data(),
                "last_heard": round(now - self.peers[n].last_heard, 3),
                "state": "unknown" if self._deaf else "alive",
            }
            for n in sorted(self.peers)
        ]
        return [mine, *others]

    async def run(self) -> None:
        """Beat every BEAT_EVERY seconds and check the others, until cancelled."""
        self._begun = self.clock()  # its first beat has LOST_AFTER seconds to come back
        while True:
            try:
                await self._publish(self.beat())
            except BackplaneUnreachable:
                pass  # check() says it cannot hear, if it cannot
            except Exception:  # a bug must not stop the beats
                log.exception("node %s: a beat failed", self.node)
            self.check(self.clock())
            await asyncio.sleep(BEAT_EVERY)

    async def leave(self) -> None:
        """Say goodbye (a clean shutdown), within BYE_TIMEOUT seconds if at all."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publish(self.beat(bye=True)), BYE_TIMEOUT)

    def _cannot_hear(self, now: float) -> bool:
        if not self._subscribed():
            return True
        # Not even its own beat comes back: the broker is slow or restarting.
        last = self._self_heard if self._self_heard is not None else self._begun
        return now - last > LOST_AFTER

    def _hear_again(self, now: float) -> None:
        self._deaf = False
        log.warning("node %s hears the cluster again", self.node)
        # It heard no one meanwhile: each has LOST_AFTER seconds from now to be heard.
        for peer in self.peers.values():
            peer.last_heard = now

    def _publish_event(self, kind: str, beat: Beat) -> None:
        self.feed.publish(
            kind, node=beat.node, nodes=len(self.alive()), host=beat.host, pid=beat.pid
        )
