"""Every error replay raises on purpose derives from :class:`ReplayError`.

Errors carry their data as attributes and build their own message from it, so the
message a user reads and the data a program inspects can never disagree.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to ``word``, or None when nothing is close enough to suggest.

    Case and the separators ``-``, ``_``, space and ``.`` do not count (``chat`` finds
    ``CHAT``, ``wait-connect`` finds ``wait_connect``), and a typo still finds its word
    (``mesage`` finds ``message``). An exact match after folding wins over a close one.
    """
    folded: dict[str, str] = {}
    for choice in choices:
        folded.setdefault(_fold(choice), choice)
    key = _fold(word)
    if key in folded:
        return folded[key]
    matches = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[matches[0]] if matches else None


def _fold(word: str) -> str:
    """``word`` as :func:`nearest` compares it: lower case, one kind of separator."""
    return re.sub(r"[-_ .]+", "_", str(word).casefold())


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` or the empty string."""
    match = nearest(word, choices)
    return f" (did you mean {match!r}?)" if match else ""


class ReplayError(Exception):
    """Base class of every error replay raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario file, located as precisely as the file allows.

    ``line`` and ``column`` are 1-based; 0 means the problem concerns the whole file.
    ``field`` is a dotted path into the document (``steps.2.message``), empty for the file.
    """

    file: str
    line: int
    column: int
    field: str
    message: str
    expected: str = ""
    found: str = ""

    @property
    def location(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file

    def __str__(self) -> str:
        where = f"{self.location}: " + (f"{self.field}: " if self.field else "")
        text = where + self.message
        if self.expected:
            text += f"; expected {self.expected}"
        if self.found:
            text += f", found {self.found}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "expected": self.expected,
            "found": self.found,
            "text": str(self),
        }


def in_file_order(*groups: Iterable[Problem]) -> tuple[Problem, ...]:
    """The problems of one file, from several sources, sorted by line and column."""
    return tuple(sorted((p for group in groups for p in group), key=lambda p: (p.line, p.column)))


class ScenarioInvalid(ReplayError):
    """A scenario file that cannot be played; ``problems`` lists everything wrong with it."""

    def __init__(self, name: str, problems: Sequence[Problem]) -> None:
        self.name = name
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(
            f"scenario {name!r} is invalid ({count} problem{'s' if count != 1 else ''}):\n{lines}"
        )


class PatternRefused(ReplayError):
    """A regular expression replay will not search client text with.

    ``reason`` says why and, where there is one, what to write instead; ``expected`` says
    what replay accepts; ``found`` is what was found, when that says more than the pattern
    itself (empty otherwise).
    """

    def __init__(self, pattern: str, reason: str, expected: str, found: str = "") -> None:
        self.pattern = pattern
        self.reason = reason
        self.expected = expected
        self.found = found
        shown = pattern if len(pattern) <= 60 else pattern[:57] + "..."
        super().__init__(f"pattern {shown!r}: {reason}; expected {expected}")


class ScenarioNotFound(ReplayError):
    """No scenario of that name exists; ``known`` lists the names that do."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        names = ", ".join(self.known) if self.known else "none"
        super().__init__(
            f"no scenario named {name!r}{did_you_mean(name, self.known)}; known scenarios: {names}"
        )


class ScenarioFolderMissing(ReplayError):
    """The scenarios folder does not exist (or cannot be listed: ``reason`` says why)."""

    def __init__(self, folder: str, reason: str = "") -> None:
        self.folder = folder
        self.reason = reason
        what = f"cannot be read ({reason})" if reason else "does not exist"
        super().__init__(f"scenarios folder {folder!r} {what}: create it, or pass --scenarios DIR")


class RunNotFound(ReplayError):
    """No run with that id is known (it never existed or was forgotten)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run with id {run_id!r}; GET /runs lists the known runs")


class RunControlRefused(ReplayError):
    """A run cannot be paused, resumed, stepped or sped up now (it has ended, or waits for
    a client, or plays at speed 0); the message says why and what to do."""

    def __init__(self, run_id: str, reason: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id}: {reason}")


class ServerUnavailable(ReplayError):
    """The CLI could not reach a replay server."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"no replay server answers at {url} ({reason}); start one with 'replay serve' "
            "or pass --url"
        )


class ServerRefused(ReplayError):
    """The server answered, but refused the request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class StepFailed(ReplayError):
    """A step could not be played; the run that played it fails with this message.

    ``scenario`` and ``step`` say where: ``step`` is the step's path in that scenario's
    ``steps`` ("2", or "2.steps.0" inside a repeat), empty when no one step is to blame.
    """

    def __init__(self, scenario: str, step: str, reason: str) -> None:
        self.scenario = scenario
        self.step = step
        self.reason = reason
        where = f"scenario {scenario!r}" + (f", step {step}" if step else "")
        super().__init__(f"{where}: {reason}")


class VariablesInvalid(ReplayError):
    """A trigger passed variables the scenario does not declare, or that are not plain JSON."""

    def __init__(self, scenario: str, unknown: Iterable[str], declared: Iterable[str]) -> None:
        self.scenario = scenario
        self.unknown = tuple(unknown)
        self.declared = tuple(sorted(declared))
        hints = "".join(did_you_mean(name, self.declared) for name in self.unknown[:1])
        names = ", ".join(self.declared) if self.declared else "none"
        super().__init__(
            f"scenario {scenario!r} declares no variable "
            + ", ".join(repr(name) for name in self.unknown)
            + f"{hints}; it declares: {names} (add it under 'vars:' in the file)"
        )


class TemplateFailed(ReplayError):
    """A template could not be rendered (an undefined name, a forbidden operation, ...)."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        shown = source if len(source) <= 80 else source[:77] + "..."
        super().__init__(f"template {shown!r} failed: {reason}")


class TooManyRuns(ReplayError):
    """A share of runs is full: the run was not started.

    ``share`` is whose runs: ``"trigger"`` (POST /trigger), ``"clients"`` (reactions and
    on-connect runs, all clients together) or ``"client"`` (those of ``client`` alone).
    """

    def __init__(self, limit: int, share: str = "trigger", client: str | None = None) -> None:
        self.limit = limit
        self.share = share
        self.client = client
        if share == "client":
            what = f"client {client} already has {limit} runs (reactions, on-connect) playing"
        elif share == "clients":
            what = f"already {limit} runs started by clients (reactions, on-connect) playing"
        else:
            what = f"already {limit} triggered runs playing"
        super().__init__(
            f"{what} at once; wait for some to end or cancel them (DELETE /runs/{{id}})"
        )


class PathRefused(ReplayError):
    """A declared route's path that is not one (see :mod:`replay.paths`): ``reason`` says
    why, ``expected`` what a path may be."""

    def __init__(self, path: str, reason: str, expected: str) -> None:
        self.path = path
        self.reason = reason
        self.expected = expected
        super().__init__(f"path {path!r}: {reason}; expected {expected}")


class BackplaneInvalid(ReplayError):
    """A ``--backplane`` URL that names no backplane."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"the backplane {url} cannot be used: {reason}")


class BackplaneUnreachable(ReplayError):
    """The cluster's backplane cannot carry a trigger now (HTTP 503)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"the backplane {url} is unreachable: {reason}; triggers come back when it does"
        )


class StartTooLarge(ReplayError):
    """A triggered scenario's sources are too large to send to the cluster (HTTP 413)."""

    def __init__(self, scenario: str, size: int, limit: int) -> None:
        self.scenario = scenario
        self.size = size
        self.limit = limit
        super().__init__(
            f"scenario {scenario!r} and the scenarios it plays are {size} bytes, more than "
            f"the {limit} bytes a cluster's start command carries; split it, or serve it "
            "without --backplane"
        )
