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
import contextlib
import itertools
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from replay.client import TOO_SLOW
from replay.library import ScenarioLibrary
from replay.server import Settings
from replay.timeline import build_timeline
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


# --- order across both endpoints at speed 0 -------------------------------------------------

INTERLEAVED = """
steps:
  - repeat: 3
    steps:
      - message: CHAT_REQUESTED
        text: "ask {{ iteration }}"
      - stream: "one{{ iteration }} two{{ iteration }} three{{ iteration }}"
        rate: 20
      - message: EVENT
        text: "event {{ iteration }}"
      - tool: "tool {{ iteration }}"
      - message: IS_WAITING
        text: "waiting {{ iteration }}"
"""


#: Linux's SO_TIMESTAMPNS (and SCM_TIMESTAMPNS), which Python's socket module lacks.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class StampedReader:
    """A WebSocket client of one endpoint that writes down when each frame's bytes
    reached this machine's kernel (SO_TIMESTAMPNS), so that arrival order across two
    connections can be checked whatever order a program then reads them in.

    One read may bring several frames and carries the time its last bytes arrived, so a
    frame is known to have arrived after the previous read (``after``) and by the time
    of its own (``by``): bounds, not a guess."""

    def __init__(self, live: LiveServer, path: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.frames: list[tuple[int, int, str]] = []  # (after, by, text)
        self.sock = socket.create_connection(("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.protocol = ClientProtocol(parse_uri(live.ws_url + path))
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        from websockets.frames import Opcode

        previous = 0
        while True:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(16))
            except OSError:
                return
            if not data:
                return
            stamp = next(
                (
                    seconds * 1_000_000_000 + nanoseconds
                    for level, kind, raw in ancillary
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS
                    for seconds, nanoseconds in [struct.unpack("qq", raw[:16])]
                ),
                0,
            )
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if getattr(event, "opcode", None) == Opcode.TEXT:
                    self.frames.append((previous, stamp, event.data.decode()))
            previous = stamp

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def inversions(
    planned: list[str], readers: dict[str, list[tuple[int, int, str]]], endpoint: dict[str, str]
) -> list[str]:
    """Pairs of frames that provably arrived in the other order than planned: each
    connection's frames must be in the planned order, and a frame planned before one on
    the other connection must not have arrived only after that one had (``after`` of
    the first later than ``by`` of the second)."""
    found = []
    for path, frames in readers.items():
        if [text for _, _, text in frames] != [text for text in planned if endpoint[text] == path]:
            found.append(f"{path}: not in the planned order")
    position = {path: 0 for path in readers}
    arrival = []
    for text in planned:
        path = endpoint[text]
        arrival.append(readers[path][position[path]])
        position[path] += 1
    for (after, _, first), (_, by, second) in itertools.pairwise(arrival):
        if endpoint[first] != endpoint[second] and after > by:
            found.append(f"{second} arrived before {first}")
    return found


@pytest.mark.skipif(sys.platform != "linux", reason="kernel receive timestamps (Linux)")
def test_at_speed_0_frames_arrive_in_the_scenarios_order_across_both_endpoints(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "mixed.yaml").write_text(INTERLEAVED)
    cues = [cue for cue in build_timeline("mixed", ScenarioLibrary(folder).catalog())]
    planned = [cue.frame for cue in cues]
    endpoint = {cue.frame: cue.endpoint for cue in cues}
    assert len(set(planned)) == len(planned)  # each frame tells which it is
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    readers = {path: StampedReader(live, path + "?client_id=ui") for path in ("/ws", "/ws/stream")}
    try:
        deadline = time.monotonic() + 10
        while sum(live.replay.delivery.client_counts().values()) < 2:
            assert time.monotonic() < deadline, "the clients never connected"
            time.sleep(0.01)
        for run in range(100):
            for reader in readers.values():
                reader.frames.clear()
            post(f"{live.url}/trigger/mixed?speed=0")
            deadline = time.monotonic() + 10
            while sum(len(reader.frames) for reader in readers.values()) < len(planned):
                assert time.monotonic() < deadline, f"run {run}: frames missing"
                time.sleep(0.005)
            frames = {path: list(reader.frames) for path, reader in readers.items()}
            assert inversions(planned, frames, endpoint) == [], f"run {run}"
    finally:
        for reader in readers.values():
            reader.close()
        server.should_exit = True
        thread.join(timeout=10)


# --- run control ---------------------------------------------------------------------------

#: Frames due at 0, 1.5, 2 and 2.5 s: the pause comes right after the first.
PAUSED_TICKS = """
steps:
  - message: EVENT
    text: t0
    delay: 1.5
  - message: EVENT
    text: t1
    delay: 0.5
  - message: EVENT
    text: t2
    delay: 0.5
  - message: EVENT
    text: t3
"""
PAUSED_OFFSETS = [0.0, 1.5, 2.0, 2.5]
#: How early a frame may seem: the first frame's own trip to the client, which every
#: later frame is measured from, may take this much longer than theirs.
EARLY = 0.05


async def test_a_paused_run_plays_on_shifted_by_the_time_paused(
    live_server: LiveServer, scenarios_dir: Path
) -> None:
    (scenarios_dir / "paused-ticks.yaml").write_text(PAUSED_TICKS)
    live = live_server
    async with connect(live.ws_url + "/ws") as ws:
        await connected(live, 1)
        started = await asyncio.to_thread(post, f"{live.url}/trigger/paused-ticks?wait=false")
        run = f"{live.url}/runs/{started['run_id']}"
        arrivals = [(time.monotonic(), str(await asyncio.wait_for(ws.recv(), PATIENCE)))]
        paused = await asyncio.to_thread(post, f"{run}/pause")
        assert paused["paused"] is True
        assert paused["sent"] == 1, "the pause came after the second frame: machine too busy"
        # Hold the pause for a second, read on the server's own clock.
        deadline = time.monotonic() + PATIENCE
        while (await asyncio.to_thread(get, run))[1]["paused_s"] < 1.0:
            assert time.monotonic() < deadline, "the pause never lasted a second"
            await asyncio.sleep(0.05)
        resumed = await asyncio.to_thread(post, f"{run}/resume")
        held = resumed["paused_s"]
        assert resumed["paused"] is False
        assert resumed["sent"] == 1  # nothing went out while paused
        while len(arrivals) < len(PAUSED_OFFSETS):
            frame = str(await asyncio.wait_for(ws.recv(), PATIENCE))
            arrivals.append((time.monotonic(), frame))
    assert [json.loads(text)["message"] for _, text in arrivals] == ["t0", "t1", "t2", "t3"]
    first = arrivals[0][0]
    for (at, _), planned in zip(arrivals[1:], PAUSED_OFFSETS[1:], strict=True):
        due = planned + held
        assert at - first >= due - EARLY, f"frame early: {at - first:.3f}s, due {due:.3f}s"
        assert at - first <= due + SLACK, f"frame late: {at - first:.3f}s, due {due:.3f}s"
    _, summary = await asyncio.to_thread(get, run)
    assert summary["state"] == "finished"
    assert summary["paused_s"] == held


async def test_a_step_sends_exactly_the_next_frame(
    live_server: LiveServer, scenarios_dir: Path
) -> None:
    (scenarios_dir / "paused-ticks.yaml").write_text(PAUSED_TICKS)
    live = live_server
    async with connect(live.ws_url + "/ws") as ws:
        await connected(live, 1)
        started = await asyncio.to_thread(post, f"{live.url}/trigger/paused-ticks?wait=false")
        run = f"{live.url}/runs/{started['run_id']}"
        assert json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))["message"] == "t0"
        stepped = await asyncio.to_thread(post, f"{run}/step")
        assert (stepped["stepped"]["kind"], stepped["stepped"]["step"]) == ("frame", "1")
        assert (stepped["paused"], stepped["sent"]) == (True, 2)
        assert json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))["message"] == "t1"
        request = urllib.request.Request(run, method="DELETE")
        await asyncio.to_thread(urllib.request.urlopen, request, timeout=30)
        _, summary = await asyncio.to_thread(get, run)
        assert (summary["state"], summary["sent"]) == ("cancelled", 2)
