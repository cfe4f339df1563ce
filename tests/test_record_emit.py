"""Scenario YAML written for people (replay.record.emit): every value reads back equal."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from replay import templates
from replay.loader import parse_scenario
from replay.record.emit import count_values, lines, literal, quoted, scalar, step_lines

AWKWARD = [
    "plain words",
    "null",
    "Null",
    "~",
    "yes",
    "on",
    "off",
    "y",
    "1.5",
    "1_000",
    "0x1F",
    "12:30",
    "2024-12-03",
    ".inf",
    "=",
    "<<",
    "- item",
    "-x",
    "key: value",
    "a # comment",
    " leading",
    "trailing ",
    "",
    "line\nbreak",
    "tab\there",
    'quote " and backslash \\',
    "café ü",
    "emoji 😀",
    "\x85 next line",
    "\u2028 line separator",
    "\ufeff byte order mark",
    "\x7f delete",
    "@at",
    "`tick",
    "!tag",
    "*alias",
    "&anchor",
    "%directive",
    "|block",
    ">folded",
    "?key",
    "[flow]",
    "{flow}",
]


@pytest.mark.parametrize("text", AWKWARD)
def test_every_string_reads_back_as_written(text: str) -> None:
    assert yaml.safe_load(f"value: {scalar(text)}\n") == {"value": text}


def test_ordinary_words_are_written_bare() -> None:
    assert scalar("agent-1 - EventType.START_TURN") == "agent-1 - EventType.START_TURN"
    assert scalar("/ws/stream") == "/ws/stream"
    assert scalar("search(query='x')") == "search(query='x')"
    assert scalar("null") == '"null"'
    assert scalar("é") == '"é"'  # non-ASCII text is quoted, and kept readable


@pytest.mark.parametrize(
    "value", [0, -7, 10**30, 1.0, -0.0, 0.033, 1e16, 1.5e-7, 2.5e300, True, False, None]
)
def test_numbers_booleans_and_null_read_back_with_their_type(value: Any) -> None:
    loaded = yaml.safe_load(f"value: {scalar(value)}\n")["value"]
    assert loaded == value
    assert type(loaded) is type(value)


def test_a_float_yaml_would_read_as_text_gets_its_point() -> None:
    assert scalar(1e16) == "1.0e+16"
    assert scalar(1.5e-7) == "1.5e-07"


def test_what_json_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="not a number JSON can carry"):
        scalar(float("nan"))
    with pytest.raises(TypeError):
        scalar(object())


def test_mappings_and_lists_in_block_style() -> None:
    value = {
        "name": "span",
        "attributes": {"run_id": "abc", "tags": ["a", 1, {"deep": [[]]}]},
        "empty": {},
        "none": [],
        "nested": [[1, 2], [{"x": None}]],
    }
    text = "\n".join(lines(value, 0))
    assert yaml.safe_load(text) == value
    assert text.startswith("name: span\nattributes:\n  run_id: abc\n  tags:\n    - a\n")
    assert "empty: {}" in text
    assert "none: []" in text


def test_a_step_with_a_comment_loads_as_a_scenario() -> None:
    step = {"message": "EVENT", "data": {"name": "a", "n": 1.5}, "delay": 0.033}
    text = "steps:\n" + "\n".join(step_lines(step, "what it was\nand more")) + "\n"
    assert text.startswith("steps:\n  # what it was\n  # and more\n  - message: EVENT\n")
    loaded = parse_scenario(text, "x.yaml")
    assert loaded.valid, loaded.problems


@pytest.mark.parametrize(
    "text",
    [
        "{{ run.id }}",
        "{% if x %}",
        "{# comment #}",
        "ends with a brace {{x}}{",
        "{% endraw %} then {{ x }}",
        "endraw {{ x }} {% raw %}",
        "{{",
    ],
)
def test_a_literal_renders_as_itself(text: str) -> None:
    written = literal(text)
    assert templates.check(written, ()) == []
    assert templates.render_text(written, {}) == text
    assert templates.render_value(written, {}) == text  # in data, too: still the text


def test_text_without_template_markers_is_kept() -> None:
    assert literal("a { b } c %}") == "a { b } c %}"


def test_quoted_escapes_what_yaml_would_change() -> None:
    assert quoted("a\u2028b") == '"a\\u2028b"'
    assert quoted("\x85") == '"\\u0085"'


def test_values_are_counted_as_the_loader_counts_them() -> None:
    assert count_values({"chunk": "a", "delay": 0.1}) == 3
    assert count_values({"message": "EVENT", "data": {"a": [1, 2]}}) == 6
