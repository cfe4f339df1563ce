"""The event feed: publishing, subscribing, filtering, lagging, heartbeats, unsubscribing.

No test sleeps and hopes: every read waits for its event with a bounded timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from replay.feed import BACKLOG, BACKLOG_BYTES, EVENT_BYTES, Feed, event_size

#: How long any single read may take before the test fails (it normally takes no time).
LIMIT = 5.0


async def next_event(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    return await asyncio.wait_for(anext(events), LIMIT)


async def take(events: AsyncIterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    return [await next_event(events) for _ in range(count)]


async def until(events: AsyncIterator[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Every event up to and including the first of ``kind``."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["event"] != kind:
        seen.append(await next_event(events))
    return seen


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every event until the subscription ends."""
    return [event async for event in events]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


async def test_publishing_without_subscribers_does_nothing_but_count() -> None:
    feed = Feed()
    assert not feed.listening
    assert feed.seq == 0
    feed.publish("run.started", run_id="a")
    feed.publish("run.finished", run_id="a")
    assert feed.seq == 2
    assert not feed.listening
    async with contextlib.aclosing(feed.subscribe()) as events:
        feed.publish("run.started", run_id="b")
        event = await next_event(events)
    # Nothing published before the subscription is replayed to it; seq went on counting.
    assert (event["event"], event["seq"], event["run_id"]) == ("run.started", 3, "b")


async def test_an_event_carries_its_kind_seq_time_and_fields() -> None:
    feed = Feed()
    async with contextlib.aclosing(feed.subscribe()) as events:
        before = time.time()
        feed.publish("frame.sent", run_id="r1", step="2", clients=3, frame='{"a":1}', to=None)
        after = time.time()
        event = await next_event(events)
    assert event == {
        "event": "frame.sent",
        "seq": 1,
        "time": event["time"],
        "run_id": "r1",
        "step": "2",
        "clients": 3,
        "frame": '{"a":1}',
        "to": None,
    }
    assert before <= event["time"] <= after


async def test_the_subscription_starts_when_subscribe_is_called() -> None:
    feed = Feed()
    events = feed.subscribe()
    assert feed.listening  # before the first read
    feed.publish("client.connected", client="c1")
    async with contextlib.aclosing(events):
        assert (await next_event(events))["client"] == "c1"


async def test_every_subscriber_gets_every_event_in_order() -> None:
    feed = Feed()
    subscriptions = [feed.subscribe() for _ in range(3)]
    for n in range(20):
        feed.publish("frame.sent" if n % 2 else "run.step", n=n)
    for events in subscriptions:
        async with contextlib.aclosing(events):
            got = await take(events, 20)
        assert [event["n"] for event in got] == list(range(20))
        assert [event["seq"] for event in got] == list(range(1, 21))
        assert kinds(got) == ["run.step", "frame.sent"] * 10


async def test_kinds_keeps_exact_kinds_and_prefixes_ending_in_a_dot() -> None:
    feed = Feed()
    events = feed.subscribe(["run.", "frame.sent"])
    for kind in [
        "client.connected",
        "run.started",
        "runner.started",  # "run." is a prefix of whole words: not this one
        "frame.sent",
        "frame.received",
        "frame.sent.later",  # "frame.sent" is exact: not a prefix
        "run.step",
        "scenario.added",
        "run.finished",
    ]:
        feed.publish(kind)
    async with contextlib.aclosing(events):
        got = await until(events, "run.finished")
    assert kinds(got) == ["run.started", "frame.sent", "run.step", "run.finished"]
    assert [event["seq"] for event in got] == [2, 4, 7, 9]  # seq counts every event


async def test_a_kind_without_a_dot_is_exact_only() -> None:
    feed = Feed()
    events = feed.subscribe(["run", "scenario.removed"])
    feed.publish("run.started")
    feed.publish("run")
    feed.publish("scenario.removed")
    async with contextlib.aclosing(events):
        assert kinds(await take(events, 2)) == ["run", "scenario.removed"]


async def test_subscribers_filter_independently() -> None:
    feed = Feed()
    runs = feed.subscribe(["run."])
    clients = feed.subscribe(["client."])
    everything = feed.subscribe()
    for kind in ["run.started", "client.connected", "run.finished", "client.disconnected"]:
        feed.publish(kind)
    async with (
        contextlib.aclosing(runs),
        contextlib.aclosing(clients),
        contextlib.aclosing(everything),
    ):
        assert kinds(await take(runs, 2)) == ["run.started", "run.finished"]
        assert kinds(await take(clients, 2)) == ["client.connected", "client.disconnected"]
        assert len(await take(everything, 4)) == 4


async def test_a_subscriber_that_never_reads_loses_what_it_cannot_hold_then_hears_so() -> None:
    backlog = 5
    feed = Feed(backlog=backlog)
    slow = feed.subscribe()
    # Ten times the backlog in a tight loop, nobody reading: publish returns every time.
    for n in range(10 * backlog):
        assert feed.publish("frame.sent", n=n) is None
    assert feed.seq == 10 * backlog
    async with contextlib.aclosing(slow):
        held = await take(slow, backlog)
        feed.publish("run.finished", n="after")
        rest = await take(slow, 2)
    # What it could hold, in order; then how many it missed; then what came after the gap.
    assert [(event["event"], event.get("n")) for event in held] == [
        ("frame.sent", n) for n in range(backlog)
    ]
    assert rest[0]["event"] == "lagged"
    assert rest[0]["missed"] == 9 * backlog
    assert (rest[1]["event"], rest[1]["n"], rest[1]["seq"]) == (
        "run.finished",
        "after",
        10 * backlog + 1,
    )


async def test_lagging_again_is_reported_again_with_the_new_count() -> None:
    feed = Feed(backlog=3)
    events = feed.subscribe()
    async with contextlib.aclosing(events):
        for n in range(5):
            feed.publish("a", n=n)  # 0-2 held, 3-4 missed
        assert [event.get("n") for event in await take(events, 3)] == [0, 1, 2]
        feed.publish("x")
        first = await take(events, 2)
        assert kinds(first) == ["lagged", "x"]
        assert first[0]["missed"] == 2
        for n in range(10, 17):
            feed.publish("a", n=n)  # 10-12 held, 13-16 missed
        assert [event.get("n") for event in await take(events, 3)] == [10, 11, 12]
        feed.publish("y")
        second = await take(events, 2)
    assert kinds(second) == ["lagged", "y"]
    assert second[0]["missed"] == 4


async def test_a_subscriber_within_the_backlog_misses_nothing() -> None:
    feed = Feed(backlog=10)
    events = feed.subscribe()
    for n in range(10):
        feed.publish("a", n=n)
    async with contextlib.aclosing(events):
        got = await take(events, 10)
        feed.publish("b")
        last = await next_event(events)
    assert [event["n"] for event in got] == list(range(10))
    assert last["event"] == "b"  # no lagged event: nothing was missed


async def test_a_slow_subscriber_does_not_take_events_from_a_fast_one() -> None:
    feed = Feed(backlog=2)
    slow = feed.subscribe()
    fast = feed.subscribe()
    async with contextlib.aclosing(slow), contextlib.aclosing(fast):
        for n in range(10):
            feed.publish("a", n=n)
            assert (await next_event(fast))["n"] == n


def test_the_default_backlog() -> None:
    assert Feed().backlog == BACKLOG


async def test_a_heartbeat_comes_after_quiet_time() -> None:
    feed = Feed()
    feed.publish("run.started")
    async with contextlib.aclosing(feed.subscribe(heartbeat=0.01)) as events:
        beat = await next_event(events)
        assert beat["event"] == "heartbeat"
        assert beat["seq"] == feed.seq == 1
        assert "time" in beat
        feed.publish("run.finished")
        assert (await next_event(events))["event"] == "run.finished"


async def test_closing_the_iterator_unsubscribes() -> None:
    feed = Feed()
    events = feed.subscribe()
    feed.publish("a")
    assert (await next_event(events))["event"] == "a"
    assert feed.listening
    await events.aclose()
    assert not feed.listening
    feed.publish("b")  # nobody to hand it to: fine


async def test_leaving_an_aclosing_loop_unsubscribes() -> None:
    feed = Feed()
    kept = feed.subscribe()
    async with contextlib.aclosing(feed.subscribe()) as events:
        feed.publish("a")
        async for _ in events:
            break
    assert feed.listening  # the other subscription is still there
    assert (await next_event(kept))["event"] == "a"
    await kept.aclose()
    assert not feed.listening


async def test_closing_an_iterator_that_was_never_read_unsubscribes() -> None:
    # The subscription starts at subscribe(), so closing must end it even if nothing
    # was ever read (an SSE client that disconnects before its stream starts).
    feed = Feed()
    events = feed.subscribe()
    assert feed.listening
    await events.aclose()
    assert not feed.listening


@pytest.mark.parametrize("heartbeat", [None, 60.0])
async def test_a_reader_waiting_for_events_is_woken_by_a_publish(heartbeat: float | None) -> None:
    feed = Feed()
    async with contextlib.aclosing(feed.subscribe(heartbeat=heartbeat)) as events:
        reader = asyncio.ensure_future(next_event(events))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not reader.done()
        feed.publish("run.started")
        assert (await reader)["event"] == "run.started"


async def test_closing_the_feed_ends_every_subscription_after_what_it_holds() -> None:
    feed = Feed()
    events = feed.subscribe()
    waiting = feed.subscribe(heartbeat=60.0)
    reader = asyncio.ensure_future(anext(waiting, None))
    feed.publish("a")
    feed.publish("b")
    assert (await asyncio.wait_for(reader, LIMIT))["event"] == "a"
    feed.close()
    assert feed.closed
    rest = await asyncio.wait_for(collect(events), LIMIT)
    assert kinds(rest) == ["a", "b"]
    assert kinds(await asyncio.wait_for(collect(waiting), LIMIT)) == ["b"]
    assert not feed.listening


async def test_a_subscription_to_a_closed_feed_ends_at_once() -> None:
    feed = Feed()
    feed.close()
    assert await asyncio.wait_for(collect(feed.subscribe()), LIMIT) == []
    assert not feed.listening


async def test_closing_the_feed_twice_is_harmless() -> None:
    feed = Feed(backlog=2)
    full = feed.subscribe()  # holds as much as it may
    feed.publish("a")
    feed.publish("b")
    feed.close()
    feed.close()
    assert kinds(await asyncio.wait_for(collect(full), LIMIT)) == ["a", "b"]


#: A frame as large as a client or a template may make one.
MIB = 1024 * 1024
BIG = "x" * MIB


async def test_a_stalled_reader_holds_no_more_than_its_bytes_of_big_events() -> None:
    feed = Feed()  # the default bounds: 1000 events, 8 MiB
    stalled = feed.subscribe()
    # A thousand 1 MiB frames fit the count bound: only the bytes bound keeps the
    # stalled reader from holding a gigabyte.
    for n in range(1000):
        feed.publish("frame.received", client="flood", frame=BIG, n=n)
        held = stalled._subscriber.held
        assert held <= BACKLOG_BYTES, f"after {n + 1} events the reader holds {held} bytes"
    kept = BACKLOG_BYTES // event_size({"frame": BIG})
    assert stalled._subscriber.queue.qsize() == kept
    async with contextlib.aclosing(stalled):
        got = await take(stalled, kept)
        feed.publish("run.finished")
        rest = await take(stalled, 2)
    assert [event["n"] for event in got] == list(range(kept))
    assert rest[0] == {"event": "lagged", "missed": 1000 - kept, "seq": 1001}
    assert rest[1]["event"] == "run.finished"
    assert stalled._subscriber.held == 0  # what was read is no longer counted


async def test_an_event_larger_than_the_bytes_bound_still_reaches_an_idle_reader() -> None:
    feed = Feed(backlog_bytes=1024)
    events = feed.subscribe()
    async with contextlib.aclosing(events):
        feed.publish("frame.sent", frame=BIG)  # alone, it may pass: the reader holds nothing
        feed.publish("frame.sent", frame="small")  # behind it, no room
        assert (await next_event(events))["frame"] == BIG
        feed.publish("frame.sent", frame="after")
        assert kinds(await take(events, 2)) == ["lagged", "frame.sent"]


def test_an_events_size_is_its_frame_and_a_constant() -> None:
    assert event_size({"event": "run.started", "seq": 1}) == EVENT_BYTES
    assert event_size({"event": "frame.sent", "frame": "abc"}) == EVENT_BYTES + 3
    assert Feed().backlog_bytes == BACKLOG_BYTES
