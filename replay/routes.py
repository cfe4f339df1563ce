"""Declared HTTP routes: the model, the matcher and the rendering of an answer (no I/O).

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
  segment) or, last, ``{name:path}`` (the rest of the path, slashes included). A route
  matches any query string; templates read it as ``request.query.NAME``.
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
``now``, and ``uuid()``, ``random()``, ``randint(a, b)``, ``choice(items)``.

The first declared route whose method and path match a request answers it. Problems
that need the whole list (a route declared twice, one never reached because an earlier
one takes all its requests, one that would take requests meant for replay's own routes,
:data:`OWN_ROUTES`) are found by :func:`check_routes`; :data:`RouteList` runs it when a
list is validated and locates each problem on its route's ``path``.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

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

from replay import templates
from replay.errors import TemplateFailed
from replay.matching import ClientFrame
from replay.protocol import encode
from replay.scenario import Duration, _check_json

#: The methods a declared route may have.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: The names a route's templates may use.
NAMES = frozenset({"request", "state", "now", "uuid", "random", "randint", "choice"})
#: What templates read as ``request.FIELD``.
REQUEST_FIELDS = ("method", "path", "params", "query", "headers", "body", "json")
#: A state key (``set:``, ``PUT /state``): a name templates can read as ``state.NAME``.
STATE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
STATE_KEY_RULE = "a letter or '_', then letters, digits and '_' (at most 64)"
#: The client event's ``endpoint`` for a request to a declared route.
ENDPOINT = "http"

#: replay's own HTTP routes, as ``(method, path)``; ``*``: any method (a folder of files).
#: A declared route may not take requests meant for one of them (tests check this list
#: against the application's routes).
OWN_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", "/trigger/{scenario}"),
    ("GET", "/clients"),
    ("GET", "/scenarios"),
    ("GET", "/scenarios/{name}"),
    ("GET", "/runs"),
    ("GET", "/runs/{run_id}"),
    ("DELETE", "/runs/{run_id}"),
    ("POST", "/reset"),
    ("GET", "/journal"),
    ("DELETE", "/journal"),
    ("GET", "/events"),
    ("GET", "/metrics"),
    ("GET", "/state"),
    ("PUT", "/state"),
    ("GET", "/routes"),
    ("GET", "/"),
    ("GET", "/viewer"),
    ("*", "/ui/{path:path}"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
)

_METHOD_RULE = "GET, POST, PUT, PATCH or DELETE"
_PATH_RULE = (
    "a path such as /spans or /spans/{id}: segments of letters, digits and -._~!$&'()*+,;=:@, "
    "or parameters {name} (one segment) and, last, {name:path} (the rest)"
)
_LITERAL = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$")
_PARAMETER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]*))?\}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
#: Headers the server sets itself: a route declaring them would break its answer.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
#: Statuses whose answers have no body.
_NO_BODY = frozenset({204, 304})


class _Segment(NamedTuple):
    """One segment of a path: a literal, a parameter (one non-empty segment) or the
    rest of the path (``{name:path}``: anything, slashes included, even nothing)."""

    kind: Literal["literal", "param", "rest"]
    text: str


def _fail(kind: str, message: str, expected: str, found: str) -> PydanticCustomError:
    # The message is passed as a value, not as the template: it may hold braces.
    return PydanticCustomError(
        kind, "{reason}", {"reason": message, "expected": expected, "found": found}
    )


def _split(path: str) -> tuple[_Segment, ...]:
    """A path's segments; raises PydanticCustomError for a path that is not one."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise _fail("route_path", "a route's path starts with '/'", _PATH_RULE, repr(path))
    if "?" in path or "#" in path:
        raise _fail(
            "route_path",
            "a route's path has no query or fragment: a route matches any query string, "
            "which templates read as request.query.NAME",
            _PATH_RULE,
            repr(path),
        )
    parts = path[1:].split("/")
    segments: list[_Segment] = []
    seen: set[str] = set()
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "" and not last:
            raise _fail(
                "route_path", "a route's path has an empty segment ('//')", _PATH_RULE, repr(path)
            )
        parameter = _PARAMETER.match(part)
        if parameter is not None:
            name, kind = parameter.group(1), parameter.group(2)
            if name in seen:
                raise _fail(
                    "route_path",
                    f"parameter {name!r} appears twice in the path",
                    _PATH_RULE,
                    repr(path),
                )
            seen.add(name)
            if kind in (None, "str"):
                segments.append(_Segment("param", name))
            elif kind == "path" and last:
                segments.append(_Segment("rest", name))
            elif kind == "path":
                raise _fail(
                    "route_path",
                    f"{{{name}:path}} takes the rest of the path: it must be the last segment",
                    _PATH_RULE,
                    repr(path),
                )
            else:
                raise _fail(
                    "route_path",
                    f"unknown parameter type {kind!r} in {part!r}",
                    "{name} (one segment) or {name:path} (the rest of the path)",
                    repr(path),
                )
        elif "{" in part or "}" in part:
            raise _fail(
                "route_path",
                f"a parameter must be a whole segment, like /spans/{{id}}; found {part!r}",
                _PATH_RULE,
                repr(path),
            )
        elif not _LITERAL.match(part):
            bad = next(char for char in part if not _LITERAL.match(char))
            why = " (requests' paths are matched unescaped: write the character itself)"
            raise _fail(
                "route_path",
                f"a route's path cannot hold {bad!r}" + (why if bad == "%" else ""),
                _PATH_RULE,
                repr(path),
            )
        else:
            segments.append(_Segment("literal", part))
    return tuple(segments)


@lru_cache(maxsize=1024)
def _compiled(path: str) -> re.Pattern[str]:
    """The regular expression a declared path matches requests' paths with."""
    pattern = ""
    for segment in _split(path):
        if segment.kind == "literal":
            pattern += "/" + re.escape(segment.text)
        elif segment.kind == "param":
            pattern += f"/(?P<{segment.text}>[^/]+)"
        else:
            pattern += f"/(?P<{segment.text}>.*)"
    return re.compile(pattern, re.DOTALL)


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
            shown = text if len(text) <= 60 else text[:57] + "..."
            expected = "a template using " + ", ".join(sorted(NAMES))
            errors.append(_error(where, _fail("template", message, expected, repr(shown)), text))
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
    changes: dict[str, Any] = Field(
        default_factory=dict,
        alias="set",
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
        _split(value)
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
            lower = name.lower()
            if not _HEADER_NAME.match(name):
                found = _fail(
                    "header_name",
                    "not a header name",
                    "letters, digits and !#$%&'*+.^_`|~-",
                    repr(name),
                )
                errors.append(_error((name,), found, name))
            elif lower in _FRAMING_HEADERS:
                found = _fail(
                    "header_name",
                    f"the server sets {lower} itself",
                    "headers other than content-length, transfer-encoding and connection",
                    repr(name),
                )
                errors.append(_error((name,), found, name))
            elif lower in seen:
                found = _fail(
                    "header_name",
                    f"header {name!r} is given twice (also as {seen[lower]!r}): header "
                    "names are the same whatever their case",
                    "each header once",
                    repr(name),
                )
                errors.append(_error((name,), found, name))
            seen.setdefault(lower, name)
            if not templates.is_template(text) and _bad_header_value(text):
                found = _fail(
                    "header_value",
                    "a header value is one line of Latin-1 text",
                    "no line breaks or control characters",
                    repr(text),
                )
                errors.append(_error((name,), found, text))
        errors.extend(_template_errors(value))
        _located("headers", errors)
        return value

    @field_validator("body")
    @classmethod
    def _body(cls, value: Any) -> Any:
        _check_json(value)
        _located("body", _template_errors(value))
        return value

    @field_validator("changes")
    @classmethod
    def _changes(cls, value: dict[str, Any]) -> dict[str, Any]:
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
        found = _compiled(self.path).fullmatch(path)
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
            "sets": sorted(self.changes),
        }


def _bad_header_value(text: str) -> bool:
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
    own_shapes = [(method, path, _split(path)) for method, path in OWN_ROUTES]
    shapes = [_split(route.path) for route in routes]
    for index, route in enumerate(routes):
        shape = shapes[index]
        own = next(
            (
                f"{method} {path}"
                for method, path, segments in own_shapes
                if method in ("*", route.method) and _overlap(shape, segments)
            ),
            None,
        )
        if own is not None:
            problems.append(
                RouteProblem(
                    index,
                    "path",
                    f"{route.key} would take requests meant for replay's own route {own}",
                    "a path replay does not serve itself (its own: "
                    + ", ".join(dict.fromkeys(path for _, path in OWN_ROUTES))
                    + ")",
                    repr(route.path),
                )
            )
            continue
        for earlier in range(index):
            other = routes[earlier]
            if other.method != route.method or not _covers(shapes[earlier], shape):
                continue
            if _covers(shape, shapes[earlier]):
                message = f"{route.key} is declared twice (first as routes.{earlier}: {other.key})"
                expected = "each method and path once"
            else:
                message = (
                    f"{route.key} is never answered: routes.{earlier} ({other.key}) is "
                    "declared before it and takes every request it would"
                )
                expected = "more specific routes declared before more general ones"
            problems.append(RouteProblem(index, "path", message, expected, repr(route.path)))
            break
    return problems


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


def _overlap(a: Sequence[_Segment], b: Sequence[_Segment]) -> bool:
    """Whether some request path matches both shapes."""
    if not a or not b:
        return not a and not b
    if a[0].kind == "rest" or b[0].kind == "rest":
        return True
    if a[0].kind == "literal" and b[0].kind == "literal":
        return a[0].text == b[0].text and _overlap(a[1:], b[1:])
    literal = a[0] if a[0].kind == "literal" else b[0] if b[0].kind == "literal" else None
    # A parameter matches any non-empty segment.
    return (literal is None or literal.text != "") and _overlap(a[1:], b[1:])


def _covers(a: Sequence[_Segment], b: Sequence[_Segment]) -> bool:
    """Whether every request path ``b`` matches, ``a`` matches too."""
    if not a or not b:
        return not a and not b
    if a[0].kind == "rest":
        return True
    if b[0].kind == "rest":
        return False
    if a[0].kind == "param":
        return (b[0].kind == "param" or b[0].text != "") and _covers(a[1:], b[1:])
    return b[0].kind == "literal" and a[0].text == b[0].text and _covers(a[1:], b[1:])


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


# --- requests and answers ------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    """A request to a declared route, as templates and scenarios see it.

    ``headers`` have lower-case names (several values of one joined with ", "); ``query``
    keeps the last value of a repeated parameter; ``body`` is the body as text and
    ``json`` the body parsed as JSON (None when it is not JSON)."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str = ""
    json: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-ready data (the client event's frame)."""
        return {
            "method": self.method,
            "path": self.path,
            "params": dict(self.params),
            "query": dict(self.query),
            "headers": dict(self.headers),
            "body": self.body,
            "json": self.json,
        }

    def for_template(self) -> templates.Variables:
        """What templates see as ``request``: ``request.query.NAME`` is always the
        parameter, even one called ``items`` or ``get``."""
        view = self.to_dict()
        for name in ("params", "query", "headers"):
            view[name] = templates.Variables(view[name])
        return templates.Variables(view)

    def client_event(self, client: str, route: Route) -> ClientFrame:
        """The request as a client event for runs and reactions: its kind is the
        route's key, its payload the parsed JSON body."""
        text = json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)
        return ClientFrame(client, text, endpoint=ENDPOINT, kind=route.key, payload_field="json")


def parse_body(body: bytes) -> tuple[str, Any]:
    """A request body as text (UTF-8, bad bytes replaced) and as JSON (None if not)."""
    text = body.decode("utf-8", "replace")
    try:
        return text, json.loads(text) if text.strip() else None
    except (ValueError, RecursionError):
        return text, None


def stand_in_event(key: str, client: str) -> ClientFrame:
    """The request a dry run assumes answers a wait for the route ``key``: no query,
    no headers, no body."""
    method, _, path = key.partition(" ")
    route = Route.model_construct(method=method, path=path)
    return HttpRequest(method, path).client_event(client, route)


def template_names(
    request: HttpRequest, state: Mapping[str, Any], now: float, rng: random.Random
) -> dict[str, Any]:
    """What a route's templates read (see :data:`NAMES`); ``now`` in seconds since 1970."""
    return {
        "request": request.for_template(),
        "state": templates.Variables(state),
        "now": templates.Now(now),
        "uuid": lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "random": lambda: rng.random(),
        "randint": lambda low, high: rng.randint(low, high),
        "choice": lambda items: rng.choice(items),
    }


def render_changes(route: Route, names: Mapping[str, Any]) -> dict[str, Any]:
    """The route's ``set``, rendered; raises TemplateFailed."""
    if not route.changes:
        return {}
    return dict(templates.render_data(route.changes, names))


@dataclass(frozen=True)
class Answer:
    """What a route answers: status, headers (as declared, rendered) and body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def render_answer(route: Route, names: Mapping[str, Any]) -> Answer:
    """The route's answer, its templates rendered with ``names``; raises TemplateFailed."""
    headers = []
    for name, value in route.headers.items():
        text = templates.render_text(value, names) if templates.is_template(value) else value
        if _bad_header_value(text):
            raise TemplateFailed(
                value, f"header {name!r} would hold a line break or a character outside Latin-1"
            )
        headers.append((name, text))
    if "body" not in route.model_fields_set:
        return Answer(route.status, tuple(headers), b"")
    value = templates.render_data(route.body, names)
    if route.content_type is None:
        headers.append(("content-type", "application/json"))
    if isinstance(value, str) and not route.sends_json:
        try:
            return Answer(route.status, tuple(headers), value.encode("utf-8"))
        except UnicodeEncodeError as error:
            bad = value[error.start : error.end]
            raise TemplateFailed(
                str(route.body),
                f"the body holds {bad!r}, half of a surrogate pair, which UTF-8 cannot carry",
            ) from None
    try:
        text = encode(value)
    except ValueError as error:
        raise TemplateFailed(json.dumps(route.body, default=str), str(error)) from None
    try:
        return Answer(route.status, tuple(headers), text.encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate (a request's "\ud800" echoed): JSON's ASCII escapes carry it.
        ascii_text = json.dumps(value, separators=(",", ":"), allow_nan=False)
        return Answer(route.status, tuple(headers), ascii_text.encode("ascii"))
