"""The time limit on a request's body (replay/bodies.py): in process, then over real uvicorn
with a raw socket that sends headers and no body."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from starlette.types import Message

from replay.bodies import BodyDeadline, PendingBodies
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.hostile import PATIENCE, serving

SCOPE = {"type": "http", "method": "POST", "path": "/trigger/x", "headers": []}


class Exchange:
    """An ASGI app behind BodyDeadline, and what it saw and sent."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def status(self) -> int | None:
        starts = [m["status"] for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) <= 1, self.sent
        return starts[0] if starts else None

    def detail(self) -> str:
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return str(json.loads(body)["detail"])


async def never() -> Message:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def reads_the_body_then_answers(
    exchange: Exchange, scope: Any, receive: Any, send: Any
) -> None:
    exchange.received.append(await receive())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"played"})


async def test_a_body_that_never_comes_is_answered_408_and_the_app_hears_the_client_left() -> None:
    exchange = Exchange()
    scope = {**SCOPE, "headers": [(b"content-length", b"100")]}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await reads_the_body_then_answers(exchange, scope, receive, send)

    await BodyDeadline(app, seconds=0)(scope, never, exchange.send)
    assert exchange.received == [{"type": "http.disconnect"}]
    assert exchange.status() == 408  # the app's own answer (200) was dropped
    assert exchange.detail() == (
        "the request body did not arrive in time: 0 bytes of the 100 bytes announced came "
        "in 0 s. Send the whole body with the request"
    )
    start = exchange.sent[0]
    assert (b"connection", b"close") in start["headers"]


async def test_a_body_that_comes_in_time_is_passed_on() -> None:
    exchange = Exchange()
    parts = [
        {"type": "http.request", "body": b"{}", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
    ]

    async def receive() -> Message:
        return parts.pop(0)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        exchange.received.append(await receive())
        await reads_the_body_then_answers(exchange, scope, receive, send)

    await BodyDeadline(app, seconds=60)(SCOPE, receive, exchange.send)
    assert [m.get("body") for m in exchange.received] == [b"{}", b""]
    assert exchange.status() == 200


async def after_a_pause() -> Message:
    await asyncio.sleep(0)  # a limit already past would end this wait
    return {"type": "http.disconnect", "heard": "from the client"}


async def test_once_the_body_is_whole_waiting_for_the_client_to_leave_has_no_limit() -> None:
    exchange = Exchange()
    messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> Message:
        return next(messages, None) or await after_a_pause()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        exchange.received += [await receive(), await receive()]

    await BodyDeadline(app, seconds=0)(SCOPE, receive, exchange.send)
    assert exchange.received[1] == {"type": "http.disconnect", "heard": "from the client"}


async def test_once_the_app_has_answered_the_limit_no_longer_applies() -> None:
    # A route that does not read the body (the event feed) streams its answer and listens
    # for the client leaving: that is not waiting for a body.
    exchange = Exchange()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        exchange.received.append(await receive())
        await send({"type": "http.response.body", "body": b"{}"})

    await BodyDeadline(app, seconds=0)(SCOPE, after_a_pause, exchange.send)
    assert exchange.received == [{"type": "http.disconnect", "heard": "from the client"}]
    assert exchange.status() == 200


async def test_a_server_that_stops_ends_the_waits_at_once_with_503() -> None:
    exchange, pending = Exchange(), PendingBodies()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await reads_the_body_then_answers(exchange, scope, receive, send)

    request = asyncio.create_task(BodyDeadline(app, 3600, pending)(SCOPE, never, exchange.send))
    deadline = time.monotonic() + PATIENCE
    while not len(pending):  # the app is waiting for the body
        assert time.monotonic() < deadline, "the app never asked for the body"
        await asyncio.sleep(0)
    pending.close()
    await asyncio.wait_for(request, PATIENCE)
    assert exchange.status() == 503
    assert exchange.detail() == "the server is shutting down: send the request again later"
    assert len(pending) == 0
    # A request that starts once the server is stopping is not waited for either.
    later = Exchange()

    async def other(scope: Any, receive: Any, send: Any) -> None:
        await reads_the_body_then_answers(later, scope, receive, send)

    await asyncio.wait_for(BodyDeadline(other, 3600, pending)(SCOPE, never, later.send), PATIENCE)
    assert later.status() == 503


# Over real uvicorn.

HEADERS = (
    b"POST /trigger/messages?speed=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
)


def stalled_post(live: LiveServer, body: bytes = b"") -> socket.socket:
    """A trigger whose headers announce 100 bytes of body, and ``body`` (less) sent."""
    port = int(live.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)
    sock.sendall(HEADERS + body)
    return sock


def read_to_the_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (PATIENCE at most)."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def parts(answer: bytes) -> tuple[str, str, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, _, headers = head.decode().partition("\r\n")
    return status, headers.lower(), json.loads(body)


def test_a_post_whose_body_never_comes_gets_408_and_is_closed(scenarios_dir: Path) -> None:
    with serving(Settings(scenarios=scenarios_dir, isolated=True, body_timeout=0.5)) as (live, _):
        for sent in (b"", b'{"vars":'):
            with stalled_post(live, sent) as sock:
                status, headers, body = parts(read_to_the_end(sock))  # ends: the server closed
            assert status == "HTTP/1.1 408 Request Timeout"
            assert "connection: close" in headers
            assert body["detail"].startswith(
                f"the request body did not arrive in time: {len(sent)} bytes of the 100 bytes "
                "announced came in 0.5 s"
            )
        assert live.replay.runner.runs() == []  # nothing played


def test_stopping_the_server_with_a_body_on_its_way_ends_at_once(scenarios_dir: Path) -> None:
    # A limit far longer than the test waits: the server must not wait for it to stop.
    settings = Settings(scenarios=scenarios_dir, isolated=True, body_timeout=3600)
    live, server, thread = start_live_server(settings)
    try:
        pending = server.config.app.state.pending_bodies
        with stalled_post(live) as sock:
            deadline = time.monotonic() + PATIENCE
            while not len(pending):  # the request has reached the app
                assert time.monotonic() < deadline, "the request never reached the app"
                threading.Event().wait(0.01)
            server.should_exit = True
            thread.join(timeout=PATIENCE)
            assert not thread.is_alive(), "the server did not stop"
            status, _, body = parts(read_to_the_end(sock))
        assert status == "HTTP/1.1 503 Service Unavailable"
        assert body["detail"] == "the server is shutting down: send the request again later"
        assert live.replay.runner.runs() == []
    finally:
        server.should_exit = True
        thread.join(timeout=PATIENCE)
