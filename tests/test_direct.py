"""The direct line: frames written straight to uvicorn's sans-I/O WebSocket connections."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.streams import StreamReader

from replay.client import TOO_SLOW, Client
from replay.direct import (
    BEHIND,
    CLOSING,
    INVALID_UTF8,
    PROTOCOL_KEY,
    TRANSPORT_KEY,
    WRITTEN,
    InvalidUtf8Filter,
    Line,
    burst,
    framed,
    quiet_invalid_utf8,
)
from replay.protocol import Endpoint, chunk_frame
from replay.runner import RunState
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.fakes import FakeConn, FakeProtocol, FakeTransport, FakeWebSocket
from tests.hostile import PATIENCE


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("the frame did not parse")


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_framed_text_is_what_a_server_puts_on_the_wire(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)
    frame = parse(framed(text))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert frame.data.decode() == text


def test_framed_bytes_are_a_binary_frame() -> None:
    frame = parse(framed(b"\x00\x01\xff"))
    assert (frame.opcode, frame.data) == (Opcode.BINARY, b"\x00\x01\xff")


@pytest.mark.parametrize(
    ("transport", "conn", "close_sent", "done"),
    [
        (FakeTransport(buffered=100), FakeConn(), False, WRITTEN),
        (FakeTransport(buffered=101), FakeConn(), False, BEHIND),
        (FakeTransport(closing=True), FakeConn(), False, CLOSING),
        (FakeTransport(), FakeConn(State.CLOSING), False, CLOSING),
        (FakeTransport(), FakeConn(), True, CLOSING),
        # Closing wins over behind, as a client's offer has always checked it first.
        (FakeTransport(buffered=500, closing=True), FakeConn(), False, CLOSING),
    ],
)
def test_a_lines_offer_writes_only_to_an_open_connection_within_its_bound(
    transport: FakeTransport, conn: FakeConn, close_sent: bool, done: int
) -> None:
    line = Line(FakeProtocol(transport, conn, close_sent))
    shared = framed("hello")
    assert line.offer("hello", shared, bound=100) == done
    assert transport.written == ([shared] if done == WRITTEN else [])


def line_of(transport: FakeTransport | None = None, conn: FakeConn | None = None) -> Line:
    return Line(FakeProtocol(transport or FakeTransport(), conn or FakeConn()))


@pytest.mark.parametrize(
    ("transport", "conn", "close_sent", "ready"),
    [
        (FakeTransport(buffered=700), FakeConn(), False, True),
        (FakeTransport(closing=True), FakeConn(), False, False),
        (FakeTransport(), FakeConn(State.CLOSING), False, False),
        (FakeTransport(), FakeConn(), True, False),
    ],
)
def test_a_line_is_ready_for_a_fan_out_when_open_and_plain_and_then_measured(
    transport: FakeTransport, conn: FakeConn, close_sent: bool, ready: bool
) -> None:
    line = Line(FakeProtocol(transport, conn, close_sent))
    assert line.ready() is ready
    if ready:
        assert line.backlog == 700
    conn.extensions = [object()]  # compressed: its frames go through its own protocol
    assert not line.ready()


def test_frames_offered_in_a_burst_go_out_in_one_write_when_it_is_flushed() -> None:
    line = line_of()
    transport = line.transport
    frames = [framed(f"frame {i}") for i in range(3)]
    assert burst.hold(safety=False)
    assert not burst.hold(safety=False)  # one burst at a time: its opener flushes it
    for i, shared in enumerate(frames):
        assert line.offer(f"frame {i}", shared, bound=1000) == WRITTEN
    assert transport.written == []  # kept until the burst ends
    assert line.buffered == sum(map(len, frames))  # counted in the backlog meanwhile
    burst.flush()
    assert transport.written == [b"".join(frames)]
    assert not burst.open
    assert line.pending == []


def test_with_no_burst_open_a_frame_is_written_at_once() -> None:
    line = line_of()
    assert line.offer("now", framed("now"), bound=1000) == WRITTEN
    assert line.transport.written == [framed("now")]


async def test_a_burst_left_open_is_flushed_by_the_event_loop_in_its_next_turn() -> None:
    line = line_of()
    assert burst.hold()
    line.offer("late", framed("late"), bound=1000)
    assert line.transport.written == []
    await asyncio.sleep(0)
    assert line.transport.written == [framed("late")]
    assert not burst.open


def test_a_line_past_its_bound_writes_what_the_burst_keeps_before_it_is_behind() -> None:
    transport = FakeTransport()
    line = line_of(transport)
    shared = framed("x" * 40)
    burst.hold(safety=False)
    try:
        # The burst keeps more than the bound: the peer may well take it, as it would
        # have taken the frames one by one; the line is not behind for that.
        for _ in range(4):
            assert line.offer("x" * 40, shared, bound=100) == WRITTEN
        assert len(transport.written) == 1  # written early, to measure the backlog
        assert transport.written[0] == shared * 3
        # What the transport itself holds past the bound is a client behind: what it
        # took before still goes out, the frame that found it behind does not.
        transport.buffered = 101
        assert line.offer("x" * 40, shared, bound=100) == BEHIND
    finally:
        burst.flush()
    assert transport.written == [shared * 3, shared]


def test_no_frame_kept_by_a_burst_is_written_after_a_close_frame() -> None:
    protocol = FakeProtocol(FakeTransport(), FakeConn())
    line = Line(protocol)
    burst.hold(safety=False)
    line.offer("kept", framed("kept"), bound=1000)
    protocol.close_sent = True  # uvicorn sent the close frame meanwhile
    burst.flush()
    assert protocol.transport.written == []


def test_a_compressed_connections_frames_are_kept_in_order_with_the_others() -> None:
    class Deflating(FakeConn):
        def __init__(self) -> None:
            super().__init__()
            self.extensions = [object()]
            self.out: list[bytes] = []

        def send_text(self, data: bytes) -> None:
            self.out.append(b"Z" + data)

        def data_to_send(self) -> list[bytes]:
            out, self.out = self.out, []
            return out

    deflating = Deflating()
    line = line_of(conn=deflating)
    burst.hold(safety=False)
    line.offer("a", framed("a"), bound=1000)
    line.offer("b", framed("b"), bound=1000)
    burst.flush()
    assert line.transport.written == [b"Za" + b"Zb"]


def test_a_connection_without_uvicorns_protocol_has_no_line() -> None:
    assert Line.of({"type": "websocket"}) is None
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES)  # type: ignore[arg-type]
    assert client.line is None


#: The send bound of the ``live`` server: QUEUE_SIZE frames of the size being sent.
QUEUE_SIZE = 16
#: Frames of one burst: fewer than the bound, so that a client that reads nothing at all
#: while a burst is sent (its process not scheduled, say) is never too far behind.
BURST = QUEUE_SIZE - 1
#: A burst's frames: 20 KB each, so the bound on a direct line is about 320 KB.
BURST_FRAME = "frame {{ iteration }} " + "x" * 20000


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    # A small send bound (16 frames of about 20 KB on a direct line) for the stalled client.
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "burst.yaml").write_text(
        f"steps:\n  - repeat: {BURST}\n    steps:\n      - chunk: '{BURST_FRAME}'\n"
    )
    # Small frames for checking delivery: 300 of them fit in the kernel's socket buffers,
    # so even the small bound above is never reached by a client that reads.
    (folder / "small.yaml").write_text(
        "steps:\n  - repeat: 300\n    steps:\n      - chunk: 'frame {{ iteration }} x'\n"
    )
    settings = Settings(scenarios=folder, isolated=True, queue_size=QUEUE_SIZE)
    served, server, thread = start_live_server(settings)
    try:
        yield served
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def wait_for(check) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``check()`` holds: the server runs in another thread, at its own pace."""
    deadline = time.monotonic() + PATIENCE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def test_under_uvicorn_clients_get_a_direct_line_and_every_frame(live: LiveServer) -> None:
    async with connect(live.ws_url + "/ws/stream") as ws:
        await wait_for(lambda: len(live.replay.stream) == 1)
        client = next(iter(live.replay.stream.clients.values()))
        assert client.line is not None
        assert PROTOCOL_KEY in client.websocket.scope
        assert TRANSPORT_KEY in client.websocket.scope
        run = await asyncio.to_thread(
            live.replay.runner.get, (await trigger(live, "small"))["run_id"]
        )
        got = [
            json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))["content"] for _ in range(300)
        ]
        # The server counts a frame after writing it: wait for the run's end to count.
        await wait_for(lambda: run.state is not RunState.RUNNING)
    assert [text.split()[1] for text in got] == [str(n) for n in range(300)]
    assert run.state is RunState.FINISHED
    assert run.sent == 300
    assert client.sent == 300


async def test_with_compression_frames_go_through_the_connections_own_protocol(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "hello.yaml").write_text("steps:\n  - chunk: 'hello hello hello hello'\n")
    settings = Settings(scenarios=folder, isolated=True)
    served, server, thread = start_live_server(settings, ws_per_message_deflate=True)
    try:
        async with connect(served.ws_url + "/ws/stream", compression="deflate") as ws:
            await wait_for(lambda: len(served.replay.stream) == 1)
            client = next(iter(served.replay.stream.clients.values()))
            assert client.line is not None
            assert client.line.conn.extensions  # deflate is on
            await trigger(served, "hello")
            assert await asyncio.wait_for(ws.recv(), PATIENCE) == chunk_frame(
                "hello hello hello hello"
            )
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_a_client_that_never_reads_is_dropped_and_the_others_get_everything(
    live: LiveServer,
) -> None:
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
    stalled.connect(("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
    stalled.sendall(
        b"GET /ws/stream?client_id=stalled HTTP/1.1\r\nHost: localhost\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        async with connect(live.ws_url + "/ws/stream?client_id=healthy") as healthy:
            await wait_for(lambda: len(live.replay.stream) == 2)
            [slow] = [c for c in live.replay.stream.clients.values() if c.id == "stalled"]

            async def burst() -> None:
                """Send a burst at speed 0; the healthy client gets all of it, in order."""
                await trigger(live, "burst", speed="0")
                for index in range(BURST):
                    frame = json.loads(await asyncio.wait_for(healthy.recv(), PATIENCE))
                    assert frame["content"].split()[:2] == ["frame", str(index)]

            # The healthy client reads each burst in full before the next is sent: however
            # seldom it is scheduled, it is never more than a burst (less than the bound)
            # behind, while the stalled one falls further behind with every burst, past
            # what the kernel's socket buffers hold (a few MB at most), then past the bound.
            bursts = 0
            while slow.dropped is None:
                assert bursts < 200, "200 bursts (60 MB) and the stalled client is still here"
                await burst()
                bursts += 1
            await burst()  # the others still get everything after the drop
            assert slow.dropped == TOO_SLOW
            await wait_for(lambda: live.replay.stream.drops == 1)
            assert len(live.replay.stream) == 1
            assert [c.id for c in live.replay.stream.clients.values()] == ["healthy"]
    finally:
        stalled.close()


async def trigger(live: LiveServer, name: str, speed: str = "0") -> dict[str, object]:
    import urllib.request

    def post() -> dict[str, object]:
        request = urllib.request.Request(
            f"{live.url}/trigger/{name}?speed={speed}&wait=false", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    return await asyncio.to_thread(post)


def uvicorn_record(message: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", level, __file__, 1, message, None, None)


def test_uvicorns_invalid_utf8_error_becomes_one_warning_line() -> None:
    # Without a traceback to find the connection in, it still reads as a sentence.
    record = uvicorn_record(INVALID_UTF8)
    assert InvalidUtf8Filter().filter(record)
    assert (record.levelno, record.levelname) == (logging.WARNING, "WARNING")
    assert record.getMessage() == (
        "a WebSocket client sent a text frame that is not valid UTF-8: closed with 1007"
    )
    other = uvicorn_record("Exception in ASGI application\n")
    assert InvalidUtf8Filter().filter(other)
    assert other.levelno == logging.ERROR  # every other error is left as it is


def test_the_filter_is_put_on_uvicorns_logger_once() -> None:
    logger = logging.getLogger("uvicorn.error")
    quiet_invalid_utf8()
    quiet_invalid_utf8()
    assert sum(isinstance(f, InvalidUtf8Filter) for f in logger.filters) == 1
