"""Timelines: scenarios played on paper into cues, without I/O and without a clock."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml
from hypothesis import strategies as st

from replay.catalog import Catalog
from replay.durations import MAX_BARE_SECONDS
from replay.engine import Context
from replay.errors import ScenarioInvalid, ScenarioNotFound, StepFailed
from replay.library import ScenarioLibrary
from replay.loader import parse_scenario
from replay.protocol import Endpoint
from replay.protocol.file import parse_protocol
from replay.timeline import (
    MAX_CUES,
    MAX_SPEED,
    MIN_SPEED,
    PAPER_CLIENT,
    Timeline,
    build_timeline,
    check_speed,
)

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"

MESSAGES = [
    (0.0, Endpoint.MESSAGES, '{"message_type":"CHAT_REQUESTED","message":"Test chat request"}'),
    (0.5, Endpoint.MESSAGES, '{"message_type":"IS_WAITING","message":"Waiting for user input"}'),
    (1.0, Endpoint.MESSAGES, '{"message_type":"EVENT","message":"Test event message"}'),
    (1.5, Endpoint.MESSAGES, '{"message_type":"PAUSE_STATUS","message":"System paused"}'),
]
STREAM = [
    (0.0, Endpoint.STREAM, '{"type":"default","content":"This is a "}'),
    (0.2, Endpoint.STREAM, '{"type":"default","content":"streaming message "}'),
    (0.4, Endpoint.STREAM, '{"type":"default","content":"sent in chunks."}'),
    (0.6, Endpoint.STREAM, '{"type":"close","content":null}'),
]


def catalog(**sources: str) -> Catalog:
    return Catalog.resolve(
        parse_scenario(source, f"scenarios/{name}.yaml") for name, source in sources.items()
    )


def timeline(name: str = "main", **sources: str) -> Timeline:
    return build_timeline(name, catalog(**sources))


def rows(line: Timeline) -> list[tuple[float, Endpoint, str]]:
    return [(cue.offset, cue.endpoint, cue.frame) for cue in line]


def assert_rows(line: Timeline, expected: list[tuple[float, Endpoint, str]]) -> None:
    actual = rows(line)
    assert [(e, f) for _, e, f in actual] == [(e, f) for _, e, f in expected]
    assert [o for o, _, _ in actual] == pytest.approx([o for o, _, _ in expected])


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return ScenarioLibrary(SHIPPED).catalog()


# --- the shipped scenarios ------------------------------------------------------------------


def test_shipped_scenarios_are_valid(shipped: Catalog) -> None:
    assert {"messages", "stream", "all"} <= set(shipped.names)
    for name in ("messages", "stream", "all"):
        assert shipped.file(name).valid, shipped.file(name).problems


def test_shipped_messages(shipped: Catalog) -> None:
    line = build_timeline("messages", shipped)
    assert line.scenario == "messages"
    assert_rows(line, MESSAGES)
    assert line.duration == pytest.approx(2.0)
    assert len(line) == 4
    assert [cue.step for cue in line] == ["0", "1", "2", "3"]
    assert {cue.scenario for cue in line} == {"messages"}


def test_shipped_stream(shipped: Catalog) -> None:
    line = build_timeline("stream", shipped)
    assert_rows(line, STREAM)
    assert line.duration == pytest.approx(0.6)


def test_shipped_all(shipped: Catalog) -> None:
    line = build_timeline("all", shipped)
    assert line.scenario == "all"
    shifted = [(offset + 2.0, endpoint, frame) for offset, endpoint, frame in STREAM]
    assert_rows(line, MESSAGES + shifted)
    assert line.duration == pytest.approx(2.6)
    assert [cue.scenario for cue in line] == ["messages"] * 4 + ["stream"] * 4


# --- step kinds -----------------------------------------------------------------------------


def test_data_is_sent_as_json_text() -> None:
    line = timeline(
        main="steps:\n"
        "  - message: EVENT\n"
        "    data: {name: 'agent-1 - EventType.START_TURN', status_code: OK, n: [1, 2.5, null]}\n"
    )
    [cue] = line
    assert cue.endpoint == Endpoint.MESSAGES
    assert cue.frame == (
        '{"message_type":"EVENT","message":'
        '"{\\"name\\":\\"agent-1 - EventType.START_TURN\\",\\"status_code\\":\\"OK\\",'
        '\\"n\\":[1,2.5,null]}"}'
    )
    outer = json.loads(cue.frame)
    assert json.loads(outer["message"]) == {
        "name": "agent-1 - EventType.START_TURN",
        "status_code": "OK",
        "n": [1, 2.5, None],
    }


def test_tool_chunks_and_close() -> None:
    line = timeline(
        main="steps:\n  - tool: \"search(query='x')\"\n  - chunk: hi\n  - close: stream\n"
    )
    assert rows(line) == [
        (0.0, Endpoint.STREAM, '{"type":"tool","content":"search(query=\'x\')"}'),
        (0.0, Endpoint.STREAM, '{"type":"default","content":"hi"}'),
        (0.0, Endpoint.STREAM, '{"type":"close","content":null}'),
    ]
    assert line.duration == 0.0


def test_step_delay_overrides_scenario_delay() -> None:
    line = timeline(
        main="delay: 1\n"
        "steps:\n"
        "  - chunk: a\n"
        "  - chunk: b\n"
        "    delay: 250ms\n"
        "  - chunk: c\n"
        "    delay: 0\n"
        "  - chunk: d\n"
    )
    assert [cue.offset for cue in line] == pytest.approx([0.0, 1.0, 1.25, 1.25])
    assert line.duration == pytest.approx(2.25)


def test_sleep_steps_pause_without_frames() -> None:
    line = timeline(
        main="delay: 0.1\nsteps:\n  - sleep: 2s\n  - chunk: a\n  - sleep: 500ms\n  - chunk: b\n"
    )
    assert [cue.offset for cue in line] == pytest.approx([2.0, 2.6])
    assert [cue.step for cue in line] == ["1", "3"]
    assert line.duration == pytest.approx(2.7)


def test_trailing_sleep_counts_in_the_duration() -> None:
    line = timeline(main="steps:\n  - chunk: a\n  - sleep: 3\n")
    assert line.duration == pytest.approx(3.0)


def test_nested_play_shifts_and_uses_the_played_scenarios_delay() -> None:
    line = timeline(
        main="delay: 1\nsteps:\n  - chunk: start\n  - play: middle\n  - chunk: end\n",
        middle="delay: 0.1\nsteps:\n  - chunk: m1\n  - play: inner\n  - chunk: m2\n",
        inner="delay: 0.01\nsteps:\n  - tool: i1\n  - tool: i2\n",
    )
    assert [(json.loads(cue.frame)["content"], cue.scenario) for cue in line] == [
        ("start", "main"),
        ("m1", "middle"),
        ("i1", "inner"),
        ("i2", "inner"),
        ("m2", "middle"),
        ("end", "main"),
    ]
    # the play step itself adds no pause of its own (its scenario's delay is for frames)
    assert [cue.offset for cue in line] == pytest.approx([0, 1, 1.1, 1.11, 1.12, 1.22])
    assert line.duration == pytest.approx(2.22)


def test_play_step_with_its_own_delay() -> None:
    line = timeline(
        main="steps:\n  - play: inner\n    delay: 5\n  - chunk: after\n",
        inner="steps:\n  - chunk: a\n  - sleep: 1\n",
    )
    assert [cue.offset for cue in line] == pytest.approx([0.0, 6.0])


def test_parallel_starts_together_and_lasts_as_long_as_the_longest() -> None:
    line = timeline(
        main="steps:\n"
        "  - chunk: before\n"
        "    delay: 1\n"
        "  - parallel: [slow, fast]\n"
        "  - chunk: after\n",
        slow="delay: 1\n"
        "steps:\n"
        "  - message: EVENT\n"
        "    text: s1\n"
        "  - message: EVENT\n"
        "    text: s2\n",
        fast="delay: 0.5\nsteps:\n  - chunk: f1\n  - chunk: f2\n",
    )
    # the tie at 1.0 keeps listing order (slow first); "after" waits for the longest: 1 + 2
    assert [cue.scenario for cue in line] == ["main", "slow", "fast", "fast", "slow", "main"]
    assert [cue.offset for cue in line] == pytest.approx([0.0, 1.0, 1.0, 1.5, 2.0, 3.0])
    assert line.duration == pytest.approx(3.0)


def test_parallel_ties_keep_listing_order() -> None:
    line = timeline(
        main="steps:\n  - parallel: [b, a, c]\n",
        a="steps:\n  - chunk: a1\n  - chunk: a2\n",
        b="steps:\n  - chunk: b1\n  - chunk: b2\n",
        c="steps:\n  - tool: c1\n",
    )
    contents = [json.loads(cue.frame)["content"] for cue in line]
    assert contents == ["b1", "b2", "a1", "a2", "c1"]
    assert all(cue.offset == 0 for cue in line)


def test_parallel_with_its_own_delay() -> None:
    line = timeline(
        main="steps:\n  - parallel: [a]\n    delay: 2\n  - chunk: after\n",
        a="steps:\n  - chunk: a1\n    delay: 1\n",
    )
    assert [cue.offset for cue in line] == pytest.approx([0.0, 3.0])


def test_timeline_is_sorted_by_offset() -> None:
    line = timeline(
        main="steps:\n  - parallel: [a, b]\n",
        a="delay: 0.3\nsteps:\n  - chunk: a1\n  - chunk: a2\n  - chunk: a3\n",
        b="delay: 0.2\nsteps:\n  - chunk: b1\n  - chunk: b2\n  - chunk: b3\n",
    )
    offsets = [cue.offset for cue in line]
    assert offsets == sorted(offsets)
    assert [json.loads(cue.frame)["content"] for cue in line] == [
        "a1",
        "b1",
        "b2",
        "a2",
        "b3",
        "a3",
    ]


def test_unknown_and_invalid_scenarios_raise() -> None:
    found = catalog(
        broken="steps: []\n",
        user="steps:\n  - play: broken\n",
        fine="steps:\n  - chunk: a\n",
    )
    with pytest.raises(ScenarioNotFound):
        build_timeline("nothing", found)
    with pytest.raises(ScenarioInvalid):
        build_timeline("broken", found)
    with pytest.raises(ScenarioInvalid):
        build_timeline("user", found)
    assert len(build_timeline("fine", found)) == 1


def test_hand_built_cycle_raises_instead_of_recursing() -> None:
    files = [
        parse_scenario("steps:\n  - play: b\n", "a.yaml"),
        parse_scenario("steps:\n  - play: a\n", "b.yaml"),
    ]
    unchecked = Catalog({loaded.name: loaded for loaded in files})  # no Catalog.resolve
    with pytest.raises(ScenarioInvalid, match="plays itself: a -> b -> a"):
        build_timeline("a", unchecked)


# --- speed ----------------------------------------------------------------------------------


def at_speed(name: str, found: Catalog, speed: float) -> Timeline:
    return build_timeline(name, found, Context(run_id="dry-run", seed=0, speed=speed))


def test_speed_two_is_twice_as_fast(shipped: Catalog) -> None:
    line = build_timeline("all", shipped)
    fast = at_speed("all", shipped, 2)
    assert [cue.offset for cue in fast] == pytest.approx([cue.offset / 2 for cue in line])
    assert fast.duration == pytest.approx(1.3)
    assert [cue.frame for cue in fast] == [cue.frame for cue in line]
    assert fast.scenario == "all"


def test_speed_half_is_twice_as_slow(shipped: Catalog) -> None:
    slow = at_speed("messages", shipped, 0.5)
    assert [cue.offset for cue in slow] == pytest.approx([0, 1, 2, 3])
    assert slow.duration == pytest.approx(4.0)


def test_speed_zero_has_no_pauses(shipped: Catalog) -> None:
    line = at_speed("all", shipped, 0)
    assert [cue.offset for cue in line] == [0.0] * 8
    assert line.duration == 0.0
    assert [cue.frame for cue in line] == [f for _, _, f in MESSAGES + STREAM]


def test_speed_one_is_the_default_timeline(shipped: Catalog) -> None:
    line = build_timeline("messages", shipped)
    assert at_speed("messages", shipped, 1) == line
    assert at_speed("messages", shipped, 1.0) == line


def test_speed_applies_to_sleeps_and_token_streams() -> None:
    found = catalog(
        main="steps:\n  - sleep: 2\n  - stream: 'one two three'\n    rate: 10\n  - sleep: 1\n"
    )
    line = at_speed("main", found, 4)
    assert [cue.offset for cue in line] == pytest.approx([0.5, 0.525, 0.55])
    assert line.duration == pytest.approx(0.8)


def test_speed_does_not_scale_wait_timeouts() -> None:
    found = catalog(main="steps:\n  - sleep: 1\n  - wait: CHAT_INPUT\n    timeout: 4s\n")
    [cue] = at_speed("main", found, 2)
    assert cue.offset == pytest.approx(0.5)
    assert "4s" in cue.frame


@pytest.mark.parametrize(
    "speed", [-1, -0.001, math.nan, math.inf, -math.inf, MAX_SPEED + 1, 1e-320, 0.0009]
)
def test_invalid_speeds_raise(speed: float, shipped: Catalog) -> None:
    # A speed near zero once made every deadline infinite: a run that never ended.
    with pytest.raises(ValueError, match=r"speed must be 0 \(no pauses\) or from 0.001 to 1000"):
        at_speed("messages", shipped, speed)
    with pytest.raises(ValueError, match=r"speed must be 0 \(no pauses\) or from 0.001"):
        check_speed(speed)


def test_speed_limits_are_accepted(shipped: Catalog) -> None:
    assert check_speed(0) == 0
    assert check_speed(1) == 1
    assert check_speed(MAX_SPEED) == MAX_SPEED
    assert check_speed(MIN_SPEED) == MIN_SPEED
    assert at_speed("messages", shipped, MAX_SPEED).duration == pytest.approx(2.0 / MAX_SPEED)


def test_scaling_keeps_order_for_many_speeds(shipped: Catalog) -> None:
    line = build_timeline("all", shipped)
    assert line.duration is not None
    for speed in (0.1, 0.25, 1.5, 3, 7.5, 100, MAX_SPEED):
        fast = at_speed("all", shipped, speed)
        offsets = [cue.offset for cue in fast]
        assert offsets == sorted(offsets)
        assert fast.duration == pytest.approx(line.duration / speed)
        assert all(cue.offset <= fast.duration + 1e-9 for cue in fast)
        assert [cue.frame for cue in fast] == [cue.frame for cue in line]


# --- waits ----------------------------------------------------------------------------------

CHAT = (
    "steps:\n"
    "  - message: CHAT_REQUESTED\n"
    "    text: your turn\n"
    "    delay: 1\n"
    "  - wait: CHAT_INPUT\n"
    "    timeout: 5s\n"
    "  - chunk: 'got {{ received.message_type }} ({{ received.message }}) from {{ sender }}'\n"
    "    to: sender\n"
)


def test_a_wait_is_a_cue_of_its_own() -> None:
    line = timeline(main=CHAT)
    assert [cue.kind for cue in line] == ["frame", "wait", "frame"]
    wait = line.cues[1]
    assert wait.endpoint == Endpoint.MESSAGES
    assert wait.offset == 1.0
    assert (wait.scenario, wait.step) == ("main", "1")
    assert "CHAT_INPUT" in wait.frame
    assert "5s" in wait.frame
    assert wait.to is None
    assert (line.frames, line.waits) == (2, 1)
    assert line.duration == 1.0


def test_a_wait_is_answered_at_once_so_later_templates_render() -> None:
    line = timeline(main=CHAT)
    last = line.cues[-1]
    assert json.loads(last.frame)["content"] == "got CHAT_INPUT () from client"
    assert last.offset == 1.0
    assert last.to == PAPER_CLIENT == "client"


def test_a_wait_is_answered_by_the_runs_sender() -> None:
    line = build_timeline(
        "main", catalog(main=CHAT), Context(run_id="dry-run", seed=0, sender="alice")
    )
    last = line.cues[-1]
    assert json.loads(last.frame)["content"] == "got CHAT_INPUT () from alice"
    assert last.to == "alice"


def test_a_wait_for_a_target_is_answered_by_it() -> None:
    line = timeline(main="to: bob\n" + CHAT)
    wait = line.cues[1]
    assert wait.to == "bob"
    assert "'bob'" in wait.frame
    assert json.loads(line.cues[-1].frame)["content"] == "got CHAT_INPUT () from bob"


def test_wait_text_shows_its_pattern_and_a_short_timeout() -> None:
    line = timeline(
        main="steps:\n  - wait: PAUSE_REQUEST\n    match: '^pause'\n    timeout: 250ms\n"
    )
    [cue] = line
    assert cue.kind == "wait"
    assert "PAUSE_REQUEST" in cue.frame
    assert "'^pause'" in cue.frame
    assert "250ms" in cue.frame
    assert line.frames == 0
    assert line.duration == 0.0


def test_received_data_renders_empty_on_paper() -> None:
    line = timeline(
        main="steps:\n"
        "  - wait: CHAT_INPUT\n"
        "  - message: EVENT\n"
        "    data: {input: '{{ received.message }}', type: '{{ received.message_type }}'}\n"
    )
    frame = json.loads(line.cues[-1].frame)
    assert json.loads(frame["message"]) == {"input": "", "type": "CHAT_INPUT"}


# --- faults, binary frames, targets -----------------------------------------------------------


def test_disconnect_and_drop_cues_per_endpoint() -> None:
    line = timeline(
        main="delay: 1\n"
        "steps:\n"
        "  - chunk: a\n"
        "  - disconnect: all\n"
        "    code: 4001\n"
        "    reason: bye\n"
        "  - drop: /ws/stream\n"
        "  - disconnect: /ws\n"
        "  - drop: all\n"
    )
    assert [(cue.offset, cue.kind, cue.endpoint, cue.step) for cue in line] == [
        (0.0, "frame", Endpoint.STREAM, "0"),
        (1.0, "disconnect", Endpoint.MESSAGES, "1"),
        (1.0, "disconnect", Endpoint.STREAM, "1"),
        (1.0, "drop", Endpoint.STREAM, "2"),
        (1.0, "disconnect", Endpoint.MESSAGES, "3"),
        (1.0, "drop", Endpoint.MESSAGES, "4"),
        (1.0, "drop", Endpoint.STREAM, "4"),
    ]
    assert "4001" in line.cues[1].frame
    assert "bye" in line.cues[1].frame
    assert "1000" in line.cues[4].frame
    assert line.frames == 1
    assert line.waits == 0


def test_binary_cue() -> None:
    line = timeline(main="steps:\n  - binary: AAEC/w==\n    endpoint: /ws/stream\n")
    [cue] = line
    assert cue.kind == "binary"
    assert cue.endpoint == Endpoint.STREAM
    assert "4 bytes" in cue.frame
    assert "AAEC/w==" in cue.frame
    assert line.frames == 1


def test_cues_record_who_they_are_for() -> None:
    line = timeline(
        main="steps:\n"
        "  - chunk: everyone\n"
        "  - chunk: one\n"
        "    to: alice\n"
        "  - play: sub\n"
        "    to: bob\n"
        "  - drop: /ws\n"
        "    to: carol\n",
        sub="steps:\n  - tool: t\n",
    )
    assert [cue.to for cue in line] == [None, "alice", "bob", "carol"]
    assert line.cues[1].to_dict() == {
        "offset": 0.0,
        "kind": "frame",
        "endpoint": "/ws/stream",
        "to": "alice",
        "frame": '{"type":"default","content":"one"}',
        "scenario": "main",
        "step": "1",
    }


def test_the_client_of_the_run_is_recorded() -> None:
    line = build_timeline(
        "messages",
        catalog(messages="steps:\n  - chunk: a\n"),
        Context(run_id="dry-run", seed=0, client="dave"),
    )
    assert [cue.to for cue in line] == ["dave"]


# --- forever ----------------------------------------------------------------------------------


def test_forever_is_cut_off_at_the_limit() -> None:
    found = catalog(
        main="steps:\n  - repeat: forever\n    steps:\n      - chunk: tick\n        delay: 1\n"
    )
    line = build_timeline("main", found, limit=7)
    assert line.truncated
    assert line.duration is None
    assert len(line) == 7
    assert [cue.offset for cue in line] == [float(index) for index in range(7)]


def test_forever_is_cut_off_at_max_cues_by_default() -> None:
    found = catalog(main="steps:\n  - repeat: forever\n    steps:\n      - chunk: tick\n")
    line = build_timeline("main", found)
    assert line.truncated
    assert line.duration is None
    assert len(line) == MAX_CUES


def test_a_finite_timeline_at_the_limit_is_not_truncated() -> None:
    line = build_timeline("main", catalog(main="steps:\n" + "  - chunk: a\n" * 5), limit=5)
    assert not line.truncated
    assert len(line) == 5
    assert line.duration == 0.0


class BoundedCatalog(Catalog):
    """A catalog that fails the test after too many scenario lookups, so that a timeline
    that never stops makes the test fail instead of hanging."""

    def __init__(self, inner: Catalog, budget: int = 5_000) -> None:
        super().__init__(inner.files, inner.protocol_file)
        object.__setattr__(self, "budget", budget)

    def scenario(self, name: str) -> Any:
        left = self.budget - 1
        object.__setattr__(self, "budget", left)
        if left < 0:
            raise AssertionError("the timeline plays scenarios endlessly (it would hang)")
        return super().scenario(name)


def test_a_fork_of_silent_branches_repeated_forever_fails_instead_of_spinning() -> None:
    found = BoundedCatalog(
        catalog(
            main="steps:\n"
            "  - chunk: start\n"
            "  - repeat: forever\n"
            "    steps:\n"
            "      - parallel: [silent, silent]\n",
            silent="steps:\n  - sleep: 1\n",
        )
    )
    with pytest.raises(StepFailed, match="do nothing"):
        build_timeline("main", found, limit=5)


def test_forever_in_a_parallel_branch_is_cut_off_too() -> None:
    found = catalog(
        main="steps:\n  - parallel: [ticks, once]\n  - chunk: never\n",
        ticks="steps:\n  - repeat: forever\n    steps:\n      - tool: tick\n        delay: 1\n",
        once="steps:\n  - chunk: once\n",
    )
    line = build_timeline("main", found, limit=4)
    assert line.truncated
    assert line.duration is None
    assert len(line) == 4
    assert "never" not in "".join(cue.frame for cue in line)


# --- seeds ----------------------------------------------------------------------------------

SEEDED = {
    "main": "delay: 0.5\n"
    "jitter: 0.2\n"
    "steps:\n"
    "  - message: EVENT\n"
    "    data: {span_id: '{{ uuid() }}', x: '{{ random() }}', n: '{{ randint(1, 10**9) }}'}\n"
    '  - chunk: \'{{ choice(["a", "b", "c", "d", "e", "f"]) }} {{ random() }}\'\n'
    "  - parallel: [branch, branch]\n"
    "  - stream: 'tokens, streamed with a jittered rate'\n"
    "    rate: 20\n"
    "    jitter: 0.01\n",
    "branch": "jitter: 0.3\nsteps:\n  - sleep: 1\n  - tool: '{{ uuid() }}'\n",
}


def seeded(seed: int) -> Timeline:
    return build_timeline("main", catalog(**SEEDED), Context(run_id="dry-run", seed=seed))


def test_the_same_seed_gives_the_same_timeline() -> None:
    first = seeded(42)
    second = seeded(42)
    assert [(cue.offset, cue.frame) for cue in first] == [(cue.offset, cue.frame) for cue in second]
    assert first == second
    assert first.duration == second.duration


def test_another_seed_gives_another_timeline() -> None:
    first = seeded(42)
    other = seeded(43)
    assert len(first) == len(other)
    assert [cue.frame for cue in first] != [cue.frame for cue in other]
    assert [cue.offset for cue in first] != [cue.offset for cue in other]
    assert first.duration != other.duration
    # the two branches drew different values from each other
    branch = [cue.frame for cue in first if cue.scenario == "branch"]
    assert len(branch) == 2
    assert branch[0] != branch[1]


# --- errors ---------------------------------------------------------------------------------


def test_a_template_failing_on_paper_raises_step_failed() -> None:
    found = catalog(main="steps:\n  - chunk: a\n  - chunk: '{{ received.data.missing }}'\n")
    with pytest.raises(StepFailed) as failed:
        build_timeline("main", found)
    assert (failed.value.scenario, failed.value.step) == ("main", "1")


# --- properties: random valid scenarios -------------------------------------------------------

#: A pause as the file writes it, with its value in seconds: whole milliseconds with a unit,
#: or seconds as a number (without a unit, at most a minute: see replay.durations).
_PAUSES = st.one_of(
    st.integers(0, 3_600_000).map(lambda ms: (ms / 1000, f"{ms}ms")),
    st.floats(0, MAX_BARE_SECONDS).map(lambda seconds: (seconds, seconds)),
)
#: Text that is sent as written (no template markers).
_PLAIN = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="{}"), max_size=8)


@st.composite
def _timed_scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], list[float]]:
    """A scenario of message, chunk and sleep steps with random pauses, and the pause after
    each step in seconds (the step's own delay, else the scenario's, for frames)."""
    default = draw(st.none() | _PAUSES)
    steps: list[dict[str, Any]] = []
    pauses: list[float] = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["message", "chunk", "sleep"]))
        if kind == "sleep":
            seconds, written = draw(_PAUSES)
            steps.append({"sleep": written})
            pauses.append(seconds)
            continue
        if kind == "message":
            step = {"message": draw(st.sampled_from(["EVENT", "CHAT"])), "text": draw(_PLAIN)}
        else:
            step = {"chunk": draw(_PLAIN.filter(bool))}
        own = draw(st.none() | _PAUSES)
        if own is not None:
            step["delay"] = own[1]
        pauses.append(own[0] if own is not None else default[0] if default is not None else 0.0)
        steps.append(step)
    document: dict[str, Any] = {"steps": steps}
    if default is not None:
        document["delay"] = default[1]
    return document, pauses


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(
    _timed_scenarios(),
    st.floats(MIN_SPEED, 10) | st.just(0.0),
    st.integers(0, 2**63 - 1),
)
def test_property_offsets_are_ordered_and_the_duration_is_the_pauses_over_speed(
    scenario: tuple[dict[str, Any], list[float]], speed: float, seed: int
) -> None:
    document, pauses = scenario
    loaded = parse_scenario(yaml.safe_dump(document, allow_unicode=True), "scenarios/main.yaml")
    assert loaded.valid, loaded.problems
    line = build_timeline("main", Catalog.resolve([loaded]), Context("prop", seed, speed=speed))
    offsets = [cue.offset for cue in line]
    assert offsets == sorted(offsets)
    assert line.frames == sum(1 for step in document["steps"] if "sleep" not in step)
    # Each frame goes out once the pauses before it have passed.
    planned, elapsed = [], 0.0
    for step, pause in zip(document["steps"], pauses, strict=True):
        if "sleep" not in step:
            planned.append(elapsed)
        elapsed += pause
    if speed == 0:
        assert line.duration == 0
        assert offsets == [0.0] * len(offsets)
    else:
        assert line.duration == pytest.approx(sum(pauses) / speed, rel=1e-9, abs=1e-9)
        assert offsets == pytest.approx([at / speed for at in planned], rel=1e-9, abs=1e-9)


def test_a_wait_for_a_declared_route_is_answered_on_paper_by_an_empty_request() -> None:
    protocol = parse_protocol("routes:\n  - {method: POST, path: /chat}\n", "_protocol.yaml")
    source = (
        "steps:\n  - wait: POST /chat\n  - message: CHAT\n"
        '    text: "{{ received.message_type }} {{ received.frame.query | length }} '
        '{{ received.endpoint }}"\n'
    )
    loaded = parse_scenario(source, "scenarios/main.yaml", protocol.protocol)
    assert loaded.valid, loaded.problems
    line = build_timeline("main", Catalog.resolve([loaded], protocol))
    assert [(cue.kind, cue.endpoint) for cue in line] == [("wait", "http"), ("frame", "/ws")]
    assert json.loads(line.cues[1].frame)["message"] == "POST /chat 0 http"


# --- answers, the state on paper, and the new steps' cues ------------------------------------

ASK = """\
steps:
  - message: CHAT_REQUESTED
    text: Go on?
  - wait: CHAT_INPUT
    timeout: 5s
  - choose:
      - when: "received.message == 'yes'"
        steps:
          - message: CHAT
            text: going on
      - otherwise:
          - message: CHAT
            text: "stopping ({{ received.message }})"
  - wait: CHAT_INPUT
  - chunk: "then {{ received.message }}"
"""


def test_answers_are_taken_by_the_waits_in_order_and_conditions_follow_them() -> None:
    yes = '{"message_type":"CHAT_INPUT","message":"yes"}'
    later = '{"message_type":"CHAT_INPUT","message":"later"}'
    line = build_timeline("main", catalog(main=ASK), answers=[yes, later])
    assert [(cue.kind, cue.frame) for cue in line][1:4] == [
        ("wait", f"wait for CHAT_INPUT from any client, up to 5s: answered {yes}"),
        ("choose", "choose: branch 0 (when received.message == 'yes')"),
        ("frame", '{"message_type":"CHAT","message":"going on"}'),
    ]
    assert json.loads(line.cues[-1].frame)["content"] == "then later"
    assert line.unused == ()
    assert line.waits == 2


def test_without_answers_waits_get_an_empty_message_as_before() -> None:
    line = build_timeline("main", catalog(main=ASK))
    assert "answered" not in line.cues[1].frame
    assert ("choose", "choose: otherwise") in [(cue.kind, cue.frame) for cue in line]
    assert json.loads(line.cues[-1].frame)["content"] == "then "


def test_a_wait_takes_the_oldest_answer_it_accepts_and_unused_ones_are_told() -> None:
    pause = '{"message_type":"PAUSE_REQUEST","message":"now"}'
    no = '{"message_type":"CHAT_INPUT","message":"no"}'
    line = build_timeline("main", catalog(main=ASK), answers=[pause, no])
    assert '{"message_type":"CHAT","message":"stopping (no)"}' in [cue.frame for cue in line]
    assert json.loads(line.cues[-1].frame)["content"] == "then "  # none left: an empty one
    assert line.unused == (pause,)


def test_set_changes_a_copy_of_the_state_and_later_steps_read_it() -> None:
    initial = {"turn": 1, "nested": {"a": 1}}
    source = (
        "steps:\n"
        "  - chunk: 'turn {{ state.turn }}'\n"
        "    delay: 1\n"
        "  - set: {turn: '{{ state.turn + 1 }}', paused: true}\n"
        "  - chunk: 'turn {{ state.turn }}, paused {{ state.paused }}'\n"
    )
    line = build_timeline("main", catalog(main=source), state=initial)
    assert [(cue.offset, cue.kind, cue.endpoint, cue.frame) for cue in line] == [
        (0.0, "frame", Endpoint.STREAM, '{"type":"default","content":"turn 1"}'),
        (1.0, "set", None, "set turn = 2, paused = true"),
        (1.0, "frame", Endpoint.STREAM, '{"type":"default","content":"turn 2, paused True"}'),
    ]
    assert initial == {"turn": 1, "nested": {"a": 1}}  # never the caller's
    assert line.cues[1].to_dict()["endpoint"] is None


def test_the_state_defaults_to_the_contexts_and_else_empty() -> None:
    source = "steps:\n  - chunk: '{{ state.x | default(\"none\") }}'\n"
    found = catalog(main=source)
    assert "none" in build_timeline("main", found).cues[0].frame
    ctx = Context("r", 0, state={"x": "given"})
    assert "given" in build_timeline("main", found, ctx).cues[0].frame
    assert "over" in build_timeline("main", found, ctx, state={"x": "over"}).cues[0].frame


def test_let_and_wait_connect_are_cues_and_a_connect_is_at_once() -> None:
    source = (
        "steps:\n"
        "  - let: {n: '{{ randint(1, 6) }}'}\n"
        "  - wait_connect: any\n"
        "    endpoint: /ws/stream\n"
        "    new: true\n"
        "    timeout: 30s\n"
        "  - wait_connect: tab-2\n"
        "  - chunk: 'n={{ vars.n }} for {{ sender }}'\n"
        "    to: sender\n"
    )
    line = build_timeline("main", catalog(main=source), Context("r", 0, sender="ui"))
    let, any_, tab, chunk = line.cues
    assert (let.kind, let.endpoint) == ("let", None)
    assert let.frame.startswith("let: n = ")
    assert (any_.kind, any_.endpoint, any_.to) == ("connect", "/ws/stream", "ui")
    assert any_.frame == "wait for a new connection from any client to /ws/stream, up to 30s"
    assert (tab.kind, tab.endpoint, tab.to) == ("connect", None, "tab-2")
    assert tab.frame == "wait for a connection from client 'tab-2', up to 60s"
    assert chunk.to == "ui"  # 'any' took the stand-in (the sender); 'tab-2' changed nothing
    assert line.waits == 2
    assert line.duration == 0.0


def test_a_route_wait_takes_a_request_answer_and_its_query() -> None:
    from replay.protocol.file import parse_protocol

    loaded = parse_protocol(
        "routes:\n  - method: POST\n    path: /chat/{room}\n    body: ok\n", "s/_protocol.yaml"
    )
    assert loaded.problems == ()
    source = (
        "steps:\n"
        "  - wait: POST /chat/{room}\n"
        "    fields: {query.user_input: '.'}\n"
        "  - message: CHAT\n"
        '    text: "{{ received.frame.params.room }}: {{ received.frame.query.user_input }}"\n'
    )
    found = Catalog.resolve([parse_scenario(source, "s/main.yaml", loaded.protocol)], loaded)
    answers = [
        "POST /chat/lobby",
        "GET /chat/lobby?user_input=no",
        "POST /chat/lobby?user_input=Hi",
    ]
    timeline = build_timeline("main", found, answers=answers)
    wait, frame = [cue for cue in timeline if cue.kind in ("wait", "frame")]
    assert wait.endpoint == "http"
    assert wait.frame.endswith("answered POST /chat/lobby?user_input=Hi")
    assert json.loads(frame.frame) == {"message_type": "CHAT", "message": "lobby: Hi"}
    # The first answer has no input (the wait's fields refuse it); the second is a GET.
    assert timeline.unused == ("POST /chat/lobby", "GET /chat/lobby?user_input=no")


# --- what a seed fixes, and what it does not (the README's "Repetition, jitter and seeds") ----

ONE_SEED = (
    "jitter: 50ms\n"
    "steps:\n"
    "  - message: EVENT\n"
    "    data: {id: '{{ uuid() }}', span: '{{ hex(16) }}', r: '{{ random() }}',\n"
    "           n: '{{ randint(1, 1000) }}', pick: '{{ choice([1, 2, 3]) }}'}\n"
    "    delay: 1s\n"
    "  - parallel: [side, side]\n"
    "  - chunk: 'run {{ run.id }} at {{ now.ms }}'\n"
)
SIDE_BRANCH = "steps:\n  - chunk: '{{ uuid() }}'\n    delay: 100ms\n    jitter: 90ms\n"


def seeded_frames(run_id: str, seed: int, epoch: float) -> list[tuple[float, str | None]]:
    found = Catalog.resolve(
        [
            parse_scenario(ONE_SEED, "scenarios/main.yaml"),
            parse_scenario(SIDE_BRANCH, "scenarios/side.yaml"),
        ]
    )
    timeline = build_timeline("main", found, Context(run_id=run_id, seed=seed, epoch=epoch))
    return [(cue.offset, cue.frame) for cue in timeline.cues]


def test_the_same_seed_plans_the_same_frames_but_for_run_id_and_now() -> None:
    first = seeded_frames("aaaaaaaaaaaa", 7, 1_700_000_000.0)
    second = seeded_frames("bbbbbbbbbbbb", 7, 1_700_000_500.0)
    # Every frame and offset the seed fixes is the same ...
    assert first[:-1] == second[:-1]
    assert first[-1][0] == second[-1][0]
    # ... and the last frame, which reads run.id and now, differs in exactly those.
    offset_ms = round(first[-1][0] * 1000)
    assert first[-1][1] == (
        f'{{"type":"default","content":"run aaaaaaaaaaaa at {1_700_000_000_000 + offset_ms}"}}'
    )
    assert second[-1][1] == (
        f'{{"type":"default","content":"run bbbbbbbbbbbb at {1_700_000_500_000 + offset_ms}"}}'
    )
    # Another seed changes the rest.
    assert seeded_frames("aaaaaaaaaaaa", 8, 1_700_000_000.0)[:-1] != first[:-1]


def test_an_unanswered_wait_of_a_dry_run_is_an_empty_message_in_the_endpoints_envelope() -> None:
    declared = parse_protocol(
        "extends: none\n"
        "endpoints:\n  /prices:\n    messages: {type: event, payload: body}\n"
        "message_types:\n  subscribe: {description: s, sent_by: client}\n  tick: t\n",
        "scenarios/_protocol.yaml",
    )
    source = (
        "steps:\n  - wait: subscribe\n  - message: tick\n"
        "    text: '{{ received.event }}/{{ received.message_type }}/{{ received.body }}.'\n"
    )
    loaded = parse_scenario(source, "scenarios/main.yaml", declared.protocol)
    assert loaded.valid, loaded.problems
    found = Catalog.resolve([loaded], declared)
    frames = [cue.frame for cue in build_timeline("main", found).cues if cue.kind == "frame"]
    assert frames == ['{"event":"tick","body":"subscribe/subscribe/."}']


def test_a_timeline_stops_where_it_is_told_to() -> None:
    found = catalog(main="steps:\n  - repeat: 50\n    steps:\n      - chunk: a\n")
    asked: list[int] = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 10

    cut = build_timeline("main", found, stop=stop)
    assert cut.truncated
    assert cut.duration is None
    assert len(cut) == 10
    assert len(build_timeline("main", found, stop=lambda: True)) == 0
    assert len(build_timeline("main", found, stop=lambda: False)) == 50
