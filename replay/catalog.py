"""A set of loaded scenario files, checked against each other.

A scenario that plays a missing scenario, an invalid one, or itself through a chain of
``play``/``parallel`` steps is invalid, with a located problem on the step that does it.
Every other scenario stays playable: one broken file never takes the others down.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from replay import budget
from replay.errors import (
    Problem,
    ScenarioInvalid,
    ScenarioNotFound,
    did_you_mean,
    in_file_order,
)
from replay.loader import ScenarioFile
from replay.protocol.declaration import Protocol
from replay.protocol.file import ProtocolFile
from replay.protocol.schwarm import SCHWARM
from replay.scenario import Scenario


@dataclass(frozen=True)
class Catalog:
    """Scenario files by name, with cross-file problems (missing targets, cycles) added."""

    files: Mapping[str, ScenarioFile]
    #: The project's protocol file, if the folder has one.
    protocol_file: ProtocolFile | None = None
    #: What playing each valid scenario costs (see :mod:`replay.budget`), by name.
    costs: Mapping[str, budget.Cost] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls, files: Iterable[ScenarioFile], protocol: ProtocolFile | None = None
    ) -> Catalog:
        """Check every file's references against the others and build the catalog."""
        by_name = {loaded.name: loaded for loaded in files}
        _prepare(by_name.values())
        extra = _link_problems(by_name)
        costs, over = _budget_problems(by_name, extra)
        for name, problems in over.items():
            extra.setdefault(name, []).extend(problems)
        checked = {
            name: replace(loaded, problems=in_file_order(loaded.problems, extra.get(name, [])))
            for name, loaded in sorted(by_name.items())
        }
        return cls(checked, protocol, {name: costs[name] for name in costs if name not in over})

    @property
    def protocol(self) -> Protocol:
        """What the scenarios speak: the protocol file's declaration, else Schwarm's."""
        return self.protocol_file.protocol if self.protocol_file else SCHWARM

    def __iter__(self) -> Iterator[ScenarioFile]:
        return iter(self.files.values())

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, name: object) -> bool:
        return name in self.files

    @property
    def names(self) -> list[str]:
        return list(self.files)

    def file(self, name: str) -> ScenarioFile:
        """The loaded file of that name; raises :class:`ScenarioNotFound`."""
        try:
            return self.files[name]
        except KeyError:
            raise ScenarioNotFound(name, self.files) from None

    def scenario(self, name: str) -> Scenario:
        """The playable scenario of that name; raises ScenarioNotFound or ScenarioInvalid."""
        loaded = self.file(name)
        if loaded.scenario is None or loaded.problems:
            raise ScenarioInvalid(name, loaded.problems)
        return loaded.scenario


def _prepare(files: Iterable[ScenarioFile]) -> None:
    """Work out what a run asks of each file as it starts and as it plays it (its waits,
    its ``let`` names: see :class:`~replay.scenario.Scenario`), once per version of the
    file. Here, where the files are read (off the event loop, in a server), and not when
    a run starts: a converted recording has tens of thousands of steps."""
    for loaded in files:
        if loaded.scenario is not None:
            loaded.scenario.awaits  # noqa: B018 (a cached property: computed, then kept)
            loaded.scenario.bound_names()


def _link_problems(files: Mapping[str, ScenarioFile]) -> dict[str, list[Problem]]:
    problems: dict[str, list[Problem]] = {}
    broken = {name for name, f in files.items() if not f.valid}

    def add(name: str, path: tuple[str | int, ...], message: str) -> None:
        problems.setdefault(name, []).append(files[name].problem(path, message))
        broken.add(name)

    for name, loaded in files.items():
        for path, target in loaded.plays:
            if target not in files:
                add(
                    name,
                    path,
                    f"plays {target!r}, which does not exist" + did_you_mean(target, files),
                )
        cycle = _cycle_through(name, files)
        if cycle:
            path = next(path for path, target in loaded.plays if target == cycle[1])
            add(name, path, "plays itself: " + " -> ".join(cycle))

    # A scenario that plays a broken one cannot play either; repeat until nothing changes,
    # so that a -> b -> broken marks both a and b.
    changed = True
    while changed:
        changed = False
        for name, loaded in files.items():
            if name in broken:
                continue
            for path, target in loaded.plays:
                if target in broken and target in files:
                    add(name, path, f"plays {target!r}, which is invalid")
                    changed = True
                    break
    return problems


def _budget_problems(
    files: Mapping[str, ScenarioFile], known: Mapping[str, list[Problem]]
) -> tuple[dict[str, budget.Cost], dict[str, list[Problem]]]:
    """What each playable scenario costs, and those that would make a run do too much
    (see :mod:`replay.budget`)."""
    playable = {
        name: loaded.scenario
        for name, loaded in files.items()
        if loaded.valid and loaded.scenario is not None and name not in known
    }
    problems: dict[str, list[Problem]] = {}
    try:
        found = budget.costs(playable)
    except RecursionError:
        # Thousands of files each playing the next: too deep to count, so too deep to play.
        message = "scenarios play each other too deeply to be counted"
        return {}, {name: [files[name].problem((), message)] for name in playable}
    for name, scenario in playable.items():
        for excess in budget.check(scenario, found.__getitem__):
            problem = files[name].problem(excess.path, excess.message, excess.expected)
            problems.setdefault(name, []).append(replace(problem, found=excess.found))
    return found, problems


def _cycle_through(start: str, files: Mapping[str, ScenarioFile]) -> list[str] | None:
    """The chain start -> ... -> start if one exists, else None (depth-first search)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, chain = stack.pop()
        loaded = files.get(name)
        if loaded is None:
            continue
        for _, target in loaded.plays:
            if target == start:
                return [*chain, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*chain, target]))
    return None
