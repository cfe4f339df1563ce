"""YAML syntax errors as sentences: located, what was found, what to do (replay.syntax)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from replay.errors import Problem
from replay.loader import parse_scenario
from replay.syntax import PREFIX, yaml_problem

FILE = "scenarios/demo.yaml"
#: PyYAML's own words, which a user should never have to read.
JARGON = ("<block", "<stream", "<scalar", "while parsing", "while scanning", "token", "node")


def problem_of(source: str) -> Problem:
    [problem] = parse_scenario(source, FILE).problems
    assert problem.message.startswith(PREFIX), problem
    assert not any(word in problem.message for word in JARGON), problem.message
    return problem


@pytest.mark.parametrize(
    ("source", "where", "words"),
    [
        # A key indented between two levels: less than its mapping, more than the list.
        (
            "steps:\n  - message: EVENT\n    text: a\n  - chunk: b\n   delay: 1\n",
            (5, 4),
            [
                "this line is indented less than the mapping above it (keys at line 4, "
                "column 5) and more than the list around it (items at line 2, column 3)",
                "check the indentation of the lines above",
            ],
        ),
        (
            "steps:\n  - message: EVENT\n    data:\n      a: 1\n     b: 2\n",
            (5, 6),
            ["indented less than the mapping above it (keys at line 4, column 7)"],
        ),
        # PyYAML: "expected <block end>, but found '?'": a key among a list's items.
        (
            "steps:\n  - chunk: a\n    delay: 1\n  text: x\n",
            (4, 3),
            [
                "a key where the list above (line 2, column 3) expects another item",
                "start it with '- '",
            ],
        ),
        (
            "steps:\n  - chunk: a\n    - chunk: b\n",
            (3, 5),
            ["a list item ('- ') among the keys of the mapping above (line 2, column 5)"],
        ),
        (
            'steps:\n  - message: EVENT\n    data:\n      name: "x"\n         id: y\n',
            (5, 10),
            [
                "indented more than the mapping it belongs to (keys at line 4, column 7)",
                "indent it to column 7 like the other keys",
            ],
        ),
        (
            "# a comment\n  version: 1\nsteps:\n  - chunk: a\n",
            (2, 3),
            ["the file's first line is indented (column 3)", "first column"],
        ),
        # mapping values are not allowed here
        (
            "description: hello: world\nsteps:\n  - chunk: a\n",
            (1, 19),
            ["a second ': ' on this line", "must be quoted"],
        ),
        (
            "steps:\n  - close stream\n    delay: 0\n",
            (3, 5),
            ["the line above (line 2) has no ':'", "'- close stream' -> '- close: stream'"],
        ),
        (
            "steps:\n  - chunk: a\n      delay: 1\n",
            (3, 7),
            ["indented more than the key above it (line 2, column 5)", "column 5"],
        ),
        # could not find expected ':'
        (
            "steps:\n  - chunk: a\n    delay\n  - chunk: b\n",
            (3, 5),
            ["this line has no ':' after its key"],
        ),
        # tabs
        ("steps:\n\t- chunk: a\n", (2, 1), ["a tab", "replace the tab with spaces"]),
        ("steps:\n  - chunk: a\n  \tdelay: 1\n", (3, 3), ["a tab"]),
        # unclosed quotes and brackets: located where they open
        (
            'steps:\n  - chunk: "abc\n  - chunk: b\n',
            (2, 12),
            ['this quote (") is never closed', "quoted with ' instead"],
        ),
        ("steps:\n  - chunk: 'abc\n", (2, 12), ["this quote (') is never closed"]),
        ("steps: [\n  {chunk: a}\n", (1, 8), ["this '[' is never closed", "add ']'"]),
        ("steps:\n  - {chunk: a\n", (2, 5), ["this '{' is never closed", "add '}'"]),
        (
            "steps:\n  - message: EVENT\n    data: {a: 1, b: 2\n  - chunk: x\n",
            (3, 11),
            ["this '{' is not closed before line 4", "add '}' where its mapping ends"],
        ),
        (
            "steps:\n  - {chunk: a b: c}\n",
            (2, 16),
            ["a ':' inside a mapping in '{}'", "separate its values with ','"],
        ),
        # the rest of the common kinds
        (
            "steps:\n  - chunk: 'a' b\n",
            (2, 16),
            ["more text after a value on this line", "quote the whole value"],
        ),
        ("steps:\n  - *nothing\n", (2, 5), ["*nothing names no anchor", "define &nothing"]),
        ('steps:\n  - chunk: "a\\q"\n', (2, 15), ["an unknown escape", "write \\\\"]),
        ("steps:\n  - chunk: a\n---\nsteps: []\n", (3, 1), ["a second YAML document"]),
        ("steps:\n  - chunk: @a\n", (2, 12), ["'@' cannot start a value", "quote the value"]),
        ("steps:\n  - chunk: `a`\n", (2, 12), ["'`' cannot start a value"]),
        ("steps:\n  - chunk: !foo a\n", (2, 12), ["the YAML tag !foo is not one replay reads"]),
        ("steps:\n  - chunk: |x\n      a\n", (2, 13), ["after '|' or '>'"]),
    ],
)
def test_common_yaml_errors_read_as_sentences(
    source: str, where: tuple[int, int], words: list[str]
) -> None:
    problem = problem_of(source)
    assert (problem.file, problem.line, problem.column) == (FILE, *where), problem
    for word in words:
        assert word in problem.message, problem.message
    assert problem.expected, problem
    assert problem.found, problem
    assert str(problem).startswith(f"{FILE}:{where[0]}:{where[1]}: {PREFIX}")


def test_the_exact_text_of_the_issue_14_indentation_slip() -> None:
    source = "steps:\n  - chunk: a\n    delay: 1\n  text: x\n"
    assert str(problem_of(source)) == (
        f"{FILE}:4:3: not valid YAML: a key where the list above (line 2, column 3) expects "
        "another item: indent it under the item it belongs to, or start it with '- ' to make "
        "it a new item; expected the list's next item at column 3, or an outer one's, found "
        "'text: x'"
    )


def test_an_error_not_explained_keeps_pyyaml_words_without_the_while_context() -> None:
    try:
        yaml.compose("%YAML 1.1\n%YAML 1.1\n---\na: 1\n", Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        problem = yaml_problem(error, "%YAML 1.1\n%YAML 1.1\n---\na: 1\n", FILE)
    assert (problem.line, problem.column) == (2, 1)
    assert problem.message == PREFIX + "found duplicate YAML directive"


def test_duplicate_keys_are_a_sentence_too() -> None:
    [problem] = parse_scenario("steps:\n  - chunk: a\nsteps:\n  - chunk: b\n", FILE).problems
    assert str(problem) == (
        f"{FILE}:3:1: steps: duplicate key 'steps' (first at line 1); YAML would keep only "
        "the last one: rename or remove one of them"
    )


SHIPPED = Path(__file__).parent.parent / "scenarios"


def test_slips_in_the_shipped_scenarios_never_show_pyyaml_jargon() -> None:
    # The slips of a hand: a line indented a little more or less, a ':' or a quote or a
    # bracket lost, a tab, a ': x' too many. Every syntax error they make is a sentence.
    texts = [path.read_text() for path in sorted(SHIPPED.glob("*.yaml"))]
    rng = random.Random(14)
    syntax_errors = 0
    for _ in range(600):
        lines = rng.choice(texts).split("\n")
        index = rng.randrange(len(lines))
        line = lines[index]
        lines[index] = rng.choice(
            [
                " " + line,
                "   " + line,
                line[1:] if line.startswith(" ") else line,
                line.replace(":", "", 1),
                "\t" + line.lstrip(),
                line.replace('"', "", 1),
                line.replace("]", "", 1).replace("}", "", 1),
                line + ": x",
            ]
        )
        for problem in parse_scenario("\n".join(lines), FILE).problems:
            if problem.message.startswith(PREFIX):
                syntax_errors += 1
                assert problem.line > 0, problem
                assert not any(word in problem.message for word in JARGON), problem.message
    assert syntax_errors > 100  # the slips did break the syntax
