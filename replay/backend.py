"""The declared HTTP routes, served: what a frontend's fetches get back.

Every request that none of replay's own routes takes goes through :meth:`Backend.serve`,
which looks at the scenarios folder as it is now (as a trigger does, so an edited
protocol file counts from the next request) and finds the first declared route that
answers the request's method and path (:mod:`replay.routes`). Requests that no declared
route answers get replay's own 404, as before. A declared route's request then:

1. is read whole: its body at most the server's limit on bodies (413 above it), within
   its time limit (:mod:`replay.bodies`);
2. waits the route's ``latency`` on the runner's clock (nothing else waits for it; a
   server that stops answers it 503 at once);
3. has the route's ``set`` rendered and applied to the server's :class:`State`;
4. becomes a client event (:meth:`replay.answers.HttpRequest.client_event`): the runs
   that may consume it keep it, like a frame on ``/ws`` (:mod:`replay.mailbox`), and if
   none does, reactions play;
5. is answered with the route's status, headers and body, rendered with the new state;
   a template that fails answers 500 saying why;
6. is published on the feed as ``http.request`` (which the journal records).

The client is ``?client_id=`` or the ``X-Replay-Client`` header (a client id, as on
``/ws``; 422 otherwise), else ``http``. Requests go through the same guards as every
route: Host, Origin and CORS, the token, the limits on bodies. What carries the
server's token (a header or query value holding it, ``X-Replay-Token``) is left out of
what templates, runs and the journal see.

This module also serves replay's own ``GET /state``, ``PUT /state`` and ``GET /routes``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Protocol

from fastapi import Body, FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from replay.answers import (
    ENDPOINT,
    HttpRequest,
    parse_body,
    render_answer,
    render_changes,
    template_names,
)
from replay.catalog import Catalog
from replay.errors import TemplateFailed
from replay.feed import Feed
from replay.matching import ClientFrame
from replay.responses import JSONAnswer
from replay.routes import STATE_KEY, STATE_KEY_RULE, Route, declared, declared_state, find
from replay.runner import Runner
from replay.scenario import CLIENT_ID_PATTERN, CLIENT_ID_RULE
from replay.state import State

log = logging.getLogger("replay.backend")

#: The client id of a request that names none.
DEFAULT_CLIENT = "http"
#: The header a request may name its client id in (besides ``?client_id=``).
CLIENT_HEADER = "x-replay-client"
#: Keys the state may hold: ``PUT /state`` may not add more.
MAX_STATE_KEYS = 1000


class Host(Protocol):
    """What the backend needs of the server (:class:`replay.server.Replay`)."""

    state: State
    feed: Feed
    runner: Runner

    async def refresh(self) -> Catalog | None:
        """The scenarios folder as it is now (None if it is missing)."""
        ...

    def last_catalog(self) -> Catalog | None:
        """The catalog as last read, without reading."""
        ...

    def react(self, frame: ClientFrame) -> None:
        """Start the reactions a client event that no run kept matches."""
        ...

    def share(self, frame: ClientFrame) -> None:
        """Give a client event this server's runs had to the other nodes of its cluster."""
        ...


#: Who changed the state, for a change a request made (``State.update``'s ``by``):
#: ``"route POST /break"``, ``"PUT /state"``.
ROUTE = "route"
PUT_STATE = "PUT /state"


def made_by_request(by: str) -> bool:
    """Whether a state change ``by`` this was a request's (a route's ``set``, ``PUT
    /state``), not a run's: in a cluster, only the node taking the request made it."""
    return by.startswith(f"{ROUTE} ") or by == PUT_STATE


class Backend:
    """One server's declared routes and its ``/state`` and ``/routes`` API."""

    def __init__(self, host: Host, token: str | None = None) -> None:
        self.host = host
        self.token = token
        self._protocol: object = _UNSEEN
        self._not_found: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None
        #: Set when the server stops: requests waiting for their latency are answered.
        self._closing = asyncio.Event()
        #: Requests waiting out their route's latency now.
        self.waiting = 0

    def close(self) -> None:
        """The server is stopping: requests waiting out their route's latency are
        answered 503 at once (uvicorn waits for open requests before it stops)."""
        self._closing.set()

    def declare(self, catalog: Catalog) -> None:
        """Take the state a newly read protocol file declares (see :meth:`State.declare`);
        nothing when the protocol file is the one already taken."""
        if catalog.protocol is self._protocol:
            return
        self._protocol = catalog.protocol
        self.host.state.declare(declared_state(catalog))

    def install(self, app: FastAPI) -> None:
        """Serve the declared routes and the state's API in ``app``. Call it once every
        other route has been added: declared routes come after replay's own."""
        self._add_api(app)
        # Requests no route of replay's takes, nor partly (a path of replay's with another
        # method), reach the router's default: today's 404 unless a route is declared.
        not_found = self._not_found = app.router.default

        async def default(scope: Scope, receive: Receive, send: Send) -> None:
            if not await self.serve(scope, receive, send):
                await not_found(scope, receive, send)

        app.router.default = default
        # A path of replay's with another method (POST /healthz) would be answered 405
        # before the default: this route takes it first, if one is declared.
        app.router.routes.append(_Declared(self))

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer an HTTP request with the declared route that takes it; False (and
        nothing sent) if none does."""
        if scope["type"] != "http":
            return False
        catalog = await self.host.refresh()
        found = find(declared(catalog), scope["method"], route_path(scope))
        if found is None:
            return False
        route, params = found
        request = Request(scope, receive)
        try:
            answer = await self._answer(route, params, request)
        except ClientDisconnect:
            return True  # the client left before its body came: no one to answer
        await answer(scope, receive, send)
        return True

    def matches(self, scope: Scope) -> bool:
        """Whether a declared route of the catalog as last read takes this request."""
        if scope["type"] != "http":
            return False
        routes = declared(self.host.last_catalog())
        return find(routes, scope["method"], route_path(scope)) is not None

    async def _answer(self, route: Route, params: dict[str, str], request: Request) -> Response:
        client = request.query_params.get("client_id") or request.headers.get(CLIENT_HEADER)
        if client is not None and not CLIENT_ID_PATTERN.match(client):
            detail = (
                f"{client[:80]!r} is not a client id: expected {CLIENT_ID_RULE} "
                f"(from ?client_id= or the {CLIENT_HEADER} header)"
            )
            return JSONAnswer({"detail": detail}, 422)
        client = client or DEFAULT_CLIENT
        seen = self._seen(route, params, request, await request.body())
        if route.latency > 0 and not await self._waited(route.latency):
            detail = "the server is shutting down: send the request again later"
            return JSONAnswer({"detail": detail}, 503, headers={"Connection": "close"})
        response, frame, runs = self._respond(route, seen, client)
        self.host.feed.publish(
            "http.request",
            method=seen.method,
            path=seen.path,
            route=route.path,
            message_type=route.key,
            status=response.status_code,
            client=client,
            query=dict(seen.query),
            params=dict(seen.params),
            endpoint=ENDPOINT,
            frame=frame.text,
            runs=runs,
        )
        return response

    async def _waited(self, seconds: float) -> bool:
        """Wait ``seconds`` on the runner's clock; False if the server began to stop."""
        clock = self.host.runner.clock
        slept = asyncio.ensure_future(clock.sleep_until(clock.now() + seconds))
        closing = asyncio.ensure_future(self._closing.wait())
        self.waiting += 1
        try:
            await asyncio.wait({slept, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting -= 1
            slept.cancel()
            closing.cancel()
        return not self._closing.is_set()

    def _respond(
        self, route: Route, seen: HttpRequest, client: str
    ) -> tuple[Response, ClientFrame, list[str]]:
        """Apply the route's ``set``, deliver the request as a client event (to the runs
        that may consume it, else to reactions), and render the answer with the new
        state. Also the runs that kept the event."""
        state = self.host.state
        rng = random.Random(random.SystemRandom().getrandbits(64))
        failed: TemplateFailed | None = None
        try:
            state.update(
                render_changes(route, template_names(seen, state, time.time(), rng)),
                f"{ROUTE} {route.key}",
            )
        except TemplateFailed as error:
            failed = error
        frame = seen.client_event(client, route)
        runs = self.host.runner.keep(frame)
        self.host.share(frame)
        if not runs:
            self.host.react(frame)
        if failed is None:
            try:
                made = render_answer(route, template_names(seen, state, time.time(), rng))
                return Response(made.body, made.status, headers=dict(made.headers)), frame, runs
            except TemplateFailed as error:
                failed = error
        log.warning("route %s: %s", route.key, failed)
        detail = f"route {route.key} (declared in the protocol file) failed: {failed}"
        return JSONAnswer({"detail": detail, "route": route.key}, 500), frame, runs

    def _seen(
        self, route: Route, params: dict[str, str], request: Request, body: bytes
    ) -> HttpRequest:
        """The request as templates and runs see it, without what carries the token."""
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            if name == "x-replay-token" or self._holds_token(value):
                continue
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        # The last of a repeated parameter, as Starlette's query_params[name] gives it.
        values = request.query_params
        query = {name: values[name] for name in values if not self._holds_token(values[name])}
        text, parsed = parse_body(body)
        path = route_path(request.scope)
        return HttpRequest(route.method, path, params, query, headers, text, parsed)

    def _holds_token(self, value: str) -> bool:
        return self.token is not None and self.token != "" and self.token in value

    def _add_api(self, app: FastAPI) -> None:
        """``GET /state``, ``PUT /state`` and ``GET /routes``."""

        @app.get("/state")
        async def get_state() -> dict[str, Any]:
            """The shared state's values: declared under ``state:`` in the protocol file,
            changed by routes' ``set``, by ``PUT /state`` and by ``POST /reset``."""
            await self.host.refresh()  # a protocol file just changed declares its state
            return self.host.state.snapshot()

        @app.put("/state", response_model=None)
        async def put_state(
            values: Annotated[dict[str, Any], Body(description="Keys to set, and their values.")],
        ) -> dict[str, Any] | JSONAnswer:
            """Set some of the state's keys (the others keep their values); answers the
            whole state."""
            await self.host.refresh()
            problem = check_values(values, self.host.state)
            if problem is not None:
                return JSONAnswer({"detail": problem}, 422)
            self.host.state.update(values, PUT_STATE)
            return self.host.state.snapshot()

        @app.get("/routes")
        async def list_routes() -> dict[str, Any]:
            """The HTTP routes the protocol file declares, in the order they are matched."""
            catalog = await self.host.refresh()
            return {"routes": [route.summary() for route in declared(catalog)]}


def check_values(values: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """Why ``PUT /state`` may not set ``values``, or None if it may."""
    for key in values:
        if not STATE_KEY.match(key):
            return f"{key[:80]!r} is not a state key: expected {STATE_KEY_RULE}"
    try:
        json.dumps(dict(values), allow_nan=False, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "values must be valid Unicode text: no half of a surrogate pair (\\ud800)"
    except ValueError:
        return "values must be plain JSON: no NaN or Infinity"
    keys = len(set(state) | set(values))
    if keys > MAX_STATE_KEYS:
        return f"the state would hold {keys} keys: it holds at most {MAX_STATE_KEYS}"
    return None


def route_path(scope: Scope) -> str:
    """The request's path as routes match it (without the app's ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path != root:
        return path[len(root) :]
    return path


class _Declared(BaseRoute):
    """The declared routes as one route of the application's router: it takes a request
    a declared route answers (as last read; :meth:`Backend.serve` reads again)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return (Match.FULL if self.backend.matches(scope) else Match.NONE), {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.backend.serve(scope, receive, send):
            not_found = self.backend._not_found
            assert not_found is not None
            await not_found(scope, receive, send)


_UNSEEN = object()
