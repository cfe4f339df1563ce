"""Client frames, and whether one matches what a wait step or a reaction asks for."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from replay.matching import MAX_PARSED, ClientFrame, lookup, matches
from replay.patterns import MAX_WORK, compile_pattern, search
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
    assert set(seen) == {"client", "endpoint", "text", "message_type", "message", "data", "frame"}
    assert seen == {
        "client": "c1",
        "endpoint": "/ws",
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
        "endpoint": "/ws",
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
    # A payload that is not a string is searched as its JSON, and is data as it is.
    assert received.message == '{"a":1}'
    assert received.data == {"a": 1}
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


# --- patterns that backtrack catastrophically in Python's re ----------------------------------
# With backtracking, these searches would run for longer than the universe has existed; that
# they complete is the test. Each asserts the right answer, not a time.

LENGTHS = [30, 1000, 10_000]

CATASTROPHIC = [
    # (pattern, adversarial text of about n characters, whether it matches)
    (r"^(\w+\s?)+$", lambda n: "word " * (n // 5) + "!", False),
    (r"^(\w+\s?)+$", lambda n: "word " * (n // 5) + "end", True),
    (r"(a+)+$", lambda n: "a" * n + "!", False),
    (r"(a+)+$", lambda n: "!" + "a" * n, True),
    (r"(a|aa)+$", lambda n: "a" * n + "b", False),
    (r"^(a|a?)+$", lambda n: "a" * n + "b", False),
    (r"(.*a){20}", lambda n: "a" * 19 + "b" * n, False),
    (r"(.*a){20}", lambda n: "ba" * max(n // 2, 20), True),
    (r"(x+x+)+y", lambda n: "x" * n, False),
    (r"^(\d+)*$", lambda n: "1" * n + "x", False),
    (r"^([a-z0-9]+[._-]?)+@example\.com$", lambda n: "a" * n + "@example.org", False),
    (r"^([a-z0-9]+[._-]?)+@example\.com$", lambda n: "a." * (n // 2) + "b@example.com", True),
    (r"^(\w+\s?)+$", lambda n: "a" * n + "!", False),  # issue 10: 27 characters, 6 s
]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize(("pattern", "text", "expected"), CATASTROPHIC)
def test_catastrophic_patterns_finish_with_the_right_answer(
    pattern: str, text: Any, expected: bool, length: int
) -> None:
    adversarial = text(length)
    received = frame("CHAT_INPUT", adversarial)
    assert matches(match("CHAT_INPUT", match=pattern), received) is expected
    assert matches(match("CHAT_INPUT", fields={"message": pattern}), received) is expected


def test_a_catastrophic_pattern_on_a_large_frame_finishes() -> None:
    # As large as an ordinary pattern is searched in (see MAX_WORK).
    longest = compile_pattern(r"^(\w+\s?)+!$").longest_text
    adversarial = "word " * (min(longest, MAX_PARSED) // 5 - 20) + "!"
    received = frame("CHAT_INPUT", adversarial)
    assert received.message == adversarial  # parsed: the frame is within the limit
    assert not matches(match("CHAT_INPUT", match=r"^(\w+\s?)+$"), received)
    assert matches(match("CHAT_INPUT", match=r"^(\w+\s?)+!$"), received)


# --- what patterns mean -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        # $ matches before a final newline too, as in Python; \z only at the very end.
        ("^yes$", "yes", True),
        ("^yes$", "yes\n", True),
        ("^yes$", "yes\n\n", False),
        ("^yes\\z", "yes\n", False),
        ("^yes\n$", "yes\n", True),
        ("yes\\$", "yes$\n", True),  # an escaped $ is the character
        ("(?m)^no$", "yes\nno\nmaybe", True),
        # the classes are ASCII-only (like Python's re.ASCII); \pL and \pN are not
        (r"^\w+$", "café", False),
        (r"^[\pL\pN_]+$", "café_2", True),
        (r"\d", "٣", False),
        (r"\pN", "٣", True),
        (r"\s", "\xa0", False),
        (r"\s", "\v", False),
        (r"\bcafé\b", "un café!", False),
        (r"(?i)CAFÉ", "café", True),  # case folding is Unicode
        # the rest is Python's: classes, groups, repetition, non-greedy, flags
        (r"(?P<verb>pause|resume) (?:now|later)", "please pause later", True),
        (r"^\d{3}-\d{2,4}$", "123-4567", True),
        (r"^\d{3}-\d{2,4}$", "123-45678", False),
        (r"a.*?b", "a\nb", False),
        (r"(?s)a.*?b", "a\nb", True),
        (r"[^\x00-\x7f]", "plain", False),
        (r"a.b", "a\x00b", True),
        (r"^.$", "\ud800", True),  # a lone surrogate from a client's JSON is one character
        ("", "", True),
    ],
)
def test_pattern_meanings(pattern: str, text: str, expected: bool) -> None:
    assert search(pattern, text) is expected


def test_a_lone_surrogate_in_a_frame_is_matched_like_any_character() -> None:
    received = ClientFrame("c", '{"message_type": "EVENT", "message": "x\\ud800y"}')
    assert received.message == "x\ud800y"
    assert matches(match("EVENT", match="^x.y$"), received)
    assert matches(match("EVENT", fields={"message": "[^a]y$"}), received)


def test_a_pattern_is_compiled_once() -> None:
    assert compile_pattern(r"^compiled (once)$") is compile_pattern(r"^compiled (once)$")


def test_a_text_too_long_for_a_large_pattern_does_not_match(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pattern = r"^\pL+$"  # a Unicode class: about 1,200 RE2 instructions
    compiled = compile_pattern(pattern)
    assert compiled.longest_text == MAX_WORK // compiled.size
    assert search(pattern, "a" * compiled.longest_text)
    with caplog.at_level(logging.WARNING, logger="replay.match"):
        assert not search(pattern, "a" * (compiled.longest_text + 1))
        assert not search(pattern, "é" * compiled.longest_text)  # bytes count, not characters
    warnings = [r.getMessage() for r in caplog.records if r.name == "replay.match"]
    assert len(warnings) == 1  # once per pattern, not once per frame
    assert "is searched in at most" in warnings[0]
    # an ordinary pattern is searched in frames of most of the largest size
    assert compile_pattern(r"^(\w+\s?)+$").longest_text > MAX_PARSED // 2


def test_a_field_whose_json_is_too_long_does_not_match() -> None:
    # 1e15 is 4 characters in the frame but 18 as JSON (1000000000000000.0): a value's
    # text can be longer than the frame it came from.
    numbers = "[" + ",".join(["1e15"] * 200_000) + "]"
    text = '{"message_type": "EVENT", "message": "x", "data": ' + numbers + "}"
    assert len(text) <= MAX_PARSED
    received = ClientFrame("c", text)
    assert received.frame is not None
    assert not matches(match("EVENT", fields={"data": ""}), received)
    assert matches(match("EVENT", fields={"data.0": r"^1000000000000000\.0$"}), received)
    short = ClientFrame("c", '{"message_type": "EVENT", "data": [1e15, 2]}')
    assert matches(match("EVENT", fields={"data": r"^\[1000000000000000\.0,2\]$"}), short)


# --- RE2 agrees with Python's re on ordinary patterns ------------------------------------------

_ATOMS = ["a", "b", "ab", "A", "1", "_", " ", "-", ".", r"\.", r"\d", r"\D", r"\w", r"\W"]
_ATOMS += [r"\s", r"\S", "[ab]", "[^a]", "[a-c0-9]", r"[\w.-]", r"[^\s]", r"\n"]
_QUANTIFIERS = ["", "", "*", "+", "?", "*?", "+?", "??", "{2}", "{1,3}", "{0,2}?", "{2,}"]


def _quantified(parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda part, q: part + q, parts, st.sampled_from(_QUANTIFIERS))


# A quantifier applies to an atom or to a group of unquantified atoms, never to a group
# that holds a quantifier: (a*)* would make Python's re, the reference, backtrack for
# longer than the test may run.
_PLAIN = st.lists(st.sampled_from(_ATOMS), min_size=1, max_size=3).map("".join)
_CHOICE = st.lists(_PLAIN, min_size=1, max_size=3).map("|".join)
_ITEMS = st.one_of(
    _quantified(st.sampled_from(_ATOMS)),
    _quantified(_CHOICE.map(lambda inner: f"({inner})")),
    _quantified(_CHOICE.map(lambda inner: f"(?:{inner})")),
    st.sampled_from([r"\b", r"\B"]),
)


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, max_size=4).map("".join),
        children.map(lambda inner: f"({inner})"),
        children.map(lambda inner: f"(?:{inner})"),
        st.lists(children, min_size=2, max_size=3).map("|".join),
    )


_BODIES = st.recursive(_ITEMS, _extend, max_leaves=8)


@st.composite
def ordinary_patterns(draw: st.DrawFn) -> str:
    """Patterns of constructs both engines have, written as Python users write them;
    ^ only at the start and $ only at the end (Python's $ may be followed by the final
    newline it stands before, which replay does not emulate)."""
    body = draw(_BODIES)
    if draw(st.booleans()):
        body = f"(?P<name>{body})"
    start = draw(st.sampled_from(["", "^", r"\A"]))
    end = draw(st.sampled_from(["", "$"]))
    flags = draw(st.sampled_from(["", "(?i)", "(?s)", "(?m)", "(?is)"]))
    return flags + start + body + end


@hypothesis.settings(max_examples=600, deadline=None)
@hypothesis.given(ordinary_patterns(), st.text(alphabet="abAB1_ .-\n\t", max_size=16))
def test_property_re2_agrees_with_python_on_ordinary_patterns(pattern: str, text: str) -> None:
    # Python before 3.14 does not let \B match the empty text; RE2 and Python 3.14 do.
    hypothesis.assume(text or r"\B" not in pattern)
    assert search(pattern, text) is (re.search(pattern, text) is not None)


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
