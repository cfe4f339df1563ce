"""Fan-out, cleanup and the Schwarm-compatible manager API, against fake WebSockets."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

from replay import client as client_module
from replay.client import CLOSE_TOO_SLOW, TOO_SLOW
from replay.direct import burst, framed
from replay.feed import Feed
from replay.managers import (
    LocalDelivery,
    MessageType,
    StreamManager,
    WebsocketManager,
)
from replay.protocol import Endpoint
from tests.fakes import FakeProtocol, FakeWebSocket, direct


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
    frames = [f"frame {n} " + "." * 2048 for n in range(50)]  # the bound is in bytes
    for frame in frames:
        manager.broadcast(frame)
        await settle()
    assert len(manager) == 2  # the stalled one was dropped once its queue overflowed
    for ws in healthy:
        assert ws.sent == frames
    # The stalled connection is cut after the grace period (abort() says so).
    assert await asyncio.wait_for(stalled.incoming.get(), 5) == {
        "type": "websocket.disconnect",
        "code": 1006,
    }
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
    await asyncio.wait_for(task, 5)
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


# --- the event feed and the counters ------------------------------------------------------


async def events_of(events: AsyncIterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(anext(events), timeout=5) for _ in range(count)]


def without_times(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key not in ("seq", "time")}


async def test_connections_and_disconnections_are_published() -> None:
    feed = Feed()
    events = feed.subscribe()
    manager = StreamManager.isolated()
    manager.feed = feed
    first, second = FakeWebSocket(), FakeWebSocket()
    await manager.connect(first, "one")  # type: ignore[arg-type]
    await manager.connect(second, "two")  # type: ignore[arg-type]
    await manager.disconnect(first)  # type: ignore[arg-type]
    # Twice: published once.
    await manager.disconnect(first)  # type: ignore[arg-type]
    await manager.disconnect(second)  # type: ignore[arg-type]
    feed.publish("marker")
    async with contextlib.aclosing(events):
        got = [without_times(event) for event in await events_of(events, 5)]
    assert got == [
        {"event": "client.connected", "client": "one", "endpoint": "/ws/stream", "clients": 1},
        {"event": "client.connected", "client": "two", "endpoint": "/ws/stream", "clients": 2},
        {
            "event": "client.disconnected",
            "client": "one",
            "endpoint": "/ws/stream",
            "clients": 1,
            "reason": None,
            "code": None,  # no close frame was seen
            "dropped": False,
        },
        {
            "event": "client.disconnected",
            "client": "two",
            "endpoint": "/ws/stream",
            "clients": 0,
            "reason": None,
            "code": None,
            "dropped": False,
        },
        {"event": "marker"},
    ]


async def test_serve_publishes_the_client_id_from_the_query() -> None:
    feed = Feed()
    events = feed.subscribe(["client."])
    manager = WebsocketManager.isolated()
    manager.feed = feed
    ws = FakeWebSocket(client_id="browser-1")
    task = asyncio.create_task(manager.serve(ws))  # type: ignore[arg-type]
    async with contextlib.aclosing(events):
        connected = await asyncio.wait_for(anext(events), timeout=5)
        ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1001})
        await asyncio.wait_for(task, 5)
        disconnected = await asyncio.wait_for(anext(events), timeout=5)
    assert (connected["event"], connected["client"], connected["endpoint"]) == (
        "client.connected",
        "browser-1",
        "/ws",
    )
    assert (disconnected["event"], disconnected["client"], disconnected["clients"]) == (
        "client.disconnected",
        "browser-1",
        0,
    )
    assert (disconnected["code"], disconnected["dropped"]) == (1001, False)


@pytest.mark.parametrize("manager_class", [WebsocketManager, StreamManager])
async def test_text_frames_from_clients_are_published(manager_class: Any) -> None:
    feed = Feed()
    events = feed.subscribe(["frame.received"])
    manager = manager_class.isolated()
    manager.feed = feed
    heard: list[str] = []
    manager.on_frame = lambda client, text: heard.append(text)
    ws = FakeWebSocket(client_id="c1")
    task = asyncio.create_task(manager.serve(ws))
    ws.incoming.put_nowait({"type": "websocket.receive", "text": '{"message_type":"CHAT_INPUT"}'})
    ws.incoming.put_nowait({"type": "websocket.receive", "bytes": b"\x00\x01"})  # not text
    ws.incoming.put_nowait({"type": "websocket.receive", "text": "plain é"})
    ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, 5)
    feed.publish("frame.received", frame="marker")
    async with contextlib.aclosing(events):
        got = await events_of(events, 3)
    assert [without_times(event) for event in got[:2]] == [
        {
            "event": "frame.received",
            "client": "c1",
            "endpoint": str(manager.endpoint),
            "frame": '{"message_type":"CHAT_INPUT"}',
        },
        {
            "event": "frame.received",
            "client": "c1",
            "endpoint": str(manager.endpoint),
            "frame": "plain é",
        },
    ]
    assert got[2]["frame"] == "marker"  # the binary frame was not published
    assert heard == ['{"message_type":"CHAT_INPUT"}', "plain é"]  # on_frame still runs


async def test_without_a_feed_nothing_is_published_and_nothing_breaks() -> None:
    manager = WebsocketManager.isolated()
    assert manager.feed is None
    ws = FakeWebSocket()
    task = asyncio.create_task(manager.serve(ws))  # type: ignore[arg-type]
    ws.incoming.put_nowait({"type": "websocket.receive", "text": "hi"})
    ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(task, 5)
    assert len(manager) == 0


async def test_frames_and_bytes_sent_count_each_copy_in_utf8() -> None:
    manager = WebsocketManager.isolated()
    assert (manager.frames_sent, manager.bytes_sent, manager.drops) == (0, 0, 0)
    assert manager.broadcast("nobody listens") == 0
    assert (manager.frames_sent, manager.bytes_sent) == (0, 0)  # no client: no copy
    for client_id in ("a", "b", "c"):
        await manager.connect(FakeWebSocket(), client_id)  # type: ignore[arg-type]
    assert manager.broadcast("é") == 3  # one character, two bytes in UTF-8
    assert (manager.frames_sent, manager.bytes_sent) == (3, 6)
    assert manager.broadcast(b"\x00\x01\x02\xff") == 3  # binary: its own length
    assert (manager.frames_sent, manager.bytes_sent) == (6, 18)
    assert manager.broadcast("ab€", to="b") == 1  # to one client: one copy of 5 bytes
    assert (manager.frames_sent, manager.bytes_sent) == (7, 23)
    assert manager.broadcast("x", to="nobody") == 0
    assert (manager.frames_sent, manager.bytes_sent) == (7, 23)
    await manager.send_message({"message_type": "EVENT", "message": "ü"})
    frame = '{"message_type":"EVENT","message":"ü"}'
    assert (manager.frames_sent, manager.bytes_sent) == (10, 23 + 3 * len(frame.encode()))


async def test_a_client_whose_queue_overflows_is_a_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "CLOSE_GRACE", 0.01)
    feed = Feed()
    events = feed.subscribe(["client.disconnected"])
    manager = WebsocketManager.isolated(queue_size=1)
    manager.feed = feed
    healthy = FakeWebSocket(client_id="healthy")
    stalled = FakeWebSocket(stalled=True, client_id="stalled")
    serving = [
        asyncio.create_task(manager.serve(ws))  # type: ignore[arg-type]
        for ws in (healthy, stalled)
    ]
    await settle()
    assert len(manager) == 2
    taken = []
    for n in range(3):
        # The stalled client's writer holds the first frame forever, its queue the
        # second (a backlog of one frame of this size is allowed); the third overflows.
        taken.append(manager.broadcast(f"frame {n} " + "." * 2048))
        await settle()
    assert taken == [2, 2, 1]
    assert manager.drops == 1
    assert len(manager) == 1
    assert manager.frames_sent == 5  # copies handed over, not the one refused
    async with contextlib.aclosing(events):
        dropped = await asyncio.wait_for(anext(events), timeout=5)
        # The stalled connection is cut after the grace period; serve() then ends.
        await asyncio.wait_for(serving[1], timeout=5)
        healthy.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(serving[0], timeout=5)
        left = await asyncio.wait_for(anext(events), timeout=5)
    assert (dropped["client"], dropped["reason"], dropped["clients"]) == ("stalled", TOO_SLOW, 1)
    assert (dropped["code"], dropped["dropped"]) == (CLOSE_TOO_SLOW, True)
    # The dropped client was published once, when dropped; the next one is the healthy one.
    assert (left["client"], left["reason"], left["clients"]) == ("healthy", None, 0)
    assert (left["code"], left["dropped"]) == (1000, False)
    assert stalled.aborted
    assert manager.drops == 1


async def test_closing_or_failing_clients_are_not_drops() -> None:
    feed = Feed()
    events = feed.subscribe(["client.disconnected"])
    manager = StreamManager.isolated()
    manager.feed = feed
    await connect(manager, dead=True)
    await connect(manager)
    manager.broadcast("x")
    await settle()
    assert manager.hangup(None, 4000, "bye") == 1
    await settle()
    async with contextlib.aclosing(events):
        got = await events_of(events, 2)
    assert [event["reason"] for event in got] == ["send failed", "closed with code 4000"]
    assert [(event["code"], event["dropped"]) for event in got] == [(1011, False), (4000, False)]
    assert manager.drops == 0


async def test_each_client_gets_the_managers_byte_rate() -> None:
    manager = WebsocketManager.isolated()
    assert manager.client_bytes == client_module.DEFAULT_CLIENT_BYTES
    manager.client_bytes = 100
    heard: list[str] = []
    manager.on_frame = lambda _, text: heard.append(text)
    ws = FakeWebSocket(transport=False)  # no transport to pause: the excess is ignored
    for text in ("a" * 300, "b", "c"):
        ws.incoming.put_nowait({"type": "websocket.receive", "text": text})
    ws.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(manager.serve(ws), 5)  # type: ignore[arg-type]
    assert heard == ["a" * 300]


async def test_a_drop_is_published_as_dropped_with_no_close_code() -> None:
    feed = Feed()
    events = feed.subscribe(["client.disconnected"])
    manager = StreamManager.isolated()
    manager.feed = feed
    await connect(manager)
    assert manager.hangup(None, 1000, "", abort=True) == 1
    async with contextlib.aclosing(events):
        (got,) = await events_of(events, 1)
    assert (got["code"], got["dropped"], got["reason"]) == (None, True, "dropped on purpose")


async def connect_direct(manager: Any, client_id: str | None = None) -> FakeProtocol:
    """A client on a direct line (see replay.direct); its transport records the writes."""
    ws = FakeWebSocket(client_id=client_id)
    protocol = direct(ws)
    await manager.connect(ws, client_id)
    return protocol


async def test_a_burst_of_frames_reaches_each_direct_client_in_one_write() -> None:
    manager = WebsocketManager.isolated()
    lines = [await connect_direct(manager) for _ in range(3)]
    frames = [f"frame {i}" for i in range(5)]
    burst.hold(safety=False)
    try:
        assert [manager.broadcast(frame) for frame in frames] == [3] * 5
        assert all(protocol.transport.written == [] for protocol in lines)
    finally:
        burst.flush()
    joined = b"".join(framed(frame) for frame in frames)
    assert [protocol.transport.written for protocol in lines] == [[joined]] * 3
    assert [client.sent for client in manager.clients.values()] == [5] * 3
    assert manager.frames_sent == 15


async def test_a_broadcast_with_no_burst_open_is_written_before_it_returns() -> None:
    manager = WebsocketManager.isolated()
    protocol = await connect_direct(manager)
    assert manager.broadcast("now") == 1
    assert protocol.transport.written == [framed("now")]
    assert not burst.open


async def test_a_client_behind_in_a_burst_gets_nothing_more_and_is_dropped() -> None:
    manager = WebsocketManager.isolated(queue_size=2)  # bound: 2 KiB for small frames
    healthy = await connect_direct(manager, "healthy")
    behind = await connect_direct(manager, "behind")
    slow = next(c for c in manager.clients.values() if c.id == "behind")
    burst.hold(safety=False)
    try:
        assert manager.broadcast("one") == 2
        behind.transport.buffered = 2049  # its peer stopped reading: past the bound
        # Measured when the burst began: the bound is checked again when what the burst
        # keeps passes it, so the next burst finds it.
    finally:
        burst.flush()
    burst.hold(safety=False)
    try:
        assert manager.broadcast("two") == 1
        assert manager.broadcast("three") == 1
    finally:
        burst.flush()
    assert healthy.transport.written == [framed("one"), framed("two") + framed("three")]
    assert behind.transport.written == [framed("one")]
    client = next(c for c in manager.clients.values() if c.id == "healthy")
    assert [c.id for c in manager.clients.values()] == ["healthy"]
    assert client.sent == 3
    assert manager.drops == 1
    assert slow.goodbye == (CLOSE_TOO_SLOW, TOO_SLOW)
    assert slow.sent == 1
    await settle()


async def test_the_byte_limit_counts_what_the_transport_holds_not_the_bursts_size() -> None:
    manager = WebsocketManager.isolated(queue_size=1)  # bound: 1 KiB for small frames
    protocol = await connect_direct(manager)
    frame = "x" * 300
    burst.hold(safety=False)
    try:
        # 10 frames of 302 bytes: more than the bound in one burst, but the peer takes
        # them (its transport holds nothing): the client is not behind.
        assert [manager.broadcast(frame) for _ in range(10)] == [1] * 10
    finally:
        burst.flush()
    assert b"".join(protocol.transport.written) == framed(frame) * 10
    assert len(manager) == 1
    assert manager.drops == 0


async def test_a_client_hung_up_mid_burst_gets_nothing_written_after_its_goodbye() -> None:
    manager = WebsocketManager.isolated()
    staying = await connect_direct(manager, "staying")
    leaving = await connect_direct(manager, "leaving")
    burst.hold(safety=False)
    try:
        manager.broadcast("before")
        assert manager.hangup("leaving", 1000, "bye") == 1
        assert manager.broadcast("after") == 1
    finally:
        burst.flush()
    # What it was sent before the hangup goes out, ahead of the close frame.
    assert leaving.transport.written == [framed("before")]
    assert staying.transport.written == [framed("before") + framed("after")]
    await settle()


async def test_a_targeted_frame_keeps_its_place_among_a_bursts_frames() -> None:
    manager = WebsocketManager.isolated()
    one = await connect_direct(manager, "one")
    two = await connect_direct(manager, "two")
    burst.hold(safety=False)
    try:
        manager.broadcast("all 1")
        assert manager.broadcast("just one", to="one") == 1
        manager.broadcast("all 2")
    finally:
        burst.flush()
    assert one.transport.written == [framed("all 1") + framed("just one") + framed("all 2")]
    assert two.transport.written == [framed("all 1") + framed("all 2")]


async def test_a_client_with_a_send_queue_in_a_burst_says_the_loop_must_run() -> None:
    manager = WebsocketManager.isolated()
    lined = await connect_direct(manager)
    queued = await connect(manager)  # no direct line: a send queue and a writer task
    burst.hold(safety=False)
    try:
        assert manager.broadcast("hello") == 2
        assert burst.queued  # the runner ends the burst: the writer must send it
    finally:
        burst.flush()
    await settle()
    assert lined.transport.written == [framed("hello")]
    assert queued.sent == ["hello"]


async def test_a_client_that_left_is_not_kept_alive_by_the_fan_out() -> None:
    manager = WebsocketManager.isolated()
    ws = FakeWebSocket()
    direct(ws)
    client = await manager.connect(ws)  # type: ignore[arg-type]
    assert manager.broadcast("hello") == 1  # the split of the clients is made
    await manager.disconnect(ws)  # type: ignore[arg-type]
    gone = weakref.ref(client)
    del client
    gc.collect()
    assert gone() is None
