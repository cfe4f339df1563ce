"""The scenario models: step kinds, pauses, references, schema."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from replay.scenario import (
    FRAME_STEPS,
    MAX_RATE,
    MAX_REPEAT,
    NAME_PATTERN,
    STEP_KINDS,
    BinaryStep,
    ChooseStep,
    ChunkStep,
    ClientFrameMatch,
    CloseStep,
    DisconnectStep,
    DropStep,
    LetStep,
    MessageStep,
    OtherwiseBranch,
    ParallelStep,
    PlayStep,
    RawStep,
    RepeatStep,
    Scenario,
    SetStep,
    SleepStep,
    StreamStep,
    ToolStep,
    WaitConnectStep,
    WaitStep,
    WhenBranch,
    own_texts,
    step_kind,
)


def scenario(*steps: dict[str, Any], **fields: Any) -> Scenario:
    return Scenario.model_validate({"steps": list(steps), **fields})


def test_every_step_kind_validates_to_its_model() -> None:
    loaded = scenario(
        {"message": "EVENT", "text": "hi"},
        {"chunk": "a"},
        {"tool": "t"},
        {"close": "stream"},
        {"sleep": "2s"},
        {"play": "other"},
        {"parallel": ["x", "y-2"]},
    )
    kinds = [type(step) for step in loaded.steps]
    assert kinds == [
        MessageStep,
        ChunkStep,
        ToolStep,
        CloseStep,
        SleepStep,
        PlayStep,
        ParallelStep,
    ]
    sleep = loaded.steps[4]
    assert isinstance(sleep, SleepStep)
    assert sleep.sleep == 2.0
    assert loaded.version == 1
    assert loaded.description == ""
    assert loaded.delay == 0.0


def test_step_kind() -> None:
    assert step_kind({"chunk": "a", "delay": 1}) == "chunk"
    assert step_kind({"chunk": "a", "tool": "b"}) is None
    assert step_kind({"text": "a"}) is None
    assert step_kind("chunk") is None
    assert step_kind(ChunkStep(chunk="a")) == "chunk"
    assert set(STEP_KINDS) == {
        "message",
        "chunk",
        "tool",
        "close",
        "stream",
        "sleep",
        "play",
        "parallel",
        "repeat",
        "wait",
        "raw",
        "binary",
        "disconnect",
        "drop",
        "choose",
        "let",
        "set",
        "wait_connect",
    }
    assert step_kind({"repeat": 2, "steps": [{"chunk": "a"}]}) == "repeat"
    assert step_kind({"wait_connect": "any", "timeout": 1}) == "wait_connect"
    assert step_kind({"wait": "CHAT_INPUT", "timeout": 1}) == "wait"
    assert step_kind(WaitStep(wait="CHAT_INPUT")) == "wait"
    assert step_kind(DropStep(drop="all")) == "drop"


def test_pause_after() -> None:
    loaded = scenario(
        {"chunk": "a"},
        {"chunk": "b", "delay": "100ms"},
        {"sleep": 3},
        {"play": "x"},
        {"play": "x", "delay": 1},
        {"parallel": ["x"]},
        {"close": "stream", "delay": 0},
        delay=0.5,
    )
    pauses = [loaded.pause_after(step) for step in loaded.steps]
    assert pauses == pytest.approx([0.5, 0.1, 3.0, 0.0, 1.0, 0.0, 0.0])


def test_message_uses_data_or_text() -> None:
    step = scenario({"message": "EVENT", "data": {"a": 1}}).steps[0]
    assert isinstance(step, MessageStep)
    assert step.data == {"a": 1}
    assert step.text is None


@pytest.mark.parametrize(
    "step",
    [
        {"message": "EVENT"},
        {"message": "EVENT", "text": "a", "data": {"a": 1}},
        {"message": "NOPE", "text": "a"},
        {"chunk": ""},
        {"tool": ""},
        {"close": "socket"},
        {"play": "Bad Name"},
        {"parallel": []},
        {"parallel": ["ok", "NotOk"]},
        {"chunk": "a", "colour": "red"},
        {"sleep": 1, "delay": 1},
        {"sleep": -1},
        {"chunk": "a", "tool": "b"},
        {"nothing": 1},
    ],
)
def test_bad_steps_are_refused(step: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        scenario(step)


def test_data_that_has_no_json_text_is_refused() -> None:
    with pytest.raises(ValidationError, match="plain JSON"):
        scenario({"message": "EVENT", "data": {"when": datetime.date(2024, 1, 1)}})
    with pytest.raises(ValidationError, match="plain JSON"):
        scenario({"message": "EVENT", "data": [float("nan")]})


def test_message_types_come_from_the_context() -> None:
    data = {"steps": [{"message": "CUSTOM", "text": "x"}]}
    with pytest.raises(ValidationError, match="unknown message type 'CUSTOM'"):
        Scenario.model_validate(data)
    loaded = Scenario.model_validate(data, context={"message_types": {"CUSTOM": "mine"}})
    step = loaded.steps[0]
    assert isinstance(step, MessageStep)
    assert step.message == "CUSTOM"


def test_unknown_message_type_suggests_the_nearest() -> None:
    with pytest.raises(ValidationError, match="did you mean 'CHAT_REQUESTED'"):
        scenario({"message": "CHAT_REQUESTD", "text": "x"})


def test_scenario_needs_steps_and_version_one() -> None:
    with pytest.raises(ValidationError):
        Scenario.model_validate({"steps": []})
    with pytest.raises(ValidationError):
        Scenario.model_validate({})
    with pytest.raises(ValidationError):
        scenario({"chunk": "a"}, version=2)
    with pytest.raises(ValidationError):
        scenario({"chunk": "a"}, colour="red")


def test_models_are_frozen() -> None:
    loaded = scenario({"chunk": "a"})
    with pytest.raises(ValidationError):
        loaded.description = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("name", ["a", "all", "my-scenario_2", "0day"])
def test_valid_names(name: str) -> None:
    assert NAME_PATTERN.match(name)


@pytest.mark.parametrize("name", ["", "A", "-x", "_x", "a b", "a.b", "ü"])
def test_invalid_names(name: str) -> None:
    assert not NAME_PATTERN.match(name)


def test_json_schema_describes_the_format() -> None:
    schema = Scenario.model_json_schema()
    assert set(schema["properties"]) == {
        "version",
        "description",
        "delay",
        "jitter",
        "to",
        "vars",
        "reacts_to",
        "on_connect",
        "steps",
    }
    assert schema["required"] == ["steps"]
    text = str(schema)
    for kind in STEP_KINDS:
        assert f"'{kind}'" in text


# --- the newer step kinds -------------------------------------------------------------------


def test_new_step_kinds_validate_to_their_models() -> None:
    loaded = scenario(
        {"stream": "Hello there"},
        {"repeat": 2, "steps": [{"chunk": "a"}]},
        {"wait": "CHAT_INPUT"},
        {"raw": "{not json"},
        {"binary": "AAEC/w=="},
        {"disconnect": "all"},
        {"drop": "/ws/stream"},
    )
    kinds = [type(step) for step in loaded.steps]
    assert kinds == [
        StreamStep,
        RepeatStep,
        WaitStep,
        RawStep,
        BinaryStep,
        DisconnectStep,
        DropStep,
    ]
    stream, repeat, wait, raw, binary, disconnect, drop = loaded.steps
    assert isinstance(stream, StreamStep)
    assert (stream.rate, stream.type, stream.close_stream) == (30.0, "default", False)
    assert isinstance(repeat, RepeatStep)
    assert repeat.repeat == 2
    assert isinstance(repeat.steps[0], ChunkStep)
    assert isinstance(wait, WaitStep)
    assert (wait.timeout, wait.on_timeout, wait.match, wait.fields) == (60.0, "fail", None, None)
    assert isinstance(raw, RawStep)
    assert raw.endpoint is None  # the protocol's first endpoint: /ws for Schwarm
    assert isinstance(binary, BinaryStep)
    assert binary.payload == b"\x00\x01\x02\xff"
    assert binary.endpoint is None
    assert isinstance(disconnect, DisconnectStep)
    assert (disconnect.disconnect, disconnect.code, disconnect.reason) == ("all", 1000, "")
    assert isinstance(drop, DropStep)
    assert drop.drop == "/ws/stream"


def test_every_step_kind_has_a_model_and_a_test_here() -> None:
    assert set(STEP_KINDS.values()) == {
        MessageStep,
        ChunkStep,
        ToolStep,
        CloseStep,
        StreamStep,
        SleepStep,
        PlayStep,
        ParallelStep,
        RepeatStep,
        WaitStep,
        RawStep,
        BinaryStep,
        DisconnectStep,
        DropStep,
        ChooseStep,
        LetStep,
        SetStep,
        WaitConnectStep,
    }


def test_new_step_kinds_with_all_their_fields() -> None:
    loaded = scenario(
        {"stream": "x", "rate": 40, "type": "tool", "close_stream": True, "to": "sender"},
        {"wait": "PAUSE_REQUEST", "match": "pa.se", "fields": {"message.a": "^b$"}},
        {"wait": "CHAT_INPUT", "timeout": "5m", "on_timeout": "continue"},
        {"raw": "x", "endpoint": "/ws/stream", "delay": "1s", "jitter": "10ms"},
        {"binary": "", "endpoint": "/ws/stream"},
        {"disconnect": "/ws", "code": 4000, "reason": "bye", "to": "browser-1"},
        {"repeat": "forever", "steps": [{"sleep": 1}], "to": "all"},
    )
    stream, wait, timed, raw, binary, disconnect, repeat = loaded.steps
    assert isinstance(stream, StreamStep)
    assert (stream.rate, stream.type, stream.close_stream, stream.to) == (
        40.0,
        "tool",
        True,
        "sender",
    )
    assert isinstance(wait, WaitStep)
    assert wait.matcher == ClientFrameMatch(
        message="PAUSE_REQUEST", match="pa.se", fields={"message.a": "^b$"}
    )
    assert isinstance(timed, WaitStep)
    assert (timed.timeout, timed.on_timeout) == (300.0, "continue")
    assert isinstance(raw, RawStep)
    assert (raw.endpoint, raw.delay, raw.jitter) == ("/ws/stream", 1.0, 0.01)
    assert isinstance(binary, BinaryStep)
    assert binary.payload == b""
    assert isinstance(disconnect, DisconnectStep)
    assert (disconnect.code, disconnect.reason, disconnect.to) == (4000, "bye", "browser-1")
    assert isinstance(repeat, RepeatStep)
    assert repeat.repeat == "forever"


@pytest.mark.parametrize(
    "step",
    [
        {"stream": "x", "colour": "red"},
        {"repeat": 2, "steps": [{"chunk": "a"}], "colour": "red"},
        {"wait": "CHAT_INPUT", "colour": "red"},
        {"wait": "CHAT_INPUT", "delay": 1},  # a wait has no pause of its own
        {"wait": "CHAT_INPUT", "to": "all"},
        {"raw": "x", "colour": "red"},
        {"binary": "AA==", "colour": "red"},
        {"disconnect": "all", "colour": "red"},
        {"drop": "all", "code": 1000},
        {"sleep": 1, "to": "all"},
        {"repeat": 2, "steps": [{"chunk": "a", "colour": "red"}]},  # nested steps too
    ],
)
def test_new_step_kinds_forbid_extra_fields(step: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        scenario(step)


@pytest.mark.parametrize(
    "step",
    [
        {"stream": ""},
        {"stream": "x", "type": "close"},
        {"stream": "x", "close_stream": "maybe"},
        {"repeat": 2},
        {"repeat": 2, "steps": []},
        {"repeat": 2, "steps": [{"nothing": 1}]},
        {"repeat": 2, "steps": [{"message": "NOPE", "text": "x"}]},
        {"wait": "NOPE"},
        {"wait": "CHAT_INPUT", "timeout": "soon"},
        {"raw": "x", "endpoint": "/other"},
        {"raw": 5},
        {"binary": "AA==", "endpoint": "all"},
        {"disconnect": "everything"},
        {"drop": "/elsewhere"},
        {"drop": None},
    ],
)
def test_bad_new_steps_are_refused(step: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        scenario(step)


@pytest.mark.parametrize("count", [1, 2, MAX_REPEAT, "forever"])
def test_repeat_counts(count: int | str) -> None:
    step = scenario({"repeat": count, "steps": [{"chunk": "a"}]}).steps[0]
    assert isinstance(step, RepeatStep)
    assert step.repeat == count


@pytest.mark.parametrize("count", [0, -1, MAX_REPEAT + 1, "never", "Forever", 2.5, None])
def test_bad_repeat_counts(count: object) -> None:
    with pytest.raises(ValidationError):
        scenario({"repeat": count, "steps": [{"chunk": "a"}]})


def test_repeat_count_error_says_what_is_allowed() -> None:
    with pytest.raises(ValidationError) as caught:
        scenario({"repeat": 0, "steps": [{"chunk": "a"}]})
    [error] = caught.value.errors()
    assert error["type"] == "repeat_count"
    assert error["ctx"] == {"expected": f"1 to {MAX_REPEAT} or 'forever'", "found": "0"}


@pytest.mark.parametrize("value", [True, False])
def test_repeat_count_is_not_a_boolean(value: bool) -> None:
    # YAML reads `repeat: yes` as True; it must not quietly mean "once".
    with pytest.raises(ValidationError):
        scenario({"repeat": value, "steps": [{"chunk": "a"}]})


def test_repeat_nests() -> None:
    loaded = scenario(
        {"repeat": 2, "steps": [{"repeat": 3, "steps": [{"wait": "CHAT_INPUT"}]}, {"drop": "all"}]}
    )
    outer = loaded.steps[0]
    assert isinstance(outer, RepeatStep)
    inner = outer.steps[0]
    assert isinstance(inner, RepeatStep)
    assert isinstance(inner.steps[0], WaitStep)
    assert isinstance(outer.steps[1], DropStep)


@pytest.mark.parametrize("value", ["fail", "continue"])
def test_wait_on_timeout(value: str) -> None:
    step = scenario({"wait": "CHAT_INPUT", "on_timeout": value}).steps[0]
    assert isinstance(step, WaitStep)
    assert step.on_timeout == value


@pytest.mark.parametrize("value", ["skip", "Fail", "", None, True])
def test_bad_wait_on_timeout(value: object) -> None:
    with pytest.raises(ValidationError):
        scenario({"wait": "CHAT_INPUT", "on_timeout": value})


@pytest.mark.parametrize("pattern", ["(", "[a-", "*", "a{2,1}", "\\pX"])
def test_bad_regular_expressions_are_refused(pattern: str) -> None:
    with pytest.raises(ValidationError, match="not a regular expression"):
        scenario({"wait": "CHAT_INPUT", "match": pattern})
    with pytest.raises(ValidationError, match="not a regular expression"):
        scenario({"wait": "CHAT_INPUT", "fields": {"message.a": "ok", "message.b": pattern}})
    with pytest.raises(ValidationError, match="not a regular expression"):
        scenario({"chunk": "a"}, reacts_to={"message": "CHAT_INPUT", "match": pattern})
    with pytest.raises(ValidationError, match="not a regular expression"):
        scenario({"chunk": "a"}, reacts_to={"message": "CHAT_INPUT", "fields": {"a": pattern}})


def test_good_regular_expressions_are_kept() -> None:
    loaded = scenario(
        {"wait": "CHAT_INPUT", "match": r"^\d+$", "fields": {"message.a": "(?i)yes|no"}},
        reacts_to={"message": "PAUSE_REQUEST", "match": "", "fields": {"message_type": "."}},
    )
    wait = loaded.steps[0]
    assert isinstance(wait, WaitStep)
    assert wait.match == r"^\d+$"
    assert loaded.reacts_to == ClientFrameMatch(
        message="PAUSE_REQUEST", match="", fields={"message_type": "."}
    )


@pytest.mark.parametrize(
    "pattern",
    [r"(?=x)", r"(a)\1", r"(?P<a>x)(?P=a)", r"(?<!x)y", r"(?>x)", r"x*+", r"(?(1)x|y)"],
)
def test_patterns_that_need_backtracking_are_refused_everywhere(pattern: str) -> None:
    refused = "this pattern needs backtracking"
    with pytest.raises(ValidationError, match=refused):
        scenario({"wait": "CHAT_INPUT", "match": pattern})
    with pytest.raises(ValidationError, match=refused):
        scenario({"wait": "CHAT_INPUT", "fields": {"message.a": "ok", "message.b": pattern}})
    with pytest.raises(ValidationError, match=refused):
        scenario({"chunk": "a"}, reacts_to={"message": "CHAT_INPUT", "match": pattern})
    with pytest.raises(ValidationError, match=refused):
        scenario({"chunk": "a"}, reacts_to={"message": "CHAT_INPUT", "fields": {"a": pattern}})


@pytest.mark.parametrize(
    "pattern",
    [
        r"\pL+",  # RE2 syntax that Python's re lacks
        r"^\p{Greek}",
        r"end\z",
        r"[[:alpha:]]",
        r"(?P<x>a)(?P<x>b)",  # RE2 allows a name twice; groups are never read
        r"(?i)^(yes|no)$",
    ],
)
def test_re2_syntax_is_accepted(pattern: str) -> None:
    loaded = scenario({"wait": "CHAT_INPUT", "match": pattern, "fields": {"a": pattern}})
    wait = loaded.steps[0]
    assert isinstance(wait, WaitStep)
    assert (wait.match, wait.fields) == (pattern, {"a": pattern})


def test_reacts_to_checks_the_message_type_and_fields() -> None:
    with pytest.raises(ValidationError, match="unknown message type 'PAUSE_REQEST'"):
        scenario({"chunk": "a"}, reacts_to={"message": "PAUSE_REQEST"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        scenario({"chunk": "a"}, reacts_to={"message": "PAUSE_REQUEST", "mach": "x"})
    with pytest.raises(ValidationError):
        scenario({"chunk": "a"}, reacts_to={"match": "x"})


@pytest.mark.parametrize("value", ["AAEC/w==", "", "aGVsbG8=", "AA=="])
def test_binary_base64(value: str) -> None:
    step = scenario({"binary": value}).steps[0]
    assert isinstance(step, BinaryStep)
    assert step.binary == value


@pytest.mark.parametrize("value", ["not base64!", "AAE", "A", "AA=A", "AA==\n!", "éé=="])
def test_binary_must_be_base64(value: str) -> None:
    with pytest.raises(ValidationError, match="not base64"):
        scenario({"binary": value})


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1010, 1011, 1014, 3000, 4000, 4999])
def test_close_codes_a_server_may_send(code: int) -> None:
    step = scenario({"disconnect": "all", "code": code}).steps[0]
    assert isinstance(step, DisconnectStep)
    assert step.code == code


@pytest.mark.parametrize(
    "code", [999, 0, -1, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]
)
def test_close_codes_a_server_may_not_send(code: int) -> None:
    with pytest.raises(ValidationError, match="not a close code a server may send") as caught:
        scenario({"disconnect": "all", "code": code})
    [error] = caught.value.errors()
    assert error["ctx"]["expected"] == "1000-1003, 1007-1014 or 3000-4999"
    assert error["ctx"]["found"] == str(code)


def test_close_reason_is_at_most_123_bytes() -> None:
    for reason in ["", "a" * 123, "é" * 61, "👋" * 30]:
        step = scenario({"disconnect": "all", "reason": reason}).steps[0]
        assert isinstance(step, DisconnectStep)
        assert step.reason == reason
    for reason in ["a" * 124, "é" * 62, "👋" * 31]:
        with pytest.raises(ValidationError, match="close reason too long"):
            scenario({"disconnect": "all", "reason": reason})


@pytest.mark.parametrize(
    "target", ["all", "sender", "browser-1", "a.b:c_d", "A9", "x" * 64, "client:42"]
)
def test_targets(target: str) -> None:
    loaded = scenario({"chunk": "a", "to": target}, to=target)
    assert loaded.to == target
    step = loaded.steps[0]
    assert isinstance(step, ChunkStep)
    assert step.to == target


@pytest.mark.parametrize("target", ["", "x" * 65, "a b", "ü", "a/b", "all!", "*", "a\nb"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(ValidationError, match="not a target"):
        scenario({"chunk": "a", "to": target})
    with pytest.raises(ValidationError, match="not a target"):
        scenario({"chunk": "a"}, to=target)


def test_every_targeted_step_takes_to() -> None:
    steps: list[dict[str, Any]] = [
        {"message": "EVENT", "text": "x"},
        {"chunk": "a"},
        {"tool": "a"},
        {"close": "stream"},
        {"stream": "a"},
        {"play": "x"},
        {"parallel": ["x"]},
        {"repeat": 1, "steps": [{"chunk": "a"}]},
        {"raw": "a"},
        {"binary": "AA=="},
        {"disconnect": "all"},
        {"drop": "all"},
    ]
    for step in steps:
        loaded = scenario({**step, "to": "sender"})
        assert getattr(loaded.steps[0], "to") == "sender"  # noqa: B009


@pytest.mark.parametrize("rate", [0.001, 1, 30, MAX_RATE])
def test_stream_rates(rate: float) -> None:
    step = scenario({"stream": "x", "rate": rate}).steps[0]
    assert isinstance(step, StreamStep)
    assert step.rate == rate


@pytest.mark.parametrize("rate", [0, -1, MAX_RATE + 0.5, float("inf"), float("nan"), "fast"])
def test_bad_stream_rates(rate: object) -> None:
    with pytest.raises(ValidationError):
        scenario({"stream": "x", "rate": rate})


def test_stream_rate_is_not_a_boolean() -> None:
    # YAML reads `rate: yes` as True; it must not quietly mean one token a second.
    with pytest.raises(ValidationError):
        scenario({"stream": "x", "rate": True})


# --- scenario fields ------------------------------------------------------------------------


def test_scenario_defaults() -> None:
    loaded = scenario({"chunk": "a"})
    assert loaded.jitter == 0.0
    assert loaded.to is None
    assert loaded.vars == {}
    assert loaded.reacts_to is None
    assert loaded.on_connect is False


def test_scenario_fields() -> None:
    loaded = scenario(
        {"chunk": "a"},
        jitter="50ms",
        to="sender",
        vars={"name": "Ada", "n": [1, {"a": None}]},
        reacts_to={"message": "CHAT_INPUT", "match": "hi"},
        on_connect=True,
    )
    assert loaded.jitter == 0.05
    assert loaded.to == "sender"
    assert loaded.vars == {"name": "Ada", "n": [1, {"a": None}]}
    assert loaded.reacts_to == ClientFrameMatch(message="CHAT_INPUT", match="hi")
    assert loaded.on_connect is True


def test_vars_must_be_plain_json() -> None:
    with pytest.raises(ValidationError, match="plain JSON"):
        scenario({"chunk": "a"}, vars={"when": datetime.date(2024, 1, 1)})
    with pytest.raises(ValidationError, match="plain JSON"):
        scenario({"chunk": "a"}, vars={"x": float("inf")})
    with pytest.raises(ValidationError):
        scenario({"chunk": "a"}, vars=["a"])


def test_bad_jitter() -> None:
    with pytest.raises(ValidationError):
        scenario({"chunk": "a"}, jitter=-1)
    with pytest.raises(ValidationError):
        scenario({"chunk": "a", "jitter": "soon"})


# --- pauses ---------------------------------------------------------------------------------


def test_frame_steps() -> None:
    assert set(FRAME_STEPS) == {
        MessageStep,
        ChunkStep,
        ToolStep,
        CloseStep,
        StreamStep,
        RawStep,
        BinaryStep,
    }


def test_pause_after_new_steps() -> None:
    loaded = scenario(
        {"message": "EVENT", "text": "x"},
        {"stream": "x"},
        {"raw": "x"},
        {"binary": "AA=="},
        {"wait": "CHAT_INPUT", "timeout": 9},
        {"disconnect": "all"},
        {"drop": "all"},
        {"repeat": 2, "steps": [{"chunk": "a"}]},
        {"stream": "x", "delay": 2},
        {"disconnect": "all", "delay": "1s"},
        {"drop": "all", "delay": 3},
        {"repeat": 2, "steps": [{"chunk": "a"}], "delay": 4},
        {"raw": "x", "delay": 0},
        delay=0.5,
    )
    pauses = [loaded.pause_after(step) for step in loaded.steps]
    assert pauses == pytest.approx(
        [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 3.0, 4.0, 0.0]
    )


def test_pause_after_steps_inside_a_repeat() -> None:
    loaded = scenario({"repeat": 2, "steps": [{"chunk": "a"}, {"sleep": 2}]}, delay=0.25)
    repeat = loaded.steps[0]
    assert isinstance(repeat, RepeatStep)
    assert [loaded.pause_after(step) for step in repeat.steps] == pytest.approx([0.25, 2.0])


def test_jitter_of() -> None:
    loaded = scenario(
        {"chunk": "a"},
        {"chunk": "a", "jitter": "20ms"},
        {"chunk": "a", "jitter": 0},
        {"sleep": 1},
        {"sleep": 1, "jitter": 0.5},
        {"stream": "x", "jitter": 0.01},
        {"disconnect": "all"},
        {"wait": "CHAT_INPUT"},
        jitter=0.1,
    )
    jitters = [loaded.jitter_of(step) for step in loaded.steps]
    assert jitters == pytest.approx([0.1, 0.02, 0.0, 0.1, 0.5, 0.01, 0.1, 0.1])
    assert scenario({"chunk": "a"}).jitter_of(ChunkStep(chunk="a")) == 0.0


# --- texts ----------------------------------------------------------------------------------


def test_texts_yields_every_template_field_with_its_path() -> None:
    loaded = scenario(
        {"message": "EVENT", "text": "t"},
        {"chunk": "c"},
        {"tool": "tl"},
        {"stream": "s"},
        {"raw": "r"},
        {"binary": "AA=="},
        {"close": "stream"},
        {"play": "p"},
        {"wait": "CHAT_INPUT", "match": "not a template"},
        {"message": "EVENT", "data": {"a": ["x", {"b": "y"}, 1, None, True], "k": "z"}},
        {"message": "EVENT", "data": ["l0", ["l1"]]},
        vars={"v": "not a template"},
        description="not a template",
    )
    assert list(loaded.texts()) == [
        (("steps", 0, "text"), "t"),
        (("steps", 1, "chunk"), "c"),
        (("steps", 2, "tool"), "tl"),
        (("steps", 3, "stream"), "s"),
        (("steps", 4, "raw"), "r"),
        (("steps", 9, "data", "a", 0), "x"),
        (("steps", 9, "data", "a", 1, "b"), "y"),
        (("steps", 9, "data", "k"), "z"),
        (("steps", 10, "data", 0), "l0"),
        (("steps", 10, "data", 1, 0), "l1"),
    ]


def test_texts_walks_nested_repeat_steps() -> None:
    loaded = scenario(
        {"chunk": "before"},
        {
            "repeat": 2,
            "steps": [
                {"chunk": "c"},
                {
                    "repeat": "forever",
                    "steps": [
                        {"message": "EVENT", "data": {"a": ["x", {"b": "y"}]}},
                        {"stream": "s"},
                    ],
                },
                {"raw": "r"},
            ],
        },
        {"tool": "after"},
    )
    assert list(loaded.texts()) == [
        (("steps", 0, "chunk"), "before"),
        (("steps", 1, "steps", 0, "chunk"), "c"),
        (("steps", 1, "steps", 1, "steps", 0, "data", "a", 0), "x"),
        (("steps", 1, "steps", 1, "steps", 0, "data", "a", 1, "b"), "y"),
        (("steps", 1, "steps", 1, "steps", 1, "stream"), "s"),
        (("steps", 1, "steps", 2, "raw"), "r"),
        (("steps", 2, "tool"), "after"),
    ]


# --- waiting for and reacting to declared HTTP routes ----------------------------------------


class _Routes:
    """A stand-in for the parsed protocol file: only its routes matter here."""

    def __init__(self, *keys: str) -> None:
        self.routes = [_Key(*key.split(" ", 1)) for key in keys]


class _Key:
    def __init__(self, method: str, path: str) -> None:
        self.method, self.path = method, path


def with_routes(data: dict[str, Any], *keys: str) -> Scenario:
    return Scenario.model_validate(data, context={"protocol": _Routes(*keys)})


def test_a_wait_or_reaction_may_name_a_declared_route() -> None:
    loaded = with_routes(
        {
            "reacts_to": {"message": "POST /break"},
            "steps": [{"wait": "post /chat", "fields": {"query.user_input": "."}}],
        },
        "POST /chat",
        "POST /break",
        "GET /break",
    )
    assert loaded.reacts_to is not None
    assert loaded.reacts_to.message == "POST /break"
    wait = loaded.steps[0]
    assert isinstance(wait, WaitStep)
    assert wait.wait == "POST /chat"  # the method as routes write it
    assert wait.matcher.message == "POST /chat"


def test_a_route_that_is_not_declared_suggests_those_that_are() -> None:
    with pytest.raises(ValidationError) as raised:
        with_routes({"steps": [{"wait": "POST /chta"}]}, "POST /chat", "GET /break")
    [error] = raised.value.errors()
    assert error["loc"] == ("steps", 0, "wait", "wait")
    assert error["type"] == "route_key"
    assert error["msg"] == "no route 'POST /chta' is declared (did you mean 'POST /chat'?)"
    assert error["ctx"]["expected"] == (
        "a route declared under 'routes:' in _protocol.yaml: POST /chat, GET /break"
    )


def test_without_a_protocol_no_route_is_declared() -> None:
    with pytest.raises(ValidationError) as raised:
        scenario({"wait": "POST /chat"})
    [error] = raised.value.errors()
    assert error["ctx"]["expected"].endswith("(none are)")
    with pytest.raises(ValidationError):
        Scenario.model_validate(
            {"reacts_to": {"message": "GET /break"}, "steps": [{"message": "EVENT", "text": "x"}]}
        )


def test_a_route_is_not_a_message_type_to_send() -> None:
    with pytest.raises(ValidationError) as raised:
        with_routes({"steps": [{"message": "POST /chat", "text": "x"}]}, "POST /chat")
    assert raised.value.errors()[0]["type"] == "message_type"


def test_a_wait_for_a_project_message_type_has_a_matcher() -> None:
    # The matcher is not validated again, out of the project's context.
    wait = WaitStep.model_validate(
        {"wait": "TOKEN_USAGE", "match": "x"}, context={"message_types": {"TOKEN_USAGE": "t"}}
    )
    assert (wait.matcher.message, wait.matcher.match) == ("TOKEN_USAGE", "x")


# --- choose, let, set, wait_connect -----------------------------------------------------------


def choose(*branches: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"choose": list(branches), **fields}


def test_choose_validates_its_branches_in_order() -> None:
    loaded = scenario(
        choose(
            {"when": "state.paused", "steps": [{"chunk": "a"}]},
            {"when": "vars.x", "steps": [{"chunk": "b"}, {"chunk": "c"}]},
            {"otherwise": [{"tool": "t"}]},
            to="sender",
        )
    )
    [step] = loaded.steps
    assert isinstance(step, ChooseStep)
    assert step.to == "sender"
    first, second, last = step.choose
    assert isinstance(first, WhenBranch)
    assert first.when == "state.paused"
    assert isinstance(second, WhenBranch)
    assert isinstance(last, OtherwiseBranch)
    assert [(path, condition, len(steps)) for path, condition, steps in step.branches()] == [
        (("choose", 0, "steps"), "state.paused", 1),
        (("choose", 1, "steps"), "vars.x", 2),
        (("choose", 2, "otherwise"), None, 1),
    ]
    assert loaded.pause_after(step) == 0.0


def test_choose_without_otherwise_is_fine() -> None:
    [step] = scenario(choose({"when": "true", "steps": [{"chunk": "a"}]})).steps
    assert isinstance(step, ChooseStep)
    assert len(step.choose) == 1


def only_error(step: dict[str, Any]) -> dict[str, Any]:
    """The one validation error of a scenario with this one step."""
    with pytest.raises(ValidationError) as raised:
        scenario(step)
    [error] = raised.value.errors()
    return dict(error)


def test_otherwise_must_be_the_last_branch() -> None:
    error = only_error(
        choose({"otherwise": [{"chunk": "a"}]}, {"when": "true", "steps": [{"chunk": "b"}]})
    )
    assert error["type"] == "otherwise_last"
    assert error["ctx"]["at"] == (0,)  # the loader locates it on the branch
    assert "'otherwise' must be the last branch" in error["msg"]
    twice = choose({"otherwise": [{"chunk": "a"}]}, {"otherwise": [{"chunk": "b"}]})
    assert only_error(twice)["type"] == "otherwise_last"


@pytest.mark.parametrize(
    "step",
    [
        choose(),
        {"choose": "state.x"},
        choose({"when": "x"}),  # no steps
        choose({"when": "x", "steps": []}),
        choose({"when": "", "steps": [{"chunk": "a"}]}),
        choose({"otherwise": []}),
        choose({"whenn": "x", "steps": [{"chunk": "a"}]}),
        choose({"when": "x", "otherwise": [{"chunk": "a"}]}),
        choose({"when": "x", "steps": [{"chunk": "a"}], "colour": "red"}),
        choose({"when": "x", "steps": [{"nope": 1}]}),
        choose({"when": "x", "steps": [{"chunk": "a"}]}, delay="soon"),
        {"let": {}},
        {"let": {"a-b": 1}},
        {"let": {"_private": 1}},
        {"let": {"x": float("nan")}},
        {"let": ["x"]},
        {"let": {"x": 1}, "delay": 1},
        {"set": {}},
        {"set": {"1st": True}},
        {"set": {"x": 1}, "to": "all"},
        {"wait_connect": "has spaces"},
        {"wait_connect": "any", "endpoint": "ws"},
        {"wait_connect": "any", "new": "perhaps"},
        {"wait_connect": "any", "timeout": "2h"},
        {"wait_connect": "any", "on_timeout": "skip"},
        {"wait_connect": "any", "to": "sender"},
    ],
)
def test_bad_choose_let_set_and_wait_connect_steps_are_refused(step: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        scenario(step)


def test_let_and_set_take_json_values_under_names_templates_can_read() -> None:
    let, set_ = scenario(
        {"let": {"order": "{{ uuid() }}", "n": 3, "deep": {"a": ["{{ now.ms }}"]}}},
        {"set": {"paused": True, "Turn_2": "{{ state.turn + 1 }}"}},
    ).steps
    assert isinstance(let, LetStep)
    assert let.let == {"order": "{{ uuid() }}", "n": 3, "deep": {"a": ["{{ now.ms }}"]}}
    assert isinstance(set_, SetStep)
    assert set_.set == {"paused": True, "Turn_2": "{{ state.turn + 1 }}"}


def test_a_bad_binding_name_says_which_and_where() -> None:
    error = only_error({"let": {"ok": 1, "not-ok": 2}})
    assert error["type"] == "binding_name"
    assert error["ctx"]["at"] == ("not-ok",)
    assert error["ctx"]["found"] == "'not-ok'"


def test_wait_connect_fields_and_defaults() -> None:
    plain, full = scenario(
        {"wait_connect": "any"},
        {
            "wait_connect": "browser-1",
            "endpoint": "/ws/stream",
            "new": True,
            "timeout": "30s",
            "on_timeout": "continue",
        },
    ).steps
    assert isinstance(plain, WaitConnectStep)
    assert (plain.endpoint, plain.new, plain.timeout, plain.on_timeout) == (
        None,
        False,
        60.0,
        "fail",
    )
    assert isinstance(full, WaitConnectStep)
    assert (full.wait_connect, full.endpoint, full.new, full.timeout, full.on_timeout) == (
        "browser-1",
        "/ws/stream",
        True,
        30.0,
        "continue",
    )
    assert scenario(plain.model_dump()).pause_after(plain) == 0.0


def test_texts_include_let_and_set_values_and_choose_branches() -> None:
    loaded = scenario(
        {"let": {"a": "{{ uuid() }}", "b": [1, "x"]}},
        choose(
            {"when": "not a text", "steps": [{"chunk": "in when"}]},
            {"otherwise": [{"repeat": 2, "steps": [{"set": {"k": "v"}}]}]},
        ),
    )
    assert list(loaded.texts()) == [
        (("steps", 0, "let", "a"), "{{ uuid() }}"),
        (("steps", 0, "let", "b", 1), "x"),
        (("steps", 1, "choose", 0, "steps", 0, "chunk"), "in when"),
        (("steps", 1, "choose", 1, "otherwise", 0, "steps", 0, "set", "k"), "v"),
    ]


def test_conditions_are_found_at_any_depth() -> None:
    inner = choose({"when": "state.b", "steps": [{"chunk": "b"}]})
    loaded = scenario(
        choose({"when": "state.a", "steps": [inner]}, {"otherwise": [{"chunk": "c"}]}),
        {"repeat": 2, "steps": [choose({"when": "iteration > 0", "steps": [{"chunk": "d"}]})]},
    )
    assert list(loaded.conditions()) == [
        (("steps", 0, "choose", 0, "when"), "state.a"),
        (("steps", 0, "choose", 0, "steps", 0, "choose", 0, "when"), "state.b"),
        (("steps", 1, "steps", 0, "choose", 0, "when"), "iteration > 0"),
    ]


def test_bound_names_are_every_let_in_the_file() -> None:
    loaded = scenario(
        {"let": {"a": 1}},
        {"repeat": 2, "steps": [{"let": {"b": 2}}]},
        choose({"when": "true", "steps": [{"let": {"c": 3}}]}, {"otherwise": [{"let": {"d": 4}}]}),
        vars={"declared": 0},
    )
    assert loaded.bound_names() == {"a", "b", "c", "d"}


def test_own_texts_are_a_steps_own_not_those_it_holds() -> None:
    [step] = scenario(
        {"repeat": 2, "steps": [{"chunk": "{{ state.x }}"}]},
    ).steps
    assert list(own_texts(step)) == []
    [message] = scenario({"message": "EVENT", "data": {"a": "{{ state.x }}"}}).steps
    assert list(own_texts(message)) == [(("data", "a"), "{{ state.x }}")]


def test_a_file_s_waits_are_its_own_nested_ones_each_once_worked_out_once() -> None:
    loaded = scenario(
        {"wait": "CHAT_INPUT"},
        {"repeat": 3, "steps": [{"wait": "CHAT_INPUT"}, {"chunk": "a"}]},
        {
            "choose": [
                {"when": "vars.x", "steps": [{"wait": "CHAT_INPUT", "match": "^go$"}]},
                {"otherwise": [{"chunk": "b"}]},
            ]
        },
        {"play": "other"},
        vars={"x": True},
    )
    awaits = loaded.awaits
    assert [(match.message, match.match) for match in awaits.values()] == [
        ("CHAT_INPUT", None),
        ("CHAT_INPUT", "^go$"),
    ]
    assert loaded.awaits is awaits  # kept with the model: one walk per version of a file


def test_let_names_are_worked_out_once() -> None:
    loaded = scenario({"let": {"a": 1}}, {"repeat": 2, "steps": [{"let": {"b": 2}}]})
    names = loaded.bound_names()
    assert names == {"a", "b"}
    assert loaded.bound_names() is names
    assert loaded == scenario({"let": {"a": 1}}, {"repeat": 2, "steps": [{"let": {"b": 2}}]})
