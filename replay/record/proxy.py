"""``replay record``: a transparent proxy between a frontend and its real backend that
writes every session down as it happens.

A frontend connects to the proxy as it would to the backend (any path); the proxy opens
the same connection to the upstream (:mod:`replay.record.opening`), passes every frame
both ways (:mod:`replay.record.bridge`) or, for a plain HTTP request, the request and
its answer (:mod:`replay.record.exchange`), and writes each session to
``<out>/<session>.jsonl`` (:mod:`replay.record.sessions`, in the format of
:mod:`replay.record.format`).

:class:`RecordingProxy` is the server (``start``, ``stop``, or ``async with``);
:func:`serve` runs one until an event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType

from websockets.http11 import Response
from websockets.server import ServerProtocol

from replay.record.bridge import Bridge, Peer
from replay.record.exchange import exchange
from replay.record.format import Header
from replay.record.http1 import (
    HttpMessageInvalid,
    RequestHead,
    parse_request_head,
    plain_response,
    read_head,
)
from replay.record.opening import UpstreamFailed, accepted, client_protocol, connect_upstream
from replay.record.redact import PayloadPath, redact_headers, redact_query, shown_target
from replay.record.sessions import Observer, Recorder, SessionInfo, new_session_id
from replay.record.upstream import Upstream, is_websocket_upgrade, query_value, split_target

logger = logging.getLogger("replay.record")

#: Seconds a client has to send its request's head.
HEAD_TIMEOUT = 10.0
#: Seconds sessions have to close once the proxy stops, before they are cut.
STOP_GRACE = 3.0
#: The close reason sessions get when the proxy stops (with code 1001, going away).
STOPPING = "replay record is stopping"


class RecordingProxy:
    """The recording proxy: listens, passes each connection on to ``upstream``, and
    records each session in ``out``."""

    def __init__(
        self,
        upstream: Upstream,
        out: Path,
        redact: Sequence[PayloadPath] = (),
        observer: Observer | None = None,
    ) -> None:
        self.upstream = upstream
        self.recorder = Recorder(Path(out), tuple(redact), observer or Observer())
        #: The host and port it listens on, once it does.
        self.address: tuple[str, int] | None = None
        self.bridges: set[Bridge] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def observer(self) -> Observer:
        return self.recorder.observer

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on ``host``:``port`` (0: a free port); the address it listens on."""
        self.recorder.folder.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_server(self._accepted, host, port, backlog=1024)
        found = listening_address(self._server.sockets)
        if found is None:  # pragma: no cover - start_server always binds TCP here
            raise OSError(f"nothing listens on {host}:{port}")
        self.address = found
        return found

    async def stop(self, reason: str = STOPPING, grace: float = STOP_GRACE) -> None:
        """Stop listening, close every session with 1001 and ``reason``, give them
        ``grace`` seconds to finish closing, then cut what is left."""
        if self._server is not None:
            self._server.close()
        for bridge in list(self.bridges):
            bridge.stop(1001, reason)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RecordingProxy:
        if self.address is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.stop()

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection: served in a task of the proxy's own, which :meth:`stop` may
        cancel (asyncio's own task for a stream callback logs its cancellation as an
        error)."""
        task = asyncio.create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_connection(reader, writer)
        except Exception:
            logger.exception("a connection failed")
        finally:
            if not writer.is_closing():
                writer.transport.abort()

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            raw = await asyncio.wait_for(read_head(reader), HEAD_TIMEOUT)
            if not raw:
                return
            head = parse_request_head(raw)
        except TimeoutError:
            return
        except HttpMessageInvalid as error:
            writer.write(plain_response(error.status, "Bad Request", error.reason))
            await _finish(writer)
            return
        if is_websocket_upgrade(head.method, head.headers):
            await self._websocket(head, reader, writer)
        else:
            await exchange(self.upstream, head, reader, writer, self.recorder)
            await _finish(writer)

    async def _websocket(
        self, head: RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Open a WebSocket session on both sides, then pass it through until it ends."""
        protocol, response = client_protocol(head)
        client = Peer("client", protocol, reader, writer)
        if response is None or response.status_code != 101:  # the library's answer
            if response is not None:
                protocol.send_response(response)
            client.flush()
            await _finish(writer)
            return
        try:
            server, answer = await connect_upstream(self.upstream, head)
        except UpstreamFailed as error:
            self.observer.refused(shown_target(head.target), str(error))
            self._answer(client, protocol.reject(error.status, f"{error}\n"))
            await _finish(writer)
            return
        subprotocol = server.protocol.subprotocol
        self._answer(client, accepted(response, answer, subprotocol))
        bridge = self._bridge(client, server, head, subprotocol)
        self.bridges.add(bridge)
        try:
            await bridge.run()
        finally:
            self.bridges.discard(bridge)

    def _answer(self, client: Peer, response: Response) -> None:
        assert isinstance(client.protocol, ServerProtocol)
        client.protocol.send_response(response)
        client.flush()

    def _bridge(
        self, client: Peer, server: Peer, head: RequestHead, subprotocol: str | None
    ) -> Bridge:
        path, query = split_target(head.target)
        header = Header(
            session=new_session_id(),
            endpoint=path,
            query=redact_query(query),
            subprotocol=subprotocol,
            headers=redact_headers(head.headers),
            upstream=self.upstream.url,
            client=query_value(query, "client_id"),
            started=time.time(),
        )
        recording = self.recorder.writer(header)
        info = SessionInfo(header.session, "websocket", shown_target(head.target), recording.path)
        self.observer.opened(info)
        return Bridge(client, server, recording, info, self.observer)


async def _finish(writer: asyncio.StreamWriter) -> None:
    """Send what is buffered and close (bounded: a client that does not read is cut)."""
    with contextlib.suppress(ConnectionError, OSError, TimeoutError):
        await asyncio.wait_for(writer.drain(), HEAD_TIMEOUT)
    writer.close()


def listening_address(sockets: Iterable[socket.socket]) -> tuple[str, int] | None:
    """The host and port of the first listening TCP socket, IPv4 ones first (as
    :func:`replay.ready.bound_address`, without loading the server)."""
    tcp = [s for s in sockets if s.family in (socket.AF_INET, socket.AF_INET6)]
    if not tcp:
        return None
    host, port = min(tcp, key=lambda s: s.family != socket.AF_INET).getsockname()[:2]
    return str(host), int(port)


async def serve(
    proxy: RecordingProxy,
    stop: asyncio.Event,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Run ``proxy`` on ``host``:``port`` until ``stop`` is set; ``ready`` is called with
    the address once it listens. Sessions still open are closed with 1001."""
    address = await proxy.start(host, port)
    try:
        if ready is not None:
            ready(*address)
        await stop.wait()
    finally:
        await proxy.stop()
