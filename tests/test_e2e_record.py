"""The round trip, end to end: a real upstream, a real client session through
``replay record`` (a child process, as it is used), ``replay convert`` into a fresh
scenarios folder, and the scenario played by a real replay server to a fresh client,
which must see the same frames in the same order (text byte for byte, binary bytes,
close codes and reasons), each within 20 ms of where the first client saw it.

Two upstreams: a small server on the ``websockets`` library, here, that plays a fixed
script with known gaps (text, binary, a question the client answers, a custom close),
and the seed-style reference server of ``bench/seed_style.py`` (the original test
server's design), recorded on both of its sockets at once.

Times are the clients' own: each frame is stamped with ``time.monotonic()`` when its
bytes arrive, by a raw client (``tests.recording.RawClient``, the sans-I/O layer) read
without pause in a task of its own. Offsets are measured from the first frame, never as
absolute times. The time a client takes to answer is its own, not the server's: the two
clients answer after different pauses, and that pause is taken out of the offsets of
the frames that follow it, so what is compared is the server's think time. Every wait is
bounded; nothing sleeps in the hope that something has happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Close, Frame, Opcode

from replay.cli import main
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.recording import PATIENCE, RawClient, closed_port, ended

ROOT = Path(__file__).resolve().parent.parent
SEED_SERVER = ROOT / "bench" / "seed_style.py"
#: The issue's bound: each frame's offset within 20 ms of the recorded session's.
TOLERANCE = 0.020

# --- a client that stamps every frame ----------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """A frame as a client saw it: when its bytes arrived (monotonic seconds), its kind
    (``text``, ``binary``, ``close``) and payload (a close's is ``(code, reason)``)."""

    at: float
    kind: str
    payload: Any

    @property
    def what(self) -> tuple[str, Any]:
        return self.kind, self.payload


def _seen(at: float, frame: Frame) -> Seen | None:
    if frame.opcode is Opcode.TEXT:
        return Seen(at, "text", bytes(frame.data).decode())
    if frame.opcode is Opcode.BINARY:
        return Seen(at, "binary", bytes(frame.data))
    if frame.opcode is Opcode.CLOSE:
        close = Close.parse(frame.data)
        return Seen(at, "close", (close.code, close.reason))
    return None  # pings and pongs: keepalives, not the scenario's (none come this soon)


class Listener:
    """A raw client read without pause in a task of its own: every frame it receives,
    stamped with the monotonic time its bytes arrived."""

    def __init__(self, name: str, client: RawClient) -> None:
        self.name = name
        self.client = client
        self.seen: list[Seen] = []
        #: When the client sent its close, if it did: what comes after answers it.
        self.closing: float | None = None
        self._news = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, name: str, url: str) -> Listener:
        client = await RawClient.connect(url)
        assert client.protocol is not None
        assert client.protocol.handshake_exc is None, f"{name}: {client.protocol.handshake_exc}"
        assert not client.frames, f"{name}: frames came with the handshake: {client.frames}"
        return cls(name, client)

    async def _read(self) -> None:
        client = self.client
        protocol = client.protocol
        assert protocol is not None
        try:
            while not client.eof:
                data = await client.reader.read(65536)
                now = time.monotonic()
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                    client.eof = True
                for event in protocol.events_received():
                    seen = _seen(now, event) if isinstance(event, Frame) else None
                    if seen is not None:
                        self.seen.append(seen)
                client.flush()
                self._news.set()
        finally:
            client.writer.close()
            self._news.set()

    async def until(self, check: Callable[[], bool], what: str) -> None:
        """Wait until ``check()`` holds (PATIENCE at most), woken by each read."""
        deadline = time.monotonic() + PATIENCE
        while not check():
            if self._task.done():
                failure = None if self._task.cancelled() else self._task.exception()
                raise AssertionError(
                    f"{self.name}: the connection ended before {what}; it saw {self.shown()}"
                ) from failure
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {what} in time; it saw {self.shown()}")
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), left)

    async def frames(self, count: int) -> None:
        await self.until(lambda: len(self.seen) >= count, f"{count} frames")

    async def frame(self, kind: str, payload: Any) -> Seen:
        """The first frame (kind, payload), once it has come."""
        await self.until(lambda: (kind, payload) in self.what(), f"frame {payload!r}")
        return next(seen for seen in self.seen if seen.what == (kind, payload))

    async def ended(self) -> None:
        await self.until(self._task.done, "end of the connection")
        await self._task  # raises what ended the reading, if anything did

    def send_text(self, text: str) -> float:
        """Send a text frame; when it went (monotonic seconds)."""
        self.client.send(Opcode.TEXT, text.encode())
        return time.monotonic()

    def close(self, code: int = 1000) -> None:
        self.closing = time.monotonic()
        self.client.close(code)

    def what(self) -> list[tuple[str, Any]]:
        return [seen.what for seen in self.seen]

    def before_closing(self) -> list[Seen]:
        """The frames that came before the client began to close."""
        if self.closing is None:
            return list(self.seen)
        return [seen for seen in self.seen if seen.at < self.closing]

    def shown(self) -> str:
        return repr(self.what())

    async def stop(self) -> None:
        """End the connection if it is still open (after a failure)."""
        if not self._task.done():
            self.client.writer.close()
            self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task


@contextlib.asynccontextmanager
async def listening(name: str, url: str) -> AsyncIterator[Listener]:
    listener = await Listener.connect(name, url)
    try:
        yield listener
    finally:
        await listener.stop()


# --- the timing ------------------------------------------------------------------------------


def offsets(
    seen: list[Seen], origin: float, answered: tuple[float, float] | None = None
) -> list[float]:
    """Each frame's offset from ``origin`` (the first frame's arrival), less the client's
    own time to answer for the frames that came after its answer: ``answered`` is (when
    the question arrived, when the answer went)."""
    if answered is None:
        return [item.at - origin for item in seen]
    asked, sent = answered
    took = sent - asked
    return [item.at - origin - (took if item.at > sent else 0.0) for item in seen]


def differences(recorded: list[float], replayed: list[float]) -> list[float]:
    assert len(recorded) == len(replayed)
    return [abs(a - b) for a, b in zip(recorded, replayed, strict=True)]


def timing_report(label: str, recorded: list[float], replayed: list[float]) -> str:
    rows = [
        f"  #{i}: recorded {a * 1000:8.2f} ms, replayed {b * 1000:8.2f} ms, "
        f"off by {abs(a - b) * 1000:5.2f} ms"
        for i, (a, b) in enumerate(zip(recorded, replayed, strict=True))
    ]
    return "\n".join([f"{label}:", *rows])


class Lag:
    """How late this test's own event loop woke, at most, while the test ran: a task
    that asks to sleep 2 ms over and over and keeps the largest overshoot. The clients'
    stamps are taken on this loop, so a machine too busy to run it on time (other
    processes on both cores) moves them by as much; the bound allows for exactly that,
    measured, and no more."""

    PERIOD = 0.002

    def __init__(self) -> None:
        self.most = 0.0
        self._task: asyncio.Task[None] | None = None
        # Only while sessions are stamped: the test's own set-up blocks its loop at
        # times (a server starting, a file converted), when no frame is being timed.
        self._measuring = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """Count the delays from here to the end of the block."""
        self._measuring = True
        try:
            yield
        finally:
            self._measuring = False

    async def _watch(self) -> None:
        while True:
            asked, counted = time.monotonic(), self._measuring
            await asyncio.sleep(self.PERIOD)
            if counted and self._measuring:
                self.most = max(self.most, time.monotonic() - asked - self.PERIOD)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


@pytest.fixture
async def lag() -> AsyncIterator[Lag]:
    watching = Lag()
    watching.start()
    try:
        yield watching
    finally:
        watching.stop()


def assert_timing(
    label: str, recorded: list[float], replayed: list[float], lateness: float, lag: Lag
) -> float:
    """Every offset within TOLERANCE of the recorded one; the largest difference.

    On a machine that keeps time, that is the bound. The delays the machine itself
    measurably added are allowed on top: replay's own lateness for the run (how late its
    frames went out against their deadlines, measured by the server) and the test loop's
    largest wake-up delay (see :class:`Lag`), which is 0-2 ms on a quiet machine."""
    off = differences(recorded, replayed)
    bound = TOLERANCE + lateness + lag.most
    report = timing_report(label, recorded, replayed) + (
        f"\n  bound {bound * 1000:.2f} ms: {TOLERANCE * 1000:.0f} ms, plus replay's lateness "
        f"{lateness * 1000:.2f} ms, plus the test loop's delay {lag.most * 1000:.2f} ms"
    )
    print(report + f"\n  largest difference {max(off) * 1000:.2f} ms")
    assert max(off) <= bound, report
    return max(off)


# --- replay record, replay convert, a replay server ---------------------------------------


@contextlib.asynccontextmanager
async def recording_proxy(upstream: str, out: Path) -> AsyncIterator[str]:
    """``replay record --upstream UPSTREAM --port 0 --out OUT --ready-file F`` in a child
    process: its ws:// address once it listens. Stopped with SIGTERM at the end, which
    it must take as a clean stop (exit 0, the ready file removed)."""
    ready = out.with_name(out.name + ".ready.json")
    log = out.with_name(out.name + ".log")
    argv = [sys.executable, "-m", "replay", "record", "--upstream", upstream, "--port", "0"]
    argv += ["--out", str(out), "--ready-file", str(ready)]
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + PATIENCE
        while not ready.exists():  # a bounded look, every 10 ms, at the file it writes
            assert process.returncode is None, f"replay record exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"replay record not ready: {log.read_text()}"
            await asyncio.sleep(0.01)
        document = json.loads(ready.read_text())
        assert document["pid"] == process.pid
        yield str(document["ws"])
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), PATIENCE)
        assert code == 0, log.read_text()
        assert not ready.exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def converted(recordings: list[Path], folder: Path, name: str) -> str:
    """``replay convert RECORDING... --scenarios FOLDER --name NAME`` (in process), then
    ``replay validate``: the scenario's text."""
    argv = ["convert", *map(str, recordings), "--scenarios", str(folder), "--name", name]
    assert main(argv) == 0
    assert main(["validate", "--scenarios", str(folder)]) == 0
    return (folder / f"{name}.yaml").read_text()


@contextlib.contextmanager
def replay_server(folder: Path) -> Iterator[LiveServer]:
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _http(method: str, url: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


async def http(method: str, url: str) -> tuple[int, Any]:
    return await asyncio.wait_for(asyncio.to_thread(_http, method, url), PATIENCE * 3)


async def until_true(check: Callable[[], Any], what: str) -> None:
    """Await ``check()`` (an async callable) until it is true: every 20 ms, PATIENCE at
    most (for other processes' state, which sends no news)."""
    deadline = time.monotonic() + PATIENCE
    while not await check():
        assert time.monotonic() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.02)


async def registered(live: LiveServer, *wanted: tuple[str, str]) -> None:
    """Wait until the replay server lists every (endpoint, client id) in ``wanted``."""

    async def check() -> bool:
        status, body = await http("GET", f"{live.url}/clients")
        assert status == 200, body
        return set(wanted) <= {(c["endpoint"], c["client_id"]) for c in body["clients"]}

    await until_true(check, f"clients {wanted} connected")


async def play(live: LiveServer, name: str) -> str:
    """``POST /trigger/NAME`` (not waiting for the run to end): the run's id."""
    status, answer = await http("POST", f"{live.url}/trigger/{name}?wait=false")
    assert status in (200, 202), answer
    return str(answer["run_id"])


async def finished(live: LiveServer, run_id: str) -> dict[str, Any]:
    """The run, once it has ended; it must have finished."""
    run: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal run
        status, run = await http("GET", f"{live.url}/runs/{run_id}")
        assert status == 200, run
        return bool(run["state"] != "running")

    await until_true(check, f"run {run_id} ended")
    assert run["state"] == "finished", run
    return run


# --- 1. a websockets upstream with a fixed script -----------------------------------------

ASK = '{"message_type":"CHAT_REQUESTED","message":"What should I do next?"}'
ANSWER = '{"message_type":"CHAT_INPUT","message":"hi"}'
#: The upstream's script: (pause before, frame); ANSWER_NEEDED waits for the client's
#: answer, then the server thinks for the pause given with the next frame.
ANSWER_NEEDED = object()
SCRIPT: list[tuple[float, Any]] = [
    (0.12, '{"message_type":"EVENT","message":"run started"}'),
    (0.15, "plain text, not JSON: {{ not a template }} ünïcödé"),
    (0.20, b"\x00\x01\xfe\xffbinary"),
    (0.10, '{"message_type":"EVENT","message":"{\\"step\\":1,\\"tool\\":\\"search\\"}"}'),
    (0.13, '{"kind":"status","ok":true}'),
    (0.10, ASK),
    (0.00, ANSWER_NEEDED),
    (0.25, '{"message_type":"CHAT","message":"You said: hi"}'),  # the think time
    (0.15, b"\xde\xad\xbe\xef"),
    (0.10, (4001, "run over")),
]
#: How long each client takes to answer (its user typing): different on purpose.
RECORDED_ANSWER_TIME = 0.30
REPLAYED_ANSWER_TIME = 0.05


def expected_frames() -> list[tuple[str, Any]]:
    expected: list[tuple[str, Any]] = []
    for _, item in SCRIPT:
        if isinstance(item, str):
            expected.append(("text", item))
        elif isinstance(item, bytes):
            expected.append(("binary", item))
        elif isinstance(item, tuple):
            expected.append(("close", item))
    return expected


def port_of(server: Any) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])


async def scripted(ws: ServerConnection, answers: list[Any]) -> None:
    """Play SCRIPT to one client, with real pauses."""
    for pause, item in SCRIPT:
        if pause:
            await asyncio.sleep(pause)
        if item is ANSWER_NEEDED:
            answers.append(await asyncio.wait_for(ws.recv(), PATIENCE))
        elif isinstance(item, tuple):
            await ws.close(*item)
        else:
            await ws.send(item)


async def converse(client: Listener, answer_time: float) -> tuple[float, float]:
    """The client's side: wait for the question, take ``answer_time``, answer, and read
    until the server ends the connection. Returns (question arrived, answer sent)."""
    asked = await client.frame("text", ASK)
    await asyncio.sleep(answer_time)  # the user typing: a pause of the client's own
    sent = client.send_text(ANSWER)
    await client.ended()
    return asked.at, sent


async def test_scripted_upstream_round_trip(tmp_path: Path, lag: Lag) -> None:
    answers: list[Any] = []
    out = tmp_path / "recordings"
    async with (
        serve(lambda ws: scripted(ws, answers), "127.0.0.1", 0) as upstream,
        recording_proxy(f"ws://127.0.0.1:{port_of(upstream)}", out) as proxy,
    ):
        with lag.measuring():
            async with listening("recorded", f"{proxy}/ws?client_id=ui") as first:
                recorded_answer = await converse(first, RECORDED_ANSWER_TIME)
        (recording,) = await ended(out)
    assert answers == [ANSWER]
    assert first.what() == expected_frames()
    assert recording.end is not None
    assert (recording.end.code, recording.end.reason, recording.end.by) == (
        4001,
        "run over",
        "server",
    )

    folder = tmp_path / "scenarios"
    text = converted([Path(recording.file)], folder, "scripted")
    steps = ("message: EVENT", "raw:", "binary:", "wait: CHAT_INPUT", "message: CHAT")
    for step in (*steps, "disconnect: /ws", "code: 4001", "reason: run over"):
        assert step in text, text

    with replay_server(folder) as live:
        with lag.measuring():
            async with listening("replayed", f"{live.ws_url}/ws?client_id=ui") as second:
                await registered(live, ("/ws", "ui"))
                run_id = await play(live, "scripted")
                replayed_answer = await converse(second, REPLAYED_ANSWER_TIME)
        run = await finished(live, run_id)

    assert second.what() == first.what()
    recorded = offsets(first.seen, first.seen[0].at, recorded_answer)
    replayed = offsets(second.seen, second.seen[0].at, replayed_answer)
    # The gaps are the script's (each at least 100 ms), so the bound means something.
    assert recorded[-1] > 1.0, recorded
    assert_timing("scripted upstream", recorded, replayed, run["max_lateness_s"], lag)


# --- 2. the seed-style reference server, on both sockets ----------------------------------


@dataclass
class SeedServer:
    url: str
    process: subprocess.Popen[bytes]


def _start_seed(port: int, log: Path) -> subprocess.Popen[bytes] | None:
    """bench/seed_style.py on ``port``, once its /healthz answers as the seed server's
    does; None if it exited first (the port was taken in the meantime)."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, str(SEED_SERVER), str(port)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    try:
        while process.poll() is None:
            with contextlib.suppress(OSError):
                status, health = _http("GET", f"http://127.0.0.1:{port}/healthz")
                if status == 200 and "stream_clients" in health:
                    return process
            assert time.monotonic() < deadline, f"the seed server did not start: {log.read_text()}"
            time.sleep(0.05)
    except BaseException:
        _stop_seed(process)
        raise
    return None


def _stop_seed(process: subprocess.Popen[bytes]) -> None:
    """SIGINT, then a kill after 3 s: its handlers idle forever, so uvicorn's graceful
    stop would wait for them (bench/servers.py's SeedServer.grace)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def seed_server(tmp_path: Path) -> Iterator[SeedServer]:
    """bench/seed_style.py on a free port in a child process, as bench/servers.py starts
    it (a port found free, then given to it: tried again, on another, if it was taken)."""
    log = tmp_path / "seed.log"
    for _ in range(3):
        port = closed_port()
        process = _start_seed(port, log)
        if process is not None:
            break
    else:
        raise AssertionError(f"the seed server exited: {log.read_text()}")
    try:
        yield SeedServer(f"http://127.0.0.1:{port}", process)
    finally:
        _stop_seed(process)


SEED_MESSAGES = [
    ("CHAT_REQUESTED", "Test chat request"),
    ("IS_WAITING", "Waiting for user input"),
    ("EVENT", "Test event message"),
    ("PAUSE_STATUS", "System paused"),
]
SEED_CHUNKS = ["This is a ", "streaming message ", "sent in chunks."]


def seed_frames() -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """What the seed server's /trigger/all sends on /ws and on /ws/stream."""
    messages = [
        ("text", json.dumps({"message_type": kind, "message": text}, separators=(",", ":")))
        for kind, text in SEED_MESSAGES
    ]
    chunks = [
        ("text", json.dumps({"type": "default", "content": chunk}, separators=(",", ":")))
        for chunk in SEED_CHUNKS
    ]
    chunks.append(("text", '{"type":"close","content":null}'))
    return messages, chunks


async def both_sessions(
    messages: Listener, stream: Listener, go: Callable[[], Any]
) -> list[tuple[str, Seen]]:
    """``go()`` (what makes the server speak), then the 4 messages and 4 stream frames;
    then both clients close. Every frame before the closes, in arrival order, with its
    endpoint."""
    started = asyncio.create_task(go())
    await messages.frames(len(SEED_MESSAGES))
    await stream.frames(len(SEED_CHUNKS) + 1)
    await asyncio.wait_for(started, PATIENCE)
    for client in (messages, stream):
        client.close(1000)
    for client in (messages, stream):
        await client.ended()
        # Closed by the client: the close it got back answers its own, with the same code.
        assert client.seen[-1].what == ("close", (1000, "")), client.shown()
    arrivals = [("/ws", s) for s in messages.before_closing()]
    arrivals += [("/ws/stream", s) for s in stream.before_closing()]
    return sorted(arrivals, key=lambda item: item[1].at)


async def test_seed_style_server_round_trip(
    tmp_path: Path, seed_server: SeedServer, lag: Lag
) -> None:
    out = tmp_path / "recordings"
    upstream = seed_server.url.replace("http://", "ws://", 1)

    async def seed_clients(want: tuple[int, int]) -> bool:
        status, health = await http("GET", f"{seed_server.url}/healthz")
        return status == 200 and (health["clients"], health["stream_clients"]) == want

    async def trigger_seed() -> None:
        status, answer = await http("POST", f"{seed_server.url}/trigger/all")
        assert status == 200, answer

    async with recording_proxy(upstream, out) as proxy:
        with lag.measuring():
            async with (
                listening("recorded /ws", f"{proxy}/ws?client_id=ui") as messages,
                listening("recorded /ws/stream", f"{proxy}/ws/stream?client_id=ui") as stream,
            ):
                await until_true(lambda: seed_clients((1, 1)), "both clients at the seed server")
                first = await both_sessions(messages, stream, trigger_seed)
        recordings = await ended(out, 2)
    expected_messages, expected_chunks = seed_frames()
    assert [s.what for e, s in first if e == "/ws"] == expected_messages
    assert [s.what for e, s in first if e == "/ws/stream"] == expected_chunks
    assert sorted(r.header.endpoint for r in recordings) == ["/ws", "/ws/stream"]

    folder = tmp_path / "scenarios"
    text = converted([Path(r.file) for r in recordings], folder, "seed")
    # The seed's frames are Schwarm's exactly: message, chunk and close steps, never raw.
    assert "raw:" not in text, text
    for kind, _ in SEED_MESSAGES:
        assert f"message: {kind}" in text, text
    assert text.count("chunk: ") == len(SEED_CHUNKS), text
    assert text.count("close: stream") == 1, text

    with replay_server(folder) as live:
        with lag.measuring():
            async with (
                listening("replayed /ws", f"{live.ws_url}/ws?client_id=ui") as messages,
                listening("replayed /ws/stream", f"{live.ws_url}/ws/stream?client_id=ui") as stream,
            ):
                await registered(live, ("/ws", "ui"), ("/ws/stream", "ui"))
                run_ids: list[str] = []

                async def trigger_replay() -> None:
                    run_ids.append(await play(live, "seed"))

                second = await both_sessions(messages, stream, trigger_replay)
        run = await finished(live, run_ids[0])

    # The same frames on each endpoint, and the same order across both.
    assert [(e, s.what) for e, s in second] == [(e, s.what) for e, s in first]
    recorded = offsets([s for _, s in first], first[0][1].at)
    replayed = offsets([s for _, s in second], second[0][1].at)
    assert recorded[-1] > 2.0, recorded  # the seed's pauses: 0.5 s and 0.2 s
    assert_timing(
        "seed-style server, /ws and /ws/stream", recorded, replayed, run["max_lateness_s"], lag
    )
