"""The work a scenario can make a run do, counted before it plays (no I/O, no clock)."""

from __future__ import annotations

import textwrap
from typing import Any

import hypothesis
from hypothesis import strategies as st

from replay import budget
from replay.budget import Cost
from replay.catalog import Catalog
from replay.loader import parse_scenario


def problems(**sources: str) -> dict[str, list[str]]:
    """Every problem of a catalog built from ``{name: yaml}``, as users read them."""
    found = Catalog.resolve(
        parse_scenario(textwrap.dedent(text), f"s/{name}.yaml") for name, text in sources.items()
    )
    return {loaded.name: [str(problem) for problem in loaded.problems] for loaded in found}


def test_nested_finite_repeats_around_a_sleep_are_refused_where_they_multiply() -> None:
    found = problems(
        main="""\
        steps:
          - chunk: start
          - repeat: 1000
            steps:
              - repeat: 1000
                steps:
                  - sleep: 0
        """
    )
    assert found["main"] == [
        "s/main.yaml:3:5: steps.1: a run would play too many steps (repeats multiply the "
        "steps they repeat); expected at most 1,000,000 steps in a run, found 1,001,002 steps"
    ]


def test_silent_stretches_are_bounded_even_when_the_total_is_small() -> None:
    found = problems(
        main="""\
        steps:
          - chunk: start
          - repeat: 2000
            steps:
              - sleep: 1ms
        """
    )
    assert found["main"] == [
        "s/main.yaml:3:5: steps.1: a run would play too many steps in a row without sending "
        "a frame, waiting or disconnecting (repeats multiply the steps they repeat), and the "
        "server could answer nothing meanwhile: put a frame or a wait among the repeated "
        "steps, or repeat fewer times; expected at most 1,000 such steps in a row, found "
        "2,000 steps"
    ]


def test_silence_adds_up_across_played_scenarios_and_passes() -> None:
    # Each pass ends with 600 silent steps and the next begins with 600 more.
    found = problems(
        main="""\
        steps:
          - repeat: 3
            steps:
              - play: quiet
              - chunk: tick
              - play: quiet
        """,
        quiet="steps:\n  - repeat: 600\n    steps:\n      - sleep: 0\n",
    )
    assert found["quiet"] == []
    assert "found 1,200 steps" in found["main"][0]
    assert found["main"][0].startswith("s/main.yaml:2:5: steps.0: ")


def test_a_limit_is_located_on_the_innermost_step_that_goes_over() -> None:
    found = problems(
        main="""\
        steps:
          - repeat: 2
            steps:
              - chunk: a
              - repeat: 1001
                steps:
                  - sleep: 0
        """
    )
    assert found["main"][0].startswith("s/main.yaml:5:9: steps.0.steps.1: ")


def test_parallel_fan_out_is_bounded_counting_nested_branches() -> None:
    names = ", ".join(["wide"] * 40)
    found = problems(
        main=f"steps:\n  - parallel: [{names}]\n",
        wide=f"steps:\n  - parallel: [{', '.join(['leaf'] * 40)}]\n",
        leaf="steps:\n  - chunk: x\n",
    )
    assert found["wide"] == []
    assert found["main"] == [
        "s/main.yaml:2:5: steps.0: a run would have too many parallel branches playing at "
        "once (branches of nested parallel steps count too); expected at most 1,000 "
        "branches, found 1,640 branches"
    ]


def test_forever_needs_an_action_in_each_pass_even_through_plays() -> None:
    found = problems(
        main="steps:\n  - repeat: forever\n    steps:\n      - sleep: 1\n      - play: nap\n",
        nap="steps:\n  - sleep: 2\n",
    )
    assert found["main"] == [
        "s/main.yaml:2:5: steps.0: the repeated steps never send a frame, wait or "
        "disconnect, so repeating them forever would hang the server; expected a frame, a "
        "wait or a disconnect among the repeated steps, found only sleeps and plays of such "
        "steps"
    ]


def test_forever_with_a_frame_in_each_pass_is_fine_and_a_player_of_a_refused_one_is_not() -> None:
    found = problems(
        ticker="steps:\n  - repeat: forever\n    steps:\n      - chunk: tick\n        delay: 1\n",
        heavy="steps:\n  - repeat: 1000000\n    steps:\n      - chunk: a\n      - chunk: b\n",
        player="steps:\n  - play: heavy\n",
    )
    assert found["ticker"] == []
    assert "too many steps" in found["heavy"][0]
    assert found["player"][0].startswith("s/player.yaml:2:5: steps.0: a run would play too many")


def test_shipped_scenarios_are_well_within_the_limits() -> None:
    from tests.conftest import SHIPPED

    catalog = Catalog.resolve(
        parse_scenario(path.read_bytes(), str(path)) for path in sorted(SHIPPED.glob("[!_]*.yaml"))
    )
    costs = budget.costs({f.name: f.scenario for f in catalog if f.scenario is not None})
    assert costs
    for name, cost in costs.items():
        assert cost.silent <= 10, name
        assert cost.branches <= 10, name


# --- the arithmetic, against a brute-force expansion ------------------------------------

# A block is a list of items: "A" (a step that acts), "S" (a sleep), or (count, block).
_BLOCKS = st.recursive(
    st.lists(st.sampled_from(["A", "S"]), min_size=1, max_size=4),
    lambda inner: st.lists(
        st.one_of(st.sampled_from(["A", "S"]), st.tuples(st.integers(0, 4), inner)),
        min_size=1,
        max_size=4,
    ),
    max_leaves=12,
)


def _cost(block: list[Any]) -> Cost:
    total = Cost()
    for item in block:
        if item == "A":
            total = total.then(budget.ACTION)
        elif item == "S":
            total = total.then(budget.SILENCE)
        else:
            count, inner = item
            total = total.then(_cost(inner).times(count))
    return total


def _expand(block: list[Any]) -> list[str]:
    out: list[str] = []
    for item in block:
        if isinstance(item, str):
            out.append(item)
        else:
            count, inner = item
            out.extend(_expand(inner) * count)
    return out


@hypothesis.settings(deadline=None)  # a busy machine may take more than 200 ms an example
@hypothesis.given(_BLOCKS)
def test_property_counts_equal_the_played_steps(block: list[Any]) -> None:
    played = _expand(block)
    longest = run = 0
    for item in played:
        run = run + 1 if item == "S" else 0
        longest = max(longest, run)
    cost = _cost(block)
    assert cost.steps == len(played)
    assert cost.silent == longest
    assert cost.acts == ("A" in played)


# --- choose, let, set, wait_connect ---------------------------------------------------------


def test_let_set_and_wait_connect_count_as_steps_without_a_frame() -> None:
    found = problems(
        lets="steps:\n  - chunk: a\n  - repeat: 1001\n    steps:\n      - let: {x: 1}\n",
        sets="steps:\n  - repeat: forever\n    steps:\n      - set: {x: 1}\n      - sleep: 1\n",
        connects="steps:\n  - repeat: forever\n    steps:\n      - wait_connect: any\n",
    )
    assert found["lets"] == [
        "s/lets.yaml:3:5: steps.1: a run would play too many steps in a row without sending "
        "a frame, waiting or disconnecting (repeats multiply the steps they repeat), and the "
        "server could answer nothing meanwhile: put a frame or a wait among the repeated "
        "steps, or repeat fewer times; expected at most 1,000 such steps in a row, found "
        "1,001 steps"
    ]
    for name in ("sets", "connects"):
        [problem] = found[name]
        assert "the repeated steps never send a frame, wait or disconnect" in problem


def test_choose_counts_its_costliest_branch_located_inside_it() -> None:
    found = problems(
        main="steps:\n"
        "  - choose:\n"
        "      - when: 'true'\n"
        "        steps: [{chunk: a}]\n"
        "      - otherwise:\n"
        "          - repeat: 1000\n"
        "            steps:\n"
        "              - repeat: 1001\n"
        "                steps: [{chunk: b}]\n"
    )
    assert found["main"] == [
        "s/main.yaml:6:13: steps.0.choose.1.otherwise.0: a run would play too many steps "
        "(repeats multiply the steps they repeat); expected at most 1,000,000 steps in a "
        "run, found 1,002,001 steps"
    ]
    loaded = parse_scenario(
        "steps:\n"
        "  - choose:\n"
        "      - when: x\n"
        "        steps: [{chunk: a}, {chunk: b}]\n"
        "      - otherwise: [{chunk: c}]\n",
        "s/c.yaml",
    )
    assert loaded.scenario is not None
    cheap = budget.costs({"c": loaded.scenario})["c"]
    assert cheap.steps == 3  # the choose, then its longest branch


def test_a_forever_loop_that_polls_the_state_with_a_choose_is_allowed() -> None:
    found = problems(
        poll="steps:\n"
        "  - repeat: forever\n"
        "    steps:\n"
        "      - sleep: 1s\n"
        "      - choose:\n"
        "          - when: state.go is defined\n"
        "            steps: [{chunk: go}]\n"
    )
    assert found["poll"] == []


def test_silence_runs_through_a_choice_that_may_send_nothing() -> None:
    found = problems(
        main="steps:\n"
        "  - chunk: a\n"
        "  - repeat: 600\n"
        "    steps: [{sleep: 0}]\n"
        "  - choose:\n"
        "      - when: 'true'\n"
        "        steps:\n"
        "          - repeat: 600\n"
        "            steps: [{sleep: 0}]\n"
        "      - otherwise: [{chunk: b}]\n"
    )
    # The choose hands control back before its branch: the two stretches never join.
    assert found["main"] == []
    longer = problems(
        main="steps:\n"
        "  - chunk: a\n"
        "  - choose:\n"
        "      - when: 'true'\n"
        "        steps:\n"
        "          - repeat: 600\n"
        "            steps: [{sleep: 0}]\n"
        "  - repeat: 600\n"
        "    steps: [{sleep: 0}]\n"
    )
    [problem] = longer["main"]
    assert "s/main.yaml:8:5: steps.2: a run would play too many steps in a row" in problem


@hypothesis.settings(deadline=None)
@hypothesis.given(_BLOCKS, _BLOCKS, _BLOCKS, _BLOCKS, st.integers(0, 3))
def test_property_either_bounds_both_choices(
    before: list[Any], first: list[Any], second: list[Any], after: list[Any], count: int
) -> None:
    either = _cost(before).then(_cost(first).either(_cost(second))).then(_cost(after))
    for chosen in (first, second):
        played = _cost([(count, [*before, *chosen, *after])])
        bound = either.times(count)
        assert bound.steps >= played.steps
        assert bound.silent >= played.silent
    assert either.steps == max(_cost([*before, *b, *after]).steps for b in (first, second))
