"""The JSON Schema of scenario files, for editors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from replay.protocol import MESSAGE_TYPES
from replay.protocol.declaration import MessageTypeDeclaration, Protocol
from replay.protocol.file import parse_protocol
from replay.protocol.schwarm import SCHWARM
from replay.scenario import STEP_KINDS, Scenario
from replay.schema import SCHEMA_URI, scenario_schema

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"
#: The shipped scenario files (files starting with '_' are not scenarios).
SCENARIO_FILES = sorted(p for p in SHIPPED.glob("*.yaml") if not p.name.startswith("_"))

#: Where each model's message type field sits in the schema.
TYPED_FIELDS = [("MessageStep", "message"), ("WaitStep", "wait"), ("ClientFrameMatch", "message")]


def shipped_protocol() -> Protocol:
    protocol = SHIPPED / "_protocol.yaml"
    if not protocol.exists():
        return SCHWARM
    loaded = parse_protocol(protocol.read_bytes(), str(protocol))
    assert loaded.problems == ()
    return loaded.protocol


def only(types: dict[str, str]) -> Protocol:
    """Schwarm's endpoints with only these message types."""
    declared = {name: MessageTypeDeclaration(description=text) for name, text in types.items()}
    return dataclasses.replace(SCHWARM, message_types=declared)


def validator(protocol: Protocol = SCHWARM) -> Draft202012Validator:
    return Draft202012Validator(scenario_schema(protocol))


def errors(document: Any, protocol: Protocol = SCHWARM) -> list[str]:
    return [error.message for error in validator(protocol).iter_errors(document)]


def test_schema_is_valid_json_schema() -> None:
    schema = scenario_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_URI
    assert schema["title"] == "replay scenario"
    json.dumps(schema)  # printable as JSON


def test_schema_with_project_types_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(scenario_schema(SCHWARM.with_types({"TOKEN_USAGE": "x"})))


def test_there_are_shipped_scenarios() -> None:
    assert len(SCENARIO_FILES) >= 3


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda path: path.name)
def test_every_shipped_scenario_validates(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert errors(document, shipped_protocol()) == []


@pytest.mark.parametrize(
    "document",
    [
        {"steps": [{"chunk": "a"}]},
        {
            "version": 1,
            "description": "all of it",
            "delay": "500ms",
            "jitter": 0.1,
            "to": "sender",
            "vars": {"name": "x", "n": [1, {"a": None}]},
            "reacts_to": {"message": "PAUSE_REQUEST", "match": "pause", "fields": {"a.b": "c"}},
            "on_connect": True,
            "steps": [
                {"message": "EVENT", "data": {"a": "{{ vars.name }}"}, "to": "browser-1"},
                {"message": "CHAT", "text": "hi", "delay": 0, "jitter": "20ms"},
                {"chunk": "a"},
                {"tool": "t"},
                {"close": "stream"},
                {"stream": "text", "rate": 40, "type": "tool", "close_stream": True},
                {"sleep": "2s", "jitter": 1},
                {"play": "other"},
                {"parallel": ["a", "b"]},
                {
                    "repeat": 3,
                    "steps": [{"chunk": "x"}, {"repeat": "forever", "steps": [{"tool": "y"}]}],
                },
                {"wait": "CHAT_INPUT", "timeout": "5m", "on_timeout": "continue"},
                {"raw": "{not json", "endpoint": "/ws/stream"},
                {"binary": "AAEC/w==", "endpoint": "/ws"},
                {"disconnect": "all", "code": 4000, "reason": "bye"},
                {"drop": "/ws"},
                {"let": {"order": "{{ uuid() }}", "n": 3}},
                {"set": {"paused": True, "turn": "{{ state.turn + 1 }}"}},
                {
                    "choose": [
                        {"when": "state.paused", "steps": [{"chunk": "p"}]},
                        {
                            "when": "vars.name",
                            "steps": [{"choose": [{"otherwise": [{"tool": "t"}]}]}],
                        },
                        {"otherwise": [{"set": {"x": 1}}]},
                    ],
                    "to": "sender",
                    "delay": "1s",
                },
                {"wait_connect": "any"},
                {
                    "wait_connect": "browser-1",
                    "endpoint": "/ws/stream",
                    "new": True,
                    "timeout": "30s",
                    "on_timeout": "continue",
                },
            ],
        },
    ],
    ids=["minimal", "everything"],
)
def test_valid_documents_pass(document: dict[str, Any]) -> None:
    assert errors(document) == []
    Scenario.model_validate(document)  # and the models agree


@pytest.mark.parametrize(
    "document",
    [
        {"steps": [{"nope": 1}]},
        {"steps": [{"mesage": "EVENT", "text": "x"}]},
        {"steps": [{"chunk": "a", "tool": "b"}]},
        {"steps": [{"message": "NOPE", "text": "x"}]},
        {"steps": [{"wait": "NOPE"}]},
        {"reacts_to": {"message": "NOPE"}, "steps": [{"chunk": "a"}]},
        {"steps": [{"chunk": "a"}], "extra": 1},
        {"steps": [{"chunk": "a", "colour": "red"}]},
        {"steps": [{"repeat": 2, "steps": [{"chunk": "a", "colour": "red"}]}]},
        {"steps": [{"repeat": 2, "steps": [{"nope": 1}]}]},
        {"reacts_to": {"message": "CHAT_INPUT", "mach": "x"}, "steps": [{"chunk": "a"}]},
        {"steps": [{"sleep": 1, "to": "all"}]},
        {"steps": []},
        {"description": "no steps"},
        {"version": 2, "steps": [{"chunk": "a"}]},
        {"steps": [{"close": "socket"}]},
        {"steps": [{"drop": "everything"}]},
        {"steps": [{"wait": "CHAT_INPUT", "on_timeout": "skip"}]},
        {"steps": [{"stream": "x", "rate": 0}]},
        {"steps": [{"sleep": "soon"}]},
        {"steps": [{"chunk": ""}]},
        {"steps": [{"choose": []}]},
        {"steps": [{"choose": [{"whenn": "x", "steps": [{"chunk": "a"}]}]}]},
        {"steps": [{"choose": [{"when": "x"}]}]},
        {"steps": [{"choose": [{"when": "x", "steps": [{"nope": 1}]}]}]},
        {"steps": [{"choose": [{"otherwise": [{"chunk": "a"}], "when": "x"}]}]},
        {"steps": [{"let": {}}]},
        {"steps": [{"let": {"a-b": 1}}]},
        {"steps": [{"set": {"x": 1}, "delay": 1}]},
        {"steps": [{"wait_connect": "any", "endpoint": "ws"}]},
        {"steps": [{"wait_connect": "any", "new": "yes"}]},
        {"steps": [{"wait_connect": "any", "on_timeout": "skip"}]},
    ],
)
def test_invalid_documents_fail(document: dict[str, Any]) -> None:
    assert errors(document) != []


def test_unknown_message_type_fails_and_project_types_pass() -> None:
    document = {"steps": [{"message": "TOKEN_USAGE", "text": "x"}]}
    assert errors(document) != []
    assert errors(document, SCHWARM.with_types({"TOKEN_USAGE": "token counts"})) == []
    # only the types passed in are choices
    assert errors({"steps": [{"message": "EVENT", "text": "x"}]}, only({"TOKEN_USAGE": "t"})) != []


@pytest.mark.parametrize(("model", "field"), TYPED_FIELDS)
def test_message_type_fields_list_the_types_with_descriptions(model: str, field: str) -> None:
    types = {"TOKEN_USAGE": "token counts after each LLM call", "EVENT": "my own event"}
    schema = scenario_schema(only(types))
    property_ = schema["$defs"][model]["properties"][field]
    assert property_["oneOf"] == [
        {"const": "TOKEN_USAGE", "description": "token counts after each LLM call"},
        {"const": "EVENT", "description": "my own event"},
    ]
    assert "type" not in property_
    assert property_["description"]  # the field's own help stays


@pytest.mark.parametrize(("model", "field"), TYPED_FIELDS)
def test_default_types_are_the_built_in_ones(model: str, field: str) -> None:
    property_ = scenario_schema()["$defs"][model]["properties"][field]
    assert property_["oneOf"] == [
        {"const": name, "description": description} for name, description in MESSAGE_TYPES.items()
    ]


def test_what_a_client_sends_may_be_a_request_to_a_declared_route() -> None:
    declared = parse_protocol(
        "routes:\n  - {method: POST, path: /chat, description: Chat input}\n  - path: /break\n",
        "_protocol.yaml",
    ).protocol
    waiting = {"reacts_to": {"message": "GET /break"}, "steps": [{"wait": "POST /chat"}]}
    assert errors(waiting, declared) == []
    assert errors(waiting) != []  # Schwarm declares no route
    assert errors({"steps": [{"message": "POST /chat", "text": "x"}]}, declared) != []
    wait = scenario_schema(declared)["$defs"]["WaitStep"]["properties"]["wait"]
    assert wait["oneOf"][-2:] == [
        {"const": "POST /chat", "description": "Chat input"},
        {"const": "GET /break", "description": "a request to this route"},
    ]


def test_schemas_are_independent() -> None:
    first = scenario_schema(only({"A": "a"}))
    second = scenario_schema(only({"B": "b"}))
    message = "MessageStep", "message"
    assert first["$defs"][message[0]]["properties"][message[1]]["oneOf"] == [
        {"const": "A", "description": "a"}
    ]
    assert second["$defs"][message[0]]["properties"][message[1]]["oneOf"] == [
        {"const": "B", "description": "b"}
    ]
    # the models' own schema is left alone
    plain = Scenario.model_json_schema()["$defs"]["MessageStep"]["properties"]["message"]
    assert plain["type"] == "string"
    assert "oneOf" not in plain


def test_every_step_kind_is_in_the_schema() -> None:
    schema = scenario_schema()
    refs = {item["$ref"] for item in schema["properties"]["steps"]["items"]["oneOf"]}
    assert len(refs) == len(STEP_KINDS)
    for kind, model in STEP_KINDS.items():
        assert f"#/$defs/{model.__name__}" in refs
        definition = schema["$defs"][model.__name__]
        assert kind in definition["properties"]
        assert kind in definition["required"]
        assert definition["additionalProperties"] is False


def test_durations_accept_numbers_and_strings() -> None:
    for delay in [0, 0.5, "500ms", "2s", "1m", " 3 "]:
        assert errors({"delay": delay, "steps": [{"chunk": "a"}]}) == [], delay
    for delay in [-1, "soon", "2h", 3601]:
        assert errors({"delay": delay, "steps": [{"chunk": "a"}]}) != [], delay


@pytest.mark.parametrize(
    "value",
    [0, 0.5, 30, 60, 61, 500, 3600, "0.5", "60", "61", "500", "500ms", "90s", "2m", " 30 ", "1e3"],
)
def test_the_schema_of_a_duration_agrees_with_the_loader(value: object) -> None:
    # An editor flags 'delay: 500' as the loader does: a number without a unit is at most 60.
    schema = scenario_schema(SCHWARM)
    document = {"steps": [{"chunk": "a", "delay": value}]}
    flagged = bool(list(Draft202012Validator(schema).iter_errors(document)))
    if not flagged:
        assert Scenario.model_validate(document).steps
    else:
        with pytest.raises(ValueError, match=r"duration|read as seconds"):
            Scenario.model_validate(document)
