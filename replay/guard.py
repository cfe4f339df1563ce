"""Who may drive replay and who may connect: the token, web pages, WebSocket origins, the
client limit.

- :class:`TokenGuard`: with a token set, every HTTP route but the open ones
  (:data:`OPEN_PATHS`: liveness, the dashboard's and the API docs' pages) answers 401
  unless the request carries the token.
- :class:`BrowserGuard`: refuses requests addressed to a name the server does not answer
  to (:mod:`replay.hosts`, DNS rebinding) and requests from other sites' pages
  (:mod:`replay.origins`) before any route runs.
- :class:`WebSocketGate`: serves the WebSocket endpoints itself, before routing and the
  other middleware (each of thousands of idle connections would otherwise hold their
  frames), refusing unknown Host names, origins not on the allow-list and clients over
  the limit.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from replay.hosts import HostPolicy
from replay.origins import OriginPolicy

#: HTTP paths anyone may read: liveness, and pages that hold no data of their own (the
#: dashboard asks for the token before it loads anything).
OPEN_PATHS = frozenset(
    {"/healthz", "/", "/viewer", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
#: Files anyone may read: the dashboard's, and the API docs' scripts and styles.
OPEN_PREFIXES = ("/ui/", "/docs/assets/")
#: Close code for a client refused because the server has as many as it allows.
CLOSE_TRY_LATER = 1013
#: The cookie the dashboard may carry the token in.
TOKEN_COOKIE = "replay_token"
#: Methods that change something: refused from other sites' pages on every path.
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The longest header value a refusal repeats back.
SHOWN = 200


def presented_token(scope: Scope) -> str | None:
    """The token a request carries: ``Authorization: Bearer T``, ``X-Replay-Token: T``,
    ``?token=T`` (what a browser's EventSource can send) or the ``replay_token`` cookie."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, credentials = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
        elif name == b"x-replay-token":
            return str(value.decode("latin-1")).strip()
    query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
    if query.get("token"):
        return str(query["token"][0])
    for name, value in scope.get("headers", []):
        # Starlette's lenient parser: browsers send every cookie of the host, and one odd
        # cookie must not hide the token (SimpleCookie drops the whole header then).
        if name == b"cookie":
            cookies = cookie_parser(bytes(value).decode("latin-1"))
            if TOKEN_COOKIE in cookies:
                return cookies[TOKEN_COOKIE]
    return None


def token_matches(presented: str | None, token: str) -> bool:
    """Whether ``presented`` is the token (compared in constant time)."""
    return presented is not None and hmac.compare_digest(presented.encode(), token.encode())


class TokenGuard:
    """ASGI middleware: with ``token`` set, HTTP requests to control routes need it."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token
            and scope["type"] == "http"
            and scope["method"] != "OPTIONS"  # CORS preflights carry no credentials
            and not _open(scope["path"])
            and not token_matches(presented_token(scope), self.token)
        ):
            refusal = JSONResponse(
                {
                    "detail": "this server needs its token: send 'Authorization: Bearer "
                    "<token>' (or add ?token=<token> to the URL); replay serve was started "
                    "with --token or REPLAY_TOKEN"
                },
                401,
                headers={"WWW-Authenticate": 'Bearer realm="replay"'},
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class BrowserGuard:
    """ASGI middleware: what a web page in the developer's browser may not do.

    - A request (HTTP or WebSocket) whose ``Host`` header names a host ``hosts`` does not
      allow is refused with 403: a page that rebound its own name to this machine.
    - An HTTP request from another page (an ``Origin`` header ``origins`` does not allow,
      or ``Sec-Fetch-Site: cross-site`` without an Origin) is refused with 403 if it may
      change something (POST, PUT, PATCH, DELETE, on any path) or reads data (every path
      but the open pages, :data:`OPEN_PATHS`). CORS alone would only hide the answer
      from the page: a "no-cors" form POST would still have played. A link followed from
      another site (a top-level GET navigation) still opens: the page that linked cannot
      read what it shows.

    Requests that no browser sent (no Origin, no Sec-Fetch-Site: curl, the CLI, tests)
    pass, as do CORS preflights, which :class:`replay.origins.Cors` answers outside this.
    """

    def __init__(self, app: ASGIApp, hosts: HostPolicy, origins: OriginPolicy) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = host_refusal(self.hosts, headers)
        if refusal is None and scope["type"] == "http":
            refusal = self._cross_site_refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await _refuse_handshake(send)
        else:
            await JSONResponse({"detail": refusal}, 403)(scope, receive, send)

    def _cross_site_refusal(self, scope: Scope, headers: Headers) -> str | None:
        method = scope["method"]
        if self.origins.any_origin or (method not in STATE_CHANGING and _open(scope["path"])):
            return None
        origins = headers.getlist("origin")
        host = headers.get("host")
        for origin in origins:
            if not self.origins.allows(origin, host):
                return (
                    f"this server does not take requests from pages of {_shown(origin)} "
                    "(only from its own pages, pages on localhost and origins given with "
                    "--cors-origin): another site's page must not play scenarios or read "
                    "what clients send. If that page is yours, start replay serve with "
                    f"--cors-origin {_shown(origin)} (repeatable; --cors-origin '*' "
                    "allows any page)"
                )
        if not origins and headers.get("sec-fetch-site") == "cross-site":
            navigation = (
                method in ("GET", "HEAD")
                and headers.get("sec-fetch-mode") == "navigate"
                and headers.get("sec-fetch-dest") == "document"
            )
            if not navigation:
                return (
                    "this server does not take requests from other sites' pages "
                    "(Sec-Fetch-Site: cross-site): open the address yourself, or let the "
                    "page's origin in with --cors-origin ORIGIN"
                )
        return None


def host_refusal(hosts: HostPolicy, headers: Headers) -> str | None:
    """Why a request with these headers is refused for its ``Host``, or None if it is not."""
    for host in headers.getlist("host"):
        if not hosts.allows(host):
            return hosts.refusal(host)
    if len(headers.getlist("host")) > 1:
        return "a request has one Host header, not several"
    return None


async def _refuse_handshake(send: Send) -> None:
    """Refuse a WebSocket handshake: HTTP 403, with no body. (A browser shows a page no
    more than "failed" either way; and uvicorn logs an error for each handshake refused
    with a body, ASGI's denial response.)"""
    await send({"type": "websocket.close", "code": 1008})  # before accepting: HTTP 403


def _shown(value: str) -> str:
    """A header value, quoted, as a refusal repeats it (at most SHOWN characters)."""
    return repr(value if len(value) <= SHOWN else value[:SHOWN] + "...")


class WebSocketGate:
    """ASGI middleware that serves replay's WebSocket endpoints itself.

    ``endpoints`` maps a path to the coroutine that serves a connection (a manager's
    ``serve``); it is looked at on each handshake, so its owner may change it (a protocol
    file that declares a new endpoint). A handshake whose ``Host`` header ``hosts`` does
    not allow (see :class:`BrowserGuard`) is refused with HTTP 403, as is one from a browser page
    whose ``Origin`` is not in ``origins``
    (when that list is not empty) is refused with HTTP 403; clients without an Origin
    header (not browsers) are let in. Once ``count()`` reaches ``max_clients``, a new
    client is accepted and closed at once with 1013 (try again later), which a browser
    can see, unlike an HTTP status. ``refused(reason)`` is told of each refusal.
    Other paths, and every HTTP request, go on to the app.
    """

    def __init__(
        self,
        app: ASGIApp,
        endpoints: Mapping[str, Callable[[WebSocket], Awaitable[None]]],
        origins: Sequence[str] = (),
        max_clients: int | None = None,
        count: Callable[[], int] = lambda: 0,
        refused: Callable[[str], None] = lambda reason: None,
        hosts: HostPolicy | None = None,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.endpoints = endpoints
        self.origins = {origin.rstrip("/") for origin in origins}
        self.max_clients = max_clients
        self.count = count
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        serve = self.endpoints.get(scope["path"]) if scope["type"] == "websocket" else None
        if serve is None:
            await self.app(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        refusal = None if self.hosts is None else host_refusal(self.hosts, websocket.headers)
        if refusal is not None:
            self.refused("host")
            await _refuse_handshake(send)
            return
        origin = websocket.headers.get("origin")
        if self.origins and origin is not None and origin.rstrip("/") not in self.origins:
            self.refused("origin")
            await _refuse_handshake(send)
            return
        if self.max_clients is not None and self.count() >= self.max_clients:
            self.refused("limit")
            await websocket.accept()
            await websocket.close(CLOSE_TRY_LATER, f"too many clients (limit {self.max_clients})")
            return
        await serve(websocket)
