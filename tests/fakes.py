"""A stand-in for Starlette's WebSocket, for testing fan-out without sockets."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocketState
from websockets.protocol import State

from replay.direct import PROTOCOL_KEY


class FakeWebSocket:
    """Records what is sent; can stall (never finish a send) or die (fail every send).

    It is its own transport (see TransportMiddleware), which records when its reading is
    paused and resumed; ``transport=False`` makes it a connection of a server whose
    transport replay cannot reach."""

    def __init__(
        self,
        *,
        stalled: bool = False,
        dead: bool = False,
        client_id: str | None = None,
        transport: bool = True,
    ) -> None:
        self.sent: list[str | bytes] = []
        self.query_params: dict[str, str] = {} if client_id is None else {"client_id": client_id}
        self.stalled = stalled
        self.dead = dead
        self.accepted = False
        self.closed: tuple[int, str] | None = None
        self.aborted = False
        self.application_state = WebSocketState.CONNECTING
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.scope: dict[str, Any] = {"replay.transport": self} if transport else {}
        self.reading = True
        self.pauses = self.resumes = 0

    async def accept(self, subprotocol: str | None = None) -> None:
        self.accepted = True
        self.subprotocol = subprotocol
        self.application_state = WebSocketState.CONNECTED

    async def send_text(self, text: str | bytes) -> None:
        if self.dead:
            raise OSError("connection reset by peer")
        if self.stalled:
            await asyncio.Event().wait()  # a peer that never reads: the send never completes
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.send_text(data)  # type: ignore[arg-type]

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.stalled:
            await asyncio.Event().wait()  # the close frame cannot get out either
        self.closed = (code, reason or "")
        self.application_state = WebSocketState.DISCONNECTED
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": code})

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True
        self.resumes += 1

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})

    async def receive(self) -> dict[str, Any]:
        return await self.incoming.get()


class FakeTransport:
    """An asyncio transport of a direct line: records its writes; ``buffered`` bytes wait
    in it, and it may be closing."""

    def __init__(self, buffered: int = 0, closing: bool = False) -> None:
        self.buffered, self.closing = buffered, closing
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(data)


class FakeConn:
    """The ``websockets`` protocol of a direct line: its state and extensions."""

    def __init__(self, state: State = State.OPEN) -> None:
        self.state = state
        self.extensions: list[object] = []


class FakeProtocol:
    """uvicorn's protocol object, as far as a direct line uses it."""

    def __init__(self, transport: FakeTransport, conn: FakeConn, close_sent: bool = False):
        self.transport, self.conn, self.close_sent = transport, conn, close_sent


def direct(websocket: FakeWebSocket, protocol: FakeProtocol | None = None) -> FakeProtocol:
    """Give ``websocket`` a direct line (see replay.direct): what uvicorn's protocol object
    would be in its scope; returns the fake protocol, whose transport records the writes."""
    protocol = protocol or FakeProtocol(FakeTransport(), FakeConn())
    websocket.scope[PROTOCOL_KEY] = protocol
    return protocol
