"""The scenario models: step kinds, pauses, references, schema."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from replay.scenario import (
    NAME_PATTERN,
    STEP_KINDS,
    ChunkStep,
    CloseStep,
    MessageStep,
    ParallelStep,
    PlayStep,
    Scenario,
    SleepStep,
    ToolStep,
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
    assert set(STEP_KINDS) == {"message", "chunk", "tool", "close", "sleep", "play", "parallel"}


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
    assert set(schema["properties"]) == {"version", "description", "delay", "steps"}
    assert schema["required"] == ["steps"]
    text = str(schema)
    for kind in STEP_KINDS:
        assert f"'{kind}'" in text
