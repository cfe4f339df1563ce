"""Run time (replay.pacing) on a manual clock: pause, resume, speed and steps."""

from __future__ import annotations

import asyncio

import pytest

from replay.clock import ManualClock, VirtualClock
from replay.pacing import Gate, Pace

START = 1000.0


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=START)


def started(clock: ManualClock | VirtualClock, speed: float = 1.0) -> Pace:
    pace = Pace(clock, speed)
    pace.begin()
    return pace


async def test_run_time_follows_the_clock_from_the_start(clock: ManualClock) -> None:
    pace = started(clock)
    assert pace.now() == 0.0
    await clock.advance(1.5)
    assert pace.now() == pytest.approx(1.5)
    assert not pace.paused
    assert pace.paused_s == 0.0


async def test_run_time_may_begin_at_an_agreed_moment_before_now(clock: ManualClock) -> None:
    pace = Pace(clock, 1.0)
    pace.begin(at=START - 0.25)
    assert pace.now() == pytest.approx(0.25)
    assert pace.lateness(0.0) == pytest.approx(0.25)
    await clock.advance(1.0)
    assert pace.now() == pytest.approx(1.25)


async def test_a_pause_freezes_run_time_and_counts_the_time_paused(clock: ManualClock) -> None:
    pace = started(clock)
    await clock.advance(1)
    assert pace.pause()
    assert not pace.pause()  # pausing a paused run does nothing
    await clock.advance(3)
    assert pace.now() == pytest.approx(1)
    assert pace.paused_s == pytest.approx(3)
    assert pace.resume()
    assert not pace.resume()
    await clock.advance(0.5)
    assert pace.now() == pytest.approx(1.5)
    assert pace.paused_s == pytest.approx(3)


async def test_a_deadline_moves_by_the_time_paused(clock: ManualClock) -> None:
    pace = started(clock)
    task = asyncio.create_task(pace.due(2.0))
    await clock.advance(1)
    pace.pause()
    await clock.advance(5)  # past the deadline on the clock: paused, so not due
    await settle()
    assert not task.done()
    pace.resume()
    await clock.advance(0.9)
    await settle()
    assert not task.done()
    await clock.advance(0.1)
    await settle()
    assert task.done()
    assert task.result() is False
    assert clock.now() == pytest.approx(START + 2 + 5)
    assert pace.lateness(2.0) == 0.0


async def test_a_paused_run_holds_even_an_overdue_action(clock: ManualClock) -> None:
    pace = started(clock)
    await clock.advance(3)
    pace.pause()
    task = asyncio.create_task(pace.due(1.0))
    await settle()
    assert not task.done()
    pace.resume()
    await settle()
    assert task.done()
    assert pace.lateness(1.0) == pytest.approx(2.0)


async def test_a_speed_change_rescales_what_is_left(clock: ManualClock) -> None:
    pace = started(clock, speed=2.0)  # offsets are at speed 2 already: run time = clock
    task = asyncio.create_task(pace.due(4.0))
    await clock.advance(1)
    pace.set_speed(4.0)  # twice the start speed: the 3 run seconds left take 1.5
    assert pace.speed == 4.0
    await clock.advance(1.4)
    await settle()
    assert not task.done()
    await clock.advance(0.1)
    await settle()
    assert task.done()
    assert pace.now() == pytest.approx(4.0)
    pace.set_speed(1.0)  # half the start speed: run time goes at half the clock's pace
    await clock.advance(1)
    assert pace.now() == pytest.approx(4.5)


async def test_a_speed_change_while_paused_applies_from_the_resume(clock: ManualClock) -> None:
    pace = started(clock)
    await clock.advance(1)
    pace.pause()
    pace.set_speed(2.0)
    await clock.advance(10)
    assert pace.now() == pytest.approx(1)
    pace.resume()
    await clock.advance(1)
    assert pace.now() == pytest.approx(3)


async def test_speed_cannot_change_at_speed_0_nor_become_0(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="speed 0"):
        started(clock, speed=0).set_speed(1.0)
    with pytest.raises(ValueError, match="pause it instead"):
        started(clock).set_speed(0)


async def test_a_step_opens_the_earliest_action_and_jumps_run_time(clock: ManualClock) -> None:
    pace = started(clock)
    later = asyncio.create_task(pace.due(9.0))
    first = asyncio.create_task(pace.due(5.0))
    await settle()
    answer = pace.step()
    assert pace.paused
    await settle()
    assert first.done()
    assert first.result() is True
    assert not later.done()
    assert pace.now() == pytest.approx(5.0)  # jumped to the action's offset
    assert not answer.done()  # answered once the action is reported
    pace.stepped({"kind": "frame", "step": "1"})
    assert answer.result() == {"kind": "frame", "step": "1"}
    await clock.advance(100)
    await settle()
    assert not later.done()  # still paused after the step
    assert pace.now() == pytest.approx(5.0)
    pace.resume()
    await clock.advance(4)
    await settle()
    assert later.done()
    assert later.result() is False


async def test_a_step_goes_through_passing_gates_and_skips_timers(clock: ManualClock) -> None:
    pace = started(clock)
    timer = asyncio.create_task(pace.due(1.0, Gate.TIMER))
    passing = asyncio.create_task(pace.due(2.0, Gate.PASSING))
    await settle()
    answer = pace.step()
    await settle()
    assert passing.done()
    assert passing.result() is False
    assert not timer.done()
    action = asyncio.create_task(pace.due(2.0))
    await settle()
    assert action.result() is True
    pace.stepped({"kind": "set"})
    assert answer.result() == {"kind": "set"}
    assert not timer.done()  # a paused run's timeout does not run down
    assert pace.waiting_actions == 0
    timer.cancel()


async def test_a_step_with_no_gate_waiting_goes_to_the_next_one(clock: ManualClock) -> None:
    pace = started(clock)
    pace.pause()
    answer = pace.step()
    await settle()
    assert not answer.done()
    assert await pace.due(3.0) is True
    assert pace.now() == 3.0
    pace.stepped({"kind": "wait"})
    assert answer.result() == {"kind": "wait"}


async def test_a_step_asked_for_before_a_resume_is_used_by_the_next_action(
    clock: ManualClock,
) -> None:
    pace = started(clock)
    answer = pace.step()
    pace.resume()
    task = asyncio.create_task(pace.due(1.0))
    await clock.advance(1)
    await settle()
    assert task.result() is True
    pace.stepped({"kind": "frame"})
    assert answer.result() == {"kind": "frame"}


async def test_the_end_answers_the_steps_left(clock: ManualClock) -> None:
    pace = started(clock)
    first, second = pace.step(), pace.step()
    pace.end()
    assert first.result()["kind"] == "end"
    assert second.result()["kind"] == "end"


async def test_a_run_paused_before_it_begins_starts_paused(clock: ManualClock) -> None:
    pace = Pace(clock, 1.0)
    pace.pause()
    await clock.advance(2)
    pace.begin()
    await clock.advance(1)
    assert pace.now() == 0.0
    pace.resume()
    await clock.advance(1)
    assert pace.now() == pytest.approx(1.0)
    assert pace.paused_s == pytest.approx(1.0)


async def test_on_a_virtual_clock_deadlines_are_asked_for_as_they_are() -> None:
    clock = VirtualClock(start=START)
    pace = started(clock)
    assert await pace.due(0.5) is False
    assert await pace.due(0.25) is False  # passed already: no sleep
    pace.set_speed(2.0)
    assert await pace.due(1.5) is False
    assert clock.sleeps == pytest.approx([START + 0.5, START + 1.0])
    assert pace.lateness(1.5) == 0.0


async def test_an_ended_run_is_paused_no_more(clock: ManualClock) -> None:
    pace = started(clock)
    pace.pause()
    await clock.advance(2)
    pace.end()
    await clock.advance(5)
    assert not pace.paused
    assert pace.paused_s == pytest.approx(2)


async def test_a_step_passes_on_when_a_branch_ends_after_passing(clock: ManualClock) -> None:
    pace = started(clock)
    passing = asyncio.create_task(pace.due(1.0, Gate.PASSING))  # then its branch ends
    other = asyncio.create_task(pace.due(5.0))
    await settle()
    pace.step()
    await settle()
    assert passing.result() is False
    assert other.result() is True  # the step went on to the other branch's action
