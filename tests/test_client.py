"""One client's queue, writer and reader, against a fake WebSocket (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from replay import client as client_module
from replay.client import CLOSE_TOO_SLOW, Client
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


async def test_a_full_queue_drops_the_client_with_a_close_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "CLOSE_GRACE", 0.01)
    ws = FakeWebSocket(stalled=True)
    gone: list[Client] = []
    client = Client(ws, Endpoint.STREAM, queue_size=3, on_gone=gone.append)  # type: ignore[arg-type]
    client.start()
    results = [client.offer(str(n)) for n in range(6)]
    # the writer has not run yet: three frames fit, the fourth overflows and drops the client
    assert results == [True, True, True, False, False, False]
    assert client.dropped == "client too slow: send queue full"
    assert gone == [client]
    await asyncio.sleep(0.05)
    # the stalled peer cannot take a close frame, so its connection is cut instead
    assert ws.aborted
    assert not client.offer("after")


async def test_a_dropped_reader_gets_the_close_code() -> None:
    ws = FakeWebSocket()
    client = Client(ws, Endpoint.MESSAGES, queue_size=1)  # type: ignore[arg-type]
    # no writer started: the queue fills at once, and the close frame can still be sent
    assert client.offer("a")
    assert not client.offer("b")
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
    await asyncio.wait_for(client.receive_until_closed(), 1)
    assert client.received == 3


async def test_info_describes_the_client() -> None:
    client = Client(FakeWebSocket(), Endpoint.STREAM, client_id="abc")  # type: ignore[arg-type]
    info = client.info()
    assert info["client_id"] == "abc"
    assert info["endpoint"] == "/ws/stream"
    assert info["sent"] == info["received"] == info["backlog"] == 0
