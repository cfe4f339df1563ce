"""One connected WebSocket client: a bounded send queue, a writer task, a reader loop.

Fan-out only ever puts frames into a client's queue, which never waits; the client's own
writer task takes them out and sends them. A client that stops reading fills its queue
and is dropped; a client that dies makes its writer fail and is dropped. Either way the
other clients never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from replay.direct import CLOSING, TRANSPORT_KEY, WRITTEN, Line, burst

log = logging.getLogger("replay.client")

#: The close code reported when a connection ends with no close frame (RFC 6455).
ABNORMAL_CLOSURE = 1006

#: Frames a client may fall behind by before it is dropped, counted in bytes: that many
#: frames of the size being sent (see BYTES_PER_FRAME).
DEFAULT_QUEUE_SIZE = 1024
#: Frames a second a client may send before the excess is ignored (bursts of twice that).
DEFAULT_CLIENT_RATE = 100.0
#: Bytes a second a client may send, sustained (bursts of twice that, and one frame of any
#: size over): above it, its socket is read no faster than that (see
#: :meth:`Client.receive_until_closed`). A frame rate alone let one client sending 1 MiB
#: frames make everyone else's frames late.
DEFAULT_CLIENT_BYTES = 1024 * 1024
#: A client's send backlog is bounded in bytes, on the direct path (see
#: :mod:`replay.direct`) and the queue alike: queue-size frames of the size being sent,
#: counting each as at least this many bytes.
BYTES_PER_FRAME = 1024
#: WebSocket close code for a client dropped for not reading (RFC 6455: policy violation).
CLOSE_TOO_SLOW = 1008
#: The close reason of a client dropped for not reading.
TOO_SLOW = "client too slow: send queue full"
#: How long a dropped client has to take its close frame before its connection is cut.
CLOSE_GRACE = 2.0


@dataclass(frozen=True)
class Goodbye:
    """Queued after a client's last frames: close its connection with ``code`` and
    ``reason``, or cut it without a close frame when ``abort``."""

    code: int
    reason: str
    abort: bool = False


#: What a client's send queue holds: text frames, binary frames, and a last goodbye.
Outgoing = str | bytes | Goodbye
#: Called with each text frame a client sends (and the client).
FrameListener = Callable[["Client", str], None]


class Client:
    """A client connected to one endpoint.

    ``id`` is the client's own ``?client_id=`` or one the server made up; two
    connections (say, a browser's ``/ws`` and ``/ws/stream``) may share one. ``sent`` and
    ``received`` count frames; ``dropped`` says why the server stopped sending to the
    client, or is None.
    """

    def __init__(
        self,
        websocket: WebSocket,
        endpoint: str,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        on_gone: Callable[[Client], None] | None = None,
        client_id: str | None = None,
        byte_rate: float = DEFAULT_CLIENT_BYTES,
    ) -> None:
        self.id = client_id or uuid.uuid4().hex[:8]
        self.websocket = websocket
        self.endpoint = endpoint
        self.connected_at = time.time()
        self.sent = 0
        self.received = 0
        #: Bytes of the frames received (UTF-8, for text).
        self.received_bytes = 0
        #: Frames the client sent over its rate limits, which were not acted on.
        self.ignored = 0
        #: Times its socket was left unread for a while: it sent more than its byte rate.
        self.throttled = 0
        #: Runs (reactions, on-connect) not started for it because its share was full.
        self.skipped = 0
        self.dropped: str | None = None
        #: The close code and reason the server ended the connection with, once it did
        #: (1006 when it cut it): what a proxied session's upstream is closed with.
        self.goodbye: tuple[int, str] | None = None
        #: Whether the server cut the connection or dropped the client (a ``drop`` step,
        #: a full send queue), rather than closing it in good order.
        self.cut = False
        #: The close code and reason the peer ended the connection with, once it did.
        self.closed: tuple[int, str] | None = None
        self._allowance: float | None = None
        self._allowance_at = 0.0
        self._bytes = ByteBudget(byte_rate)
        self._warned_bytes = False
        # Set while the reader rests (see _rest): done early when the server gives up on
        # the client, whose close must then be read.
        self._resting: asyncio.Future[None] | None = None
        self._queue_size = queue_size
        # Made only when needed: a client on a direct line never uses it (memory counts
        # when thousands of clients sit idle). Each item goes with its size in bytes.
        self._outbox: asyncio.Queue[tuple[Outgoing, int]] | None = None
        #: Bytes queued and not yet sent, the frame being sent included.
        self._queued = 0
        self._last_size = 0
        self._on_gone = on_gone
        self._writer: asyncio.Task[None] | None = None
        #: The direct line to the connection, when the server is uvicorn's sans-I/O one.
        self.line: Line | None = None

    def start(self) -> None:
        """Start sending (the websocket must be accepted): directly if the server allows,
        else through a writer task."""
        queued = self._outbox is not None and not self._outbox.empty()
        self.line = None if queued else Line.of(self.websocket.scope)
        if self.line is None:
            self._writer = asyncio.create_task(self._write(), name=f"replay-client-{self.id}")

    def offer(self, frame: str | bytes, shared: bytes | None = None) -> bool:
        """Send or queue a frame without waiting; a client too far behind is dropped and
        False returned. ``shared`` is the frame framed for the wire, if the caller has it
        (see :func:`replay.direct.framed`)."""
        if self.dropped is not None:
            return False
        size = len(shared) if shared is not None else len(frame)
        line = self.line
        if line is not None:
            # The checks below and the write in one call (the fan-out's hot path: the
            # bound of _bound, inline).
            bound = self._queue_size * (size if size > BYTES_PER_FRAME else BYTES_PER_FRAME)
            done = line.offer(frame, shared, bound)
            if done == WRITTEN:
                self.sent += 1
                return True
            if done == CLOSING:
                # It is going away: an ordinary disconnect, not worth a warning.
                self.drop(1011, "connection closing", quiet=True)
            else:
                self.drop(CLOSE_TOO_SLOW, TOO_SLOW)
            return False
        if self._behind(size):
            self.drop(CLOSE_TOO_SLOW, TOO_SLOW)
            return False
        self._queue.put_nowait((frame, size))
        self._queued += size
        self._last_size = size
        burst.queued = True  # its writer task needs the loop to send it
        return True

    def _behind(self, size: int) -> bool:
        """Whether the backlog is past the bound for a frame of ``size`` bytes: queue-size
        frames of that size, each counted as at least BYTES_PER_FRAME."""
        return self.backlog > self._bound(size)

    def _bound(self, size: int) -> int:
        """The most bytes that may wait before a frame of ``size`` bytes: queue-size
        frames of that size, each counted as at least BYTES_PER_FRAME."""
        return self._queue_size * max(BYTES_PER_FRAME, size)

    @property
    def queue_size(self) -> int:
        """Frames of the size being sent the client may fall behind by (see _bound)."""
        return self._queue_size

    @property
    def _queue(self) -> asyncio.Queue[tuple[Outgoing, int]]:
        if self._outbox is None:  # offered before start(): queue, the writer will send it
            # Unbounded in frames: offer() bounds it in bytes.
            self._outbox = asyncio.Queue()
        return self._outbox

    @property
    def backlog(self) -> int:
        """Bytes sent to the client and not yet taken: on the direct line, what its
        transport holds; else what its queue holds, the frame being sent included."""
        if self.line is not None:
            return self.line.buffered
        return self._queued

    def drop(self, code: int, reason: str, quiet: bool = False) -> None:
        """Stop sending to this client and close its connection with ``code`` (never waits).

        Logged as a warning, or at DEBUG when ``quiet`` (the client is leaving anyway)."""
        if self.dropped is not None:
            return
        self.dropped, self.goodbye = reason, (code, reason)
        self.cut = not quiet  # quiet: it was leaving anyway
        self._wake()
        level = logging.DEBUG if quiet else logging.WARNING
        log.log(level, "client %s on %s dropped: %s", self.id, self.endpoint, reason)
        if self._on_gone is not None:
            self._on_gone(self)
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        self._spawn(self._close(code, reason))

    def allow(self, rate: float) -> bool:
        """Whether a frame just received is within ``rate`` frames per second (bursts of
        up to twice that are fine); the first frame over the rate is logged."""
        now = time.monotonic()
        if self._allowance is None:
            self._allowance = 2 * rate
        else:
            self._allowance = min(2 * rate, self._allowance + (now - self._allowance_at) * rate)
        self._allowance_at = now
        if self._allowance >= 1:
            self._allowance -= 1
            return True
        if not self.ignored:
            log.warning(
                "client %s on %s sends more than %g frames a second: ignoring the excess",
                self.id,
                self.endpoint,
                rate,
            )
        self.ignored += 1
        return False

    async def close_now(self, code: int, reason: str) -> None:
        """Close the connection now with ``code`` (the server is stopping): what is still
        queued is dropped, and a peer that does not take the close frame is cut."""
        if self.dropped is None:
            self.dropped, self.goodbye = reason, (code, reason)
            if self._on_gone is not None:
                self._on_gone(self)
        self._wake()
        if self._writer is not None:
            self._writer.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(code, reason), 1.0)
            return
        _abort(self.websocket)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        _background.add(task)
        task.add_done_callback(_background.discard)

    def hangup(self, code: int, reason: str, abort: bool = False, by: str = "a scenario") -> bool:
        """Close the connection once the frames queued before have gone out (never waits).

        With ``abort``, cut the TCP connection without a close frame, as a crashed server
        would. ``by`` says who for the log. Returns False if the client was already dropped.
        """
        if self.dropped is not None:
            return False
        self.dropped = "dropped on purpose" if abort else f"closed with code {code}"
        self.goodbye = (ABNORMAL_CLOSURE, "") if abort else (code, reason)
        self.cut = abort
        self._wake()
        log.info("client %s on %s: %s by %s", self.id, self.endpoint, self.dropped, by)
        if self._on_gone is not None:
            self._on_gone(self)
        if self.line is not None:
            # What was written is already on its way: the goodbye follows it.
            self._spawn(self._goodbye(Goodbye(code, reason, abort)))
            return True
        if self._behind(self._last_size):
            # The client is not reading (another frame like the last would drop it): what
            # is queued would never get out anyway.
            if self._writer is not None:
                self._writer.cancel()
            self._spawn(self._goodbye(Goodbye(code, reason, abort)))
        else:
            self._queue.put_nowait((Goodbye(code, reason, abort), 0))
        return True

    @property
    def close_code(self) -> int | None:
        """The code the connection ended (or is ending) with: the server's if it ended
        it, else the peer's; None while open, or when TCP was lost with no close frame."""
        ended = self.goodbye or self.closed
        code = ended[0] if ended is not None else None
        return None if code == ABNORMAL_CLOSURE else code

    async def stop(self) -> None:
        """Stop the writer (the client has gone); frames still queued are discarded."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def receive_until_closed(
        self,
        listener: FrameListener | None = None,
        every: Callable[[str | bytes], None] | None = None,
    ) -> tuple[int, str]:
        """Read the client's frames until it disconnects, handing text frames to ``listener``
        in the order they came, and every frame, text or binary, to ``every`` (a proxied
        session's upstream, see :mod:`replay.record.live`). Returns the close code and
        reason the connection ended with, as the server saw them.

        Frames are logged at DEBUG; a listener that fails is logged and the reading goes
        on. Nothing a client sends can break the connection's handler or anyone else's.

        A client that sends more bytes than its byte rate allows is read more slowly:
        after the frame that overdraws its budget, its socket is not read until the
        budget is back (TCP then slows the sender down, and the server decodes nothing
        meanwhile). Without the connection's transport (a server other than uvicorn),
        frames that come while the budget is overdrawn are ignored instead, and counted.
        """
        transport = self.websocket.scope.get(TRANSPORT_KEY)
        can_pause = hasattr(transport, "pause_reading")
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code", 1000)), str(message.get("reason") or "")
            self.received += 1
            text = message.get("text")
            size = _size(text, message.get("bytes"))
            if every is not None:
                every(text if text is not None else message.get("bytes") or b"")
            self.received_bytes += size
            if log.isEnabledFor(logging.DEBUG):  # parsing every frame costs, in a flood
                log.debug("client %s on %s sent %s", self.id, self.endpoint, _describe(message))
            now = time.monotonic()
            if not can_pause and self._bytes.overdrawn(now):
                self._over_bytes("ignoring the excess")
                self.ignored += 1
                continue
            self._bytes.spend(size, now)
            if listener is not None and text is not None:
                try:
                    listener(self, text)
                except Exception:
                    log.exception(
                        "client %s on %s: handling its frame failed", self.id, self.endpoint
                    )
            if can_pause:
                await self._catch_up(transport)

    async def _catch_up(self, transport: Any) -> None:
        """Leave the socket unread until the byte budget is no longer overdrawn (or the
        server gives up on the client)."""
        wait = self._bytes.debt(time.monotonic())
        if wait <= 0 or self.dropped is not None:
            return
        self._over_bytes("reading it more slowly")
        self.throttled += 1
        # Pause only a transport that reads: uvicorn pauses it itself after each frame
        # until the application asks for the next, and resumes only what it paused.
        paused = transport.is_reading()
        if paused:
            transport.pause_reading()
        try:
            while wait > 0 and self.dropped is None:
                await self._rest(wait)
                wait = self._bytes.debt(time.monotonic())
        finally:
            if paused and not transport.is_closing():
                transport.resume_reading()

    async def _rest(self, seconds: float) -> None:
        self._resting = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait([self._resting], timeout=seconds)
        finally:
            self._resting = None

    def _wake(self) -> None:
        """Stop resting: the server is closing the connection, and must read the answer."""
        if self._resting is not None and not self._resting.done():
            self._resting.set_result(None)

    def _over_bytes(self, what: str) -> None:
        if not self._warned_bytes:
            self._warned_bytes = True
            log.warning(
                "client %s on %s sends more than %g bytes a second: %s",
                self.id,
                self.endpoint,
                self._bytes.rate,
                what,
            )

    def info(self) -> dict[str, Any]:
        """The client as GET /clients shows it."""
        return {
            "client_id": self.id,
            "endpoint": str(self.endpoint),
            "connected_at": self.connected_at,
            "connected_since": _iso(self.connected_at),
            "sent": self.sent,
            "received": self.received,
            "received_bytes": self.received_bytes,
            "ignored": self.ignored,
            "throttled": self.throttled,
            "skipped": self.skipped,
            "backlog": self.backlog,
        }

    async def _write(self) -> None:
        websocket = self.websocket
        queue = self._queue
        try:
            while True:
                item, size = await queue.get()
                if isinstance(item, str):
                    await websocket.send_text(item)
                elif isinstance(item, bytes):
                    await websocket.send_bytes(item)
                else:
                    await self._goodbye(item)
                    return
                self._queued -= size
                self.sent += 1
        except asyncio.CancelledError:
            raise
        except Exception as error:  # whatever the server raises for a vanished peer
            log.debug("client %s on %s: send failed: %r", self.id, self.endpoint, error)
            self.drop(1011, "send failed", quiet=True)  # the peer is gone

    async def _goodbye(self, goodbye: Goodbye) -> None:
        if goodbye.abort and _abort(self.websocket):
            return
        # Without the transport, a drop falls back to a close frame saying so.
        await self._close(goodbye.code, goodbye.reason)

    async def _close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.DISCONNECTED:
            return
        # Taken now: once the close is sent, the connection's handler ends, and with it
        # the scope's hold on the transport (see TransportMiddleware).
        transport = self.websocket.scope.get(TRANSPORT_KEY)
        with contextlib.suppress(Exception):  # the peer may be gone already
            await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_GRACE)
            # The close frame may sit behind a backlog the peer is not reading: give it
            # the grace period to read up and answer, then cut the connection regardless.
            await asyncio.sleep(CLOSE_GRACE)
        if transport is not None:
            transport.abort()


class ByteBudget:
    """How many bytes a client may still send: ``rate`` bytes a second, saved up to twice
    that. A frame is taken while the budget is not overdrawn, and may overdraw it, so a
    frame larger than the burst still gets through; the frames after it wait (or, without
    a way to wait, are ignored) until the debt is paid off (see :meth:`debt`)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._allowance = 2 * rate
        self._at: float | None = None

    def overdrawn(self, now: float) -> bool:
        """Whether the budget is overdrawn at ``now`` (seconds): the next frame must wait."""
        self._refill(now)
        return self._allowance < 0

    def spend(self, size: int, now: float) -> None:
        """Take ``size`` bytes from the budget at ``now``, overdrawing it if need be."""
        self._refill(now)
        self._allowance -= size

    def debt(self, now: float) -> float:
        """Seconds until the budget is no longer overdrawn (0 if it is not)."""
        self._refill(now)
        return max(0.0, -self._allowance / self.rate)

    def _refill(self, now: float) -> None:
        if self._at is not None:
            self._allowance = min(2 * self.rate, self._allowance + (now - self._at) * self.rate)
        self._at = now


# Tasks closing dropped clients; kept here so they are not garbage-collected mid-way.
_background: set[asyncio.Task[None]] = set()


def _abort(websocket: WebSocket) -> bool:
    """Cut the connection's TCP transport; False when it is not known (not uvicorn)."""
    transport = websocket.scope.get(TRANSPORT_KEY)
    if transport is None:
        return False
    transport.abort()
    return True


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _size(text: str | None, data: bytes | None) -> int:
    """A frame's size in bytes; a text frame's as UTF-8, encoded only if not ASCII (an
    O(1) check in CPython: a flood of 1 MiB ASCII frames is not copied to be measured)."""
    if text is None:
        return len(data or b"")
    return len(text) if text.isascii() else len(text.encode(errors="surrogatepass"))


def _describe(message: Any) -> str:
    text = message.get("text")
    if text is None:
        size = len(message.get("bytes") or b"")
        return f"a binary frame of {size} bytes"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return f"a text frame that is not JSON: {text[:80]!r}"
    return f"a JSON frame: {json.dumps(data)[:200]}"
