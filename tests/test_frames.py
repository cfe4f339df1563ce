"""Steps become frames under a declared protocol: endpoints, envelopes, payload schemas
(replay.frames, as the engine uses it; no I/O, no clock)."""

from __future__ import annotations

import json
import textwrap

import pytest

from replay.catalog import Catalog
from replay.engine import Context
from replay.errors import StepFailed
from replay.loader import parse_scenario
from replay.protocol.file import parse_protocol
from replay.protocol.schwarm import SCHWARM
from replay.timeline import build_timeline

EVENTS = """\
extends: none
description: "a price feed: {event, data} frames on one socket"
endpoints:
  /socket:
    messages: {type: event, payload: data, data: json, fields: {v: 2}}
message_types:
  price_update:
    sent_by: server
    schema:
      type: object
      required: [symbol, price]
      additionalProperties: false
      properties:
        symbol: {type: string, pattern: "^[A-Z]{1,5}$"}
        price: {type: number, minimum: 0}
  subscribe: {sent_by: client}
"""

P3 = """\
extends: none
endpoints:
  /ws:
    aliases: [/ws/tool]
    chunks:
      fields: {agent: "{{ vars.agent | default('Bot') }}"}
      close: [{type: close, content: null}, {type: close, content: null}]
"""

P6 = """\
extends: none
endpoints:
  /:
    messages: {}
    chunks: {type: message_type, content: message, default: STREAM, tool: STREAM, close: []}
message_types:
  STREAM: streamed text
  BREAK: paused
"""


def folder(protocol: str, **scenarios: str) -> Catalog:
    """A checked catalog: a protocol file and scenarios, all valid."""
    loaded = parse_protocol(protocol, "scenarios/_protocol.yaml")
    assert loaded.problems == (), loaded.problems
    files = [
        parse_scenario(textwrap.dedent(text), f"scenarios/{name}.yaml", loaded.protocol)
        for name, text in scenarios.items()
    ]
    found = Catalog.resolve(files, loaded)
    for file in found:
        assert file.valid, file.problems
    return found


def problems(protocol: str, text: str) -> list[str]:
    loaded = parse_protocol(protocol, "scenarios/_protocol.yaml")
    scenario = parse_scenario(textwrap.dedent(text), "scenarios/main.yaml", loaded.protocol)
    return [str(problem) for problem in scenario.problems]


def frames(catalog: Catalog, name: str = "main") -> list[tuple[str, str]]:
    return [
        (cue.endpoint, cue.frame) for cue in build_timeline(name, catalog) if cue.kind == "frame"
    ]


def test_a_protocol_of_ones_own_sends_its_envelope() -> None:
    found = folder(
        EVENTS,
        main="""\
        steps:
          - message: price_update
            data: {symbol: ACME, price: 12.5}
          - message: price_update
            data: {symbol: "{{ vars.symbol }}", price: "{{ 3 * 4 }}"}
        vars: {symbol: INIT}
        """,
    )
    assert frames(found) == [
        ("/socket", '{"event":"price_update","data":{"symbol":"ACME","price":12.5},"v":2}'),
        ("/socket", '{"event":"price_update","data":{"symbol":"INIT","price":12},"v":2}'),
    ]


def test_a_wrong_payload_is_a_located_problem() -> None:
    found = problems(
        EVENTS,
        """\
        steps:
          - message: price_update
            data:
              symbol: acme
              price: -1
        """,
    )
    assert len(found) == 2, found
    symbol, price = found
    assert symbol.startswith(
        "scenarios/main.yaml:4:7: steps.0.data.symbol: payload['symbol']: 'acme' does not match"
    )
    assert price.startswith(
        "scenarios/main.yaml:5:7: steps.0.data.price: payload['price']: -1 is less than the "
        "minimum of 0"
    )


def test_a_missing_field_is_located_at_the_payload() -> None:
    [problem] = problems(EVENTS, "steps:\n  - message: price_update\n    data: {symbol: ACME}\n")
    assert problem.startswith(
        "scenarios/main.yaml:3:5: steps.0.data: payload: 'price' is a required property"
    )
    assert "expected a payload the price_update schema accepts" in problem


def test_a_templated_payload_is_checked_when_it_is_rendered() -> None:
    found = folder(
        EVENTS,
        main="""\
        vars: {price: 1}
        steps:
          - message: price_update
            data: {symbol: ACME, price: "{{ vars.price }}"}
        """,
    )
    assert len(frames(found)) == 1
    with pytest.raises(StepFailed, match=r"fails the price_update schema: payload\['price'\]"):
        build_timeline("main", found, context_with_vars({"price": "free"}))


def context_with_vars(values: dict[str, object]) -> Context:
    return Context(run_id="t", seed=0, vars=values)


def test_unknown_types_and_endpoints_name_the_declared_ones() -> None:
    [problem] = problems(EVENTS, "steps:\n  - message: price_updat\n    data: {}\n")
    assert "unknown message type 'price_updat' (did you mean 'price_update'?)" in problem
    [problem] = problems(EVENTS, "steps:\n  - raw: x\n    endpoint: /sockt\n")
    assert "unknown endpoint '/sockt' (did you mean '/socket'?)" in problem
    [problem] = problems(EVENTS, "steps:\n  - chunk: hello\n")
    assert "no endpoint takes chunks" in problem
    assert "a protocol file that declares 'chunks' on an endpoint" in problem


def test_schwarm_types_are_not_known_to_another_protocol() -> None:
    [problem] = problems(EVENTS, "steps:\n  - message: EVENT\n    text: x\n")
    assert "unknown message type 'EVENT'" in problem
    assert "expected one of price_update, subscribe" in problem


def test_p3_chunks_carry_the_agent_and_close_twice() -> None:
    found = folder(
        P3,
        main="""\
        vars: {agent: Researcher}
        steps:
          - chunk: Hel
          - tool: '{"q":'
            envelope: {agent: Tools}
          - close: stream
        """,
    )
    assert frames(found) == [
        ("/ws", '{"type":"default","content":"Hel","agent":"Researcher"}'),
        ("/ws", '{"type":"tool","content":"{\\"q\\":","agent":"Tools"}'),
        ("/ws", '{"type":"close","content":null}'),
        ("/ws", '{"type":"close","content":null}'),
    ]


def test_an_alias_is_the_endpoint_it_serves() -> None:
    found = folder(P3, main="steps:\n  - raw: x\n    endpoint: /ws/tool\n")
    assert frames(found) == [("/ws", "x")]


def test_p6_streams_typed_frames_without_an_end_marker() -> None:
    found = folder(
        P6,
        main="""\
        steps:
          - message: BREAK
            text: Waiting for user input
          - stream: Hi there
            rate: 100
            close_stream: true
        """,
    )
    assert frames(found) == [
        ("/", '{"message_type":"BREAK","message":"Waiting for user input"}'),
        ("/", '{"message_type":"STREAM","message":"Hi"}'),
        ("/", '{"message_type":"STREAM","message":" there"}'),
    ]


def test_disconnect_all_reaches_every_declared_endpoint() -> None:
    found = folder(P6, main="steps:\n  - disconnect: all\n")
    assert [cue.endpoint for cue in build_timeline("main", found)] == ["/"]


def test_without_a_declaration_schwarm_frames_are_the_seeds() -> None:
    loaded = parse_scenario(
        "steps:\n  - message: EVENT\n    data: {a: 1}\n  - chunk: x\n  - close: stream\n",
        "scenarios/main.yaml",
    )
    found = Catalog.resolve([loaded])
    assert found.protocol is SCHWARM
    assert frames(found) == [
        ("/ws", json.dumps({"message_type": "EVENT", "message": '{"a":1}'}, separators=(",", ":"))),
        ("/ws/stream", '{"type":"default","content":"x"}'),
        ("/ws/stream", '{"type":"close","content":null}'),
    ]
