"""Clocks: the virtual one for tests, the monotonic one for real runs."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

import replay.clock
from replay.clock import Clock, MonotonicClock, VirtualClock


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
