"""The loader: scenario files to models, every problem located and explained."""

from __future__ import annotations

import random
import time

import pytest

from replay import loader
from replay.errors import Problem
from replay.loader import MAX_DEPTH, MAX_FILE_BYTES, ScenarioFile, parse_scenario, scenario_name
from replay.scenario import ChunkStep, MessageStep

FILE = "scenarios/demo.yaml"


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
    assert parse_scenario(source, FILE, {"CUSTOM": "mine"}).valid


# --- YAML-level problems --------------------------------------------------------------------


def test_yaml_syntax_error() -> None:
    problem = only_problem("steps:\n  - message: EVENT\n    text: [unclosed\n")
    assert (problem.file, problem.line, problem.column, problem.field) == (FILE, 4, 1, "")
    assert problem.message.startswith("not valid YAML: ")
    assert "expected ',' or ']'" in problem.message
    assert str(problem) == f"{FILE}:4:1: {problem.message}"


def test_tab_indentation() -> None:
    problem = only_problem("steps:\n\t- message: EVENT\n")
    assert (problem.line, problem.column, problem.field) == (2, 1, "")
    assert "(YAML indents with spaces; replace the tab)" in problem.message
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
    assert "could not determine a constructor" in problem.message
    # On a list or mapping the tag is ignored (the loader builds those itself): nothing runs,
    # and the list is validated as plain data.
    problem = only_problem("steps: !!python/object/apply:os.system [echo hi]\n")
    assert problem.field == "steps.0"
    assert problem.found == "'echo hi'"


def test_several_documents() -> None:
    problem = only_problem("steps: [{chunk: a}]\n---\nsteps: [{chunk: b}]\n")
    assert problem.line == 2
    assert "expected a single document" in problem.message


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
        "wait, raw, binary, disconnect, drop, found 'mesage'"
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
        "expected one of delay, jitter, to, message, text, data"
    )


def test_unknown_top_level_field_with_suggestion() -> None:
    problem = only_problem("descripton: x\nsteps:\n  - chunk: a\n")
    assert (problem.line, problem.column, problem.field) == (1, 1, "descripton")
    assert problem.message == "unknown field 'descripton' (did you mean 'description'?)"
    assert problem.expected == (
        "one of version, description, delay, jitter, to, vars, reacts_to, on_connect, steps"
    )


DURATION_EXPECTED = 'seconds as a number (0.5) or a string with a unit ("500ms", "2s", "1m")'


@pytest.mark.parametrize(
    ("value", "message", "found"),
    [
        ("-1", "a duration must be zero or more seconds", "-1"),
        ("-0.5s", "'-0.5s' is not a duration", "'-0.5s'"),
        (
            "5000",
            "5000 is longer than the limit of 3600 s for one pause "
            "(write milliseconds with a unit: '500ms')",
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
