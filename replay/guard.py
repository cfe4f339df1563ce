"""Who may drive replay and who may connect: the token, WebSocket origins, the client limit.

- :class:`TokenGuard`: with a token set, every HTTP route but the open ones
  (:data:`OPEN_PATHS`: liveness, the dashboard's and the API docs' pages) answers 401
  unless the request carries the token.
- :class:`WebSocketGate`: serves the WebSocket endpoints itself, before routing and the
  other middleware (each of thousands of idle connections would otherwise hold their
  frames), refusing origins not on the allow-list and clients over the limit.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import parse_qs

from starlette.requests import cookie_parser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

#: HTTP paths anyone may read: liveness, and pages that hold no data of their own (the
#: dashboard asks for the token before it loads anything).
OPEN_PATHS = frozenset(
    {"/healthz", "/", "/viewer", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
OPEN_PREFIXES = ("/ui/",)
#: Close code for a client refused because the server has as many as it allows.
CLOSE_TRY_LATER = 1013
#: The cookie the dashboard may carry the token in.
TOKEN_COOKIE = "replay_token"


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


class WebSocketGate:
    """ASGI middleware that serves replay's WebSocket endpoints itself.

    ``endpoints`` maps a path to the coroutine that serves a connection (a manager's
    ``serve``). A handshake from a browser page whose ``Origin`` is not in ``origins``
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
    ) -> None:
        self.app = app
        self.endpoints = dict(endpoints)
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
        origin = websocket.headers.get("origin")
        if self.origins and origin is not None and origin.rstrip("/") not in self.origins:
            self.refused("origin")
            await websocket.close(1008)  # before accepting: the handshake gets HTTP 403
            return
        if self.max_clients is not None and self.count() >= self.max_clients:
            self.refused("limit")
            await websocket.accept()
            await websocket.close(CLOSE_TRY_LATER, f"too many clients (limit {self.max_clients})")
            return
        await serve(websocket)
