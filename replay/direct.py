"""Frames written straight to uvicorn's WebSocket connections: the fast path of fan-out.

Going through ASGI costs a task switch and uvicorn's ``send`` per frame per client. When
the server is uvicorn with its ``websockets-sansio`` implementation (what ``replay serve``
runs), replay can do what the ``websockets`` library's own ``broadcast()`` does: put
each frame on every connection's transport synchronously, with no task and no await.
A frame is framed once (server frames are not masked), and the same bytes are written
to every connection that negotiated no extension; a connection that negotiated
compression gets the frame through its own protocol object.

The transport's write buffer is then the client's send queue, bounded in bytes: a
client that lets it grow past the limit is dropped, as one whose queue is full is.
Anything else (another server, another WebSocket implementation) uses the ASGI path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State

#: Where :class:`TransportMiddleware` leaves a connection's transport in its ASGI scope.
TRANSPORT_KEY = "replay.transport"
#: Where it leaves the server's protocol object for the connection, if it is uvicorn's.
PROTOCOL_KEY = "replay.protocol"


#: What :meth:`Line.offer` did with a frame.
WRITTEN, CLOSING, BEHIND = 0, 1, 2


class TransportMiddleware:
    """ASGI middleware that keeps each WebSocket connection's transport in its scope.

    ASGI has no way to cut a connection whose peer stopped reading (a close frame can
    never get out), nor to write without a task switch per frame. uvicorn's ``send``
    callable is a method of its protocol object, which holds the asyncio transport and,
    with ``websockets-sansio``, the ``websockets`` protocol; remembering them lets a
    dropped client be cut at once and frames be written directly. With another server
    nothing is remembered: dropped clients end by the server's ping timeout, and frames
    go through ASGI.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        quiet_invalid_utf8()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            protocol = getattr(send, "__self__", None)
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                scope[TRANSPORT_KEY] = transport
            if isinstance(getattr(protocol, "conn", None), Protocol) and hasattr(
                protocol, "close_sent"
            ):
                scope[PROTOCOL_KEY] = protocol
        try:
            await self.app(scope, receive, send)
        finally:
            # uvicorn's protocol holds the scope: leaving it in there too would make a
            # cycle, and every closed connection would wait for the cyclic collector.
            scope.pop(PROTOCOL_KEY, None)
            scope.pop(TRANSPORT_KEY, None)


#: What uvicorn's ``websockets-sansio`` protocol logs, with a traceback, at ERROR, for a
#: text frame that is not valid UTF-8 (it then closes the connection with 1007).
INVALID_UTF8 = "Invalid UTF-8 sequence received from client."


class InvalidUtf8Filter(logging.Filter):
    """Makes uvicorn's ERROR and traceback for a text frame that is not UTF-8 one WARNING
    line naming the client: it is the client's mistake (or malice), not the server's, and
    any client could fill the log with tracebacks. uvicorn logs it once per connection,
    as it closes it with 1007 (RFC 6455) and discards what follows."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == INVALID_UTF8 and record.levelno >= logging.ERROR:
            record.msg = "%s sent a text frame that is not valid UTF-8: closed with 1007"
            record.args = (_sender(record),)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def quiet_invalid_utf8() -> None:
    """Put :class:`InvalidUtf8Filter` on uvicorn's error logger (once, however often
    called)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, InvalidUtf8Filter) for existing in logger.filters):
        logger.addFilter(InvalidUtf8Filter())


def _sender(record: logging.LogRecord) -> str:
    """Who sent the frame, as far as the record tells: the connection's address, path and
    client id, read from uvicorn's protocol object in the traceback's frame."""
    traceback = record.exc_info[2] if record.exc_info else None
    protocol = traceback.tb_frame.f_locals.get("self") if traceback is not None else None
    scope = getattr(protocol, "scope", None)
    if not isinstance(scope, dict):
        return "a WebSocket client"
    host, port = scope.get("client") or ("?", 0)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    # Only the client id of the query: it may hold anything else, a token included.
    client_id = query.get("client_id", ["none given"])[0]
    return f"a WebSocket client at {host}:{port} on {scope.get('path')} (client_id {client_id})"


def framed(frame: str | bytes) -> bytes:
    """A frame as a server puts it on the wire with no extension: header, then payload."""
    if isinstance(frame, str):
        return Frame(Opcode.TEXT, frame.encode()).serialize(mask=False)
    return Frame(Opcode.BINARY, frame).serialize(mask=False)


class Burst(threading.local):
    """Frames due at the same moment, written to each direct line with one ``write``.

    While a burst is open, what is offered to a :class:`Line` is kept in the line's
    ``pending`` list instead of written; :meth:`flush` writes each line's frames joined,
    one ``transport.write`` (one ``send()`` system call) per connection instead of one
    per frame. The runner opens one for the frames it plays in one turn of the event
    loop and flushes it before it lets the loop run anything else (see
    :meth:`replay.runner.Runner`), so a frame waits for nothing but the frames due with
    it: a paced frame still goes out at its time. A broadcast made with no burst open
    (an HTTP ``/send``, Schwarm's API) opens its own and flushes it before returning.

    In case a burst is left open by mistake, opening one also asks the event loop to
    flush it in its next turn, before any callback scheduled after it: nothing written
    by uvicorn itself (a pong, a close frame) can overtake frames kept in a burst.

    One per thread, as an event loop is (tests and embedders may run servers in threads).
    """

    def __init__(self) -> None:
        self.open = False
        #: Counts the bursts flushed: what is known about the lines in one burst (open,
        #: how far behind) holds until it ends, as nothing else runs meanwhile.
        self.epoch = 0
        #: Whether a frame went into a client's send queue (not a direct line) in this
        #: burst: its writer task needs the loop to send it, so the burst should end.
        self.queued = False
        self.lines: list[Line] = []

    def hold(self, safety: bool = True) -> bool:
        """Open a burst if none is; True if this call opened it (the caller flushes).
        With ``safety``, the event loop flushes it in its next turn if nobody has."""
        if self.open:
            return False
        self.open = True
        if safety:
            with contextlib.suppress(RuntimeError):  # no running loop: flushed by hand
                asyncio.get_running_loop().call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Write every line's pending frames (one write per line) and end the burst."""
        if not self.open:
            return
        self.open = self.queued = False
        self.epoch += 1
        lines, self.lines = self.lines, []
        for line in lines:  # Line.flush, inline: once per client per burst
            pending = line.pending
            if pending:
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                pending.clear()
                if line.conn.state is State.OPEN and not line.protocol.close_sent:
                    line.transport.write(data)


#: The burst in force in this thread (its event loop's).
burst = Burst()


class Line:
    """A direct line to one uvicorn ``websockets-sansio`` connection.

    The only place that knows uvicorn's protocol object: its ``conn`` (the ``websockets``
    protocol), ``transport`` and ``close_sent``.
    """

    __slots__ = ("backlog", "conn", "pending", "protocol", "transport")

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.conn: Protocol = protocol.conn
        self.transport = protocol.transport
        #: Bytes kept by the open burst, in order (see :class:`Burst`).
        self.pending: list[bytes] = []
        #: Bytes not yet taken by the peer, as of the start of the burst plus what was
        #: kept since: the bound is checked against it (see :meth:`measure`).
        self.backlog = 0

    @classmethod
    def of(cls, scope: Scope) -> Line | None:
        """The direct line of the connection in ``scope``, or None (not uvicorn's)."""
        protocol = scope.get(PROTOCOL_KEY)
        return None if protocol is None else cls(protocol)

    @property
    def open(self) -> bool:
        """Whether frames may still be written (no close sent, not closing)."""
        return (
            self.conn.state is State.OPEN
            and not self.protocol.close_sent
            and not self.transport.is_closing()
        )

    @property
    def plain(self) -> bool:
        """Whether no extension (compression) is in force: :func:`framed` bytes do."""
        return not self.conn.extensions

    @property
    def buffered(self) -> int:
        """Bytes written and not yet taken by the peer's socket (those a burst keeps
        included)."""
        return int(self.transport.get_write_buffer_size()) + sum(map(len, self.pending))

    def measure(self) -> int:
        """Set and return :attr:`backlog`: what :attr:`buffered` says now."""
        backlog: int = self.transport.get_write_buffer_size()
        if self.pending:
            backlog += sum(map(len, self.pending))
        self.backlog = backlog
        return backlog

    def ready(self) -> bool:
        """Whether the line is :attr:`open` and :attr:`plain` (then :meth:`measure`d): what
        a fan-out checks once per client per burst, in one call."""
        conn, transport = self.conn, self.transport
        if (
            conn.extensions
            or conn.state is not State.OPEN
            or self.protocol.close_sent
            or transport.is_closing()
        ):
            return False
        backlog: int = transport.get_write_buffer_size()
        if self.pending:
            backlog += sum(map(len, self.pending))
        self.backlog = backlog
        return True

    def offer(self, frame: str | bytes, shared: bytes | None, bound: int) -> int:
        """Write ``frame`` (see :meth:`write`) and return WRITTEN, unless the connection is
        closing (CLOSING, see :attr:`open`) or more than ``bound`` bytes wait in its
        transport (BEHIND, see :attr:`buffered`): then nothing is written.

        The checks and the write in one call: it is made once per frame per client."""
        conn, transport = self.conn, self.transport
        if conn.state is not State.OPEN or self.protocol.close_sent or transport.is_closing():
            return CLOSING
        if self.measure() > bound and not self.catch_up(bound):
            return BEHIND
        self.write(frame, shared)
        return WRITTEN

    def catch_up(self, bound: int) -> bool:
        """A line past ``bound`` with bytes kept by a burst: write them now (the peer's
        socket may take them, as it would have frame by frame) and say whether the line
        is within the bound then. The bound is on what the peer has not taken, not on
        how many frames one burst holds."""
        if self.pending:
            self.flush()
        return self.measure() <= bound

    def write(self, frame: str | bytes, shared: bytes | None) -> None:
        """Write ``frame``; ``shared`` is :func:`framed` of it, used when no extension
        (compression) is in force."""
        if shared is not None and not self.conn.extensions:
            self.put(shared)
            return
        if isinstance(frame, str):
            self.conn.send_text(frame.encode())
        else:
            self.conn.send_binary(frame)
        self.put(b"".join(self.conn.data_to_send()))

    def put(self, data: bytes) -> None:
        """Write ``data``, or keep it for the end of the open burst."""
        if burst.open:
            if not self.pending:
                burst.lines.append(self)
            self.pending.append(data)
            self.backlog += len(data)
        elif self.pending:  # kept by a burst not flushed yet: they go first
            self.pending.append(data)
            self.flush()
        else:
            self.transport.write(data)

    def flush(self) -> None:
        """Write the frames kept by the burst, in one write; none once a close frame has
        gone out (nothing may follow it)."""
        pending = self.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        if self.conn.state is State.OPEN and not self.protocol.close_sent:
            self.transport.write(data)
