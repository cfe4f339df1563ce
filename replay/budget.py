"""The work a scenario can make a run do, counted before it plays, and its limits.

A scenario file is small, but ``repeat`` multiplies and ``play``/``parallel`` fan out, so a
few lines can ask for a billion steps, or for a million steps in a row that send nothing
(nested repeats around a ``sleep``): the engine plays such a stretch without once handing
control back, and the server would stop answering. :func:`budget_problems` counts, for
every scenario of a catalog, without playing it:

- ``steps``: how many steps a run plays in all (a repeat's steps once per pass, a played
  scenario's steps where it is played); at most :data:`MAX_STEPS`, and at most that many
  per pass of a ``repeat: forever``;
- ``silent``: the most steps played in a row with no frame, wait or disconnect between
  them (only those hand control back to the server); at most :data:`MAX_SILENT`. ``let``,
  ``set`` and ``wait_connect`` count as such steps (a ``wait_connect`` can be over at once,
  and ``set`` sends nothing); a ``choose`` hands control back when it plays, then counts
  as the costliest of its branches;
- ``branches``: the most ``parallel`` branches alive at once; at most :data:`MAX_BRANCHES`.

A scenario over a limit is invalid, with a problem located on the step that takes it
over, so ``replay validate`` refuses it before it can play.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from replay.scenario import (
    ChooseStep,
    LetStep,
    ParallelStep,
    PlayStep,
    RepeatStep,
    Scenario,
    SetStep,
    SleepStep,
    WaitConnectStep,
)

#: Steps one run may play in all (per pass, for ``repeat: forever``).
MAX_STEPS = 1_000_000
#: Steps one run may play in a row without a frame, a wait or a disconnect.
MAX_SILENT = 1_000
#: ``parallel`` branches one run may have playing at once.
MAX_BRANCHES = 1_000

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Cost:
    """What playing a list of steps costs (see the module's docstring).

    ``lead`` and ``trail`` are the silent steps before the first and after the last
    action, so that silent stretches add up across steps and passes; ``acts`` is whether
    the steps do anything that hands control back (for a step that never does, ``lead``
    and ``trail`` are all of its steps).
    """

    steps: float = 0
    acts: bool = False
    lead: float = 0
    trail: float = 0
    silent: float = 0
    branches: int = 0

    def then(self, other: Cost) -> Cost:
        """These steps, then ``other``."""
        return Cost(
            steps=self.steps + other.steps,
            acts=self.acts or other.acts,
            lead=self.lead if self.acts else self.lead + other.lead,
            trail=other.trail if other.acts else self.trail + other.trail,
            silent=max(self.silent, other.silent, self.trail + other.lead),
            branches=max(self.branches, other.branches),
        )

    def either(self, other: Cost) -> Cost:
        """These steps or ``other``, whichever turns out to be played: the worst of both."""
        return Cost(
            steps=max(self.steps, other.steps),
            acts=self.acts and other.acts,
            lead=max(self.lead, other.lead),
            trail=max(self.trail, other.trail),
            silent=max(self.silent, other.silent),
            branches=max(self.branches, other.branches),
        )

    def times(self, count: float) -> Cost:
        """These steps, ``count`` times in a row (``math.inf``: forever)."""
        if count <= 0:
            return Cost()
        if not self.acts:
            silent = self.silent * count
            return Cost(self.steps * count, False, silent, silent, silent, self.branches)
        seam = self.trail + self.lead if count > 1 else 0
        return Cost(
            self.steps * count,
            True,
            self.lead,
            self.trail,
            max(self.silent, seam),
            self.branches,
        )


#: One step that hands control back (a frame, a wait, a disconnect...).
ACTION = Cost(steps=1, acts=True)
#: One step that does not (``sleep``): it only moves the clock of the run forward.
SILENCE = Cost(steps=1, lead=1, trail=1, silent=1)
#: A step that only plays other steps (``play``, ``repeat``): they say what it costs.
CONTROL = Cost(steps=1)


@dataclass(frozen=True)
class Excess:
    """A limit a scenario goes over: where, which, and by how much."""

    path: Path
    message: str
    expected: str
    found: str


def scenario_cost(scenario: Scenario, played: Callable[[str], Cost]) -> Cost:
    """The cost of playing ``scenario``; ``played(name)`` gives another scenario's."""
    return _steps_cost(scenario.steps, played)


def check(scenario: Scenario, played: Callable[[str], Cost]) -> list[Excess]:
    """Every limit ``scenario`` goes over, each located on the step that takes it over."""
    found: list[Excess] = []
    _check_steps(scenario.steps, ("steps",), played, found)
    return found


def _steps_cost(steps: Sequence[Any], played: Callable[[str], Cost]) -> Cost:
    total = Cost()
    for step in steps:
        total = total.then(_step_cost(step, played))
    return total


def _step_cost(step: Any, played: Callable[[str], Cost]) -> Cost:
    match step:
        case SleepStep() | LetStep() | SetStep() | WaitConnectStep():
            return SILENCE
        case ChooseStep():
            # The engine hands control back before it weighs the conditions (see
            # replay.engine.Due); then one branch plays, or none without 'otherwise'.
            chosen = Cost() if all(cond is not None for _, cond, _ in step.branches()) else None
            for _, _, steps in step.branches():
                cost = _steps_cost(steps, played)
                chosen = cost if chosen is None else chosen.either(cost)
            return ACTION.then(chosen or Cost())
        case PlayStep():
            return CONTROL.then(played(step.play))
        case ParallelStep():
            branches = [played(name) for name in step.parallel]
            # Forking hands control back; then each branch plays on its own.
            return Cost(
                steps=1 + sum(branch.steps for branch in branches),
                acts=True,
                silent=max(branch.silent for branch in branches),
                branches=sum(1 + branch.branches for branch in branches),
            )
        case RepeatStep():
            count = math.inf if step.repeat == "forever" else step.repeat
            return CONTROL.then(_steps_cost(step.steps, played).times(count))
    return ACTION


def _check_steps(
    steps: Sequence[Any], prefix: Path, played: Callable[[str], Cost], found: list[Excess]
) -> None:
    total = Cost()
    for index, step in enumerate(steps):
        path = (*prefix, index)
        cost = _step_cost(step, played)
        before = len(found)
        if isinstance(step, RepeatStep):
            _check_repeat(step, path, played, found)
        elif isinstance(step, ChooseStep):
            for branch, _, inner in step.branches():
                _check_steps(inner, (*path, *branch), played, found)
        if len(found) > before:
            return  # the innermost step over a limit says it best
        total = total.then(cost)
        excess = _over(total, cost, step)
        if excess is not None:
            found.append(Excess(path, *excess))
            return


def _check_repeat(
    step: RepeatStep, path: Path, played: Callable[[str], Cost], found: list[Excess]
) -> None:
    body = _steps_cost(step.steps, played)
    if step.repeat == "forever" and not body.acts:
        found.append(
            Excess(
                path,
                "the repeated steps never send a frame, wait or disconnect, so repeating "
                "them forever would hang the server",
                "a frame, a wait or a disconnect among the repeated steps",
                "only sleeps and plays of such steps",
            )
        )
        return
    if step.repeat == "forever" and body.steps > MAX_STEPS:
        found.append(
            Excess(
                path,
                "one pass of this repeat plays too many steps",
                f"at most {MAX_STEPS:,} steps per pass",
                f"{body.steps:,.0f} steps",
            )
        )
        return
    _check_steps(step.steps, (*path, "steps"), played, found)


def _over(total: Cost, cost: Cost, step: Any) -> tuple[str, str, str] | None:
    """Which limit ``total`` (the steps so far) goes over, if any, as message parts."""
    if math.isfinite(total.steps) and total.steps > MAX_STEPS:
        return (
            f"a run would play too many steps{_how(step)}",
            f"at most {MAX_STEPS:,} steps in a run",
            f"{total.steps:,.0f} steps",
        )
    if total.silent > MAX_SILENT:
        found = "forever" if math.isinf(total.silent) else f"{total.silent:,.0f} steps"
        return (
            "a run would play too many steps in a row without sending a frame, waiting or "
            f"disconnecting{_how(step)}, and the server could answer nothing meanwhile: put "
            "a frame or a wait among the repeated steps, or repeat fewer times",
            f"at most {MAX_SILENT:,} such steps in a row",
            found,
        )
    if total.branches > MAX_BRANCHES:
        return (
            "a run would have too many parallel branches playing at once (branches of "
            "nested parallel steps count too)",
            f"at most {MAX_BRANCHES:,} branches",
            f"{total.branches:,} branches",
        )
    return None


def _how(step: Any) -> str:
    match step:
        case RepeatStep():
            return " (repeats multiply the steps they repeat)"
        case ChooseStep():
            return " (counting its costliest branch)"
        case PlayStep() | ParallelStep():
            return " (counting the steps of the scenarios it plays)"
    return ""


def costs(scenarios: Mapping[str, Scenario]) -> dict[str, Cost]:
    """The cost of every scenario in ``scenarios`` (which must play no missing or cyclic
    scenario: a :class:`~replay.catalog.Catalog` checks that first)."""
    known: dict[str, Cost] = {}

    def played(name: str) -> Cost:
        if name not in known:
            scenario = scenarios.get(name)
            # An unknown target is another problem, reported elsewhere; it costs nothing.
            known[name] = Cost() if scenario is None else scenario_cost(scenario, played)
        return known[name]

    for name in scenarios:
        played(name)
    return known
