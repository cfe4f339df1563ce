"""Declared HTTP routes: the model, the checks of a list of them, the matcher (no I/O).

A project declares the HTTP routes its frontend calls beside its message types, in the
scenarios folder's protocol file (``routes:``)::

    routes:
      - method: POST
        path: /break
        set: {paused: "{{ not state.paused }}"}   # applied first: the body sees it
        body: "{{ state.paused }}"                  # a lone expression keeps its type
      - path: /spans/{id}
        body: {id: "{{ request.params.id }}", name: agent}
        latency: 200ms

- ``method``: GET (the default), POST, PUT, PATCH or DELETE.
- ``path``: literal segments and parameters, each a whole segment: ``{name}`` (one
  segment) or, last, ``{name:path}`` (the rest of the path, slashes included); see
  :mod:`replay.paths`. A route matches any query string; templates read it as
  ``request.query.NAME``.
- ``status`` (default 200), ``headers`` (values may be templates), ``latency`` (a
  duration, as scenario pauses), ``description``.
- ``body``: any JSON value whose strings may be templates, rendered like a scenario's
  ``data``. It is sent as JSON (``application/json``) unless ``headers`` give a
  ``content-type`` without "json" in it: then a string body is sent as its text (and
  anything else as its JSON text). No ``body`` at all: an empty answer; ``body: null``:
  JSON ``null``.
- ``set``: state keys and their new values (templates, as the body), applied before the
  body is rendered.

Templates see :data:`NAMES`: ``request`` (:data:`REQUEST_FIELDS`), ``state.NAME``,
``now``, and ``uuid()``, ``hex(n)``, ``random()``, ``randint(a, b)``, ``choice(items)``; they are
checked when the file loads, and rendered by :mod:`replay.answers`.

The first declared route whose method and path match a request answers it. Problems
that need the whole list (a route declared twice, one never reached because an earlier
one takes all its requests, one that would take requests meant for replay's own routes,
:data:`OWN_ROUTES`) are found by :func:`check_routes`; :data:`RouteList` runs it when a
list is validated and locates each problem on its route's ``path``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from replay import paths, templates
from replay.errors import PathRefused
from replay.fields import Duration, _check_json

#: The methods a declared route may have.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: The names a route's templates may use.
NAMES = frozenset({"request", "state", "now", "uuid", "hex", "random", "randint", "choice"})
#: What templates read as ``request.FIELD``.
REQUEST_FIELDS = ("method", "path", "params", "query", "headers", "body", "json")
#: A state key (``set:``, ``PUT /state``): a name templates can read as ``state.NAME``.
STATE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
STATE_KEY_RULE = "a letter or '_', then letters, digits and '_' (at most 64)"

#: replay's own HTTP routes, as ``(method, path)``; ``*``: any method (a folder of files).
#: A declared route may not take requests meant for one of them (tests check this list
#: against the application's routes).
OWN_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/trigger/{scenario}"),
    ("GET", "/clients"),
    ("GET", "/protocol"),
    ("GET", "/scenarios"),
    ("GET", "/scenarios/{name}"),
    ("GET", "/runs"),
    ("GET", "/runs/{run_id}"),
    ("DELETE", "/runs/{run_id}"),
    ("POST", "/runs/{run_id}/pause"),
    ("POST", "/runs/{run_id}/resume"),
    ("POST", "/runs/{run_id}/step"),
    ("POST", "/runs/{run_id}/speed"),
    ("POST", "/reset"),
    ("GET", "/journal"),
    ("DELETE", "/journal"),
    ("GET", "/events"),
    ("GET", "/metrics"),
    ("GET", "/state"),
    ("PUT", "/state"),
    ("GET", "/routes"),
    ("GET", "/recordings"),
    ("GET", "/recordings/{session}"),
    ("POST", "/recordings/{session}/convert"),
    ("GET", "/"),
    ("GET", "/viewer"),
    ("*", "/ui/{path:path}"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
    ("*", "/docs/assets/{path:path}"),
)

_METHOD_RULE = "GET, POST, PUT, PATCH or DELETE"
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers the server sets itself: a route declaring them would break its answer.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
#: Statuses whose answers have no body.
_NO_BODY = frozenset({204, 304})


def _fail(kind: str, message: str, expected: str, found: str) -> PydanticCustomError:
    # The message is passed as a value, not as the template: it may hold braces.
    return PydanticCustomError(
        kind, "{reason}", {"reason": message, "expected": expected, "found": found}
    )


def _check_method(value: Any) -> str:
    method = value.upper() if isinstance(value, str) else value
    if method not in METHODS:
        raise _fail("route_method", "not a method a route can have", _METHOD_RULE, repr(value))
    return str(method)


def _check_status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 200 <= value <= 599:
        raise _fail(
            "route_status",
            "not a status a route can answer with",
            "a whole number from 200 to 599 (1xx statuses are not answers)",
            repr(value),
        )
    return value


def _located(title: str, errors: list[InitErrorDetails]) -> None:
    """Raise the errors found inside a value, each at its own place in it."""
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def _error(at: tuple[str | int, ...], error: PydanticCustomError, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type=error, loc=at, input=value)


def _template_errors(value: Any, at: tuple[str | int, ...] = ()) -> list[InitErrorDetails]:
    """An error for each problem of each template in ``value``, at its place in it."""
    errors: list[InitErrorDetails] = []
    for where, text in _strings(value, at):
        if not templates.is_template(text):
            continue
        for message in templates.check(text, (), NAMES, {"request": REQUEST_FIELDS}):
            # The message says what is expected, as for a scenario's templates.
            shown = text if len(text) <= 60 else text[:57] + "..."
            errors.append(_error(where, _fail("template", message, "", repr(shown)), text))
    return errors


def _strings(value: Any, at: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*at, index))


class Route(BaseModel):
    """One declared HTTP route (see the module's description)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(default="GET", description="GET, POST, PUT, PATCH or DELETE (default GET).")
    path: str = Field(
        description="The path: literal segments and parameters, e.g. /spans/{id}, or "
        "{name:path} last for the rest of the path.",
    )
    status: int = Field(default=200, description="The answer's status (200 to 599).")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers of the answer; values may be templates. A content-type "
        "without 'json' sends a string body as text.",
    )
    body: Any = Field(
        default=None,
        description="The answer: any JSON value whose strings may be templates (a lone "
        "{{ expression }} keeps its type); sent as JSON. None given: an empty answer.",
    )
    latency: Duration = Field(default=0.0, description="How long the answer takes (e.g. 200ms).")
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="State keys and their new values (templates, as the body), applied "
        "before the body is rendered.",
    )
    description: str = Field(default="", description="What the route is for, for humans.")

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> str:
        return _check_method(value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            paths.segments(value)
        except PathRefused as refused:
            raise _fail("route_path", refused.reason, refused.expected, repr(value)) from None
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> int:
        return _check_status(value)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        errors: list[InitErrorDetails] = []
        seen: dict[str, str] = {}
        for name, text in value.items():
            problem = _header_problem(name, text, seen)
            if problem is not None:
                errors.append(_error((name,), problem, name))
            seen.setdefault(name.lower(), name)
        errors.extend(_template_errors(value))
        _located("headers", errors)
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: Any) -> Any:
        _check_json(value)
        _located("body", _template_errors(value))
        return value

    @field_validator("set")
    @classmethod
    def _set(cls, value: dict[str, Any]) -> dict[str, Any]:
        errors: list[InitErrorDetails] = []
        for key in value:
            if not STATE_KEY.match(key):
                found = _fail("state_key", "not a state key", STATE_KEY_RULE, repr(key))
                errors.append(_error((key,), found, key))
        _check_json(value)
        errors.extend(_template_errors(value))
        _located("set", errors)
        return value

    @model_validator(mode="after")
    def _no_body(self) -> Route:
        if self.status in _NO_BODY and "body" in self.model_fields_set:
            found = _fail(
                "route_body",
                f"a {self.status} answer has no body",
                "no body, or another status",
                "a body",
            )
            _located("Route", [_error(("body",), found, self.body)])
        return self

    @property
    def key(self) -> str:
        """``"METHOD /path"``, as declared: what scenarios wait for and react to."""
        return f"{self.method} {self.path}"

    @property
    def sends_json(self) -> bool:
        """Whether the body is sent as JSON (no content-type says otherwise)."""
        declared = self.content_type
        return declared is None or "json" in declared.lower()

    @property
    def content_type(self) -> str | None:
        """The content-type the route declares, if it does."""
        return next((v for k, v in self.headers.items() if k.lower() == "content-type"), None)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters if this route answers ``method`` at ``path``, else None."""
        if method != self.method:
            return None
        found = paths.pattern(self.path).fullmatch(path)
        return found.groupdict() if found is not None else None

    def summary(self) -> dict[str, Any]:
        """The route as JSON-ready data (``GET /routes``)."""
        return {
            "key": self.key,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "description": self.description,
            "latency": self.latency,
            "sets": sorted(self.set),
        }


def _header_problem(name: str, value: str, seen: Mapping[str, str]) -> PydanticCustomError | None:
    """What is wrong with a declared header (``seen``: the names before it, by lower case)."""
    lower = name.lower()
    if not _HEADER_NAME.match(name):
        expected = "letters, digits and !#$%&'*+.^_`|~-"
        return _fail("header_name", "not a header name", expected, repr(name))
    if lower in _FRAMING_HEADERS:
        expected = "headers other than content-length, transfer-encoding and connection"
        return _fail("header_name", f"the server sets {lower} itself", expected, repr(name))
    if lower in seen:
        message = (
            f"header {name!r} is given twice (also as {seen[lower]!r}): header names are the "
            "same whatever their case"
        )
        return _fail("header_name", message, "each header once", repr(name))
    if not templates.is_template(value) and bad_header_value(value):
        message = "a header value is one line of Latin-1 text"
        return _fail("header_value", message, "no line breaks or control characters", repr(value))
    return None


def bad_header_value(text: str) -> bool:
    """Whether ``text`` cannot be a header's value: a line break, a control character,
    or a character outside Latin-1."""
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return True
    return any((ord(char) < 32 and char != "\t") or ord(char) == 127 for char in text)


# --- the whole list ------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteProblem:
    """A problem of one route that only the whole list shows: ``routes[index].field``."""

    index: int
    field: str
    message: str
    expected: str
    found: str


def check_routes(routes: Sequence[Route]) -> list[RouteProblem]:
    """The problems of the list, in order: a route that would take requests meant for
    one of replay's own routes; a route declared twice (same method, same path up to
    the parameters' names); a route never reached because an earlier one with its
    method takes every request it would (the first declared match answers)."""
    problems: list[RouteProblem] = []
    shapes = [paths.segments(route.path) for route in routes]
    for index, route in enumerate(routes):
        problem = _shadows(route, shapes[index]) or next(
            (
                _after(route, shapes[index], earlier, routes[earlier], shapes[earlier])
                for earlier in range(index)
                if routes[earlier].method == route.method
                and paths.covers(shapes[earlier], shapes[index])
            ),
            None,
        )
        if problem is not None:
            message, expected = problem
            problems.append(RouteProblem(index, "path", message, expected, repr(route.path)))
    return problems


def _shadows(route: Route, shape: Sequence[paths.Segment]) -> tuple[str, str] | None:
    """The problem of a route that would take requests meant for one of replay's own."""
    for method, path in OWN_ROUTES:
        if method in ("*", route.method) and paths.overlap(shape, _own_shape(path)):
            own = ", ".join(dict.fromkeys(path for _, path in OWN_ROUTES))
            return (
                f"{route.key} would take requests meant for replay's own route {method} {path}",
                f"a path replay does not serve itself (its own: {own})",
            )
    return None


def _after(
    route: Route,
    shape: Sequence[paths.Segment],
    index: int,
    earlier: Route,
    earlier_shape: Sequence[paths.Segment],
) -> tuple[str, str]:
    """The problem of a route after one, declared earlier at ``index``, that covers it."""
    if paths.covers(shape, earlier_shape):
        return (
            f"{route.key} is declared twice (first as routes.{index}: {earlier.key})",
            "each method and path once",
        )
    return (
        f"{route.key} is never answered: routes.{index} ({earlier.key}) is declared before "
        "it and takes every request it would",
        "more specific routes declared before more general ones",
    )


@functools.lru_cache(maxsize=64)
def _own_shape(path: str) -> tuple[paths.Segment, ...]:
    return paths.segments(path)


def _check_list(routes: tuple[Route, ...]) -> tuple[Route, ...]:
    errors = [
        _error(
            (problem.index, problem.field),
            _fail("routes", problem.message, problem.expected, problem.found),
            routes[problem.index].path,
        )
        for problem in check_routes(routes)
    ]
    _located("routes", errors)
    return routes


#: The ``routes:`` list of a protocol file: each route validated, then the list checked
#: with :func:`check_routes`, each problem located on its route's field.
RouteList = Annotated[tuple[Route, ...], AfterValidator(_check_list)]


def find(routes: Sequence[Route], method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The first route in ``routes`` that answers ``method`` at ``path``, with its path
    parameters; None if none does."""
    for route in routes:
        params = route.match(method, path)
        if params is not None:
            return route, params
    return None


def declared(catalog: Any) -> tuple[Route, ...]:
    """The routes the catalog's protocol file declares (none without one)."""
    return tuple(getattr(getattr(catalog, "protocol", None), "routes", None) or ())


def declared_state(catalog: Any) -> Mapping[str, Any]:
    """The initial state the catalog's protocol file declares (empty without one)."""
    state = getattr(getattr(catalog, "protocol", None), "state", None)
    return state if isinstance(state, Mapping) else {}


def is_route_key(text: str) -> bool:
    """Whether ``text`` has the form of a route's key, ``METHOD /path``."""
    method, _, path = text.partition(" ")
    return method.upper() in METHODS and path.startswith("/")
