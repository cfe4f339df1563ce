"""One WebSocket connection under uvicorn: replay's own, lighter, protocol class.

uvicorn's ``websockets-sansio`` implementation holds about 10 KiB per connection before
the application has done anything: an instance dictionary, an ``asyncio.Queue`` and two
``asyncio.Event``s whose deques are allocated up front, the handshake's request and
response (headers and all) for the connection's life, and every ASGI layer the
connection crosses keeps a coroutine frame alive until it closes. With thousands of idle
clients that is most of the server's memory (see bench/README.md, "Where the bytes go").

:class:`WebSocketConnection` speaks the same sans-I/O ``websockets`` protocol, with the
same guarantees (handshake, subprotocols, permessage-deflate when asked, the frame size
limit, keepalive pings, close codes, 1007 for text that is not UTF-8, 1012 when uvicorn
shuts down), but:

- ``__slots__``, and what all connections of a server share (the application, the
  settings) kept once, in a :class:`Shared`;
- no queue or event made up front: what the application has not read yet goes in a list
  made on the first frame, and a future is made only while the application waits;
- the handshake's request and response are let go once the connection is open (the
  request is also let go by ``websockets``' parser, see :class:`ServerSide`), and the
  ASGI scope's headers are emptied then (an application that reads them after
  ``websocket.accept`` sees none: replay reads them only during the handshake);
- WebSocket connections go to the application's WebSocket entry when it has one
  (``app.state.websocket_app``, see :func:`replay.server.create_app`), past the
  middleware that only matters for HTTP; uvicorn's proxy headers (``X-Forwarded-For``,
  ``X-Forwarded-Proto`` from a trusted proxy) are applied here instead of by its
  middleware;
- the connection's transport and this object are put in the scope
  (:data:`replay.direct.TRANSPORT_KEY`, :data:`replay.direct.PROTOCOL_KEY`), as
  :class:`replay.direct.TransportMiddleware` would, for the direct fan-out path.

It keeps the attributes :mod:`replay.direct` reads of uvicorn's class: ``transport``,
``conn``, ``close_sent``, ``scope``.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import struct
from asyncio import TimerHandle
from collections.abc import Generator
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

from replay.direct import INVALID_UTF8, PROTOCOL_KEY, TRANSPORT_KEY

log = logging.getLogger("uvicorn.error")

#: Seconds the peer has to answer the server's close frame before the TCP connection is cut.
CLOSE_TIMEOUT = 10.0
#: How ``websockets`` decoded header values: ISO-8859-1 from 17.0 on, before that ASCII
#: with surrogate escapes (as uvicorn's own implementation reads them).
_HEADER_ENCODING = (
    ("latin-1", "strict")
    if int(websockets_version.split(".")[0]) >= 17
    else ("ascii", "surrogateescape")
)
#: What a connection's scope offers: the ASGI extension for denial responses.
_EXTENSIONS = "websocket.http.response"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class Shared:
    """What every connection of one server shares: the application, its WebSocket entry,
    uvicorn's settings. Made once per uvicorn config (see :meth:`of`)."""

    __slots__ = (
        "app",
        "asgi_version",
        "connections",
        "default_headers",
        "deflate",
        "loop",
        "max_size",
        "ping_interval",
        "ping_timeout",
        "root_path",
        "tasks",
        "trusted",
        "ws_app",
    )

    def __init__(self, config: Config, server_state: ServerState) -> None:
        self.app = config.loaded_app
        state = getattr(config.app, "state", None)
        #: Where WebSocket connections go: past the HTTP-only middleware if the
        #: application says how (replay's does), else the whole application.
        self.ws_app = getattr(state, "websocket_app", None) or self.app
        self.loop = asyncio.get_running_loop()
        self.root_path = config.root_path
        self.asgi_version = config.asgi_version
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout
        self.max_size = config.ws_max_size
        self.deflate = config.ws_per_message_deflate
        self.trusted = _trusted_hosts(config) if self.ws_app is not self.app else None

    @classmethod
    def of(cls, config: Config, server_state: ServerState) -> Shared:
        """The connections' shared part for ``config``, made on the first connection."""
        shared = getattr(config, "_replay_connections", None)
        if (
            not isinstance(shared, Shared)
            or shared.loop is not asyncio.get_running_loop()
            or shared.connections is not server_state.connections
        ):
            shared = cls(config, server_state)
            config._replay_connections = shared  # type: ignore[attr-defined]
        return shared

    def extensions(self) -> list[ServerExtensionFactory]:
        """permessage-deflate, as uvicorn offers it, when the server was asked for it."""
        if not self.deflate:
            return []
        return [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
        ]


def _trusted_hosts(config: Config) -> Any:
    """uvicorn's trusted proxies when it applies proxy headers, else None."""
    if not config.proxy_headers:
        return None
    from uvicorn.middleware.proxy_headers import _TrustedHosts

    return _TrustedHosts(config.forwarded_allow_ips)


def apply_proxy_headers(scope: dict[str, Any], trusted: Any) -> None:
    """What uvicorn's ``ProxyHeadersMiddleware`` does to a WebSocket scope: a connection
    from a trusted proxy takes its client address from ``X-Forwarded-For`` and its scheme
    from ``X-Forwarded-Proto``."""
    client = scope.get("client")
    if client is None or client[0] not in trusted:
        return
    proto: bytes | None = None
    forwarded_for: list[bytes] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-proto":
            proto = value
        elif name == b"x-forwarded-for":
            forwarded_for.append(value)
    if proto is not None:
        scheme = proto.decode("latin1").strip()
        if scheme in {"http", "https", "ws", "wss"}:
            scope["scheme"] = scheme.replace("http", "ws")
    if forwarded_for:
        host, port = trusted.get_trusted_client_address(b", ".join(forwarded_for).decode("latin1"))
        if host:
            scope["client"] = (host, port)


class _Frames(Protocol):
    """Between :class:`ServerSide`'s handshake and its frames (see there)."""

    def parse(self) -> Generator[None]:
        # Called by ServerProtocol.parse once the request is parsed, inside the generator
        # whose frame holds the request: parse frames in a generator of their own, and
        # let that one end, request and all.
        frames = Protocol.parse(self)
        self.parser = frames
        next(frames)  # the frames that came with the request, if any
        yield  # never resumed: receive_data() goes to the new parser from now on


class ServerSide(ServerProtocol, _Frames):
    """``websockets``' server protocol, which otherwise keeps the handshake's request
    (headers and all) for the connection's life: a local of its parser generator."""


class WebSocketConnection(asyncio.Protocol):
    """A uvicorn WebSocket protocol (``uvicorn.Config(ws=WebSocketConnection)``): the
    sans-I/O ``websockets`` protocol with ASGI on top, holding as little per connection
    as it can (see the module's docstring)."""

    __slots__ = (
        "_denial",
        "_drained",
        "_frames",
        "_inbox",
        "_response",
        "_text",
        "_waiter",
        "close_sent",
        "close_timer",
        "conn",
        "disconnected",
        "handshake_complete",
        "last_ping_rtt",
        "pending_ping_payload",
        "ping_sent_at",
        "ping_timer",
        "pong_timer",
        "read_paused",
        "scope",
        "shared",
        "transport",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.shared = shared = Shared.of(config, server_state)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        # Until the handshake makes the whole scope: the application's state, as ASGI
        # hands it to each connection (a shallow copy).
        self.scope: dict[str, Any] = {"state": app_state.copy()}
        self.conn = ServerSide(extensions=shared.extensions(), max_size=shared.max_size, logger=log)
        # The handshake's answer, between the request and the application's accept.
        self._response: Response | None = None
        # A denial response being sent (websocket.http.response): status, headers, body.
        self._denial: tuple[int, list[tuple[str, str]], bytes] | None = None
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.read_paused = False
        # ASGI events not received yet; made on the first one.
        self._inbox: list[dict[str, Any]] | None = None
        # Set while the application waits in receive().
        self._waiter: asyncio.Future[None] | None = None
        # Set while the transport's buffer is over its high-water mark.
        self._drained: asyncio.Future[None] | None = None
        self.close_timer: TimerHandle | None = None
        self.ping_timer: TimerHandle | None = None
        self.pong_timer: TimerHandle | None = None
        self.pending_ping_payload: bytes | None = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        # The fragments of a message being received, and whether it is text.
        self._frames: list[bytes] | None = None
        self._text = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.shared.connections.add(self)  # type: ignore[arg-type]
        self.transport = cast(asyncio.Transport, transport)
        _let_go_of_http(transport.get_protocol())

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_keepalive()
        self._put(
            {"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006}
        )
        self.shared.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        # A send() waiting for the buffer to drain would wait forever now.
        self.resume_writing()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = self.shared.loop.create_future()

    def resume_writing(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def shutdown(self) -> None:
        """uvicorn stops: close with 1012 (replay's server closes its clients with 1001
        before this, see :class:`replay.server.Server`)."""
        self.stop_keepalive()
        if self.close_sent:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        if self.handshake_complete:
            self._put({"type": "websocket.disconnect", "code": 1012})
            self.conn.send_close(1012)
            self._flush()
        else:
            self.send_500_response()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        if self.conn.parser_exc is not None:
            self.handle_parser_exception()
            return
        for event in self.conn.events_received():
            if isinstance(event, Request):
                self.handle_connect(event)
            elif isinstance(event, Frame):
                self.handle_frame(event)

    # The handshake

    def handle_connect(self, request: Request) -> None:
        response = self.conn.accept(request)
        if response.status_code != 101:
            self.handshake_complete = True
            self.close_sent = True
            self.conn.send_response(response)
            self._flush()
            self.transport.close()
            return
        self._response = response
        headers = [
            (key.encode("ascii"), value.encode(*_HEADER_ENCODING))
            for key, value in request.headers.raw_items()
        ]
        raw_path, _, query_string = request.path.partition("?")
        subprotocols: list[str] = []
        for header in request.headers.get_all("Sec-WebSocket-Protocol"):
            subprotocols.extend(token.strip() for token in header.split(","))
        shared, transport = self.shared, self.transport
        root_path = shared.root_path
        self.scope = scope = {
            "type": "websocket",
            "asgi": {"version": shared.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(transport) else "ws",
            "server": get_local_addr(transport),
            "client": get_remote_addr(transport),
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.scope.get("state", {}),
            "extensions": {_EXTENSIONS: {}},
        }
        if shared.trusted is not None:
            apply_proxy_headers(scope, shared.trusted)
        self._put({"type": "websocket.connect"})
        task = shared.loop.create_task(self.run_asgi())
        shared.tasks.add(task)
        task.add_done_callback(shared.tasks.discard)

    async def run_asgi(self) -> None:
        scope = self.scope
        # What TransportMiddleware would leave there, for the direct fan-out path (the
        # WebSocket entry does not go through it).
        scope[TRANSPORT_KEY] = self.transport
        scope[PROTOCOL_KEY] = self
        try:
            result = await self.shared.ws_app(scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            log.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                log.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                log.error("ASGI callable should return None, but returned '%s'.", result)
        finally:
            # The scope holds this object: left there, every closed connection would
            # wait for the cyclic garbage collector.
            scope.pop(PROTOCOL_KEY, None)
            scope.pop(TRANSPORT_KEY, None)
        if self.close_timer is None:
            self.transport.close()

    def send_500_response(self) -> None:
        if self._denial is not None or self.handshake_complete:
            return
        self.conn.send_response(self.conn.reject(500, "Internal Server Error"))
        self._flush()

    # Frames from the client

    def handle_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            self._text = opcode is Opcode.TEXT
            self._frames = [frame.data]  # type: ignore[list-item]
            if frame.fin:
                self.deliver()
        elif opcode is Opcode.CONT:
            if self._frames is None:
                self._frames = []
            self._frames.append(frame.data)  # type: ignore[arg-type]
            if frame.fin:
                self.deliver()
        elif opcode is Opcode.PING:
            self._flush()  # the pong the protocol made
        elif opcode is Opcode.PONG:
            self.handle_pong(frame)
        elif opcode is Opcode.CLOSE:
            self.handle_close()

    def deliver(self) -> None:
        """Hand the message just completed to the application, and stop reading the
        socket until it has taken it (the client cannot make the server buffer more)."""
        frames = self._frames or []
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self._frames = None
        if self.close_sent:
            # The application is past websocket.close: discard the message, and keep
            # reading until the peer's close comes.
            return
        if self._text:
            try:
                self._put({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                # Worded as uvicorn's, which replay.direct.InvalidUtf8Filter shortens.
                log.exception(INVALID_UTF8)
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            self._put({"type": "websocket.receive", "bytes": data})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_close(self) -> None:
        if self.close_sent:
            # The peer answered the server's close: the closing handshake is complete.
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
                self.transport.close()
            return
        if not self.transport.is_closing():
            close = self.conn.close_rcvd
            assert close is not None
            self._put({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
            self._flush()  # the protocol's answering close frame
            self.transport.close()

    def handle_parser_exception(self) -> None:
        close = self.conn.close_sent
        code, reason = (close.code, close.reason) if close is not None else (1006, "")
        self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._flush()
        self.close_sent = True
        self.transport.close()

    # Keepalive

    def start_keepalive(self) -> None:
        interval = self.shared.ping_interval
        if interval is not None and interval > 0:
            self.schedule_ping()

    def stop_keepalive(self) -> None:
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self.pending_ping_payload = None

    def schedule_ping(self) -> None:
        interval = self.shared.ping_interval or 0.0
        delay = max(0.0, interval - self.last_ping_rtt)
        self.ping_timer = self.shared.loop.call_later(delay, self.send_keepalive_ping)

    def send_keepalive_ping(self) -> None:
        self.ping_timer = None
        if self.close_sent or self.transport.is_closing():
            return
        # A random payload: a pong for an older ping (or an unasked one) is not taken.
        self.pending_ping_payload = struct.pack("!I", random.getrandbits(32))
        self.ping_sent_at = self.shared.loop.time()
        self.conn.send_ping(self.pending_ping_payload)
        self._flush()
        if self.shared.ping_timeout is not None:
            self.pong_timer = self.shared.loop.call_later(
                self.shared.ping_timeout, self.keepalive_timeout
            )
        else:
            self.schedule_ping()

    def handle_pong(self, frame: Frame) -> None:
        if self.pending_ping_payload is None or bytes(frame.data) != self.pending_ping_payload:
            return
        self.last_ping_rtt = self.shared.loop.time() - self.ping_sent_at
        self.pending_ping_payload = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self.schedule_ping()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(1011, "keepalive ping timeout")
        self._flush()
        self.close_sent = True
        self.transport.close()

    # ASGI

    def _put(self, event: dict[str, Any]) -> None:
        if self._inbox is None:
            self._inbox = [event]
        else:
            self._inbox.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        """The next ASGI event of the connection (the application's ``receive``)."""
        while not self._inbox:
            self._waiter = self.shared.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        inbox = self._inbox
        event = inbox.pop(0)
        if not inbox:
            self._inbox = None
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
        return event

    async def send(self, message: dict[str, Any]) -> None:
        """Send an ASGI event (the application's ``send``)."""
        while self._drained is not None:
            # Shielded: one sender cancelled must not wake the others with an error.
            await asyncio.shield(self._drained)
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        if not self.handshake_complete and self._denial is None:
            self._send_handshake(message)
        elif not self.close_sent and self._denial is None:
            try:
                self._send_open(message)
            except InvalidState:
                raise ClientDisconnected() from None
        elif self._denial is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'."
                )
            self._send_denial_body(message)
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )

    def _send_handshake(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            log.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(self.scope),  # type: ignore[arg-type]
                get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            )
            response, self._response = self._response, None
            assert response is not None
            headers = [
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in (self.shared.default_headers + list(message.get("headers", [])))
            ]
            if message.get("subprotocol"):
                headers.append(("Sec-WebSocket-Protocol", message["subprotocol"]))
            del response.headers["Date"]
            response.headers.update(headers)
            if not self.transport.is_closing():
                self.handshake_complete = True
                self.conn.send_response(response)
                self._flush()
                self.start_keepalive()
            # Open: the handshake's headers are not needed any more (see the docstring).
            self.scope["headers"].clear()
        elif kind == "websocket.close":
            self._put({"type": "websocket.disconnect", "code": 1006})
            self._refuse(self.conn.reject(HTTPStatus.FORBIDDEN, ""), 403)
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            ]
            self._denial = (status, headers, b"")
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{kind}'."
            )

    def _refuse(self, response: Response, status: int) -> None:
        """Answer the handshake with ``response`` (not 101) and close."""
        log.info(
            '%s - "WebSocket %s" %d',
            get_client_addr(self.scope),  # type: ignore[arg-type]
            get_path_with_query_string(self.scope),  # type: ignore[arg-type]
            status,
        )
        self._response = None
        self.conn.send_response(response)
        self.close_sent = True
        self.handshake_complete = True
        self._flush()
        self.transport.close()

    def _send_open(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                self.conn.send_binary(data)
            elif text is not None:
                self.conn.send_text(text.encode())
            self._flush()
        elif kind == "websocket.close":
            if self.transport.is_closing():
                return
            code = message.get("code", 1000)
            reason = message.get("reason", "") or ""
            self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.conn.send_close(code, reason)
            self._flush()
            self.close_sent = True
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self.close_timer = self.shared.loop.call_later(CLOSE_TIMEOUT, self.transport.close)
        else:
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
            )

    def _send_denial_body(self, message: dict[str, Any]) -> None:
        assert self._denial is not None
        status, headers, body = self._denial
        body += message["body"]
        self._denial = (status, headers, body)
        if message.get("more_body", False):
            return
        response_headers = Headers(headers)
        response_headers.setdefault("Date", email.utils.formatdate(usegmt=True))
        response_headers.setdefault("Connection", "close")
        response_headers.setdefault("Content-Length", str(len(body)))
        response_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        self._put({"type": "websocket.disconnect", "code": 1006})
        self._refuse(Response(status, _phrase(status), response_headers, body), status)

    def _flush(self) -> None:
        """Write what the sans-I/O protocol has to send."""
        self.transport.write(b"".join(self.conn.data_to_send()))


def _let_go_of_http(protocol: object) -> None:
    """Break the cycle between uvicorn's httptools protocol, which hands the connection
    over (it is still the transport's protocol when the new one is made), and its parser,
    which holds it for its callbacks: else both, with the request's scope, stay in memory
    after the upgrade (about 2 KiB a client) until a full collection of the garbage. The
    parser is not used again once the upgrade is handed over."""
    if type(protocol).__name__ == "HttpToolsProtocol" and hasattr(protocol, "parser"):
        protocol.parser = None
