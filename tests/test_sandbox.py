"""The sandbox environment: every template is rewritten so that its work is counted, and
every hook Jinja's sandbox has charges the render's budget."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
from jinja2 import nodes

from replay.limits import MAX_DEPTH, Budget, Refused, rendering
from replay.sandbox import CALL_STEPS, NODES_PER_STEP, Metered, Sandbox

ENV = Sandbox(undefined=jinja2.StrictUndefined, autoescape=False)


def render(text: str, **names: Any) -> tuple[str, Budget]:
    """The output of ``text``, and the budget it spent."""
    with rendering() as budget:
        return "".join(ENV.from_string(text).generate(names)), budget


def steps(text: str, **names: Any) -> int:
    return render(text, **names)[1].steps


def test_loops_go_over_their_items_through_iterate() -> None:
    tree = ENV.parse("{% for x in items %}{{ x }}{% endfor %}")
    Metered().visit(tree)
    [loop] = tree.find_all(nodes.For)
    assert isinstance(loop.iter, nodes.Filter)
    assert loop.iter.name == "_iterate"


def test_comparisons_and_concatenations_call_guarded_functions() -> None:
    tree = ENV.parse("{{ a < b <= c }}{{ a ~ b ~ c }}{{ a in b }}")
    Metered().visit(tree)
    assert not list(tree.find_all(nodes.Compare))
    assert not list(tree.find_all(nodes.Concat))
    names = [node.name for node in tree.find_all(nodes.Filter)]
    assert names == ["_compare", "_concat", "_compare"]


def test_each_loop_item_is_a_step() -> None:
    assert steps("{% for i in range(100) %}{% endfor %}") == CALL_STEPS + 100
    assert steps("{% for i in range(100) if i > 1000 %}{% endfor %}") >= 200  # filtered too


def test_a_big_loop_body_costs_its_size_each_time() -> None:
    small = steps("{% for i in range(100) %}{% if i %}{% endif %}{% endfor %}")
    body = "{% if i %}{% endif %}" * 64
    big = steps("{% for i in range(100) %}" + body + "{% endfor %}")
    assert big - small >= 100 * (128 // NODES_PER_STEP - 1)


def test_the_body_charge_is_not_folded_when_compiling_inside_a_render() -> None:
    # Jinja folds constant expressions while compiling: a charge must not be folded
    # into one, even when the template compiles in the middle of a render.
    text = "{% for i in range(50) %}" + "{% if i %}{% endif %}" * 64 + "{% endfor %}"
    with rendering() as budget:
        "".join(ENV.from_string(text).generate())
    assert budget.steps >= 50 * 16


def test_macros_and_blocks_cost_their_size_each_call() -> None:
    body = "{% if n %}{% endif %}" * 64
    macro = "{% macro f(n) %}" + body + "{% endmacro %}"
    once = steps(macro + "{{ f(1) }}")
    twice = steps(macro + "{{ f(1) }}{{ f(2) }}")
    assert twice - once >= 128 // NODES_PER_STEP


def test_calls_nest_at_most_max_depth() -> None:
    nested = "{% macro f(n) %}{{ f(n - 1) if n else 'end' }}{% endmacro %}"
    assert render(nested + f"{{{{ f({MAX_DEPTH - 2}) }}}}")[0] == "end"
    with pytest.raises(Refused) as caught:
        render(nested + f"{{{{ f({MAX_DEPTH + 1}) }}}}")
    assert caught.value.reason.startswith(f"calls nest more than {MAX_DEPTH} deep")


def test_the_depth_is_given_back_after_each_call() -> None:
    loop = "{% macro f() %}x{% endmacro %}{% for i in range(200) %}{{ f() }}{% endfor %}"
    output, budget = render(loop)
    assert output == "x" * 200
    assert budget.depth == 0


def test_a_recursive_loop_charges_the_items_of_every_level() -> None:
    flat = steps("{% for x in [1, 2] recursive %}{{ x }}{% endfor %}")
    deep = steps(
        "{% for x in [[1] * 100, 2] recursive %}{{ loop(x) if x is iterable else x }}{% endfor %}"
    )
    assert deep - flat >= 100


def test_loop_changed_charges_what_it_compares() -> None:
    big = "x" * (100 * 1024)
    text = "{% for i in range(3) %}{{ loop.changed(big) }}{% endfor %}"
    assert steps(text, big=big) >= 3 * 400


def test_calls_and_attributes_are_charged() -> None:
    calls = steps("{% for i in range(10) %}{{ f() }}{% endfor %}", f=lambda: "")
    plain = steps("{% for i in range(10) %}{{ '' }}{% endfor %}")
    assert calls - plain == 10 * CALL_STEPS
    assert steps("{{ x.a }}{{ x['b'] }}", x={"a": 1, "b": 2}) >= 4


def test_a_slice_is_counted_as_built() -> None:
    output, budget = render("{{ big[1:] | length }}{{ big[::2] | length }}", big="x" * 100_000)
    assert output == "9999950000"
    assert budget.built >= 149_999
    assert render("{{ [1, 2, 3][::-1] }}{{ 'abc'[:-1] }}{{ range(5)[1:3] | list }}")[0] == (
        "[3, 2, 1]ab[1, 2]"
    )
    tree = ENV.parse("{{ x[1:2] }}")
    Metered().visit(tree)
    assert [node.name for node in tree.find_all(nodes.Filter)] == ["_slice"]


def test_dict_reads_its_arguments_item_by_item() -> None:
    output, _ = render("{{ dict(['ab', 'cd'] | map('list')) }}")
    assert output == "{'a': 'b', 'c': 'd'}"
    with pytest.raises(Refused):
        render("{{ dict(x) | length }}", x=((n, n) for n in range(100_000)))


def test_the_output_of_a_macro_is_checked_before_it_is_joined() -> None:
    big = "x" * (600 * 1024)
    with pytest.raises(Refused) as caught:
        render("{% macro f() %}{{ big }}{{ big }}{% endmacro %}{{ f() | length }}", big=big)
    assert "the output of a macro or block could make more than that" in caught.value.reason


def test_output_of_a_value_is_checked_before_it_is_written() -> None:
    with pytest.raises(Refused) as caught:
        render("{{ [big, big] }}", big="x" * (600 * 1024))
    assert "the output could make more than that" in caught.value.reason


def test_unsafe_calls_are_still_refused() -> None:
    with pytest.raises(jinja2.exceptions.SecurityError):
        render("{{ f() }}", f=type("Unsafe", (), {"unsafe_callable": True, "__call__": len})())
    with pytest.raises(jinja2.exceptions.SecurityError):
        render("{{ x.__class__ }}", x=1)


def test_nothing_guarded_runs_outside_a_render() -> None:
    # Compiling folds constants; with nothing guarded folded, all of it runs in a render.
    source = ENV.compile("{{ 'ab' * 3 }}{{ [1, 2] | join }}{{ 1 < 2 }}", raw=True)
    assert "call_binop" in source
    assert "'ababab'" not in source


@pytest.mark.parametrize(
    "text",
    [
        "{{ [-1000000000] | map('_charge') | list }}{% for i in range(20000) %}{% endfor %}",
        "{{ -1000000000 | _charge }}{% for i in range(20000) %}{% endfor %}",
        "{% for i in range(20000) | _iterate(-1) %}{% endfor %}",
    ],
)
def test_a_template_cannot_give_steps_back(text: str) -> None:
    with pytest.raises((Refused, TypeError)):
        render(text)


@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(100) %}{{ f(*range(100000)) }}{% endfor %}",
        "{% for i in range(100) %}{{ '' | format(*range(100000)) }}{% endfor %}",
        "{% for i in range(100) %}{{ 1 is divisibleby(*range(1, 100000)) }}{% endfor %}",
    ],
)
def test_spreading_arguments_is_read_item_by_item(text: str) -> None:
    with pytest.raises(Refused) as caught:
        render(text, f=lambda *args: len(args))
    assert caught.value.reason.startswith("the template does too much work")


def test_spread_arguments_still_work() -> None:
    output, _ = render(
        "{{ f(*[1, 2], **{'c': 3}) }}{{ '%s-%s' | format(*'ab') }}",
        f=lambda a, b, c: a + b + c,
    )
    assert output == "6a-b"
