"""The Redis backplane: start commands and shared client frames on one pub/sub channel
named for the cluster.

Every Redis call has a deadline (:data:`CALL_TIMEOUT`): an unreachable Redis makes a
trigger fail fast with BackplaneUnreachable, never hang. The subscription reconnects
on its own, waiting longer after each failure (up to :data:`MAX_BACKOFF`).

Pub/sub delivers to the nodes subscribed when a command is published: a node that is
disconnected then misses it, and a node that joins later does not play half a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from replay.backplane.command import StartCommand
from replay.backplane.heard import Shared, decode_message
from replay.backplane.interface import Deliver, DeliverEvents
from replay.backplane.messages import Message
from replay.errors import BackplaneInvalid, BackplaneUnreachable

log = logging.getLogger("replay.backplane")

#: Seconds any one Redis call (connect, publish, subscribe) may take.
CALL_TIMEOUT = 2.0
#: Seconds between reconnection attempts of the subscription: from the first, doubling
#: up to the last.
MIN_BACKOFF = 0.05
MAX_BACKOFF = 2.0
#: Seconds a read of the subscription waits for a message before looking again.
READ_WAIT = 1.0
#: Seconds of silence after which a connection is pinged before it is used again.
HEALTH_EVERY = 10.0
#: The cluster a URL without ``?cluster=`` joins.
DEFAULT_CLUSTER = "replay"

_FAULTS = (RedisError, OSError, TimeoutError)


class RedisBackplane:
    """``redis://HOST:PORT/DB[?cluster=NAME]``: pub/sub on ``replay:NAME:start``."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        cluster = dict(query).get("cluster", DEFAULT_CLUSTER)
        rest = urlencode([(k, v) for k, v in query if k != "cluster"])
        bare = urlunsplit(parts._replace(query=rest))
        #: Shown in errors and logs: without a password.
        self.url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.channel = f"replay:{cluster}:start"
        #: The feed's events, apart: a busy feed never delays a start command.
        self.events_channel = f"replay:{cluster}:events"
        try:
            self._redis = aioredis.Redis.from_url(
                bare,
                socket_connect_timeout=CALL_TIMEOUT,
                socket_timeout=CALL_TIMEOUT,
                # One quick retry: a connection Redis closed while it restarted is
                # replaced at once; no retrying for seconds behind a caller's back.
                retry=Retry(NoBackoff(), 1),
                # A subscription that hears nothing still pings now and then, and the
                # system's keepalive finds a peer gone without a word (a host cut off).
                health_check_interval=HEALTH_EVERY,
                socket_keepalive=True,
            )
        except ValueError as error:
            raise BackplaneInvalid(self.url, str(error)) from None
        self._subscribed = False
        self._closed = False
        #: The last failure logged ("" while all is well), and the wait before retrying.
        self._failing = ""
        self._backoff = MIN_BACKOFF

    @property
    def subscribed(self) -> bool:
        return self._subscribed

    async def publish_start(self, command: StartCommand) -> None:
        if not self._subscribed:
            raise BackplaneUnreachable(self.url, "this node is not subscribed (reconnecting)")
        await self._publish(command.encode())

    async def publish_frame(self, frame: Shared) -> None:
        await self._publish(frame.encode())

    async def publish(self, message: Message) -> None:
        await self._publish(message.encode())

    async def _publish(self, message: bytes) -> None:
        # One channel for commands and frames: Redis hands every subscriber what is
        # published on it in one order, so every node hears the same sequence.
        try:
            await asyncio.wait_for(self._redis.publish(self.channel, message), CALL_TIMEOUT)
        except _FAULTS as error:
            raise BackplaneUnreachable(self.url, _reason(error)) from None

    async def listen(self, deliver: Deliver) -> None:
        self._backoff = MIN_BACKOFF
        while not self._closed:
            pubsub = self._redis.pubsub()
            try:
                # Sent only: subscribed once Redis confirms it (see _read).
                await asyncio.wait_for(pubsub.subscribe(self.channel), CALL_TIMEOUT)
                await self._read(pubsub, deliver)
            except Exception as error:
                # Whatever breaks, the node must go on hearing triggers once it can.
                reason = _reason(error)
                if reason != self._failing:  # once per kind of failure, not once a retry
                    faulty = isinstance(error, _FAULTS)
                    log.log(
                        logging.WARNING if faulty else logging.ERROR,
                        "the backplane %s is unreachable (%s); reconnecting",
                        self.url,
                        reason,
                        exc_info=None if faulty else error,
                    )
                self._failing = reason
            finally:
                self._subscribed = False
                await _quietly_close(pubsub)
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _back(self) -> None:
        """Subscribed again: the next failure waits the least again, and is logged."""
        self._backoff = MIN_BACKOFF
        if self._failing:
            log.warning("the backplane %s is back: triggers work again", self.url)
        self._failing = ""

    async def _read(self, pubsub: aioredis.client.PubSub, deliver: Deliver) -> None:
        confirmed = asyncio.get_running_loop().time() + CALL_TIMEOUT
        while not self._closed:
            message = await pubsub.get_message(timeout=READ_WAIT)
            if not self._subscribed and asyncio.get_running_loop().time() > confirmed:
                raise TimeoutError("no confirmation of the subscription")
            if message is None:
                continue
            if message.get("type") == "subscribe":
                # From now on, what is published reaches this node: triggers may be taken.
                self._subscribed = True
                self._back()
                continue
            if message.get("type") != "message":
                continue
            try:
                command = decode_message(message["data"])
            except ValueError as error:
                log.warning("the backplane %s: ignored a message (%s)", self.url, error)
                continue
            deliver(command)

    async def publish_events(self, batch: bytes) -> None:
        try:
            await asyncio.wait_for(self._redis.publish(self.events_channel, batch), CALL_TIMEOUT)
        except _FAULTS as error:
            raise BackplaneUnreachable(self.url, _reason(error)) from None

    async def listen_events(self, deliver: DeliverEvents) -> None:
        backoff = MIN_BACKOFF
        while not self._closed:
            pubsub = self._redis.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(self.events_channel), CALL_TIMEOUT)
                while not self._closed:
                    message = await pubsub.get_message(timeout=READ_WAIT)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        backoff = MIN_BACKOFF
                    elif message.get("type") == "message":
                        deliver(message["data"])
            except Exception as error:
                # The start channel's subscription logs the backplane's faults; this one
                # only says it fell, at debug level, and comes back.
                log.debug("the events subscription on %s fell: %s", self.url, _reason(error))
            finally:
                await _quietly_close(pubsub)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def followers(self) -> int:
        try:
            counts = await asyncio.wait_for(
                self._redis.pubsub_numsub(self.events_channel), CALL_TIMEOUT
            )
        except _FAULTS as error:
            raise BackplaneUnreachable(self.url, _reason(error)) from None
        return sum(int(count) for _, count in counts)

    async def close(self) -> None:
        self._closed = True
        with contextlib.suppress(*_FAULTS):
            await asyncio.wait_for(self._redis.aclose(), CALL_TIMEOUT)


async def _quietly_close(pubsub: aioredis.client.PubSub) -> None:
    with contextlib.suppress(*_FAULTS):
        await asyncio.wait_for(pubsub.aclose(), CALL_TIMEOUT)


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {CALL_TIMEOUT:g} s"
    return str(error) or type(error).__name__
