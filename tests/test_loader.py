"""The loader: scenario files to models, every problem located and explained."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import hypothesis
import pytest
import yaml
from hypothesis import strategies as st

from replay import loader
from replay.errors import Problem
from replay.loader import MAX_DEPTH, MAX_FILE_BYTES, ScenarioFile, parse_scenario, scenario_name
from replay.protocol.declaration import Protocol
from replay.protocol.schwarm import SCHWARM
from replay.scenario import STEP_KINDS, ChunkStep, MessageStep

FILE = "scenarios/demo.yaml"


def with_types(types: dict[str, str]) -> Protocol:
    """Schwarm's protocol with these message types too."""
    return SCHWARM.with_types(types)


def parse(source: str | bytes, file: str = FILE) -> ScenarioFile:
    return parse_scenario(source, file)


def only_problem(source: str | bytes, file: str = FILE) -> Problem:
    loaded = parse(source, file)
    assert loaded.scenario is None
    assert not loaded.valid
    assert len(loaded.problems) == 1, loaded.problems
    return loaded.problems[0]


# --- valid files ----------------------------------------------------------------------------


def test_valid_file() -> None:
    loaded = parse(
        "version: 1\n"
        "description: demo\n"
        "delay: 500ms\n"
        "steps:\n"
        "  - message: EVENT\n"
        "    data: {name: agent-1, status_code: OK}\n"
        "  - chunk: 'hi '\n"
        "    delay: 0\n"
    )
    assert loaded.valid
    assert loaded.problems == ()
    assert loaded.name == "demo"
    assert loaded.file == FILE
    assert loaded.scenario is not None
    assert loaded.scenario.delay == 0.5
    first, second = loaded.scenario.steps
    assert isinstance(first, MessageStep)
    assert first.data == {"name": "agent-1", "status_code": "OK"}
    assert isinstance(second, ChunkStep)
    assert second.chunk == "hi "
    assert loaded.locate(("steps", 1, "chunk")) == (7, 5)
    assert loaded.locate(("steps", 1, "nothing", "here")) == (7, 5)


def test_bytes_with_bom_and_crlf_are_fine() -> None:
    loaded = parse(b"\xef\xbb\xbfsteps:\r\n  - chunk: a\r\n")
    assert loaded.valid


def test_scenario_name_is_the_file_stem() -> None:
    assert scenario_name("scenarios/all.yaml") == "all"
    assert scenario_name("all.yaml") == "all"
    assert parse("steps: [{chunk: a}]\n", "x/y/stream.yaml").name == "stream"


def test_custom_message_types() -> None:
    source = "steps:\n  - message: CUSTOM\n    text: x\n"
    assert not parse(source).valid
    assert parse_scenario(source, FILE, with_types({"CUSTOM": "mine"})).valid


# --- YAML-level problems --------------------------------------------------------------------


def test_yaml_syntax_error() -> None:
    problem = only_problem("steps:\n  - message: EVENT\n    text: [unclosed\n")
    # Located at the bracket that is never closed, not at the end of the file.
    assert (problem.file, problem.line, problem.column, problem.field) == (FILE, 3, 11, "")
    assert problem.message.startswith("not valid YAML: ")
    assert "this '[' is never closed" in problem.message
    assert str(problem).startswith(f"{FILE}:3:11: {problem.message}")


def test_tab_indentation() -> None:
    problem = only_problem("steps:\n\t- message: EVENT\n")
    assert (problem.line, problem.column, problem.field) == (2, 1, "")
    assert "YAML indents with spaces only; replace the tab with spaces" in problem.message
    assert str(problem).startswith(f"{FILE}:2:1: not valid YAML: ")


def test_duplicate_top_level_key_is_reported_not_merged() -> None:
    loaded = parse("steps:\n  - chunk: a\ndescription: x\nsteps:\n  - chunk: b\n")
    assert not loaded.valid
    assert len(loaded.problems) == 1
    problem = loaded.problems[0]
    assert (problem.line, problem.column, problem.field) == (4, 1, "steps")
    assert "duplicate key 'steps' (first at line 1)" in problem.message
    assert str(problem) == (
        f"{FILE}:4:1: steps: duplicate key 'steps' (first at line 1); "
        "YAML would keep only the last one: rename or remove one of them"
    )


def test_duplicate_key_in_a_step() -> None:
    loaded = parse("steps:\n  - message: EVENT\n    text: one\n    text: two\n")
    assert not loaded.valid
    [problem] = loaded.problems
    assert (problem.line, problem.column, problem.field) == (4, 5, "steps.0.text")
    assert "duplicate key 'text' (first at line 3)" in problem.message


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    lines.append("steps: *i")
    started = time.perf_counter()
    problem = only_problem("\n".join(lines) + "\n")
    assert time.perf_counter() - started < 10  # a generous bound: the real cost is ~1e9 values
    assert "too many values" in problem.message
    assert problem.expected == f"at most {loader.MAX_VALUES} values"
    assert problem.line >= 1
    assert problem.column >= 1
    assert str(problem).startswith(f"{FILE}:{problem.line}:{problem.column}: ")
    assert "aliases count each time" in str(problem)


def test_aliases_within_limits_are_fine() -> None:
    loaded = parse("x: &c {chunk: a}\nsteps: [*c, *c]\n")
    # 'x' is not a scenario field, but the aliases themselves are accepted
    assert [p.field for p in loaded.problems] == ["x"]


def test_a_long_file_keeps_its_values_when_its_document_is_freed() -> None:
    # The document and its nodes are freed a piece at a time after loading (see
    # replay.freeing): what the models took from it (payloads, vars, let, set, merged
    # anchors) must stay whole.
    steps = "".join(
        f"  - message: EVENT\n    data: {{n: {i}, list: [{i}, {{deep: [a, b]}}], map: {{k: v}}}}\n"
        f"  - let: {{v{i}: [1, {{x: y}}]}}\n  - set: {{s{i}: {{nested: [true]}}}}\n"
        "  - <<: *chunk\n"
        for i in range(200)
    )
    source = (
        "x-defaults: &chunk {chunk: hi, delay: 0}\n"
        "vars: {names: [a, b], more: {c: [1, 2]}}\nsteps:\n" + steps
    )
    loaded = parse(source)
    assert loaded.valid, loaded.problems[:3]
    assert loaded.scenario is not None
    expected = yaml.safe_load(source)
    assert loaded.scenario.vars == expected["vars"]
    dumped = [step.model_dump(exclude_none=True) for step in loaded.scenario.steps]
    assert dumped[0]["data"] == {"n": 0, "list": [0, {"deep": ["a", "b"]}], "map": {"k": "v"}}
    assert dumped[1]["let"] == {"v0": [1, {"x": "y"}]}
    assert dumped[2]["set"] == {"s0": {"nested": [True]}}
    assert dumped[3]["chunk"] == "hi"
    assert dumped[-4]["data"]["list"] == [199, {"deep": ["a", "b"]}]
    assert loaded.locate(("steps", 799, "chunk")) == (loaded.locate(("steps", 799))[0], 5)


def test_file_over_the_size_limit() -> None:
    source = b"# " + b"x" * MAX_FILE_BYTES
    problem = only_problem(source)
    assert (problem.line, problem.column, problem.field) == (0, 0, "")
    assert problem.message == "the file is too large"
    assert problem.expected == f"at most {MAX_FILE_BYTES} bytes"
    assert problem.found == f"{len(source)} bytes"
    assert str(problem) == (
        f"{FILE}: the file is too large; expected at most {MAX_FILE_BYTES} bytes, "
        f"found {len(source)} bytes"
    )


def test_size_limit_counts_utf8_bytes_of_text() -> None:
    text = "# " + "é" * (MAX_FILE_BYTES // 2)  # fewer characters than the limit, more bytes
    assert len(text) < MAX_FILE_BYTES
    assert only_problem(text).message == "the file is too large"


def test_deep_nesting() -> None:
    data = "[" * 40 + "]" * 40
    problem = only_problem(f"steps:\n  - message: EVENT\n    data: {data}\n")
    assert problem.message == "the document nests too deeply"
    assert problem.expected == f"at most {MAX_DEPTH} levels"
    # the data starts at column 11; the 31st bracket inside it is the 33rd level
    assert (problem.line, problem.column) == (3, 11 + (MAX_DEPTH + 1 - 3))
    assert problem.field.startswith("steps.0.data.0.0")
    assert str(problem).startswith(f"{FILE}:3:{problem.column}: steps.0.data.0.0.")


def test_very_deep_nesting_does_not_blow_the_stack() -> None:
    problem = only_problem("steps: " + "[" * 3000 + "]" * 3000 + "\n")
    assert "nests too deeply" in problem.message


def test_nesting_within_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 4
    loaded = parse(f"steps:\n  - message: EVENT\n    data: {'[' * depth}{']' * depth}\n")
    assert loaded.valid


def test_empty_file() -> None:
    for source in ("", b"", "# only a comment\n", "---\n"):
        problem = only_problem(source)
        assert (problem.line, problem.column, problem.field) == (0, 0, "")
        assert problem.message == "the file is empty"
        assert str(problem) == (
            f"{FILE}: the file is empty; expected a mapping with 'steps' "
            "(and optionally 'description')"
        )


def test_non_utf8_bytes() -> None:
    problem = only_problem(b"steps:\n  - chunk: caf\xe9\n")
    assert (problem.line, problem.column, problem.field) == (2, 15, "")
    assert problem.message == "the file is not valid UTF-8"
    assert (
        str(problem)
        == f"{FILE}:2:15: the file is not valid UTF-8; expected UTF-8 text, found byte 0xe9"
    )


def test_control_characters() -> None:
    problem = only_problem(b"steps:\n  - chunk: a\x07b\n")
    assert (problem.line, problem.column) == (2, 13)
    assert "character YAML does not allow" in problem.message
    assert problem.found == "character U+0007"


def test_lone_surrogate_in_text() -> None:
    problem = only_problem("steps:\n  - chunk: \ud800\n")
    assert (problem.line, problem.column) == (2, 12)
    assert problem.found == "character U+D800"


def test_unsafe_tags_are_refused() -> None:
    problem = only_problem("steps: !!python/name:os.system x\n")
    assert (problem.line, problem.column) == (1, 8)
    assert "the YAML tag !!python/name:os.system is not one replay reads" in (problem.message)
    # On a list or mapping the tag is ignored (the loader builds those itself): nothing runs,
    # and the list is validated as plain data.
    problem = only_problem("steps: !!python/object/apply:os.system [echo hi]\n")
    assert problem.field == "steps.0"
    assert problem.found == "'echo hi'"


def test_several_documents() -> None:
    problem = only_problem("steps: [{chunk: a}]\n---\nsteps: [{chunk: b}]\n")
    assert problem.line == 2
    assert "a second YAML document ('---'): a file holds one scenario" in problem.message


def test_complex_key() -> None:
    problem = only_problem("? [a]\n: b\nsteps:\n  - chunk: a\n")
    assert problem.message == "a key must be a plain word"
    assert (problem.line, problem.column) == (1, 3)


# --- document-level problems ----------------------------------------------------------------


def test_top_level_list() -> None:
    problem = only_problem("- message: EVENT\n  text: hi\n")
    assert (problem.line, problem.column, problem.field) == (1, 1, "")
    assert str(problem) == f"{FILE}:1:1: wrong type; expected a mapping, found a list"


def test_top_level_scalar() -> None:
    problem = only_problem("hello\n")
    assert str(problem) == f"{FILE}:1:1: wrong type; expected a mapping, found 'hello'"


def test_missing_steps() -> None:
    problem = only_problem("description: x\n")
    assert (problem.line, problem.column, problem.field) == (1, 1, "steps")
    assert str(problem) == f"{FILE}:1:1: steps: missing field 'steps'"


def test_empty_steps() -> None:
    problem = only_problem("description: x\nsteps: []\n")
    assert (problem.line, problem.column, problem.field) == (2, 1, "steps")
    assert str(problem) == f"{FILE}:2:1: steps: must not be empty"


def test_steps_not_a_list() -> None:
    problem = only_problem("steps: hello\n")
    assert str(problem) == f"{FILE}:1:1: steps: wrong type; expected a list, found 'hello'"


def test_wrong_type_of_a_field() -> None:
    problem = only_problem("steps:\n  - message: EVENT\n    text: [1, 2]\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.0.text")
    assert str(problem) == f"{FILE}:3:5: steps.0.text: wrong type; expected a string, found a list"


def test_wrong_type_of_description() -> None:
    problem = only_problem("description: {a: 1}\nsteps:\n  - chunk: a\n")
    assert (
        str(problem) == f"{FILE}:1:1: description: wrong type; expected a string, found a mapping"
    )


def test_wrong_version() -> None:
    problem = only_problem("version: 2\nsteps:\n  - chunk: a\n")
    assert str(problem) == f"{FILE}:1:1: version: not an allowed value; expected 1, found 2"


def test_unknown_step_kind_with_suggestion() -> None:
    problem = only_problem("steps:\n  - chunk: a\n  - mesage: EVENT\n    text: hi\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.1")
    assert problem.message == "unknown step kind (did you mean 'message'?)"
    assert problem.found == "'mesage'"
    assert str(problem) == (
        f"{FILE}:3:5: steps.1: unknown step kind (did you mean 'message'?); "
        "expected one of message, chunk, tool, close, stream, sleep, play, parallel, repeat, "
        "wait, raw, binary, disconnect, drop, choose, let, set, wait_connect, found 'mesage'"
    )


def test_unknown_step_kind_without_suggestion() -> None:
    problem = only_problem("steps:\n  - zzz: 1\n")
    assert problem.message == "unknown step kind"
    assert problem.found == "'zzz'"


def test_step_with_two_kinds() -> None:
    problem = only_problem("steps:\n  - chunk: a\n    tool: b\n")
    assert (problem.line, problem.column, problem.field) == (2, 5, "steps.0")
    assert problem.message == "a step has exactly one kind, but this one has chunk and tool"


def test_step_that_is_not_a_mapping() -> None:
    problem = only_problem("steps:\n  - hello\n")
    assert (problem.line, problem.column, problem.field) == (2, 5, "steps.0")
    assert problem.message == "a step must be a mapping with one kind key"
    assert problem.found == "'hello'"


def test_unknown_field_in_a_step_with_suggestion() -> None:
    problem = only_problem("steps:\n  - message: EVENT\n    txt: hi\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.0.txt")
    assert str(problem) == (
        f"{FILE}:3:5: steps.0.txt: unknown field 'txt' (did you mean 'text'?); "
        "expected one of delay, jitter, to, endpoint, message, text, data, envelope"
    )


def test_unknown_top_level_field_with_suggestion() -> None:
    problem = only_problem("descripton: x\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.column, problem.field) == (1, 1, "descripton")
    assert problem.message == "unknown field 'descripton' (did you mean 'description'?)"
    assert problem.expected == (
        "one of version, description, delay, jitter, to, vars, reacts_to, on_connect, steps"
    )


DURATION_EXPECTED = (
    'seconds as a number up to 60 (0.5, 30) or a string with a unit ("500ms", "90s", "2m")'
)


@pytest.mark.parametrize(
    ("value", "message", "found"),
    [
        ("-1", "a duration must be zero or more seconds", "-1"),
        ("-0.5s", "'-0.5s' is not a duration", "'-0.5s'"),
        (
            "5000",
            "5000 is read as seconds (1 h 23 min 20 s), over the limit of 1 h for one pause; "
            "write 5000ms for milliseconds",
            "5000",
        ),
        ("soon", "'soon' is not a duration", "'soon'"),
        ("2h", "'2h' is not a duration", "'2h'"),
        ("true", "a duration cannot be a boolean", "the boolean true"),
        (".nan", "a duration must be zero or more seconds", "nan"),
        (".inf", "a duration must be zero or more seconds", "inf"),
    ],
)
def test_bad_step_delays(value: str, message: str, found: str) -> None:
    problem = only_problem(f"steps:\n  - chunk: a\n    delay: {value}\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.0.delay")
    assert (problem.message, problem.expected, problem.found) == (
        message,
        DURATION_EXPECTED,
        found,
    )
    assert str(problem) == (
        f"{FILE}:3:5: steps.0.delay: {message}; expected {DURATION_EXPECTED}, found {found}"
    )


def test_bad_scenario_delay_and_sleep() -> None:
    problem = only_problem("delay: -0.5\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.column, problem.field) == (1, 1, "delay")
    assert problem.expected == DURATION_EXPECTED
    problem = only_problem("steps:\n  - sleep: forever\n")
    assert (problem.line, problem.column, problem.field) == (2, 5, "steps.0.sleep")
    assert problem.found == "'forever'"


def test_unknown_message_type_with_suggestion() -> None:
    problem = only_problem("steps:\n  - message: EVNT\n    text: hi\n")
    assert (problem.line, problem.column, problem.field) == (2, 5, "steps.0.message")
    assert problem.message == "unknown message type 'EVNT' (did you mean 'EVENT'?)"
    assert problem.found == "'EVNT'"
    assert problem.expected.startswith("one of CHAT_REQUESTED, IS_WAITING, ")
    assert str(problem).startswith(
        f"{FILE}:2:5: steps.0.message: unknown message type 'EVNT' (did you mean 'EVENT'?); "
    )


@pytest.mark.parametrize(
    "step",
    [
        "  - message: EVENT\n",
        "  - message: EVENT\n    text: hi\n    data: {a: 1}\n",
    ],
    ids=["neither", "both"],
)
def test_message_needs_exactly_one_of_text_and_data(step: str) -> None:
    problem = only_problem("steps:\n  - chunk: a\n" + step)
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.1")
    assert (
        str(problem) == f"{FILE}:3:5: steps.1: a message step needs exactly one of 'text' or 'data'"
    )


def test_data_without_json_text() -> None:
    problem = only_problem("steps:\n  - message: EVENT\n    data: {when: 2024-01-01}\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.0.data")
    assert "plain JSON" in problem.message


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        ("chunk: ''", "steps.0.chunk", "must not be empty"),
        ("close: socket", "steps.0.close", "not an allowed value"),
        ("play: Not A Name", "steps.0.play", "not a scenario name"),
        ("parallel: []", "steps.0.parallel", "must not be empty"),
    ],
)
def test_other_step_fields(step: str, field: str, message: str) -> None:
    problem = only_problem(f"steps:\n  - {step}\n")
    assert (problem.line, problem.column, problem.field, problem.message) == (2, 5, field, message)


def test_all_problems_are_listed_in_file_order() -> None:
    loaded = parse(
        "descripton: x\nsteps:\n  - message: EVNT\n    text: hi\n  - chunk: a\n    delay: soon\n"
    )
    assert [(p.line, p.field) for p in loaded.problems] == [
        (1, "descripton"),
        (3, "steps.0.message"),
        (6, "steps.1.delay"),
    ]


def test_invalid_scenario_file_name() -> None:
    loaded = parse("steps:\n  - chunk: a\n", "scenarios/Bad Name.yaml")
    assert loaded.name == "Bad Name"
    assert loaded.scenario is not None
    assert not loaded.valid
    [problem] = loaded.problems
    assert (problem.line, problem.column, problem.field) == (0, 0, "")
    assert str(problem) == (
        "scenarios/Bad Name.yaml: 'Bad Name' is not a valid scenario name; expected lower-case "
        "letters, digits, '-' and '_', starting with a letter or digit, found Bad Name"
    )


def test_yaml_11_boolean_words_as_keys_stay_words() -> None:
    # PyYAML reads `on:` as the key True; the loader keeps the word the user wrote.
    problem = only_problem("on: x\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.column, problem.field) == (1, 1, "on")
    assert problem.message == "unknown field 'on'"
    problem = only_problem("steps:\n  - chunk: a\n    yes: 1\n")
    assert (problem.field, problem.message) == ("steps.0.yes", "unknown field 'yes'")


def test_yaml_11_boolean_words_as_values_are_booleans() -> None:
    problem = only_problem("steps:\n  - message: EVENT\n    text: on\n")
    assert str(problem) == (
        f"{FILE}:3:5: steps.0.text: wrong type (YAML reads yes, no, on, off, true and false "
        "as booleans: quote it); expected a string, found the boolean true"
    )
    assert parse("steps:\n  - message: EVENT\n    text: 'on'\n").valid


def test_problems_are_json_ready() -> None:
    problem = only_problem("steps: []\n")
    assert problem.to_dict() == {
        "file": FILE,
        "line": 1,
        "column": 1,
        "field": "steps",
        "message": "must not be empty",
        "expected": "",
        "found": "",
        "text": f"{FILE}:1:1: steps: must not be empty",
    }


# --- never raises ---------------------------------------------------------------------------


def test_random_bytes_never_raise() -> None:
    rng = random.Random(1234)
    for _ in range(500):
        source = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
        loaded = parse_scenario(source, FILE)
        assert isinstance(loaded, ScenarioFile)
        assert loaded.valid or loaded.problems


def test_random_yaml_like_text_never_raises() -> None:
    rng = random.Random(4321)
    pieces = [*":-[]{}&*!|>'\"#%@`,?\n\t ", "steps", "message", "chunk", "EVENT", "delay"]
    pieces += ["1", "-1", "&x ", "*x", "\n  - ", "\n    ", "play", "parallel", "\x00", "é"]
    for _ in range(2000):
        source = "".join(rng.choice(pieces) for _ in range(rng.randrange(60)))
        loaded = parse_scenario(source, FILE)
        assert isinstance(loaded, ScenarioFile)
        assert loaded.valid or loaded.problems
        for problem in loaded.problems:
            assert str(problem).startswith(FILE)


@pytest.mark.parametrize(
    "source",
    [
        b"\x00\x01\x02",
        b"\xff\xfe\x00s\x00t",
        b"\x1d",
        "\ud800",
        b"steps: *nothing\n",
        b"&a [*a]",
        b"steps: [" + b"{" * 100,
        b"!!binary x",
        b"%YAML 9.9\n---\na: 1\n",
    ],
)
def test_garbage_never_raises(source: bytes | str) -> None:
    loaded = parse_scenario(source, FILE)
    assert not loaded.valid
    assert loaded.problems


def test_plays_lists_every_played_scenario_with_its_path() -> None:
    loaded = parse("steps:\n  - chunk: a\n  - play: one\n  - parallel: [two, three]\n")
    assert loaded.plays == (
        (("steps", 1, "play"), "one"),
        (("steps", 2, "parallel", 0), "two"),
        (("steps", 2, "parallel", 1), "three"),
    )


def test_plays_are_read_even_from_an_invalid_file() -> None:
    loaded = parse("steps:\n  - message: EVNT\n    text: x\n  - play: other\n")
    assert not loaded.valid
    assert loaded.plays == ((("steps", 1, "play"), "other"),)


# --- templates --------------------------------------------------------------------------------


def only_template_problem(source: str, file: str = FILE) -> Problem:
    """The one problem of a file whose models are fine but whose templates are not."""
    loaded = parse(source, file)
    assert loaded.scenario is not None
    assert not loaded.valid
    assert len(loaded.problems) == 1, loaded.problems
    return loaded.problems[0]


def test_templates_that_check_are_fine() -> None:
    loaded = parse(
        "vars: {name: Ada}\n"
        "steps:\n"
        "  - message: EVENT\n"
        "    data: {who: '{{ vars.name }}', at: '{{ now.iso }}', n: '{{ iteration }}'}\n"
        "  - stream: 'Hi {{ vars.name }} from {{ run.id }}'\n"
    )
    assert loaded.valid, loaded.problems


def test_template_syntax_error_is_located() -> None:
    problem = only_template_problem(
        "steps:\n  - chunk: a\n  - message: EVENT\n    text: 'hi {{ x'\n"
    )
    assert (problem.line, problem.column, problem.field) == (4, 5, "steps.1.text")
    assert problem.message.startswith("template syntax error: ")
    assert str(problem).startswith(f"{FILE}:4:5: steps.1.text: template syntax error: ")


def test_template_syntax_error_in_a_block_scalar() -> None:
    problem = only_template_problem("steps:\n  - stream: |\n      line one\n      {% if x %}\n")
    assert (problem.line, problem.field) == (2, "steps.0.stream")
    assert problem.message.startswith("template syntax error (line ")


def test_unknown_template_name_is_located_with_a_suggestion() -> None:
    problem = only_template_problem("steps:\n  - chunk: a\n  - tool: '{{ nwo.iso }}'\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.1.tool")
    assert problem.message.startswith("unknown name 'nwo' in a template (did you mean 'now'?); ")


def test_undeclared_variable_is_located_with_a_suggestion() -> None:
    problem = only_template_problem("vars:\n  name: Ada\nsteps:\n  - raw: '{{ vars.nmae }}'\n")
    assert (problem.line, problem.column, problem.field) == (4, 5, "steps.0.raw")
    assert problem.message == (
        "variable 'nmae' is not declared (did you mean 'name'?): add it under 'vars:' "
        "with a default, or bind it with a 'let' step (declared: name)"
    )


def test_template_problems_in_nested_data_are_located_at_the_string() -> None:
    loaded = parse(
        "vars: {name: Ada}\n"
        "steps:\n"
        "  - message: EVENT\n"
        "    data:\n"
        "      outer:\n"
        "        inner: [ok, '{{ vars.nmae }}']\n"
        "        deeper: {key: '{{ nope }}'}\n"
        "      list:\n"
        "        - plain\n"
        "        - '{{ x'\n"
    )
    assert not loaded.valid
    assert loaded.scenario is not None  # the models are fine: only templates are wrong
    assert [(p.line, p.column, p.field) for p in loaded.problems] == [
        (6, 21, "steps.0.data.outer.inner.1"),
        (7, 18, "steps.0.data.outer.deeper.key"),
        (10, 11, "steps.0.data.list.1"),
    ]
    nmae, nope, syntax = loaded.problems
    assert "variable 'nmae' is not declared (did you mean 'name'?)" in nmae.message
    assert nope.message.startswith("unknown name 'nope' in a template")
    assert syntax.message.startswith("template syntax error")


def test_template_problems_inside_repeat_steps() -> None:
    loaded = parse(
        "vars: {name: Ada}\n"
        "steps:\n"
        "  - repeat: 2\n"
        "    steps:\n"
        "      - chunk: '{{ vars.nmae }}'\n"
        "      - repeat: forever\n"
        "        steps:\n"
        "          - message: EVENT\n"
        "            data: {a: ['{{ nwo }}']}\n"
        "          - stream: '{{ x'\n"
    )
    assert [(p.line, p.column, p.field) for p in loaded.problems] == [
        (5, 9, "steps.0.steps.0.chunk"),
        (9, 24, "steps.0.steps.1.steps.0.data.a.0"),
        (10, 13, "steps.0.steps.1.steps.1.stream"),
    ]
    assert "(did you mean 'name'?)" in loaded.problems[0].message
    assert "(did you mean 'now'?)" in loaded.problems[1].message
    assert loaded.problems[2].message.startswith("template syntax error")


def test_template_problems_and_other_problems_are_listed_together_in_order() -> None:
    # A file whose models are fine but templates are not lists every template problem;
    # a name problem (from the file name) comes first.
    loaded = parse(
        "steps:\n  - chunk: '{{ nope }}'\n  - chunk: '{{ vars.x }}'\n", "scenarios/Bad.yaml"
    )
    assert [(p.line, p.field) for p in loaded.problems] == [
        (0, ""),
        (2, "steps.0.chunk"),
        (3, "steps.1.chunk"),
    ]


@pytest.mark.parametrize(
    "template",
    [
        "{{ received.message | nofilter }}",
        "{{ step is notatest }}",
        "{{ " + "(" * 200 + ")" * 200 + " }}",
    ],
    ids=["unknown-filter", "unknown-test", "deep-nesting"],
)
def test_templates_that_jinja_cannot_compile_are_problems_not_exceptions(template: str) -> None:
    problem = only_template_problem(f"steps:\n  - chunk: a\n  - chunk: '{template}'\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.1.chunk")


def test_strings_that_are_not_templates_are_not_checked() -> None:
    loaded = parse(
        "steps:\n"
        "  - message: EVENT\n    text: 'braces { like } this'\n"
        "  - wait: CHAT_INPUT\n    match: '{{ not checked: a regex }}'\n"
    )
    assert loaded.valid, loaded.problems


# --- the newer fields -------------------------------------------------------------------------


def test_unknown_field_in_a_nested_repeat_step_lists_the_allowed_fields() -> None:
    problem = only_problem(
        "steps:\n"
        "  - repeat: 2\n"
        "    steps:\n"
        "      - chunk: a\n"
        "      - repeat: forever\n"
        "        steps:\n"
        "          - stream: hi\n"
        "            rte: 40\n"
    )
    assert (problem.line, problem.column, problem.field) == (8, 13, "steps.0.steps.1.steps.0.rte")
    assert problem.message == "unknown field 'rte' (did you mean 'rate'?)"
    assert problem.expected == (
        "one of delay, jitter, to, endpoint, stream, rate, type, close_stream, envelope"
    )


def test_unknown_field_on_a_repeat_step() -> None:
    loaded = parse("steps:\n  - repeat: 2\n    step: [{chunk: a}]\n")
    assert [(p.field, p.message) for p in loaded.problems] == [
        ("steps.0.steps", "missing field 'steps'"),
        ("steps.0.step", "unknown field 'step' (did you mean 'steps'?)"),
    ]
    assert loaded.problems[1].expected == "one of delay, jitter, to, repeat, steps"


def test_unknown_step_kind_inside_a_repeat() -> None:
    problem = only_problem("steps:\n  - repeat: 2\n    steps:\n      - mesage: EVENT\n")
    assert (problem.line, problem.column, problem.field) == (4, 9, "steps.0.steps.0")
    assert problem.message == "unknown step kind (did you mean 'message'?)"


def test_reacts_to_unknown_field() -> None:
    problem = only_problem(
        "reacts_to:\n  message: PAUSE_REQUEST\n  mach: x\nsteps:\n  - chunk: a\n"
    )
    assert (problem.line, problem.column, problem.field) == (3, 3, "reacts_to.mach")
    assert problem.message == "unknown field 'mach' (did you mean 'match'?)"
    assert problem.expected == "one of message, match, fields"


def test_reacts_to_unknown_message_type() -> None:
    problem = only_problem("reacts_to:\n  message: PAUSE_REQEST\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.column, problem.field) == (2, 3, "reacts_to.message")
    assert problem.message == "unknown message type 'PAUSE_REQEST' (did you mean 'PAUSE_REQUEST'?)"
    assert problem.found == "'PAUSE_REQEST'"


def test_reacts_to_not_a_mapping() -> None:
    problem = only_problem("reacts_to: PAUSE_REQUEST\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.field) == (1, "reacts_to")
    assert problem.message == "wrong type"
    assert problem.expected == "a mapping"


def test_wait_unknown_message_type() -> None:
    problem = only_problem("steps:\n  - wait: CHAT_INPT\n    timeout: 5m\n")
    assert (problem.line, problem.column, problem.field) == (2, 5, "steps.0.wait")
    assert problem.message == "unknown message type 'CHAT_INPT' (did you mean 'CHAT_INPUT'?)"
    assert problem.expected.startswith("one of CHAT_REQUESTED, ")


def test_wait_with_project_message_types() -> None:
    source = "steps:\n  - wait: TOKEN_USAGE\n"
    assert not parse(source).valid
    assert parse_scenario(source, FILE, with_types({"TOKEN_USAGE": "token counts"})).valid


def test_bad_wait_fields_are_located() -> None:
    loaded = parse(
        "steps:\n  - wait: CHAT_INPUT\n    on_timeout: skip\n    timeout: soon\n    match: '('\n"
    )
    assert [(p.line, p.field, p.message) for p in loaded.problems] == [
        (3, "steps.0.on_timeout", "not an allowed value"),
        (4, "steps.0.timeout", "'soon' is not a duration"),
        (
            5,
            "steps.0.match",
            "not a regular expression: missing ), unterminated subpattern at position 0",
        ),
    ]
    assert loaded.problems[0].expected == "'fail' or 'continue'"
    assert loaded.problems[1].expected == DURATION_EXPECTED
    assert loaded.problems[2].expected == "a regular expression (RE2 syntax)"


def test_bad_pattern_in_fields_is_located_at_its_path() -> None:
    problem = only_problem(
        "steps:\n  - wait: CHAT_INPUT\n    fields:\n      message.a: ok\n      message.b: '['\n"
    )
    assert problem.message.startswith("not a regular expression: ")
    assert (problem.line, problem.column, problem.field) == (5, 7, "steps.0.fields.message.b")
    assert problem.found == "'['"


NO_BACKTRACKING = (
    "a regular expression without backreferences, lookaround, atomic groups or "
    "possessive quantifiers (RE2 syntax)"
)


def test_a_pattern_that_needs_backtracking_is_located() -> None:
    problem = only_problem(
        "steps:\n  - chunk: hi\n  - wait: CHAT_INPUT\n    match: '^(?=\\w)(\\w+\\s?)+$'\n",
        "chat.yaml",
    )
    assert str(problem) == (
        "chat.yaml:4:5: steps.1.match: this pattern needs backtracking (lookahead '(?='), "
        "which replay refuses because client text could make it run for minutes; expected "
        + NO_BACKTRACKING
        + ", found '^(?=\\\\w)(\\\\w+\\\\s?)+$'"
    )


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        ("(a)\\1", "backreference '\\1'"),
        ("(?P<a>x)(?P=a)", "named backreference '(?P='"),
        ("(?!x)", "negative lookahead '(?!'"),
        ("(?<=x)y", "lookbehind '(?<='"),
        ("(?<!x)y", "negative lookbehind '(?<!'"),
        ("(?>x)", "atomic group '(?>'"),
        ("x++", "possessive quantifier '++'"),
        ("x{2}+", "possessive quantifier '{2}+'"),
        ("(x)?(?(1)y|z)", "conditional group '(?('"),
    ],
)
def test_backtracking_in_fields_and_reactions_is_located(pattern: str, feature: str) -> None:
    quoted = json.dumps(pattern)
    loaded = parse(
        f"reacts_to:\n  message: CHAT_INPUT\n  match: {quoted}\n"
        f"steps:\n  - wait: PAUSE_REQUEST\n    fields:\n      message.action: {quoted}\n"
    )
    assert [(p.line, p.column, p.field) for p in loaded.problems] == [
        (3, 3, "reacts_to.match"),
        (7, 7, "steps.0.fields.message.action"),
    ]
    for problem in loaded.problems:
        assert problem.message == (
            f"this pattern needs backtracking ({feature}), which replay refuses because "
            "client text could make it run for minutes"
        )
        assert problem.expected == NO_BACKTRACKING
        assert problem.found == repr(pattern)


@pytest.mark.parametrize(
    ("pattern", "message", "expected", "found"),
    [
        (
            "a{2000}",
            "this pattern repeats too much ({2000}): RE2 allows at most 1000 repetitions, "
            "nested ones multiplied",
            "repetition counts up to 1000, e.g. a{1000} or (a{10}){100}",
            "'a{2000}'",
        ),
        (
            "(a{1000}){1000}",
            "this pattern repeats too much ({1000}): RE2 allows at most 1000 repetitions, "
            "nested ones multiplied",
            "repetition counts up to 1000, e.g. a{1000} or (a{10}){100}",
            "'(a{1000}){1000}'",
        ),
        (
            "\\pL{5}",
            "this pattern is too large to search client text quickly",
            "at most 5000 RE2 instructions (a Unicode class such as \\pL is about 1,200: "
            "use fewer of them, or repeat them less)",
            "5984 instructions",
        ),
        (
            "a{,3}",
            "RE2 reads {,3} as the text '{,3}', not as a repetition: write {0,3} to repeat, "
            "or \\{,3} for the text",
            "a regular expression (RE2 syntax)",
            "'a{,3}'",
        ),
        (
            "yes\\Z",
            "RE2 has no \\Z: write \\z for the very end of the text, or $, which also "
            "matches before a final newline",
            "a regular expression (RE2 syntax)",
            "'yes\\\\Z'",
        ),
        (
            "caf\\u00e9",
            "RE2 has no \\u escapes: write \\x{00e9} (any number of hex digits) or the "
            "character itself",
            "a regular expression (RE2 syntax)",
            "'caf\\\\u00e9'",
        ),
        (
            "(?x) yes",
            "RE2 has no verbose mode (?x): remove it, with the spaces and comments it allowed",
            "a regular expression (RE2 syntax)",
            "'(?x) yes'",
        ),
        (
            "\\pX",
            "not a regular expression: invalid character class range ('\\pX')",
            "a regular expression (RE2 syntax)",
            "'\\\\pX'",
        ),
    ],
)
def test_patterns_replay_cannot_run_are_located(
    pattern: str, message: str, expected: str, found: str
) -> None:
    problem = only_problem(f"steps:\n  - wait: CHAT_INPUT\n    match: {json.dumps(pattern)}\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "steps.0.match")
    assert (problem.message, problem.expected, problem.found) == (message, expected, found)


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        ("repeat: 0\n    steps: [{chunk: a}]", "steps.0.repeat", "not a repeat count"),
        ("binary: 'zz!'", "steps.0.binary", "not base64"),
        ("disconnect: all\n    code: 1006", "steps.0.code", "not a close code a server may send"),
        (
            "disconnect: all\n    reason: '" + "a" * 124 + "'",
            "steps.0.reason",
            "close reason too long",
        ),
        ("drop: everything", "steps.0.drop", "unknown endpoint 'everything'"),
        ("raw: x\n    endpoint: /nope", "steps.0.endpoint", "unknown endpoint '/nope'"),
        ("chunk: x\n    endpoint: /ws", "steps.0", "/ws takes no chunks"),
        (
            "message: EVENT\n    text: x\n    endpoint: /ws/stream",
            "steps.0",
            "/ws/stream takes no messages",
        ),
        ("stream: x\n    type: close", "steps.0.type", "not an allowed value"),
        ("chunk: a\n    to: 'a b'", "steps.0.to", "not a target"),
    ],
)
def test_new_step_field_problems_are_located(step: str, field: str, message: str) -> None:
    problem = only_problem(f"steps:\n  - {step}\n")
    assert (problem.field, problem.message) == (field, message)
    assert problem.line >= 2
    assert problem.expected


def test_scenario_target_and_vars_problems() -> None:
    problem = only_problem("to: 'bad id'\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.column, problem.field, problem.message) == (
        1,
        1,
        "to",
        "not a target",
    )
    assert problem.found == "'bad id'"
    problem = only_problem("vars: [a]\nsteps:\n  - chunk: a\n")
    assert (problem.field, problem.message, problem.expected) == ("vars", "wrong type", "a mapping")


# --- plays ------------------------------------------------------------------------------------


def test_plays_inside_repeat_steps() -> None:
    loaded = parse(
        "steps:\n"
        "  - play: first\n"
        "  - repeat: 2\n"
        "    steps:\n"
        "      - play: second\n"
        "      - repeat: forever\n"
        "        steps:\n"
        "          - parallel: [third, fourth]\n"
    )
    assert loaded.valid
    assert loaded.plays == (
        (("steps", 0, "play"), "first"),
        (("steps", 1, "steps", 0, "play"), "second"),
        (("steps", 1, "steps", 1, "steps", 0, "parallel", 0), "third"),
        (("steps", 1, "steps", 1, "steps", 0, "parallel", 1), "fourth"),
    )
    assert loaded.locate(("steps", 1, "steps", 0, "play")) == (5, 9)


def test_plays_inside_repeat_steps_of_an_invalid_file() -> None:
    loaded = parse("steps:\n  - repeat: 0\n    steps:\n      - play: other\n")
    assert not loaded.valid
    assert loaded.plays == ((("steps", 0, "steps", 0, "play"), "other"),)


def test_catalog_reports_a_missing_play_target_inside_a_repeat() -> None:
    from replay.catalog import Catalog

    user = parse_scenario(
        "steps:\n  - repeat: 2\n    steps:\n      - chunk: a\n      - play: mising\n",
        "scenarios/user.yaml",
    )
    target = parse_scenario("steps:\n  - chunk: a\n", "scenarios/missing.yaml")
    catalog = Catalog.resolve([user, target])
    [problem] = catalog.file("user").problems
    assert (problem.line, problem.column, problem.field) == (5, 9, "steps.0.steps.1.play")
    assert problem.message == "plays 'mising', which does not exist (did you mean 'missing'?)"


def test_catalog_finds_a_cycle_through_a_repeat() -> None:
    from replay.catalog import Catalog

    one = parse_scenario("steps:\n  - repeat: 2\n    steps: [{play: two}]\n", "s/one.yaml")
    two = parse_scenario("steps:\n  - play: one\n", "s/two.yaml")
    catalog = Catalog.resolve([one, two])
    [problem] = catalog.file("one").problems
    assert problem.field == "steps.0.steps.0.play"
    assert problem.message == "plays itself: one -> two -> one"


# --- the exact messages users see -------------------------------------------------------------
# Each bad file, with the whole sentence `replay validate`, GET /scenarios and a 422 show.

MESSAGE_TYPES_EXPECTED = (
    "one of CHAT_REQUESTED, IS_WAITING, CHAT_INPUT, EVENT, PAUSE_STATUS, PAUSE_REQUEST, CHAT, "
    "BREAK, ERROR, STREAM"
)
#: A "billion laughs" file: nine levels of ten aliases each, 10**9 values expanded.
ALIAS_BOMB = (
    "\n".join(
        [
            "a: &a [x, x, x, x, x, x, x, x, x, x]",
            *(
                f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]"
                for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
            ),
            "steps: *i",
        ]
    )
    + "\n"
)


def only_text(source: str | bytes) -> str:
    return str(only_problem(source))


def test_exact_yaml_syntax_error() -> None:
    assert only_text("steps:\n  - message: EVENT\n    text: [unclosed\n") == (
        f"{FILE}:3:11: not valid YAML: this '[' is never closed: add ']' where its list "
        "ends, or quote the value if the '[' is part of its text; expected ']', found the end "
        "of the file"
    )


def test_exact_tab_indentation() -> None:
    assert only_text("steps:\n  - chunk: a\n\tdelay: 1\n") == (
        f"{FILE}:3:1: not valid YAML: a tab: YAML indents with spaces only; replace the tab "
        "with spaces; expected spaces, found a tab character"
    )


def test_exact_duplicate_key_in_a_step() -> None:
    loaded = parse("steps:\n  - message: EVENT\n    text: one\n    text: two\n")
    assert not loaded.valid
    assert [str(problem) for problem in loaded.problems] == [
        f"{FILE}:4:5: steps.0.text: duplicate key 'text' (first at line 3); "
        "YAML would keep only the last one: rename or remove one of them"
    ]


def test_exact_alias_bomb() -> None:
    # Refused while expanding the fifth anchor (11 + 111 + 1111 + 11111 + 111111 values):
    # located at the aliased value being copied for the 100,001st time.
    assert only_text(ALIAS_BOMB) == (
        f"{FILE}:1:35: e.7.8.8.8.9: the document expands to too many values (aliases count "
        f"each time); expected at most {loader.MAX_VALUES} values, found more"
    )


def test_exact_deep_nesting() -> None:
    data = "[" * 40 + "]" * 40
    # steps, 0 and data are three levels; the 31st bracket is the 33rd level, at column 41.
    field = "steps.0.data" + ".0" * (MAX_DEPTH - 2)
    assert only_text(f"steps:\n  - message: EVENT\n    data: {data}\n") == (
        f"{FILE}:3:41: {field}: the document nests too deeply; expected at most {MAX_DEPTH} "
        "levels, found more"
    )


def test_exact_very_deep_nesting_is_located_like_shallower_nesting() -> None:
    # Nesting deep enough to exhaust PyYAML's recursive composer is refused, but should be
    # refused as the same located problem as 40 levels: the user still needs the line and
    # column. As with 400 levels (which PyYAML composes): the 33rd bracket, at column 40.
    # (Without the field path: the parser ran out of stack before a path was built.)
    assert only_text("steps: " + "[" * 1500 + "]" * 1500 + "\n") == (
        f"{FILE}:1:40: the document nests too deeply; expected at most {MAX_DEPTH} "
        "levels, found more"
    )


def test_exact_unknown_message_type_with_a_suggestion() -> None:
    assert only_text("steps:\n  - message: EVNT\n    text: hi\n") == (
        f"{FILE}:2:5: steps.0.message: unknown message type 'EVNT' (did you mean 'EVENT'?); "
        f"expected {MESSAGE_TYPES_EXPECTED}, found 'EVNT'"
    )


def test_exact_unknown_message_type_without_a_suggestion() -> None:
    assert only_text("steps:\n  - message: WHATEVER_ZZZ\n    text: hi\n") == (
        f"{FILE}:2:5: steps.0.message: unknown message type 'WHATEVER_ZZZ'; "
        f"expected {MESSAGE_TYPES_EXPECTED}, found 'WHATEVER_ZZZ'"
    )


def test_exact_wrong_type_of_a_chunk() -> None:
    assert only_text("steps:\n  - chunk: 5\n") == (
        f"{FILE}:2:5: steps.0.chunk: wrong type; expected a string, found 5"
    )


def test_exact_absurd_sleep() -> None:
    assert only_text("steps:\n  - sleep: 7200s\n") == (
        f"{FILE}:2:5: steps.0.sleep: '7200s' is longer than the limit of 3600 s (1 h) for one "
        f"pause; expected {DURATION_EXPECTED}, found '7200s'"
    )


@pytest.mark.parametrize("field", ["delay", "jitter"])
def test_a_bare_number_over_a_minute_in_a_step_is_refused_with_both_readings(field: str) -> None:
    assert only_text(f"steps:\n  - chunk: a\n    {field}: 500\n") == (
        f"{FILE}:3:5: steps.0.{field}: 500 is read as seconds (8 min 20 s); write 500ms for "
        f"milliseconds or 500s to mean seconds; expected {DURATION_EXPECTED}, found 500"
    )


@pytest.mark.parametrize(
    ("source", "field", "line"),
    [
        ("delay: 250\nsteps:\n  - chunk: a\n", "delay", 1),
        ("jitter: '100'\nsteps:\n  - chunk: a\n", "jitter", 1),
        ("steps:\n  - sleep: 1500\n", "steps.0.sleep", 2),
        ("steps:\n  - wait: CHAT_INPUT\n    timeout: 120\n", "steps.0.timeout", 3),
        ("steps:\n  - wait_connect: any\n    timeout: 90.5\n", "steps.0.timeout", 3),
        (
            "steps:\n  - repeat: 2\n    steps:\n      - chunk: a\n        delay: 200\n",
            "steps.0.steps.0.delay",
            5,
        ),
    ],
)
def test_every_duration_field_refuses_a_bare_number_over_a_minute(
    source: str, field: str, line: int
) -> None:
    problem = only_problem(source)
    assert problem.field == field
    assert problem.line == line
    assert "is read as seconds" in problem.message
    assert "ms for milliseconds" in problem.message
    assert problem.expected == DURATION_EXPECTED


@pytest.mark.parametrize(
    "source",
    [
        "delay: 60\nsteps:\n  - chunk: a\n",
        "steps:\n  - sleep: 30\n",
        "steps:\n  - wait: CHAT_INPUT\n    timeout: 120s\n",
        "steps:\n  - wait: CHAT_INPUT\n    timeout: 2m\n",
        "steps:\n  - chunk: a\n    delay: 500ms\n",
        "steps:\n  - sleep: 3600s\n",
    ],
)
def test_honest_durations_still_load(source: str) -> None:
    assert parse(source).valid, parse(source).problems


def test_exact_unknown_step_kind_in_a_scenario_file_of_many_problems() -> None:
    # README's broken.yaml, as `replay validate` prints it (play targets are the catalog's).
    loaded = parse(
        "description: A scenario with mistakes.\n"
        "delay: 0.5\n"
        "steps:\n"
        "  - message: EVNT\n"
        "    text: hello\n"
        "  - mesage: EVENT\n"
        "    text: typo in the kind\n"
        "  - chunk: x\n"
        "    sleep: -1\n"
    )
    kinds = (
        "message, chunk, tool, close, stream, sleep, play, parallel, repeat, wait, raw, binary, "
        "disconnect, drop, choose, let, set, wait_connect"
    )
    assert [str(problem) for problem in loaded.problems] == [
        f"{FILE}:4:5: steps.0.message: unknown message type 'EVNT' (did you mean 'EVENT'?); "
        f"expected {MESSAGE_TYPES_EXPECTED}, found 'EVNT'",
        f"{FILE}:6:5: steps.1: unknown step kind (did you mean 'message'?); "
        f"expected one of {kinds}, found 'mesage'",
        f"{FILE}:8:5: steps.2: a step has exactly one kind, but this one has chunk and sleep; "
        f"expected one of {kinds}, found chunk, sleep",
    ]


@pytest.mark.parametrize(
    ("source", "field", "found"),
    [
        ("on_connect: maybe\nsteps:\n  - chunk: a\n", "on_connect", "'maybe'"),
        ("steps:\n  - stream: a\n    close_stream: maybe\n", "steps.0.close_stream", "'maybe'"),
        ("steps:\n  - stream: a\n    rate: 0\n", "steps.0.rate", "0"),
        ("steps:\n  - stream: a\n    rate: 20000\n", "steps.0.rate", "20000"),
        ("steps:\n  - disconnect: all\n    code: 1000.5\n", "steps.0.code", "1000.5"),
    ],
    ids=["boolean", "step-boolean", "rate-zero", "rate-over-limit", "fractional-code"],
)
def test_every_wrong_value_says_what_was_expected(source: str, field: str, found: str) -> None:
    # Like every other problem: our own sentence and what was expected, not pydantic's
    # "Input should be ..." with nothing after "expected".
    problem = only_problem(source)
    assert (problem.field, problem.found) == (field, found)
    assert not problem.message.startswith("Input should"), str(problem)
    assert problem.expected, str(problem)


# --- properties: the loader never raises ------------------------------------------------------

PROPERTY_FILE = "scenarios/prop.yaml"


def assert_loaded(source: bytes | str) -> ScenarioFile:
    """parse_scenario's promise: a ScenarioFile, valid or with located problems of the file."""
    loaded = parse_scenario(source, PROPERTY_FILE)
    assert isinstance(loaded, ScenarioFile)
    assert loaded.valid == (loaded.scenario is not None and not loaded.problems)
    assert loaded.valid or loaded.problems
    for problem in loaded.problems:
        assert str(problem).startswith(PROPERTY_FILE)
        assert problem.line >= 0
        assert problem.column >= 0
        assert (problem.line == 0) == (problem.column == 0)  # a line always has its column
    return loaded


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(st.binary(max_size=300))
def test_property_any_bytes_never_raise(source: bytes) -> None:
    assert_loaded(source)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(st.text(max_size=300))
def test_property_any_text_never_raises(source: str) -> None:
    assert_loaded(source)


_WORDS = [*STEP_KINDS, "mesage", "text", "data", "delay", "jitter", "to", "steps", "endpoint"]
_WORDS += ["code", "reason", "rate", "type", "close_stream", "match", "fields", "timeout"]
_WORDS += ["on_timeout", "vars", "version", "description", "reacts_to", "on_connect", "<<"]
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            *["EVENT", "EVNT", "CHAT_INPUT", "stream", "all", "/ws", "forever", "500ms", "-1s"],
            *["{{ now.ms }}", "{{ x", "{% include 'a' %}", "{{ vars.v }}", "AAEC", "sender"],
        ]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_WORDS), st.text(max_size=6)), inner, max_size=4),
    ),
    max_leaves=16,
)
_STEP = st.dictionaries(st.sampled_from(_WORDS), _VALUES, max_size=4)
_DOCUMENTS = st.one_of(
    _VALUES,
    st.fixed_dictionaries(
        {"steps": st.lists(st.one_of(_STEP, _VALUES), max_size=6)},
        optional={
            key: _VALUES
            for key in ("version", "description", "delay", "jitter", "to", "vars", "reacts_to")
        }
        | {"on_connect": _VALUES, "x-shared": _VALUES},
    ),
)


@hypothesis.settings(
    max_examples=100, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
@hypothesis.given(_DOCUMENTS, st.sampled_from(["block", "flow", "json"]))
def test_property_yaml_shaped_documents_never_raise(document: object, style: str) -> None:
    if style == "json":
        source = json.dumps(document)
    else:
        source = yaml.safe_dump(document, allow_unicode=True, default_flow_style=style == "flow")
    assert_loaded(source)


# Scalars YAML's constructors turn into Python values, or fail on with plain Python errors
# (ValueError, OverflowError...): each must be a located problem of its file, never a crash.
_TAGS = ["", "!!timestamp ", "!!int ", "!!float ", "!!binary ", "!!str ", "!!bool ", "!!null "]
_TAGS += ["!!set ", "!!omap ", "!!python/name:os.system ", "!!python/object:os.Stat "]
_ODD_SCALARS = st.one_of(
    st.builds(
        "{:04d}-{:02d}-{:02d}{}".format,
        st.integers(0, 9999),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from(["", "T25:61:61Z", " 10:00:00", "t1:2:3.4+99:99", "T00:00:00.123456789"]),
    ),
    st.integers(4000, 6000).map(lambda digits: "9" * digits),
    st.integers(4000, 6000).map(lambda digits: "0x" + "f" * digits),
    st.sampled_from(["1e999", "-1e999", ".nan", ".inf", "0b102", "0o9", "190:20:30", "1_000"]),
    st.sampled_from(["=", "<<", "~", "AAE=", "!!", "{a: 1}", "[1, 2]", "- x", "&a x"]),
    st.text(max_size=20),
)


@hypothesis.settings(max_examples=400, deadline=None)
@hypothesis.given(st.sampled_from(_TAGS), _ODD_SCALARS, st.sampled_from(["x-k", "data"]))
def test_property_odd_scalars_are_located_problems(tag: str, scalar: str, where: str) -> None:
    value = f"{tag}{scalar}"
    if where == "data":
        source = f"steps:\n  - message: EVENT\n    data: {value}\n"
    else:
        source = f"x-k: {value}\nsteps:\n  - chunk: a\n"
    loaded = assert_loaded(source)
    for problem in loaded.problems:
        assert problem.line > 0, problem  # the value that failed is pointed at


@pytest.mark.parametrize(
    ("value", "message", "expected"),
    [
        ("2024-02-30", "ValueError: day is out of range for month", "a real date or time"),
        ("9" * 4400, "the number has too many digits", "an integer of at most 4000 digits"),
        ("!!timestamp 2024-13-01", "ValueError: month must be in 1..12", "a real date or time"),
        (
            '"a\\ud800"',
            "ValueError: '\\ud800' is half of a surrogate pair; write the character itself, "
            "or both halves of the pair",
            "valid Unicode text",
        ),
    ],
)
def test_a_value_yaml_cannot_build_is_located(value: str, message: str, expected: str) -> None:
    problem = only_problem(f"description: ok\nx-when: {value}\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.column, problem.field) == (2, 9, "x-when")
    assert problem.message == f"cannot read this value ({message})"
    assert problem.expected == f"{expected}; quote it to keep it as text"


def test_a_bug_while_loading_is_a_problem_of_that_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RecursionError("something replay did not foresee")

    monkeypatch.setattr(loader, "_compose", broken)
    loaded = parse_scenario("steps:\n  - chunk: a\n", FILE)
    assert not loaded.valid
    [problem] = loaded.problems
    assert problem.message == (
        "replay could not read this file (RecursionError: something replay did not foresee); "
        "this is a bug in replay, please report it with the file"
    )


# --- choose, let, set, wait_connect -----------------------------------------------------------

CHOOSING = """\
vars: {strict: false}
steps:
  - let: {order: "{{ uuid() }}"}
  - choose:
      - when: "stat.paused"
        steps:
          - chunk: "{{ vars.order }}"
      - when: "vars.strikt"
        steps: [{play: other}]
      - otherwise:
          - raw: "{{ vars.ordr }}"
"""


def test_conditions_are_checked_and_located_at_their_when() -> None:
    loaded = parse(CHOOSING)
    assert loaded.scenario is not None  # the models are fine: only a condition is wrong
    assert [str(problem) for problem in loaded.problems] == [
        f"{FILE}:5:9: steps.1.choose.0.when: unknown name 'stat' in an expression (did you "
        "mean 'state'?); templates can use choice, hex, iteration, now, randint, random, received, "
        "run, scenario, sender, state, step, uuid, vars",
        f"{FILE}:8:9: steps.1.choose.1.when: variable 'strikt' is not declared (did you mean "
        "'strict'?): add it under 'vars:' with a default, or bind it with a 'let' step "
        "(declared: order, strict)",
        f"{FILE}:11:13: steps.1.choose.2.otherwise.0.raw: variable 'ordr' is not declared "
        "(did you mean 'order'?): add it under 'vars:' with a default, or bind it with a "
        "'let' step (declared: order, strict)",
    ]


def test_a_name_a_let_binds_anywhere_in_the_file_counts_as_declared() -> None:
    loaded = parse(
        "steps:\n"
        "  - chunk: '{{ vars.later }}'\n"
        "  - repeat: 2\n"
        "    steps:\n"
        "      - let: {later: '{{ iteration }}'}\n"
        "  - choose:\n"
        "      - when: vars.later == '1'\n"
        "        steps: [{set: {seen: '{{ vars.later }}'}}]\n"
    )
    assert loaded.valid, loaded.problems


def test_templates_in_let_and_set_values_are_checked_where_they_are() -> None:
    loaded = parse(
        "steps:\n"
        "  - let: {a: '{{ nwo.ms }}'}\n"
        "  - set:\n"
        "      deep: {list: [1, '{{ state.x +}}']}\n"
    )
    assert [(p.line, p.column, p.field) for p in loaded.problems] == [
        (2, 11, "steps.0.let.a"),
        (4, 24, "steps.1.set.deep.list.1"),
    ]
    assert loaded.problems[0].message.startswith("unknown name 'nwo' in a template")
    assert loaded.problems[1].message.startswith("template syntax error")


def test_plays_inside_choose_branches() -> None:
    loaded = parse(CHOOSING.replace("stat.", "state.").replace("strikt", "strict"))
    assert loaded.plays == ((("steps", 1, "choose", 1, "steps", 0, "play"), "other"),)
    nested = parse(
        "steps:\n"
        "  - choose:\n"
        "      - when: 'true'\n"
        "        steps: [{parallel: [a, b]}]\n"
        "      - otherwise:\n"
        "          - repeat: 2\n"
        "            steps: [{play: c}]\n"
        "  - choose: [{otherwise: [{play: d}], nope: 1}, 3]\n"  # invalid, still read
    )
    assert nested.plays == (
        (("steps", 0, "choose", 0, "steps", 0, "parallel", 0), "a"),
        (("steps", 0, "choose", 0, "steps", 0, "parallel", 1), "b"),
        (("steps", 0, "choose", 1, "otherwise", 0, "steps", 0, "play"), "c"),
        (("steps", 1, "choose", 0, "otherwise", 0, "play"), "d"),
    )


@pytest.mark.parametrize(
    ("branch", "message", "found"),
    [
        (
            "{whenn: x, steps: [{chunk: a}]}",
            "a branch needs 'when' or 'otherwise' (did you mean 'when'?)",
            "'whenn', 'steps'",
        ),
        (
            "{when: x, otherwise: [{chunk: a}]}",
            "a branch has 'when' (with 'steps') or 'otherwise', not both",
            "when, otherwise",
        ),
        ("3", "a branch of a choose must be a mapping", "3"),
    ],
)
def test_a_branch_that_is_neither_when_nor_otherwise_is_located(
    branch: str, message: str, found: str
) -> None:
    problem = only_problem(f"steps:\n  - choose:\n      - {branch}\n")
    assert (problem.line, problem.column, problem.field) == (3, 9, "steps.0.choose.0")
    assert problem.message == message
    assert problem.expected == "{when: EXPRESSION, steps: [...]} or, last, {otherwise: [...]}"
    assert problem.found == found


def test_problems_inside_branches_are_located_without_union_tags() -> None:
    problem = only_problem(
        "steps:\n"
        "  - choose:\n"
        "      - when: 'true'\n"
        "        steps:\n"
        "          - message: EVNT\n"
        "            text: hi\n"
        "      - otherwise:\n"
        "          - chunk: ok\n"
    )
    assert (problem.line, problem.column) == (5, 13)
    assert problem.field == "steps.0.choose.0.steps.0.message"
    assert problem.message.startswith("unknown message type 'EVNT' (did you mean 'EVENT'?)")
    otherwise = only_problem(
        "steps:\n  - choose:\n      - otherwise:\n          - chunk: ok\n            colr: x\n"
    )
    assert otherwise.field == "steps.0.choose.0.otherwise.0.colr"
    assert otherwise.message.startswith("unknown field 'colr'")


def test_an_unknown_field_of_a_branch_suggests_the_right_one() -> None:
    loaded = parse(
        "steps:\n  - choose:\n      - when: x\n        steps: [{chunk: a}]\n        stpes: 1\n"
    )
    [extra] = loaded.problems
    assert (extra.line, extra.column, extra.field) == (5, 9, "steps.0.choose.0.stpes")
    assert extra.message == "unknown field 'stpes' (did you mean 'steps'?)"
    assert extra.expected == "one of when, steps"
    otherwise = only_problem(
        "steps:\n  - choose:\n      - otherwise: [{chunk: a}]\n        when: x\n"
    )
    assert otherwise.message == "a branch has 'when' (with 'steps') or 'otherwise', not both"


def test_otherwise_before_the_last_branch_is_located_on_it() -> None:
    problem = only_problem(
        "steps:\n"
        "  - choose:\n"
        "      - when: x\n"
        "        steps: [{chunk: a}]\n"
        "      - otherwise: [{chunk: b}]\n"
        "      - when: y\n"
        "        steps: [{chunk: c}]\n"
    )
    assert (problem.line, problem.column, problem.field) == (5, 9, "steps.0.choose.1")
    assert problem.message == "'otherwise' must be the last branch of a choose (branch 1 of 3)"
    assert problem.expected == "'otherwise' as the last branch, at most once"


def test_a_bad_let_name_is_located_on_its_key() -> None:
    problem = only_problem("steps:\n  - let:\n      fine: 1\n      not-fine: 2\n")
    assert (problem.line, problem.column, problem.field) == (4, 7, "steps.0.let.not-fine")
    assert problem.message == "not a name templates can read"
    assert problem.found == "'not-fine'"


def test_wait_connect_problems_are_located() -> None:
    problem = only_problem("steps:\n  - wait_connect: any\n    endpoint: ws\n")
    assert (problem.line, problem.field) == (3, "steps.0.endpoint")
    assert problem.expected == "a WebSocket path such as /ws or /ws/stream"
    who = only_problem("steps:\n  - wait_connect: two words\n")
    assert who.field == "steps.0.wait_connect"
    assert who.message == "not a client to wait for"


# --- the fast parser ------------------------------------------------------------------------

SHIPPED = sorted(
    path
    for folder in ("scenarios", "profiles", "examples")
    for path in (Path(__file__).resolve().parent.parent / folder).rglob("*.yaml")
)


@pytest.mark.skipif(loader._FastLoader is None, reason="PyYAML was built without libyaml")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_libyaml_reads_every_shipped_file_as_the_pure_python_parser_does(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert loader._FastLoader is not None
    fast = loader._compose_with(loader._FastLoader, text, str(path))
    slow = loader._compose_with(loader._SafeLoader, text, str(path))
    assert fast == slow


@pytest.mark.parametrize(
    "source",
    [
        "steps:\n  - chunk: a\n\tdelay: 1\n",  # a tab
        "steps:\n  - chunk: \ud800\n",  # a lone surrogate libyaml cannot even take
        "steps: [" * 2000,  # deeper than libyaml goes
        "steps:\n  - chunk: a\n  - chunk: b\n---\nsteps: []\n",  # two documents
        "a: \x07\n",  # a character YAML forbids
    ],
)
def test_what_libyaml_refuses_is_explained_as_the_pure_python_parser_explains_it(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_fast = parse(source).problems
    monkeypatch.setattr(loader, "_FastLoader", None)
    assert parse(source).problems == with_fast


@pytest.mark.parametrize(
    "value", ["yes", "No", "1.5", "1_000", "0x1f", "2024-12-03", "~", "null", "=", "<<", "x", ""]
)
def test_remembered_tags_are_yamls_own(value: str) -> None:
    resolver = yaml.resolver.Resolver()
    remembering = loader._SafeLoader("")
    for implicit in ((True, False), (False, True), (False, False)):
        for _ in range(2):  # the second time, remembered
            expected = resolver.resolve(yaml.ScalarNode, value, implicit)
            assert remembering.resolve(yaml.ScalarNode, value, implicit) == expected


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@pytest.mark.skipif(loader._FastLoader is None, reason="PyYAML was built without libyaml")
@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(_VALUES, st.sampled_from([False, True, None]))
def test_libyaml_reads_any_document_as_the_pure_python_parser_does(
    value: object, flow: bool | None
) -> None:
    # libyaml accepts a few texts PyYAML's own scanner refuses (a tab after a value, '?'
    # inside a flow scalar): what both read, they read alike.
    text = yaml.safe_dump({"steps": value}, default_flow_style=flow, allow_unicode=True)
    assert loader._FastLoader is not None
    fast = loader._compose_with(loader._FastLoader, text, FILE)
    assert fast == loader._compose_with(loader._SafeLoader, text, FILE)


def test_a_loaded_file_keeps_the_locations_of_its_steps_not_of_their_data() -> None:
    loaded = parse(
        "steps:\n"
        "  - message: EVENT\n"
        "    data: {a: [1, {b: 2}], c: x}\n"
        "  - parallel: [x, y]\n"
        "  - repeat: 2\n"
        "    steps:\n"
        "      - {play: z}\n"
    )
    assert set(loaded.locations) == {
        (),
        ("steps",),
        ("steps", 0),
        ("steps", 1),
        ("steps", 1, "parallel"),
        ("steps", 1, "parallel", 0),
        ("steps", 1, "parallel", 1),
        ("steps", 2),
        ("steps", 2, "steps", 0),
        ("steps", 2, "steps", 0, "play"),
    }
    assert loaded.locate(("steps", 0, "data", "a", 1, "b")) == (2, 5)  # its step
    assert loaded.locate(("steps", 2, "steps", 0, "play")) == (7, 10)  # the key, not the brace


# --- did you mean, whatever the case ----------------------------------------------------------


def test_a_message_type_in_the_wrong_case_suggests_the_declared_one() -> None:
    problem = only_problem("steps:\n  - message: chat\n    text: hi\n")
    assert "unknown message type 'chat' (did you mean 'CHAT'?)" in problem.message
    assert problem.line == 2
    problem = only_problem("steps:\n  - message: chat-input\n    text: hi\n")
    assert "(did you mean 'CHAT_INPUT'?)" in problem.message


def test_a_step_kind_in_the_wrong_case_suggests_the_kind() -> None:
    problem = only_problem("steps:\n  - Message: EVENT\n    text: hi\n")
    assert "unknown step kind (did you mean 'message'?)" in problem.message
    problem = only_problem("steps:\n  - WAIT-CONNECT: any\n")
    assert "(did you mean 'wait_connect'?)" in problem.message


def test_a_field_in_the_wrong_case_suggests_the_field() -> None:
    problem = only_problem("steps:\n  - chunk: a\n    Delay: 1\n")
    assert "unknown field 'Delay' (did you mean 'delay'?)" in problem.message
    assert any(
        "did you mean 'steps'" in p.message for p in parse("Steps:\n  - chunk: a\n").problems
    )


# --- templates: names and received fields, checked when the file loads -----------------------


def test_a_typo_in_a_received_field_is_found_when_the_file_loads() -> None:
    source = (
        "steps:\n"
        "  - wait: CHAT_INPUT\n"
        "  - message: CHAT\n"
        "    text: 'you said {{ received.mesage }}'\n"
    )
    loaded = parse(source)
    assert not loaded.valid
    [problem] = loaded.problems
    assert (problem.line, problem.field) == (4, "steps.1.text")
    assert problem.message.startswith(
        "received has no field 'mesage' (did you mean 'message'?); its fields are "
    )


def test_received_fields_are_checked_in_data_conditions_and_let() -> None:
    source = (
        "steps:\n"
        "  - wait: CHAT_INPUT\n"
        "  - message: EVENT\n"
        "    data: {who: '{{ received.clinet }}', deep: '{{ received.data.x.y }}'}\n"
        "  - let: {said: '{{ received.txt }}'}\n"
        "  - choose:\n"
        "      - when: received.mesage_type == 'CHAT_INPUT'\n"
        "        steps: [{chunk: a}]\n"
    )
    found = [(p.line, p.field, p.message.split(";")[0]) for p in parse(source).problems]
    assert found == [
        (4, "steps.1.data.who", "received has no field 'clinet' (did you mean 'client'?)"),
        (5, "steps.2.let.said", "received has no field 'txt' (did you mean 'text'?)"),
        (
            7,
            "steps.3.choose.0.when",
            "received has no field 'mesage_type' (did you mean 'message_type'?)",
        ),
    ]


def test_received_has_the_fields_the_protocols_envelope_names_too() -> None:
    from replay.protocol.file import parse_protocol

    declared = parse_protocol(
        "extends: none\n"
        "endpoints:\n  /prices:\n    messages: {type: event, payload: body}\n"
        "message_types:\n  subscribe: {description: s, sent_by: client}\n  tick: t\n",
        "scenarios/_protocol.yaml",
    )
    assert declared.problems == ()
    source = (
        "steps:\n  - wait: subscribe\n  - message: tick\n"
        "    text: '{{ received.event }} {{ received.body.symbols }} {{ received.message_type }}'\n"
    )
    assert parse_scenario(source, FILE, declared.protocol).valid
    source = source.replace("received.event", "received.evnt")
    [problem] = parse_scenario(source, FILE, declared.protocol).problems
    assert problem.message.startswith("received has no field 'evnt' (did you mean 'event'?)")
    assert "its fields are body, client, data, endpoint, event, frame, " in problem.message
    # Schwarm's frames have no 'event': there it is a typo.
    schwarm = "steps:\n  - wait: CHAT_INPUT\n  - chunk: '{{ received.event }}'\n"
    [problem] = parse(schwarm).problems
    assert problem.message.startswith("received has no field 'event'; its fields are client, ")


def test_an_unknown_name_suggests_a_declared_variable_or_a_state_key() -> None:
    source = (
        "vars: {user: ada}\n"
        "steps:\n"
        "  - set: {paused: true}\n"
        "  - chunk: 'hi {{ user }}'\n"
        "  - chunk: '{{ paused }}'\n"
        "  - chunk: '{{ message }}'\n"
    )
    found = [p.message.split(";")[0] for p in parse(source).problems]
    assert found == [
        "unknown name 'user' in a template (did you mean 'vars.user'?)",
        "unknown name 'paused' in a template (did you mean 'state.paused'?)",
        "unknown name 'message' in a template (did you mean 'received.message'?)",
    ]


def test_a_state_key_the_protocol_declares_is_suggested() -> None:
    from replay.protocol.file import parse_protocol

    declared = parse_protocol("state: {volume: 3}\n", "scenarios/_protocol.yaml")
    [problem] = parse_scenario(
        "steps:\n  - chunk: '{{ volume }}'\n", FILE, declared.protocol
    ).problems
    assert "(did you mean 'state.volume'?)" in problem.message


@pytest.mark.parametrize(
    ("written", "rate"), [("30ms", "33.33"), ("0.5s", "2"), ("100 ms", "10"), ("1m", "0.01667")]
)
def test_a_rate_written_as_a_pause_is_refused_with_the_rate_it_means(
    written: str, rate: str
) -> None:
    problem = only_problem(f"steps:\n  - stream: hello there\n    rate: {written}\n")
    assert (problem.line, problem.field) == (3, "steps.0.rate")
    assert problem.message == (
        f"rate is tokens per second, not a pause: one token every {written} is rate: {rate}"
    )
    assert problem.expected == "tokens per second as a number (30; at most 10000)"
    assert parse(f"steps:\n  - stream: hello there\n    rate: {rate}\n").valid


def test_a_rate_that_is_not_a_pause_keeps_the_number_check() -> None:
    assert only_problem("steps:\n  - stream: hi\n    rate: fast\n").message == "wrong type"
    assert only_problem("steps:\n  - stream: hi\n    rate: '30'\n").message == "wrong type"


def test_a_union_field_is_one_problem_without_pydantic_member_names() -> None:
    # data is a mapping or a list: pydantic reports each member under its type name.
    problem = only_problem("steps:\n  - message: EVENT\n    data: just text\n")
    assert problem.field == "steps.0.data"
    assert problem.message == "wrong type"
    assert problem.expected == "a mapping or a list"
    assert problem.found == "'just text'"


@pytest.mark.parametrize(
    ("source", "field", "hint"),
    [
        (
            "steps:\n  - wait: CHAT_INPUT\n    on_timeout: Continue\n",
            "steps.0.on_timeout",
            "continue",
        ),
        ("steps:\n  - stream: hi\n    type: TOOL\n", "steps.0.type", "tool"),
        ("steps:\n  - close: Stream\n", "steps.0.close", "stream"),
        ("steps:\n  - repeat: Forever\n    steps: [{chunk: a}]\n", "steps.0.repeat", "forever"),
        ("steps:\n  - disconnect: All\n", "steps.0.disconnect", "all"),
    ],
)
def test_an_allowed_word_in_the_wrong_case_suggests_it(source: str, field: str, hint: str) -> None:
    problem = only_problem(source)
    assert problem.field == field
    assert f"(did you mean {hint!r}?)" in problem.message


@pytest.mark.parametrize(
    ("source", "field", "word"),
    [
        ("to: All\nsteps:\n  - chunk: a\n", "to", "all"),
        ("steps:\n  - chunk: a\n    to: Sender\n", "steps.0.to", "sender"),
        ("steps:\n  - wait_connect: ANY\n", "steps.0.wait_connect", "any"),
    ],
)
def test_a_target_keyword_in_the_wrong_case_is_not_taken_for_a_client_id(
    source: str, field: str, word: str
) -> None:
    # 'All' would be a client of that name, and the frames would reach no one.
    problem = only_problem(source)
    assert problem.field == field
    assert f"would be a client id, not {word!r} (did you mean {word!r}?)" in problem.message
    assert parse(source.replace(problem.found.strip("'"), word)).valid
    assert parse(source.replace(problem.found.strip("'"), "browser-1")).valid


def test_a_list_item_without_a_space_after_its_dash_says_so() -> None:
    # '-chunk: a' is valid YAML: a mapping with the key '-chunk', where a list was meant.
    problem = only_problem("steps:\n  -chunk: a\n")
    assert problem.field == "steps"
    assert problem.message == (
        "wrong type (a list item needs a space after its '-': '- chunk', not '-chunk')"
    )
    assert problem.expected == "a list"


def test_a_state_key_a_route_sets_is_suggested() -> None:
    from replay.protocol.file import parse_protocol

    declared = parse_protocol(
        "routes:\n  - {method: POST, path: /mute, set: {muted: true}}\n", "scenarios/_protocol.yaml"
    )
    assert declared.problems == ()
    source = "steps:\n  - chunk: '{{ muted }}'\n"
    [problem] = parse_scenario(source, FILE, declared.protocol).problems
    assert "(did you mean 'state.muted'?)" in problem.message
