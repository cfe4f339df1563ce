"""End to end: declared HTTP routes on a real uvicorn (port 0), a real `websockets` client,
real time: a Schwarm-style frontend polls and posts while a scenario plays."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.hostile import PATIENCE
from tests.protocols import CHAT, SCHWARM_PROTOCOL, write_protocol


def call(live: LiveServer, method: str, path: str, **query: str) -> tuple[int, Any, float]:
    """An HTTP request; its status, its JSON answer and how long it took."""
    url = live.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    started = time.monotonic()
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), time.monotonic() - started


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "chat-http.yaml").write_text(CHAT)
    slower = "  - {path: /slower, latency: 300ms, body: '{{ state.paused }}'}\n"
    write_protocol(folder, SCHWARM_PROTOCOL.replace("state:", slower + "state:"))
    server, uvicorn_server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    try:
        yield server
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=10)


def test_a_frontend_pauses_chats_and_gets_answers_over_the_socket(live: LiveServer) -> None:
    with connect(f"{live.ws_url}/ws?client_id=ui") as ws:
        assert call(live, "GET", "/break")[:2] == (200, True)
        status, run, _ = call(live, "POST", "/trigger/chat-http", wait="false")
        assert status == 202
        assert json.loads(ws.recv(PATIENCE))["message_type"] == "CHAT_REQUESTED"
        assert call(live, "POST", "/chat", user_input="Hello", client_id="ui")[:2] == (200, "Hello")
        assert json.loads(ws.recv(PATIENCE)) == {
            "message_type": "CHAT",
            "message": "You said: Hello (ui)",
        }
        assert call(live, "GET", "/break")[:2] == (200, False)  # POST /chat flipped it
    _, summary, _ = call(live, "GET", f"/runs/{run['run_id']}")
    deadline = time.monotonic() + PATIENCE
    while summary["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
        _, summary, _ = call(live, "GET", f"/runs/{run['run_id']}")
    assert summary["state"] == "finished"
    _, journal, _ = call(live, "GET", "/journal", endpoint="http")
    assert [entry["message_type"] for entry in journal["entries"]] == [
        "GET /break",
        "POST /chat",
        "GET /break",
    ]


def test_latency_is_never_shorter_than_declared(live: LiveServer) -> None:
    status, body, took = call(live, "GET", "/slower")
    assert (status, body) == (200, True)
    assert took >= 0.3
    assert call(live, "GET", "/nothing")[:2] == (404, {"detail": "Not Found"})


def test_a_server_that_stops_answers_requests_waiting_out_their_latency(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    write_protocol(folder, "routes:\n  - {path: /slow, latency: 30m, body: never}\n")
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    answers: list[tuple[int, Any, float]] = []
    waiting = threading.Thread(target=lambda: answers.append(call(live, "GET", "/slow")))
    waiting.start()
    deadline = time.monotonic() + PATIENCE
    while not live.replay.backend.waiting:
        assert time.monotonic() < deadline, "the request never began to wait"
        time.sleep(0.02)
    server.should_exit = True
    waiting.join(PATIENCE)
    thread.join(PATIENCE)
    assert not thread.is_alive(), "the server did not stop"
    [(status, body, took)] = answers
    assert status == 503
    assert body == {"detail": "the server is shutting down: send the request again later"}
    assert took < PATIENCE
