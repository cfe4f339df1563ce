"""Fan-out, cleanup and the Schwarm-compatible manager API, against fake WebSockets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from replay import client as client_module
from replay.managers import (
    LocalDelivery,
    MessageType,
    StreamManager,
    WebsocketManager,
)
from replay.protocol import Endpoint
from tests.fakes import FakeWebSocket


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def connect(manager: Any, **kwargs: Any) -> FakeWebSocket:
    ws = FakeWebSocket(**kwargs)
    await manager.connect(ws)
    return ws


def test_managers_are_process_wide_singletons() -> None:
    assert WebsocketManager() is WebsocketManager()
    assert StreamManager() is StreamManager()
    assert StreamManager() is not WebsocketManager()  # type: ignore[comparison-overlap]
    assert WebsocketManager.isolated() is not WebsocketManager()


async def test_send_message_reaches_every_client_in_schwarm_shape() -> None:
    manager = WebsocketManager.isolated()
    sockets = [await connect(manager) for _ in range(3)]
    assert all(ws.accepted for ws in sockets)

    class WebsocketMessage:  # what Schwarm passes in
        message_type = "EVENT"
        message = "Test event message"

    assert await manager.send_message(WebsocketMessage()) == 3
    assert await manager.send_message({"message_type": "CHAT", "message": "hi"}) == 3
    await settle()
    for ws in sockets:
        assert ws.sent == [
            '{"message_type":"EVENT","message":"Test event message"}',
            '{"message_type":"CHAT","message":"hi"}',
        ]


async def test_stream_write_and_close_in_schwarm_shape() -> None:
    manager = StreamManager.isolated()
    ws = await connect(manager)
    await manager.write("This is a ")
    await manager.write("search()", MessageType.TOOL)
    assert await manager.write("") == 0  # Schwarm skips empty chunks
    await manager.close()
    await settle()
    assert [json.loads(frame) for frame in ws.sent] == [
        {"type": "default", "content": "This is a "},
        {"type": "tool", "content": "search()"},
        {"type": "close", "content": None},
    ]


async def test_a_stalled_client_never_delays_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "CLOSE_GRACE", 0.01)
    manager = WebsocketManager.isolated(queue_size=4)
    healthy = [await connect(manager) for _ in range(2)]
    stalled = await connect(manager, stalled=True)
    for n in range(50):
        manager.broadcast(f"frame {n}")
        await settle()
    assert len(manager) == 2  # the stalled one was dropped once its queue overflowed
    for ws in healthy:
        assert ws.sent == [f"frame {n}" for n in range(50)]
    await asyncio.sleep(0.05)
    assert stalled.aborted


async def test_a_dead_client_is_cleaned_up_and_the_run_goes_on() -> None:
    manager = StreamManager.isolated()
    healthy = await connect(manager)
    await connect(manager, dead=True)
    manager.broadcast("one")
    await settle()
    assert len(manager) == 1
    manager.broadcast("two")
    await settle()
    assert healthy.sent == ["one", "two"]


async def test_disconnect_is_safe_twice_and_stops_sending() -> None:
    manager = WebsocketManager.isolated()
    ws = await connect(manager)
    await manager.disconnect(ws)  # type: ignore[arg-type]
    await manager.disconnect(ws)  # type: ignore[arg-type]
    assert len(manager) == 0
    assert manager.broadcast("x") == 0


async def test_serve_handles_a_connection_from_accept_to_close() -> None:
    manager = WebsocketManager.isolated()
    ws = FakeWebSocket()
    task = asyncio.create_task(manager.serve(ws))  # type: ignore[arg-type]
    await settle()
    assert len(manager) == 1
    ws.incoming.put_nowait({"type": "websocket.receive", "text": "garbage"})
    ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1001})
    await asyncio.wait_for(task, 1)
    assert len(manager) == 0


async def test_local_delivery_routes_by_endpoint() -> None:
    messages, stream = WebsocketManager.isolated(), StreamManager.isolated()
    delivery = LocalDelivery(messages, stream)
    on_messages = await connect(messages)
    on_stream = await connect(stream)
    assert delivery.send(Endpoint.STREAM, "chunk") == 1
    assert delivery.client_counts() == {"/ws": 1, "/ws/stream": 1}
    await settle()
    assert on_stream.sent == ["chunk"]
    assert on_messages.sent == []
