"""The wire protocol, byte for byte."""

from __future__ import annotations

import json

from replay.protocol import (
    CLOSE_FRAME,
    MESSAGE_TYPES,
    Endpoint,
    StreamType,
    chunk_frame,
    data_text,
    encode,
    message_frame,
)


def test_endpoints_are_schwarms_paths() -> None:
    assert Endpoint.MESSAGES.value == "/ws"
    assert Endpoint.STREAM.value == "/ws/stream"
    assert str(Endpoint.STREAM) == "/ws/stream"
    assert {kind.value for kind in StreamType} == {"default", "tool", "close"}


def test_known_message_types() -> None:
    assert list(MESSAGE_TYPES) == [
        "CHAT_REQUESTED",
        "IS_WAITING",
        "CHAT_INPUT",
        "EVENT",
        "PAUSE_STATUS",
        "PAUSE_REQUEST",
        "CHAT",
        "BREAK",
        "ERROR",
        "STREAM",
    ]
    assert all(isinstance(text, str) and text for text in MESSAGE_TYPES.values())


def test_message_frame_is_compact_json() -> None:
    assert (
        message_frame("CHAT_REQUESTED", "Test chat request")
        == '{"message_type":"CHAT_REQUESTED","message":"Test chat request"}'
    )


def test_chunk_frames() -> None:
    assert chunk_frame("This is a ") == '{"type":"default","content":"This is a "}'
    assert chunk_frame("search(q)", StreamType.TOOL) == '{"type":"tool","content":"search(q)"}'


def test_close_frame() -> None:
    assert CLOSE_FRAME == '{"type":"close","content":null}'


def test_unicode_is_kept_as_is() -> None:
    frame = message_frame("EVENT", "héllo ✓ 日本")
    assert frame == '{"message_type":"EVENT","message":"héllo ✓ 日本"}'
    assert "\\u" not in frame


def test_special_characters_are_escaped_to_valid_json() -> None:
    text = 'quote " backslash \\ newline \n tab \t'
    frame = message_frame("EVENT", text)
    assert json.loads(frame) == {"message_type": "EVENT", "message": text}


def test_data_text_is_compact_json_text() -> None:
    data = {"name": "agent-1 - EventType.START_TURN", "status_code": "OK", "n": [1, 2.5, None]}
    text = data_text(data)
    assert text == '{"name":"agent-1 - EventType.START_TURN","status_code":"OK","n":[1,2.5,null]}'
    assert json.loads(text) == data
    frame = message_frame("EVENT", text)
    assert json.loads(json.loads(frame)["message"]) == data


def test_encode_keeps_key_order() -> None:
    assert encode({"b": 1, "a": 2}) == '{"b":1,"a":2}'
