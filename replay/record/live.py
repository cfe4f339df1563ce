"""Live sessions: ``replay serve --upstream ws://HOST:PORT`` puts replay between a frontend
and its real backend, and lets scenarios speak into the conversation.

Every client that connects to a served WebSocket endpoint is first connected to the
upstream at the same path and query (after the upstream URL's own path, if it has one),
offering the subprotocols the client offered and sending its handshake headers but the
hop-by-hop ones (:func:`forwarded_headers`); the client is then accepted with the
subprotocol the upstream chose. From then on:

- the upstream's frames go to the client in order, through the client's send queue (a
  client too slow to read them is dropped like any other), each published as a
  ``frame.sent`` event with ``"upstream": true``;
- the client's frames, text and binary, go to the upstream in order, and to replay as
  before (runs' ``wait`` steps, reactions, the journal);
- scenarios still deliver through the managers, so their frames are injected into the
  same connections, between the upstream's, and marked ``"injected": true`` (see
  :attr:`replay.runner.Runner.marks`);
- close codes pass both ways (:func:`client_close`, :func:`upstream_close`).

An upstream that cannot be reached (connection refused, no answer within
:data:`OPEN_TIMEOUT`, a handshake answered with an HTTP error) gets the client accepted
and closed at once with 1011 and a reason saying why (a browser sees a close code and
reason, never an HTTP status), and an ``upstream.failed`` event; the server goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import EXTERNAL_CLOSE_CODES
from websockets.typing import Subprotocol

from replay.client import Client
from replay.errors import ReplayError
from replay.managers import EndpointManager

log = logging.getLogger("replay.live")

#: Handshake headers a proxy does not pass on: the hop-by-hop ones (RFC 9110, 7.6.1), the
#: handshake's own (the upstream connection makes its own), and replay's token header.
NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "x-replay-token",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    }
)
#: The cookie replay's token may travel in: never passed on.
TOKEN_COOKIE = "replay_token"
#: The close code of a client whose upstream cannot be reached.
UNREACHABLE = 1011
#: Seconds the upstream may take to accept a connection.
OPEN_TIMEOUT = 10.0
#: Seconds the upstream may take to take the client's last frames and answer its close.
CLOSE_TIMEOUT = 5.0
#: The largest frame taken from the upstream; a larger one closes it with 1009.
MAX_FRAME = 16 * 1024 * 1024
#: Bytes of a client's frames the upstream may leave waiting before the client is
#: dropped with 1011.
MAX_PENDING = 16 * 1024 * 1024
#: Close codes that no close frame carries (RFC 6455, 7.4.1): none given, and none at all.
NO_STATUS, ABNORMAL = 1005, 1006
#: The longest close reason, in bytes.
MAX_REASON = 123


class UpstreamInvalid(ReplayError):
    """An ``--upstream`` that is not a WebSocket URL replay can connect to."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(
            f"--upstream {url!r}: {reason}; expected ws://HOST:PORT or wss://HOST:PORT, "
            "optionally with a path that clients' paths are appended to"
        )


def parse_upstream(url: str) -> SplitResult:
    """``url`` split into its parts; raises UpstreamInvalid."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError as error:
        raise UpstreamInvalid(url, str(error)) from None
    if parts.scheme not in ("ws", "wss"):
        raise UpstreamInvalid(url, f"the scheme is {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        raise UpstreamInvalid(url, "there is no host")
    if parts.query or parts.fragment:
        raise UpstreamInvalid(url, "clients' own queries are passed on: give none here")
    return parts


def forwarded_headers(
    headers: Iterable[tuple[bytes, bytes]], peer: str | None = None, scheme: str = "ws"
) -> list[tuple[str, str]]:
    """A client's handshake headers as a proxy passes them on: without the hop-by-hop
    ones (those named in ``Connection`` too), the handshake's own and replay's token (a
    header or a ``replay_token`` cookie), with ``X-Forwarded-For`` (``peer`` added),
    ``X-Forwarded-Host`` and ``X-Forwarded-Proto``."""
    pairs = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers]
    named = {
        token.strip().lower()
        for name, value in pairs
        if name == "connection"
        for token in value.split(",")
    }
    kept = []
    for name, value in pairs:
        if name == "cookie":
            value = _without_token(value)
        if name not in NOT_FORWARDED and name not in named and value:
            kept.append((name, value))
    chain = [value for name, value in pairs if name == "x-forwarded-for"]
    if peer:
        chain.append(peer)
    if chain:
        kept.append(("x-forwarded-for", ", ".join(chain)))
    host = next((value for name, value in pairs if name == "host"), None)
    if host:
        kept.append(("x-forwarded-host", host))
    kept.append(("x-forwarded-proto", "https" if scheme in ("wss", "https") else "http"))
    return kept


def _without_token(cookies: str) -> str:
    kept = [c for c in cookies.split(";") if c.strip().partition("=")[0] != TOKEN_COOKIE]
    return ";".join(kept).strip()


def offered_subprotocols(headers: Iterable[tuple[bytes, bytes]]) -> list[Subprotocol]:
    """The subprotocols a client's handshake offers, in its order of preference."""
    return [
        Subprotocol(token.strip())
        for name, value in headers
        if name.lower() == b"sec-websocket-protocol"
        for token in value.decode("latin-1").split(",")
        if token.strip()
    ]


def client_close(code: int | None, reason: str) -> tuple[int, str, bool]:
    """How a client's connection ends when its upstream's did: the upstream's code and
    reason, as ``(code, reason, abort)``; 1000 for a close frame with no code (1005); cut
    without a close frame (``abort``) when the upstream's connection was lost without one
    (no close received, 1006)."""
    if code is None or code == ABNORMAL:
        return UNREACHABLE, "upstream connection lost", True
    if code == NO_STATUS:
        return 1000, "", False
    return code, _clipped(reason), False


def upstream_close(code: int, reason: str) -> tuple[int, str] | None:
    """How the upstream connection is closed when its client left with ``code`` and
    ``reason``: with them; with 1000 for a code no close frame may carry (1005: none
    given, or the connection lost, as uvicorn reports both); None, to cut it without a
    close frame, for 1006."""
    if code == ABNORMAL:
        return None
    if code in EXTERNAL_CLOSE_CODES or 3000 <= code < 5000:
        return code, _clipped(reason)
    return 1000, ""


def _clipped(reason: str) -> str:
    """``reason`` cut to what a close frame carries (123 bytes of UTF-8)."""
    data = reason.encode()
    if len(data) <= MAX_REASON:
        return reason
    return data[: MAX_REASON - 3].decode(errors="ignore") + "..."


def describe(error: BaseException) -> str:
    """A short sentence saying why the upstream could not be reached."""
    match error:
        case InvalidStatus():
            return f"it answered the handshake with HTTP {error.response.status_code}"
        case TimeoutError():
            return f"no answer within {OPEN_TIMEOUT:g} s"
        case OSError():
            return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


class Upstream:
    """The real backend every client is proxied to (``serve --upstream URL``)."""

    def __init__(self, url: str) -> None:
        parts = parse_upstream(url)
        self.url = url
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._prefix = parts.path.rstrip("/")
        #: The URL as logs and reasons show it: without a user name or password.
        self.shown = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        self.shown += self._prefix

    def target(self, path: str, query: str = "") -> str:
        """Where a client connected to ``path`` with ``query`` is proxied to."""
        return self._base + self._prefix + path + (f"?{query}" if query else "")

    async def open(self, manager: EndpointManager, websocket: WebSocket) -> LiveSession | None:
        """Connect a client that is not accepted yet to the upstream (the manager's
        :data:`~replay.managers.Opener`); if that fails, accept and close it with 1011."""
        scope = websocket.scope
        # The path as the client wrote it (uvicorn keeps it), else as decoded.
        path = bytes(scope.get("raw_path") or str(scope["path"]).encode()).decode("latin-1")
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        peer = scope.get("client")
        headers = scope.get("headers", [])
        try:
            connection = await connect(
                self.target(path, query),
                subprotocols=offered_subprotocols(headers) or None,
                additional_headers=forwarded_headers(headers, peer[0] if peer else None),
                user_agent_header=None,  # the client's own is passed on
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
                max_size=MAX_FRAME,
            )
        except (OSError, TimeoutError, WebSocketException) as error:
            await self._refuse(manager, websocket, describe(error))
            return None
        except Exception as error:  # a bug: the client is still answered, the server goes on
            log.exception("connecting to the upstream %s failed", self.shown)
            await self._refuse(manager, websocket, f"internal error ({type(error).__name__})")
            return None
        return LiveSession(manager, connection)

    async def _refuse(self, manager: EndpointManager, websocket: WebSocket, why: str) -> None:
        path, client = str(websocket.scope["path"]), websocket.query_params.get("client_id")
        log.warning("client %s on %s: upstream %s unreachable: %s", client, path, self.shown, why)
        if manager.feed is not None:
            manager.feed.publish(
                "upstream.failed",
                client=client,
                endpoint=str(manager.endpoint),
                path=path,
                upstream=self.shown,
                reason=why,
            )
        with contextlib.suppress(Exception):  # the client may have gone meanwhile
            await websocket.accept()
            await websocket.close(UNREACHABLE, _clipped(f"upstream unreachable: {why}"))


class LiveSession:
    """One client's connection to the upstream (see the module's docstring)."""

    def __init__(self, manager: EndpointManager, connection: ClientConnection) -> None:
        self.manager = manager
        self.connection = connection
        self.subprotocol: str | None = connection.subprotocol
        self._outbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._pending = 0
        self._client: Client | None = None
        self._pump: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None

    def start(self, client: Client) -> None:
        """Start passing frames both ways: the client is accepted."""
        self._client = client
        self._pump = asyncio.create_task(self._pass_on(client), name=f"replay-live-{client.id}")
        self._sender = asyncio.create_task(self._send(), name=f"replay-live-send-{client.id}")

    def forward(self, frame: str | bytes) -> None:
        """Queue a frame the client sent for the upstream (never waits)."""
        size = len(frame)
        if self._pending + size > MAX_PENDING and self._client is not None:
            self._client.drop(UNREACHABLE, "the upstream does not take the client's frames")
            return
        self._pending += size
        self._outbox.put_nowait(frame)

    async def end(self, code: int, reason: str) -> None:
        """The client has gone with ``code`` and ``reason``: send the upstream what the
        client sent before it left (for at most CLOSE_TIMEOUT), then close it likewise."""
        if self._pump is not None:
            self._pump.cancel()
        if self._sender is not None:
            self._outbox.put_nowait(None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sender, CLOSE_TIMEOUT)
        closing = upstream_close(code, reason)
        if closing is None:
            self.connection.transport.abort()
        else:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(self.connection.close(*closing), CLOSE_TIMEOUT * 2)
        if self._pump is not None:
            await asyncio.gather(self._pump, return_exceptions=True)

    async def _pass_on(self, client: Client) -> None:
        """The upstream's frames to the client, in order; then its close."""
        try:
            async for frame in self.connection:
                if not self._deliver(client, frame):
                    return  # the client was dropped: its connection's end ends this
        except ConnectionClosed:
            pass
        received = self.connection.protocol.close_rcvd
        code, reason, abort = client_close(
            received.code if received else None, received.reason if received else ""
        )
        client.hangup(code, reason, abort, by="the upstream")

    def _deliver(self, client: Client, frame: str | bytes) -> bool:
        taken = self.manager.pass_on(client, frame)
        feed = self.manager.feed
        if feed is not None and feed.listening:
            binary = isinstance(frame, bytes)
            feed.publish(
                "frame.sent",
                run_id=None,
                scenario=None,
                step=None,
                endpoint=str(self.manager.endpoint),
                to=client.id,
                clients=int(taken),
                binary=binary,
                frame=frame.hex() if isinstance(frame, bytes) else frame,
                offset=None,  # no run: no planned time
                at=None,
                lateness=None,
                upstream=True,
            )
        return taken

    async def _send(self) -> None:
        """The client's frames to the upstream, in order, until the client has gone."""
        while (frame := await self._outbox.get()) is not None:
            self._pending -= len(frame)
            try:
                await self.connection.send(frame)
            except ConnectionClosed:
                return
