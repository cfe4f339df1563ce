"""One client's queue, writer and reader, against a fake WebSocket (no sockets)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from replay import client as client_module
from replay.client import CLOSE_TOO_SLOW, ByteBudget, Client
from replay.direct import TRANSPORT_KEY
from replay.protocol import Endpoint
from tests.fakes import FakeWebSocket


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_frames_go_out_in_order() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES)  # type: ignore[arg-type]
    client.start()
    for n in range(5):
        assert client.offer(f"frame {n}")
    await settle()
    assert ws.sent == [f"frame {n}" for n in range(5)]
    assert client.sent == 5
    await client.stop()


#: A frame of 4 KiB: the queue's bound is queue-size frames of this size.
FRAME = "x" * 4096


async def test_a_full_queue_drops_the_client_with_a_close_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "CLOSE_GRACE", 0.01)
    ws = FakeWebSocket(stalled=True)
    gone: list[Client] = []
    client = Client(ws, Endpoint.STREAM, queue_size=3, on_gone=gone.append)  # type: ignore[arg-type]
    client.start()
    results = [client.offer(FRAME) for n in range(6)]
    # the writer has not run yet: the backlog may reach three frames of this size, as on
    # the direct line; the frame after that overflows it and drops the client
    assert results == [True, True, True, True, False, False]
    assert client.dropped == "client too slow: send queue full"
    assert gone == [client]
    # the stalled peer cannot take a close frame, so its connection is cut instead, after
    # the grace period (abort() says so)
    assert await asyncio.wait_for(ws.incoming.get(), 5) == {
        "type": "websocket.disconnect",
        "code": 1006,
    }
    assert ws.aborted
    assert not client.offer("after")


async def test_a_dropped_client_that_takes_the_close_but_never_answers_is_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "CLOSE_GRACE", 0.01)
    ws = FakeWebSocket()
    sent_close = ws.close

    async def close(code: int = 1000, reason: str | None = None) -> None:
        await sent_close(code, reason)
        # As under uvicorn: the close queues a disconnect for the connection's handler,
        # which ends, and TransportMiddleware takes the transport out of the scope.
        ws.scope.pop(TRANSPORT_KEY)

    ws.close = close  # type: ignore[method-assign]
    client = Client(ws, Endpoint.MESSAGES)  # type: ignore[arg-type]
    client.start()
    client.drop(4000, "enough")
    assert await asyncio.wait_for(ws.incoming.get(), 5) == {
        "type": "websocket.disconnect",
        "code": 4000,
    }
    # The peer never answers the close: it is cut after the grace period all the same.
    assert await asyncio.wait_for(ws.incoming.get(), 5) == {
        "type": "websocket.disconnect",
        "code": 1006,
    }
    assert ws.aborted


async def test_a_dropped_reader_gets_the_close_code() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES, queue_size=1)  # type: ignore[arg-type]
    # no writer started: the queue fills at once, and the close frame can still be sent
    assert client.offer(FRAME)
    assert client.offer(FRAME)
    assert not client.offer(FRAME)
    await settle()
    assert ws.closed == (CLOSE_TOO_SLOW, "client too slow: send queue full")


async def test_a_dead_peer_is_dropped_when_a_send_fails() -> None:
    ws = FakeWebSocket(dead=True)
    gone: list[Client] = []
    client = Client(ws, Endpoint.MESSAGES, on_gone=gone.append)  # type: ignore[arg-type]
    client.start()
    client.offer("x")
    await settle()
    assert client.dropped == "send failed"
    assert gone == [client]


async def test_reader_counts_and_ignores_whatever_the_client_sends() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES)  # type: ignore[arg-type]
    for message in (
        {"type": "websocket.receive", "text": "not json {"},
        {"type": "websocket.receive", "bytes": b"\x00\xff"},
        {"type": "websocket.receive", "text": '{"message_type": "CHAT_INPUT"}'},
        {"type": "websocket.disconnect", "code": 1000},
    ):
        ws.incoming.put_nowait(message)
    await asyncio.wait_for(client.receive_until_closed(), 5)
    assert client.received == 3


async def test_info_describes_the_client() -> None:
    client = Client(FakeWebSocket(), Endpoint.STREAM, client_id="abc")  # type: ignore[arg-type]
    info = client.info()
    assert info["client_id"] == "abc"
    assert info["endpoint"] == "/ws/stream"
    assert info["sent"] == info["received"] == info["backlog"] == 0


async def test_the_queue_is_bounded_in_bytes_like_the_direct_line() -> None:
    ws = FakeWebSocket(stalled=True)
    client = Client(ws, Endpoint.STREAM, queue_size=8)  # type: ignore[arg-type]
    client.start()
    big = "y" * (1024 * 1024)
    offered = 0
    while client.offer(big):
        offered += 1
        await settle()  # the writer takes the first frame and stalls sending it
        # In bytes, the frame being sent included: it is not sent until the peer takes it.
        assert client.backlog == offered * len(big)
    assert client.dropped == client_module.TOO_SLOW
    assert offered == 9  # the backlog may reach eight frames of this size, and no more


async def test_a_small_frame_behind_big_ones_finds_the_queue_full() -> None:
    # queue-size frames of the size being sent (at least 1 KiB each): a backlog of big
    # frames is far behind for a small one, as on the direct line.
    client = Client(FakeWebSocket(stalled=True), Endpoint.STREAM, queue_size=4)  # type: ignore[arg-type]
    client.start()
    for _ in range(3):
        assert client.offer("z" * 100_000)
    assert client.backlog == 300_000
    assert not client.offer("small")
    assert client.dropped == client_module.TOO_SLOW


async def test_a_hangup_goes_out_after_the_queued_frames_however_big() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES, queue_size=1)  # type: ignore[arg-type]
    big = "b" * 100_000
    assert client.offer(big)  # not sent yet: no writer
    assert client.hangup(4000, "bye")
    client.start()
    for _ in range(20):
        await settle()
        if ws.closed is not None:
            break
    assert ws.sent == [big]
    assert ws.closed == (4000, "bye")


async def test_a_hangup_behind_a_backlog_past_its_bound_closes_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "CLOSE_GRACE", 0.01)
    ws = FakeWebSocket(stalled=True)
    client = Client(ws, Endpoint.MESSAGES, queue_size=1)  # type: ignore[arg-type]
    client.start()
    assert client.offer(FRAME)
    await settle()  # the writer holds it, stalled
    assert client.offer(FRAME)  # a backlog of one such frame is allowed: now past it
    assert client.hangup(4000, "bye")
    await asyncio.wait_for(ws.incoming.get(), 5)  # cut after the grace period
    assert ws.aborted
    assert ws.sent == []


# --- the byte rate ------------------------------------------------------------------------------


def test_a_byte_budget_is_a_burst_then_a_rate_and_may_be_overdrawn_by_one_frame() -> None:
    budget = ByteBudget(1000)
    budget.spend(1500, now=0.0)  # a burst of twice the rate
    assert not budget.overdrawn(now=0.0)
    budget.spend(1500, now=0.0)  # taken while not overdrawn: now 1000 over
    assert budget.overdrawn(now=0.0)
    assert budget.debt(now=0.0) == pytest.approx(1.0)
    assert budget.overdrawn(now=0.5)  # still 500 over
    assert budget.debt(now=1.0) == 0.0
    assert not budget.overdrawn(now=1.0)
    budget.spend(50_000, now=1.0)  # larger than the burst: it still gets through
    assert budget.debt(now=1.0) == pytest.approx(50.0)
    assert budget.debt(now=1000.0) == 0.0
    budget.spend(2000, now=1000.0)  # saved up no more than the burst
    assert not budget.overdrawn(now=1000.0)
    budget.spend(1, now=1000.0)
    assert budget.overdrawn(now=1000.0)


def text_frames(*texts: str) -> list[dict[str, object]]:
    return [{"type": "websocket.receive", "text": text} for text in texts]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, looking at each turn of the loop; fail after a few seconds."""
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.001)


async def test_a_client_over_its_byte_rate_is_not_read_until_its_budget_is_back() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES, byte_rate=100_000)  # type: ignore[arg-type]
    frames = ["a" * 150_000, "b" * 100_000, "c", "d"]  # the second overdraws the budget
    for message in text_frames(*frames):
        ws.incoming.put_nowait(message)
    taken: list[str] = []
    reader = asyncio.create_task(client.receive_until_closed(lambda _, text: taken.append(text)))
    await until(lambda: len(taken) == len(frames), "every frame was taken")
    # Its socket was left unread for a while, then read again: slowed down, not ignored.
    assert (ws.pauses, ws.resumes) == (1, 1)
    assert ws.reading
    assert taken == frames  # in order
    assert (client.throttled, client.ignored) == (1, 0)
    assert client.received_bytes == 250_002
    ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(reader, 5)


async def test_a_client_resting_over_its_byte_rate_is_woken_when_the_server_gives_up() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES, byte_rate=1000)  # type: ignore[arg-type]
    for message in text_frames("x" * 100_000, "after"):  # a debt of about 98 seconds
        ws.incoming.put_nowait(message)
    taken: list[str] = []
    reader = asyncio.create_task(client.receive_until_closed(lambda _, text: taken.append(text)))
    await until(lambda: not ws.reading, "its reading was paused")
    assert len(taken) == 1
    client.drop(4000, "enough")  # the close frame's answer must be read: reading resumes
    await asyncio.wait_for(reader, 5)
    assert ws.reading
    assert ws.closed == (4000, "enough")


async def test_without_a_transport_frames_over_the_byte_rate_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ws = FakeWebSocket(transport=False)
    client = Client(ws, Endpoint.STREAM, byte_rate=1000)  # type: ignore[arg-type]
    frames = ["1" * 1500, "2" * 1500, "3", "4" * 10, "5"]  # the second overdraws the budget
    for message in [*text_frames(*frames), {"type": "websocket.disconnect", "code": 1000}]:
        ws.incoming.put_nowait(message)
    taken: list[str] = []
    with caplog.at_level(logging.WARNING, logger="replay.client"):
        await asyncio.wait_for(client.receive_until_closed(lambda _, t: taken.append(t)), 5)
    assert taken == frames[:2]  # the rest came faster than 1000 bytes a second could pay for
    assert (client.received, client.ignored, client.throttled) == (5, 3, 0)
    assert client.info()["ignored"] == 3
    [warning] = [r for r in caplog.records if "bytes a second" in r.getMessage()]
    assert "ignoring the excess" in warning.getMessage()


async def test_a_binary_frame_and_a_non_ascii_one_count_their_bytes() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.STREAM)  # type: ignore[arg-type]
    ws.incoming.put_nowait({"type": "websocket.receive", "bytes": b"\x00" * 10})
    ws.incoming.put_nowait({"type": "websocket.receive", "text": "\N{GRINNING FACE}"})
    ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(client.receive_until_closed(), 5)
    assert client.received_bytes == 10 + 4
