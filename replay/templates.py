"""Templates in scenario text: Jinja2, sandboxed, checked when the file loads.

A string in a step's ``text``, ``data``, ``chunk``, ``tool``, ``stream`` or ``raw`` that
contains ``{{``, ``{%`` or ``{#`` is a template; every other string is sent as written.
Templates run in Jinja2's immutable sandbox: they can read the names below and call the
helpers, but cannot reach Python internals, change anything or touch the file system.
They are also limited (:mod:`replay.limits`): a render makes at most :data:`MAX_OUTPUT`
characters and never builds a longer value, does a bounded amount of work, and builds a
bounded amount of memory; a template over a limit fails with ``TemplateFailed``, saying
which limit.

Names a template can use (:data:`NAMES`):

- ``run.id``, ``run.scenario``, ``run.seed``: the run;
- ``scenario`` and ``step``: the scenario being played and the step's index in it;
- ``iteration``: the pass of the innermost ``repeat`` (0, 1, 2, ...; 0 outside one);
- ``now.iso``, ``now.ms``, ``now.s``, ``now.ns``: when the frame is due (ISO 8601 UTC,
  epoch ms, epoch s, epoch ns as OpenTelemetry spans count it);
- ``uuid()``, ``random()``, ``randint(a, b)``, ``choice(items)``, ``hex(n)`` (n random hex
  digits: ``hex(16)`` is a span id): from the run's seeded generator, so a run with the
  same seed gets the same values;
- ``vars.NAME``: a variable, declared with a default under ``vars:`` in the file and
  overridden by the trigger;
- ``received``: the last client frame the run received (``received.message_type``,
  ``received.message``, ``received.data``, ``received.client``, ``received.text``);
- ``sender``: the id of the client whose frame or connection started the run, or that
  answered the last ``wait`` (or connected for a ``wait_connect: any``);
- ``state.NAME``: the server's shared state as it is when the step plays (``set`` steps
  and declared HTTP routes change it).

A ``choose`` step's conditions are expressions (:func:`check_expression`,
:func:`is_true`): the inside of a ``{{ ... }}``, with the same names, the same sandbox
and the same limits.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.meta import find_undeclared_variables
from jinja2.parser import Parser

from replay.errors import TemplateFailed, did_you_mean, nearest
from replay.limits import MAX_OUTPUT as MAX_OUTPUT
from replay.limits import Refused, rendering, text_size
from replay.sandbox import Sandbox

#: The names a template may use.
NAMES = frozenset(
    {
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
)

#: The fields of ``received`` whatever the protocol (:meth:`replay.matching.ClientFrame.
#: for_template` gives these, and the type and payload under the names the endpoint's
#: envelope gives them). A template that reads another one (``received.mesage``) is
#: refused when the file loads; paths below them (``received.data.x``,
#: ``received.frame.x``) are the client's to fill.
RECEIVED_FIELDS = frozenset(
    {"client", "endpoint", "text", "message_type", "message", "data", "frame"}
)
#: Why a field of a name is missing, and where to look instead.
_FIELD_ADVICE = {
    "received": "a field the client put in its frame is received.frame.NAME, one in its "
    "payload received.data.NAME",
}

_MARKERS = ("{{", "{%", "{#")
# A string that is one expression and nothing else keeps its value's type in ``data``.
_SOLE_EXPRESSION = re.compile(r"^\s*\{\{((?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)

_env = Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
# Jinja's own globals are not part of replay's template language (and cycler & co. are
# ways into Python objects): templates see NAMES, plus range and dict.
for _name in ("cycler", "joiner", "lipsum", "namespace"):
    _env.globals.pop(_name, None)
# |tojson of anything templates see: variables as a mapping, now and the like as text.
_env.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": lambda value: _plain(value)}


def _plain(value: Any) -> Any:
    return dict(value._values) if isinstance(value, Variables) else str(value)


#: The most digits ``hex(n)`` gives.
MAX_HEX = 256


def random_hex(rng: Any, digits: int) -> str:
    """``digits`` random lower-case hex digits from ``rng`` (``hex(n)`` in templates)."""
    if not isinstance(digits, int) or isinstance(digits, bool) or not 1 <= digits <= MAX_HEX:
        raise ValueError(f"hex(n) takes a whole number n from 1 to {MAX_HEX}, not {digits!r}")
    return format(rng.getrandbits(4 * digits), f"0{digits}x")


def is_template(text: str) -> bool:
    """Whether ``text`` is a template (contains ``{{``, ``{%`` or ``{#``)."""
    return any(marker in text for marker in _MARKERS)


@dataclass(frozen=True)
class Now:
    """A moment, as templates see it: ``now.iso``, ``now.ms``, ``now.s``, ``now.ns``."""

    s: float

    @property
    def ms(self) -> int:
        return round(self.s * 1000)

    @property
    def ns(self) -> int:
        # From the whole milliseconds too, so that ns, ms and iso agree.
        return self.ms * 1_000_000

    @property
    def iso(self) -> str:
        # From the same whole milliseconds as ``ms``, so the two always agree.
        seconds, millis = divmod(self.ms, 1000)
        moment = datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def __str__(self) -> str:
        return self.iso


def check(
    text: str,
    declared_vars: Collection[str] | None,
    names: Collection[str] = NAMES,
    fields: Mapping[str, Collection[str]] | None = None,
    *,
    state: Collection[str] = (),
) -> list[str]:
    """What is wrong with a template, as sentences for the user (empty when it is fine).

    Checks its syntax, that it uses only ``names`` (a scenario's: :data:`NAMES`), that
    every ``vars.NAME`` it reads is declared (any name, when ``declared_vars`` is None),
    and, for each name in ``fields``, that every ``name.FIELD`` it reads is one of that
    name's fields (a scenario's ``received``: :data:`RECEIVED_FIELDS` and the names the
    protocol's envelopes give the type and the payload; a declared route's
    ``request.query``). Only the first field is checked: ``received.data.x`` reads what
    the client sent, which no file declares.

    An unknown name suggests the nearest of ``names``, of the declared variables (as
    ``vars.NAME``), of the fields (``received.message``) and of the ``state`` keys
    (``state.NAME``).
    """
    try:
        tree = _env.parse(text)
        # Compiling finds what parsing does not: unknown filters and tests.
        _template(text)
    except jinja2.TemplateSyntaxError as error:
        where = f" (line {error.lineno} of the template)" if "\n" in text.strip() else ""
        return [f"template syntax error{where}: {error.message}"]
    except (jinja2.TemplateError, RecursionError, MemoryError) as error:
        return [f"template error: {error or type(error).__name__} (it nests too deeply?)"]
    if any(
        True for _ in tree.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport))
    ):
        return ["templates cannot include, extend or import other templates"]
    if any(True for _ in tree.find_all(nodes.EvalContextModifier)):
        return ["templates cannot turn autoescaping on: use the escape filter where needed"]
    scope = _Scope(names, declared_vars, fields or {}, state)
    return _name_problems(tree, scope, "a template")


def check_expression(
    source: str,
    declared_vars: Collection[str],
    fields: Mapping[str, Collection[str]] | None = None,
    *,
    state: Collection[str] = (),
) -> list[str]:
    """What is wrong with an expression (a ``choose`` condition: the inside of a
    ``{{ ... }}``), as sentences for the user; empty when it is fine. The same checks as
    :func:`check`: syntax, :data:`NAMES`, declared ``vars.NAME``, ``fields``."""
    if is_template(source):
        return [
            "a condition is an expression, not a template: write it without '{{ }}' "
            "(state.paused, not {{ state.paused }})"
        ]
    try:
        tree = _expression_tree(source)
        _expression(source)  # unknown filters and tests
    except jinja2.TemplateSyntaxError as error:
        return [f"expression syntax error: {error.message}"]
    except (jinja2.TemplateError, RecursionError, MemoryError) as error:
        return [f"expression error: {error or type(error).__name__} (it nests too deeply?)"]
    scope = _Scope(NAMES, declared_vars, fields or {}, state)
    return _name_problems(tree, scope, "an expression")


@dataclass(frozen=True)
class _Scope:
    """What a template may read, for checking it (see :func:`check`)."""

    names: Collection[str]
    declared_vars: Collection[str] | None
    fields: Mapping[str, Collection[str]]
    state: Collection[str]

    def paths(self) -> dict[str, str]:
        """Each bare word a user may mean, and the path that reads it: a name as is, then
        a variable as vars.NAME, a field as received.FIELD, a state key as state.NAME."""
        paths = {name: name for name in self.names}
        if "vars" in self.names:
            for name in self.declared_vars or ():
                paths.setdefault(name, f"vars.{name}")
        for parent, known in self.fields.items():
            if parent in self.names:
                for name in known:
                    paths.setdefault(name, f"{parent}.{name}")
        if "state" in self.names:
            for name in self.state:
                paths.setdefault(name, f"state.{name}")
        return paths


def _name_problems(tree: nodes.Template, scope: _Scope, what: str) -> list[str]:
    used = find_undeclared_variables(tree)
    names = scope.names
    declared_vars = scope.declared_vars
    reads_vars = declared_vars is not None and "vars" in names
    read = _attributes_read(tree, "vars") if reads_vars else set()
    unknown = sorted(used - set(names))
    paths = scope.paths() if unknown else {}
    problems = []
    for name in unknown:
        guess = nearest(name, paths)
        hint = f" (did you mean {paths[guess]!r}?)" if guess else ""
        problems.append(
            f"unknown name {name!r} in {what}{hint}; templates can use {', '.join(sorted(names))}"
        )
    for parent, known in scope.fields.items():
        for attribute in sorted(_attributes_read(tree, parent) - set(known)):
            problems.append(_field_problem(parent, attribute, known))
    for name in sorted(read - set(declared_vars or ())):
        assert declared_vars is not None
        declared = ", ".join(sorted(declared_vars)) or "none"
        problems.append(
            f"variable {name!r} is not declared{did_you_mean(name, declared_vars)}: "
            f"add it under 'vars:' with a default, or bind it with a 'let' step "
            f"(declared: {declared})"
        )
    return problems


def _field_problem(parent: str, attribute: str, known: Collection[str]) -> str:
    guess = nearest(attribute, known)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    advice = _FIELD_ADVICE.get(parent)
    return (
        f"{parent} has no field {attribute!r}{hint}; its fields are {', '.join(sorted(known))}"
        + (f" ({advice})" if advice else "")
    )


def _expression_tree(source: str) -> nodes.Template:
    """An expression parsed as the one output of a template (for checking its names);
    raises TemplateSyntaxError, also for anything after the expression."""
    parser = Parser(_env, source, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        token = parser.stream.current
        raise jinja2.TemplateSyntaxError(
            f"unexpected {token.value!r} after the expression", token.lineno
        )
    tree = nodes.Template([nodes.Output([expression], lineno=1)], lineno=1)
    tree.set_environment(_env)
    return tree


@functools.lru_cache(maxsize=4096)
def reads(text: str, name: str) -> bool:
    """Whether the template ``text`` reads the name ``name`` (``state``, say); False for
    a text that is not a template or does not parse."""
    if not is_template(text):
        return False
    try:
        return name in find_undeclared_variables(_env.parse(text))
    except (jinja2.TemplateError, RecursionError, MemoryError):
        return False


def is_true(source: str, context: Mapping[str, Any]) -> bool:
    """Evaluate an expression (a ``choose`` condition) with the names in ``context``, as
    Jinja's ``{% if %}`` would; raises :class:`TemplateFailed` (an undefined name or
    field, a forbidden operation, a limit of the render's budget)."""
    try:
        expression = _expression(source)
        with rendering():
            return bool(expression(context))
    except Exception as error:  # as in render_text; bool() of an Undefined raises too
        raise TemplateFailed(source, _reason(error)) from None


def render_text(text: str, context: Mapping[str, Any]) -> str:
    """Render a template to text; raises :class:`TemplateFailed`, also for a template
    that would render more than :data:`MAX_OUTPUT` characters or do too much work."""
    pieces: list[str] = []
    size = 0
    try:
        template = _template(text)
        with rendering() as budget:
            # Piece by piece, so a runaway loop stops at the limit instead of eating memory.
            # Not template.generate(): on an error it rewrites the traceback, compiling code
            # for each template frame (a millisecond each, 40 for a refused recursion), and
            # only the error's message is used.
            for piece in template.root_render_func(template.new_context(dict(context))):
                size += len(piece)
                if size > MAX_OUTPUT:
                    raise TemplateFailed(text, f"it renders more than {MAX_OUTPUT} characters")
                pieces.append(piece)
            budget.hold(size)
    except TemplateFailed:
        raise
    except Exception as error:  # whatever the template did: undefined, security, type
        raise TemplateFailed(text, _reason(error)) from None
    return "".join(pieces)


def render_value(text: str, context: Mapping[str, Any]) -> Any:
    """Render a string from ``data``: a lone ``{{ expression }}`` keeps its type
    (``"{{ now.ms }}"`` gives a number), anything else renders to text."""
    sole = _SOLE_EXPRESSION.match(text)
    if sole is None:
        return render_text(text, context)
    try:
        expression = _expression(sole.group(1))
        with rendering() as budget:
            value = expression(context)
            size = text_size(value)
            if size > MAX_OUTPUT:
                raise TemplateFailed(text, f"it renders more than {MAX_OUTPUT} characters")
            # A value the template did not build (received.text) still goes into the
            # frame: the step's templates together are held to the budget's memory.
            budget.hold(size)
            return _json_value(value, 0)
    except TemplateFailed:
        raise
    except Exception as error:  # as in render_text; str() of an Undefined raises too
        raise TemplateFailed(text, _reason(error)) from None


def _json_value(value: Any, depth: int) -> Any:
    # Only JSON's own types keep their type; anything else (now, a uuid) becomes its text.
    if depth > 32:
        raise ValueError("the value nests too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no infinity or NaN (a browser's JSON.parse refuses them).
        raise ValueError(f"{value} is not a number JSON can carry")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple):
        return [_json_value(item, depth + 1) for item in value]
    if isinstance(value, dict | Variables):
        return {str(key): _json_value(value[key], depth + 1) for key in value}
    return str(value)


class Variables:
    """The run's variables as templates see them: ``vars.NAME`` is always the variable,
    even for names like ``items`` or ``get`` that a dict would answer with a method."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def render_data(value: Any, context: Mapping[str, Any]) -> Any:
    """``value`` with every template string in it rendered (mappings and lists walked).
    Its templates share one budget of work and memory, as one render."""
    with rendering():
        return _render_data(value, context)


def _render_data(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render_value(value, context) if is_template(value) else value
    if isinstance(value, Mapping):
        return {key: _render_data(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_data(item, context) for item in value]
    return value


def has_templates(value: Any) -> bool:
    """Whether any string in ``value`` (walking mappings and lists) is a template."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, Mapping):
        return any(has_templates(item) for item in value.values())
    if isinstance(value, list):
        return any(has_templates(item) for item in value)
    return False


@functools.lru_cache(maxsize=4096)
def _template(text: str) -> jinja2.Template:
    return _env.from_string(text)


@functools.lru_cache(maxsize=4096)
def _expression(source: str) -> Any:
    return _env.compile_expression(source, undefined_to_none=False)


def _attributes_read(tree: nodes.Template, name: str) -> set[str]:
    """The fields read from the name ``name``: ``name.FIELD`` and ``name["FIELD"]``."""
    names: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not (isinstance(target, nodes.Name) and target.name == name):
            continue
        if isinstance(node, nodes.Getattr):
            names.add(node.attr)
        elif isinstance(node, nodes.Getitem):
            key = node.arg
            if isinstance(key, nodes.Const) and isinstance(key.value, str):
                names.add(key.value)
    return names


def _reason(error: Exception) -> str:
    if isinstance(error, Refused):
        return error.reason
    if isinstance(error, RecursionError):
        return "calls nest too deeply (a macro that calls itself without end?); nest fewer calls"
    if isinstance(error, jinja2.UndefinedError):
        return f"{error.message} (a name or field that does not exist here)"
    if isinstance(error, jinja2.exceptions.SecurityError):
        return f"not allowed in a template: {error}"
    return f"{type(error).__name__}: {error}"
