"""The protocol file: endpoints, envelopes, message types and their schemas, routes and
state, read with located problems (replay.protocol.file)."""

from __future__ import annotations

import random

import pytest

from replay.loader import parse_scenario
from replay.protocol import MESSAGE_TYPES
from replay.protocol.file import ProtocolFile, parse_protocol
from replay.protocol.schwarm import SCHWARM

PROTOCOL = "scenarios/_protocol.yaml"
FILE = "scenarios/demo.yaml"


def protocol(source: str | bytes) -> ProtocolFile:
    return parse_protocol(source, PROTOCOL)


def descriptions(loaded: ProtocolFile) -> dict[str, str]:
    return loaded.protocol.descriptions


def test_protocol_file() -> None:
    loaded = protocol("message_types:\n  TOKEN_USAGE: token counts\n  EVENT: my own event\n")
    assert loaded.problems == ()
    assert loaded.file == PROTOCOL
    assert loaded.declared == 1  # EVENT is Schwarm's, described anew
    types = descriptions(loaded)
    assert types["TOKEN_USAGE"] == "token counts"
    assert types["EVENT"] == "my own event"  # a built-in type may get a new description
    assert set(types) == set(MESSAGE_TYPES) | {"TOKEN_USAGE"}
    assert MESSAGE_TYPES["EVENT"] != "my own event"  # the built-in table is left alone
    assert list(loaded.protocol.endpoints) == ["/ws", "/ws/stream"]  # extends schwarm


def test_protocol_types_are_usable_by_scenarios() -> None:
    loaded = protocol("message_types: {TOKEN_USAGE: token counts}\n")
    source = "reacts_to: {message: TOKEN_USAGE}\nsteps:\n  - message: TOKEN_USAGE\n    text: x\n"
    assert parse_scenario(source, FILE, loaded.protocol).valid
    assert not parse_scenario(source, FILE).valid  # Schwarm alone does not know it


def test_empty_protocol_file_declares_nothing() -> None:
    for source in ("", "# only comments\n", "message_types: {}\n"):
        loaded = protocol(source)
        assert loaded.problems == ()
        assert loaded.declared == 0
        assert descriptions(loaded) == MESSAGE_TYPES


@pytest.mark.parametrize("name", ["2BAD", "_X", "1", "a b", "x" * 65])
def test_protocol_bad_names(name: str) -> None:
    loaded = protocol(f"message_types:\n  GOOD: fine\n  {name!r}: x\n")
    [problem] = loaded.problems
    assert (problem.file, problem.line, problem.column) == (PROTOCOL, 3, 3)
    assert problem.field == f"message_types.{name}"
    assert problem.message == "not a message type name"
    assert problem.expected.startswith("a letter, then up to 63 letters")
    assert problem.found == repr(name)
    assert "GOOD" in descriptions(loaded)  # the valid ones still count
    assert name not in descriptions(loaded)


@pytest.mark.parametrize("name", ["price_update", "chat.message", "TOKEN_USAGE", "a:b-c"])
def test_protocol_names_of_other_protocols(name: str) -> None:
    loaded = protocol(f"message_types:\n  {name}: x\n")
    assert loaded.problems == ()
    assert name in descriptions(loaded)


@pytest.mark.parametrize(
    ("value", "found"),
    [("5", "5"), ("[a]", "a list"), ("yes", "the boolean true")],
)
def test_protocol_descriptions_must_be_strings(value: str, found: str) -> None:
    loaded = protocol(f"message_types:\n  GOOD: fine\n  BAD: {value}\n")
    [problem] = loaded.problems
    assert (problem.line, problem.column, problem.field) == (3, 3, "message_types.BAD")
    assert problem.message == "wrong type"
    assert problem.found == found
    assert "BAD" not in descriptions(loaded)
    assert "GOOD" in descriptions(loaded)


def test_protocol_unknown_fields_name_the_allowed_ones() -> None:
    loaded = protocol("message_typs:\n  A: x\nendpoints:\n  /x:\n    mesages: {}\n")
    found = [(p.line, p.column, p.field, p.message) for p in loaded.problems]
    assert (
        1,
        1,
        "message_typs",
        "unknown field 'message_typs' (did you mean 'message_types'?)",
    ) in found
    assert (
        5,
        5,
        "endpoints./x.mesages",
        "unknown field 'mesages' (did you mean 'messages'?)",
    ) in found
    [endpoint] = [p for p in loaded.problems if p.field == "endpoints./x.mesages"]
    assert "messages" in endpoint.expected
    assert "chunks" in endpoint.expected


def test_protocol_duplicates() -> None:
    loaded = protocol("message_types:\n  A: first\n  A: second\n")
    [problem] = loaded.problems
    assert (problem.line, problem.column, problem.field) == (3, 3, "message_types.A")
    assert "duplicate key 'A' (first at line 2)" in problem.message


@pytest.mark.parametrize(
    ("source", "found"),
    [("- A\n- B\n", "a list"), ("hello\n", "'hello'"), ("5\n", "5")],
)
def test_protocol_not_a_mapping(source: str, found: str) -> None:
    loaded = protocol(source)
    [problem] = loaded.problems
    assert (problem.line, problem.column, problem.field) == (1, 1, "")
    assert problem.message == "wrong type"
    assert "endpoints" in problem.expected
    assert problem.found == found
    assert loaded.protocol is SCHWARM


def test_protocol_yaml_and_encoding_errors_are_located() -> None:
    [problem] = protocol("message_types: [unclosed\n").problems
    assert problem.message.startswith("not valid YAML: this '[' is never closed")
    assert (problem.line, problem.column) == (1, 16)
    [problem] = protocol(b"message_types:\n  A: caf\xe9\n").problems
    assert (problem.line, problem.column) == (2, 9)
    assert problem.message == "the file is not valid UTF-8"


def test_protocol_never_raises() -> None:
    rng = random.Random(99)
    pieces = [*":-[]{}&*!|>'\"#\n ", "message_types", "endpoints", "/ws", "messages", "A"]
    pieces += ["schema", "routes", "state", "extends", "none", "\n  ", "~", "\x00", "type"]
    for _ in range(1000):
        source = "".join(rng.choice(pieces) for _ in range(rng.randrange(40)))
        loaded = protocol(source)
        assert isinstance(loaded, ProtocolFile)
        for problem in loaded.problems:
            assert str(problem).startswith(PROTOCOL)


# --- endpoints and envelopes ------------------------------------------------------------------

EVENTS = """\
extends: none
endpoints:
  /socket:
    description: "one socket: {event, data}"
    messages: {type: event, payload: data, data: json, fields: {v: 1}}
message_types:
  price_update:
    sent_by: server
    schema:
      type: object
      required: [symbol, price]
      properties:
        symbol: {type: string, pattern: "^[A-Z]{1,5}$"}
        price: {type: number, minimum: 0}
  subscribe: {sent_by: client}
"""


def test_a_protocol_of_ones_own() -> None:
    loaded = protocol(EVENTS)
    assert loaded.problems == ()
    declared = loaded.protocol
    assert list(declared.endpoints) == ["/socket"]
    assert set(declared.message_types) == {"price_update", "subscribe"}
    assert declared.message_endpoint("price_update") == "/socket"
    assert declared.chunk_endpoint() is None
    frame = declared.message_frame("/socket", "price_update", {"symbol": "ACME"}, {"v": 1})
    assert frame == '{"event":"price_update","data":{"symbol":"ACME"},"v":1}'
    assert declared.reader("/socket") == ("event", "data")
    assert loaded.declared == 2


def test_extending_schwarm_adds_endpoints() -> None:
    loaded = protocol("endpoints:\n  /ws/extra:\n    messages: {}\n    aliases: [/extra]\n")
    assert loaded.problems == ()
    assert loaded.protocol.paths() == {
        "/ws": "/ws",
        "/ws/stream": "/ws/stream",
        "/ws/extra": "/ws/extra",
        "/extra": "/ws/extra",
    }


@pytest.mark.parametrize(
    ("source", "field", "message"),
    [
        ("endpoints:\n  ws: {messages: {}}\n", "endpoints.ws", "not an endpoint path"),
        ("endpoints:\n  /a b: {messages: {}}\n", "endpoints./a b", "not an endpoint path"),
        (
            "endpoints:\n  /events/ws: {messages: {}}\n",
            "endpoints./events/ws",
            "replay serves this path itself",
        ),
        ("endpoints:\n  /x: {}\n", "endpoints./x", "the endpoint takes no frames"),
        (
            "endpoints:\n  /x: {messages: {}, aliases: [/ws]}\n",
            "endpoints./x.aliases.0",
            "this path is already served",
        ),
        ("extends: none\n", "", "the protocol declares no endpoint"),
        ("extends: some\n", "extends", "not an allowed value"),
        (
            "message_types:\n  T: {endpoint: /nowhere}\n",
            "message_types.T.endpoint",
            "unknown endpoint '/nowhere'",
        ),
        (
            "message_types:\n  T: {endpoint: /ws/stream}\n",
            "message_types.T.endpoint",
            "/ws/stream takes no messages",
        ),
        (
            "message_types:\n  T: {sent_by: nobody}\n",
            "message_types.T.sent_by",
            "not an allowed value",
        ),
        (
            "endpoints:\n  /x: {messages: {type: ''}}\n",
            "endpoints./x.messages.type",
            "must not be empty",
        ),
    ],
)
def test_declaration_problems_are_located(source: str, field: str, message: str) -> None:
    loaded = protocol(source)
    assert [p.field for p in loaded.problems] == [field], loaded.problems
    [problem] = loaded.problems
    assert problem.message.startswith(message)
    assert problem.line >= 1


def test_a_type_with_a_bad_schema_is_located_in_the_schema() -> None:
    source = (
        "message_types:\n  T:\n    schema:\n      type: object\n"
        "      properties:\n        a: {type: nope}\n"
    )
    [problem] = protocol(source).problems
    assert problem.field == "message_types.T.schema.properties.a.type"
    assert problem.line == 6
    assert problem.message.startswith("not a JSON Schema")


def test_a_schema_pattern_that_backtracks_is_refused() -> None:
    source = "message_types:\n  T:\n    schema: {type: string, pattern: '(a)\\1'}\n"
    [problem] = protocol(source).problems
    assert problem.field == "message_types.T.schema.pattern"
    assert "backtracking" in problem.message


def test_envelope_templates_are_checked() -> None:
    source = (
        "endpoints:\n  /x:\n    chunks: {fields: {agent: '{{ vars.agent }}', bad: '{{ nope }}'}}\n"
    )
    [problem] = protocol(source).problems
    assert problem.field == "endpoints./x.chunks.fields.bad"
    assert "nope" in problem.message


def test_envelope_templates_reading_received_are_checked_and_suggest() -> None:
    source = (
        "state: {agent: a}\n"
        "endpoints:\n  /x:\n    chunks: {fields: {who: '{{ received.clinet }}', "
        "ok: '{{ received.frame.who }}', agent: '{{ agent }}'}}\n"
    )
    problems = protocol(source).problems
    assert [(p.field, p.message.split(";")[0]) for p in problems] == [
        (
            "endpoints./x.chunks.fields.who",
            "received has no field 'clinet' (did you mean 'client'?)",
        ),
        (
            "endpoints./x.chunks.fields.agent",
            "unknown name 'agent' in a template (did you mean 'state.agent'?)",
        ),
    ]


def test_close_frames_one_or_several() -> None:
    one = protocol("endpoints:\n  /x:\n    chunks: {close: {type: end}}\n").protocol
    assert one.close_frames("/x") == ('{"type":"end"}',)
    two = protocol("endpoints:\n  /x:\n    chunks: {close: [{a: 1}, {a: 1}]}\n").protocol
    assert two.close_frames("/x") == ('{"a":1}', '{"a":1}')
    none = protocol("endpoints:\n  /x:\n    chunks: {close: []}\n").protocol
    assert none.close_frames("/x") == ()
    assert SCHWARM.close_frames("/ws/stream") == ('{"type":"close","content":null}',)
