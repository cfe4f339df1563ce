"""The cluster's event feed (replay.backplane.events): nodes in one process on memory://,
and on a real redis-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from replay.backplane import open_backplane
from replay.backplane.command import SourceFile
from replay.backplane.events import BATCH_EVENTS, Batch, ClusterEvents
from replay.backplane.interface import Backplane
from replay.backplane.node import Node
from replay.clock import MonotonicClock
from replay.feed import Feed, Subscription
from replay.runner import Runner
from tests.redis_server import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.test_backplane import hello
from tests.test_runner import FakeDelivery

#: Seconds a test waits for something that should happen at once.
DEADLINE = 15.0

TWO = "steps:\n  - message: EVENT\n    text: one\n  - message: EVENT\n    text: two\n"


async def until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


class Member:
    """A node of a test cluster: its feed, runner, node and part of the cluster's feed."""

    def __init__(self, url: str, folder: Path, backplane: Backplane | None = None) -> None:
        self.feed = Feed()
        self.delivery = FakeDelivery(MonotonicClock())
        self.runner = Runner(self.delivery, feed=self.feed)
        self.node = Node(backplane or open_backplane(url), self.runner, folder)
        self.events = ClusterEvents(self.node.backplane, self.feed, self.node.id)
        self.heard: list[dict[str, Any]] = []
        self._following: tuple[Subscription, asyncio.Task[None]] | None = None

    async def join(self) -> None:
        await self.node.join()
        self.events.start()

    def follow(self) -> None:
        """A follower of this node's feed (as GET /events is), collecting what it gets."""
        subscription = self.feed.subscribe()

        async def read() -> None:
            async for event in subscription:
                self.heard.append(event)

        self._following = (subscription, asyncio.create_task(read()))

    async def unfollow(self) -> None:
        assert self._following is not None
        subscription, task = self._following
        await subscription.aclose()
        task.cancel()
        self._following = None

    def got(self, kind: str, node: str) -> list[dict[str, Any]]:
        return [e for e in self.heard if e["event"] == kind and e.get("node") == node]

    async def close(self) -> None:
        if self._following is not None:
            await self.unfollow()
        await self.events.close()
        await self.node.close()
        await self.runner.shutdown()


@pytest.fixture
async def members() -> AsyncIterator[list[Member]]:
    made: list[Member] = []
    yield made
    for member in made:
        await member.close()


async def looked(*members: Member) -> None:
    """Each node looks at who follows (as it does about once a second), twice: the first
    look makes followers listen, the second sees them."""
    for _ in range(2):
        for member in members:
            await member.events.look()
        await asyncio.sleep(0)


async def look_until(condition: Callable[[], object], *members: Member) -> None:
    """Each node looks at who follows until ``condition`` holds (a Redis subscription is
    counted once Redis has taken it: a moment after the look that made it)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        for member in members:
            await member.events.look()
        if condition():
            return
        assert time.monotonic() < deadline, "the nodes never saw the followers"
        await asyncio.sleep(0.01)


async def play_everywhere(member: Member, run_id: str) -> None:
    """A run of two frames, started on every node as a trigger does."""
    files = {"hello": SourceFile("x/hello.yaml", TWO)}
    await member.node.backplane.publish_start(hello(run_id, time.time(), files=files))


async def a_follower_gets_every_node_s_events_once_tagged(members: list[Member]) -> None:
    a, b = members
    for member in members:
        await member.join()
    a.follow()
    # Until the other node listens, nothing is published.
    a.feed.publish("client.connected", client="c-a", endpoint="/ws", clients=1)
    b.feed.publish("client.connected", client="c-early", endpoint="/ws", clients=1)
    await look_until(lambda: b.events.publishing, a, b)
    assert not a.events.publishing  # only a's own follower listens: a sends nobody anything
    b.feed.publish("client.connected", client="c-b", endpoint="/ws", clients=1)
    b.feed.publish("node.joined", node="n-x", nodes=99)  # presence: every node its own
    await play_everywhere(b, "r1")
    await until(lambda: len(a.got("run.finished", b.node.id)) == 1, "b's run not heard on a")
    await until(lambda: len(a.got("run.finished", a.node.id)) == 1, "a's own run not heard")
    [connected] = a.got("client.connected", b.node.id)
    assert connected["client"] == "c-b"
    assert [e["client"] for e in a.got("client.connected", a.node.id)] == ["c-a"]
    assert [e for e in a.heard if e["event"] == "node.joined" and e["nodes"] == 99] == []
    for node in (a.node.id, b.node.id):
        sent = a.got("frame.sent", node)
        assert [(e["run_id"], e["step"]) for e in sent] == [("r1", "0"), ("r1", "1")], node
        assert len(a.got("run.started", node)) == 1
    # Once each: nothing more comes, however long a waits (a late batch from b says so).
    b.feed.publish("state.changed", changes={"last": True}, by="test")
    await until(lambda: a.got("state.changed", b.node.id), "the last event not heard")
    assert len(a.got("frame.sent", b.node.id)) == 2
    assert len(a.got("run.finished", b.node.id)) == 1
    assert all("node" in event for event in a.heard)


async def test_memory_a_follower_gets_every_node_s_events_once_tagged(
    members: list[Member], tmp_path: Path
) -> None:
    members += [Member(f"memory://{tmp_path}", tmp_path) for _ in range(2)]
    await a_follower_gets_every_node_s_events_once_tagged(members)


async def test_redis_a_follower_gets_every_node_s_events_once_tagged(
    redis_server: RedisServer,  # noqa: F811
    members: list[Member],
    tmp_path: Path,
) -> None:
    members += [Member(redis_server.url, tmp_path) for _ in range(2)]
    await a_follower_gets_every_node_s_events_once_tagged(members)


async def test_three_nodes_each_event_reaches_each_follower_once(
    members: list[Member], tmp_path: Path
) -> None:
    members += [Member(f"memory://{tmp_path}", tmp_path) for _ in range(3)]
    a, b, c = members
    for member in members:
        await member.join()
    a.follow()
    b.follow()
    await look_until(lambda: all(m.events.publishing for m in members), a, b, c)
    await play_everywhere(c, "r3")
    for follower in (a, b):
        for member in members:
            await until(lambda f=follower, m=member: f.got("run.finished", m.node.id), "not heard")
            assert len(follower.got("frame.sent", member.node.id)) == 2


async def test_nobody_following_means_nothing_published(
    members: list[Member], tmp_path: Path
) -> None:
    members += [Member(f"memory://{tmp_path}", tmp_path) for _ in range(2)]
    a, b = members
    for member in members:
        await member.join()
    await looked(a, b)
    await play_everywhere(a, "quiet")
    await until(lambda: all(len(m.delivery.frames) == 2 for m in members), "the run never played")
    for member in members:
        assert not member.events.publishing
        assert member.events.batches == member.events.published == 0
    # A follower comes and goes: publishing starts and stops with it.
    a.follow()
    await look_until(lambda: b.events.publishing, a, b)
    await a.unfollow()
    await looked(a, b)
    assert not b.events.publishing
    b.feed.publish("client.connected", client="c-b", endpoint="/ws", clients=1)
    assert b.events.published == 0
    assert not b.events._buffer


class Gate:
    """A backplane whose event publishing hangs until opened (a Redis that is slow)."""

    def __init__(self, inner: Backplane) -> None:
        self.inner = inner
        self.open = asyncio.Event()
        self.waiting = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish_events(self, batch: bytes) -> None:
        self.waiting += 1
        await self.open.wait()
        await self.inner.publish_events(batch)


async def test_a_full_buffer_drops_the_oldest_and_the_follower_is_told_how_many(
    members: list[Member], tmp_path: Path
) -> None:
    url = f"memory://{tmp_path}"
    gate = Gate(open_backplane(url))
    a = Member(url, tmp_path)
    b = Member(url, tmp_path, backplane=gate)  # type: ignore[arg-type]
    b.events.max_buffer = 300
    members += [a, b]
    for member in members:
        await member.join()
    a.follow()
    await look_until(lambda: b.events.publishing, a, b)
    b.feed.publish("state.changed", changes={"n": -1}, by="first")
    await until(lambda: gate.waiting == 1, "the first batch was not sent")  # now hanging
    started = time.monotonic()
    for n in range(1000):
        b.feed.publish("state.changed", changes={"n": n}, by="test")
    assert time.monotonic() - started < DEADLINE  # the feed never waited on the backplane
    assert len(b.events._buffer) == 300
    assert b.events.dropped == 700
    gate.open.set()
    await until(lambda: len(a.got("state.changed", b.node.id)) == 301, "not all kept heard")
    [dropped] = a.got("feed.dropped", b.node.id)
    assert dropped["dropped"] == 700
    kept = [e["changes"]["n"] for e in a.got("state.changed", b.node.id)]
    assert kept == [-1, *range(700, 1000)]  # the oldest went
    # In batches of BATCH_EVENTS at most.
    assert b.events.batches == 1 + -(-300 // BATCH_EVENTS)


async def test_redis_stopped_blocks_no_run_and_the_loss_is_counted(
    redis_server: RedisServer,  # noqa: F811
    members: list[Member],
    tmp_path: Path,
) -> None:
    members += [Member(redis_server.url, tmp_path) for _ in range(2)]
    a, b = members
    for member in members:
        await member.join()
    a.follow()
    await look_until(lambda: b.events.publishing, a, b)
    redis_server.stop()
    # A run this node plays by itself (a trigger would be refused: 503) ends as ever.
    files = {"hello": SourceFile("x/hello.yaml", TWO)}
    await b.node._play(hello("alone", time.time(), files=files))
    run = b.runner.get("alone")
    await until(lambda: run.done, "the run was held up")
    assert len(b.delivery.frames) == 2
    await until(lambda: b.events.dropped >= 4, "the lost batch was not counted")
    # Nobody can be told: once the backplane cannot say who follows, nothing is sent.
    await b.events.look()
    assert not b.events.publishing


def test_a_batch_survives_its_encoding_and_anything_else_is_refused() -> None:
    batch = Batch("n1", 3, [{"event": "frame.sent", "frame": "\u00e9\udcff"}], dropped=2)
    heard = Batch.decode(batch.encode())
    assert (heard.origin, heard.number, heard.dropped) == ("n1", 3, 2)
    assert heard.events[0]["event"] == "frame.sent"
    for bad in (b"", b"[]", b'{"o": "n", "n": 1, "d": 0, "e": [{"x": 1}]}', b"\xff"):
        with pytest.raises(ValueError, match="not a batch of events"):
            Batch.decode(bad)


def test_a_single_process_feed_has_no_node_field() -> None:
    feed = Feed()
    got: list[dict[str, Any]] = []
    feed.recorders.append(got.append)
    feed.publish("client.connected", client="c", endpoint="/ws", clients=1)
    feed.node = "n1"
    feed.publish("client.connected", client="d", endpoint="/ws", clients=2)
    assert "node" not in got[0]
    assert got[1]["node"] == "n1"


async def test_a_local_reader_gets_only_its_node_s_events_and_calls_for_none(
    members: list[Member], tmp_path: Path
) -> None:
    members += [Member(f"memory://{tmp_path}", tmp_path) for _ in range(2)]
    a, b = members
    for member in members:
        await member.join()
    local = a.feed.subscribe(local=True)  # as the viewer reads GET /events?local=true
    await looked(a, b)
    assert not b.events.publishing  # nobody wants b's events
    a.follow()
    await look_until(lambda: b.events.publishing, a, b)
    b.feed.publish("client.connected", client="c-b", endpoint="/ws", clients=1)
    a.feed.publish("client.connected", client="c-a", endpoint="/ws", clients=1)
    await until(lambda: a.got("client.connected", b.node.id), "b's event not heard")
    event = await asyncio.wait_for(anext(local), DEADLINE)
    assert (event["client"], event["node"]) == ("c-a", a.node.id)
    assert local._subscriber.queue.empty()  # b's, heard by the other reader, is not here
    await local.aclose()
