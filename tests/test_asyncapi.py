"""A protocol as an AsyncAPI 3.0.0 document (replay.asyncapi), checked by the official
AsyncAPI JSON Schema (tests/data) and, where Node.js is, by the official parser."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from replay.asyncapi import (
    KEY_PATTERN,
    asyncapi_document,
    component_key,
    document_text,
    embedded_schema,
    server_objects,
)
from replay.protocol import MESSAGE_TYPES, data_text
from replay.protocol.declaration import Protocol
from replay.protocol.file import parse_protocol
from replay.protocol.schwarm import SCHWARM
from replay.routes import Route
from tests import asyncapi_parser

SCHEMA_FILE = Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json"
URL = "ws://localhost:8123"


# --- checking documents -----------------------------------------------------------------------


def _offline(uri: str) -> Resource[Any]:
    raise LookupError(f"{uri} is not in the bundled AsyncAPI schema (no downloads here)")


@functools.cache
def official() -> Validator:
    """A validator of the official AsyncAPI 3.0.0 JSON Schema (draft-07), resolving its
    $id-based references from the bundle itself, offline."""
    schema = json.loads(SCHEMA_FILE.read_text())
    resource = Resource.from_contents(schema, default_specification=DRAFT7)
    registry: Registry[Any] = (
        Registry(retrieve=_offline).with_resource(schema["$id"], resource).crawl()
    )
    cls = validator_for(schema)
    cls.check_schema(schema)
    validator: Validator = cls(schema, registry=registry)
    return validator


def schema_errors(document: dict[str, Any]) -> list[str]:
    """What the official schema finds wrong with ``document``."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in official().iter_errors(document)
    ]


def references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def pointed(document: dict[str, Any], ref: str) -> Any:
    """What a ``#/...`` reference points to in ``document``; raises LookupError."""
    if not ref.startswith("#/"):
        raise LookupError(f"{ref} is not a reference into the document")
    found: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(found, list) and part.isdigit() and int(part) < len(found):
            found = found[int(part)]
        elif isinstance(found, dict) and part in found:
            found = found[part]
        else:
            raise LookupError(f"{ref} does not resolve")
    return found


def own_problems(document: dict[str, Any]) -> list[str]:
    """What the official schema leaves to parsers: keys of channels, operations and
    components that AsyncAPI does not allow, and references that resolve to nothing."""
    problems = []
    sections = [document.get("channels", {}), document.get("operations", {})]
    sections += document.get("components", {}).values()
    for section in sections:
        problems += [f"bad key {key!r}" for key in section if not KEY_PATTERN.match(key)]
    for ref in references(document):
        try:
            pointed(document, ref)
        except LookupError as error:
            problems.append(str(error))
    return problems


def check(document: dict[str, Any]) -> dict[str, Any]:
    """``document``, after making sure it is a valid AsyncAPI 3.0.0 document."""
    assert schema_errors(document) == []
    assert own_problems(document) == []
    return document


def payload_validator(document: dict[str, Any], message: str) -> Draft7Validator:
    """A validator of a component message's payload (references resolved in the document)."""
    return Draft7Validator({**document, "$ref": f"#/components/messages/{message}/payload"})


def build(protocol: Protocol, server_url: str | None = URL) -> dict[str, Any]:
    return check(asyncapi_document(protocol, title="t", version="1.2.3", server_url=server_url))


def loaded(source: str) -> Protocol:
    protocol_file = parse_protocol(source, "scenarios/_protocol.yaml")
    assert protocol_file.problems == ()
    return protocol_file.protocol


def operations_of(document: dict[str, Any], channel: str) -> dict[str, str]:
    """``{message key: actions}`` of a channel's operations, e.g. {"EVENT": "receive send"}."""
    actions: dict[str, list[str]] = {}
    for operation in document["operations"].values():
        if operation["channel"]["$ref"] == f"#/channels/{channel}":
            for ref in operation["messages"]:
                actions.setdefault(ref["$ref"].rpartition("/")[2], []).append(operation["action"])
    return {key: " ".join(sorted(found)) for key, found in actions.items()}


# --- Schwarm ----------------------------------------------------------------------------------


def test_schwarm_is_a_valid_document() -> None:
    document = build(SCHWARM)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "t"
    assert document["info"]["version"] == "1.2.3"
    assert document["info"]["description"].startswith("Schwarm's dashboard protocol")
    assert "Generated by replay 1.2.3" in document["info"]["description"]
    assert document["servers"] == {
        "ws": {
            "host": "localhost:8123",
            "protocol": "ws",
            "description": "replay's WebSocket endpoints",
        }
    }
    channels = document["channels"]
    assert {key: c["address"] for key, c in channels.items()} == {
        "ws": "/ws",
        "ws_stream": "/ws/stream",
    }
    assert list(channels["ws"]["messages"]) == list(MESSAGE_TYPES)
    assert list(channels["ws_stream"]["messages"]) == ["chunk", "tool_chunk", "stream_end"]
    assert channels["ws"]["servers"] == [{"$ref": "#/servers/ws"}]


def test_schwarm_operations_follow_who_sends_what() -> None:
    document = build(SCHWARM)
    ws = operations_of(document, "ws")
    assert ws["CHAT_INPUT"] == "receive"  # clients send it: replay receives it
    assert ws["PAUSE_REQUEST"] == "receive"
    assert ws["EVENT"] == "receive send"  # both
    assert set(ws) == set(MESSAGE_TYPES)
    assert operations_of(document, "ws_stream") == {
        "chunk": "send",
        "tool_chunk": "send",
        "stream_end": "send",
    }
    assert document["operations"]["send.ws.EVENT"]["summary"] == "Send EVENT to the clients"


def test_schwarm_frames_pass_their_messages_payloads() -> None:
    document = build(SCHWARM)
    event = json.loads(SCHWARM.message_frame("/ws", "EVENT", data_text({"id": 1}), {}))
    assert event == {"message_type": "EVENT", "message": '{"id":1}'}
    assert payload_validator(document, "EVENT").is_valid(event)
    assert not payload_validator(document, "CHAT").is_valid(event)  # another type
    assert not payload_validator(document, "EVENT").is_valid({**event, "message": {"id": 1}})
    chunk = json.loads(SCHWARM.chunk_frame("/ws/stream", False, "Hel", {}))
    tool = json.loads(SCHWARM.chunk_frame("/ws/stream", True, "{}", {}))
    [close] = [json.loads(frame) for frame in SCHWARM.close_frames("/ws/stream")]
    for message, frame in [("chunk", chunk), ("tool_chunk", tool), ("stream_end", close)]:
        matches = [
            name
            for name in ("ws_stream.chunk", "ws_stream.tool_chunk", "ws_stream.stream_end")
            if payload_validator(document, name).is_valid(frame)
        ]
        assert matches == [f"ws_stream.{message}"]  # one message, and only one, fits
    assert document["components"]["messages"]["ws_stream.stream_end"]["payload"] == {
        "type": "object",
        "const": {"type": "close", "content": None},
    }


# --- other protocols --------------------------------------------------------------------------

EVENTS = """\
extends: none
description: Prices, pushed.
endpoints:
  /socket:
    description: "one socket: {event, data}"
    messages: {type: event, payload: data, data: json, fields: {v: 1, at: "{{ now.iso }}"}}
message_types:
  price_update:
    description: a new price
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
    protocol = loaded(EVENTS)
    document = build(protocol)
    assert document["info"]["description"].startswith("Prices, pushed.\n\nGenerated by replay")
    assert list(document["channels"]) == ["socket"]  # extends none: no Schwarm sockets
    assert operations_of(document, "socket") == {"price_update": "send", "subscribe": "receive"}
    message = document["components"]["messages"]["price_update"]
    assert message["summary"] == "a new price"
    payload = message["payload"]
    assert payload["required"] == ["event", "data"]
    assert payload["properties"]["event"] == {"type": "string", "const": "price_update"}
    assert payload["properties"]["data"] == {"$ref": "#/components/schemas/price_update"}
    assert payload["properties"]["v"]["default"] == 1
    assert "{{ now.iso }}" in payload["properties"]["at"]["description"]
    schema = document["components"]["schemas"]["price_update"]
    assert schema["required"] == ["symbol", "price"]
    frame = protocol.message_frame("/socket", "price_update", {"symbol": "ACME", "price": 3}, {})
    validator = payload_validator(document, "price_update")
    assert validator.is_valid(json.loads(frame))
    bad = protocol.message_frame("/socket", "price_update", {"symbol": "ACME", "price": -3}, {})
    assert not validator.is_valid(json.loads(bad))
    untyped = document["components"]["messages"]["subscribe"]["payload"]["properties"]["data"]
    assert "$ref" not in untyped
    assert "type" not in untyped  # text or any JSON


def test_data_sent_as_text_is_a_string_holding_json() -> None:
    source = (
        "message_types:\n  USAGE:\n    sent_by: server\n    schema:\n      type: object\n"
        "      required: [tokens]\n      properties: {tokens: {type: integer}}\n"
    )
    protocol = loaded(source)
    document = build(protocol)
    payload = document["components"]["messages"]["USAGE"]["payload"]["properties"]["message"]
    assert payload["type"] == "string"
    assert payload["contentMediaType"] == "application/json"
    assert payload["contentSchema"] == {"$ref": "#/components/schemas/USAGE"}
    frame = json.loads(protocol.message_frame("/ws", "USAGE", data_text({"tokens": 5}), {}))
    assert payload_validator(document, "USAGE").is_valid(frame)
    content = Draft7Validator({**document, "$ref": payload["contentSchema"]["$ref"]})
    assert content.is_valid(json.loads(frame["message"]))
    assert not content.is_valid({"tokens": "five"})
    assert operations_of(document, "ws")["USAGE"] == "send"
    # A file that extends Schwarm's protocol and says nothing of its own keeps its words.
    assert document["info"]["description"].startswith("Schwarm's dashboard protocol (the seed")


def test_a_schemas_own_references_point_into_the_document() -> None:
    source = """\
message_types:
  TREE:
    schema:
      $schema: https://json-schema.org/draft/2020-12/schema
      $defs:
        node:
          type: object
          properties:
            children: {type: array, items: {$ref: "#/$defs/node"}}
      $ref: "#/$defs/node"
"""
    document = build(loaded(source))
    schema = document["components"]["schemas"]["TREE"]
    assert "$schema" not in schema
    assert schema["$ref"] == "#/components/schemas/TREE/$defs/node"
    node = schema["$defs"]["node"]["properties"]
    assert node["children"]["items"] == {"$ref": "#/components/schemas/TREE/$defs/node"}
    payload = document["components"]["messages"]["TREE"]["payload"]["properties"]["message"]
    content = Draft7Validator({**document, "$ref": payload["contentSchema"]["$ref"]})
    assert content.is_valid({"children": [{"children": []}]})
    assert not content.is_valid({"children": [{"children": 5}]})


def test_embedded_schemas_are_copies() -> None:
    schema = {
        "$id": "https://x.test/s",
        "items": {"$ref": "#"},
        "const": {"$ref": "#/data"},
        "not": {"$ref": "#anchor"},
    }
    assert embedded_schema(schema, "#/components/schemas/S") == {
        "items": {"$ref": "#/components/schemas/S"},
        "const": {"$ref": "#/data"},  # data, not a reference
        "not": {"$ref": "#anchor"},  # not a pointer
    }
    assert schema["items"] == {"$ref": "#"}


def test_chunks_without_close_frames() -> None:
    source = """\
extends: none
endpoints:
  /tokens:
    chunks: {type: kind, content: text, default: token, tool: call, close: [], fields: {n: 0}}
"""
    protocol = loaded(source)
    document = build(protocol)
    assert list(document["channels"]["tokens"]["messages"]) == ["chunk", "tool_chunk"]
    assert operations_of(document, "tokens") == {"chunk": "send", "tool_chunk": "send"}
    messages = document["components"]["messages"]
    assert set(messages) == {"tokens.chunk", "tokens.tool_chunk"}
    payload = messages["tokens.tool_chunk"]["payload"]
    assert payload["required"] == ["kind", "text"]
    assert payload["properties"]["kind"] == {"type": "string", "const": "call"}
    assert payload["properties"]["n"]["default"] == 0
    frame = json.loads(protocol.chunk_frame("/tokens", False, "Hi", {"n": 0}))
    assert payload_validator(document, "tokens.chunk").is_valid(frame)
    assert not payload_validator(document, "tokens.tool_chunk").is_valid(frame)


def test_several_close_frames_are_each_a_stream_end() -> None:
    source = (
        "extends: none\nendpoints:\n  /s:\n"
        "    chunks: {close: [{type: end}, {type: done, ok: true}]}\n"
    )
    protocol = loaded(source)
    document = build(protocol)
    message = document["components"]["messages"]["s.stream_end"]
    assert message["summary"] == "The end of a stream: these 2 frames, in this order."
    assert [example["payload"] for example in message["examples"]] == [
        {"type": "end"},
        {"type": "done", "ok": True},
    ]
    validator = payload_validator(document, "s.stream_end")
    for frame in protocol.close_frames("/s"):
        assert validator.is_valid(json.loads(frame))
    assert not validator.is_valid({"type": "close", "content": None})


def test_aliases_are_channels_of_their_own() -> None:
    source = (
        "endpoints:\n  /ws/extra:\n    description: more\n    messages: {}\n"
        "    aliases: [/extra, /]\n"
        "message_types:\n  NOTE: {endpoint: /ws/extra, sent_by: server}\n"
    )
    document = build(loaded(source))
    channels = document["channels"]
    assert {key: c["address"] for key, c in channels.items()} == {
        "ws": "/ws",
        "ws_stream": "/ws/stream",
        "ws_extra": "/ws/extra",
        "extra": "/extra",
        "root": "/",
    }
    assert channels["extra"]["messages"] == channels["ws_extra"]["messages"]
    assert channels["extra"]["messages"] == {"NOTE": {"$ref": "#/components/messages/NOTE"}}
    assert channels["extra"]["description"] == (
        "Another path of /ws/extra: its clients are that endpoint's. more"
    )
    for channel in ("ws_extra", "extra", "root"):
        assert operations_of(document, channel) == {"NOTE": "send"}
    assert "NOTE" not in channels["ws"]["messages"]


def test_an_endpoint_no_type_goes_to_has_a_generic_message() -> None:
    document = build(loaded("endpoints:\n  /ws/more:\n    messages: {type: t, payload: p}\n"))
    assert document["channels"]["ws_more"]["messages"] == {
        "message": {"$ref": "#/components/messages/ws_more.message"}
    }
    payload = document["components"]["messages"]["ws_more.message"]["payload"]
    assert payload["properties"]["t"]["enum"] == list(MESSAGE_TYPES)
    assert operations_of(document, "ws_more") == {"message": "receive send"}


def test_keys_are_escaped_and_unique() -> None:
    source = (
        "endpoints:\n  /ws_stream:\n    chunks: {}\n  /a.b~c:\n    messages: {}\n"
        "message_types:\n  'a:b': {endpoint: /a.b~c}\n  a_b: {endpoint: /a.b~c}\n"
    )
    document = build(loaded(source))
    assert {key: c["address"] for key, c in document["channels"].items()} == {
        "ws": "/ws",
        "ws_stream": "/ws/stream",
        "ws_stream_2": "/ws_stream",
        "a.b_c": "/a.b~c",
    }
    assert document["channels"]["a.b_c"]["messages"] == {
        "a_b": {"$ref": "#/components/messages/a_b"},
        "a_b_2": {"$ref": "#/components/messages/a_b_2"},
    }
    assert document["components"]["messages"]["a_b"]["name"] == "a:b"


@pytest.mark.parametrize(
    ("text", "key"),
    [("/ws/stream", "ws_stream"), ("/", "root"), ("/spans/{id}", "spans_id"), ("a:b", "a_b")],
)
def test_component_keys(text: str, key: str) -> None:
    assert component_key(text) == key
    assert KEY_PATTERN.match(key)


# --- HTTP routes ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FullRoute:
    """What the full route model adds to the stub, as asyncapi reads it (getattr)."""

    path: str
    method: str = "GET"
    status: int = 200
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    latency: float = 0.0
    set: dict[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""
    model_fields_set: frozenset[str] = frozenset({"body"})


ROUTES = (
    Route(path="/spans/{id}", body={"id": "{{ request.params.id }}", "name": "agent"}),
    Route(method="DELETE", path="/spans/{id}", status=204),
    Route(path="/", body={"ok": True}),
    Route(method="POST", path="/files/{rest:path}", body="{{ request.params.rest }}"),
)


def test_routes_are_http_channels_with_request_and_reply() -> None:
    document = build(dataclasses.replace(SCHWARM, routes=ROUTES))
    assert document["servers"]["http"] == {
        "host": "localhost:8123",
        "protocol": "http",
        "description": "replay's HTTP routes",
    }
    channel = document["channels"]["spans_id"]
    assert channel["address"] == "/spans/{id}"
    assert channel["parameters"] == {"id": {"description": "One segment of the path."}}
    assert channel["servers"] == [{"$ref": "#/servers/http"}]
    assert list(channel["messages"]) == [
        "GET.request",
        "GET.response",
        "DELETE.request",
        "DELETE.response",
    ]
    get = document["operations"]["GET.spans_id"]
    assert get["action"] == "receive"
    assert get["bindings"] == {"http": {"method": "GET", "bindingVersion": "0.3.0"}}
    assert get["messages"] == [{"$ref": "#/channels/spans_id/messages/GET.request"}]
    assert get["reply"] == {
        "channel": {"$ref": "#/channels/spans_id"},
        "messages": [{"$ref": "#/channels/spans_id/messages/GET.response"}],
    }
    assert document["operations"]["DELETE.spans_id"]["bindings"]["http"]["method"] == "DELETE"
    assert document["channels"]["root"]["address"] == "/"
    rest = document["channels"]["files_rest"]
    assert rest["address"] == "/files/{rest}"
    assert rest["parameters"]["rest"]["description"] == "The rest of the path, slashes included."


def test_route_answers_are_described_by_their_bodies() -> None:
    messages = build(dataclasses.replace(SCHWARM, routes=ROUTES))["components"]["messages"]
    answer = messages["spans_id.GET.response"]
    assert answer["bindings"] == {"http": {"statusCode": 200, "bindingVersion": "0.3.0"}}
    payload = answer["payload"]
    assert payload["properties"]["name"] == {"const": "agent"}
    assert "request.params.id" in payload["properties"]["id"]["description"]
    assert "examples" not in answer  # its body depends on the request
    deleted = messages["spans_id.DELETE.response"]
    assert deleted["bindings"]["http"]["statusCode"] == 204
    assert "payload" not in deleted  # no body: an empty answer
    root = messages["root.GET.response"]
    assert root["payload"] == {"const": {"ok": True}}
    assert root["examples"] == [{"name": "body", "payload": {"ok": True}}]
    assert "payload" not in messages["root.GET.request"]


def test_what_the_full_route_model_adds() -> None:
    routes = (
        FullRoute(
            path="/break",
            method="post",
            body="paused",
            headers={"Content-Type": "text/plain", "X-Trace": "{{ uuid() }}"},
            latency=0.2,
            set={"paused": True},
            description="Pauses the agent.",
        ),
        FullRoute(path="/items", body=[1, "{{ state.n }}"]),
    )
    document = build(dataclasses.replace(SCHWARM, routes=routes))
    operation = document["operations"]["POST.break"]
    assert operation["description"] == (
        "Pauses the agent. Answers after 200 ms. Sets the shared state's paused."
    )
    answer = document["components"]["messages"]["break.POST.response"]
    headers = answer["bindings"]["http"]["headers"]
    assert headers["type"] == "object"
    assert headers["properties"]["Content-Type"] == {"type": "string", "const": "text/plain"}
    assert "uuid()" in headers["properties"]["X-Trace"]["description"]
    assert answer["contentType"] == "text/plain"
    assert answer["payload"] == {"type": "string", "const": "paused"}
    items = document["components"]["messages"]["items.GET.response"]["payload"]
    assert items["type"] == "array"
    assert items["items"][0] == {"const": 1}
    assert (items["minItems"], items["maxItems"]) == (2, 2)


# --- servers and text -------------------------------------------------------------------------


def test_server_urls() -> None:
    assert server_objects("wss://example.test/replay/", http=True) == {
        "ws": {
            "host": "example.test",
            "pathname": "/replay",
            "protocol": "wss",
            "description": "replay's WebSocket endpoints",
        },
        "http": {
            "host": "example.test",
            "pathname": "/replay",
            "protocol": "https",
            "description": "replay's HTTP routes",
        },
    }
    assert server_objects(None, http=True) == {}
    for bad in ("http://localhost:8123", "localhost:8123", "ws://", "ws://h/?q=1", "ws://h:x"):
        with pytest.raises(ValueError, match="not a WebSocket URL"):
            server_objects(bad, http=False)


def test_a_document_without_servers() -> None:
    document = build(dataclasses.replace(SCHWARM, routes=ROUTES), server_url=None)
    assert "servers" not in document
    assert not [c for c in document["channels"].values() if "servers" in c]


def test_document_text_round_trips() -> None:
    document = build(loaded(EVENTS))
    assert json.loads(document_text(document, "json")) == document
    text = document_text(document, "yaml")
    assert yaml.safe_load(text) == document
    assert text.startswith("asyncapi: 3.0.0\ninfo:\n")  # the document's order, not sorted
    shared = {"a": 1}
    assert "&id" not in document_text({"x": shared, "y": shared}, "yaml")  # no aliases


# --- the checks can fail ----------------------------------------------------------------------


def _broken(change: str) -> dict[str, Any]:
    document = json.loads(json.dumps(build(SCHWARM)))
    if change == "action":
        document["operations"]["send.ws.EVENT"]["action"] = "publish"  # AsyncAPI 2's word
    elif change == "channel field":
        document["channels"]["ws"]["subscribe"] = {}
    elif change == "http method":
        operation = document["operations"]["send.ws.EVENT"]
        operation["bindings"] = {"http": {"method": "FETCH"}}
    elif change == "server":
        del document["servers"]["ws"]["protocol"]
    elif change == "version":
        document["asyncapi"] = "3.0"
    return document


@pytest.mark.parametrize("change", ["action", "channel field", "http method", "server", "version"])
def test_the_official_schema_rejects_a_broken_document(change: str) -> None:
    assert schema_errors(_broken(change)) != []


def test_bad_keys_and_dangling_references_are_found() -> None:
    document = json.loads(json.dumps(build(SCHWARM)))
    document["channels"]["/ws"] = document["channels"].pop("ws")
    assert schema_errors(document) == []  # the official schema leaves keys to parsers
    problems = own_problems(document)
    assert "bad key '/ws'" in problems
    assert "#/channels/ws does not resolve" in problems


# --- the official parser ----------------------------------------------------------------------


def test_the_official_parser_accepts_the_documents(tmp_path: Path) -> None:
    missing = asyncapi_parser.missing_tools()
    if missing:
        pytest.skip(missing)
    documents = {
        "schwarm": build(SCHWARM),
        "events": build(loaded(EVENTS)),
        "routes": build(dataclasses.replace(SCHWARM, routes=ROUTES)),
        "aliases": build(loaded("endpoints:\n  /x:\n    messages: {}\n    aliases: [/y]\n")),
    }
    broken = json.loads(json.dumps(documents["schwarm"]))
    broken["operations"]["send.ws.EVENT"]["messages"] = [
        {"$ref": "#/channels/ws_stream/messages/chunk"}  # not a message of its channel
    ]
    documents["broken"] = broken
    files = []
    for name, document in documents.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(document_text(document, "yaml"))
        files.append(path)
    results = {Path(r["file"]).stem: r for r in asyncapi_parser.parse(files)}
    for name in ("schwarm", "events", "routes", "aliases"):
        errors = [d for d in results[name]["diagnostics"] if d["severity"] == asyncapi_parser.ERROR]
        assert errors == [], name
        assert results[name]["parsed"], name
    assert not results["broken"]["parsed"]
    codes = {d["code"] for d in results["broken"]["diagnostics"]}
    assert "asyncapi3-operation-messages-from-referred-channel" in codes
