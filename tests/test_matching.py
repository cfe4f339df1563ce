"""Client frames, and whether one matches what a wait step or a reaction asks for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from replay.matching import MAX_PARSED, ClientFrame, lookup, matches
from replay.scenario import ClientFrameMatch

ACTION = {
    "action": "pause",
    "n": 3,
    "ratio": 0.5,
    "flag": True,
    "nothing": None,
    "items": [{"a": 1}, "x", [10, 20]],
    "obj": {"k": [1, 2], "s": "é"},
    "0": "zero key",
}


def frame(
    message_type: Any = "PAUSE_REQUEST", message: Any = None, client: str = "c1"
) -> ClientFrame:
    """A /ws frame whose message is the JSON text of ``message`` (ACTION by default)."""
    text = (
        message if isinstance(message, str) else json.dumps(ACTION if message is None else message)
    )
    return ClientFrame(client, json.dumps({"message_type": message_type, "message": text}))


def match(message: str = "PAUSE_REQUEST", **fields: Any) -> ClientFrameMatch:
    return ClientFrameMatch(message=message, **fields)


# --- frames -----------------------------------------------------------------------------------


def test_frame_parts() -> None:
    received = frame()
    assert received.client == "c1"
    assert received.at == 0.0
    assert received.message_type == "PAUSE_REQUEST"
    assert received.message == json.dumps(ACTION)
    assert received.data == ACTION
    assert received.frame == {"message_type": "PAUSE_REQUEST", "message": json.dumps(ACTION)}


def test_for_template_keys() -> None:
    received = frame(message="hello")
    seen = received.for_template()
    assert set(seen) == {"client", "text", "message_type", "message", "data", "frame"}
    assert seen == {
        "client": "c1",
        "text": received.text,
        "message_type": "PAUSE_REQUEST",
        "message": "hello",
        "data": None,  # "hello" is not JSON
        "frame": {"message_type": "PAUSE_REQUEST", "message": "hello"},
    }
    json.dumps(seen)  # templates may output any of it


def test_for_template_of_a_binary_frame() -> None:
    seen = ClientFrame("c2", None).for_template()
    assert seen == {
        "client": "c2",
        "text": None,
        "message_type": None,
        "message": None,
        "data": None,
        "frame": None,
    }


def test_taken_at() -> None:
    received = frame()
    taken = received.taken_at(2.5)
    assert taken.at == 2.5
    assert (taken.client, taken.text) == (received.client, received.text)
    assert taken.data == received.data
    assert received.at == 0.0  # frames are immutable: a new one is made
    assert taken is not received


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "{",
        "[1, 2]",
        '"a string"',
        "42",
        "null",
        '{"message_type": ["EVENT"]}',
        '{"type": "default", "content": "x"}',
    ],
)
def test_frames_without_a_message_type(text: str | None) -> None:
    received = ClientFrame("c", text)
    assert received.message_type is None
    assert received.message is None
    assert received.data is None
    assert not matches(match("EVENT"), received)
    assert not matches(match("EVENT", match=".*"), received)
    assert not matches(match("EVENT", fields={"message_type": ".*"}), received)


def test_message_type_that_is_not_a_string() -> None:
    received = ClientFrame("c", '{"message_type": 5, "message": "x"}')
    assert received.message_type is None
    assert received.message == "x"
    assert not matches(match("EVENT"), received)
    assert not matches(match("EVENT", fields={"message_type": ".*"}), received)


def test_non_string_values_are_matched_on_their_json_with_unicode_kept() -> None:
    # Frames are JSON with UTF-8 kept as is (protocol.encode); a pattern written with the
    # same characters finds them in a nested value too.
    assert matches(match(fields={"message.obj": '"s":"é"'}), frame())
    assert matches(match(fields={"message.obj.s": "^é$"}), frame())


def test_message_that_is_not_a_string() -> None:
    received = ClientFrame("c", '{"message_type": "EVENT", "message": {"a": 1}}')
    assert received.message_type == "EVENT"
    assert received.message is None
    assert received.data is None
    assert matches(match("EVENT"), received)
    assert matches(match("EVENT", fields={"message.a": "^1$"}), received)


def test_frames_over_the_parse_limit_never_match() -> None:
    padding = "x" * MAX_PARSED
    received = ClientFrame("c", json.dumps({"message_type": "EVENT", "message": padding}))
    assert received.frame is None
    assert not matches(match("EVENT"), received)


# --- matching ---------------------------------------------------------------------------------


def test_type_match() -> None:
    assert matches(match("PAUSE_REQUEST"), frame())
    assert not matches(match("CHAT_INPUT"), frame())
    assert not matches(match("PAUSE_REQUEST"), frame("pause_request"))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("pause", True),  # searched, not matched from the start
        ('^\\{"action"', True),
        ("^pause", False),
        ("PAUSE", False),  # case-sensitive
        ("(?i)PAUSE", True),
        ("nowhere", False),
        ("", True),
    ],
)
def test_regex_on_the_message_text(pattern: str, expected: bool) -> None:
    assert matches(match(match=pattern), frame()) is expected


def test_regex_on_a_plain_text_message() -> None:
    received = frame("CHAT_INPUT", "deploy to production now")
    assert matches(match("CHAT_INPUT", match=r"\bproduction\b"), received)
    assert not matches(match("CHAT_INPUT", match=r"^production"), received)
    assert not matches(match("EVENT", match="production"), received)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"message.action": "^pause$"}, True),
        ({"message.action": "^resume$"}, False),
        ({"message_type": "^PAUSE_REQUEST$"}, True),
        ({"message_type": "PAUSE"}, True),
        ({"message.n": "^3$"}, True),
        ({"message.ratio": "^0.5$"}, True),
        ({"message.flag": "^true$"}, True),
        ({"message.nothing": "^null$"}, True),
        ({"message.items.0.a": "^1$"}, True),
        ({"message.items.1": "^x$"}, True),
        ({"message.items.2.1": "^20$"}, True),
        ({"message.items.2": r"^\[10,20\]$"}, True),  # compact JSON, no spaces
        ({"message.obj": r'^\{"k":\[1,2\],"s":'}, True),
        ({"message.obj.k.0": "^1$"}, True),
        ({"message.0": "^zero key$"}, True),  # a digit is a key in a mapping
        ({"message.action": "^pause$", "message.n": "^3$"}, True),
        ({"message.action": "^pause$", "message.n": "^4$"}, False),  # all must match
    ],
)
def test_fields(fields: dict[str, str], expected: bool) -> None:
    assert matches(match(fields=fields), frame()) is expected


@pytest.mark.parametrize(
    "path",
    [
        "message.missing",
        "message.items.3",
        "message.items.-1",
        "message.items.x",
        "message.action.deeper",
        "message.n.0",
        "nothing",
        "",
        "message.",
        ".message",
    ],
)
def test_missing_path_never_matches(path: str) -> None:
    assert not matches(match(fields={path: ".*"}), frame())
    assert not matches(match(fields={path: ""}), frame())


def test_fields_into_a_message_that_is_not_json() -> None:
    received = frame("CHAT_INPUT", "just text")
    assert matches(match("CHAT_INPUT", fields={"message": "^just"}), received)
    assert not matches(match("CHAT_INPUT", fields={"message.anything": ".*"}), received)


def test_type_regex_and_fields_together() -> None:
    wanted = match(match="pause", fields={"message.n": "3"})
    assert matches(wanted, frame())
    assert not matches(wanted, frame("CHAT_INPUT"))
    assert not matches(wanted, frame(message={**ACTION, "action": "resume"}))
    assert not matches(wanted, frame(message={**ACTION, "n": 4}))


def test_wait_step_matcher_matches_the_same() -> None:
    from replay.scenario import WaitStep

    step = WaitStep(wait="PAUSE_REQUEST", match="pause", fields={"message.action": "^pause$"})
    assert step.matcher == match(match="pause", fields={"message.action": "^pause$"})
    assert matches(step.matcher, frame())


@pytest.mark.parametrize(
    "text",
    [
        None,
        "\x00",
        "{" * 10_000,
        '{"message_type": "EVENT", "message": NaN}',
        '{"message_type": "EVENT", "message": "\\ud800"}',
        # deeper than the json module's recursion limit: a client can send this
        "[" * 100_000 + "]" * 100_000,
        '{"message_type": "EVENT", "message": "' + "[" * 100_000 + '"}',
        '{"message_type": "EVENT", "message": "{\\"a\\": ' + "[" * 100_000 + '"}',
    ],
    ids=["binary", "nul", "braces", "nan", "surrogate", "deep-frame", "deep-message", "deep-a"],
)
def test_matching_never_raises_on_odd_frames(text: str | None) -> None:
    wanted = match("EVENT", match=".", fields={"message.a.b": ".*"})
    received = ClientFrame("c", text)
    assert not matches(wanted, received)
    received.for_template()


# --- lookup -----------------------------------------------------------------------------------


def test_lookup() -> None:
    value = {"a": {"b": [1, {"c": "d"}]}, "s": '{"x": [5]}'}
    assert lookup(value, "a.b.1.c") == (True, "d")
    assert lookup(value, "a.b.0") == (True, 1)
    assert lookup(value, "a") == (True, {"b": [1, {"c": "d"}]})
    assert lookup(value, "s") == (True, '{"x": [5]}')  # the end of the path is not parsed
    assert lookup(value, "s.x.0") == (True, 5)  # but strings on the way are
    assert lookup(value, "a.b.2") == (False, None)
    assert lookup(value, "a.z") == (False, None)
    assert lookup("[1, 2]", "1") == (True, 2)
    assert lookup(None, "a") == (False, None)
    assert lookup(value, "s.x.y") == (False, None)


def test_lookup_finds_null() -> None:
    assert lookup({"a": None}, "a") == (True, None)
