"""Presence: the core with the time given (no I/O, no sleeping), then nodes in this
process on memory:// and on a real redis:// that is stopped and started again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from replay.backplane import open_backplane
from replay.backplane import presence as presence_module
from replay.backplane.heard import decode_message
from replay.backplane.messages import Answer, Ask, Beat
from replay.backplane.node import Node
from replay.backplane.presence import LOST_AFTER, Presence
from replay.clock import MonotonicClock
from replay.feed import Feed
from replay.runner import Runner
from tests.redis_server import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.test_runner import FakeDelivery

#: Seconds a test waits for something that should happen soon.
DEADLINE = 15.0


def beat(node: str, bye: bool = False) -> Beat:
    return Beat(node, 42, f"host-{node}", None, 1000.0, 3, 1, bye)


class Core:
    """A presence for node ``me`` whose hearing the test sets, and its feed's events."""

    def __init__(self) -> None:
        self.subscribed = True
        self.feed = Feed()
        self.events: list[dict[str, Any]] = []
        self.feed.recorders.append(self.events.append)
        self.presence = Presence(
            "me", self._publish, lambda: self.subscribed, lambda: (2, 5), self.feed, lambda: 0.0
        )

    async def _publish(self, beat: Beat) -> None:
        pass

    def kinds(self) -> list[tuple[str, str, int]]:
        return [(e["event"], e["node"], e["nodes"]) for e in self.events]


def test_a_node_heard_joins_and_one_unheard_for_3_s_is_lost_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = Core()
    presence = core.presence
    presence.heard(beat("me"), 0.0)
    presence.heard(beat("b"), 0.0)
    presence.heard(beat("c"), 0.5)
    assert presence.alive() == ["me", "b", "c"]
    assert core.kinds() == [("node.joined", "b", 2), ("node.joined", "c", 3)]
    presence.heard(beat("me"), 2.0)
    presence.heard(beat("c"), 2.0)
    assert presence.check(3.0) == []  # b: 3 s exactly, not more
    caplog.set_level(logging.WARNING, "replay.backplane")
    assert presence.check(3.1) == ["b"]
    assert presence.check(3.2) == []
    assert presence.alive() == ["me", "c"]
    assert core.kinds()[-1] == ("node.lost", "b", 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "node b (host-b, pid 42) stopped answering: its clients are gone; runs go on on the "
        "other nodes"
    ]
    assert "b" in presence.lost
    presence.heard(beat("b"), 4.0)  # it came back
    assert core.kinds()[-1] == ("node.joined", "b", 3)
    assert "b" not in presence.lost


def test_a_goodbye_is_a_node_that_left_not_one_lost() -> None:
    core = Core()
    core.presence.heard(beat("me"), 0.0)
    core.presence.heard(beat("b"), 0.0)
    core.presence.heard(beat("b", bye=True), 0.5)
    assert core.presence.alive() == ["me"]
    assert core.kinds() == [("node.joined", "b", 2), ("node.left", "b", 1)]
    assert core.presence.check(10.0) == []


def test_a_node_that_cannot_hear_declares_no_one_lost_until_it_hears_again() -> None:
    core = Core()
    presence = core.presence
    presence.heard(beat("me"), 0.0)
    presence.heard(beat("b"), 0.0)
    core.subscribed = False
    assert presence.check(10.0) == []
    assert not presence.hears
    assert [row["state"] for row in presence.table(10.0)] == ["alive", "unknown"]
    assert presence.alive() == ["me", "b"]
    core.subscribed = True
    # Subscribed again, but its own beat has not come back yet: it still cannot tell.
    assert presence.check(11.0) == []
    presence.heard(beat("me"), 12.0)
    assert presence.hears
    # Everyone gets LOST_AFTER seconds from the moment it hears again.
    assert presence.check(12.0 + LOST_AFTER) == []
    presence.heard(beat("me"), 14.5)
    assert presence.check(12.1 + LOST_AFTER) == ["b"]
    assert [e["event"] for e in core.events] == ["node.joined", "node.lost"]


def test_a_node_not_hearing_its_own_beat_cannot_hear() -> None:
    core = Core()
    core.presence.heard(beat("me"), 0.0)
    core.presence.heard(beat("b"), 0.0)
    # Subscribed, yet its own beats do not come back: the broker is slow or restarting.
    assert core.presence.check(5.0) == []
    assert not core.presence.hears
    core.presence.heard(beat("b"), 5.5)
    core.presence.heard(beat("me"), 6.0)
    assert core.presence.hears
    assert core.presence.alive() == ["me", "b"]


def test_the_table_has_every_beat_and_when_it_was_heard() -> None:
    core = Core()
    core.presence.url = "http://127.0.0.1:8123"
    core.presence.heard(beat("me"), 0.0)
    core.presence.heard(beat("b"), 1.0)
    mine, other = core.presence.table(1.5)
    assert mine["node"] == "me"
    assert (mine["url"], mine["clients"], mine["runs"], mine["last_heard"]) == (
        "http://127.0.0.1:8123",
        2,
        5,
        0.0,
    )
    assert other == {
        "node": "b",
        "pid": 42,
        "host": "host-b",
        "url": None,
        "started": 1000.0,
        "clients": 3,
        "runs": 1,
        "last_heard": 0.5,
        "state": "alive",
    }


@pytest.mark.parametrize(
    "message",
    [
        beat("b"),
        beat("b", bye=True),
        Ask("q1", "a", "runs", {"x": 1}),
        Answer("q1", "a", "b", 200, {}),
    ],
)
def test_the_new_messages_survive_their_encoding(message: Any) -> None:
    assert decode_message(message.encode()) == message


@pytest.mark.parametrize(
    "message",
    [
        b'{"kind":"beat","v":2,"node":"b"}',
        b'{"kind":"beat","v":1,"node":"b"}',
        b'{"kind":"ask","v":1,"id":"q","origin":"a","what":"runs","params":[]}',
        b'{"kind":"answer","v":1,"id":"q","to":"a","node":"b","status":200,"body":1}',
    ],
)
def test_a_message_of_another_version_or_shape_is_refused(message: bytes) -> None:
    with pytest.raises(ValueError, match="message"):
        decode_message(message)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


class Member:
    """A node in this process, its feed's node events collected."""

    def __init__(self, url: str, folder: Path) -> None:
        runner = Runner(FakeDelivery(MonotonicClock()))
        self.node = Node(open_backplane(url), runner, folder)
        self.events: list[dict[str, Any]] = []
        runner.feed.recorders.append(self._record)

    def _record(self, event: dict[str, Any]) -> None:
        if event["event"].startswith("node."):
            self.events.append(event)

    def kinds(self) -> list[tuple[str, str]]:
        return [(e["event"], e["node"]) for e in self.events]

    def stop_dead(self) -> None:
        """Stop as a killed process would: no goodbye, no more beats, no hearing."""
        for task in (self.node._beating, self.node._listening, self.node._sharing):
            assert task is not None
            task.cancel()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beats every 0.05 s, lost after 1 s: the node tests take a second, not three."""
    monkeypatch.setattr(presence_module, "BEAT_EVERY", 0.05)
    monkeypatch.setattr(presence_module, "LOST_AFTER", 1.0)


@pytest.fixture
async def members(tmp_path: Path) -> AsyncIterator[list[Member]]:
    made: list[Member] = []
    yield made
    for member in made:
        await member.node.close()


async def test_memory_nodes_hear_each_other_and_see_one_that_stopped_as_lost(
    tmp_path: Path, members: list[Member], quick: None
) -> None:
    url = f"memory://{tmp_path}"
    members += [Member(url, tmp_path) for _ in range(3)]
    a, b, c = members
    for member in members:
        await member.node.join()
    ids = sorted(m.node.id for m in members)
    for member in members:
        await until(lambda m=member: sorted(m.node.peers()) == ids, "not every node heard")
    assert a.node.peers()[0] == a.node.id
    b.stop_dead()
    await until(lambda: ("node.lost", b.node.id) in a.kinds(), "b never lost on a")
    await until(lambda: ("node.lost", b.node.id) in c.kinds(), "b never lost on c")
    assert sorted(a.node.peers()) == sorted([a.node.id, c.node.id])
    lost = next(e for e in a.events if e["event"] == "node.lost")
    assert lost["nodes"] == 2
    await c.node.close()
    members.remove(c)
    await until(lambda: ("node.left", c.node.id) in a.kinds(), "c never left on a")
    assert ("node.lost", c.node.id) not in a.kinds()
    assert a.node.peers() == [a.node.id]


async def test_redis_stopped_and_started_again_makes_no_node_lost(
    tmp_path: Path,
    members: list[Member],
    redis_server: RedisServer,  # noqa: F811
    quick: None,
) -> None:
    members += [Member(redis_server.url, tmp_path) for _ in range(2)]
    for member in members:
        await member.node.join()
    ids = sorted(m.node.id for m in members)
    for member in members:
        await until(lambda m=member: sorted(m.node.peers()) == ids, "not every node heard")
    redis_server.stop()
    for member in members:
        await until(lambda m=member: not m.node.presence.hears, "still hears a stopped Redis")
    # Three times as long as a node takes to be lost, with no one heard meanwhile.
    down = time.monotonic()
    await until(lambda: time.monotonic() - down > 3 * presence_module.LOST_AFTER, "")
    for member in members:
        assert sorted(member.node.peers()) == ids
        assert [row["state"] for row in member.node.presence.table(time.monotonic())] == [
            "alive",
            "unknown",
        ]
    redis_server.start()
    for member in members:
        await until(lambda m=member: m.node.presence.hears, "never heard again")
    again = time.monotonic()
    await until(lambda: time.monotonic() - again > 2 * presence_module.LOST_AFTER, "")
    for member in members:
        assert sorted(member.node.peers()) == ids
        assert member.kinds() == [("node.joined", n) for n in ids if n != member.node.id]
