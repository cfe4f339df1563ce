"""``WebsocketManager`` (``/ws``) and ``StreamManager`` (``/ws/stream``), Schwarm-compatible.

Both keep the seed's singleton access: ``WebsocketManager()`` is the same object every time
in a process, so code written against Schwarm's managers runs unchanged. Tests and
embedders can build independent ones with ``WebsocketManager.isolated()``.

Sending never waits for a client: a frame is encoded once and put in each client's
bounded queue (see :mod:`replay.client`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from enum import Enum
from typing import Any, ClassVar, Protocol, Self

from starlette.websockets import WebSocket

from replay.client import (
    BYTES_PER_FRAME,
    CLOSE_TOO_SLOW,
    DEFAULT_CLIENT_BYTES,
    DEFAULT_CLIENT_RATE,
    DEFAULT_QUEUE_SIZE,
    TOO_SLOW,
    Client,
    FrameListener,
)
from replay.direct import burst, framed
from replay.feed import Feed
from replay.protocol import (
    CLOSE_FRAME,
    Endpoint,
    StreamType,
    chunk_frame,
    encode,
    message_frame,
)
from replay.scenario import CLIENT_ID_PATTERN, CLIENT_ID_RULE

log = logging.getLogger("replay.client")


class Session(Protocol):
    """A connection's other end besides replay: under ``serve --upstream``, the real
    backend it is proxied to (see :mod:`replay.record.live`)."""

    #: The subprotocol the connection is accepted with (the upstream's choice).
    subprotocol: str | None

    def start(self, client: Client) -> None:
        """The connection is accepted as ``client``: start passing the other end's frames on."""

    def forward(self, frame: str | bytes) -> None:
        """A frame the client sent (never waits)."""

    async def end(self, code: int, reason: str) -> None:
        """The client has gone, with this close code and reason: end the other end too."""


#: Opens a session for a connection before it is accepted, or answers the connection
#: itself and returns None (the other end cannot be reached).
Opener = Callable[["EndpointManager", WebSocket], Awaitable[Session | None]]


class EndpointManager:
    """The clients of one endpoint, and fan-out to them."""

    endpoint: str
    _instance: ClassVar[EndpointManager | None] = None

    def __new__(cls) -> Self:
        instance = cls.__dict__.get("_instance")
        if instance is None:
            instance = cls.isolated()
            cls._instance = instance
        return instance

    @classmethod
    def isolated(cls, queue_size: int = DEFAULT_QUEUE_SIZE, endpoint: str | None = None) -> Self:
        """A new manager, independent of the process-wide one (for ``endpoint``: a
        declared endpoint's path, or the class's own)."""
        manager = object.__new__(cls)
        if endpoint is not None:
            manager.endpoint = endpoint
        manager.queue_size = queue_size
        manager.clients = {}
        manager.on_connect = None
        manager.on_frame = None
        manager.opener = None
        manager.feed = None
        manager.frames_sent = manager.bytes_sent = manager.drops = 0
        manager.listening = True
        manager.client_rate = DEFAULT_CLIENT_RATE
        manager.client_bytes = DEFAULT_CLIENT_BYTES
        manager._version = 0
        manager._sorted = None
        manager._lines = manager._others = []
        return manager

    queue_size: int
    clients: dict[WebSocket, Client]
    #: Called with each client once it is connected (the server plays on-connect scenarios).
    on_connect: Callable[[Client], None] | None
    #: Called with each text frame a client sends (the server feeds waits and reactions).
    on_frame: FrameListener | None
    #: Opens each connection's session with the real backend (``serve --upstream``), if set.
    opener: Opener | None
    #: Where connections, disconnections and client frames are published, if anywhere.
    feed: Feed | None
    #: Frame copies handed to clients' send queues, and their size in bytes (UTF-8).
    frames_sent: int
    bytes_sent: int
    #: Clients dropped because their send queue was full.
    drops: int
    #: Whether the server hears this endpoint's clients' frames: ``on_frame`` is called
    #: only then (endpoints that take messages; not Schwarm's stream).
    listening: bool
    #: Frames per second a client may send before the excess is ignored.
    client_rate: float
    #: Bytes per second a client may send before it is read more slowly (see
    #: :meth:`replay.client.Client.receive_until_closed`).
    client_bytes: float
    # Changes whenever a client comes or goes: the split made by _sort is then stale.
    _version: int
    _sorted: tuple[int, int] | None
    _lines: list[Client]
    _others: list[Client]

    def __len__(self) -> int:
        return len(self.clients)

    async def connect(
        self, websocket: WebSocket, client_id: str | None = None, subprotocol: str | None = None
    ) -> Client:
        """Accept the connection (with ``subprotocol``, if given) and start sending to it."""
        await websocket.accept(subprotocol=subprotocol)
        client = Client(
            websocket, self.endpoint, self.queue_size, self._forget, client_id, self.client_bytes
        )
        self.clients[websocket] = client
        client.start()
        self._changed()
        log.info("client %s connected to %s (%d connected)", client.id, self.endpoint, len(self))
        if self.feed is not None:
            self.feed.publish(
                "client.connected",
                client=client.id,
                endpoint=str(self.endpoint),
                clients=len(self),
            )
        return client

    async def disconnect(self, websocket: WebSocket) -> None:
        """Stop sending to the connection (it has closed). Safe to call twice."""
        client = self.clients.pop(websocket, None)
        if client is None:
            return
        self._changed()
        await client.stop()
        self._gone(client)

    def _gone(self, client: Client) -> None:
        log.info(
            "client %s disconnected from %s (%d connected)", client.id, self.endpoint, len(self)
        )
        if self.feed is not None:
            self.feed.publish(
                "client.disconnected",
                client=client.id,
                endpoint=str(self.endpoint),
                clients=len(self),
                reason=client.dropped,
                code=client.close_code,
                dropped=client.cut,
            )

    async def serve(self, websocket: WebSocket) -> None:
        """Handle one connection from accept to close: the body of a WebSocket route.

        The client's id is its ``?client_id=`` query parameter if it gives one; a bad one
        gets the connection closed with 1008 and a reason saying what is allowed. With an
        ``opener`` (``serve --upstream``), the connection's session with the real backend
        is opened before it is accepted, gets every frame the client sends, and ends with
        it.
        """
        client_id = websocket.query_params.get("client_id")
        if client_id is not None and not CLIENT_ID_PATTERN.match(client_id):
            await websocket.accept()
            await websocket.close(1008, f"invalid client_id: expected {CLIENT_ID_RULE}")
            return
        session = None
        if self.opener is not None:
            session = await self.opener(self, websocket)
            if session is None:
                return  # the other end cannot be reached: the opener answered the client
        ended = (1006, "")
        try:
            subprotocol = session.subprotocol if session is not None else None
            client = await self.connect(websocket, client_id, subprotocol)
            try:
                if session is not None:
                    session.start(client)
                if self.on_connect is not None:
                    self.on_connect(client)
                every = session.forward if session is not None else None
                ended = await client.receive_until_closed(self._received, every)
                client.closed = ended
            finally:
                await self.disconnect(websocket)
                ended = client.goodbye or ended  # the server closed it: with that code
        finally:
            if session is not None:
                await session.end(*ended)

    def _received(self, client: Client, text: str) -> None:
        if not client.allow(self.client_rate):
            return
        if self.feed is not None:
            self.feed.publish(
                "frame.received", client=client.id, endpoint=str(self.endpoint), frame=text
            )
        if self.on_frame is not None and self.listening:
            self.on_frame(client, text)

    def broadcast(self, frame: str | bytes, to: str | None = None) -> int:
        """Queue a frame for every client, or for the clients with id ``to``; return how
        many took it. Never waits.

        On direct lines the frame is kept by the open burst (see
        :class:`replay.direct.Burst`) and written when it is flushed; with no burst
        open, before this returns."""
        if not self.clients:
            return 0
        # Framed once for every direct line.
        shared = framed(frame)
        opened = burst.hold(safety=False)
        try:
            if to is None:
                reached = self._fan_out(frame, shared)
            else:
                # A copy of the clients: one too far behind is dropped, which removes it.
                reached = 0
                for client in list(self.clients.values()):
                    if client.id == to and client.offer(frame, shared):
                        reached += 1
        finally:
            if opened:
                burst.flush()
        if reached:
            self.frames_sent += reached
            size = len(frame) if isinstance(frame, bytes) else len(frame.encode())
            self.bytes_sent += reached * size
        return reached

    def _fan_out(self, frame: str | bytes, shared: bytes) -> int:
        """Offer ``frame`` to every client; how many took it. The fan-out's hot loop: on
        each open direct line with no extension, one bound check and one append."""
        if self._sorted != (burst.epoch, self._version):
            self._sort()
        size = len(shared)
        bound = self.queue_size * (size if size > BYTES_PER_FRAME else BYTES_PER_FRAME)
        behind: list[Client] = []
        lines = self._lines
        for client in lines:
            line = client.line
            assert line is not None  # for mypy: _sort keeps clients with a line
            if line.backlog > bound and not line.catch_up(bound):
                behind.append(client)
                continue
            line.pending.append(shared)
            line.backlog += size
            client.sent += 1
        reached = len(lines) - len(behind)
        for client in behind:  # after the loop: a drop changes self.clients
            client.drop(CLOSE_TOO_SLOW, TOO_SLOW)
        for client in self._others:
            if client.offer(frame, shared):
                reached += 1
        return reached

    def _changed(self) -> None:
        """A client came or went: the split of the clients is stale, and let go of (a
        client that left must not be kept alive by it until the next frame)."""
        self._version += 1
        self._sorted = None
        self._lines = self._others = []

    def _sort(self) -> None:
        """Split the clients, once per burst: open direct lines with no extension (what
        is checked here holds until the burst ends: nothing else runs meanwhile) and the
        others, which take each frame through :meth:`Client.offer` (a send queue, a
        compressing protocol, a connection going away, a client dropped)."""
        lines: list[Client] = []
        others: list[Client] = []
        for client in list(self.clients.values()):
            line = client.line
            if (
                line is not None
                and client.dropped is None
                and client.queue_size == self.queue_size
                and line.ready()
            ):
                lines.append(client)
                burst.lines.append(line)
            else:
                others.append(client)
        self._lines, self._others = lines, others
        self._sorted = (burst.epoch, self._version)

    def pass_on(self, client: Client, frame: str | bytes) -> bool:
        """Queue a frame for one connection (its upstream's, see :class:`Session`), counted
        like a broadcast's; whether it took it. Never waits."""
        if not client.offer(frame):
            return False
        self.frames_sent += 1
        self.bytes_sent += len(frame) if isinstance(frame, bytes) else len(frame.encode())
        return True

    async def close_all(self, code: int, reason: str) -> None:
        """Close every client's connection now with ``code`` (the server is stopping)."""
        await asyncio.gather(
            *(client.close_now(code, reason) for client in list(self.clients.values()))
        )

    def hangup(self, to: str | None, code: int, reason: str, abort: bool = False) -> int:
        """Close every client's connection (or those with id ``to``) after what is queued;
        with ``abort``, cut it without a close frame. Returns how many. Never waits."""
        ended = 0
        for client in list(self.clients.values()):
            if (to is None or client.id == to) and client.hangup(code, reason, abort):
                ended += 1
        return ended

    def _forget(self, client: Client) -> None:
        # The server gave up on the client (dropped, closed on purpose): it is gone now,
        # even if its connection takes a moment to end.
        if self.clients.get(client.websocket) is client:
            del self.clients[client.websocket]
            self._changed()
            if client.dropped == TOO_SLOW:
                self.drops += 1
            self._gone(client)


class WebsocketManager(EndpointManager):
    """Typed messages on ``/ws``: ``{"message_type": "...", "message": "..."}``."""

    endpoint = Endpoint.MESSAGES.value
    _instance = None

    async def send_message(self, message: Any) -> int:
        """Send a message to every client.

        ``message`` may be a Schwarm ``WebsocketMessage`` (any object with ``message_type``
        and ``message`` attributes), a mapping with those keys, or an already encoded frame.
        """
        return self.broadcast(_message_text(message))


class StreamManager(EndpointManager):
    """Streamed chunks on ``/ws/stream``: ``{"type": "default"|"tool", "content": "..."}``."""

    endpoint = Endpoint.STREAM.value
    _instance = None

    async def write(self, chunk: str, message_type: Enum | str = StreamType.DEFAULT) -> int:
        """Send a chunk to every client; empty chunks are skipped, as in Schwarm."""
        if not chunk:
            return 0
        kind = message_type.value if isinstance(message_type, Enum) else message_type
        return self.broadcast(chunk_frame(chunk, StreamType(kind)))

    async def close(self) -> int:
        """Send the end-of-stream signal ``{"type": "close", "content": null}``."""
        return self.broadcast(CLOSE_FRAME)


#: Schwarm's name for the stream's chunk types (``MessageType.DEFAULT``, ``MessageType.TOOL``).
MessageType = StreamType


def _message_text(message: Any) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, Mapping):
        return encode(dict(message))
    kind = message.message_type
    return message_frame(str(kind.value if isinstance(kind, Enum) else kind), str(message.message))


class LocalDelivery:
    """Delivers the runner's cues to this process's managers (the in-process backplane).

    Schwarm's ``/ws`` and ``/ws/stream`` are always served by the seed's two managers;
    a declared endpoint gets a manager of its own when :meth:`serve` is first given a
    protocol that declares it. ``served`` maps each path (aliases included) to the
    coroutine that serves a connection there, as the WebSocket gate reads it.
    """

    def __init__(self, messages: WebsocketManager, stream: StreamManager) -> None:
        self.managers: dict[str, EndpointManager] = {
            messages.endpoint: messages,
            stream.endpoint: stream,
        }
        self.served: dict[str, Callable[[WebSocket], Awaitable[None]]] = {
            path: manager.serve for path, manager in self.managers.items()
        }
        #: Called with each new manager, to configure it like the others.
        self.on_new: Callable[[EndpointManager], None] | None = None

    def serve(self, paths: Mapping[str, str], listening: Collection[str]) -> None:
        """Serve these paths (each mapped to the endpoint it serves) and no others; the
        endpoints in ``listening`` hear their clients (frames, connections). Managers of
        endpoints no longer served keep their clients until they leave."""
        for endpoint in paths.values():
            if endpoint not in self.managers:
                manager = EndpointManager.isolated(self._queue_size(), endpoint)
                self.managers[endpoint] = manager
                if self.on_new is not None:
                    self.on_new(manager)
        for endpoint, manager in self.managers.items():
            manager.listening = endpoint in listening
        self.served.clear()
        self.served.update({path: self.managers[e].serve for path, e in paths.items()})

    def _queue_size(self) -> int:
        return next(iter(self.managers.values())).queue_size

    def send(self, endpoint: str, frame: str | bytes, to: str | None = None) -> int:
        manager = self.managers.get(endpoint)
        return manager.broadcast(frame, to) if manager is not None else 0

    def hangup(self, endpoint: str, to: str | None, code: int, reason: str, abort: bool) -> int:
        manager = self.managers.get(endpoint)
        return manager.hangup(to, code, reason, abort) if manager is not None else 0

    def client_counts(self) -> dict[str, int]:
        return {endpoint: len(manager) for endpoint, manager in self.managers.items()}

    def clients(self) -> list[Client]:
        """Every connected client, oldest first."""
        every = [c for manager in self.managers.values() for c in manager.clients.values()]
        return sorted(every, key=lambda client: client.connected_at)
