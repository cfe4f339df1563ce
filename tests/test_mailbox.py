"""A run's mailbox: what it may consume, kept in order (no I/O, no clock)."""

from __future__ import annotations

import asyncio
import json

import pytest

import replay.mailbox
from replay.mailbox import Mailbox, Waiter
from replay.matching import ClientFrame
from replay.scenario import ClientFrameMatch

CHAT = ClientFrameMatch(message="CHAT_INPUT")
YES = ClientFrameMatch(message="CHAT_INPUT", match="^yes")


def frame(client: str, message_type: str, message: str) -> ClientFrame:
    return ClientFrame(client, json.dumps({"message_type": message_type, "message": message}))


def waiter(match: ClientFrameMatch = CHAT, source: str | None = None) -> Waiter:
    return Waiter(match, source, asyncio.get_running_loop().create_future())


def test_it_wants_what_a_wait_of_the_run_accepts_from_its_target() -> None:
    box = Mailbox([YES], client="a")
    assert box.wants(frame("a", "CHAT_INPUT", "yes please"))
    assert not box.wants(frame("a", "CHAT_INPUT", "no"))  # free for reactions
    assert not box.wants(frame("b", "CHAT_INPUT", "yes"))  # another client's
    assert not box.wants(frame("a", "EVENT", "yes"))
    assert not box.wants(ClientFrame("a", "not json"))
    assert Mailbox([CHAT]).wants(frame("anyone", "CHAT_INPUT", "x"))


async def test_a_wait_takes_the_oldest_kept_frame_it_accepts() -> None:
    box = Mailbox([CHAT, YES])
    for text in ("maybe", "yes 1", "yes 2"):
        assert box.offer(frame("c", "CHAT_INPUT", text))
    taken = box.take(waiter(YES))
    assert taken is not None
    assert taken.message == "yes 1"
    taken = box.take(waiter(CHAT))
    assert taken is not None
    assert taken.message == "maybe"
    assert box.summary() == {"kept": 3, "taken": 2, "unread": 1, "dropped": 0}


async def test_a_waiting_step_gets_the_next_frame_directly() -> None:
    box = Mailbox([CHAT])
    waiting = waiter(source="a")
    assert box.take(waiting) is None
    assert box.offer(frame("b", "CHAT_INPUT", "from b"))  # kept: the run may take it later
    assert not waiting.future.done()
    assert box.offer(frame("a", "CHAT_INPUT", "from a"))
    assert waiting.future.result().message == "from a"
    assert box.summary() == {"kept": 1, "taken": 1, "unread": 1, "dropped": 0}


async def test_a_forgotten_waiter_takes_nothing() -> None:
    box = Mailbox([CHAT])
    gone = waiter()
    assert box.take(gone) is None
    box.forget(gone)
    assert box.offer(frame("a", "CHAT_INPUT", "later"))
    assert not gone.future.done()
    assert box.summary()["unread"] == 1


def test_it_is_bounded_in_frames_and_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay.mailbox, "MAX_FRAMES", 2)
    box = Mailbox([CHAT])
    assert all(box.offer(frame("a", "CHAT_INPUT", str(i))) for i in range(4))
    assert box.summary() == {"kept": 2, "taken": 0, "unread": 2, "dropped": 2}
    monkeypatch.setattr(replay.mailbox, "MAX_FRAMES", 100)
    monkeypatch.setattr(replay.mailbox, "MAX_BYTES", 1000)
    big = Mailbox([CHAT])
    assert big.offer(frame("a", "CHAT_INPUT", "x" * 5000))  # one frame is kept whatever its size
    assert big.offer(frame("a", "CHAT_INPUT", "y"))
    assert big.summary() == {"kept": 1, "taken": 0, "unread": 1, "dropped": 1}
    big.clear()
    assert big.summary()["unread"] == 0
