"""The engine: scenarios to timelines of cues, without I/O and without a clock."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from replay.catalog import Catalog
from replay.errors import ScenarioInvalid, ScenarioNotFound
from replay.library import ScenarioLibrary
from replay.loader import parse_scenario
from replay.protocol import Endpoint
from replay.timeline import MAX_SPEED, Timeline, build_timeline, check_speed, scaled

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
    assert [cue.step for cue in line] == [0, 1, 2, 3]
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
    assert cue.endpoint is Endpoint.MESSAGES
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
    assert [cue.step for cue in line] == [1, 3]
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


def test_at_speed_two_is_twice_as_fast(shipped: Catalog) -> None:
    line = build_timeline("all", shipped)
    fast = line.at_speed(2)
    assert [cue.offset for cue in fast] == pytest.approx([cue.offset / 2 for cue in line])
    assert fast.duration == pytest.approx(1.3)
    assert [cue.frame for cue in fast] == [cue.frame for cue in line]
    assert fast.scenario == "all"


def test_at_speed_half_is_twice_as_slow(shipped: Catalog) -> None:
    slow = build_timeline("messages", shipped).at_speed(0.5)
    assert [cue.offset for cue in slow] == pytest.approx([0, 1, 2, 3])
    assert slow.duration == pytest.approx(4.0)


def test_at_speed_zero_has_no_pauses(shipped: Catalog) -> None:
    line = build_timeline("all", shipped).at_speed(0)
    assert [cue.offset for cue in line] == [0.0] * 8
    assert line.duration == 0.0
    assert [cue.frame for cue in line] == [f for _, _, f in MESSAGES + STREAM]


def test_at_speed_one_is_the_same_timeline(shipped: Catalog) -> None:
    line = build_timeline("messages", shipped)
    assert line.at_speed(1) is line
    assert line.at_speed(1.0) == line


@pytest.mark.parametrize("speed", [-1, -0.001, math.nan, math.inf, -math.inf, MAX_SPEED + 1])
def test_invalid_speeds_raise(speed: float, shipped: Catalog) -> None:
    line = build_timeline("messages", shipped)
    with pytest.raises(ValueError, match="speed must be between 0"):
        line.at_speed(speed)
    with pytest.raises(ValueError, match="speed must be between 0"):
        check_speed(speed)


def test_speed_limits_are_accepted() -> None:
    assert check_speed(0) == 0
    assert check_speed(MAX_SPEED) == MAX_SPEED
    assert scaled(3.0, 0) == 0.0
    assert scaled(3.0, 1.5) == pytest.approx(2.0)


def test_scaling_keeps_order_for_many_speeds(shipped: Catalog) -> None:
    line = build_timeline("all", shipped)
    for speed in (0.1, 0.25, 1.5, 3, 7.5, 100, MAX_SPEED):
        fast = line.at_speed(speed)
        offsets = [cue.offset for cue in fast]
        assert offsets == sorted(offsets)
        assert fast.duration == pytest.approx(line.duration / speed)
        assert all(cue.offset <= fast.duration + 1e-9 for cue in fast)
