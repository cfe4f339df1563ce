"""Live sessions (replay/record/live.py): ``replay serve --upstream`` proxies each client to
a real backend and injects scenarios' frames into the live connections.

End to end: a real upstream (a ``websockets`` server on port 0, in the test's event loop,
which sends frames when the test says so and keeps what it is sent), replay on real
uvicorn on port 0 (in a thread), and real clients. Nothing sleeps and hopes: every test
waits for the frame, event or state it expects, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from replay.client import TOO_SLOW
from replay.record.live import Upstream as Proxy
from replay.record.live import (
    UpstreamInvalid,
    client_close,
    describe,
    forwarded_headers,
    offered_subprotocols,
    parse_upstream,
    upstream_close,
)
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.hostile import PATIENCE, connected, request, until_closed
from tests.test_e2e import stalled_client
from tests.test_server import EventStream, is_event

INJECT = "steps:\n  - message: EVENT\n    text: injected\n"
INJECTED = '{"message_type":"EVENT","message":"injected"}'
ASK = """
steps:
  - message: CHAT_REQUESTED
    text: What next?
  - wait: CHAT_INPUT
    timeout: 30s
  - message: CHAT
    text: "got {{ received.message }}"
"""


# --- the real backend ----------------------------------------------------------------------------


@dataclass
class Backend:
    """The upstream: takes connections, keeps what it is sent and how each closed."""

    server: Server | None = None
    connections: asyncio.Queue[ServerConnection] = field(default_factory=asyncio.Queue)
    received: asyncio.Queue[str | bytes] = field(default_factory=asyncio.Queue)
    closed: asyncio.Queue[tuple[int, str] | None] = field(default_factory=asyncio.Queue)
    requests: list[Request] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def handle(self, connection: ServerConnection) -> None:
        await self.connections.put(connection)
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                await self.received.put(message)
        got = connection.protocol.close_rcvd
        await self.closed.put((got.code, got.reason) if got else None)

    def keep(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        return None

    async def next_connection(self) -> ServerConnection:
        return await asyncio.wait_for(self.connections.get(), PATIENCE)

    async def next_frame(self) -> str | bytes:
        return await asyncio.wait_for(self.received.get(), PATIENCE)

    async def next_close(self) -> tuple[int, str] | None:
        return await asyncio.wait_for(self.closed.get(), PATIENCE)


@contextlib.asynccontextmanager
async def backend(**options: Any) -> AsyncIterator[Backend]:
    real = Backend()
    async with serve(real.handle, "127.0.0.1", 0, process_request=real.keep, **options) as server:
        real.server = server
        yield real


@contextlib.asynccontextmanager
async def proxying(folder: Path, upstream: str | None, **options: Any) -> AsyncIterator[LiveServer]:
    """replay serve --upstream UPSTREAM on real uvicorn, serving ``folder`` (``options``:
    more settings); stopped in a thread, so that the upstream (in this event loop) can
    answer its closes meanwhile."""
    settings = Settings(scenarios=folder, isolated=True, upstream=upstream, **options)
    live, server, thread = await asyncio.to_thread(start_live_server, settings)
    try:
        yield live
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, PATIENCE)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "inject.yaml").write_text(INJECT)
    (scenarios / "ask.yaml").write_text(ASK)
    return scenarios


async def receive(ws: Any) -> str | bytes:
    frame: str | bytes = await asyncio.wait_for(ws.recv(), PATIENCE)
    return frame


async def get(live: LiveServer, path: str) -> dict[str, Any]:
    status, body = await asyncio.to_thread(request, live.url + path, "GET")
    assert status == 200, (status, body)
    return body


async def post(live: LiveServer, path: str) -> dict[str, Any]:
    status, body = await asyncio.to_thread(request, live.url + path, "POST")
    assert status < 300, (status, body)
    return body


async def finished(live: LiveServer, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + PATIENCE
    while (run := await get(live, f"/runs/{run_id}"))["state"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} still running: {run}"
        await asyncio.sleep(0.02)
    return run


# --- end to end ----------------------------------------------------------------------------------


async def test_a_scenario_s_frame_is_injected_between_the_upstream_s_and_marked(
    folder: Path,
) -> None:
    async with backend() as upstream, proxying(folder, upstream.url) as live:
        stream = await asyncio.to_thread(EventStream, live.url, "?kinds=frame.")
        try:
            async with connect(live.ws_url + "/ws?client_id=ui") as client:
                real = await upstream.next_connection()
                await real.send("first from the backend")
                assert await receive(client) == "first from the backend"
                answer = await post(live, "/trigger/inject")
                assert answer["clients"] == 1
                assert await receive(client) == INJECTED
                await real.send(b"\x00\x01")
                assert await receive(client) == b"\x00\x01"
            seen = await asyncio.to_thread(stream.until, is_event("frame.sent", frame="0001"))
        finally:
            stream.close()
        journal = await get(live, "/journal?client=ui&direction=sent")
    events = [e for e in seen if e["event"] == "frame.sent"]
    marks = [(e["frame"], e.get("upstream", False), e.get("injected", False)) for e in events]
    assert marks == [
        ("first from the backend", True, False),
        (INJECTED, False, True),
        ("0001", True, False),
    ]
    assert events[0]["to"] == "ui"
    assert events[0]["run_id"] is None
    assert events[1]["run_id"] == answer["run_id"]
    assert events[1]["scenario"] == "inject"
    entries = journal["entries"]
    assert [(e["frame"], e.get("upstream"), e.get("injected")) for e in entries] == [
        ("first from the backend", True, None),
        (INJECTED, None, True),
        ("0001", True, None),
    ]


async def test_a_wait_is_answered_by_a_client_frame_that_also_reached_the_upstream(
    folder: Path,
) -> None:
    answer = json.dumps({"message_type": "CHAT_INPUT", "message": "hello"})
    async with (
        backend() as upstream,
        proxying(folder, upstream.url) as live,
        connect(live.ws_url + "/ws?client_id=ui") as client,
    ):
        await upstream.next_connection()
        run_id = (await post(live, "/trigger/ask?wait=false"))["run_id"]
        asked = json.loads(await receive(client))
        assert asked["message_type"] == "CHAT_REQUESTED"
        await client.send(answer)
        assert await upstream.next_frame() == answer
        assert json.loads(await receive(client)) == {
            "message_type": "CHAT",
            "message": "got hello",
        }
        run = await finished(live, run_id)
        received = await get(live, f"/journal?run={run_id}&direction=received")
    assert run["state"] == "finished"
    assert [e["frame"] for e in received["entries"]] == [answer]


async def test_every_frame_a_client_sends_reaches_the_upstream_in_order(folder: Path) -> None:
    # /ws/stream: an endpoint replay itself does not listen to still passes them on.
    async with (
        backend() as upstream,
        proxying(folder, upstream.url) as live,
        connect(live.ws_url + "/ws/stream?client_id=ui") as client,
    ):
        await upstream.next_connection()
        frames: list[str | bytes] = ["one", b"\xff\x00", "three"]
        for frame in frames:
            await client.send(frame)
        assert [await upstream.next_frame() for _ in range(3)] == [
            "one",
            b"\xff\x00",
            "three",
        ]


async def test_the_upstream_s_close_code_and_reason_reach_the_client(folder: Path) -> None:
    async with backend() as upstream, proxying(folder, upstream.url) as live:
        async with connect(live.ws_url + "/ws") as client:
            real = await upstream.next_connection()
            await real.send("last words")
            await real.close(4001, "the backend is done")
            assert await receive(client) == "last words"
            closed = await until_closed(client)
        assert closed.rcvd is not None
        assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "the backend is done")
        await connected(live, 0)


async def test_a_client_that_leaves_closes_its_upstream_with_its_code(folder: Path) -> None:
    async with backend() as upstream, proxying(folder, upstream.url) as live:
        client = await connect(live.ws_url + "/ws")
        await upstream.next_connection()
        await client.send("before leaving")
        await client.close(4002, "the user left")
        assert await upstream.next_frame() == "before leaving"
        assert await upstream.next_close() == (4002, "the user left")
        await connected(live, 0)
        assert live.replay.delivery.client_counts()["/ws"] == 0


async def test_a_scenario_s_disconnect_ends_the_live_session_with_its_code(folder: Path) -> None:
    (folder / "bye.yaml").write_text(
        "steps:\n  - disconnect: /ws\n    code: 4005\n    reason: the scenario says bye\n"
    )
    async with (
        backend() as upstream,
        proxying(folder, upstream.url) as live,
        connect(live.ws_url + "/ws") as client,
    ):
        await upstream.next_connection()
        await post(live, "/trigger/bye")
        closed = await until_closed(client)
        assert await upstream.next_close() == (4005, "the scenario says bye")
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4005, "the scenario says bye")


async def test_a_lost_upstream_connection_cuts_the_client(folder: Path) -> None:
    async with backend() as upstream, proxying(folder, upstream.url) as live:
        async with connect(live.ws_url + "/ws") as client:
            real = await upstream.next_connection()
            real.transport.abort()  # no close frame: the backend crashed
            closed = await until_closed(client)
        assert closed.rcvd is None  # cut as well, with no close frame


async def test_a_client_too_slow_for_its_upstream_is_dropped_and_its_upstream_closed(
    folder: Path,
) -> None:
    async with backend() as upstream, proxying(folder, upstream.url, queue_size=16) as live:
        stalled = await asyncio.to_thread(stalled_client, live.ws_url)
        try:
            real = await upstream.next_connection()
            await connected(live, 1)
            [slow] = live.replay.messages.clients.values()
            sent = 0
            while slow.dropped is None:
                assert sent < 2000, "128 MiB from the upstream and the client is still here"
                await real.send("x" * 64 * 1024)
                sent += 1
            assert slow.dropped == TOO_SLOW
            assert await upstream.next_close() == (1008, TOO_SLOW)
            assert live.replay.messages.drops == 1
        finally:
            stalled.close()


async def test_subprotocol_path_query_and_headers_reach_the_upstream(folder: Path) -> None:
    offered = [Subprotocol("chat.v2"), Subprotocol("chat.v1")]
    headers = {
        "X-Custom": "yes",
        "Cookie": "session=abc; replay_token=s3cret",
        "X-Replay-Token": "s3cret",
        "Authorization": "Bearer backend-token",
    }
    async with (
        backend(subprotocols=[Subprotocol("chat.v1")]) as upstream,
        proxying(folder, upstream.url) as live,
    ):
        url = live.ws_url + "/ws?client_id=ui&room=7"
        async with connect(url, subprotocols=offered, additional_headers=headers) as client:
            await upstream.next_connection()
            assert client.subprotocol == "chat.v1"
    [seen] = upstream.requests
    assert seen.path == "/ws?client_id=ui&room=7"
    assert seen.headers["x-custom"] == "yes"
    assert seen.headers["cookie"] == "session=abc"
    assert seen.headers["authorization"] == "Bearer backend-token"
    assert "x-replay-token" not in seen.headers
    assert seen.headers["x-forwarded-for"] == "127.0.0.1"
    assert seen.headers["x-forwarded-host"] == live.ws_url.removeprefix("ws://")


def a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_upstream_closes_the_client_with_1011_and_the_server_stays_up(
    folder: Path,
) -> None:
    async with proxying(folder, f"ws://127.0.0.1:{a_closed_port()}") as live:
        stream = await asyncio.to_thread(EventStream, live.url, "?kinds=upstream.")
        try:
            for _ in range(2):
                async with connect(live.ws_url + "/ws?client_id=ui") as client:
                    closed = await until_closed(client)
                assert closed.rcvd is not None
                assert closed.rcvd.code == 1011
                assert closed.rcvd.reason.startswith("upstream unreachable: ")
            [failed] = await asyncio.to_thread(stream.until, is_event("upstream.failed"))
        finally:
            stream.close()
        assert (await get(live, "/healthz"))["status"] == "ok"
        assert live.replay.delivery.client_counts()["/ws"] == 0
    assert failed["client"] == "ui"
    assert failed["endpoint"] == "/ws"
    assert failed["upstream"].startswith("ws://127.0.0.1:")


async def test_a_handshake_the_upstream_refuses_closes_the_client_saying_so(
    folder: Path,
) -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "no\n")

    async with serve(Backend().handle, "127.0.0.1", 0, process_request=refuse) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with (
            proxying(folder, f"ws://127.0.0.1:{port}") as live,
            connect(live.ws_url + "/ws") as client,
        ):
            closed = await until_closed(client)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1011
    assert closed.rcvd.reason == "upstream unreachable: it answered the handshake with HTTP 403"


async def test_without_an_upstream_frames_carry_no_marks(folder: Path) -> None:
    async with proxying(folder, None) as live:
        async with connect(live.ws_url + "/ws?client_id=ui") as client:
            await connected(live, 1)
            await post(live, "/trigger/inject")
            assert await receive(client) == INJECTED
        [entry] = (await get(live, "/journal?direction=sent"))["entries"]
    assert "injected" not in entry
    assert "upstream" not in entry


# --- the parts, without sockets ------------------------------------------------------------------


def test_headers_are_passed_on_as_a_proxy_does() -> None:
    headers = [
        (b"host", b"localhost:8123"),
        (b"connection", b"Upgrade, X-Hop"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-key", b"abc"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-extensions", b"permessage-deflate"),
        (b"sec-websocket-protocol", b"a, b"),
        (b"x-hop", b"named in Connection"),
        (b"origin", b"http://localhost:5173"),
        (b"user-agent", b"Mozilla/5.0"),
        (b"cookie", b"replay_token=s3cret"),
        (b"x-forwarded-for", b"10.0.0.1"),
        (b"accept-language", b"de"),
    ]
    assert forwarded_headers(headers, "127.0.0.1") == [
        ("origin", "http://localhost:5173"),
        ("user-agent", "Mozilla/5.0"),
        ("accept-language", "de"),
        ("x-forwarded-for", "10.0.0.1, 127.0.0.1"),
        ("x-forwarded-host", "localhost:8123"),
        ("x-forwarded-proto", "http"),
    ]
    assert offered_subprotocols(headers) == ["a", "b"]
    assert offered_subprotocols([]) == []


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (4001, "done", (4001, "done", False)),
        (1000, "", (1000, "", False)),
        (1005, "", (1000, "", False)),
        (1006, "", (1011, "upstream connection lost", True)),
        (None, "", (1011, "upstream connection lost", True)),
        (1001, "x" * 200, (1001, "x" * 120 + "...", False)),
    ],
)
def test_how_a_client_is_closed_when_its_upstream_closed(
    code: int | None, reason: str, expected: tuple[int, str, bool]
) -> None:
    assert client_close(code, reason) == expected


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (4002, "bye", (4002, "bye")),
        (1001, "", (1001, "")),
        (1008, "client too slow: send queue full", (1008, "client too slow: send queue full")),
        (1005, "", (1000, "")),
        (1015, "", (1000, "")),
        (1006, "", None),
    ],
)
def test_how_an_upstream_is_closed_when_its_client_left(
    code: int, reason: str, expected: tuple[int, str] | None
) -> None:
    assert upstream_close(code, reason) == expected


def test_clients_are_proxied_to_the_same_path_and_query_after_the_upstream_s_path() -> None:
    assert Proxy("ws://127.0.0.1:8000").target("/ws", "client_id=ui") == (
        "ws://127.0.0.1:8000/ws?client_id=ui"
    )
    assert Proxy("wss://user:pw@backend.test/api/").target("/ws/stream") == (
        "wss://user:pw@backend.test/api/ws/stream"
    )
    assert Proxy("wss://user:pw@backend.test:8443/api").shown == "wss://backend.test:8443/api"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost:8000", "the scheme is 'http'"),
        ("localhost:8000", "the scheme is 'localhost'"),
        ("ws://", "there is no host"),
        ("ws://localhost:99999", "Port out of range 0-65535"),
        ("ws://localhost:8000/ws?x=1", "clients' own queries are passed on: give none here"),
    ],
)
def test_an_upstream_that_is_not_a_websocket_url_is_refused(url: str, reason: str) -> None:
    with pytest.raises(UpstreamInvalid) as raised:
        parse_upstream(url)
    assert str(raised.value) == (
        f"--upstream {url!r}: {reason}; expected ws://HOST:PORT or wss://HOST:PORT, "
        "optionally with a path that clients' paths are appended to"
    )


def test_why_an_upstream_cannot_be_reached_is_one_short_sentence() -> None:
    assert describe(ConnectionRefusedError(111, "Connect call failed")) == "Connect call failed"
    assert describe(TimeoutError()) == "no answer within 10 s"
