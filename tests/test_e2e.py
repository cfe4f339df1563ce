"""End to end: real uvicorn on port 0, real `websockets` clients, real time.

Tolerances are generous: these check frames, order and offsets, not speed. A frame is
never early (that holds however busy the machine is), and never late by more than SLACK:
enough for a loaded machine, still far less than a scenario's length, so that a run
ignoring its pauses or playing at the wrong speed fails. The exact offsets are checked on
a virtual clock (tests/test_runner.py); lateness is measured by bench/lateness.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from replay.client import TOO_SLOW
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.hostile import PATIENCE, connected

#: Seconds a frame may be late on a shared, busy machine: with two CPU-bound processes
#: beside the suite on two cores, single frames came up to 0.46 s late.
SLACK = 1.0

SEED_MESSAGES = [
    (0.0, "CHAT_REQUESTED", "Test chat request"),
    (0.5, "IS_WAITING", "Waiting for user input"),
    (1.0, "EVENT", "Test event message"),
    (1.5, "PAUSE_STATUS", "System paused"),
]
SEED_STREAM = [
    (0.0, {"type": "default", "content": "This is a "}),
    (0.2, {"type": "default", "content": "streaming message "}),
    (0.4, {"type": "default", "content": "sent in chunks."}),
    (0.6, {"type": "close", "content": None}),
]


def post(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


async def collect(url: str, count: int, into: list[tuple[float, str]]) -> None:
    async with connect(url) as ws:
        while len(into) < count:
            frame = str(await ws.recv())
            into.append((time.monotonic(), frame))


async def play(
    live: LiveServer, name: str, expect: dict[str, int], already: int = 0
) -> dict[str, Any]:
    """Connect to each endpoint in ``expect``, trigger ``name``, collect frames and times.

    ``already`` is how many other clients are connected, so the trigger waits for ours.
    """
    received: dict[str, list[tuple[float, str]]] = {path: [] for path in expect}
    listeners = [
        asyncio.create_task(collect(live.ws_url + path, count, received[path]))
        for path, count in expect.items()
    ]
    await connected(live, already + len(expect))
    started = time.monotonic()
    answer = await asyncio.to_thread(post, f"{live.url}/trigger/{name}")
    await asyncio.wait_for(asyncio.gather(*listeners), PATIENCE)
    return {"answer": answer, "started": started, **received}


def offsets(frames: list[tuple[float, str]], started: float) -> list[float]:
    return [at - started for at, _ in frames]


def assert_on_time(actual: list[float], planned: list[float], shift: float = 0.0) -> None:
    for got, want in zip(actual, planned, strict=True):
        assert want + shift <= got + 0.01, f"frame early: {got:.3f}s, planned {want + shift}s"
        assert got <= want + shift + SLACK, f"frame late: {got:.3f}s, planned {want + shift}s"


def assert_lasted(duration: float, planned: float) -> None:
    """A run's duration: never shorter than planned, at most SLACK longer."""
    assert planned - 0.01 <= duration <= planned + SLACK, (duration, planned)


async def test_messages_frames_order_and_offsets(live_server: LiveServer) -> None:
    result = await play(live_server, "messages", {"/ws": 4})
    frames = [json.loads(text) for _, text in result["/ws"]]
    assert frames == [{"message_type": t, "message": m} for _, t, m in SEED_MESSAGES]
    assert_on_time(offsets(result["/ws"], result["started"]), [o for o, _, _ in SEED_MESSAGES])
    answer = result["answer"]
    assert answer["status"] == "success"
    assert answer["sent"] == 4
    assert answer["clients"] == 1
    assert_lasted(answer["duration_s"], 2.0)


async def test_stream_frames_order_and_offsets(live_server: LiveServer) -> None:
    result = await play(live_server, "stream", {"/ws/stream": 4})
    assert [json.loads(text) for _, text in result["/ws/stream"]] == [f for _, f in SEED_STREAM]
    assert_on_time(offsets(result["/ws/stream"], result["started"]), [o for o, _ in SEED_STREAM])
    assert_lasted(result["answer"]["duration_s"], 0.6)


async def test_all_plays_messages_then_stream(live_server: LiveServer) -> None:
    result = await play(live_server, "all", {"/ws": 4, "/ws/stream": 4})
    assert [json.loads(t)["message"] for _, t in result["/ws"]] == [m for *_, m in SEED_MESSAGES]
    assert [json.loads(t) for _, t in result["/ws/stream"]] == [f for _, f in SEED_STREAM]
    started = result["started"]
    assert_on_time(offsets(result["/ws"], started), [o for o, _, _ in SEED_MESSAGES])
    assert_on_time(offsets(result["/ws/stream"], started), [o for o, _ in SEED_STREAM], shift=2.0)
    assert result["answer"]["clients"] == 2
    assert_lasted(result["answer"]["duration_s"], 2.6)


def big_scenarios(folder: Path, frames: int, size: int) -> None:
    (folder / "big.yaml").write_text(f"steps:\n  - message: EVENT\n    text: {'x' * size}\n")
    plays = "".join("  - play: big\n" for _ in range(frames))
    (folder / "flood.yaml").write_text(f"steps:\n{plays}")


def stalled_client(ws_url: str) -> socket.socket:
    """A raw WebSocket client (id ``stalled``) that completes the handshake, then never
    reads again.

    Its receive buffer is tiny, so the server's socket buffers fill up quickly.
    """
    host, port = ws_url.removeprefix("ws://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws?client_id=stalled HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    sock.settimeout(PATIENCE)
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> bool:
    """Drain the socket; True if the server closed or reset it within ``limit`` seconds."""
    sock.settimeout(limit)
    try:
        while sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


#: The send bound of the server below: QUEUE_SIZE frames of the size being sent.
QUEUE_SIZE = 16


async def test_a_client_that_stops_reading_is_dropped_and_the_others_get_everything(
    scenarios_dir: Path,
) -> None:
    # Bursts of fewer frames than the bound, at speed 0: a client that reads nothing at all
    # while a burst is sent (its process not scheduled, say) is never too far behind.
    burst, size = QUEUE_SIZE - 1, 64 * 1024
    big_scenarios(scenarios_dir, burst, size)
    live, server, thread = start_live_server(
        Settings(scenarios=scenarios_dir, isolated=True, queue_size=QUEUE_SIZE)
    )
    stalled = await asyncio.to_thread(stalled_client, live.ws_url)
    try:
        async with connect(
            live.ws_url + "/ws?client_id=healthy", max_size=None, compression=None
        ) as healthy:
            await connected(live, 2)
            [slow] = [c for c in live.replay.messages.clients.values() if c.id == "stalled"]

            async def flood() -> None:
                """Play a burst; the healthy client gets every frame of it."""
                answer = await asyncio.to_thread(post, f"{live.url}/trigger/flood?speed=0")
                assert (answer["status"], answer["sent"]) == ("success", burst)
                for _ in range(burst):
                    frame = await asyncio.wait_for(healthy.recv(), PATIENCE)
                    assert len(frame) > size

            # The healthy client reads each burst in full before the next is played, so it
            # is never more than a burst behind; the stalled one falls further behind with
            # every burst, past what the kernel's socket buffers hold, then past the bound.
            bursts = 0
            while slow.dropped is None:
                assert bursts < 100, "100 bursts (96 MiB) and the stalled client is still here"
                await flood()
                bursts += 1
            await flood()  # and the others still get everything after the drop
            # Exactly one client was dropped for not reading: the stalled one.
            assert slow.dropped == TOO_SLOW
            assert live.replay.messages.drops == 1
            assert [c.id for c in live.replay.messages.clients.values()] == ["healthy"]
        # and its connection was cut, so it cannot hold memory on the server any longer
        assert await asyncio.to_thread(read_until_closed, stalled, PATIENCE)
    finally:
        stalled.close()
        server.should_exit = True
        thread.join(timeout=10)


async def test_garbage_from_one_client_does_not_disturb_another(live_server: LiveServer) -> None:
    async with connect(live_server.ws_url + "/ws") as rude:
        await rude.send("{not json")
        await rude.send(b"\x00\x01\x02")
        result = await play(live_server, "messages", {"/ws": 4}, already=1)
        assert len(result["/ws"]) == 4
        await rude.send('{"message_type": "CHAT_INPUT", "message": "still here"}')
        assert json.loads(await rude.recv())["message_type"] == "CHAT_REQUESTED"


def get(url: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


async def test_odd_files_never_take_the_server_or_its_clients_down(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "good.yaml").write_text("steps:\n  - message: EVENT\n    text: still here\n")
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    try:
        async with connect(live.ws_url + "/ws") as ws:
            await connected(live, 1)
            # Files that once froze the server or made every route answer 500, added
            # while it runs and a client is connected.
            os.mkfifo(folder / "fifo.yaml")
            (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
            (folder / "date.yaml").write_text("x-released: 2024-02-30\nsteps:\n  - chunk: a\n")
            (folder / "digits.yaml").write_text(f"x-n: {'9' * 5000}\nsteps:\n  - chunk: a\n")
            (folder / os.fsdecode(b"\xff.yaml")).write_text("steps:\n  - chunk: a\n")
            status, listing = await asyncio.to_thread(get, f"{live.url}/scenarios")
            assert status == 200
            valid = {s["name"]: s["valid"] for s in listing["scenarios"]}
            assert valid == {
                "good": True,
                "fifo": False,
                "loop": False,
                "date": False,
                "digits": False,
                "\\xff": False,
            }
            answer = await asyncio.to_thread(post, f"{live.url}/trigger/good?speed=0")
            assert answer["status"] == "success"
            frame = await asyncio.wait_for(ws.recv(), 5)
            assert json.loads(frame) == {"message_type": "EVENT", "message": "still here"}
            # A second client still gets in (connecting reads the folder for on-connect runs).
            async with connect(live.ws_url + "/ws") as other:
                await connected(live, 2)
                await other.ping()
        status, health = await asyncio.to_thread(get, f"{live.url}/healthz")
        assert (status, health["status"]) == (200, "ok")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive(), "the server did not stop"
