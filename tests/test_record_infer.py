"""The protocol inferred from recordings (replay.record.infer): endpoints, envelopes,
message types with schemas, routes; a file parse_protocol finds nothing wrong with."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from replay.cli import main
from replay.loader import parse_scenario
from replay.protocol.file import parse_protocol
from replay.protocol.wire import encode
from replay.record.convert import Options, convert
from replay.record.format import Recording, close_frame
from replay.record.infer import InferError, infer_protocol, payload_schema
from tests.recordings import http, schwarm_session, session

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"


def declared(recordings: list[Recording]) -> dict[str, Any]:
    inferred = infer_protocol(recordings)
    assert parse_protocol(inferred.text, "_protocol.yaml").problems == ()
    document = yaml.safe_load(inferred.text)
    assert document == dict(inferred.declaration)
    return document


def price_feed() -> list[Recording]:
    feed = session("/prices", "feed")
    feed.client(0.1, {"event": "subscribe", "data": {"symbols": ["ACME", "INIT"]}, "v": 2})
    feed.server(0.2, {"event": "snapshot", "data": {"prices": {"ACME": 101.5}}, "v": 2})
    for n in range(5):
        feed.server(
            1.0 + n, {"event": "price_update", "data": {"symbol": "ACME", "price": 100 + n}, "v": 2}
        )
    feed.server(6.0, {"event": "price_update", "data": {"symbol": "INIT", "price": 7.25}, "v": 2})
    return [feed.recording()]


# --- done when: a Schwarm session's protocol validates the shipped scenarios ----------------


def test_a_schwarm_sessions_protocol_validates_the_shipped_scenarios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        if not path.name.startswith("_"):
            shutil.copy(path, folder / path.name)
    (folder / "_protocol.yaml").write_text(infer_protocol(schwarm_session()).text)
    assert main(["validate", "--scenarios", str(folder)]) == 0
    shown = capsys.readouterr().out
    assert "INVALID" not in shown
    assert f"ok       {folder / '_protocol.yaml'}" in shown
    assert f"{len(list(folder.glob('[!_]*.yaml')))} valid, 0 invalid" in shown


def test_a_payload_of_the_wrong_type_is_refused_where_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "_protocol.yaml").write_text(infer_protocol(schwarm_session()).text)
    bad = folder / "bad.yaml"
    bad.write_text(
        "steps:\n"
        "  - message: EVENT\n"
        "    text: a span need not be JSON text\n"
        "  - message: EVENT\n"
        "    data:\n"
        "      name: 5\n"
        "      attributes: {run_id: abc}\n"
    )
    assert main(["validate", "--scenarios", str(folder)]) == 1
    shown = capsys.readouterr().out
    assert (
        f"{bad}:6:7: steps.1.data.name: payload['name']: 5 is not of type 'string'; "
        "expected a payload the EVENT schema accepts"
    ) in shown


def test_a_schwarm_session_extends_schwarm_and_declares_the_types_it_showed() -> None:
    document = declared(schwarm_session())
    assert document["extends"] == "schwarm"
    assert "endpoints" not in document  # Schwarm's own, unchanged
    types = document["message_types"]
    assert list(types) == [
        "CHAT_REQUESTED",
        "IS_WAITING",
        "CHAT_INPUT",
        "EVENT",
        "PAUSE_REQUEST",
        "PAUSE_STATUS",
    ]
    assert types["CHAT_INPUT"]["sent_by"] == "client"
    assert types["CHAT_INPUT"]["schema"] == {"type": "string"}
    assert types["EVENT"]["sent_by"] == "server"
    assert types["EVENT"]["description"] == "sent by the server (4 times recorded)"
    event = types["EVENT"]["schema"]
    assert "type" not in event  # a text step of the type still passes
    assert event["properties"]["parent_span_id"] == {"type": ["null", "string"]}
    assert event["properties"]["attributes"]["properties"]["run_id"] == {"type": "string"}
    assert "required" not in str(event)
    assert types["PAUSE_REQUEST"]["schema"]["properties"]["action"] == {"type": "string"}
    # The types the session did not show are still Schwarm's.
    protocol = infer_protocol(schwarm_session()).protocol
    assert {"CHAT", "BREAK", "ERROR", "STREAM"} <= set(protocol.message_types)


def test_routes_answer_what_they_answered_last() -> None:
    recordings = [
        *schwarm_session(),
        http("h4", 11.0, "GET", "/healthz", {"status": "ok"}).recording(),  # replay's own
        http("h5", 11.5, "GET", "/spans/{{x}}", []).recording(),
        http("h6", 12.0, "GET", "/greeting", "Hello {{ user }}").recording(),
    ]
    routes = declared(recordings)["routes"]
    assert routes[:2] == [
        {"path": "/break", "body": False},
        {"method": "POST", "path": "/break", "body": False},  # the last of two answers
    ]
    assert routes[2] == {"path": "/greeting", "body": "{% raw %}Hello {{ user }}{% endraw %}"}
    assert len(routes) == 3


# --- other protocols ------------------------------------------------------------------------


def test_an_envelope_of_its_own_is_found() -> None:
    document = declared(price_feed())
    assert document["extends"] == "none"
    assert document["endpoints"] == {
        "/prices": {
            "messages": {"type": "event", "payload": "data", "data": "json", "fields": {"v": 2}}
        }
    }
    types = document["message_types"]
    assert types["subscribe"]["sent_by"] == "client"
    assert types["subscribe"]["schema"] == {
        "type": "object",
        "properties": {"symbols": {"type": "array", "items": {"type": "string"}}},
    }
    assert types["price_update"]["schema"]["properties"]["price"] == {"type": "number"}
    assert types["price_update"]["description"] == "sent by the server (6 times recorded)"


def test_a_price_feed_converts_under_its_inferred_protocol() -> None:
    recordings = price_feed()
    protocol = infer_protocol(recordings).protocol
    converted = convert(recordings, protocol, Options(match=("data.symbols",)))
    text = converted.files["recorded"]
    loaded = parse_scenario(text, "recorded.yaml", protocol)
    assert loaded.valid, loaded.problems
    steps = yaml.safe_load(text)["steps"]
    assert steps[0] == {"wait": "subscribe", "fields": {"data.symbols": '^\\["ACME","INIT"\\]$'}}
    assert {
        "message": "price_update",
        "data": {"symbol": "ACME", "price": 100},
        "delay": 1.0,
    } in steps


def test_a_stream_of_chunks_of_its_own_is_found() -> None:
    stream = session("/ws", "p3")
    for n, word in enumerate(["Hel", "lo", " there"]):
        stream.server(0.1 * n, {"type": "default", "content": word, "agent": "Bot"})
    stream.server(0.5, {"type": "close", "content": None})
    stream.server(0.5, {"type": "close", "content": None})
    stream.server(1.0, {"type": "default", "content": "Again", "agent": "Bot"})
    stream.server(1.1, {"type": "close", "content": None})
    stream.server(1.1, {"type": "close", "content": None})
    document = declared([stream.recording()])
    assert document["endpoints"]["/ws"] == {
        "chunks": {
            "type": "type",
            "content": "content",
            "default": "default",
            "tool": "tool",
            "close": [{"type": "close", "content": None}, {"type": "close", "content": None}],
            "fields": {"agent": "Bot"},
        }
    }
    protocol = infer_protocol([stream.recording()]).protocol
    steps = yaml.safe_load(convert([stream.recording()], protocol).files["recorded"])["steps"]
    assert steps[0] == {"chunk": "Hel", "delay": 0.1}
    assert steps[3] == {"close": "stream", "delay": 0.5}


def test_a_stream_with_other_words_is_found_too() -> None:
    feed = session("/llm", "deltas")
    feed.client(0.0, {"op": "ask", "question": "why?"})
    for n, word in enumerate(["Be", "cause"]):
        feed.server(0.1 * (n + 1), {"kind": "delta", "text": word})
    feed.server(0.3, {"kind": "thinking", "text": "hmm"})
    feed.server(0.4, {"kind": "done", "text": None})
    feed.add(close_frame(1.0, "client", 1000, ""))
    document = declared([feed.recording()])
    assert document["endpoints"]["/llm"] == {
        "messages": {"type": "op", "payload": "question"},
        "chunks": {
            "type": "kind",
            "content": "text",
            "default": "delta",
            "tool": "thinking",
            "close": [{"kind": "done", "text": None}],
        },
    }
    assert document["message_types"]["ask"]["sent_by"] == "client"


def test_frames_that_are_not_json_objects_still_declare_their_endpoint() -> None:
    plain = session("/plain", "plain")
    plain.server(0.1, "hello").server(0.2, "[1, 2]")
    document = declared([plain.recording()])
    assert document["endpoints"] == {"/plain": {"messages": {}}}
    assert document["message_types"] == {}


def test_schemas_of_messages_that_hold_json_text() -> None:
    spans = [encode({"name": "a", "n": 1}), encode({"name": "b", "extra": [1]})]
    assert payload_schema(spans, as_text=True) == {
        "properties": {
            "name": {"type": "string"},
            "n": {"type": "integer"},
            "extra": {"type": "array", "items": {"type": "integer"}},
        }
    }
    # One that does not parse: the messages are plain strings.
    assert payload_schema([*spans, "Test event message"], as_text=True) == {"type": "string"}
    assert payload_schema([{"a": 1}, {"a": None}]) == {
        "type": "object",
        "properties": {"a": {"type": ["integer", "null"]}},
    }


def test_recordings_without_a_websocket_session_say_so() -> None:
    with pytest.raises(InferError, match="no WebSocket session"):
        infer_protocol([http("h", 0.0, "GET", "/break", False).recording()])
