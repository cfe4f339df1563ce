"""Clocks: the virtual one for tests, the monotonic one for real runs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

import replay.clock
from replay.clock import Clock, ManualClock, MonotonicClock, VirtualClock


async def test_virtual_clock_jumps_to_each_deadline() -> None:
    clock = VirtualClock()
    assert clock.now() == 0.0
    await clock.sleep_until(1.5)
    assert clock.now() == 1.5
    await clock.sleep_until(4.0)
    assert clock.now() == 4.0
    assert clock.sleeps == [1.5, 4.0]


async def test_virtual_clock_never_goes_back() -> None:
    clock = VirtualClock(start=10.0)
    assert clock.now() == 10.0
    await clock.sleep_until(3.0)
    assert clock.now() == 10.0
    assert clock.sleeps == [3.0]


def test_virtual_clock_advance() -> None:
    clock = VirtualClock(start=1.0)
    clock.advance(0.25)
    clock.advance(0.25)
    assert clock.now() == pytest.approx(1.5)
    assert clock.sleeps == []


async def test_virtual_sleep_is_a_suspension_point() -> None:
    clock = VirtualClock()
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    task = asyncio.create_task(other())
    await clock.sleep_until(1.0)
    order.append("after sleep")
    await task
    assert order == ["other", "after sleep"]


async def test_virtual_sleep_can_be_cancelled() -> None:
    clock = VirtualClock()
    task = asyncio.create_task(clock.sleep_until(5.0))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_both_clocks_are_clocks() -> None:
    clocks: list[Clock] = [VirtualClock(), MonotonicClock()]
    for clock in clocks:
        assert isinstance(clock.now(), float)


def test_monotonic_clock_never_goes_back() -> None:
    clock = MonotonicClock()
    readings = [clock.now() for _ in range(100)]
    assert readings == sorted(readings)


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """replay.clock's view of time and asyncio, replaced: nothing sleeps for real."""
    state = SimpleNamespace(now=100.0, sleeps=[])

    async def sleep(delay: float) -> None:
        state.sleeps.append(delay)

    monkeypatch.setattr(replay.clock, "time", SimpleNamespace(monotonic=lambda: state.now))
    monkeypatch.setattr(replay.clock, "asyncio", SimpleNamespace(sleep=sleep))
    return state


async def test_monotonic_clock_sleeps_the_remaining_time(fake_time: SimpleNamespace) -> None:
    clock = MonotonicClock()
    assert clock.now() == 100.0
    await clock.sleep_until(102.5)
    assert fake_time.sleeps == [pytest.approx(2.5)]


async def test_monotonic_clock_does_not_sleep_past_deadlines(fake_time: SimpleNamespace) -> None:
    clock = MonotonicClock()
    await clock.sleep_until(99.0)
    await clock.sleep_until(100.0)
    assert fake_time.sleeps == []


# --- ManualClock ----------------------------------------------------------------------------


def test_a_manual_clock_is_a_clock() -> None:
    clock: Clock = ManualClock(start=3.0)
    assert clock.now() == 3.0


async def test_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock(start=10.0)
    for _ in range(10):
        await asyncio.sleep(0)
    assert clock.now() == 10.0
    await clock.advance(0.5)
    await clock.advance(0.25)
    assert clock.now() == pytest.approx(10.75)


async def test_manual_sleepers_wake_only_once_their_deadline_has_passed() -> None:
    clock = ManualClock(start=10.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woke.append((name, clock.now()))

    late = asyncio.create_task(sleeper("late", 12.0))
    early = asyncio.create_task(sleeper("early", 11.0))
    await clock.advance(0)
    assert woke == []
    await clock.advance(0.5)
    assert woke == []
    assert not early.done()
    await clock.advance(0.5)  # exactly the early deadline
    assert woke == [("early", 11.0)]
    assert early.done()
    assert not late.done()
    await clock.advance(0.75)
    assert woke == [("early", 11.0)]
    await clock.advance(5)  # well past the late deadline
    assert woke == [("early", 11.0), ("late", 16.75)]
    assert late.done()


async def test_one_advance_wakes_every_sleeper_it_passes() -> None:
    clock = ManualClock()
    tasks = [asyncio.create_task(clock.sleep_until(deadline)) for deadline in (3.0, 1.0, 2.0)]
    await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)
    await clock.advance(3)
    assert all(task.done() for task in tasks)


@pytest.mark.parametrize("deadline", [4.0, 5.0])
async def test_manual_sleep_to_a_passed_deadline_returns_at_once(deadline: float) -> None:
    clock = ManualClock(start=5.0)
    # never advanced: this would hang if it waited
    await asyncio.wait_for(clock.sleep_until(deadline), timeout=5)
    assert clock.now() == 5.0


async def test_manual_sleep_to_a_passed_deadline_is_a_suspension_point() -> None:
    clock = ManualClock(start=5.0)
    order: list[str] = []

    async def other() -> None:
        order.append("other")

    task = asyncio.create_task(other())
    await clock.sleep_until(1.0)
    order.append("after sleep")
    await task
    assert order == ["other", "after sleep"]


async def test_a_cancelled_manual_sleeper_is_forgotten() -> None:
    clock = ManualClock()
    cancelled = asyncio.create_task(clock.sleep_until(1.0))
    kept = asyncio.create_task(clock.sleep_until(1.0))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await clock.advance(2)  # must not try to wake the cancelled sleeper
    assert kept.done()
    assert kept.exception() is None
