"""Requests to declared HTTP routes and the answers the routes render (no I/O, no clock).

A request is seen the same way by a route's templates (``request``) and by scenarios, to
which it is a client event (:meth:`HttpRequest.client_event`): its ``method``, ``path``,
path ``params``, ``query`` (the last value of a repeated parameter), ``headers``
(lower-case names), ``body`` (text) and ``json`` (the body parsed, or null). A route's
``set`` is rendered with the state as it was (:func:`render_changes`), its answer with
the state as it is after (:func:`render_answer`); the caller passes the time and the
random generator templates use (:func:`template_names`).
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from replay import templates
from replay.errors import TemplateFailed
from replay.matching import ClientFrame
from replay.protocol import encode
from replay.routes import Route, bad_header_value, find

#: The client event's ``endpoint`` for a request to a declared route.
ENDPOINT = "http"


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


def request_event(text: str, routes: Sequence[Route], client: str) -> ClientFrame | None:
    """The client event of ``METHOD /path?query`` (a dry run's ``--answer``), as the
    declared route that answers it would see it; None if it is not one or no route does."""
    method, _, target = text.strip().partition(" ")
    path, _, query = target.partition("?")
    found = find(routes, method.upper(), path) if path.startswith("/") else None
    if found is None:
        return None
    route, params = found
    request = HttpRequest(method.upper(), path, params, dict(parse_qsl(query)))
    return request.client_event(client, route)


def template_names(
    request: HttpRequest, state: Mapping[str, Any], now: float, rng: random.Random
) -> dict[str, Any]:
    """What a route's templates read (see :data:`NAMES`); ``now`` in seconds since 1970."""
    return {
        "request": request.for_template(),
        "state": templates.Variables(state),
        "now": templates.Now(now),
        "uuid": lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "hex": lambda digits: templates.random_hex(rng, digits),
        "random": lambda: rng.random(),
        "randint": lambda low, high: rng.randint(low, high),
        "choice": lambda items: rng.choice(items),
    }


def render_changes(route: Route, names: Mapping[str, Any]) -> dict[str, Any]:
    """The route's ``set``, rendered; raises TemplateFailed."""
    if not route.set:
        return {}
    return dict(templates.render_data(route.set, names))


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
        if bad_header_value(text):
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
