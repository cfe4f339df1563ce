"""replay's own uvicorn WebSocket protocol (replay.connection), against real sockets: a
tiny ASGI application on uvicorn in the test's event loop, and replay's application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.utils import ClientDisconnected
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import Protocol

from replay.connection import WebSocketConnection, apply_proxy_headers
from replay.direct import PROTOCOL_KEY, TRANSPORT_KEY
from replay.server import Server, Settings, create_app, uvicorn_config

#: How long a test waits for something that should happen at once.
PATIENCE = 10.0

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Seen:
    """What the test application saw: its scopes and the ASGI events it received."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()


def echo(seen: Seen, refuse: bool = False, subprotocol: str | None = None) -> App:
    """An ASGI app that accepts (or refuses) each connection and echoes its messages; a
    message "close" makes it close with 4002."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        seen.scopes.append(scope)
        await seen.events.put(await receive())  # websocket.connect
        if refuse:
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        while True:
            event = await receive()
            await seen.events.put(event)
            if event["type"] == "websocket.disconnect":
                return
            if event.get("text") == "close":
                await send({"type": "websocket.close", "code": 4002, "reason": "asked"})
                continue
            if event.get("text") is not None:
                await send({"type": "websocket.send", "text": event["text"]})
            else:
                await send({"type": "websocket.send", "bytes": event["bytes"]})

    return app


@contextlib.asynccontextmanager
async def running(app: Any, **options: Any) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """uvicorn with WebSocketConnection on a free port, in this event loop."""
    options.setdefault("ws", WebSocketConnection)
    config = uvicorn.Config(app, "127.0.0.1", 0, log_level="warning", lifespan="off", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert not task.done(), "uvicorn stopped"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, PATIENCE)


def connections(server: uvicorn.Server) -> list[WebSocketConnection]:
    return [c for c in server.server_state.connections if isinstance(c, WebSocketConnection)]


async def next_event(seen: Seen) -> dict[str, Any]:
    return await asyncio.wait_for(seen.events.get(), PATIENCE)


async def test_a_frame_from_a_client_reaches_the_application_and_its_answer_the_client() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, _), connect(f"{url}/ws?client_id=a") as ws:
        assert (await next_event(seen))["type"] == "websocket.connect"
        await ws.send("hello")
        assert await next_event(seen) == {"type": "websocket.receive", "text": "hello"}
        assert await asyncio.wait_for(ws.recv(), PATIENCE) == "hello"
        await ws.send(b"\x00\x01")
        assert await next_event(seen) == {"type": "websocket.receive", "bytes": b"\x00\x01"}
        assert await asyncio.wait_for(ws.recv(), PATIENCE) == b"\x00\x01"
    scope = seen.scopes[0]
    assert (scope["path"], scope["query_string"]) == ("/ws", b"client_id=a")


async def test_a_fragmented_message_reaches_the_application_whole() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, _), connect(f"{url}/ws") as ws:
        await next_event(seen)
        await ws.send(["part one, ", "part two"])
        assert await next_event(seen) == {
            "type": "websocket.receive",
            "text": "part one, part two",
        }


async def test_the_handshake_headers_are_not_kept_once_the_connection_is_open() -> None:
    seen = Seen()
    async with (
        running(echo(seen)) as (url, server),
        connect(f"{url}/ws", additional_headers={"X-Secret": "s3cret"}) as ws,
    ):
        await next_event(seen)
        await ws.send("ping")
        await next_event(seen)
        [connection] = connections(server)
        # The application saw them during the handshake (see the scope's copy below) ...
        assert connection.scope["headers"] == []
        # ... and neither the protocol object nor websockets' parser holds the request.
        assert connection._response is None
        parser = connection.conn.parser
        assert parser.gi_code is Protocol.parse.__code__  # type: ignore[attr-defined]
        assert "request" not in parser.gi_frame.f_locals  # type: ignore[attr-defined]


async def test_the_application_sees_the_handshake_headers_before_it_accepts() -> None:
    seen = Seen()
    headers: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers.extend(scope["headers"])
        await echo(seen)(scope, receive, send)

    async with (
        running(app) as (url, _),
        connect(f"{url}/ws", additional_headers={"X-Secret": "s3cret"}) as ws,
    ):
        await ws.send("x")
        await next_event(seen)
    assert (b"x-secret", b"s3cret") in headers


async def test_a_close_frame_from_the_client_reaches_the_application_with_its_code() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, _):
        async with connect(f"{url}/ws") as ws:
            await next_event(seen)
            await ws.close(4001, "bye now")
        assert await next_event(seen) == {
            "type": "websocket.disconnect",
            "code": 4001,
            "reason": "bye now",
        }


async def test_the_application_closes_with_its_code_and_reason() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, _), connect(f"{url}/ws") as ws:
        await next_event(seen)
        await ws.send("close")
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), PATIENCE)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4002, "asked")


async def test_a_connection_refused_before_accept_gets_http_403() -> None:
    seen = Seen()
    async with running(echo(seen, refuse=True)) as (url, _):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{url}/ws"):
                pass
        assert refused.value.response.status_code == 403


async def test_the_subprotocol_the_application_chose_is_the_connections() -> None:
    seen = Seen()
    async with (
        running(echo(seen, subprotocol="b")) as (url, _),
        connect(f"{url}/ws", subprotocols=["a", "b"]) as ws,  # type: ignore[list-item]
    ):
        assert ws.subprotocol == "b"
    assert seen.scopes[0]["subprotocols"] == ["a", "b"]


@pytest.mark.parametrize("deflate", [False, True])
async def test_permessage_deflate_only_when_the_server_is_asked_for_it(deflate: bool) -> None:
    seen = Seen()
    options = {"ws_per_message_deflate": deflate}
    async with running(echo(seen), **options) as (url, _), connect(f"{url}/ws") as ws:
        await ws.send("squeeze " * 100)
        assert await asyncio.wait_for(ws.recv(), PATIENCE) == "squeeze " * 100
        assert bool(ws.protocol.extensions) is deflate


async def test_a_frame_over_the_size_limit_is_closed_with_1009() -> None:
    seen = Seen()
    async with (
        running(echo(seen), ws_max_size=1000) as (url, _),
        connect(f"{url}/ws", max_size=None) as ws,
    ):
        await next_event(seen)
        await ws.send("x" * 2000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), PATIENCE)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    assert (await next_event(seen))["code"] == 1009


async def test_text_that_is_not_utf8_is_closed_with_1007() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, _):
        reader, writer = await handshake(url)
        await next_event(seen)
        writer.write(masked(0x81, b"\xff\xfe"))  # a text frame that is not UTF-8
        frame = await asyncio.wait_for(reader.read(64), PATIENCE)
        assert frame[0] == 0x88  # a close frame ...
        assert int.from_bytes(frame[2:4], "big") == 1007  # ... with 1007
        writer.close()


async def test_a_client_that_answers_no_ping_is_closed_after_the_ping_timeout() -> None:
    seen = Seen()
    async with running(echo(seen), ws_ping_interval=0.05, ws_ping_timeout=0.2) as (url, _):
        reader, writer = await handshake(url)
        await next_event(seen)
        ping = await asyncio.wait_for(reader.read(64), PATIENCE)
        assert ping[0] == 0x89  # the server's ping, which this client leaves unanswered
        rest = await asyncio.wait_for(read_to_eof(reader), PATIENCE)
        assert rest[0] == 0x88
        assert int.from_bytes(rest[2:4], "big") == 1011
        assert (await next_event(seen))["type"] == "websocket.disconnect"
        writer.close()


async def test_a_client_that_answers_pings_stays_connected() -> None:
    seen = Seen()
    async with (
        running(echo(seen), ws_ping_interval=0.05, ws_ping_timeout=0.5) as (url, server),
        connect(f"{url}/ws", ping_interval=None) as ws,
    ):
        await next_event(seen)
        [connection] = connections(server)
        deadline = time.monotonic() + PATIENCE
        while connection.last_ping_rtt == 0.0:  # a pong came back for a ping
            assert time.monotonic() < deadline, "no ping was answered"
            await asyncio.sleep(0.01)
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), PATIENCE) == "still here"


async def test_uvicorn_shutting_down_closes_open_connections_with_1012() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, server):
        ws = await connect(f"{url}/ws")
        await next_event(seen)
        server.should_exit = True
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), PATIENCE)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012


async def test_the_transport_and_the_protocol_are_in_the_scope_while_the_app_runs() -> None:
    inside: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        inside.append((scope.get(TRANSPORT_KEY), scope.get(PROTOCOL_KEY)))
        await send({"type": "websocket.accept"})
        await receive()

    async with running(app) as (url, server), connect(f"{url}/ws"):
        deadline = time.monotonic() + PATIENCE
        while not inside:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        [connection] = connections(server)
        assert inside == [(connection.transport, connection)]
    # Taken out when the application returns: the scope would hold the protocol object
    # in a cycle.
    assert PROTOCOL_KEY not in connection.scope
    assert TRANSPORT_KEY not in connection.scope


async def test_a_send_waits_while_the_transport_is_paused_and_goes_out_after() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, server), connect(f"{url}/ws") as ws:
        await next_event(seen)
        [connection] = connections(server)
        connection.pause_writing()  # what the transport says over its high-water mark
        sending = asyncio.create_task(connection.send({"type": "websocket.send", "text": "x"}))
        for _ in range(10):
            await asyncio.sleep(0)
        assert not sending.done()
        connection.resume_writing()
        await asyncio.wait_for(sending, PATIENCE)
        assert await asyncio.wait_for(ws.recv(), PATIENCE) == "x"


async def test_a_paused_send_ends_with_the_connection() -> None:
    seen = Seen()
    async with running(echo(seen)) as (url, server), connect(f"{url}/ws") as ws:
        await next_event(seen)
        [connection] = connections(server)
        connection.pause_writing()
        sending = asyncio.create_task(connection.send({"type": "websocket.send", "text": "x"}))
        await ws.close()
        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(sending, PATIENCE)


def test_proxy_headers_from_a_trusted_proxy_give_the_client_and_scheme() -> None:
    scope: dict[str, Any] = {
        "client": ("127.0.0.1", 5000),
        "scheme": "ws",
        "headers": [(b"x-forwarded-for", b"10.1.2.3"), (b"x-forwarded-proto", b"https")],
    }
    apply_proxy_headers(scope, _TrustedHosts("127.0.0.1"))
    assert (scope["client"], scope["scheme"]) == (("10.1.2.3", 0), "wss")


def test_proxy_headers_from_an_untrusted_peer_are_ignored() -> None:
    scope: dict[str, Any] = {
        "client": ("192.0.2.7", 5000),
        "scheme": "ws",
        "headers": [(b"x-forwarded-for", b"10.1.2.3"), (b"x-forwarded-proto", b"https")],
    }
    apply_proxy_headers(scope, _TrustedHosts("127.0.0.1"))
    assert (scope["client"], scope["scheme"]) == (("192.0.2.7", 5000), "ws")


async def test_replay_serves_its_websocket_endpoints_through_its_own_protocol(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    app = create_app(Settings(scenarios=folder))
    config = uvicorn_config(app, "127.0.0.1", 0, log_level="warning", lifespan="on")
    assert config.ws is WebSocketConnection
    server = Server(config)
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + PATIENCE
        while not server.started:
            assert time.monotonic() < deadline, "replay did not start"
            assert not task.done(), "replay stopped"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        replay = app.state.replay
        received: list[str] = []
        replay.messages.on_frame = lambda client, text: received.append(text)
        async with connect(f"ws://127.0.0.1:{port}/ws?client_id=lean") as ws:
            await ws.send(json.dumps({"hello": 1}))
            while not received:
                assert time.monotonic() < deadline + PATIENCE, "replay did not hear the frame"
                await asyncio.sleep(0.01)
            assert json.loads(received[0]) == {"hello": 1}
            [client] = replay.messages.clients.values()
            assert client.id == "lean"
            assert client.line is not None
            # A path the WebSocket gate does not serve goes on to the application (which
            # has no such route: 403).
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"ws://127.0.0.1:{port}/no-such-endpoint"):
                    pass
            assert refused.value.response.status_code == 403
            server.should_exit = True
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), PATIENCE)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, PATIENCE)


# A client by hand, for what a well-behaved client library will not do.


async def handshake(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    assert answer.startswith(b"HTTP/1.1 101")
    return reader, writer


def masked(first: int, payload: bytes) -> bytes:
    """A client's frame (masked, with a zero mask: the payload goes as it is)."""
    assert len(payload) < 126
    return bytes([first, 0x80 | len(payload)]) + b"\x00\x00\x00\x00" + payload


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(1024):
            data += chunk
    return data


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_the_http_protocol_that_handed_over_is_freed_at_once(http: str) -> None:
    # With httptools, uvicorn's HTTP protocol and its parser hold each other: left so,
    # each upgraded connection kept them (about 2 KiB) until a full garbage collection.
    def http_protocols() -> int:
        return sum(
            type(o).__name__ in ("HttpToolsProtocol", "H11Protocol") for o in gc.get_objects()
        )

    seen = Seen()
    gc.collect()
    gc.disable()  # only reference counting frees anything now
    try:
        async with running(echo(seen), http=http) as (url, _):
            before = http_protocols()
            clients = [await connect(f"{url}/ws?client_id=c{n}") for n in range(20)]
            for _ in clients:
                assert (await next_event(seen))["type"] == "websocket.connect"
            left = http_protocols() - before
            for client in clients:
                await client.close()
    finally:
        gc.enable()
    assert left <= 0, f"{left} HTTP protocols of upgraded connections still in memory"
