"""The runner: timelines played against a virtual clock, frames handed to a fake delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import replay.runner
from replay.catalog import Catalog
from replay.clock import VirtualClock
from replay.errors import RunNotFound
from replay.library import ScenarioLibrary
from replay.protocol import Endpoint, chunk_frame
from replay.runner import Run, Runner, RunState
from replay.timeline import Cue, Timeline, build_timeline

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"


class FakeDelivery:
    """Records (clock time, endpoint, frame) for every send; reaches ``clients`` clients."""

    def __init__(
        self,
        clock: VirtualClock,
        clients: dict[Endpoint, int] | Callable[[Endpoint, str], int] | None = None,
        on_send: Callable[[int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.clients = clients or {}
        self.on_send = on_send
        self.sent: list[tuple[float, Endpoint, str]] = []

    def send(self, endpoint: Endpoint, frame: str) -> int:
        self.sent.append((self.clock.now(), endpoint, frame))
        if self.on_send is not None:
            self.on_send(len(self.sent))
        if callable(self.clients):
            return self.clients(endpoint, frame)
        return self.clients.get(endpoint, 1)

    @property
    def times(self) -> list[float]:
        return [when for when, _, _ in self.sent]

    @property
    def frames(self) -> list[str]:
        return [frame for _, _, frame in self.sent]


class HoldingClock(VirtualClock):
    """A virtual clock whose sleeps to ``hold_from`` or later never end (until cancelled)."""

    def __init__(self, hold_from: float) -> None:
        super().__init__()
        self.hold_from = hold_from
        self.holding = asyncio.Event()

    async def sleep_until(self, deadline: float) -> None:
        if deadline >= self.hold_from:
            self.holding.set()
            await asyncio.Event().wait()
        await super().sleep_until(deadline)


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return ScenarioLibrary(SHIPPED).catalog()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=1000.0)


def chunks(*offsets: float, duration: float | None = None, name: str = "chunks") -> Timeline:
    cues = tuple(
        Cue(offset, Endpoint.STREAM, chunk_frame(f"c{index}"), name, index)
        for index, offset in enumerate(offsets)
    )
    end = duration if duration is not None else max(offsets, default=0.0)
    return Timeline(name, cues, end)


async def play(runner: Runner, line: Timeline, speed: float = 1.0) -> Run:
    return await runner.start(line, speed).wait()


# --- timing ---------------------------------------------------------------------------------


async def test_frames_go_out_at_start_plus_offset(shipped: Catalog, clock: VirtualClock) -> None:
    line = build_timeline("all", shipped)
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), line)
    assert delivery.times == pytest.approx([1000 + cue.offset for cue in line])
    assert delivery.times == pytest.approx(
        [1000.0, 1000.5, 1001.0, 1001.5, 1002.0, 1002.2, 1002.4, 1002.6]
    )
    assert [(e, f) for _, e, f in delivery.sent] == [(c.endpoint, c.frame) for c in line]
    assert run.state is RunState.FINISHED
    assert run.sent == 8
    assert run.error is None
    assert run.done


async def test_run_ends_after_the_trailing_pause(shipped: Catalog, clock: VirtualClock) -> None:
    line = build_timeline("messages", shipped)  # last frame at 1.5, duration 2.0
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), line)
    assert delivery.times[-1] == pytest.approx(1001.5)
    assert clock.now() == pytest.approx(1002.0)
    assert run.elapsed == pytest.approx(2.0)
    assert run.state is RunState.FINISHED
    assert run.ended_at is not None


async def test_trailing_sleep_is_waited_for(clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), chunks(0.0, 1.0, duration=5.0))
    assert clock.now() == pytest.approx(1005.0)
    assert run.elapsed == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("speed", "times", "elapsed"),
    [
        (2.0, [0.0, 0.25, 0.5, 0.75], 1.0),
        (0.5, [0.0, 1.0, 2.0, 3.0], 4.0),
        (0.0, [0.0, 0.0, 0.0, 0.0], 0.0),
    ],
)
async def test_speed_scales_every_pause(
    shipped: Catalog, clock: VirtualClock, speed: float, times: list[float], elapsed: float
) -> None:
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), build_timeline("messages", shipped), speed)
    assert delivery.times == pytest.approx([1000 + t for t in times])
    assert run.elapsed == pytest.approx(elapsed)
    assert run.speed == speed
    assert run.summary()["planned_s"] == pytest.approx(elapsed)
    assert run.sent == 4


async def test_invalid_speed_starts_no_run(shipped: Catalog, clock: VirtualClock) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    with pytest.raises(ValueError, match="speed"):
        runner.start(build_timeline("messages", shipped), -1)
    assert runner.runs() == []


async def test_deadlines_are_absolute_when_sends_take_time(
    shipped: Catalog, clock: VirtualClock
) -> None:
    delivery = FakeDelivery(clock, on_send=lambda _: clock.advance(0.3))
    run = await play(Runner(delivery, clock), build_timeline("messages", shipped))
    # start + offset, not offset + 0.3 s per earlier send
    assert delivery.times == pytest.approx([1000.0, 1000.5, 1001.0, 1001.5])
    assert run.elapsed == pytest.approx(2.0)
    assert run.max_lateness == pytest.approx(0.0)


async def test_sends_slower_than_the_pauses_catch_up_without_drift(clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock, on_send=lambda _: clock.advance(0.7))
    run = await play(Runner(delivery, clock), chunks(0.0, 0.5, 1.0, 1.5, 5.0))
    # late frames go out at once; once time is available again, the schedule holds
    assert delivery.times == pytest.approx([1000.0, 1000.7, 1001.4, 1002.1, 1005.0])
    assert run.max_lateness == pytest.approx(0.6)
    assert run.elapsed == pytest.approx(5.7)


async def test_the_clock_is_asked_for_each_deadline(shipped: Catalog, clock: VirtualClock) -> None:
    await play(Runner(FakeDelivery(clock), clock), build_timeline("stream", shipped))
    # the first frame is due at once; then one sleep per later frame, and the trailing pause
    assert clock.sleeps == pytest.approx([1000.2, 1000.4, 1000.6, 1000.6])


# --- outcomes -------------------------------------------------------------------------------


async def test_cancel_from_outside_keeps_the_partial_count(
    shipped: Catalog,
) -> None:
    clock = HoldingClock(hold_from=1.0)
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    run = runner.start(build_timeline("messages", shipped))
    await asyncio.wait_for(clock.holding.wait(), timeout=5)
    assert not run.done
    assert runner.active == [run]
    assert runner.cancel(run.id) is run
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert run.sent == 2
    assert len(delivery.sent) == 2
    assert run.elapsed == pytest.approx(0.5)
    assert runner.active == []
    assert runner.get(run.id) is run


async def test_cancel_during_a_send(shipped: Catalog, clock: VirtualClock) -> None:
    runner: Runner

    def cancel_after_third(count: int) -> None:
        if count == 3:
            runner.cancel(run.id)

    delivery = FakeDelivery(clock, on_send=cancel_after_third)
    runner = Runner(delivery, clock)
    run = runner.start(build_timeline("all", shipped))
    await run.wait()
    assert run.state is RunState.CANCELLED
    assert run.sent == 3
    assert len(delivery.sent) == 3
    assert run.summary()["state"] == "cancelled"


async def test_cancelling_a_finished_run_changes_nothing(
    shipped: Catalog, clock: VirtualClock
) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    run = await play(runner, build_timeline("stream", shipped))
    assert runner.cancel(run.id) is run
    assert run.state is RunState.FINISHED


async def test_a_delivery_that_raises_fails_the_run(shipped: Catalog, clock: VirtualClock) -> None:
    def explode(count: int) -> None:
        if count == 2:
            raise RuntimeError("the wire is cut")

    delivery = FakeDelivery(clock, on_send=explode)
    run = await play(Runner(delivery, clock), build_timeline("messages", shipped))
    assert run.state is RunState.FAILED
    assert run.error == "RuntimeError: the wire is cut"
    assert run.sent == 1
    assert run.summary()["error"] == "RuntimeError: the wire is cut"
    assert run.summary()["state"] == "failed"


async def test_several_runs_at_once(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    first = runner.start(build_timeline("messages", shipped))
    second = runner.start(build_timeline("stream", shipped))
    third = runner.start(build_timeline("all", shipped), speed=0)
    assert first.id != second.id != third.id != first.id
    assert {run.id for run in runner.active} == {first.id, second.id, third.id}
    await asyncio.gather(first.wait(), second.wait(), third.wait())
    assert [run.state for run in (first, second, third)] == [RunState.FINISHED] * 3
    assert [run.sent for run in (first, second, third)] == [4, 4, 8]
    assert len(delivery.sent) == 16
    messages = [f for f in delivery.frames if "message_type" in f]
    assert len(messages) == 8
    assert runner.active == []
    assert {run.id for run in runner.runs()} == {first.id, second.id, third.id}


async def test_get_unknown_run(clock: VirtualClock) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    with pytest.raises(RunNotFound) as caught:
        runner.get("nope")
    assert caught.value.run_id == "nope"
    assert "'nope'" in str(caught.value)
    with pytest.raises(RunNotFound):
        runner.cancel("nope")


async def test_finished_runs_beyond_keep_finished_are_forgotten(
    shipped: Catalog, clock: VirtualClock
) -> None:
    runner = Runner(FakeDelivery(clock), clock, keep_finished=2)
    line = build_timeline("stream", shipped)
    runs = [await play(runner, line) for _ in range(3)]
    with pytest.raises(RunNotFound):
        runner.get(runs[0].id)
    assert runner.get(runs[1].id) is runs[1]
    assert runner.get(runs[2].id) is runs[2]
    assert len(runner.runs()) == 2


async def test_running_runs_are_kept_whatever_keep_finished_says(
    shipped: Catalog,
) -> None:
    clock = HoldingClock(hold_from=0.1)
    runner = Runner(FakeDelivery(clock), clock, keep_finished=1)
    runs = [runner.start(build_timeline("messages", shipped)) for _ in range(3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert all(runner.get(run.id) is run for run in runs)
    await runner.shutdown()
    assert all(run.state is RunState.CANCELLED for run in runs)
    assert len(runner.runs()) == 1


async def test_shutdown_cancels_every_active_run(shipped: Catalog) -> None:
    clock = HoldingClock(hold_from=1.0)
    runner = Runner(FakeDelivery(clock), clock)
    first = runner.start(build_timeline("messages", shipped))
    second = runner.start(build_timeline("all", shipped))
    await asyncio.wait_for(clock.holding.wait(), timeout=5)
    await asyncio.wait_for(runner.shutdown(), timeout=5)
    assert first.state is RunState.CANCELLED
    assert second.state is RunState.CANCELLED
    assert runner.active == []


# --- counting -------------------------------------------------------------------------------


async def test_clients_is_the_sum_over_endpoints_of_the_best_frame(clock: VirtualClock) -> None:
    reach = iter([2, 5, 3, 1, 4, 0])

    def clients(endpoint: Endpoint, frame: str) -> int:
        return next(reach)

    line = Timeline(
        "mixed",
        (
            Cue(0.0, Endpoint.MESSAGES, "m0", "mixed", 0),
            Cue(0.1, Endpoint.MESSAGES, "m1", "mixed", 1),
            Cue(0.2, Endpoint.MESSAGES, "m2", "mixed", 2),
            Cue(0.3, Endpoint.STREAM, "s0", "mixed", 3),
            Cue(0.4, Endpoint.STREAM, "s1", "mixed", 4),
            Cue(0.5, Endpoint.STREAM, "s2", "mixed", 5),
        ),
        0.5,
    )
    run = await play(Runner(FakeDelivery(clock, clients), clock), line)
    assert run.clients == 5 + 4
    assert run.peaks == {Endpoint.MESSAGES: 5, Endpoint.STREAM: 4}
    assert run.deliveries == 2 + 5 + 3 + 1 + 4 + 0
    assert run.sent == 6


async def test_no_clients(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 0, Endpoint.STREAM: 0})
    run = await play(Runner(delivery, clock), build_timeline("all", shipped))
    assert (run.sent, run.deliveries, run.clients) == (8, 0, 0)
    assert run.state is RunState.FINISHED


async def test_summary(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 2, Endpoint.STREAM: 3})
    run = await play(Runner(delivery, clock), build_timeline("all", shipped))
    summary = run.summary()
    assert summary["run_id"] == run.id
    assert summary["scenario"] == "all"
    assert summary["state"] == "finished"
    assert summary["speed"] == 1.0
    assert summary["frames"] == 8
    assert summary["sent"] == 8
    assert summary["deliveries"] == 4 * 2 + 4 * 3
    assert summary["clients"] == 5
    assert summary["planned_s"] == pytest.approx(2.6)
    assert summary["duration_s"] == pytest.approx(2.6)
    assert summary["max_lateness_s"] == pytest.approx(0.0)
    assert summary["error"] is None
    assert summary["ended_at"] >= summary["started_at"]


# --- following ------------------------------------------------------------------------------


async def collect(run: Run) -> list[dict[str, Any]]:
    return [event async for event in run.follow()]


async def test_follow_yields_frame_events_then_an_end_event(
    shipped: Catalog, clock: VirtualClock
) -> None:
    runner = Runner(FakeDelivery(clock, {Endpoint.MESSAGES: 3, Endpoint.STREAM: 1}), clock)
    line = build_timeline("all", shipped)
    run = runner.start(line)
    events = await asyncio.wait_for(collect(run), timeout=5)
    frames, end = events[:-1], events[-1]
    assert [event["event"] for event in frames] == ["frame"] * 8
    assert [event["index"] for event in frames] == list(range(8))
    assert [event["frame"] for event in frames] == [cue.frame for cue in line]
    assert [event["endpoint"] for event in frames] == ["/ws"] * 4 + ["/ws/stream"] * 4
    assert [event["offset"] for event in frames] == pytest.approx([cue.offset for cue in line])
    assert [event["clients"] for event in frames] == [3] * 4 + [1] * 4
    assert all(event["run_id"] == run.id for event in events)
    assert end["event"] == "end"
    assert end["state"] == "finished"
    assert end["sent"] == 8
    assert end["clients"] == 4


async def test_several_followers_see_the_same_events(shipped: Catalog, clock: VirtualClock) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    run = runner.start(build_timeline("stream", shipped))
    first, second = await asyncio.wait_for(asyncio.gather(collect(run), collect(run)), timeout=5)
    assert first == second
    assert len(first) == 5


async def test_following_a_finished_run_gives_just_the_end(
    shipped: Catalog, clock: VirtualClock
) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    run = await play(runner, build_timeline("stream", shipped))
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert [event["event"] for event in events] == ["end"]
    assert events[0]["state"] == "finished"
    assert events[0]["run_id"] == run.id


async def test_following_a_failed_run_ends_with_the_error(
    shipped: Catalog, clock: VirtualClock
) -> None:
    def explode(count: int) -> None:
        raise OSError("gone")

    run = Runner(FakeDelivery(clock, on_send=explode), clock).start(
        build_timeline("messages", shipped)
    )
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert [event["event"] for event in events] == ["end"]
    assert events[0]["state"] == "failed"
    assert events[0]["error"] == "OSError: gone"


async def test_a_follower_that_never_reads_is_cut_off_without_blocking_the_run(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    monkeypatch.setattr(replay.runner, "FOLLOWER_BACKLOG", 3)
    delivery = FakeDelivery(clock)
    run = Runner(delivery, clock).start(chunks(*[i / 10 for i in range(20)]))
    idle = run.follow()  # registered, never read while the run plays
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED
    assert run.sent == 20
    assert len(delivery.sent) == 20
    events = await asyncio.wait_for(_drain(idle), timeout=5)
    assert [event["event"] for event in events] == ["frame", "frame", "frame", "lagged"]
    assert [event["index"] for event in events[:3]] == [0, 1, 2]
    assert events[-1] == {"event": "lagged", "run_id": run.id}


async def _drain(events: Any) -> list[dict[str, Any]]:
    return [event async for event in events]


async def test_a_slow_follower_within_the_backlog_sees_everything(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    monkeypatch.setattr(replay.runner, "FOLLOWER_BACKLOG", 50)
    run = Runner(FakeDelivery(clock), clock).start(chunks(*[i / 10 for i in range(20)]))
    idle = run.follow()
    await run.wait()
    events = await asyncio.wait_for(_drain(idle), timeout=5)
    assert [event["event"] for event in events] == ["frame"] * 20 + ["end"]


async def test_a_follower_gets_heartbeats_while_the_run_is_silent() -> None:
    clock = HoldingClock(hold_from=5.0)  # the pause before the second chunk never ends
    runner = Runner(FakeDelivery(clock), clock)
    run = runner.start(chunks(0.0, 5.0))
    events = run.follow(heartbeat=0.01)
    assert (await anext(events))["event"] == "frame"
    assert await anext(events) == {"event": "heartbeat", "run_id": run.id}
    runner.cancel(run.id)
    kinds = [event["event"] async for event in events]
    assert kinds[-1] == "end"
    assert set(kinds[:-1]) <= {"heartbeat"}
