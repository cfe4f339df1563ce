"""Templates: checked when a file loads, rendered in Jinja2's immutable sandbox."""

from __future__ import annotations

import json
import re
import tracemalloc
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from replay import templates
from replay.catalog import Catalog
from replay.errors import StepFailed, TemplateFailed
from replay.loader import parse_scenario
from replay.templates import (
    MAX_OUTPUT,
    NAMES,
    Now,
    Variables,
    check,
    has_templates,
    is_template,
    render_data,
    render_text,
    render_value,
)
from replay.timeline import build_timeline

#: What a Schwarm scenario's templates may read of received.
SCENARIO = {"received": templates.RECEIVED_FIELDS}

#: 2023-11-14T22:13:20.123Z
MOMENT = 1_700_000_000.123


def context(**overrides: Any) -> dict[str, Any]:
    """What the engine gives a template, with fixed values."""
    names: dict[str, Any] = {
        "run": {"id": "run-1", "scenario": "demo", "seed": 7},
        "scenario": "demo",
        "step": 2,
        "iteration": 0,
        "now": Now(MOMENT),
        "uuid": lambda: "00000000-0000-4000-8000-000000000000",
        "random": lambda: 0.25,
        "randint": lambda low, high: low,
        "choice": lambda items: items[0],
        "vars": {"name": "Ada", "count": 3, "tags": ["a", "b"]},
        "received": {
            "client": "browser-1",
            "text": '{"message_type":"CHAT_INPUT","message":"hi"}',
            "message_type": "CHAT_INPUT",
            "message": "hi",
            "data": None,
            "frame": {"message_type": "CHAT_INPUT", "message": "hi"},
        },
        "sender": "browser-1",
    }
    names.update(overrides)
    return names


# --- is_template / has_templates ------------------------------------------------------------


@pytest.mark.parametrize("text", ["{{ x }}", "a {% if 1 %}b{% endif %}", "{# note #}", "{{"])
def test_is_template(text: str) -> None:
    assert is_template(text)


@pytest.mark.parametrize("text", ["", "plain", "{ {x} }", "} }", "{x}", "%}", "#}"])
def test_is_not_template(text: str) -> None:
    assert not is_template(text)


def test_has_templates_walks_mappings_and_lists() -> None:
    assert not has_templates({"a": ["x", {"b": "y"}], "n": 1, "t": None})
    assert has_templates({"a": ["x", {"b": "{{ step }}"}]})
    assert has_templates(["x", ["{{ step }}"]])
    assert has_templates("{{ step }}")
    assert not has_templates(3)
    # keys are never templates
    assert not has_templates({"{{ step }}": "x"})


# --- check ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_name_is_accepted(name: str) -> None:
    assert check(f"{{{{ {name} }}}}", []) == []


def test_the_documented_uses_are_accepted() -> None:
    text = (
        "{{ run.id }} {{ run.scenario }} {{ run.seed }} {{ scenario }} {{ step }} "
        "{{ iteration + 1 }} {{ now.iso }} {{ now.ms }} {{ now.s }} {{ uuid() }} "
        "{{ random() }} {{ randint(1, 6) }} {{ choice(['a', 'b']) }} {{ vars.name }} "
        "{{ vars['count'] }} {{ received.message_type }} {{ received.message }} "
        "{{ received.data }} {{ received.client }} {{ received.text }} {{ sender }}"
    )
    assert check(text, ["name", "count"]) == []


def test_local_names_are_not_unknown() -> None:
    assert check("{% for item in vars.tags %}{{ item }}{% endfor %}", ["tags"]) == []
    assert check("{% set greeting = 'hi' %}{{ greeting }}", []) == []
    assert check("{{ vars.name | upper }} {{ range(3) | list }}", ["name"]) == []


def test_unknown_name_suggests_the_nearest() -> None:
    [problem] = check("{{ nwo.iso }}", [])
    assert problem.startswith("unknown name 'nwo' in a template (did you mean 'now'?); ")
    assert problem.endswith("templates can use " + ", ".join(sorted(NAMES)))


@pytest.mark.parametrize(
    ("text", "declared", "suggested"),
    [
        ("{{ user }}", ["user"], "vars.user"),
        ("{{ USER }}", ["user"], "vars.user"),
        ("{{ usr }}", ["user", "count"], "vars.user"),
        ("{{ user_name }}", ["username"], "vars.username"),
        ("{{ count + 1 }}", ["count"], "vars.count"),
        ("{{ message }}", [], "received.message"),
        ("{{ message_type }}", [], "received.message_type"),
        ("{{ mesage }}", [], "received.message"),
        ("{{ paused }}", [], "state.paused"),
        ("{{ Paused }}", [], "state.paused"),
        ("{{ Now.iso }}", [], "now"),
    ],
)
def test_an_unknown_name_suggests_the_path_that_reads_it(
    text: str, declared: list[str], suggested: str
) -> None:
    [problem] = check(text, declared, fields=SCENARIO, state=["paused"])
    name = re.findall(r"unknown name '(\w+)'", problem)[0]
    assert problem.startswith(
        f"unknown name {name!r} in a template (did you mean {suggested!r}?); "
    ), problem


def test_a_declared_variable_wins_over_a_name_it_resembles() -> None:
    # The user of issue 14 wrote {{ user }} with user declared: 'sender' is not it.
    [problem] = check("hi {{ user }}", ["user"], fields=SCENARIO)
    assert "(did you mean 'vars.user'?)" in problem
    assert "sender" not in problem.split(";")[0]


def test_an_expression_suggests_paths_too() -> None:
    paused, ready = templates.check_expression(
        "paused and ready", ["ready"], SCENARIO, state=["paused"]
    )
    assert "unknown name 'paused' in an expression (did you mean 'state.paused'?)" in paused
    assert "unknown name 'ready' in an expression (did you mean 'vars.ready'?)" in ready
    [problem] = templates.check_expression("ready", [], SCENARIO)
    assert problem.startswith("unknown name 'ready' in an expression; ")


@pytest.mark.parametrize(
    ("text", "field", "guess"),
    [
        ("{{ received.mesage }}", "mesage", "message"),
        ("{{ received['mesage'] }}", "mesage", "message"),
        ("{{ received.Message }}", "Message", "message"),
        ("{{ received.messagetype }}", "messagetype", "message_type"),
        ("{{ received.clinet | upper }}", "clinet", "client"),
        ("{% if received.txt %}x{% endif %}", "txt", "text"),
    ],
)
def test_a_field_received_lacks_is_refused_with_a_suggestion(
    text: str, field: str, guess: str
) -> None:
    [problem] = check(text, [], fields=SCENARIO)
    assert problem == (
        f"received has no field {field!r} (did you mean {guess!r}?); its fields are client, "
        "data, endpoint, frame, message, message_type, text (a field the client put in its "
        "frame is received.frame.NAME, one in its payload received.data.NAME)"
    )


@pytest.mark.parametrize(
    "text",
    [
        "{{ received.message }} {{ received.message_type }} {{ received.client }}",
        "{{ received.text }} {{ received.endpoint }}",
        # Deeper paths read what the client sent (JSON in strings too): never refused.
        "{{ received.data.action }} {{ received.data.anything.at.all }}",
        "{{ received.frame.trace_id }} {{ received.frame['x-y'] }}",
        "{{ received.data['mesage'] }}",
    ],
)
def test_every_field_of_received_and_every_deeper_path_is_accepted(text: str) -> None:
    assert check(text, [], fields=SCENARIO) == []


def test_received_fields_are_exactly_what_a_received_frame_gives_templates() -> None:
    from replay.matching import ClientFrame

    frame = ClientFrame("c1", '{"message_type": "CHAT_INPUT", "message": "hi"}')
    assert set(frame.for_template()) == templates.RECEIVED_FIELDS
    # A protocol's own envelope names are there too, as what they hold in the frame.
    priced = ClientFrame(
        "c1",
        '{"event": "subscribe", "data": {"symbols": ["ACME"]}}',
        endpoint="/prices",
        type_field="event",
        payload_field="data",
    )
    view = priced.for_template()
    assert set(view) == templates.RECEIVED_FIELDS | {"event"}
    assert view["event"] == view["message_type"] == "subscribe"
    assert view["data"] == {"symbols": ["ACME"]}


def test_unknown_name_without_suggestion() -> None:
    [problem] = check("{{ zzzz }}", [])
    assert problem.startswith("unknown name 'zzzz' in a template; templates can use ")


def test_several_unknown_names_are_each_reported_in_order() -> None:
    problems = check("{{ b_name }} {{ a_name }}", [])
    assert [re.findall(r"'(\w+)'", p)[0] for p in problems] == ["a_name", "b_name"]


@pytest.mark.parametrize("text", ["{{ vars.nmae }}", "{{ vars['nmae'] }}", '{{ vars["nmae"] }}'])
def test_undeclared_variable_suggests_a_declared_one(text: str) -> None:
    [problem] = check(text, ["name", "count"])
    assert problem == (
        "variable 'nmae' is not declared (did you mean 'name'?): add it under 'vars:' "
        "with a default, or bind it with a 'let' step (declared: count, name)"
    )


def test_undeclared_variable_with_nothing_declared() -> None:
    [problem] = check("{{ vars.x }}", [])
    assert problem == (
        "variable 'x' is not declared: add it under 'vars:' with a default, or bind it with "
        "a 'let' step (declared: none)"
    )


def test_declared_variables_are_fine() -> None:
    assert check("{{ vars.name }} {{ vars['count'] }}", {"name": "Ada", "count": 3}) == []


def test_syntax_error() -> None:
    [problem] = check("{{ x", [])
    assert problem.startswith("template syntax error: ")
    assert "end of print statement" in problem


def test_syntax_error_in_a_multi_line_template_names_the_line() -> None:
    [problem] = check("line one\n{% if step %}\nno end\n", [])
    assert problem.startswith("template syntax error (line ")
    assert "of the template)" in problem


@pytest.mark.parametrize(
    "text",
    ["{{ received.message | nofilter }}", "{{ step is notatest }}"],
    ids=["unknown-filter", "unknown-test"],
)
def test_unknown_filter_or_test_is_a_problem_not_an_exception(text: str) -> None:
    # check() must describe what is wrong, never raise: the loader promises not to raise.
    problems = check(text, [])
    assert len(problems) == 1
    assert ("nofilter" in problems[0]) or ("notatest" in problems[0])


@pytest.mark.parametrize(
    "text",
    [
        "{{ " + "(" * 200 + "1" + ")" * 200 + " }}",
        "{{ " + "[" * 200 + "]" * 200 + " }}",
        "{{ " + "+".join(["1"] * 2000) + " }}",
    ],
    ids=["parentheses", "brackets", "long-sum"],
)
def test_deeply_nested_template_is_a_problem_not_an_exception(text: str) -> None:
    problems = check(text, [])
    assert problems  # something like "the template nests too deeply"


@pytest.mark.parametrize(
    "text", ['{% include "other" %}', '{% extends "base" %}', '{% import "macros" as m %}']
)
def test_templates_that_load_other_templates_are_refused(text: str) -> None:
    # There is no template loader: these can never render, so they should fail the check
    # instead of failing every run.
    assert check(text, []) != []


# --- render_text ------------------------------------------------------------------------------


def test_render_text_with_context() -> None:
    text = (
        "{{ run.id }}/{{ scenario }}/{{ step }}/{{ iteration }}: {{ vars.name }} x"
        "{{ vars['count'] }} at {{ now.iso }} ({{ now.ms }}) from {{ sender }}: "
        "{{ received.message }} {{ uuid() }} {{ randint(4, 9) }} {{ choice(vars.tags) }}"
    )
    assert render_text(text, context()) == (
        "run-1/demo/2/0: Ada x3 at 2023-11-14T22:13:20.123Z (1700000000123) from browser-1: "
        "hi 00000000-0000-4000-8000-000000000000 4 a"
    )


def test_render_text_keeps_trailing_newline_and_plain_text() -> None:
    assert render_text("{{ step }}\n", context()) == "2\n"
    assert render_text("no template", context()) == "no template"


def test_render_text_loops_and_conditions() -> None:
    text = "{% for t in vars.tags %}[{{ t }}]{% endfor %}{% if iteration %}x{% else %}y{% endif %}"
    assert render_text(text, context()) == "[a][b]y"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{{ nope }}", "'nope' is undefined (a name or field that does not exist here)"),
        ("{{ run.nope }}", "has no attribute 'nope' (a name or field that does not exist here)"),
        ("{{ vars.missing }}", "has no attribute 'missing'"),
        ("{{ received.data.field }}", "(a name or field that does not exist here)"),
        ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
    ],
)
def test_render_failures_are_template_failed_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(TemplateFailed) as caught:
        render_text(text, context())
    assert reason in caught.value.reason
    assert caught.value.source == text
    assert str(caught.value) == f"template {text!r} failed: {caught.value.reason}"


def test_undefined_is_strict_even_in_a_loop_or_a_test() -> None:
    with pytest.raises(TemplateFailed):
        render_text("{% for x in nope %}{{ x }}{% endfor %}", context())
    with pytest.raises(TemplateFailed):
        render_text("{{ nope ~ 'x' }}", context())


def test_long_source_is_shortened_in_the_message() -> None:
    text = "{{ nope }}" + "x" * 200
    with pytest.raises(TemplateFailed) as caught:
        render_text(text, context())
    assert caught.value.source == text
    assert "..." in str(caught.value)
    assert len(str(caught.value)) < 200


# --- the sandbox ------------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ dict.__init__.__globals__ }}",
    "{{ dict.__class__ }}",
    "{{ range.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ run.__class__ }}",
    "{{ run | attr('__class__') }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ uuid.__globals__ }}",
    "{{ now.__class__.__init__.__globals__ }}",
]


@pytest.mark.parametrize("text", ESCAPES)
def test_sandbox_refuses_python_internals(text: str) -> None:
    with pytest.raises(TemplateFailed) as caught:
        render_text(text, context())
    assert "not allowed in a template" in caught.value.reason


@pytest.mark.parametrize("name", ["cycler", "joiner", "lipsum", "namespace"])
def test_jinjas_helper_objects_are_not_part_of_the_language(name: str) -> None:
    # They are ways into Python objects, and replay does not document them: unknown names.
    assert check("{{ " + name + ".__init__ }}", []) == [
        f"unknown name {name!r} in a template; templates can use "
        "choice, hex, iteration, now, randint, random, received, run, scenario, sender, state, "
        "step, uuid, vars"
    ]


def test_sandbox_never_runs_a_command(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = "{{ dict.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
    with pytest.raises(TemplateFailed):
        render_text(text, context())
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    [
        "{{ vars.update(name='Eve') }}",
        "{{ vars.pop('name') }}",
        "{{ vars.__setitem__('name', 'Eve') }}",
        "{{ vars.tags.append('c') }}",
        "{{ vars.tags.clear() }}",
        "{% set run.id = 'other' %}",
    ],
)
def test_sandbox_refuses_changes(text: str) -> None:
    names = context()
    with pytest.raises(TemplateFailed):
        render_text(text, names)
    assert names["vars"] == {"name": "Ada", "count": 3, "tags": ["a", "b"]}
    assert names["run"]["id"] == "run-1"


def test_output_over_the_limit_fails() -> None:
    with pytest.raises(TemplateFailed) as caught:
        render_text(f"{{{{ 'a' * ({MAX_OUTPUT} + 1) }}}}", context())
    # Refused before the text is built, saying by what.
    assert caught.value.reason == (
        f"it renders more than {MAX_OUTPUT} characters: '*' would make 1,048,577; "
        "make the text shorter"
    )
    assert len(render_text(f"{{{{ 'a' * {MAX_OUTPUT} }}}}", context())) == MAX_OUTPUT


def test_huge_ranges_are_refused() -> None:
    with pytest.raises(TemplateFailed, match="Range too big"):
        render_text("{% for i in range(10000000) %}x{% endfor %}", context())


def test_a_runaway_loop_stops_at_the_limit() -> None:
    # MAX_OUTPUT is there "so a runaway loop fails instead of eating memory": rendering
    # should stop once the output passes the limit, not build all of it first.
    calls = 0
    piece = "x" * 4096

    def big() -> str:
        nonlocal calls
        calls += 1
        return piece

    text = "{% for i in range(20000) %}{{ uuid() }}{% endfor %}"  # 80 MB if rendered in full
    with pytest.raises(TemplateFailed):
        render_text(text, context(uuid=big))
    assert calls <= 2 * (MAX_OUTPUT // len(piece)) + 16


#: Templates that try to read files: no loader exists, so they can never render anything.
FILE_READS = [
    "{% include '/etc/passwd' %}",
    "{% include '../scenarios/all.yaml' %}",
    "{% import '/etc/passwd' as passwd %}",
    "{% from '/etc/passwd' import root %}",
    "{% extends '/etc/passwd' %}",
]


@pytest.mark.parametrize(
    "text",
    [
        "{% autoescape true %}{{ x }}{% endautoescape %}",
        "{% autoescape false %}{% endautoescape %}",
    ],
)
def test_autoescaping_cannot_be_turned_on(text: str) -> None:
    # Escaped output and Markup values are longer than the sandbox predicts.
    assert check(text, []) == [
        "templates cannot turn autoescaping on: use the escape filter where needed"
    ]
    # And if one ever rendered, it renders unescaped.
    assert render_text(text, context(x="<")) in ("<", "")


@pytest.mark.parametrize("text", FILE_READS)
def test_reading_a_file_is_refused_when_the_file_loads(text: str) -> None:
    assert check(text, []) == ["templates cannot include, extend or import other templates"]


@pytest.mark.parametrize("text", FILE_READS)
def test_reading_a_file_fails_at_run_time_too_without_its_content(
    text: str, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    for source in (text, text.replace("/etc/passwd", str(secret))):
        with pytest.raises(TemplateFailed) as caught:
            render_text(source, context())
        assert caught.value.reason == "TypeError: no loader for this environment specified"
        assert "TOP-SECRET" not in str(caught.value)
        assert "root:" not in str(caught.value)


def test_a_scenario_file_that_includes_a_file_is_invalid_with_a_located_problem() -> None:
    loaded = parse_scenario(
        "steps:\n  - chunk: a\n  - message: EVENT\n    text: \"{% include '/etc/passwd' %}\"\n",
        "scenarios/leak.yaml",
    )
    assert [str(problem) for problem in loaded.problems] == [
        "scenarios/leak.yaml:4:5: steps.1.text: templates cannot include, extend or import "
        "other templates"
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "{{ ''.__class__.__mro__ }}",
            "access to attribute '__class__' of 'str' object is unsafe.",
        ),
        (
            "{{ dict.__init__.__globals__ }}",
            "access to attribute '__init__' of 'type' object is unsafe.",
        ),
        (
            "{{ range.__globals__ }}",
            "access to attribute '__globals__' of 'function' object is unsafe.",
        ),
    ],
)
@pytest.mark.parametrize("where", ["text", "data"])
def test_an_escape_that_loads_fails_the_run_at_that_step_and_sends_nothing(
    text: str, reason: str, where: str
) -> None:
    # These read only names Jinja itself provides, so the load-time check lets them
    # through: the sandbox stops them when the step plays, and no frame carries anything.
    value = f'"{text}"' if where == "text" else f'{{leak: "{text}"}}'
    loaded = parse_scenario(
        f"steps:\n  - chunk: before\n  - message: EVENT\n    {where}: {value}\n",
        "scenarios/main.yaml",
    )
    assert loaded.valid, loaded.problems
    with pytest.raises(StepFailed) as caught:
        build_timeline("main", Catalog.resolve([loaded]))
    assert str(caught.value) == (
        f"scenario 'main', step 1: template {text!r} failed: not allowed in a template: {reason}"
    )


# --- render_value -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{{ 3 }}", 3),
        ("  {{ 3 }}  ", 3),
        ("{{ 1.5 }}", 1.5),
        ("{{ true }}", True),
        ("{{ none }}", None),
        ("{{ [1, 'a'] }}", [1, "a"]),
        ("{{ {'a': 1} }}", {"a": 1}),
        ("{{ step }}", 2),
        ("{{ vars.count }}", 3),
        ("{{ vars.tags }}", ["a", "b"]),
        ("{{ now.ms }}", 1_700_000_000_123),
        ("{{ now }}", "2023-11-14T22:13:20.123Z"),
        ("{{ now.iso }}", "2023-11-14T22:13:20.123Z"),
        ("{{ uuid() }}", "00000000-0000-4000-8000-000000000000"),
        ("{{ iteration + 1 }}", 1),
        ("x {{ 3 }}", "x 3"),
        ("{{ 1 }}{{ 2 }}", "12"),
        ("{{ 1 }} and {{ 2 }}", "1 and 2"),
        ("{{ '}}' }}", "}}"),
        ("{% if true %}{{ 3 }}{% endif %}", "3"),
    ],
)
def test_render_value(text: str, value: Any) -> None:
    rendered = render_value(text, context())
    assert rendered == value
    assert type(rendered) is type(value)


def test_render_value_turns_non_json_values_into_text() -> None:
    assert render_value("{{ (1, 2) }}", context()) == [1, 2]  # a tuple is a JSON list
    assert render_value("{{ now }}", context(now=Now(0))) == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    "text",
    ["{{ [now] }}", "{{ {'at': now} }}", "{{ {'when': [now, 1]} }}", "{{ 1e308 * 10 }}"],
)
def test_render_value_always_gives_json(text: str) -> None:
    # "Only JSON's own types keep their type": a list or mapping holding something else
    # (a Now) must not reach the wire as an unencodable value; nor may an infinity.
    try:
        value = render_value(text, context())
    except TemplateFailed:
        return
    json.dumps(value, allow_nan=False)


@pytest.mark.parametrize(
    "text", ["{{ nope }}", "{{ run.nope }}", "{{ vars.missing }}", "{{ received.data.x }}"]
)
def test_render_value_undefined_is_template_failed(text: str) -> None:
    with pytest.raises(TemplateFailed) as caught:
        render_value(text, context())
    assert "(a name or field that does not exist here)" in caught.value.reason


@pytest.mark.parametrize("text", ESCAPES)
def test_render_value_sandbox_is_template_failed(text: str) -> None:
    with pytest.raises(TemplateFailed) as caught:
        render_value(text, context())
    assert "not allowed in a template" in caught.value.reason


def test_render_value_syntax_error_is_template_failed() -> None:
    with pytest.raises(TemplateFailed):
        render_value("{{ }}", context())
    with pytest.raises(TemplateFailed):
        render_value("{{ 1 + }}", context())


def test_render_value_output_over_the_limit_fails() -> None:
    with pytest.raises(TemplateFailed):
        render_value(f"{{{{ 'a' * ({MAX_OUTPUT} + 1) }}}}", context())


# --- render_data ------------------------------------------------------------------------------


def test_render_data_walks_nested_structures() -> None:
    data = {
        "name": "{{ vars.name }} - START",
        "count": "{{ vars.count }}",
        "nested": {"list": ["{{ step }}", "plain", {"deep": "{{ now.iso }}"}], "n": 1.5},
        "flag": True,
        "nothing": None,
        "text": "no template here",
    }
    original = json.loads(json.dumps(data))
    assert render_data(data, context()) == {
        "name": "Ada - START",
        "count": 3,
        "nested": {"list": [2, "plain", {"deep": "2023-11-14T22:13:20.123Z"}], "n": 1.5},
        "flag": True,
        "nothing": None,
        "text": "no template here",
    }
    assert data == original  # the input is left as it was


def test_render_data_leaves_keys_and_scalars() -> None:
    assert render_data({"{{ step }}": 1}, context()) == {"{{ step }}": 1}
    assert render_data(5, context()) == 5
    assert render_data(["{{ step }}"], context()) == [2]
    assert render_data("{{ step }}", context()) == 2


def test_render_data_failure_is_template_failed() -> None:
    with pytest.raises(TemplateFailed):
        render_data({"a": ["{{ 1 / 0 }}"]}, context())


# --- Now --------------------------------------------------------------------------------------


def test_now() -> None:
    now = Now(MOMENT)
    assert now.iso == "2023-11-14T22:13:20.123Z"
    assert now.ms == 1_700_000_000_123
    assert now.s == MOMENT
    assert str(now) == now.iso
    assert Now(0).iso == "1970-01-01T00:00:00.000Z"
    assert Now(0).ms == 0
    assert Now(0.5).iso == "1970-01-01T00:00:00.500Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", Now(1e9 + 0.0004).iso)


@pytest.mark.parametrize("seconds", [1.005, 1.001, 1_700_000_000.1229996, 12.345, 0.999])
def test_now_ms_and_iso_agree(seconds: float) -> None:
    # now.ms and now.iso describe the same millisecond.
    now = Now(seconds)
    assert now.ms // 1000 == int(seconds)
    assert now.ms % 1000 == int(now.iso[-4:-1])


def test_names_are_the_documented_ones() -> None:
    documented = {
        "run",
        "scenario",
        "step",
        "iteration",
        "now",
        "uuid",
        "hex",
        "random",
        "randint",
        "choice",
        "vars",
        "received",
        "sender",
        "state",
    }
    assert documented == NAMES
    assert templates.__doc__ is not None
    for name in NAMES:
        assert f"``{name}" in templates.__doc__


# --- limits: no template can hold the event loop or the memory -----------------------------
#
# Each class of runaway template is refused with TemplateFailed, before the value is built:
# the peak memory (tracemalloc: deterministic, unlike time) stays a small multiple of
# MAX_OUTPUT while the template asks for gigabytes.

#: A text as long as a template may render.
BIG = "x" * MAX_OUTPUT


def big_context() -> dict[str, Any]:
    """The usual names, with variables and a received frame as big as they may be."""
    names = context(vars=Variables({"name": "Ada", "big": BIG, "items": ["a", "b"]}))
    names["received"] = {**names["received"], "text": BIG, "data": {"n": list(range(20_000))}}
    return names


def refused(text: str, names: dict[str, Any] | None = None, render: Any = render_text) -> str:
    """The reason ``text`` is refused for; fails the test if rendering it at any point
    held more than 8 * MAX_OUTPUT bytes."""
    names = big_context() if names is None else names
    tracemalloc.start()
    try:
        with pytest.raises(TemplateFailed) as caught:
            render(text, names)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_OUTPUT, f"{peak} bytes for {text!r}"
    assert caught.value.source == text
    return caught.value.reason


TOO_LONG = f"it renders more than {MAX_OUTPUT} characters: "
TOO_MUCH_WORK = "the template does too much work: more than 10000 loop iterations or calls"

#: Templates that ask for a value far longer than MAX_OUTPUT, and what the refusal names.
GROWTH = [
    ("{{ 'x' * 1500000000 }}", "'*' would make 1,500,000,000"),
    ("{{ 1500000000 * 'x' }}", "'*' would make 1,500,000,000"),
    ("{{ [1, 2] * 1500000000 }}", "'*' could make more than that"),
    ("{{ (vars.big,) * 2 }}", "'*' could make more than that"),
    ("{{ vars.big + vars.big }}", "'+' would make 2,097,152"),
    ("{{ vars.big ~ vars.big }}", "'~' would make 2,097,152"),
    ("{{ '%500000000d' % 1 }}", "'%' could make more than that"),
    ("{{ '%.500000000f' % 1.5 }}", "'%' could make more than that"),
    ("{{ '%*d' % (500000000, 1) }}", "'%' could make more than that"),
    ("{{ '%(a)s%(a)s' % {'a': vars.big} }}", "'%' could make more than that"),
    ("{{ '%1500000000s' | format(1) }}", "the format filter could make more than that"),
    ("{{ '{:500000000}'.format(1) }}", "str.format() could make more than that"),
    ("{{ '{:{w}}'.format(1, w=500000000) }}", "str.format() could make more than that"),
    ("{{ '{0}{0}'.format(vars.big) }}", "str.format() could make more than that"),
    ("{{ '{a:>500000000}'.format_map({'a': 1}) }}", "str.format() could make more than that"),
    ("{{ 'x'.center(1500000000) }}", "str.center(1500000000) would make 1,500,000,000"),
    ("{{ 'x'.ljust(1500000000) }}", "str.ljust(1500000000) would make 1,500,000,000"),
    ("{{ 'x'.rjust(1500000000, '-') }}", "str.rjust(1500000000) would make 1,500,000,000"),
    ("{{ '1'.zfill(1500000000) }}", "str.zfill(1500000000) would make 1,500,000,000"),
    ("{{ ('\t' * 1000).expandtabs(10000000) }}", "str.expandtabs(10000000) could make"),
    ("{{ vars.big.replace('x', 'xy') }}", "str.replace() would make 2,097,152"),
    ("{{ ('x' * 1000).replace('x', 'y' * 10000) }}", "str.replace() would make 10,000,000"),
    ("{{ ('x' * 1000).replace('', 'y' * 10000) }}", "str.replace() would make 10,011,000"),
    ("{{ vars.big | replace('x', 'xy') }}", "the replace filter would make 2,097,152"),
    ("{{ 'x'.join([vars.big, vars.big]) }}", "str.join() would make 2,097,153"),
    ("{{ [vars.big, vars.big] | join }}", "the join filter would make 2,097,152"),
    ("{{ vars.items | join(vars.big) }}", "the join filter would make 1,048,578"),
    ("{{ [vars.items, vars.big] | join }}", "the join filter could make more than that"),
    ("{{ 'x' | center(1500000000) }}", "center(1500000000) would make 1,500,000,000"),
    ("{{ 'a\nb' | indent(1500000000) }}", "the indent filter could make more than that"),
    ("{{ 'ab' | wordwrap(1, wrapstring=vars.big) }}", "the wordwrap filter could make more"),
    ("{{ vars.big | truncate(5, end=vars.big) }}", "the truncate filter could make more"),
    ("{{ [1] | batch(1500000000, 'x') | list }}", "the batch filter could make more"),
    ("{{ ('<' * 300000) | e }}", "the escape filter could make more than that"),
    ("{{ ('ß' * 400000) | upper }}", "the upper filter could make more than that"),
    ("{{ ('ß' * 400000).upper() }}", "str.upper() could make more than that"),
    ('{{ ("\'" * 300000) | tojson }}', "the tojson filter could make more than that"),
    ("{{ [1, 2] | tojson(indent=1500000000) }}", "tojson(1500000000) would make 1,500,000,000"),
    ("{{ 2.5 | tojson(2147483648) }}", "tojson(2147483648) would make 2,147,483,648"),
    ("{{ vars.big | pprint }}", "the pprint filter could make more than that"),
    ("{{ vars.big | urlencode }}", "the urlencode filter could make more than that"),
    ("{{ [vars.big, vars.big] }}", "the output could make more than that"),
    ("{{ vars.big[0:] ~ 'x' }}", "'~' would make 1,048,577"),
]


@pytest.mark.parametrize(("text", "what"), GROWTH, ids=[text for text, _ in GROWTH])
def test_a_value_longer_than_the_limit_is_refused_before_it_is_built(text: str, what: str) -> None:
    reason = refused(text)
    assert reason.startswith(TOO_LONG + what), reason
    assert reason.endswith("; make the text shorter")


@pytest.mark.parametrize(
    "text", ["{{ 'x' * 1.5e9 }}", "{{ 'x' * 1500000000 }}", "{{ 'x' * 15 * 100000000 }}"]
)
def test_the_issues_payloads_are_neither_built_when_the_file_loads_nor_when_they_render(
    text: str,
) -> None:
    # Jinja folds constant expressions while compiling: '*' is never folded, so loading
    # the file builds nothing (it used to peak at 6 GB).
    tracemalloc.start()
    try:
        templates._template.cache_clear()
        assert check(text, []) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_OUTPUT
    refused(text)


def test_python_running_out_of_stack_is_template_failed() -> None:
    def deep() -> str:
        raise RecursionError("maximum recursion depth exceeded")

    with pytest.raises(TemplateFailed) as caught:
        render_text("{{ uuid() }}", context(uuid=deep))
    assert caught.value.reason == (
        "calls nest too deeply (a macro that calls itself without end?); nest fewer calls"
    )


@pytest.mark.parametrize(
    "text", ["{{ vars.big | string }}", "{{ 'x' * 1048576 }}", "{{ vars.big[::-1] }}"]
)
def test_a_value_as_long_as_the_limit_renders(text: str) -> None:
    assert len(render_text(text, big_context())) == MAX_OUTPUT


@pytest.mark.parametrize(
    "text",
    [
        "{{ 2 ** 100000000 }}",
        "{{ 7 ** 5000 }}",
        "{{ (2 ** 4000) * (2 ** 4000) }}",
        "{{ 2 ** 4096 + 2 ** 4096 }}",
        "{{ ('f' * 2000) | int(base=16) }}",
    ],
)
def test_a_huge_number_is_refused_before_it_is_computed(text: str) -> None:
    assert "a number of more than 4096 bits" in refused(text)


#: Templates that would keep the server busy for seconds, or for ever.
WORK = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for a in range(10) %}{% for b in range(10) %}{% for c in range(10) %}"
    "{% for d in range(10) %}{% for e in range(10) %}.{% endfor %}{% endfor %}{% endfor %}"
    "{% endfor %}{% endfor %}",
    "{% for c in vars.big %}{% endfor %}",
    "{% for c in received.text %}{% for d in received.text %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{{ i }}{% endfor %}",
    "{% for i in range(100000) if i < 0 %}{% endfor %}",
    "{% for i in range(100000) %}{% if 'yz' in vars.big %}{% endif %}{% endfor %}",
    "{% for i in range(100000) %}{{ vars.big.count('yz') }}{% endfor %}",
    "{% for i in range(10000) %}{{ vars.big == received.text }}{% endfor %}",
    "{% for i in range(100000) %}{{ received.data.n | length }}{% endfor %}",
    "{% macro f(n) %}{% for i in range(1000) %}{{ n }}{% endfor %}{% endmacro %}"
    "{% for i in range(1000) %}{{ f(i) }}{% endfor %}",
    "{{ range(100000) | map('string') | join }}",
    "{{ range(100000) | select('odd') | list | length }}",
    "{{ range(100000) | list | sort | length }}",
    "{{ range(100000) | sum }}",
    "{{ range(100000) | unique | list | length }}",
    "{{ vars.big | list | length }}",
    "{{ vars.big | wordwrap(1) }}",
    "{{ ('a ' * 400000) | title }}",
    "{{ ('a ' * 400000) | wordcount }}",
    "{{ ('<a>' * 300000) | striptags }}",
    "{{ ('a.com ' * 100000) | urlize }}",
    "{{ ('a ' * 400000).split() | length }}",
    "{{ ('a\n' * 400000).splitlines() | length }}",
    "{{ dict.fromkeys(range(100000)) | length }}",
    "{{ ([[1] * 100] * 100) | sum(start=[]) | length }}",
    "{{ vars.big.strip('y' * 1000) }}",
    "{% for i in range(1000) %}{{ (2 ** 4000) // (2 ** 2000 + 1) }}{% endfor %}",
]


@pytest.mark.parametrize("text", WORK)
def test_a_template_that_does_too_much_work_is_stopped(text: str) -> None:
    reason = refused(text)
    assert reason.startswith(TOO_MUCH_WORK), reason
    assert reason.endswith("; loop over fewer or smaller values")


@pytest.mark.parametrize(
    "text",
    [
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(0) }}",
        "{% macro f() %}{% call f() %}{{ caller() }}{% endcall %}{% endmacro %}"
        "{% call f() %}x{% endcall %}",
        "{% for x in [1] recursive %}{{ loop([x]) }}{% endfor %}",
        "{% block b %}{{ self.b() }}{% endblock %}",
    ],
)
def test_endless_recursion_is_stopped(text: str) -> None:
    reason = refused(text, context())
    assert reason.startswith("calls nest more than 40 deep (a macro that calls itself"), reason


@pytest.mark.parametrize(
    "value", ["vars.big[1:] ~ 'y'", "vars.big[1:]", "vars.big[1:].center(1048576)"]
)
def test_values_under_the_limit_cannot_add_up_to_gigabytes(value: str) -> None:
    lines = "".join(f"{{% set v{n} = {value} %}}" for n in range(64))
    assert refused(lines).startswith("the template builds more than 4194304 bytes of values")


def test_output_that_is_not_rendered_yet_is_refused_too() -> None:
    # A macro's, block's or {% set %} block's output is joined before it is used.
    for text in (
        "{% macro f() %}{% for i in range(8) %}{{ vars.big }}{% endfor %}{% endmacro %}{{ f() }}",
        "{% set s %}{% for i in range(8) %}{{ vars.big }}{% endfor %}{% endset %}",
        "{% filter upper %}{{ vars.big }}{{ vars.big }}{% endfilter %}",
    ):
        assert refused(text).startswith(TOO_LONG + "the output of a macro or block"), text


@pytest.mark.parametrize(
    ("text", "method"),
    [
        ("{{ 'x'.encode() }}", "str.encode()"),
        ("{{ 'x'.translate({120: 'y' * 1000}) }}", "str.translate()"),
        ("{{ (1).to_bytes(1500000000, 'big') }}", "int.to_bytes()"),
        ("{{ dict.update(received, text='changed') }}", "dict.update()"),
        ("{{ dict.pop(received, 'text') }}", "dict.pop()"),
    ],
)
def test_methods_that_could_build_or_change_anything_are_not_available(
    text: str, method: str
) -> None:
    names = context()
    assert refused(text, names) == f"{method} is not available in templates"
    assert names["received"]["text"] == '{"message_type":"CHAT_INPUT","message":"hi"}'


@pytest.mark.parametrize(
    "text",
    ["{{ 'x' * 1500000000 }}", "{{ [vars.big, vars.big] }}", "{{ range(100000) | list }}"],
)
def test_a_value_in_data_is_refused_the_same(text: str) -> None:
    assert refused(text, render=render_value)


def test_the_templates_of_one_step_share_a_budget() -> None:
    # Each alone is fine; together the step's data would be 64 MiB.
    data = {f"k{n}": "{{ received.text }}" for n in range(64)}
    with pytest.raises(TemplateFailed) as caught:
        render_data(data, big_context())
    assert caught.value.reason.startswith("the template builds more than 4194304 bytes")
    assert render_data({"a": "{{ received.text }}"}, big_context()) == {"a": BIG}


def test_the_budget_is_per_render() -> None:
    # Renders one after the other each get the whole budget.
    text = "{% for i in range(2000) %}{{ i % 10 }}{% endfor %}"
    for _ in range(5):
        assert len(render_text(text, context())) == 2000


#: What templates do today, which must keep working.
EVERYDAY = [
    ("{{ vars.name }} {{ now.iso }} {{ uuid() }}", "Ada 2023-11-14T22:13:20.123Z " + "0" * 8),
    ("{% for i in range(3) %}{{ i }}{% endfor %}{{ 'ab' * 3 }}", "012ababab"),
    ("{{ vars.tags | join(', ') }} {{ vars.tags | map('upper') | join }}", "a, b AB"),
    ("{{ '%s is %d' % (vars.name, vars.count) }} {{ '{:>4}|'.format(vars.count) }}", "Ada is 3"),
    ("{{ (vars.tags + ['c']) | length }} {{ 2 ** 10 }} {{ 'x'.center(5, '*') }}", "3 1024 **x**"),
]


@pytest.mark.parametrize(("text", "start"), EVERYDAY)
def test_everyday_templates_still_render(text: str, start: str) -> None:
    assert render_text(text, context()).startswith(start)


# A small grammar of ways to grow a value, with sizes from tiny to absurd.
_SIZES = st.one_of(st.integers(-2, 20), st.integers(0, 5000), st.integers(0, 10**12))
_LEAVES = st.sampled_from(["'ab'", "vars.name", "received.text", "[1, 'a']", "(1, 2)", "7", "2"])


@st.composite
def _growth(draw: st.DrawFn, depth: int = 0) -> str:
    """An expression that grows a value."""
    if depth > 2 or draw(st.integers(0, 3)) == 0:
        return draw(_LEAVES)
    inner = draw(_growth(depth + 1))
    other = draw(_growth(depth + 1))
    size = draw(_SIZES)
    forms = [
        f"({inner}) * {size}",
        f"{size} ** {draw(_SIZES)}",
        f"({inner}) ~ ({other})",
        f"({inner}) + ({other})",
        f"'%{size}d' % {size}",
        f"'%-{size}s' % ({inner},)",
        f"'{{:>{size}}}'.format({inner})",
        f"({inner} | string).center({size})",
        f"({inner} | string).replace('a', ({other} | string) * 3)",
        f"({inner} | string) | indent({size})",
        f"[{inner}, {other}] | join({other} | string)",
        f"({inner} | string) | list",
        f"[{inner}] * {size} | batch(3, {other}) | list",
        f"({inner}) | tojson",
    ]
    return draw(st.sampled_from(forms))


@st.composite
def _templates(draw: st.DrawFn) -> str:
    expression = "{{ " + draw(_growth()) + " }}"
    loops = draw(st.integers(0, 2))
    for _ in range(loops):
        expression = f"{{% for i in range({draw(_SIZES) % 100001}) %}}{expression}{{% endfor %}}"
    return expression


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(text=_templates())
def test_property_any_growth_renders_within_the_limits_or_is_refused(text: str) -> None:
    names = big_context()
    tracemalloc.start()
    try:
        try:
            output = render_text(text, names)
        except TemplateFailed:
            output = ""
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(output) <= MAX_OUTPUT
    assert peak < 8 * MAX_OUTPUT, f"{peak} bytes"


def test_check_takes_the_names_a_template_may_use_and_their_fields() -> None:
    allowed = {"request", "state"}
    fields = {"request": ("query", "body")}
    assert check("{{ request.query.n }} {{ state.x }}", (), allowed, fields) == []
    assert check("{{ request['body'] }}", (), allowed, fields) == []
    assert check("{{ run.id }}", (), allowed, fields) == [
        "unknown name 'run' in a template; templates can use request, state"
    ]
    assert check("{{ request.qery }}", (), allowed, fields) == [
        "request has no field 'qery' (did you mean 'query'?); its fields are body, query"
    ]
    # Without vars among the names, vars.NAME is an unknown name, said once.
    assert check("{{ vars.x }}", (), allowed) == [
        "unknown name 'vars' in a template; templates can use request, state"
    ]


# --- conditions: expressions checked and evaluated like templates ----------------------------


def test_state_is_a_name_templates_read() -> None:
    assert check("{{ state.paused }} {{ state['turn'] + 1 }}", []) == []
    shared = Variables({"paused": True, "turn": 2})
    assert render_text("{{ state.paused }} {{ state.turn + 1 }}", context(state=shared)) == (
        "True 3"
    )
    assert render_value("{{ state.turn }}", context(state=shared)) == 2


def test_a_key_the_state_lacks_fails_the_render() -> None:
    with pytest.raises(TemplateFailed, match="no attribute 'nope'"):
        render_text("{{ state.nope }}", context(state=Variables({})))


@pytest.mark.parametrize(
    "expression",
    [
        "received.data.answer == 'yes'",
        "state.paused and vars.name",
        "vars.count > 2 or sender == 'browser-1'",
        "iteration is even",
        "'x' in (vars.tags | join)",
        "not state.paused",
    ],
)
def test_good_expressions_have_no_problems(expression: str) -> None:
    assert templates.check_expression(expression, ["name", "count", "tags"]) == []


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("x ==", "expression syntax error: unexpected 'end of template'"),
        ("a b", "expression syntax error: unexpected 'b' after the expression"),
        ("state.x | nofilter", "expression syntax error: No filter named 'nofilter'."),
        ("state.x is nottest", "expression syntax error: No test named 'nottest'."),
        (
            "{{ state.paused }}",
            "a condition is an expression, not a template: write it without '{{ }}' "
            "(state.paused, not {{ state.paused }})",
        ),
        (
            "stat.paused",
            "unknown name 'stat' in an expression (did you mean 'state'?); templates can use "
            + ", ".join(sorted(NAMES)),
        ),
        (
            "vars.nmae == 1",
            "variable 'nmae' is not declared (did you mean 'name'?): add it under 'vars:' "
            "with a default, or bind it with a 'let' step (declared: name)",
        ),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, problem: str) -> None:
    assert templates.check_expression(expression, ["name"]) == [problem]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("received.message == 'hi'", True),
        ("received.message == 'no'", False),
        ("state.paused and vars.count > 2", True),
        ("state.paused and vars.count > 3", False),
        ("vars.tags", True),  # truthiness, as {% if %} has it
        ("[]", False),
        ("received.data", False),
    ],
)
def test_is_true_evaluates_like_jinjas_if(expression: str, expected: bool) -> None:
    names = context(state=Variables({"paused": True}))
    assert templates.is_true(expression, names) is expected


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("received.data.answer == 'yes'", "no attribute 'answer'"),
        ("state.nope", "no attribute 'nope'"),
        ("vars.name.__class__", "not allowed in a template: access to attribute '__class__'"),
        ("range(100000) | list | length", TOO_MUCH_WORK),
        ("'x' * 2000000", "it renders more than"),
    ],
)
def test_a_condition_that_cannot_be_evaluated_is_template_failed(
    expression: str, reason: str
) -> None:
    with pytest.raises(TemplateFailed) as failed:
        templates.is_true(expression, context(state=Variables({})))
    assert reason in failed.value.reason
    assert failed.value.source == expression


def test_reads_tells_which_templates_read_a_name() -> None:
    assert templates.reads("{{ state.turn }}", "state")
    assert templates.reads("{% if state.paused %}p{% endif %}", "state")
    assert not templates.reads("{{ vars.state }}", "state")
    assert not templates.reads("state.turn", "state")  # not a template
    assert not templates.reads("{{ broken", "state")


def test_now_ns_agrees_with_ms() -> None:
    moment = templates.Now(1733260000.1234)
    assert moment.ns == moment.ms * 1_000_000 == 1733260000123000000


def test_random_hex_is_seeded_and_bounded() -> None:
    import random

    first = templates.random_hex(random.Random(7), 16)
    assert first == templates.random_hex(random.Random(7), 16)
    assert len(first) == 16
    assert set(first) <= set("0123456789abcdef")
    assert len(templates.random_hex(random.Random(1), 32)) == 32
    for bad in (0, -1, templates.MAX_HEX + 1, 2.5, True, "16"):
        with pytest.raises(ValueError, match="hex\\(n\\) takes a whole number"):
            templates.random_hex(random.Random(1), bad)  # type: ignore[arg-type]
