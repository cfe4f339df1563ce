"""The CLI's HTTP calls, against a stub server that records what it was asked."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from replay import remote
from replay.errors import ServerRefused, ServerUnavailable


class Stub(BaseHTTPRequestHandler):
    """Answers POST /runs/{id}/{action}: 409 for run 'ended', else a summary."""

    seen: list[tuple[str, str, str | None]] = []

    def do_POST(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if "/runs/ended/" in self.path:
            self._answer(409, {"detail": "run ended has already ended"})
        elif self.path.startswith("/runs/teapot/"):
            self._answer(418, {})
        else:
            self._answer(200, {"run_id": "r1", "paused": True, "speed": 2})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[str]:
    Stub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_control_posts_to_the_runs_route_with_the_token(stub: str) -> None:
    assert remote.control(stub, "r1", "pause", "secret") == {
        "run_id": "r1",
        "paused": True,
        "speed": 2,
    }
    remote.control(stub + "/", "r1", "speed", None, speed=0.5)
    assert Stub.seen == [
        ("POST", "/runs/r1/pause", "Bearer secret"),
        ("POST", "/runs/r1/speed?speed=0.5", None),
    ]


def test_control_refused_says_the_servers_reason(stub: str) -> None:
    with pytest.raises(ServerRefused) as refused:
        remote.control(stub, "ended", "resume")
    assert refused.value.status == 409
    assert str(refused.value) == "run ended has already ended"
    with pytest.raises(ServerRefused, match="the server answered 418"):
        remote.control(stub, "teapot", "step")


def test_control_without_a_server(unused_port: int) -> None:
    with pytest.raises(ServerUnavailable, match="no replay server answers"):
        remote.control(f"http://127.0.0.1:{unused_port}", "r1", "pause")


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
