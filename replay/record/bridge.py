"""A WebSocket session through the proxy: two ``websockets`` sans-I/O protocols on
asyncio streams, a :class:`~websockets.server.ServerProtocol` facing the client and a
:class:`~websockets.client.ClientProtocol` facing the upstream, and every frame passed
from one to the other as it comes, then written down.

- Text, binary and continuation frames are passed on as they are (a fragmented message
  stays fragmented) and recorded once whole.
- A ping is passed on. The sans-I/O layer answers every ping with a pong by itself, so
  the side that pinged has its pong at once, from the proxy; the far side's own pong is
  recorded but not passed on again, so each side sees one pong per ping, as without a
  proxy. A pong that answers no ping (a heartbeat) is passed on.
- A close frame is passed on with its code and reason (the sans-I/O layer answers it on
  its side with the same code, as RFC 6455 says); a connection cut without a close frame
  (1006) is cut on the other side too; a frame the proxy cannot take (over
  :data:`MAX_MESSAGE`, a protocol error) closes that side with the library's code and
  the other with the same.

Bytes are written to the other side before anything is recorded, and reading from one
side waits while the other side's socket buffer is full (TCP backpressure end to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, State

from replay.record.format import End, Side
from replay.record.sessions import Observer, SessionInfo, SessionWriter

#: The largest message either side may send through the proxy, in bytes.
MAX_MESSAGE = 16 * 1024 * 1024
#: Seconds both sides have to finish closing once a close began, before they are cut.
CLOSE_TIMEOUT = 10.0
#: Pings remembered per side whose pong is not passed on again.
PENDING_PINGS = 64
READ_SIZE = 256 * 1024
_NO_STATUS = 1005
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)

#: The protocols' own logger: quiet (they would log each connection opening and closing).
logger = logging.getLogger("replay.record")
wire_logger = logging.getLogger("replay.record.wire")
wire_logger.setLevel(logging.WARNING)


@dataclass(eq=False)
class Peer:
    """One side of a session: its protocol object and its stream."""

    side: Side
    protocol: Protocol
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    #: Frames read with the handshake's answer, to pass on once the session opens.
    early: list[Frame] = field(default_factory=list)
    #: Payloads of pings passed on to this side whose pong the proxy already gave.
    answered: deque[bytes] = field(default_factory=lambda: deque(maxlen=PENDING_PINGS))
    #: The parts of a fragmented message read so far, and its opcode.
    parts: list[bytes] = field(default_factory=list)
    opcode: Opcode = Opcode.TEXT
    frames: int = 0

    def flush(self) -> None:
        """Write what the protocol has to send, in one write (one system call for all the
        frames of a read); an empty chunk means: end the stream."""
        chunks = self.protocol.data_to_send()
        if not chunks or self.writer.is_closing():
            return
        data = b"".join(chunks)
        if data:
            self.writer.write(data)
        if not chunks[-1]:  # the protocol sends nothing after the end of the stream
            if self.writer.can_write_eof():
                self.writer.write_eof()
            else:
                self.writer.close()

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()


class Bridge:
    """One WebSocket session, open on both sides, passed through and recorded."""

    def __init__(
        self,
        client: Peer,
        server: Peer,
        recording: SessionWriter,
        info: SessionInfo,
        observer: Observer,
    ) -> None:
        self.client, self.server = client, server
        self.recording = recording
        self.info = info
        self.observer = observer
        #: How the session ended, once it did: code, reason, by whom (None: the proxy).
        self.ending: tuple[int | None, str, Side | None] | None = None
        self._closing = asyncio.Event()

    async def run(self) -> End:
        """Pass frames both ways until both sides have closed (or were cut); write the
        end line; return it."""
        tasks: list[asyncio.Task[Any]] = []
        clean = False
        try:
            self._handle(self.server, self.client, self.server.early)
            pumps = [asyncio.create_task(self._pump(p)) for p in (self.client, self.server)]
            tasks = [*pumps, asyncio.create_task(self._closing.wait())]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            _, pending = await asyncio.wait(pumps, timeout=CLOSE_TIMEOUT)
            clean = not pending
        finally:
            await _cancel(tasks)
            for peer in (self.client, self.server):
                if clean:
                    peer.writer.close()
                else:  # a side that does not finish closing (or replay stopping) is cut
                    peer.writer.transport.abort()
            code, reason, by = self.ending or (1006, "", None)
            end = self.recording.end(code, reason, by)
            frames = {"client": self.client.frames, "server": self.server.frames}
            self.observer.closed(self.info, end, frames)
        return end

    def stop(self, code: int = 1001, reason: str = "") -> None:
        """Close both sides with ``code`` (replay is stopping)."""
        self._finish(code, reason, None)
        for peer in (self.client, self.server):
            if peer.protocol.state is State.OPEN:
                peer.protocol.send_close(code, reason)
                peer.flush()

    async def _pump(self, source: Peer) -> None:
        """Read ``source`` until its stream ends, passing each frame to the other side."""
        target = self.server if source is self.client else self.client
        while True:
            try:
                data = await source.reader.read(READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            if data:
                source.protocol.receive_data(data)
            else:
                source.protocol.receive_eof()
            self._handle(source, target, source.protocol.events_received())
            if not data:
                return
            await target.drain()

    def _handle(self, source: Peer, target: Peer, events: Iterable[object]) -> None:
        frames = [event for event in events if isinstance(event, Frame)]
        for frame in frames:
            self._forward(source, target, frame)
        self._settle(source, target)
        target.flush()
        source.flush()
        for frame in frames:
            self._record(source, frame)

    def _forward(self, source: Peer, target: Peer, frame: Frame) -> None:
        opcode, protocol = frame.opcode, target.protocol
        if opcode is Opcode.CLOSE:
            close = source.protocol.close_rcvd
            code = None if close is None or close.code == _NO_STATUS else close.code
            reason = "" if close is None else close.reason
            self._finish(code, reason, source.side)
            if protocol.state is State.OPEN:
                protocol.send_close(code, reason)
            return
        if opcode is Opcode.PONG and frame.data in source.answered:
            source.answered.remove(bytes(frame.data))  # the proxy answered it already
            return
        if protocol.state is not State.OPEN:
            return  # the other side is closing: nothing more gets through
        if opcode is Opcode.TEXT:
            protocol.send_text(frame.data, frame.fin)
        elif opcode is Opcode.BINARY:
            protocol.send_binary(frame.data, frame.fin)
        elif opcode is Opcode.CONT:
            protocol.send_continuation(frame.data, frame.fin)
        elif opcode is Opcode.PING:
            target.answered.append(bytes(frame.data))
            protocol.send_ping(frame.data)
        else:
            protocol.send_pong(frame.data)

    def _settle(self, source: Peer, target: Peer) -> None:
        """After ``source``'s frames: if it went away without a close frame, or the
        proxy failed it (a protocol error, a message too big), end the other side too."""
        protocol = source.protocol
        if self.ending is not None or protocol.close_rcvd is not None:
            return
        if protocol.close_sent is not None:  # the proxy failed this side
            code, reason = protocol.close_sent.code, protocol.close_sent.reason
            self._finish(code, reason, source.side)
            if target.protocol.state is State.OPEN:
                target.protocol.send_close(code, reason)
        elif protocol.state is State.CLOSED:  # cut: no close frame
            self._finish(1006, "", source.side)
            target.flush()
            target.writer.close()

    def _finish(self, code: int | None, reason: str, by: Side | None) -> None:
        if self.ending is None:
            self.ending = (code, reason, by)
        self._closing.set()

    def _record(self, source: Peer, frame: Frame) -> None:
        opcode, side = frame.opcode, source.side
        if opcode in _DATA:
            if opcode is not Opcode.CONT:
                source.opcode = opcode
            if not frame.fin:
                source.parts.append(bytes(frame.data))
                return
            data = bytes(frame.data)
            if source.parts:
                data, source.parts = b"".join([*source.parts, data]), []
            if source.opcode is Opcode.TEXT:
                self.recording.text(side, data.decode("utf-8", "replace"))
            else:
                self.recording.data(side, "binary", data)
        elif opcode is Opcode.CLOSE:
            close = source.protocol.close_rcvd
            code = None if close is None or close.code == _NO_STATUS else close.code
            self.recording.close(side, code, "" if close is None else close.reason)
            data = bytes(frame.data)
        else:
            data = bytes(frame.data)
            self.recording.data(side, "ping" if opcode is Opcode.PING else "pong", data)
        source.frames += 1
        self.observer.frame(side, len(data))


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them; log what any of them raised."""
    for task in tasks:
        task.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            logger.error("a session's reader failed", exc_info=outcome)
