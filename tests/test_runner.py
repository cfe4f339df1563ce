"""The runner: scenarios' scripts driven against a virtual or manual clock, into a fake delivery.

VirtualClock jumps to every deadline at once (one run at a time, or counts only);
ManualClock moves only when a test advances it, for runs that wait for clients and for
parallel branches that must interleave by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import textwrap
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import pytest

import replay.mailbox
import replay.planning
import replay.runner
import replay.scenario
import replay.timeline
from replay.catalog import Catalog
from replay.clock import Clock, ManualClock, VirtualClock
from replay.direct import framed
from replay.engine import Context
from replay.errors import RunControlRefused, RunNotFound, TooManyRuns, VariablesInvalid
from replay.feed import Feed
from replay.library import ScenarioLibrary
from replay.loader import parse_scenario
from replay.managers import LocalDelivery, StreamManager, WebsocketManager
from replay.matching import ClientFrame
from replay.protocol import CLOSE_FRAME, Endpoint, StreamType, chunk_frame, message_frame
from replay.runner import Run, Runner, RunState
from replay.state import State
from replay.timeline import Timeline, build_timeline
from replay.tokens import split_tokens
from tests.fakes import FakeProtocol, FakeWebSocket, direct

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"
START = 1000.0

SUMMARY_KEYS = {
    "run_id",
    "mailbox",
    "scenario",
    "state",
    "started_by",
    "speed",
    "paused",
    "paused_s",
    "frames_exact",
    "expects",
    "seed",
    "vars",
    "client",
    "sender",
    "frames",
    "sent",
    "deliveries",
    "clients",
    "waiting",
    "step",
    "planned_s",
    "duration_s",
    "max_lateness_s",
    "started_at",
    "ended_at",
    "error",
}


# --- fakes and helpers ----------------------------------------------------------------------


class Sent(NamedTuple):
    at: float
    endpoint: Endpoint
    frame: str | bytes
    to: str | None


class HungUp(NamedTuple):
    at: float
    endpoint: Endpoint
    to: str | None
    code: int
    reason: str
    abort: bool


class FakeDelivery:
    """Records every send and hangup with the clock's time; reaches ``clients`` clients."""

    def __init__(
        self,
        clock: Clock,
        clients: Mapping[Endpoint, int] | Callable[[Endpoint, str | bytes], int] | None = None,
        on_send: Callable[[int], None] | None = None,
    ) -> None:
        self.clock = clock
        self.clients = clients if clients is not None else {}
        self.on_send = on_send
        self.sent: list[Sent] = []
        self.hangups: list[HungUp] = []

    def send(self, endpoint: Endpoint, frame: str | bytes, to: str | None = None) -> int:
        self.sent.append(Sent(self.clock.now(), endpoint, frame, to))
        if self.on_send is not None:
            self.on_send(len(self.sent))
        if callable(self.clients):
            return self.clients(endpoint, frame)
        return self.clients.get(endpoint, 1)

    def hangup(
        self, endpoint: Endpoint, to: str | None, code: int, reason: str, abort: bool
    ) -> int:
        self.hangups.append(HungUp(self.clock.now(), endpoint, to, code, reason, abort))
        return 0 if callable(self.clients) else self.clients.get(endpoint, 1)

    @property
    def times(self) -> list[float]:
        return [sent.at for sent in self.sent]

    @property
    def frames(self) -> list[str | bytes]:
        return [sent.frame for sent in self.sent]

    @property
    def targets(self) -> list[str | None]:
        return [sent.to for sent in self.sent]


def scenarios(sources: Mapping[str, str]) -> Catalog:
    """A catalog of ``{name: yaml}``; every scenario must be valid."""
    result = Catalog.resolve(
        parse_scenario(textwrap.dedent(text), f"scenarios/{name}.yaml")
        for name, text in sources.items()
    )
    for loaded in result:
        assert loaded.valid, [str(problem) for problem in loaded.problems]
    return result


def chunks_yaml(count: int, delay: float) -> str:
    return f"delay: {delay}\nsteps:\n" + "".join(f"  - chunk: c{i}\n" for i in range(count))


def msg(kind: str, text: str) -> str:
    return message_frame(kind, text)


def chat(client: str, text: str) -> ClientFrame:
    return ClientFrame(client, message_frame("CHAT_INPUT", text))


#: Each run's plan as it was when the run started (a finished run keeps only its counts).
PLANS: dict[str, Any] = {}


async def play(runner: Runner, name: str, catalog: Catalog, **options: Any) -> Run:
    run = runner.start(name, catalog, **options)
    PLANS[run.id] = catalog
    return await asyncio.wait_for(run.wait(), timeout=5)


def plan_of(run: Run) -> Any:
    """``run`` played on paper, cues and all (a run keeps only its plan's counts)."""
    return paper(run, PLANS[run.id])


def paper(run: Run, catalog: Catalog) -> Any:
    context = Context(run.id, run.seed, run.speed, 0.0, run.vars, run.client, run.sender)
    return build_timeline(run.scenario, catalog, context)


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(50):
        await asyncio.sleep(0)


async def advance(clock: ManualClock, seconds: float, step: float = 0.25) -> None:
    """Move a manual clock forward in small steps, so sleepers wake in deadline order."""
    await settle()
    target = clock.now() + seconds
    while clock.now() < target - 1e-9:
        await clock.advance(min(step, target - clock.now()))
        await settle()


async def run_out(clock: ManualClock, run: Run, limit: float = 60.0, step: float = 0.25) -> None:
    """Advance a manual clock until the run ends (failing after ``limit`` seconds)."""
    end = clock.now() + limit
    await settle()
    while not run.done:
        assert clock.now() < end, f"run still {run.state} after {limit}s: {run.summary()}"
        await clock.advance(step)
        await settle()


@contextlib.contextmanager
def no_hang(seconds: float) -> Iterator[None]:
    """Fail instead of hanging, even in a loop that never yields to the event loop."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


async def collect(run: Run, heartbeat: float | None = None) -> list[dict[str, Any]]:
    return [event async for event in run.follow(heartbeat)]


async def drain(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["event"] for event in events]


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return ScenarioLibrary(SHIPPED).catalog()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(start=START)


@pytest.fixture
def manual() -> ManualClock:
    return ManualClock(start=START)


# --- timing ---------------------------------------------------------------------------------


async def test_frames_go_out_at_start_plus_offset(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "all", shipped)
    assert plan_of(run) is not None
    assert delivery.times == pytest.approx([START + cue.offset for cue in plan_of(run)])
    assert delivery.times == pytest.approx(
        [1000.0, 1000.5, 1001.0, 1001.5, 1002.0, 1002.2, 1002.4, 1002.6]
    )
    assert [(s.endpoint, s.frame) for s in delivery.sent] == [
        (cue.endpoint, cue.frame) for cue in plan_of(run)
    ]
    assert delivery.targets == [None] * 8
    assert run.state is RunState.FINISHED
    assert run.sent == 8
    assert run.error is None
    assert run.done


async def test_run_ends_after_the_trailing_pause(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "messages", shipped)  # last at 1.5, ends at 2.0
    assert delivery.times[-1] == pytest.approx(1001.5)
    assert clock.now() == pytest.approx(1002.0)
    assert run.elapsed == pytest.approx(2.0)
    assert run.state is RunState.FINISHED
    assert run.ended_at is not None


async def test_trailing_sleep_is_waited_for(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "tail": """
                steps:
                  - chunk: c0
                    delay: 1
                  - chunk: c1
                  - sleep: 4
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "tail", catalog)
    assert delivery.times == pytest.approx([1000.0, 1001.0])
    assert clock.now() == pytest.approx(1005.0)
    assert run.elapsed == pytest.approx(5.0)
    assert run.summary()["planned_s"] == pytest.approx(5.0)


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
    run = await play(Runner(delivery, clock), "messages", shipped, speed=speed)
    assert delivery.times == pytest.approx([START + t for t in times])
    assert run.elapsed == pytest.approx(elapsed)
    assert run.speed == speed
    assert run.summary()["speed"] == speed
    assert run.summary()["planned_s"] == pytest.approx(elapsed)
    assert run.sent == 4


@pytest.mark.parametrize("speed", [-1.0, 1001.0, math.inf, math.nan])
async def test_invalid_speed_starts_no_run(
    shipped: Catalog, clock: VirtualClock, speed: float
) -> None:
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    with pytest.raises(ValueError, match="speed"):
        runner.start("messages", shipped, speed=speed)
    assert runner.runs() == []
    assert runner.active == []
    await settle()
    assert delivery.sent == []


async def test_deadlines_are_absolute_when_sends_take_time(
    shipped: Catalog, clock: VirtualClock
) -> None:
    delivery = FakeDelivery(clock, on_send=lambda _: clock.advance(0.3))
    run = await play(Runner(delivery, clock), "messages", shipped)
    # start + offset, not offset + 0.3 s per earlier send
    assert delivery.times == pytest.approx([1000.0, 1000.5, 1001.0, 1001.5])
    assert run.elapsed == pytest.approx(2.0)
    assert run.max_lateness == pytest.approx(0.0)


async def test_sends_slower_than_the_pauses_catch_up_without_drift(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "slow": """
                delay: 0.5
                steps:
                  - chunk: c0
                  - chunk: c1
                  - chunk: c2
                  - chunk: c3
                    delay: 3.5
                  - chunk: c4
                    delay: 0
            """
        }
    )
    delivery = FakeDelivery(clock, on_send=lambda _: clock.advance(0.7))
    run = await play(Runner(delivery, clock), "slow", catalog)
    # late frames go out at once; once time is available again, the schedule holds
    assert delivery.times == pytest.approx([1000.0, 1000.7, 1001.4, 1002.1, 1005.0])
    assert run.max_lateness == pytest.approx(0.6)
    assert run.summary()["max_lateness_s"] == pytest.approx(0.6)
    assert run.elapsed == pytest.approx(5.7)


async def test_the_clock_is_asked_for_each_deadline(shipped: Catalog, clock: VirtualClock) -> None:
    await play(Runner(FakeDelivery(clock), clock), "stream", shipped)
    # the first frame is due at once; then one sleep per later frame (the run ends with
    # the last one: no trailing pause to sleep for)
    assert clock.sleeps == pytest.approx([1000.2, 1000.4, 1000.6])


# --- outcomes -------------------------------------------------------------------------------


async def test_cancel_from_outside_keeps_the_partial_count(
    shipped: Catalog, manual: ManualClock
) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("messages", shipped)
    await advance(manual, 0.75)
    assert not run.done
    assert runner.active == [run]
    assert runner.cancel(run.id) is run
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert run.sent == 2
    assert len(delivery.sent) == 2
    assert run.elapsed == pytest.approx(0.75)
    assert runner.active == []
    assert runner.get(run.id) is run
    await advance(manual, 5)
    assert len(delivery.sent) == 2


async def test_cancel_during_a_send(shipped: Catalog, clock: VirtualClock) -> None:
    runner: Runner
    run: Run

    def cancel_after_third(count: int) -> None:
        if count == 3:
            runner.cancel(run.id)

    delivery = FakeDelivery(clock, on_send=cancel_after_third)
    runner = Runner(delivery, clock)
    run = runner.start("all", shipped)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert run.sent == 3
    assert len(delivery.sent) == 3
    assert run.summary()["state"] == "cancelled"


async def test_cancel_right_after_start(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    run = runner.start("messages", shipped)
    runner.cancel(run.id)  # in the same turn of the loop, before the run got going
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert run.sent == 0
    assert delivery.sent == []
    assert runner.active == []


async def test_shutdown_right_after_start(shipped: Catalog, clock: VirtualClock) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    run = runner.start("messages", shipped)
    async with asyncio.timeout(1):  # in this task: shutdown cancels before the run starts
        await runner.shutdown()
    assert run.state is RunState.CANCELLED


async def test_cancelling_a_finished_run_changes_nothing(
    shipped: Catalog, clock: VirtualClock
) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    run = await play(runner, "stream", shipped)
    ended_at = run.ended_at
    assert runner.cancel(run.id) is run
    await settle()
    assert run.state is RunState.FINISHED
    assert run.ended_at == ended_at


async def test_a_delivery_that_raises_fails_the_run(shipped: Catalog, clock: VirtualClock) -> None:
    def explode(count: int) -> None:
        if count == 2:
            raise RuntimeError("the wire is cut")

    delivery = FakeDelivery(clock, on_send=explode)
    runner = Runner(delivery, clock)
    run = await play(runner, "messages", shipped)
    assert run.state is RunState.FAILED
    assert run.error == "RuntimeError: the wire is cut"
    assert run.sent == 1
    assert len(delivery.sent) == 2
    assert run.summary()["error"] == "RuntimeError: the wire is cut"
    assert run.summary()["state"] == "failed"
    assert runner.active == []


async def test_several_runs_at_once(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    first = runner.start("messages", shipped)
    second = runner.start("stream", shipped)
    third = runner.start("all", shipped, speed=0)
    assert len({first.id, second.id, third.id}) == 3
    assert {run.id for run in runner.active} == {first.id, second.id, third.id}
    await asyncio.wait_for(asyncio.gather(first.wait(), second.wait(), third.wait()), timeout=5)
    assert [run.state for run in (first, second, third)] == [RunState.FINISHED] * 3
    assert [run.sent for run in (first, second, third)] == [4, 4, 8]
    assert len(delivery.sent) == 16
    messages = [f for f in delivery.frames if isinstance(f, str) and "message_type" in f]
    assert len(messages) == 8
    assert runner.active == []
    assert {run.id for run in runner.runs()} == {first.id, second.id, third.id}


async def test_several_runs_interleave_on_one_clock(shipped: Catalog, manual: ManualClock) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    first = runner.start("messages", shipped)
    second = runner.start("stream", shipped)
    await asyncio.wait_for(run_out(manual, first, step=0.1), timeout=5)
    assert second.done
    assert delivery.times == sorted(delivery.times)
    assert delivery.times == pytest.approx(
        [1000.0, 1000.0, 1000.2, 1000.4, 1000.5, 1000.6, 1001.0, 1001.5]
    )


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
    runs = [await play(runner, "stream", shipped) for _ in range(3)]
    with pytest.raises(RunNotFound):
        runner.get(runs[0].id)
    assert runner.get(runs[1].id) is runs[1]
    assert runner.get(runs[2].id) is runs[2]
    assert len(runner.runs()) == 2


async def test_running_runs_are_kept_whatever_keep_finished_says(
    shipped: Catalog, manual: ManualClock
) -> None:
    runner = Runner(FakeDelivery(manual), manual, keep_finished=1)
    runs = [runner.start("messages", shipped) for _ in range(3)]
    await settle()
    assert all(runner.get(run.id) is run for run in runs)
    assert len(runner.runs()) == 3
    await asyncio.wait_for(runner.shutdown(), timeout=5)
    assert all(run.state is RunState.CANCELLED for run in runs)
    assert len(runner.runs()) == 1


async def test_shutdown_cancels_every_active_run(shipped: Catalog, manual: ManualClock) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    first = runner.start("messages", shipped)
    second = runner.start("all", shipped)
    await advance(manual, 0.5)
    await asyncio.wait_for(runner.shutdown(), timeout=5)
    assert first.state is RunState.CANCELLED
    assert second.state is RunState.CANCELLED
    assert runner.active == []
    sent = len(delivery.sent)
    await advance(manual, 5)
    assert len(delivery.sent) == sent


async def test_admit_refuses_what_start_would_and_start_takes_a_given_run_id(
    shipped: Catalog, manual: ManualClock
) -> None:
    runner = Runner(FakeDelivery(manual), manual, max_active=1)
    runner.admit()  # room: nothing raised, nothing counted
    run = runner.start("messages", shipped, run_id="cluster-run-1")
    assert runner.get("cluster-run-1") is run
    with pytest.raises(TooManyRuns) as caught:
        runner.admit()
    assert (caught.value.share, runner.refused["trigger"]) == ("trigger", 1)
    await asyncio.wait_for(runner.shutdown(), timeout=5)


async def test_too_many_runs(shipped: Catalog, manual: ManualClock) -> None:
    runner = Runner(FakeDelivery(manual), manual, max_active=2)
    first = runner.start("messages", shipped)
    runner.start("messages", shipped)
    with pytest.raises(TooManyRuns) as caught:
        runner.start("stream", shipped)
    assert caught.value.limit == 2
    assert len(runner.active) == 2
    assert len(runner.runs()) == 2
    await settle()
    runner.cancel(first.id)
    await asyncio.wait_for(first.wait(), timeout=5)
    third = runner.start("stream", shipped)  # room again
    assert len(runner.active) == 2
    await asyncio.wait_for(runner.shutdown(), timeout=5)
    assert third.state is RunState.CANCELLED


# --- counting -------------------------------------------------------------------------------


async def test_clients_is_the_sum_over_endpoints_of_the_best_frame(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "mixed": """
                delay: 0.1
                steps:
                  - raw: m0
                  - raw: m1
                  - raw: m2
                  - chunk: s0
                  - chunk: s1
                  - chunk: s2
            """
        }
    )
    reach = iter([2, 5, 3, 1, 4, 0])
    run = await play(
        Runner(FakeDelivery(clock, lambda endpoint, frame: next(reach)), clock), "mixed", catalog
    )
    assert run.clients == 5 + 4
    assert run.peaks == {Endpoint.MESSAGES: 5, Endpoint.STREAM: 4}
    assert run.deliveries == 2 + 5 + 3 + 1 + 4 + 0
    assert run.sent == 6


async def test_no_clients(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 0, Endpoint.STREAM: 0})
    run = await play(Runner(delivery, clock), "all", shipped)
    assert (run.sent, run.deliveries, run.clients) == (8, 0, 0)
    assert run.state is RunState.FINISHED


async def test_summary(shipped: Catalog, clock: VirtualClock) -> None:
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 2, Endpoint.STREAM: 3})
    run = await play(Runner(delivery, clock), "all", shipped, seed=42)
    summary = run.summary()
    assert set(summary) == SUMMARY_KEYS
    assert summary["run_id"] == run.id
    assert summary["scenario"] == "all"
    assert summary["state"] == "finished"
    assert summary["started_by"] == "trigger"
    assert summary["speed"] == 1.0
    assert summary["seed"] == 42
    assert summary["vars"] == {}
    assert summary["client"] is None
    assert summary["sender"] is None
    assert summary["frames"] == 8
    assert summary["sent"] == 8
    assert summary["deliveries"] == 4 * 2 + 4 * 3
    assert summary["clients"] == 5
    assert summary["waiting"] is None
    assert summary["planned_s"] == pytest.approx(2.6)
    assert summary["duration_s"] == pytest.approx(2.6)
    assert summary["max_lateness_s"] == pytest.approx(0.0)
    assert summary["error"] is None
    assert summary["ended_at"] >= summary["started_at"]


async def test_summary_of_a_run_a_client_started(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "echo": """
                vars: {prefix: "you said"}
                steps:
                  - message: EVENT
                    text: "{{ vars.prefix }} {{ received.message }} ({{ sender }})"
                    to: sender
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = await play(
        Runner(delivery, clock),
        "echo",
        catalog,
        sender="x",
        received=chat("x", "hello"),
        started_by="reaction",
        vars={"prefix": "echo:"},
    )
    assert delivery.sent == [Sent(START, Endpoint.MESSAGES, msg("EVENT", "echo: hello (x)"), "x")]
    assert (run.sender, run.client, run.started_by) == ("x", None, "reaction")
    assert run.vars == {"prefix": "echo:"}
    summary = run.summary()
    assert summary["started_by"] == "reaction"
    assert summary["sender"] == "x"
    assert summary["vars"] == {"prefix": "echo:"}


# --- following ------------------------------------------------------------------------------


async def test_an_eager_run_plays_the_same_frames_and_a_prompt_follower_misses_none(
    shipped: Catalog, clock: VirtualClock
) -> None:
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 3, Endpoint.STREAM: 1})
    runner = Runner(delivery, clock)
    run = runner.start("all", shipped, speed=0, seed=7, eager=True)
    events = run.follow()  # before anything awaits
    got = await asyncio.wait_for(drain(events), timeout=5)
    eager = [(s.endpoint, s.frame) for s in delivery.sent]
    delivery.sent.clear()
    again = runner.start("all", shipped, speed=0, seed=7)
    await asyncio.wait_for(again.wait(), timeout=5)
    assert eager == [(s.endpoint, s.frame) for s in delivery.sent]
    assert len(eager) == 8
    assert [e["frame"] for e in got if e["event"] == "frame"] == [frame for _, frame in eager]
    assert got[-1]["event"] == "end"


async def test_follow_yields_frame_events_then_an_end_event(
    shipped: Catalog, clock: VirtualClock
) -> None:
    runner = Runner(FakeDelivery(clock, {Endpoint.MESSAGES: 3, Endpoint.STREAM: 1}), clock)
    run = runner.start("all", shipped)
    plan = paper(run, shipped)
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert plan is not None
    assert run.plan is not None
    assert run.plan.cues == ()  # a finished run keeps only the counts
    assert run.plan.frames == 8
    frames, end = events[:-1], events[-1]
    assert kinds(frames) == ["frame"] * 8
    assert [event["index"] for event in frames] == list(range(8))
    assert [event["frame"] for event in frames] == [cue.frame for cue in plan]
    assert [event["endpoint"] for event in frames] == ["/ws"] * 4 + ["/ws/stream"] * 4
    assert [event["offset"] for event in frames] == pytest.approx([cue.offset for cue in plan])
    assert [event["clients"] for event in frames] == [3] * 4 + [1] * 4
    assert [event["to"] for event in frames] == [None] * 8
    assert [event["binary"] for event in frames] == [False] * 8
    assert [event["step"] for event in frames] == ["0", "1", "2", "3"] * 2
    assert all(event["run_id"] == run.id for event in events)
    assert end["event"] == "end"
    assert end["state"] == "finished"
    assert end["sent"] == 8
    assert end["clients"] == 4
    assert set(end) == SUMMARY_KEYS | {"event"}


async def test_binary_frames_are_sent_as_bytes_and_followed_as_hex(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "bin": """
                steps:
                  - binary: AAEC/w==
                    endpoint: /ws/stream
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = Runner(delivery, clock).start("bin", catalog)
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert delivery.sent == [Sent(START, Endpoint.STREAM, b"\x00\x01\x02\xff", None)]
    assert events[0]["binary"] is True
    assert events[0]["frame"] == "000102ff"
    assert events[0]["endpoint"] == "/ws/stream"
    assert kinds(events) == ["frame", "end"]


async def test_several_followers_see_the_same_events(shipped: Catalog, clock: VirtualClock) -> None:
    run = Runner(FakeDelivery(clock), clock).start("stream", shipped)
    first, second = await asyncio.wait_for(asyncio.gather(collect(run), collect(run)), timeout=5)
    assert first == second
    assert kinds(first) == ["frame"] * 4 + ["end"]


async def test_following_a_finished_run_gives_just_the_end(
    shipped: Catalog, clock: VirtualClock
) -> None:
    run = await play(Runner(FakeDelivery(clock), clock), "stream", shipped)
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert kinds(events) == ["end"]
    assert events[0]["state"] == "finished"
    assert events[0]["run_id"] == run.id


async def test_following_a_failed_run_ends_with_the_error(
    shipped: Catalog, clock: VirtualClock
) -> None:
    def explode(count: int) -> None:
        raise OSError("gone")

    run = Runner(FakeDelivery(clock, on_send=explode), clock).start("messages", shipped)
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert kinds(events) == ["end"]
    assert events[0]["state"] == "failed"
    assert events[0]["error"] == "OSError: gone"


async def test_a_follower_that_never_reads_is_cut_off_without_blocking_the_run(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    monkeypatch.setattr(replay.runner, "FOLLOWER_BACKLOG", 3)
    catalog = scenarios({"many": chunks_yaml(20, 0.1)})
    delivery = FakeDelivery(clock)
    run = Runner(delivery, clock).start("many", catalog)
    idle = run.follow()  # registered, never read while the run plays
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED
    assert run.sent == 20
    assert len(delivery.sent) == 20
    events = await asyncio.wait_for(drain(idle), timeout=5)
    assert kinds(events) == ["frame", "frame", "frame", "lagged"]
    assert [event["index"] for event in events[:3]] == [0, 1, 2]
    assert events[-1] == {"event": "lagged", "run_id": run.id}


async def test_a_stalled_follower_of_big_frames_holds_no_more_than_its_bytes(
    clock: VirtualClock,
) -> None:
    big = "x" * 1_000_000  # about as large as a template may render
    frames = 40  # far fewer than FOLLOWER_BACKLOG events: only bytes can bound them
    source = """
        vars:
          big: ""
        steps:
          - repeat: 40
            steps:
              - raw: "{{ vars.big }}"
                delay: 0.1
    """
    held: list[int] = []
    delivery = FakeDelivery(clock, on_send=lambda _: held.append(follower.held))
    run = Runner(delivery, clock).start("big", scenarios({"big": source}), vars={"big": big})
    idle = run.follow()  # registered, never read while the run plays
    [follower] = run._followers
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.sent == frames
    assert max(held) <= replay.runner.FOLLOWER_BACKLOG_BYTES
    events = await asyncio.wait_for(drain(idle), timeout=5)
    assert kinds(events)[-1] == "lagged"
    kept = [event for event in events if event["event"] == "frame"]
    assert 0 < len(kept) < frames
    assert [event["index"] for event in kept] == list(range(len(kept)))
    assert follower.held == 0  # what was read is no longer counted


async def test_a_slow_follower_within_the_backlog_sees_everything(
    monkeypatch: pytest.MonkeyPatch, clock: VirtualClock
) -> None:
    monkeypatch.setattr(replay.runner, "FOLLOWER_BACKLOG", 50)
    catalog = scenarios({"many": chunks_yaml(20, 0.1)})
    run = Runner(FakeDelivery(clock), clock).start("many", catalog)
    idle = run.follow()
    await asyncio.wait_for(run.wait(), timeout=5)
    events = await asyncio.wait_for(drain(idle), timeout=5)
    assert kinds(events) == ["frame"] * 20 + ["end"]


async def test_a_follower_gets_heartbeats_while_the_run_is_silent(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "gap": """
                steps:
                  - chunk: c0
                    delay: 5
                  - chunk: c1
            """
        }
    )
    runner = Runner(FakeDelivery(manual), manual)
    run = runner.start("gap", catalog)
    events = run.follow(heartbeat=0.01)  # the manual clock never reaches the second chunk
    first = await asyncio.wait_for(anext(events), timeout=5)
    assert first["event"] == "frame"
    assert await asyncio.wait_for(anext(events), timeout=5) == {
        "event": "heartbeat",
        "run_id": run.id,
    }
    runner.cancel(run.id)
    rest = kinds(await asyncio.wait_for(drain(events), timeout=5))
    assert rest[-1] == "end"
    assert set(rest[:-1]) <= {"heartbeat"}
    assert run.state is RunState.CANCELLED


# --- wait -----------------------------------------------------------------------------------

ASK = """
    steps:
      - message: CHAT_REQUESTED
        text: Your name?
      - wait: CHAT_INPUT
        match: "^[A-Z]"
        timeout: 30
      - message: EVENT
        text: "Hello {{ received.message }} from {{ received.client }}"
"""


async def test_a_waiting_run_takes_a_matching_client_frame(manual: ManualClock) -> None:
    catalog = scenarios({"ask": ASK})
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ask", catalog)
    events = run.follow()
    await settle()
    assert delivery.frames == [msg("CHAT_REQUESTED", "Your name?")]
    assert run.waiting == "CHAT_INPUT from any client"
    assert run.summary()["waiting"] == "CHAT_INPUT from any client"

    await advance(manual, 2)
    assert not runner.receive(ClientFrame("b", msg("PAUSE_REQUEST", "Ada")))  # wrong type
    assert not runner.receive(chat("b", "ada"))  # does not match "^[A-Z]"
    assert not runner.receive(ClientFrame("b", "Ada"))  # not JSON
    assert not runner.receive(ClientFrame("b", None))  # binary
    assert run.waiting is not None
    assert len(delivery.sent) == 1

    assert runner.receive(chat("b", "Ada"))
    await settle()
    assert run.waiting is None
    assert delivery.sent[1] == Sent(
        1002.0, Endpoint.MESSAGES, msg("EVENT", "Hello Ada from b"), None
    )
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED
    assert run.elapsed == pytest.approx(2.0)
    assert not runner.receive(chat("b", "Again"))  # nobody waits any more

    seen = await asyncio.wait_for(drain(events), timeout=5)
    assert kinds(seen) == ["frame", "wait", "received", "frame", "end"]
    assert seen[1] == {
        "event": "wait",
        "run_id": run.id,
        "message_type": "CHAT_INPUT",
        "source": None,
        "step": "1",
    }
    assert seen[2] == {
        "event": "received",
        "run_id": run.id,
        "client": "b",
        "frame": msg("CHAT_INPUT", "Ada"),
        "step": "1",
    }
    assert seen[3]["offset"] == pytest.approx(2.0)


async def test_a_run_for_one_client_waits_for_that_client_only(manual: ManualClock) -> None:
    catalog = scenarios({"ask": ASK})
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ask", catalog, client="a")
    events = run.follow()
    await settle()
    assert delivery.targets == ["a"]
    assert run.waiting == "CHAT_INPUT from client a"
    assert not runner.receive(chat("b", "Bob"))
    assert run.waiting is not None
    assert runner.receive(chat("a", "Ada"))
    await asyncio.wait_for(run.wait(), timeout=5)
    assert delivery.sent[1] == Sent(START, Endpoint.MESSAGES, msg("EVENT", "Hello Ada from a"), "a")
    seen = await asyncio.wait_for(drain(events), timeout=5)
    assert seen[1]["event"] == "wait"
    assert seen[1]["source"] == "a"


async def test_a_wait_that_times_out_fails_the_run(manual: ManualClock) -> None:
    catalog = scenarios({"ask": ASK})
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ask", catalog)
    events = run.follow()
    await advance(manual, 29.75)
    assert not run.done
    assert run.waiting is not None
    await advance(manual, 0.25)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert "CHAT_INPUT" in run.error
    assert "on_timeout" in run.error
    assert "30s" in run.error
    assert run.error.startswith("scenario 'ask', step 1:")
    assert run.waiting is None
    assert run.elapsed == pytest.approx(30.0)
    assert len(delivery.sent) == 1
    assert not runner.receive(chat("b", "Ada"))  # too late
    seen = await asyncio.wait_for(drain(events), timeout=5)
    assert kinds(seen) == ["frame", "wait", "timeout", "end"]
    assert seen[2] == {
        "event": "timeout",
        "run_id": run.id,
        "message_type": "CHAT_INPUT",
        "step": "1",
    }
    assert seen[3]["state"] == "failed"


async def test_a_wait_that_times_out_may_continue(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "patient": """
                steps:
                  - message: CHAT_REQUESTED
                    text: anyone?
                  - sleep: 1
                  - wait: CHAT_INPUT
                    timeout: 5
                    on_timeout: continue
                  - message: EVENT
                    text: "nobody: {{ received is none }}"
                    delay: 1
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = Runner(delivery, clock).start("patient", catalog)
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert run.state is RunState.FINISHED
    assert delivery.times == pytest.approx([1000.0, 1006.0])  # wait at 1, timeout 5
    assert delivery.frames[1] == msg("EVENT", "nobody: True")
    assert run.elapsed == pytest.approx(7.0)
    assert kinds(events) == ["frame", "wait", "timeout", "frame", "end"]


async def test_an_answer_before_the_wait_is_kept_and_the_oldest_is_taken(
    manual: ManualClock,
) -> None:
    catalog = scenarios(
        {
            "early": """
                steps:
                  - sleep: 1
                  - message: CHAT_REQUESTED
                    text: go
                    delay: 4
                  - wait: CHAT_INPUT
                    timeout: 10
                  - message: EVENT
                    text: "got {{ received.message }}"
            """
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("early", catalog)
    await advance(manual, 0.5)
    # the runner has not reached the wait yet, but the run's mailbox keeps the answer
    assert run.waiting is None
    assert runner.receive(chat("b", "first"))
    assert not runner.receive(ClientFrame("b", msg("EVENT", "not awaited")))
    await advance(manual, 0.5)
    assert delivery.times == [1001.0]
    assert runner.receive(chat("c", "second"))
    assert run.summary()["mailbox"] == {"kept": 2, "taken": 0, "unread": 2, "dropped": 0}
    # the wait begins when it is due (at 5), takes the oldest kept answer at once, and
    # what follows it is due at 5 too
    await advance(manual, 4)
    await settle()
    assert run.waiting is None
    assert run.summary()["mailbox"]["taken"] == 1
    assert delivery.sent[1] == Sent(1005.0, Endpoint.MESSAGES, msg("EVENT", "got first"), None)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED
    assert run.elapsed == pytest.approx(5.0)
    assert run.summary()["mailbox"] == {"kept": 2, "taken": 1, "unread": 0, "dropped": 0}


ECHO = "steps:\n  - wait: CHAT_INPUT\n  - message: EVENT\n    text: '{{ received.message }}'\n"


async def test_a_waiting_run_takes_an_answer_at_once(manual: ManualClock) -> None:
    catalog = scenarios({"now": ECHO})
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("now", catalog)
    await settle()
    assert run.waiting == "CHAT_INPUT from any client"
    assert runner.receive(chat("b", "hi"))
    await asyncio.wait_for(run.wait(), timeout=5)
    assert delivery.frames == [msg("EVENT", "hi")]
    assert run.summary()["mailbox"] == {"kept": 0, "taken": 1, "unread": 0, "dropped": 0}


async def test_a_targeted_run_keeps_only_its_clients_frames(manual: ManualClock) -> None:
    catalog = scenarios({"ask": ECHO})
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    for_a = runner.start("ask", catalog, client="a")
    for_b = runner.start("ask", catalog, client="b")
    assert runner.receive(chat("b", "from b"))
    assert runner.receive(chat("a", "from a"))
    assert not runner.receive(chat("c", "from nobody's client"))  # free for reactions
    await asyncio.wait_for(asyncio.gather(for_a.wait(), for_b.wait()), timeout=5)
    assert sorted((sent.to, sent.frame) for sent in delivery.sent) == [
        ("a", msg("EVENT", "from a")),
        ("b", msg("EVENT", "from b")),
    ]


async def test_a_full_mailbox_drops_and_counts(
    manual: ManualClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(replay.mailbox, "MAX_FRAMES", 3)
    catalog = scenarios({"slow": "steps:\n  - sleep: 5\n  - wait: CHAT_INPUT\n"})
    runner = Runner(FakeDelivery(manual), manual)
    run = runner.start("slow", catalog)
    with caplog.at_level(logging.WARNING, logger="replay.run"):
        for index in range(5):
            assert runner.receive(chat("b", f"answer {index}"))  # kept or dropped: not free
    assert run.summary()["mailbox"] == {"kept": 3, "taken": 0, "unread": 3, "dropped": 2}
    assert len([r for r in caplog.records if "mailbox is full" in r.getMessage()]) == 1
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.summary()["mailbox"]["unread"] == 0


async def test_a_run_whose_plan_needs_the_real_answer_still_plays(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "form": """
                steps:
                  - wait: CHAT_INPUT
                  - message: EVENT
                    text: "name: {{ received.data.name }}"
            """
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("form", catalog)
    assert run.plan is None  # on paper the answer is empty, so the template cannot render
    assert run.summary()["frames"] is None
    assert run.summary()["planned_s"] is None
    await settle()
    assert runner.receive(chat("b", '{"name": "Ada"}'))
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED, run.error
    assert delivery.frames == [msg("EVENT", "name: Ada")]


async def test_every_waiting_run_takes_the_frame(manual: ManualClock) -> None:
    catalog = scenarios({"ask": ASK})
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    first = runner.start("ask", catalog)
    second = runner.start("ask", catalog)
    await settle()
    assert runner.receive(chat("c", "Cy"))
    await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), timeout=5)
    assert [run.state for run in (first, second)] == [RunState.FINISHED] * 2
    assert delivery.frames.count(msg("EVENT", "Hello Cy from c")) == 2


async def test_the_answering_client_becomes_the_sender(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "reply": """
                steps:
                  - wait: CHAT_INPUT
                  - message: EVENT
                    text: "just for {{ sender }}"
                    to: sender
            """
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("reply", catalog)
    await settle()
    assert runner.receive(chat("z", "hi"))
    await asyncio.wait_for(run.wait(), timeout=5)
    assert delivery.sent == [Sent(START, Endpoint.MESSAGES, msg("EVENT", "just for z"), "z")]


async def test_cancelling_a_waiting_run_stops_listening(manual: ManualClock) -> None:
    catalog = scenarios({"ask": ASK})
    runner = Runner(FakeDelivery(manual), manual)
    run = runner.start("ask", catalog)
    await settle()
    assert run.waiting is not None
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert run.waiting is None
    assert not runner.receive(chat("b", "Ada"))


async def test_a_wait_with_a_catastrophic_pattern_takes_the_frame_after_an_adversarial_one(
    manual: ManualClock,
) -> None:
    # ^(\w+\s?)+$ backtracks for 2^n steps in Python's re on n letters and a "!"
    # (issue 10); replay runs it on RE2, so the 10 kB frame is refused at once.
    catalog = scenarios(
        {
            "names": r"""
                steps:
                  - wait: CHAT_INPUT
                    match: '^(\w+\s?)+$'
                    fields:
                      message: '(a|aa)+$'
                    timeout: 30
                  - message: EVENT
                    text: "{{ received.message | length }} characters"
            """
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("names", catalog)
    await settle()
    assert not runner.receive(chat("b", "a" * 10_000 + "!"))
    assert not runner.receive(chat("b", "word " * 2_000 + "!"))
    assert run.waiting is not None
    assert runner.receive(chat("b", "a" * 9_999 + " aa"))
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED
    assert delivery.frames == [msg("EVENT", "10002 characters")]


# --- parallel -------------------------------------------------------------------------------

LEFT = """
    delay: 1
    steps:
      - chunk: L0
      - chunk: L1
      - chunk: L2
"""


@pytest.mark.parametrize(("tail", "after"), [(0.0, 3.0), (2.0, 4.5)])
async def test_parallel_branches_interleave_and_the_step_lasts_the_longest(
    manual: ManualClock, tail: float, after: float
) -> None:
    catalog = scenarios(
        {
            "left": LEFT,  # 0, 1, 2; ends at 3
            "right": f"""
                delay: 1
                steps:
                  - sleep: 0.5
                  - message: EVENT
                    text: R0
                  - message: EVENT
                    text: R1
                  - sleep: {tail}
            """,  # 0.5, 1.5; ends at 2.5 + tail
            "main": """
                steps:
                  - parallel: [left, right]
                  - message: EVENT
                    text: after
            """,
        }
    )
    delivery = FakeDelivery(manual)
    run = Runner(delivery, manual).start("main", catalog)
    plan = paper(run, catalog)
    await asyncio.wait_for(run_out(manual, run), timeout=5)
    assert run.state is RunState.FINISHED, run.error
    assert delivery.sent == [
        Sent(1000.0, Endpoint.STREAM, chunk_frame("L0"), None),
        Sent(1000.5, Endpoint.MESSAGES, msg("EVENT", "R0"), None),
        Sent(1001.0, Endpoint.STREAM, chunk_frame("L1"), None),
        Sent(1001.5, Endpoint.MESSAGES, msg("EVENT", "R1"), None),
        Sent(1002.0, Endpoint.STREAM, chunk_frame("L2"), None),
        Sent(START + after, Endpoint.MESSAGES, msg("EVENT", "after"), None),
    ]
    assert run.elapsed == pytest.approx(after)
    assert plan is not None
    assert [cue.frame for cue in plan] == delivery.frames


@pytest.mark.parametrize("how", ["step", "delivery"])
async def test_a_failing_branch_fails_the_run_with_its_own_error(
    manual: ManualClock, how: str
) -> None:
    catalog = scenarios(
        {
            "left": LEFT,
            "bad": """
                steps:
                  - message: EVENT
                    text: B0
                    delay: 1.5
                  - wait: CHAT_INPUT
                    timeout: 0.25
            """,
            "main": """
                steps:
                  - parallel: [left, bad]
                  - message: EVENT
                    text: after
            """,
        }
    )

    def cut(count: int) -> None:
        if how == "delivery" and count == 3:  # L0, B0, then L1 at 1
            raise ConnectionError("the wire is cut")

    delivery = FakeDelivery(manual, on_send=cut)
    run = Runner(delivery, manual).start("main", catalog)
    await asyncio.wait_for(run_out(manual, run), timeout=5)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert "ExceptionGroup" not in run.error
    assert "sub-exception" not in run.error
    if how == "step":
        assert run.error.startswith("scenario 'bad', step 1: no CHAT_INPUT frame")
        assert run.elapsed == pytest.approx(1.75)  # the wait starts at 1.5 and lasts 0.25
        assert run.sent == 3
    else:
        assert run.error == "ConnectionError: the wire is cut"
        assert run.elapsed == pytest.approx(1.0)
        assert run.sent == 2
    await advance(manual, 3)
    # the other branch was stopped: no L2 after the failure, and nothing after the fork
    assert delivery.frames == [chunk_frame("L0"), msg("EVENT", "B0"), chunk_frame("L1")]
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_cancelling_a_run_cancels_its_branches(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "left": LEFT,
            "asker": """
                steps:
                  - wait: CHAT_INPUT
                  - message: EVENT
                    text: answered
            """,
            "main": """
                steps:
                  - parallel: [left, asker]
            """,
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("main", catalog)
    await advance(manual, 1)
    assert delivery.frames == [chunk_frame("L0"), chunk_frame("L1")]
    assert run.waiting is not None
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    await settle()
    assert run.state is RunState.CANCELLED
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert not runner.receive(chat("b", "hi"))
    await advance(manual, 5)
    assert delivery.frames == [chunk_frame("L0"), chunk_frame("L1")]


async def test_waiting_stays_set_while_another_branch_still_waits(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "chat": """
                steps:
                  - wait: CHAT_INPUT
            """,
            "pause": """
                steps:
                  - wait: PAUSE_REQUEST
            """,
            "main": """
                steps:
                  - parallel: [chat, pause]
            """,
        }
    )
    runner = Runner(FakeDelivery(manual), manual)
    run = runner.start("main", catalog)
    await settle()
    assert run.waiting is not None
    assert runner.receive(chat("b", "hi"))
    await settle()
    assert run.state is RunState.RUNNING
    assert run.waiting is not None  # the pause branch still waits
    assert "PAUSE_REQUEST" in run.waiting
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)


# --- hangups --------------------------------------------------------------------------------


async def test_disconnect_closes_both_endpoints_with_the_code_and_reason(
    clock: VirtualClock,
) -> None:
    catalog = scenarios(
        {
            "bye": """
                steps:
                  - message: EVENT
                    text: last words
                    delay: 1
                  - disconnect: all
                    code: 4000
                    reason: bye
            """
        }
    )
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 2, Endpoint.STREAM: 3})
    run = Runner(delivery, clock).start("bye", catalog)
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert run.state is RunState.FINISHED
    assert delivery.hangups == [
        HungUp(1001.0, Endpoint.MESSAGES, None, 4000, "bye", False),
        HungUp(1001.0, Endpoint.STREAM, None, 4000, "bye", False),
    ]
    assert run.sent == 1  # a hangup is not a frame
    assert kinds(events) == ["frame", "disconnect", "end"]
    assert events[1] == {
        "event": "disconnect",
        "run_id": run.id,
        "endpoints": ["/ws", "/ws/stream"],
        "to": None,
        "code": 4000,
        "clients": 5,
        "step": "1",
    }


async def test_drop_cuts_the_connections(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "crash": """
                steps:
                  - sleep: 2
                  - drop: /ws
                  - disconnect: /ws/stream
                    to: a
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = Runner(delivery, clock).start("crash", catalog)
    events = await asyncio.wait_for(collect(run), timeout=5)
    assert run.state is RunState.FINISHED
    assert delivery.hangups == [
        HungUp(1002.0, Endpoint.MESSAGES, None, 1011, "connection dropped", True),
        HungUp(1002.0, Endpoint.STREAM, "a", 1000, "", False),
    ]
    assert delivery.sent == []
    assert kinds(events) == ["drop", "disconnect", "end"]
    assert events[0]["endpoints"] == ["/ws"]
    assert events[0]["code"] == 1011
    assert events[1]["to"] == "a"


# --- targeting ------------------------------------------------------------------------------


async def test_to_sender_sends_to_the_sender(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "private": """
                steps:
                  - message: EVENT
                    text: psst
                    to: sender
                  - chunk: public
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "private", catalog, sender="x")
    assert run.state is RunState.FINISHED
    assert delivery.targets == ["x", None]
    assert run.sender == "x"


async def test_the_trigger_client_overrides_the_scenario_target_not_a_step_target(
    clock: VirtualClock,
) -> None:
    catalog = scenarios(
        {
            "aimed": """
                to: c
                steps:
                  - raw: default
                  - raw: everyone
                    to: all
                  - raw: just-d
                    to: d
                  - repeat: 1
                    steps:
                      - raw: in-a-block
            """
        }
    )
    delivery = FakeDelivery(clock)
    await play(Runner(delivery, clock), "aimed", catalog)
    assert delivery.targets == ["c", None, "d", "c"]
    delivery.sent.clear()
    run = await play(Runner(delivery, clock), "aimed", catalog, client="b")
    assert delivery.targets == ["b", None, "d", "b"]
    assert run.client == "b"
    assert run.summary()["client"] == "b"


async def test_to_sender_without_a_sender_fails_the_run(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "private": """
                steps:
                  - chunk: public
                  - message: EVENT
                    text: psst
                    to: sender
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "private", catalog)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert "sender" in run.error
    assert run.error.startswith("scenario 'private', step 1:")
    assert run.sent == 1


# --- seeds ----------------------------------------------------------------------------------

DICE = """
    delay: 1
    jitter: 0.4
    steps:
      - message: EVENT
        text: "{{ randint(1, 1000) }} {{ uuid() }}"
      - message: EVENT
        text: "{{ randint(1, 1000) }} {{ uuid() }}"
      - stream: "one two three four"
        rate: 5
      - message: EVENT
        text: "{{ random() }}"
"""


async def dice(seed: int | None) -> tuple[Run, list[tuple[float, str | bytes]]]:
    clock = VirtualClock(start=START)
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "dice", scenarios({"dice": DICE}), seed=seed)
    assert run.state is RunState.FINISHED, run.error
    return run, [(sent.at - START, sent.frame) for sent in delivery.sent]


async def test_the_same_seed_plays_the_same_run() -> None:
    first_run, first = await dice(7)
    second_run, second = await dice(7)
    assert first_run.id != second_run.id
    assert [frame for _, frame in first] == [frame for _, frame in second]
    assert [at for at, _ in first] == [at for at, _ in second]
    # the jitter moved something off the grid of whole seconds and fifths
    assert any(abs(at * 5 - round(at * 5)) > 1e-6 for at, _ in first)
    # and the plan drew the same values as the run
    assert plan_of(first_run) is not None
    assert [cue.frame for cue in plan_of(first_run)] == [frame for _, frame in first]
    assert [cue.offset for cue in plan_of(first_run)] == pytest.approx([at for at, _ in first])


async def test_different_seeds_play_different_runs() -> None:
    _, first = await dice(7)
    _, second = await dice(8)
    assert [frame for _, frame in first] != [frame for _, frame in second]
    assert [at for at, _ in first] != [at for at, _ in second]


async def test_a_random_seed_is_chosen_and_recorded() -> None:
    run, frames = await dice(None)
    assert isinstance(run.seed, int)
    assert run.summary()["seed"] == run.seed
    _, replayed = await dice(run.seed)
    assert replayed == frames


# --- vars -----------------------------------------------------------------------------------

GREET = """
    vars: {user: Ada}
    steps:
      - message: EVENT
        text: "hello {{ vars.user }}"
"""


async def test_trigger_vars_override_the_defaults(clock: VirtualClock) -> None:
    catalog = scenarios({"greet": GREET})
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    await play(runner, "greet", catalog)
    run = await play(runner, "greet", catalog, vars={"user": "Bob"})
    assert delivery.frames == [msg("EVENT", "hello Ada"), msg("EVENT", "hello Bob")]
    assert run.vars == {"user": "Bob"}
    assert run.summary()["vars"] == {"user": "Bob"}


async def test_vars_reach_the_scenarios_a_run_plays(clock: VirtualClock) -> None:
    catalog = scenarios({"greet": GREET, "outer": "steps:\n  - play: greet\n"})
    delivery = FakeDelivery(clock)
    await play(Runner(delivery, clock), "outer", catalog, vars={"user": "Bob"})
    assert delivery.frames == [msg("EVENT", "hello Bob")]


async def test_an_unknown_var_starts_no_run(clock: VirtualClock) -> None:
    catalog = scenarios({"greet": GREET})
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    with pytest.raises(VariablesInvalid) as caught:
        runner.start("greet", catalog, vars={"usr": "Bob"})
    assert caught.value.unknown == ("usr",)
    assert "'user'" in str(caught.value)  # did you mean
    assert runner.runs() == []
    await settle()
    assert delivery.sent == []


# --- repeat ---------------------------------------------------------------------------------


async def test_repeat_plays_the_block_that_many_times(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "thrice": """
                steps:
                  - repeat: 3
                    steps:
                      - message: EVENT
                        text: "n{{ iteration }}"
                        delay: 1
                      - chunk: c
                  - raw: done
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "thrice", catalog)
    assert delivery.frames == [
        msg("EVENT", "n0"),
        chunk_frame("c"),
        msg("EVENT", "n1"),
        chunk_frame("c"),
        msg("EVENT", "n2"),
        chunk_frame("c"),
        "done",
    ]
    assert delivery.times == pytest.approx([1000, 1001, 1001, 1002, 1002, 1003, 1003])
    assert run.sent == 7


FOREVER = """
    steps:
      - repeat: forever
        steps:
          - message: EVENT
            text: "tick {{ iteration }}"
            delay: 1
"""


async def test_repeat_forever_runs_until_cancelled(clock: VirtualClock) -> None:
    runner: Runner
    run: Run

    def stop_at_five(count: int) -> None:
        if count == 5:
            runner.cancel(run.id)

    delivery = FakeDelivery(clock, on_send=stop_at_five)
    runner = Runner(delivery, clock)
    with no_hang(10):
        run = runner.start("forever", scenarios({"forever": FOREVER}))
        await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert run.sent == 5
    assert delivery.frames == [msg("EVENT", f"tick {i}") for i in range(5)]
    assert delivery.times == pytest.approx([1000, 1001, 1002, 1003, 1004])
    assert run.summary()["planned_s"] is None  # it never ends
    assert run.summary()["frames"] is None


async def test_repeat_forever_keeps_going_on_a_manual_clock(manual: ManualClock) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("forever", scenarios({"forever": FOREVER}))
    await asyncio.wait_for(advance(manual, 9.5), timeout=5)
    assert not run.done
    assert run.sent == 10
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED


async def test_repeating_nothing_forever_fails_instead_of_hanging(clock: VirtualClock) -> None:
    # A checked catalog refuses this file (replay.budget); the runner is still safe if
    # handed it unchecked.
    source = "steps:\n  - chunk: before\n  - repeat: forever\n    steps:\n      - sleep: 0\n"
    catalog = Catalog({"idle": parse_scenario(source, "scenarios/idle.yaml")})
    delivery = FakeDelivery(clock)
    with no_hang(10):
        run = Runner(delivery, clock).start("idle", catalog)
        await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert run.error.startswith("scenario 'idle', step 1:")
    assert "forever" in run.error
    assert "hang" in run.error
    assert delivery.frames == [chunk_frame("before")]


@pytest.mark.parametrize(
    "nap",
    [
        pytest.param("nap, nap", id="branches that sleep"),
        pytest.param("naps", id="branches that fork branches that sleep"),
    ],
)
async def test_repeating_silent_branches_forever_fails_instead_of_spinning(
    clock: VirtualClock, nap: str
) -> None:
    catalog = scenarios(
        {
            "nap": "steps:\n  - sleep: 1\n",
            "naps": "steps:\n  - parallel: [nap, nap]\n",
            "loop": f"""
                steps:
                  - chunk: before
                  - repeat: forever
                    steps:
                      - parallel: [{nap}]
            """,
        }
    )
    delivery = FakeDelivery(clock)
    runner = Runner(delivery, clock)
    with no_hang(10):
        run = runner.start("loop", catalog)
        try:
            await asyncio.wait_for(run.wait(), timeout=5)
        finally:
            runner.cancel(run.id)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert run.error.startswith("scenario 'loop', step 1:")
    assert "forever" in run.error
    assert delivery.frames == [chunk_frame("before")]


# --- stream ---------------------------------------------------------------------------------


async def test_stream_sends_tokens_at_the_rate_then_closes(clock: VirtualClock) -> None:
    text = "Hello world, this is"
    tokens = split_tokens(text)
    assert tokens == ["Hello", " world", ",", " this", " is"]
    catalog = scenarios(
        {
            "llm": f"""
                steps:
                  - stream: "{text}"
                    rate: 4
                    close_stream: true
            """
        }
    )
    delivery = FakeDelivery(clock)
    run = await play(Runner(delivery, clock), "llm", catalog)
    assert delivery.frames == [*(chunk_frame(token) for token in tokens), CLOSE_FRAME]
    assert delivery.times == pytest.approx([1000.0, 1000.25, 1000.5, 1000.75, 1001.0, 1001.25])
    assert {sent.endpoint for sent in delivery.sent} == {Endpoint.STREAM}
    assert run.elapsed == pytest.approx(1.25)


async def test_stream_of_tool_chunks_without_a_close(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "tool": """
                steps:
                  - stream: "a b c"
                    rate: 2
                    type: tool
                  - raw: next
            """
        }
    )
    delivery = FakeDelivery(clock)
    await play(Runner(delivery, clock), "tool", catalog)
    tool = StreamType.TOOL
    assert delivery.frames == [
        chunk_frame("a", tool),
        chunk_frame(" b", tool),
        chunk_frame(" c", tool),
        "next",
    ]
    assert delivery.times == pytest.approx([1000.0, 1000.5, 1001.0, 1001.0])


# --- the event feed -------------------------------------------------------------------------

RUN_ENDS = {"run.finished", "run.failed", "run.cancelled"}


async def feed_until_end(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """The feed's events up to the first end of a run (bounded: fails instead of hanging)."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["event"] not in RUN_ENDS:
        seen.append(await asyncio.wait_for(anext(events), timeout=5))
    return seen


async def test_a_run_publishes_start_steps_frames_and_end_in_order(
    shipped: Catalog, clock: VirtualClock
) -> None:
    feed = Feed()
    events = feed.subscribe()
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 2})
    run = await play(Runner(delivery, clock, feed=feed), "messages", shipped, seed=7)
    got = await feed_until_end(events)
    assert kinds(got) == ["run.started", *["run.step", "frame.sent"] * 4, "run.finished"]
    assert all(event["run_id"] == run.id for event in got)
    assert all(event["scenario"] == "messages" for event in got)
    seqs = [event["seq"] for event in got]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)

    started = got[0]["run"]
    assert set(started) == SUMMARY_KEYS
    assert (started["state"], started["sent"], started["seed"]) == ("running", 0, 7)
    assert started["frames"] == 4

    assert [event["step"] for event in got if event["event"] == "run.step"] == ["0", "1", "2", "3"]
    frames = [event for event in got if event["event"] == "frame.sent"]
    assert [event["frame"] for event in frames] == delivery.frames
    assert [event["step"] for event in frames] == ["0", "1", "2", "3"]
    assert {event["endpoint"] for event in frames} == {"/ws"}
    assert {event["clients"] for event in frames} == {2}
    assert {event["to"] for event in frames} == {None}
    assert {event["binary"] for event in frames} == {False}

    finished = got[-1]["run"]
    assert finished == run.summary()
    assert (finished["state"], finished["sent"], finished["error"]) == ("finished", 4, None)


async def test_a_binary_frame_is_published_as_hex(clock: VirtualClock) -> None:
    catalog = scenarios({"bin": "steps:\n  - binary: AAEC/w==\n    to: x\n"})
    feed = Feed()
    events = feed.subscribe(["frame.sent"])
    await play(Runner(FakeDelivery(clock), clock, feed=feed), "bin", catalog)
    sent = await asyncio.wait_for(anext(events), timeout=5)
    assert (sent["binary"], sent["frame"], sent["to"]) == (True, "000102ff", "x")


async def test_a_waiting_run_publishes_what_it_waits_for(manual: ManualClock) -> None:
    catalog = scenarios({"ask": ASK})
    feed = Feed()
    events = feed.subscribe()
    runner = Runner(FakeDelivery(manual), manual, feed=feed)
    run = runner.start("ask", catalog)
    await settle()
    assert run.waiting is not None
    assert runner.receive(chat("b", "Ada"))
    await asyncio.wait_for(run_out(manual, run), timeout=5)
    got = await feed_until_end(events)
    assert kinds(got) == [
        "run.started",
        "run.step",
        "frame.sent",
        "run.step",
        "run.wait",
        "run.waiting",
        "run.waited",
        "run.step",
        "frame.sent",
        "run.finished",
    ]
    waiting = got[5]
    assert waiting["waiting"] == "CHAT_INPUT from any client"
    assert (waiting["run_id"], waiting["scenario"]) == (run.id, "ask")
    assert [event["step"] for event in got if event["event"] == "run.step"] == ["0", "1", "2"]
    assert got[-1]["run"]["state"] == "finished"


async def test_a_failed_run_publishes_run_failed_with_the_error(
    shipped: Catalog, clock: VirtualClock
) -> None:
    def explode(count: int) -> None:
        if count == 2:
            raise RuntimeError("the wire is cut")

    feed = Feed()
    events = feed.subscribe()
    runner = Runner(FakeDelivery(clock, on_send=explode), clock, feed=feed)
    run = await play(runner, "messages", shipped)
    got = await feed_until_end(events)
    assert kinds(got) == ["run.started", "run.step", "frame.sent", "run.step", "run.failed"]
    failed = got[-1]
    assert (failed["run_id"], failed["scenario"]) == (run.id, "messages")
    assert failed["run"]["state"] == "failed"
    assert failed["run"]["error"] == "RuntimeError: the wire is cut"
    assert failed["run"]["sent"] == 1


async def test_a_scenario_error_publishes_run_failed_with_the_error(clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "private": (
                "steps:\n  - chunk: public\n  - message: EVENT\n    text: psst\n    to: sender\n"
            )
        }
    )
    feed = Feed()
    events = feed.subscribe(["run.failed"])
    run = await play(Runner(FakeDelivery(clock), clock, feed=feed), "private", catalog)
    failed = await asyncio.wait_for(anext(events), timeout=5)
    assert failed["run"]["error"] == run.error
    assert failed["run"]["error"].startswith("scenario 'private', step 1:")


async def test_a_cancelled_run_publishes_run_cancelled(
    shipped: Catalog, manual: ManualClock
) -> None:
    feed = Feed()
    events = feed.subscribe()
    runner = Runner(FakeDelivery(manual), manual, feed=feed)
    run = runner.start("messages", shipped)
    await advance(manual, 0.75)
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    got = await feed_until_end(events)
    assert kinds(got) == [
        "run.started",
        *["run.step", "frame.sent"] * 2,
        "run.cancelled",
    ]
    cancelled = got[-1]["run"]
    assert (cancelled["state"], cancelled["sent"], cancelled["error"]) == ("cancelled", 2, None)
    assert cancelled["duration_s"] == pytest.approx(0.75)


async def test_a_run_cancelled_before_it_starts_publishes_start_and_cancel(
    shipped: Catalog, clock: VirtualClock
) -> None:
    feed = Feed()
    events = feed.subscribe()
    runner = Runner(FakeDelivery(clock), clock, feed=feed)
    run = runner.start("messages", shipped)
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    got = await feed_until_end(events)
    assert kinds(got) == ["run.started", "run.cancelled"]
    assert got[-1]["run"]["state"] == "cancelled"


async def test_a_feed_reader_that_never_reads_does_not_delay_the_frames(
    shipped: Catalog,
) -> None:
    def played(feed: Feed) -> tuple[FakeDelivery, VirtualClock, Run]:
        clock = VirtualClock(start=START)
        delivery = FakeDelivery(clock)
        return delivery, clock, Runner(delivery, clock, feed=feed).start("all", shipped)

    # The same run twice: alone, and with a subscriber that holds one event and never reads.
    alone_delivery, alone_clock, alone = played(Feed())
    await asyncio.wait_for(alone.wait(), timeout=5)
    stuck = Feed(backlog=1)
    stalled = stuck.subscribe()
    delivery, clock, run = played(stuck)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED
    assert run.sent == 8
    assert delivery.times == pytest.approx(
        [1000.0, 1000.5, 1001.0, 1001.5, 1002.0, 1002.2, 1002.4, 1002.6]
    )
    assert delivery.times == alone_delivery.times
    assert clock.sleeps == alone_clock.sleeps
    assert run.max_lateness == 0.0
    assert stuck.seq > 8  # it kept publishing: run.started, steps, frames, run.finished
    assert stuck.listening
    del stalled


async def test_runs_that_ended_are_counted_by_state(shipped: Catalog, clock: VirtualClock) -> None:
    catalog = scenarios(
        {
            "ok": "steps:\n  - chunk: fine\n",
            "private": "steps:\n  - message: EVENT\n    text: psst\n    to: sender\n",
        }
    )
    runner = Runner(FakeDelivery(clock), clock)
    assert runner.ended == {RunState.FINISHED: 0, RunState.FAILED: 0, RunState.CANCELLED: 0}
    for _ in range(3):
        await play(runner, "ok", catalog)
    await play(runner, "private", catalog)
    early = runner.start("ok", catalog)
    runner.cancel(early.id)
    await asyncio.wait_for(early.wait(), timeout=5)
    assert runner.ended == {RunState.FINISHED: 3, RunState.FAILED: 1, RunState.CANCELLED: 1}
    running = runner.start("ok", catalog)
    assert sum(runner.ended.values()) == 5  # a running run is not counted
    await asyncio.wait_for(running.wait(), timeout=5)
    assert runner.ended[RunState.FINISHED] == 4


async def test_on_lateness_is_called_once_per_frame_with_its_lateness(
    clock: VirtualClock,
) -> None:
    catalog = scenarios(
        {
            "slow": """
                delay: 0.5
                steps:
                  - chunk: c0
                  - chunk: c1
                  - chunk: c2
                  - chunk: c3
                    delay: 3.5
                  - chunk: c4
                    delay: 0
                  - disconnect: all
                  - sleep: 1
            """
        }
    )
    runner = Runner(FakeDelivery(clock, on_send=lambda _: clock.advance(0.7)), clock)
    assert runner.on_lateness is None
    lateness: list[float] = []
    runner.on_lateness = lateness.append
    run = await play(runner, "slow", catalog)
    assert run.state is RunState.FINISHED
    # Sends take 0.7 s and are due every 0.5 s: later and later, until a long pause.
    assert lateness == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.0])  # frames only, not the hangup
    assert max(lateness) == pytest.approx(run.max_lateness)


async def test_a_runner_without_a_feed_has_its_own(shipped: Catalog, clock: VirtualClock) -> None:
    first = Runner(FakeDelivery(clock), clock)
    second = Runner(FakeDelivery(clock), clock)
    assert isinstance(first.feed, Feed)
    assert first.feed is not second.feed
    await play(first, "stream", shipped)
    assert first.feed.seq > 0
    assert second.feed.seq == 0


# --- plans: counts only, long ones off the loop ----------------------------------------------


async def test_a_long_run_is_planned_off_the_loop_and_keeps_only_counts(
    manual: ManualClock,
) -> None:
    frame = "x" * 100_000
    repeated = f"      - chunk: '{frame}'\n        delay: 1\n"
    catalog = scenarios({"big": f"steps:\n  - repeat: 3000\n    steps:\n{repeated}"})
    # The manual clock stands still: the run sends its first frame and waits.
    runner = Runner(FakeDelivery(manual), manual)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        run = runner.start("big", catalog)
        assert run.plan is None  # too long to plan on the loop: the planning thread does it
        await asyncio.wait_for(run.planned(), timeout=30)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        runner.cancel(run.id)
        await asyncio.wait_for(run.wait(), timeout=5)
    assert run.plan is not None
    assert run.plan.cues == ()
    assert run.summary()["frames"] == 3000
    # 5000 planned frames of 100 kB would be 500 MB; a run holds a few frames at most.
    assert held - before < 5_000_000


async def test_a_short_run_is_planned_right_after_its_first_frame(
    shipped: Catalog, clock: VirtualClock
) -> None:
    plans: list[object] = []
    delivery = FakeDelivery(clock, on_send=lambda n: plans.append(run.plan) if n == 1 else None)
    run = Runner(delivery, clock).start("all", shipped, speed=0, eager=True)
    assert run.plan is None  # not before the run's first turn
    await asyncio.wait_for(run.planned(), timeout=5)
    assert plans == [None]  # the first frame went out before the plan was made
    assert run.plan is not None
    assert run.summary()["frames"] == 8
    await asyncio.wait_for(run.wait(), timeout=5)


async def test_announce_plans_a_short_run_at_once(shipped: Catalog, clock: VirtualClock) -> None:
    feed = Feed()
    events = feed.subscribe()
    run = Runner(FakeDelivery(clock), clock, feed=feed).start("all", shipped)
    run.announce()
    assert run.plan is not None
    assert run.summary()["frames"] == 8
    run.announce()  # once only
    await asyncio.wait_for(run.wait(), timeout=5)
    got = await feed_until_end(events)
    assert kinds(got).count("run.started") == 1


async def test_an_eager_run_tells_its_start_before_its_first_frame_on_the_feed(
    shipped: Catalog, clock: VirtualClock
) -> None:
    feed = Feed()
    events = feed.subscribe()
    delivery = FakeDelivery(clock, {Endpoint.MESSAGES: 2})
    runner = Runner(delivery, clock, feed=feed)
    run = runner.start("messages", shipped, speed=0, eager=True)
    await asyncio.wait_for(run.wait(), timeout=5)
    got = await feed_until_end(events)
    assert kinds(got) == ["run.started", *["run.step", "frame.sent"] * 4, "run.finished"]
    seqs = [event["seq"] for event in got]
    assert seqs == sorted(seqs)
    assert got[0]["run"]["frames"] == 4
    assert [event["frame"] for event in got if event["event"] == "frame.sent"] == delivery.frames


async def test_a_run_that_ends_in_its_first_turn_is_told_in_order(clock: VirtualClock) -> None:
    catalog = scenarios({"one": "steps:\n  - message: EVENT\n    text: hi\n"})
    feed = Feed()
    events = feed.subscribe()
    run = Runner(FakeDelivery(clock), clock, feed=feed).start("one", catalog, speed=0, eager=True)
    await asyncio.wait_for(run.wait(), timeout=5)
    got = await feed_until_end(events)
    assert kinds(got) == ["run.started", "run.step", "frame.sent", "run.finished"]
    assert got[-1]["run"]["frames"] == 1


class Work:
    """Which threads did a scenario's size's work: walks of a file's steps (a run's
    waits, its ``let`` names) and cues planned."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.walks: list[tuple[str, int]] = []
        self.cues: list[str] = []
        walk, cue = replay.scenario._walk, replay.timeline._Paper._cue

        def walked(steps: list[Any], prefix: tuple[str | int, ...]) -> Iterator[Any]:
            if prefix == ("steps",):  # a whole file's steps (not a repeat's, inside it)
                self.walks.append((threading.current_thread().name, len(steps)))
            return walk(steps, prefix)

        def cued(paper: Any, *args: Any, **kwargs: Any) -> None:
            self.cues.append(threading.current_thread().name)
            cue(paper, *args, **kwargs)

        monkeypatch.setattr(replay.scenario, "_walk", walked)
        monkeypatch.setattr(replay.timeline._Paper, "_cue", cued)

    def on(self, thread: str) -> tuple[int, int]:
        """Steps walked and cues planned in the named thread."""
        steps = sum(count for name, count in self.walks if name == thread)
        return steps, sum(1 for name in self.cues if name == thread)

    def planning(self) -> int:
        """Cues planned in the planning thread."""
        return sum(1 for name in self.cues if name.startswith("replay-plan"))


def long_recording(parts: int, steps: int) -> dict[str, str]:
    """A converted recording's shape: ``long`` plays its parts in order, each ``steps``
    chunks 10 ms apart (the bench uses 100,000 frames; a test, fewer)."""
    files = {f"long-part-{n}": chunks_yaml(steps, 0.01) for n in range(1, parts + 1)}
    files["long"] = "steps:\n" + "".join(f"  - play: {name}\n" for name in files)
    return files


async def test_a_long_scenario_starts_without_its_size_s_work_on_the_loop(
    manual: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read and checked in a thread, as the server reads its folder.
    catalog = await asyncio.to_thread(scenarios, long_recording(parts=3, steps=2000))
    work = Work(monkeypatch)
    loop = threading.current_thread().name
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("long", catalog)
    try:
        assert run.plan is None  # the planning thread counts it: its frames come later
        assert run.summary()["frames"] is None
        await advance(manual, 0.05)
        assert delivery.frames[:6] == [chunk_frame(f"c{i}") for i in range(6)]
        assert run.sent == 6
        await asyncio.wait_for(run.planned(), timeout=30)
        summary = run.summary()
        assert summary["frames"] == 6000  # counted whole, not cut off at a cap
        assert summary["planned_s"] == pytest.approx(60.0)
    finally:
        runner.cancel(run.id)
        await asyncio.wait_for(run.wait(), timeout=5)
    steps, cues = work.on(loop)
    assert steps == 0  # no file's steps walked on the loop (its waits, its let names)
    assert cues <= replay.runner.PLAN_INLINE_CUES
    assert work.planning() == 6000


async def test_a_cancelled_run_s_plan_is_given_up(
    manual: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = await asyncio.to_thread(scenarios, {"long": chunks_yaml(3000, 1)})
    work = Work(monkeypatch)
    gate = threading.Event()
    busy = asyncio.ensure_future(replay.planning.off_loop(gate.wait, 30))
    try:
        runner = Runner(FakeDelivery(manual), manual)
        run = runner.start("long", catalog)  # its plan queues behind the busy thread
        runner.cancel(run.id)
        await asyncio.wait_for(run.wait(), timeout=5)
    finally:
        gate.set()
    await busy
    await asyncio.wait_for(run.planned(), timeout=30)
    assert work.planning() == 0  # given up before its first cue
    assert run.summary()["frames"] is None


async def test_a_forever_run_is_planned_briefly(
    manual: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = Work(monkeypatch)
    runner = Runner(FakeDelivery(manual), manual)
    run = runner.start("forever", scenarios({"forever": FOREVER}))
    try:
        await asyncio.wait_for(run.planned(), timeout=30)
    finally:
        runner.cancel(run.id)
        await asyncio.wait_for(run.wait(), timeout=5)
    assert run.summary()["frames"] is None  # it never ends
    assert replay.runner.PLAN_INLINE_CUES < work.planning() <= replay.planning.FOREVER_CUES


# --- shares of runs -----------------------------------------------------------------------------


async def test_triggers_and_clients_have_shares_of_their_own(
    shipped: Catalog, manual: ManualClock
) -> None:
    runner = Runner(FakeDelivery(manual), manual, max_active=1, max_client_runs=3, max_per_client=2)

    def by(sender: str, started_by: str = "reaction") -> Run:
        return runner.start("messages", shipped, sender=sender, started_by=started_by)

    runner.start("messages", shipped)
    with pytest.raises(TooManyRuns) as caught:
        runner.start("messages", shipped)
    assert (caught.value.limit, caught.value.share) == (1, "trigger")
    # The triggers' share is full: clients still start theirs, in a share of their own.
    first, _ = by("a"), by("a", "connect")  # on-connect runs count as the client's too
    with pytest.raises(TooManyRuns) as caught:
        by("a")
    assert (caught.value.limit, caught.value.share, caught.value.client) == (2, "client", "a")
    assert "client a already has 2 runs" in str(caught.value)
    by("b")  # another client has a share of its own
    with pytest.raises(TooManyRuns) as caught:
        by("c")  # but all clients together have a cap
    assert (caught.value.limit, caught.value.share) == (3, "clients")
    assert runner.refused == {"trigger": 1, "client": 1, "clients": 1}
    assert runner.shares() == {
        "trigger": {"active": 1, "limit": 1, "refused": 1},
        "client": {"active": 3, "limit": 3, "per_client": 2, "refused": 2},
    }
    # A run that ends gives its place back to its own share only.
    runner.cancel(first.id)
    await asyncio.wait_for(first.wait(), timeout=5)
    assert runner.shares()["client"]["active"] == 2
    by("a")
    with pytest.raises(TooManyRuns):
        runner.start("messages", shipped)
    await asyncio.wait_for(runner.shutdown(), timeout=5)
    assert runner.shares()["trigger"]["active"] == runner.shares()["client"]["active"] == 0
    assert runner._by_client == {}  # no client id is remembered once its runs have ended


# --- the shared state, set steps and wait_connect ---------------------------------------------


class Present(NamedTuple):
    """A connected client, as a delivery lists it."""

    id: str
    endpoint: str


class ConnectDelivery:
    """Records frames; lists ``present`` clients (a delivery's ``clients()``)."""

    def __init__(self, clock: Clock, present: list[Present] | None = None) -> None:
        self.clock = clock
        self.present = present if present is not None else []
        self.sent: list[Sent] = []

    def send(self, endpoint: Endpoint, frame: str | bytes, to: str | None = None) -> int:
        self.sent.append(Sent(self.clock.now(), endpoint, frame, to))
        return 1

    def hangup(
        self, endpoint: Endpoint, to: str | None, code: int, reason: str, abort: bool
    ) -> int:
        return 0

    def clients(self) -> list[Present]:
        return self.present

    @property
    def frames(self) -> list[str | bytes]:
        return [sent.frame for sent in self.sent]


SETTER = """\
steps:
  - chunk: "turn {{ state.turn }}"
    delay: 2s
  - set: {turn: "{{ state.turn + 1 }}", by: "{{ run.id }}"}
  - chunk: "turn {{ state.turn }}"
"""


async def test_a_set_step_changes_the_runners_state_when_it_is_due(manual: ManualClock) -> None:
    state = State({"turn": 1})
    changes: list[tuple[dict[str, Any], str]] = []
    state.listeners.append(lambda changed, by: changes.append((dict(changed), by)))
    delivery = ConnectDelivery(manual)
    runner = Runner(delivery, manual, state=state)
    assert runner.state is state
    run = runner.start("setter", scenarios({"setter": SETTER}))
    events = run.follow()
    await advance(manual, 1.75)
    assert state["turn"] == 1  # not before its time
    assert changes == []
    await run_out(manual, run)
    assert run.state is RunState.FINISHED
    assert changes == [({"turn": 2, "by": run.id}, f"run {run.id} step 1")]
    assert delivery.frames == [chunk_frame("turn 1"), chunk_frame("turn 2")]
    seen = await asyncio.wait_for(drain(events), timeout=5)
    state_event = {"event": "state", "run_id": run.id, "changes": {"turn": 2, "by": run.id}}
    assert {**state_event, "step": "1"} in seen


async def test_a_runner_has_a_fresh_state_of_its_own_by_default(clock: VirtualClock) -> None:
    first, second = Runner(FakeDelivery(clock), clock), Runner(FakeDelivery(clock), clock)
    assert first.state == {}
    assert first.state is not second.state
    await play(first, "s", scenarios({"s": "steps:\n  - set: {x: 1}\n"}))
    assert (first.state, second.state) == ({"x": 1}, {})


async def test_a_step_reads_the_state_as_it_is_when_the_step_is_due(manual: ManualClock) -> None:
    state = State({"turn": 1})
    delivery = ConnectDelivery(manual)
    runner = Runner(delivery, manual, state=state)
    line = '  - chunk: "turn {{ state.turn }}"\n'
    source = f"steps:\n{line}    delay: 2s\n{line}"
    run = runner.start("reader", scenarios({"reader": source}))
    await advance(manual, 1)
    state.update({"turn": 7}, by="route POST /turn")  # something else changes it meanwhile
    await run_out(manual, run)
    assert delivery.frames == [chunk_frame("turn 1"), chunk_frame("turn 7")]


async def test_a_run_is_planned_on_a_copy_of_the_state(clock: VirtualClock) -> None:
    state = State({"turn": 1})
    runner = Runner(FakeDelivery(clock), clock, state=state)
    run = runner.start("setter", scenarios({"setter": SETTER}))
    run.announce()
    assert run.plan is not None  # planned with the state as it was at the start
    assert run.plan.frames == 2
    assert state["turn"] == 1  # the plan's set changed its copy only
    await asyncio.wait_for(run.wait(), timeout=5)
    assert state["turn"] == 2


WELCOME_BACK = """\
steps:
  - chunk: before
    delay: 1s
  - wait_connect: any
    endpoint: /ws
    new: true
    timeout: 10s
  - message: EVENT
    text: "welcome back {{ sender }}"
    to: sender
"""


async def test_wait_connect_new_waits_for_a_connection_after_the_step_starts(
    manual: ManualClock,
) -> None:
    delivery = ConnectDelivery(manual, [Present("old", "/ws")])
    runner = Runner(delivery, manual)
    run = runner.start("back", scenarios({"back": WELCOME_BACK}))
    events = run.follow()
    await advance(manual, 0.5)
    runner.connected("early", "/ws")  # before the step starts: not 'new'
    await advance(manual, 1)
    assert run.waiting == "a new connection from any client to /ws"
    runner.connected("stream-only", "/ws/stream")  # another endpoint
    await settle()
    assert run.waiting is not None
    await advance(manual, 1)
    runner.connected("back-1", Endpoint.MESSAGES)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FINISHED
    assert delivery.sent[-1] == Sent(
        START + 2.5, Endpoint.MESSAGES, msg("EVENT", "welcome back back-1"), "back-1"
    )
    assert run.waiting is None
    assert runner._connecting == []
    seen = await asyncio.wait_for(drain(events), timeout=5)
    assert kinds(seen) == ["frame", "wait_connect", "connected", "frame", "end"]
    assert seen[1] == {
        "event": "wait_connect",
        "run_id": run.id,
        "client": None,
        "endpoint": "/ws",
        "new": True,
        "step": "1",
    }
    assert seen[2] == {
        "event": "connected",
        "run_id": run.id,
        "client": "back-1",
        "endpoint": "/ws",
        "step": "1",
    }


async def test_wait_connect_takes_a_client_already_connected_at_once(clock: VirtualClock) -> None:
    source = WELCOME_BACK.replace("    new: true\n", "")
    delivery = ConnectDelivery(
        clock, [Present("old", "/ws"), Present("newest", "/ws"), Present("s", "/ws/stream")]
    )
    run = await play(Runner(delivery, clock), "back", scenarios({"back": source}))
    assert run.state is RunState.FINISHED
    # The newest connection to that endpoint, at the step's own time.
    assert delivery.sent[-1] == Sent(
        START + 1, Endpoint.MESSAGES, msg("EVENT", "welcome back newest"), "newest"
    )
    assert run.elapsed == pytest.approx(1.0)


async def test_wait_connect_for_the_sender_ignores_other_clients(manual: ManualClock) -> None:
    source = WELCOME_BACK.replace("wait_connect: any", "wait_connect: sender")
    delivery = ConnectDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("back", scenarios({"back": source}), client="ui")
    await advance(manual, 1.25)
    assert run.waiting == "a new connection from client ui to /ws"
    runner.connected("other", "/ws")
    await settle()
    assert not run.done
    runner.connected("ui", "/ws")
    await asyncio.wait_for(run.wait(), timeout=5)
    assert delivery.sent[-1].to == "ui"
    assert delivery.sent[-1].frame == msg("EVENT", "welcome back ui")


async def test_wait_connect_that_times_out_fails_or_goes_on(manual: ManualClock) -> None:
    runner = Runner(ConnectDelivery(manual), manual)
    run = runner.start("back", scenarios({"back": WELCOME_BACK}))
    events = run.follow()
    await advance(manual, 10.75)
    assert not run.done
    await advance(manual, 0.25)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.FAILED
    assert run.error == (
        "scenario 'back', step 1: no connection from any client to /ws within 10s "
        "(set 'on_timeout: continue' to go on without one)"
    )
    assert run.elapsed == pytest.approx(11.0)
    assert "connect_timeout" in kinds(await asyncio.wait_for(drain(events), timeout=5))
    assert runner._connecting == []

    going_on = WELCOME_BACK.replace("timeout: 10s", "timeout: 10s\n    on_timeout: continue")
    going_on = going_on.replace("    to: sender\n", "")
    delivery = ConnectDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("back", scenarios({"back": going_on}))
    await run_out(manual, run)
    assert run.state is RunState.FINISHED
    assert delivery.sent[-1].at == pytest.approx(manual.now())


async def test_cancelling_a_run_waiting_for_a_connection_stops_waiting(
    manual: ManualClock,
) -> None:
    runner = Runner(ConnectDelivery(manual), manual)
    run = runner.start("back", scenarios({"back": WELCOME_BACK}))
    await advance(manual, 1.25)
    assert len(runner._connecting) == 1
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert runner._connecting == []
    runner.connected("late", "/ws")  # nobody waits: nothing happens


async def test_one_connection_releases_every_run_waiting_for_it(manual: ManualClock) -> None:
    delivery = ConnectDelivery(manual)
    runner = Runner(delivery, manual)
    catalog = scenarios({"back": WELCOME_BACK})
    runs = [runner.start("back", catalog) for _ in range(2)]
    await advance(manual, 1.25)
    runner.connected("back-1", "/ws")
    for run in runs:
        await asyncio.wait_for(run.wait(), timeout=5)
        assert run.state is RunState.FINISHED
    assert [sent.to for sent in delivery.sent if sent.endpoint == Endpoint.MESSAGES] == [
        "back-1",
        "back-1",
    ]


# --- run control: pause, resume, step, speed ---------------------------------------------

TICKS = """
    steps:
      - message: EVENT
        text: t0
        delay: 1
      - message: EVENT
        text: t1
        delay: 1
      - message: EVENT
        text: t2
        delay: 1
      - message: EVENT
        text: t3
"""


async def test_a_pause_shifts_every_later_frame_by_the_time_paused(manual: ManualClock) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    await advance(manual, 1.5)
    assert runner.pause(run.id) is run
    assert run.summary()["paused"] is True
    await advance(manual, 10)
    assert delivery.times == [1000.0, 1001.0]  # nothing went out while paused
    assert run.summary()["paused_s"] == pytest.approx(10)
    runner.resume(run.id)
    await run_out(manual, run)
    assert delivery.times == pytest.approx([1000.0, 1001.0, 1012.0, 1013.0])
    assert run.max_lateness == 0.0
    summary = run.summary()
    assert (summary["paused"], summary["paused_s"]) == (False, pytest.approx(10))


async def test_a_run_agreed_to_begin_earlier_catches_up_from_its_first_frame(
    manual: ManualClock,
) -> None:
    # A cluster's node that wakes 0.5 s after the agreed start: its first frame is that
    # late, the next ones are on the agreed schedule (not 0.5 s late throughout).
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ticks", scenarios({"ticks": TICKS}), begins_at=manual.now() - 0.5)
    await run_out(manual, run)
    assert delivery.times == pytest.approx([1000.0, 1000.5, 1001.5, 1002.5])
    assert run.max_lateness == pytest.approx(0.5)


async def test_followers_hear_who_ever_pauses_resumes_or_changes_the_speed(
    manual: ManualClock,
) -> None:
    runner = Runner(FakeDelivery(manual), manual)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    events = run.follow()
    await advance(manual, 1.5)
    runner.pause(run.id)
    runner.pause(run.id)  # a no-op: nothing to hear
    runner.set_speed(run.id, 2.0)
    runner.resume(run.id)
    await run_out(manual, run)
    heard = [
        (e["event"], e["run"]["paused"], e["run"]["speed"]) async for e in events if "run" in e
    ]
    assert heard == [("paused", True, 1.0), ("speed", True, 2.0), ("resumed", False, 2.0)]


async def test_a_speed_change_rescales_the_gaps_left(manual: ManualClock) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    await advance(manual, 1.5)
    runner.set_speed(run.id, 2.0)
    assert run.summary()["speed"] == 2.0
    await run_out(manual, run)
    # run time 1.5 at clock 1001.5; the 0.5 and 1.5 run seconds left take half as long
    assert delivery.times == pytest.approx([1000.0, 1001.0, 1001.75, 1002.25])
    assert run.speed == 1.0  # the speed it started with: its offsets are measured at it


async def test_speed_is_checked(manual: ManualClock) -> None:
    runner = Runner(FakeDelivery(manual), manual)
    catalog = scenarios({"ticks": TICKS})
    run = runner.start("ticks", catalog)
    for bad in (0, -1, 1e9, math.nan):
        with pytest.raises(ValueError, match="speed must be"):
            runner.set_speed(run.id, bad)
    still = runner.start("ticks", catalog, speed=0)
    with pytest.raises(RunControlRefused, match="speed 0"):
        runner.set_speed(still.id, 2.0)
    await run_out(manual, run)


async def test_a_paused_runs_wait_does_not_time_out(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "ask": """
                steps:
                  - wait: CHAT_INPUT
                    timeout: 5
                    on_timeout: continue
                  - message: EVENT
                    text: gave up
            """
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ask", catalog)
    await advance(manual, 1)
    runner.pause(run.id)
    await advance(manual, 100)
    assert run.waiting is not None  # its timeout stood still
    runner.resume(run.id)
    await advance(manual, 3.75)
    assert run.waiting is not None
    await run_out(manual, run)
    assert delivery.times == pytest.approx([1105.0])


async def test_an_answer_while_paused_ends_the_wait_and_the_run_holds(
    manual: ManualClock,
) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ask", scenarios({"ask": ASK}))
    await advance(manual, 1)
    runner.pause(run.id)
    assert runner.receive(chat("b", "Ada"))
    await advance(manual, 5)
    assert run.waiting is None
    assert len(delivery.sent) == 1  # the answer came; the next frame waits for the resume
    runner.resume(run.id)
    await run_out(manual, run)
    assert delivery.times == pytest.approx([1000.0, 1006.0])


async def test_steps_play_one_action_each_and_stay_paused(manual: ManualClock) -> None:
    feed = Feed()
    events = feed.subscribe(["run.stepped", "run.paused"])
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual, feed=feed)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    runner.pause(run.id)
    await advance(manual, 5)
    assert delivery.sent == []
    stepped = []
    for _ in range(5):
        same, done = await asyncio.wait_for(runner.step(run.id), timeout=5)
        assert same is run
        stepped.append(done)
        await settle()
    assert [(s["kind"], s["step"]) for s in stepped] == [
        ("frame", "0"),
        ("frame", "1"),
        ("frame", "2"),
        ("frame", "3"),
        ("end", None),
    ]
    assert [s["offset"] for s in stepped[:4]] == [0.0, 1.0, 2.0, 3.0]
    assert stepped[1]["endpoint"] == "/ws"
    # each frame went out at once on its step, with the clock standing still
    assert delivery.times == [1005.0] * 4
    assert run.state is RunState.FINISHED
    got = [await asyncio.wait_for(anext(events), timeout=5) for _ in range(5)]
    assert kinds(got) == ["run.paused"] + ["run.stepped"] * 4
    assert got[1]["stepped"]["kind"] == "frame"
    assert got[1]["run"]["paused"] is True


async def test_a_step_starts_and_stops_a_playing_run(manual: ManualClock) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    await advance(manual, 0.5)
    _, done = await asyncio.wait_for(runner.step(run.id), timeout=5)
    assert (done["kind"], done["step"]) == ("frame", "1")
    assert run.summary()["paused"] is True
    await advance(manual, 3)
    assert delivery.times == [1000.0, 1000.5]
    runner.resume(run.id)
    # run time goes on from 1 (where the step put it): the next frame 1 s after the resume
    await run_out(manual, run)
    assert delivery.times == pytest.approx([1000.0, 1000.5, 1004.5, 1005.5])


async def test_a_step_begins_a_wait_and_cannot_skip_it(manual: ManualClock) -> None:
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("ask", scenarios({"ask": ASK}))
    runner.pause(run.id)
    _, first = await asyncio.wait_for(runner.step(run.id), timeout=5)
    assert first["kind"] == "frame"
    _, began = await asyncio.wait_for(runner.step(run.id), timeout=5)
    assert (began["kind"], began["step"]) == ("wait", "1")
    assert began["expects"]["message_type"] == "CHAT_INPUT"
    with pytest.raises(RunControlRefused, match="waits for CHAT_INPUT from any client"):
        await runner.step(run.id)
    assert runner.receive(chat("b", "Ada"))
    await settle()
    _, last = await asyncio.wait_for(runner.step(run.id), timeout=5)
    assert last["kind"] == "frame"
    assert delivery.frames[-1] == msg("EVENT", "Hello Ada from b")


async def test_a_step_plays_a_set_and_a_hangup(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "fault": """
                steps:
                  - sleep: 1
                  - set: {phase: two}
                  - sleep: 1
                  - drop: all
            """
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("fault", catalog)
    runner.pause(run.id)
    kinds_seen = []
    while not run.done:
        _, done = await asyncio.wait_for(runner.step(run.id), timeout=5)
        kinds_seen.append(done["kind"])
    assert kinds_seen == ["set", "drop", "end"]
    assert runner.state.get("phase") == "two"
    assert [hangup.abort for hangup in delivery.hangups] == [True, True]


async def test_a_paused_run_can_be_cancelled(manual: ManualClock) -> None:
    runner = Runner(FakeDelivery(manual), manual)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    runner.pause(run.id)
    step = asyncio.ensure_future(runner.step(run.id))
    await settle()
    runner.pause(run.id)
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    assert run.state is RunState.CANCELLED
    assert run.summary()["paused"] is False  # an ended run is not paused
    # the step had gone out already, or it is answered with the end
    _, done = await asyncio.wait_for(step, timeout=5)
    assert done["kind"] in ("frame", "end")


async def test_an_ended_or_unknown_run_cannot_be_controlled(clock: VirtualClock) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    run = await play(runner, "ticks", scenarios({"ticks": TICKS}))
    for control in (runner.pause, runner.resume):
        with pytest.raises(RunControlRefused, match="already ended"):
            control(run.id)
    with pytest.raises(RunControlRefused, match="already ended"):
        runner.set_speed(run.id, 2)
    with pytest.raises(RunControlRefused, match="already ended"):
        await runner.step(run.id)
    with pytest.raises(RunNotFound):
        runner.pause("nope")


async def test_control_events_carry_the_summary(manual: ManualClock) -> None:
    feed = Feed()
    events = feed.subscribe(["run.paused", "run.resumed", "run.speed"])
    runner = Runner(FakeDelivery(manual), manual, feed=feed)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    runner.pause(run.id)
    runner.pause(run.id)  # a no-op: no second event
    runner.set_speed(run.id, 4)
    runner.resume(run.id)
    got = [await asyncio.wait_for(anext(events), timeout=5) for _ in range(3)]
    assert kinds(got) == ["run.paused", "run.speed", "run.resumed"]
    assert [event["run"]["paused"] for event in got] == [True, True, False]
    assert got[1]["run"]["speed"] == 4
    assert {event["run_id"] for event in got} == {run.id}
    await run_out(manual, run)


async def test_frame_events_carry_offset_at_and_lateness(manual: ManualClock) -> None:
    feed = Feed()
    events = feed.subscribe(["frame.sent"])
    runner = Runner(FakeDelivery(manual), manual, feed=feed)
    run = runner.start("ticks", scenarios({"ticks": TICKS}))
    await advance(manual, 1.5)
    runner.pause(run.id)
    await advance(manual, 7)
    runner.resume(run.id)
    await run_out(manual, run)
    got = [await asyncio.wait_for(anext(events), timeout=5) for _ in range(4)]
    assert [event["offset"] for event in got] == [0.0, 1.0, 2.0, 3.0]
    # run time: the pause does not count, so each frame is on time in run time
    assert [event["at"] for event in got] == [0.0, 1.0, 2.0, 3.0]
    assert [event["lateness"] for event in got] == [0.0] * 4


async def test_waits_publish_what_they_expect_and_how_they_ended(manual: ManualClock) -> None:
    feed = Feed()
    events = feed.subscribe(["run.wait", "run.waited"])
    runner = Runner(FakeDelivery(manual), manual, feed=feed)
    run = runner.start("ask", scenarios({"ask": ASK}))
    await advance(manual, 2)
    expects = run.summary()["expects"]
    assert expects == [
        {
            "kind": "message",
            "step": "1",
            "message_type": "CHAT_INPUT",
            "match": "^[A-Z]",
            "fields": {},
            "source": None,
            "endpoint": "/ws",
            "example": None,  # an empty message does not match ^[A-Z]
            "since": 0.0,
            "timeout_s": 30.0,
        }
    ]
    assert runner.receive(chat("b", "Ada"))
    await run_out(manual, run)
    began, ended = [await asyncio.wait_for(anext(events), timeout=5) for _ in range(2)]
    assert began["event"] == "run.wait"
    assert (began["step"], began["offset"], began["expects"]) == ("1", 0.0, expects[0])
    assert ended["event"] == "run.waited"
    assert (ended["ended_by"], ended["client"]) == ("frame", "b")
    assert ended["frame"] == msg("CHAT_INPUT", "Ada")
    assert ended["offset"] == pytest.approx(2.0)
    assert run.summary()["expects"] == []


async def test_an_example_is_a_frame_the_wait_accepts(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "any": "steps:\n  - wait: CHAT_INPUT\n    timeout: 2\n    on_timeout: continue\n",
            "reconnect": "steps:\n  - wait_connect: any\n    new: true\n    timeout: 2\n",
        }
    )
    feed = Feed()
    events = feed.subscribe(["run.waited"])
    runner = Runner(FakeDelivery(manual), manual, feed=feed)
    run = runner.start("any", catalog)
    other = runner.start("reconnect", catalog)
    await advance(manual, 1)
    example = run.summary()["expects"][0]["example"]
    assert example == msg("CHAT_INPUT", "")
    assert other.summary()["expects"] == [
        {
            "kind": "connect",
            "step": "0",
            "client": None,
            "endpoint": None,
            "new": True,
            "since": 0.0,
            "timeout_s": 2.0,
        }
    ]
    await run_out(manual, run)
    await run_out(manual, other)
    ended = [await asyncio.wait_for(anext(events), timeout=5) for _ in range(2)]
    assert sorted(event["ended_by"] for event in ended) == ["timeout", "timeout"]
    assert other.state is RunState.FAILED  # on_timeout: fail by default


async def test_a_cancelled_wait_says_so(manual: ManualClock) -> None:
    feed = Feed()
    events = feed.subscribe(["run.waited"])
    runner = Runner(FakeDelivery(manual), manual, feed=feed)
    run = runner.start("ask", scenarios({"ask": ASK}))
    await advance(manual, 1)
    runner.cancel(run.id)
    await asyncio.wait_for(run.wait(), timeout=5)
    ended = await asyncio.wait_for(anext(events), timeout=5)
    assert ended["ended_by"] == "cancelled"


async def test_hangups_are_published(clock: VirtualClock) -> None:
    catalog = scenarios({"bye": "steps:\n  - disconnect: all\n    code: 4000\n    reason: bye\n"})
    feed = Feed()
    events = feed.subscribe(["run.hangup"])
    runner = Runner(FakeDelivery(clock), clock, feed=feed)
    run = await play(runner, "bye", catalog)
    got = await asyncio.wait_for(anext(events), timeout=5)
    assert got["run_id"] == run.id
    assert (got["code"], got["reason"], got["drop"], got["step"]) == (4000, "bye", False, "0")
    assert got["endpoints"] == ["/ws", "/ws/stream"]
    assert got["clients"] == 2


async def test_frames_are_exact_unless_the_plan_waits(clock: VirtualClock) -> None:
    runner = Runner(FakeDelivery(clock), clock)
    catalog = scenarios({"ticks": TICKS, "ask": ASK})
    ticks = runner.start("ticks", catalog)
    asked = runner.start("ask", catalog)
    await asyncio.wait_for(asyncio.gather(ticks.planned(), asked.planned()), timeout=5)
    assert ticks.summary()["frames_exact"] is True
    assert asked.summary()["frames_exact"] is False
    runner.cancel(asked.id)
    await asyncio.wait_for(ticks.wait(), timeout=5)


async def test_steps_take_parallel_branches_in_time_order(manual: ManualClock) -> None:
    catalog = scenarios(
        {
            "left": "steps:\n  - message: EVENT\n    text: L0\n    delay: 2\n"
            "  - message: EVENT\n    text: L2\n",
            "right": "steps:\n  - sleep: 1\n  - message: EVENT\n    text: R1\n    delay: 2\n"
            "  - message: EVENT\n    text: R3\n",
            "main": "steps:\n  - parallel: [left, right]\n",
        }
    )
    delivery = FakeDelivery(manual)
    runner = Runner(delivery, manual)
    run = runner.start("main", catalog)
    runner.pause(run.id)
    offsets = []
    while not run.done:
        _, done = await asyncio.wait_for(runner.step(run.id), timeout=5)
        offsets.append(done["offset"])
    assert [json.loads(frame)["message"] for frame in delivery.frames] == ["L0", "R1", "L2", "R3"]
    assert offsets == [0.0, 1.0, 2.0, 3.0, 3.0]


async def direct_stream_client() -> tuple[LocalDelivery, FakeProtocol]:
    """Delivery to real managers, with one client on a direct line on /ws/stream."""
    stream = StreamManager.isolated()
    websocket = FakeWebSocket()
    protocol = direct(websocket)
    await stream.connect(websocket)  # type: ignore[arg-type]
    return LocalDelivery(WebsocketManager.isolated(), stream), protocol


def chunks(*indexes: int) -> bytes:
    return b"".join(framed(chunk_frame(f"c{i}")) for i in indexes)


async def test_frames_due_at_once_reach_a_direct_client_in_one_write(clock: VirtualClock) -> None:
    delivery, protocol = await direct_stream_client()
    runner = Runner(delivery, clock)
    run = await play(runner, "many", scenarios({"many": chunks_yaml(5, 0.1)}), speed=0)
    assert run.sent == 5
    assert run.deliveries == 5
    # The run's first frame at once, on its own; the others due with it in one write.
    assert protocol.transport.written == [chunks(0), chunks(1, 2, 3, 4)]


async def test_a_burst_is_bounded_in_frames(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay.runner, "BURST_FRAMES", 2)
    delivery, protocol = await direct_stream_client()
    runner = Runner(delivery, clock)
    await play(runner, "many", scenarios({"many": chunks_yaml(5, 0.1)}), speed=0)
    assert protocol.transport.written == [chunks(0), chunks(1, 2), chunks(3, 4)]


async def test_a_paced_runs_frames_are_each_written_at_their_time(clock: VirtualClock) -> None:
    delivery, protocol = await direct_stream_client()
    written: list[float] = []
    write = protocol.transport.write

    def timed(data: bytes) -> None:
        written.append(clock.now())
        write(data)

    protocol.transport.write = timed  # type: ignore[method-assign]
    runner = Runner(delivery, clock)
    run = await play(runner, "many", scenarios({"many": chunks_yaml(3, 0.1)}))
    assert protocol.transport.written == [chunks(0), chunks(1), chunks(2)]
    assert written == pytest.approx([START, START + 0.1, START + 0.2])
    assert run.max_lateness == pytest.approx(0.0, abs=1e-9)


async def test_a_burst_is_bounded_in_time(
    clock: VirtualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No time at all for a burst: each frame is written as soon as it is played.
    monkeypatch.setattr(replay.runner, "BURST_SECONDS", 0.0)
    delivery, protocol = await direct_stream_client()
    await play(Runner(delivery, clock), "many", scenarios({"many": chunks_yaml(3, 0.1)}), speed=0)
    assert protocol.transport.written == [chunks(0), chunks(1), chunks(2)]


async def test_a_fault_in_planning_costs_only_the_counts(
    shipped: Catalog, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Timeline:
        raise RuntimeError("a bug in planning")

    monkeypatch.setattr(replay.runner, "build_timeline", broken)
    feed = Feed()
    events = feed.subscribe()
    delivery = FakeDelivery(clock)
    run = Runner(delivery, clock, feed=feed).start("messages", shipped, speed=0, eager=True)
    await asyncio.wait_for(run.wait(), timeout=5)
    got = await feed_until_end(events)
    assert run.state is RunState.FINISHED
    assert len(delivery.frames) == 4
    assert kinds(got)[0] == "run.started"
    assert got[0]["run"]["frames"] is None
    assert "could not be planned" in caplog.text
