"""Scenario files to :class:`~replay.scenario.Scenario` models, with located errors.

The loader does no I/O: it takes the file's bytes and its name and returns a
:class:`ScenarioFile` holding either the scenario or every problem found, each with file,
line, column, field, what was expected and what was found. It never raises for bad input.

YAML is read with PyYAML's safe loader, and the document is built from its node tree by
hand so that every value keeps its position and so that duplicate keys (which PyYAML
accepts silently, keeping the last) are reported instead of losing a step.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from replay import templates
from replay.errors import Problem, did_you_mean, in_file_order, nearest
from replay.freeing import PIECE, Other, free
from replay.scenario import (
    BRANCH_TAGS,
    NAME_PATTERN,
    NAME_RULE,
    STEP_KINDS,
    ClientFrameMatch,
    MessageStep,
    OtherwiseBranch,
    Scenario,
    SetStep,
    WhenBranch,
    step_kind,
)
from replay.syntax import yaml_problem

if TYPE_CHECKING:
    from replay.protocol.declaration import Protocol

#: Scenario files larger than this are refused before parsing.
MAX_FILE_BYTES = 1024 * 1024
#: Values a document may expand to (aliases count each time they are used), so that a
#: "billion laughs" file is refused instead of eating the memory.
MAX_VALUES = 100_000
#: How deep mappings and lists may nest.
MAX_DEPTH = 32
#: Top-level keys with this prefix are ignored (a place to define anchors, as in Compose).
EXTENSION = "x-"

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ScenarioFile:
    """One scenario file after loading: the scenario, or the problems that prevent it."""

    name: str
    file: str
    scenario: Scenario | None
    problems: tuple[Problem, ...] = ()
    locations: Mapping[Path, tuple[int, int]] = field(default_factory=dict, repr=False)
    #: ``(path, name)`` of every scenario the file plays, read even from an invalid file
    #: so that a missing target is reported along with the file's other problems.
    plays: tuple[tuple[Path, str], ...] = ()

    @property
    def valid(self) -> bool:
        return self.scenario is not None and not self.problems

    def locate(self, path: Path) -> tuple[int, int]:
        """Line and column of the value at ``path``, or of its nearest located parent."""
        while path not in self.locations and path:
            path = path[:-1]
        return self.locations.get(path, (0, 0))

    def problem(self, path: Path, message: str, expected: str = "", found: str = "") -> Problem:
        """A problem located at ``path`` in this file."""
        line, column = self.locate(path)
        return Problem(self.file, line, column, _dotted(path), message, expected, found)


class _Refused(Exception):
    """Internal: the document cannot be built; carries the problem."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def scenario_name(file: str) -> str:
    """A scenario's name: its file's stem (``scenarios/all.yaml`` -> ``all``)."""
    return PurePath(file).stem


def parse_scenario(
    source: bytes | str, file: str, protocol: Protocol | None = None
) -> ScenarioFile:
    """Load one scenario file's content. Never raises for bad content: see ``problems``.

    ``file`` is used in every problem's location and gives the scenario its name;
    ``protocol`` is what the scenario speaks (Schwarm's when None).
    References to other scenarios (``play``, ``parallel``) are not checked here; a
    :class:`~replay.catalog.Catalog` checks them against the other files.
    """
    try:
        with without_cycle_collection():
            return _parse_scenario(source, file, protocol or _schwarm())
    except Exception as error:
        # Whatever the content, one file's failure stays that file's problem.
        return ScenarioFile(scenario_name(file), file, None, (unexpected(file, error),))


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """No cyclic garbage collection in the block (when it was on, it is on again after).
    A loading document is a tree of new containers, none of them in a cycle, and the
    cycle collector would only walk it again and again as it grows: more than half of
    the time a long file took to load. Reference counting frees garbage as always."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def unexpected(file: str, error: BaseException) -> Problem:
    """The problem of a file whose reading failed in a way replay did not foresee."""
    return Problem(
        file,
        0,
        0,
        "",
        f"replay could not read this file ({_reason(error)}); this is a bug in replay, "
        "please report it with the file",
    )


def _schwarm() -> Protocol:
    from replay.protocol.schwarm import SCHWARM  # the declarations import this module

    return SCHWARM


def _parse_scenario(source: bytes | str, file: str, protocol: Protocol) -> ScenarioFile:
    name = scenario_name(file)
    try:
        text = _decode(source, file)
        data, locations = _compose(text, file)
    except _Refused as refused:
        return ScenarioFile(name, file, None, (refused.problem,))
    document = data.value if isinstance(data, _Duplicates) else data
    try:
        return _validated(name, file, data, locations, protocol)
    finally:
        # What was only needed while the file loaded: the document (the models hold what
        # they keep of it) and the position of every value in it. A long file's are
        # hundreds of thousands of objects, freed a piece at a time so that other
        # threads (the event loop) get the interpreter meanwhile.
        free(document)
        free(locations)


def _validated(
    name: str, file: str, data: Any, locations: dict[Path, tuple[int, int]], protocol: Protocol
) -> ScenarioFile:
    """The scenario of a composed document, or its problems."""
    empty = ScenarioFile(name, file, None)
    plays = _plays(data.value if isinstance(data, _Duplicates) else data)
    loaded = ScenarioFile(name, file, None, (), locations, plays)
    problems: list[Problem] = []
    if not NAME_PATTERN.match(name):
        problems.append(
            Problem(file, 0, 0, "", f"{name!r} is not a valid scenario name", NAME_RULE, name)
        )
    if data is None:
        problems.append(
            empty.problem(
                (), "the file is empty", "a mapping with 'steps' (and optionally 'description')"
            )
        )
        return ScenarioFile(name, file, None, tuple(problems), dict(locations))
    if isinstance(data, _Duplicates):
        problems.extend(loaded.problem(path, message) for path, message in data.found)
        data = data.value
    if isinstance(data, dict):
        # Top-level "x-..." keys are the file's own: a place for YAML anchors to merge.
        data = {key: value for key, value in data.items() if not key.startswith(EXTENSION)}
    try:
        context = {"message_types": protocol.descriptions, "protocol": protocol}
        scenario = Scenario.model_validate(data, context=context)
    except ValidationError as error:
        ordered = in_file_order(problems, explain(loaded, error, data))
        return ScenarioFile(name, file, None, ordered, _structure(locations), plays)
    problems.extend(_template_problems(loaded, scenario, protocol))
    problems.extend(_payload_problems(loaded, scenario, protocol))
    return ScenarioFile(name, file, scenario, in_file_order(problems), _structure(locations), plays)


#: Fields whose values are data, not steps: what is under them is located only while
#: the file loads.
_DATA_FIELDS = frozenset({"data", "envelope", "vars", "fields", "let", "set", "match"})


def _structure(locations: dict[Path, tuple[int, int]]) -> dict[Path, tuple[int, int]]:
    """The locations a loaded file keeps: the top level, the steps and branches, and
    what ``play`` and ``parallel`` name (where the catalog and the budget locate what
    they find later). The locations of every value in the steps were needed while the
    file loaded, and are half the memory a long file takes; a path asked for later is
    located at its nearest kept parent (:meth:`ScenarioFile.locate`)."""
    return {
        path: where
        for path, where in locations.items()
        if len(path) <= 1
        or (
            (isinstance(path[-1], int) or path[-1] in ("play", "parallel"))
            and not any(part in _DATA_FIELDS for part in path[1:-1])
        )
    }


def _payload_problems(
    loaded: ScenarioFile, scenario: Scenario, protocol: Protocol
) -> list[Problem]:
    """Payloads that fail their message type's schema, located at the value that fails.

    Templates are rendered only when the step plays (and checked again then): here a
    problem is reported unless it is about a value a template makes."""
    from replay.protocol.payloads import payload_problems

    found = []
    for path, step in scenario.frame_steps():
        if not isinstance(step, MessageStep):
            continue
        declared = protocol.message_types.get(step.message)
        if declared is None or declared.schema_ is None:
            continue
        field_name, value = ("text", step.text) if step.text is not None else ("data", step.data)
        for inner, message in payload_problems(declared.schema_, value):
            made = _at(value, inner)
            if isinstance(made, str) and templates.is_template(made):
                continue
            at = (*path, field_name, *inner)
            expected = f"a payload the {step.message} schema accepts"
            found.append(loaded.problem(at, message, expected))
    return found


def _template_problems(
    loaded: ScenarioFile, scenario: Scenario, protocol: Protocol
) -> list[Problem]:
    # Checked here, not in the models, because 'vars' is declared beside the steps and a
    # problem is located at the exact string, however deep in 'data' it is. A name a
    # 'let' binds anywhere in the file counts as declared.
    declared = {*scenario.vars, *scenario.bound_names()}
    fields = {"received": received_fields(protocol.endpoints)}
    # The state keys a template may mean: declared, or set by a route or a 'set' step.
    state = {*protocol.state, *(key for route in protocol.routes for key in route.set)}
    state |= _state_keys(scenario)
    found: dict[tuple[int, int, str], Problem] = {}
    checks = [
        *(
            (path, templates.check(text, declared, fields=fields, state=state))
            for path, text in scenario.texts()
            if templates.is_template(text)
        ),
        *(
            (path, templates.check_expression(text, declared, fields, state=state))
            for path, text in scenario.conditions()
        ),
    ]
    for path, messages in checks:
        for message in messages:
            problem = loaded.problem(path, message)
            # A template merged into several steps (<<: *anchor) is reported once.
            found.setdefault((problem.line, problem.column, message), problem)
    return list(found.values())


def _state_keys(scenario: Scenario) -> set[str]:
    """The keys the file's ``set`` steps set (state.NAME may read them)."""
    return {
        key for _, step in scenario.frame_steps() if isinstance(step, SetStep) for key in step.set
    }


def received_fields(endpoints: Mapping[str, Any]) -> frozenset[str]:
    """The fields templates may read of ``received`` under a protocol with these
    endpoints: :data:`templates.RECEIVED_FIELDS`, and what the endpoints' envelopes call
    the type and the payload (``received.event``: see ClientFrame.for_template)."""
    return templates.RECEIVED_FIELDS | {
        name
        for endpoint in endpoints.values()
        if endpoint.messages is not None
        for name in (endpoint.messages.type, endpoint.messages.payload)
    }


def read_document(source: bytes | str, file: str) -> tuple[Any, ScenarioFile]:
    """The YAML document of another kind of file (a protocol file): its data, and a
    ScenarioFile that locates paths in it and holds the problems found while reading
    (duplicate keys; or why it could not be read at all, with None as data)."""
    try:
        data, locations = _compose(_decode(source, file), file)
    except _Refused as refused:
        return None, ScenarioFile("", file, None, (refused.problem,))
    here = ScenarioFile("", file, None, (), locations)
    if isinstance(data, _Duplicates):
        found = tuple(here.problem(path, message) for path, message in data.found)
        return data.value, replace(here, problems=found)
    return data, here


def describe(value: Any) -> str:
    """How a found value is shown in a problem: short, and with its type when it helps."""
    return _describe(value)


def too_large(file: str, size: int) -> Problem:
    """The problem of a file over :data:`MAX_FILE_BYTES`."""
    return Problem(
        file, 0, 0, "", "the file is too large", f"at most {MAX_FILE_BYTES} bytes", f"{size} bytes"
    )


def _plays(data: Any) -> tuple[tuple[Path, str], ...]:
    steps = data.get("steps") if isinstance(data, Mapping) else None
    return tuple(_plays_in(steps, ("steps",)))


def _plays_in(steps: Any, prefix: Path) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if not isinstance(step, Mapping):
            continue
        at = (*prefix, index)
        if isinstance(step.get("play"), str):
            found.append(((*at, "play"), step["play"]))
        parallel = step.get("parallel")
        for item, name in enumerate(parallel if isinstance(parallel, list) else []):
            if isinstance(name, str):
                found.append(((*at, "parallel", item), name))
        if "repeat" in step:
            found.extend(_plays_in(step.get("steps"), (*at, "steps")))
        choose = step.get("choose")
        for branch, value in enumerate(choose if isinstance(choose, list) else []):
            for key in ("steps", "otherwise") if isinstance(value, Mapping) else ():
                found.extend(_plays_in(value.get(key), (*at, "choose", branch, key)))
    return found


def _decode(source: bytes | str, file: str) -> str:
    # surrogatepass: a str with lone surrogates is measured here and refused by YAML's reader.
    size = len(source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source)
    if size > MAX_FILE_BYTES:
        raise _Refused(too_large(file, size))
    if isinstance(source, str):
        return source
    try:
        return source.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = source[: error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        raise _Refused(
            Problem(
                file,
                line,
                column,
                "",
                "the file is not valid UTF-8",
                "UTF-8 text",
                f"byte 0x{source[error.start]:02x}",
            )
        ) from None


@dataclass
class _Duplicates:
    """The document, plus the duplicate keys found while building it."""

    value: Any
    found: list[tuple[Path, str]]


class _Builder:
    """Builds Python values from YAML nodes, recording where each value sits."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.locations: dict[Path, tuple[int, int]] = {}
        self.duplicates: list[tuple[Path, str]] = []
        self.count = 0

    def build(self, node: yaml.Node, path: Path, mark: yaml.Mark) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self._refused(
                mark,
                path,
                "the document expands to too many values (aliases count each time)",
                f"at most {MAX_VALUES} values",
                "more",
            )
        if len(path) > MAX_DEPTH:
            raise self._refused(
                mark, path, "the document nests too deeply", f"at most {MAX_DEPTH} levels", "more"
            )
        self.locations.setdefault(path, (mark.line + 1, mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(item, (*path, index), item.start_mark)
                for index, item in enumerate(node.value)
            ]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
            # Hexadecimal, octal and binary integers escape Python's limit on decimal
            # digits, and then fail wherever they are printed.
            if isinstance(value, int) and abs(value) >= _LARGEST_INTEGER:
                raise ValueError("too many digits")
            if isinstance(value, str) and not value.isascii():
                _check_unicode(value)
            return value
        except yaml.YAMLError:
            raise  # located by _compose
        except Exception as error:
            # PyYAML's constructors raise plain Python errors for values they cannot build:
            # an impossible date (2024-02-30), an integer of thousands of digits...
            raise self._refused(
                node.start_mark,
                path,
                f"cannot read this value ({_value_reason(node, error)})",
                _EXPECTED_SCALAR.get(str(node.tag), "a value YAML can read")
                + "; quote it to keep it as text",
                _describe(getattr(node, "value", "")),
            ) from None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        first_seen: dict[str, yaml.Mark] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self._merge(merged, value_node, path)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self._refused(
                    key_node.start_mark,
                    path,
                    "a key must be a plain word",
                    "a name such as 'steps'",
                    "a mapping or list used as a key",
                )
            # The key's text, not its YAML 1.1 value: `on:` is the word "on", not True.
            key = str(key_node.value)
            key_mark = key_node.start_mark
            if key in first_seen:
                where = (*path, key, "#duplicate")
                self.locations[where] = (key_mark.line + 1, key_mark.column + 1)
                self.duplicates.append(
                    (
                        where,
                        f"duplicate key {key!r} (first at line {first_seen[key].line + 1}); "
                        "YAML would keep only the last one: rename or remove one of them",
                    )
                )
                continue
            first_seen[key] = key_mark
            result[key] = self.build(value_node, (*path, key), key_mark)
        # YAML merge keys: the mapping's own keys win over merged ones.
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _refused(
        self, mark: yaml.Mark, path: Path, message: str, expected: str, found: str
    ) -> _Refused:
        """The document cannot be built: a problem at ``mark``, on the field at ``path``."""
        line, column = mark.line + 1, mark.column + 1
        return _Refused(
            Problem(self.loader.name, line, column, _dotted(path), message, expected, found)
        )

    def _merge(self, merged: dict[str, Any], node: yaml.Node, path: Path) -> None:
        """``<<: *anchor`` or ``<<: [*a, *b]``: earlier mappings win over later ones."""
        value = self.build(node, path, node.start_mark)
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(source, dict) for source in sources):
            raise self._refused(
                node.start_mark,
                path,
                "a merge key (<<) must be given a mapping or a list of mappings",
                "an alias of a mapping, such as *defaults",
                _describe(value),
            )
        for source in sources:
            for key, item in source.items():
                merged.setdefault(key, item)


_MERGE_TAG = "tag:yaml.org,2002:merge"
_LARGEST_INTEGER = 10**4000
_EXPECTED_SCALAR = {
    "tag:yaml.org,2002:timestamp": "a real date or time",
    "tag:yaml.org,2002:int": "an integer of at most 4000 digits",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:binary": "base64 text",
    "tag:yaml.org,2002:str": "valid Unicode text",
}


def _check_unicode(text: str) -> None:
    """Raise ValueError if ``text`` holds a lone surrogate (from a ``"\\ud800"`` escape):
    no UTF-8 frame can carry it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end]
        raise ValueError(
            f"{bad!r} is half of a surrogate pair; write the character itself, or both "
            "halves of the pair"
        ) from None


def _value_reason(node: yaml.Node, error: BaseException) -> str:
    if node.tag == "tag:yaml.org,2002:int" and isinstance(error, ValueError):
        return "the number has too many digits"
    return _reason(error)


def _reason(error: BaseException) -> str:
    text = str(error).split("\n")[0]
    text = text if len(text) <= 100 else text[:97] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _compose(text: str, file: str) -> tuple[Any, dict[Path, tuple[int, int]]]:
    # libyaml's parser (PyYAML's C binding) reads a file about four times faster than the
    # pure-Python one and builds the same nodes, with the same marks. A file it refuses is
    # read again by the pure-Python parser, so that every error reads as it always has.
    if _FastLoader is not None:
        try:
            return _compose_with(_FastLoader, text, file)
        except _Unreadable:
            pass
    return _compose_with(_SafeLoader, text, file)


class _Unreadable(Exception):
    """Internal: the fast parser refused the text (the pure-Python one says why)."""


def _compose_with(
    kind: type[yaml.SafeLoader], text: str, file: str
) -> tuple[Any, dict[Path, tuple[int, int]]]:
    fast = kind is not _SafeLoader
    try:
        # The reader checks the whole text for characters YAML forbids when it is built.
        loader = kind(text)
    except Exception as error:
        if fast:  # a forbidden character, a lone surrogate...
            raise _Unreadable from None
        if not isinstance(error, yaml.reader.ReaderError):
            raise
        raise _Refused(_reader_problem(error, text, file)) from None
    loader.name = file
    node = None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        builder = _Builder(loader)
        value = builder.build(node, (), node.start_mark)
    except (yaml.YAMLError, RecursionError) as error:
        if fast:
            raise _Unreadable from None
        raise _Refused(_compose_problem(error, text, file)) from None
    finally:
        loader.dispose()
        # A long file's nodes are hundreds of thousands of objects (with their marks):
        # freed a piece at a time, so that other threads get the interpreter meanwhile.
        free(loader.constructed_objects)
        if node is not None:
            free(node, _NODES)
    if builder.duplicates:
        return _Duplicates(value, builder.duplicates), builder.locations
    return value, builder.locations


def _node_parts(node: yaml.CollectionNode) -> list[yaml.Node]:
    """A mapping's or a list's nodes, detached from it (for :func:`free`)."""
    value, node.value = node.value, []
    if isinstance(node, yaml.MappingNode):
        return [part for pair in value for part in pair]
    return list(value)


def _heavy_node(node: yaml.CollectionNode) -> bool:
    """Whether a mapping's or a list's nodes are worth freeing a piece at a time."""
    value = node.value
    if len(value) > PIECE:
        return True
    parts = (
        (part for pair in value for part in pair) if isinstance(node, yaml.MappingNode) else value
    )
    return any(isinstance(part, yaml.CollectionNode) for part in parts)


_NODES = Other(yaml.CollectionNode, _node_parts, _heavy_node)


def _compose_problem(error: BaseException, text: str, file: str) -> Problem:
    """The problem of a text YAML's parser or the builder could not read."""
    if isinstance(error, yaml.MarkedYAMLError):
        return yaml_problem(error, text, file)
    if isinstance(error, yaml.YAMLError):
        return Problem(file, 0, 0, "", f"not valid YAML: {error}")
    line, column = _too_deep(text)  # a RecursionError
    return Problem(
        file,
        line,
        column,
        "",
        "the document nests too deeply",
        f"at most {MAX_DEPTH} levels",
        "more",
    )


class _Resolving(yaml.resolver.Resolver):
    """YAML's resolver, remembering the tags of short plain scalars: keys and small
    values repeat thousands of times in a long scenario, and each takes several regular
    expressions to resolve. (Only plain and quoted scalars' tags depend on the text
    alone: the safe loader has no path resolvers.)"""

    _tags: dict[tuple[str, Any], str] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode or len(value) > 40:
            return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]
        key = (value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            tag = str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]
            if len(self._tags) < 10_000:
                self._tags[key] = tag
        return tag


class _SafeLoader(_Resolving, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader (with the remembering resolver)."""


_FastLoader: type[yaml.SafeLoader] | None = None
if getattr(yaml, "__with_libyaml__", False):

    class _CSafeLoader(_Resolving, yaml.CSafeLoader):
        """libyaml's parser with PyYAML's safe constructor and the remembering resolver."""

    _FastLoader = _CSafeLoader  # type: ignore[assignment]


def _too_deep(text: str) -> tuple[int, int]:
    """Where flow brackets (``[[[...``) first nest deeper than MAX_DEPTH; (0, 0) if they
    never do (YAML's parser ran out of stack before the builder could say where)."""
    depth = 0
    line, column = 1, 0
    for char in text:
        column += 1
        if char == "\n":
            line, column = line + 1, 0
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, column
        elif char in "]}":
            depth = max(0, depth - 1)
    return 0, 0


def _reader_problem(error: yaml.reader.ReaderError, text: str, file: str) -> Problem:
    before = text[: error.position]
    line = before.count("\n") + 1
    column = error.position - (before.rfind("\n") + 1) + 1
    return Problem(
        file,
        line,
        column,
        "",
        "the file contains a character YAML does not allow",
        "printable text",
        f"character U+{error.character:04X}",
    )


def _dotted(path: Path) -> str:
    return ".".join(str(part) for part in path if part != "#duplicate")


def _strip_tags(loc: tuple[str | int, ...]) -> Path:
    """pydantic puts the union tag after a step's index (steps.0.message.text), and after
    a branch's (steps.0.choose.choose.1.when-branch.steps); drop them."""
    path: list[str | int] = []
    for index, part in enumerate(loc):
        if index >= 2 and isinstance(loc[index - 1], int):
            parent = loc[index - 2]
            if parent in ("steps", "otherwise") and part in STEP_KINDS:
                continue
            if parent == "choose" and part in BRANCH_TAGS:
                continue
        path.append(part)
    return tuple(path)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def explain(
    loaded: ScenarioFile,
    error: ValidationError,
    data: Any,
    allowed: Callable[[Path, Any], list[str]] | None = None,
) -> list[Problem]:
    """The located problems of a pydantic ``error`` raised while validating ``data`` (the
    document of ``loaded``); ``allowed(path, data)`` names the fields allowed where an
    unknown one was found (a scenario's by default)."""
    problems: list[Problem] = []
    members: dict[Path, int] = {}  # a union's problems, by path: where the first one is
    for detail in error.errors(include_url=False):
        path = _strip_tags(detail["loc"])
        member = bool(path) and _is_union_member(path[-1])
        if member:
            # pydantic reports each member of a union (data: a mapping or a list) on its
            # own, under the member's type name: one problem, expecting any of them.
            path = path[:-1]
        problem = _problem_for(loaded, path, detail, data, allowed or _allowed_fields)
        if member and path in members:
            first = problems[members[path]]
            expected = f"{first.expected} or {problem.expected}" if problem.expected else ""
            problems[members[path]] = replace(first, expected=expected or first.expected)
            continue
        if member:
            members[path] = len(problems)
        problems.append(problem)
    return problems


def _is_union_member(part: str | int) -> bool:
    """Whether a part of a pydantic error's location names a union member (``dict[str,any]``,
    ``list[any]``), not a field."""
    return isinstance(part, str) and "[" in part and part.endswith("]")


_EXPECTED_TYPES = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_from_float": "a whole number",
    "string_type": "a string",
    "float_type": "a number",
    "int_type": "an integer",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "missing field",
    "literal_error": "not an allowed value",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
}


def _problem_for(
    loaded: ScenarioFile,
    path: Path,
    detail: ErrorDetails,
    data: Any,
    allowed_fields: Callable[[Path, Any], list[str]],
) -> Problem:
    kind = detail["type"]
    value = detail.get("input")
    context: Mapping[str, Any] = detail.get("ctx") or {}
    # A validator may say where under its field the problem is (a key, a list index).
    path = (*path, *context.get("at", ()))
    field_name = str(path[-1]) if path else ""
    if kind == "step_kind":
        return _step_kind_problem(loaded, path, value)
    if kind == "branch_kind":
        return _branch_kind_problem(loaded, path, value)
    if kind == "extra_forbidden":
        allowed = allowed_fields(path, data)
        return loaded.problem(
            path,
            f"unknown field {field_name!r}{did_you_mean(field_name, allowed)}",
            "one of " + ", ".join(allowed) if allowed else "",
        )
    if kind == "missing":
        return loaded.problem(path, f"missing field {field_name!r}")
    message = _MESSAGES.get(kind) or detail["msg"].removeprefix("Value error, ")
    if kind == "literal_error" and isinstance(value, str):
        # 'Continue' for 'continue': the allowed values are in pydantic's expected text.
        message += did_you_mean(value, re.findall(r"'([^']*)'", str(context.get("expected"))))
    if kind in _EXPECTED_TYPES:
        message = "wrong type"
        if isinstance(value, bool) and kind == "string_type":
            message += " (YAML reads yes, no, on, off, true and false as booleans: quote it)"
        if kind == "list_type" and isinstance(value, Mapping):
            message += _dash_hint(value)
    expected = (
        str(context.get("expected", "")) or _EXPECTED_TYPES.get(kind, "") or _bound(kind, context)
    )
    if expected and kind in _BOUNDS:
        message = "out of range"
    scalar = not isinstance(value, Mapping | list)
    found = str(context.get("found", "")) or (_describe(value) if scalar or expected else "")
    return loaded.problem(path, message, expected, found)


def _dash_hint(value: Mapping[Any, Any]) -> str:
    """Where a list was expected and a mapping found: '-chunk: a' is a key named
    '-chunk', not a list item (YAML needs '- ')."""
    key = next((str(key) for key in value if str(key).startswith("-")), None)
    if key is None:
        return ""
    return f" (a list item needs a space after its '-': '- {key[1:]}', not '{key}')"


_BOUNDS = {
    "greater_than": "more than {gt}",
    "greater_than_equal": "at least {ge}",
    "less_than": "less than {lt}",
    "less_than_equal": "at most {le}",
}


def _bound(kind: str, context: Mapping[str, Any]) -> str:
    template = _BOUNDS.get(kind)
    try:
        return template.format(**context) if template else ""
    except (KeyError, IndexError):
        return ""


def _allowed_fields(path: Path, data: Any) -> list[str]:
    if len(path) == 1:
        return list(Scenario.model_fields)
    if path[:1] == ("reacts_to",) and len(path) == 2:
        return list(ClientFrameMatch.model_fields)
    if len(path) >= 3 and path[-3] in ("steps", "otherwise"):
        kind = step_kind(_at(data, path[:-1]))
        if kind:
            return list(STEP_KINDS[kind].model_fields)
    if len(path) >= 3 and path[-3] == "choose":
        branch = _at(data, path[:-1])
        model = OtherwiseBranch if isinstance(branch, Mapping) and "otherwise" in branch else None
        return list((model or WhenBranch).model_fields)
    return []


def _at(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _branch_kind_problem(loaded: ScenarioFile, path: Path, value: Any) -> Problem:
    expected = "{when: EXPRESSION, steps: [...]} or, last, {otherwise: [...]}"
    if not isinstance(value, Mapping):
        return loaded.problem(
            path, "a branch of a choose must be a mapping", expected, _describe(value)
        )
    if "when" in value and "otherwise" in value:
        message = "a branch has 'when' (with 'steps') or 'otherwise', not both"
        return loaded.problem(path, message, expected, "when, otherwise")
    keys = [str(key) for key in value]
    guess = next(
        (
            nearest(key, ("when", "otherwise"))
            for key in keys
            if nearest(key, ("when", "otherwise"))
        ),
        None,
    )
    hint = f" (did you mean {guess!r}?)" if guess else ""
    found = ", ".join(repr(key) for key in keys) or "an empty mapping"
    return loaded.problem(path, f"a branch needs 'when' or 'otherwise'{hint}", expected, found)


def _step_kind_problem(loaded: ScenarioFile, path: Path, value: Any) -> Problem:
    kinds = ", ".join(STEP_KINDS)
    if not isinstance(value, Mapping):
        return loaded.problem(
            path,
            "a step must be a mapping with one kind key",
            f"one of {kinds} (for example 'message: EVENT' with 'text: ...')",
            _describe(value),
        )
    present = [key for key in STEP_KINDS if key in value]
    if len(present) > 1:
        return loaded.problem(
            path,
            "a step has exactly one kind, but this one has " + " and ".join(present),
            f"one of {kinds}",
            ", ".join(present),
        )
    common = {"delay", "jitter", "to", "text", "data", "timeout", "on_timeout", "endpoint"}
    unknown = [str(key) for key in value if key not in common]
    guess = next((nearest(key, STEP_KINDS) for key in unknown if nearest(key, STEP_KINDS)), None)
    found = ", ".join(repr(key) for key in unknown) or "no kind key"
    hint = f" (did you mean {guess!r}?)" if guess else ""
    return loaded.problem(path, f"unknown step kind{hint}", f"one of {kinds}", found)
