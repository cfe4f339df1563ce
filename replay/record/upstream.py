"""Where ``replay record`` sends what a client asks for: the upstream's address, the
target of each request on it, and the headers that go on. Pure: no sockets.

The upstream is given as ``ws://HOST:PORT`` or ``wss://HOST:PORT`` (``http://`` and
``https://`` mean the same server), optionally with a path prefix (``ws://HOST/api``
sends a client's ``/ws`` to ``/api/ws``). WebSocket handshakes go to its ws(s) origin,
plain HTTP requests to its http(s) origin.

Headers go on as the client sent them, less the ones that describe one hop of the
connection (RFC 9110, section 7.6.1) and the ones the proxy writes itself for the next
hop: ``Host`` (the upstream's), the WebSocket handshake's keys, versions, extensions and
subprotocol list (the subprotocols the client offered are offered again), the body's
framing (``Content-Length``, ``Transfer-Encoding``) and ``Expect``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from replay.errors import ReplayError

Pairs = list[tuple[str, str]]

#: Headers never passed on (names in lower case); any ``Proxy-*`` header neither.
NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "expect",
        "sec-websocket-key",
        "sec-websocket-accept",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
    }
)
_SCHEMES = {"ws": False, "http": False, "wss": True, "https": True}


class UpstreamInvalid(ReplayError):
    """``--upstream`` is not the address of a server."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(
            f"--upstream {url!r} is not a server's address: {reason} "
            "(give ws://HOST:PORT or wss://HOST:PORT, optionally with a path prefix)"
        )


@dataclass(frozen=True)
class Upstream:
    """The server behind the proxy."""

    secure: bool
    host: str
    port: int
    #: A path prefix put before every client path: "" or "/api" (no trailing slash).
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Upstream:
        """``ws://HOST:PORT[/PREFIX]`` (or wss, http, https) as an upstream; raises
        :class:`UpstreamInvalid`."""
        try:
            parts = urllib.parse.urlsplit(url.strip())
            port = parts.port
        except ValueError as error:
            raise UpstreamInvalid(url, str(error)) from None
        if parts.scheme.lower() not in _SCHEMES:
            raise UpstreamInvalid(url, f"the scheme {parts.scheme or '(none)'!r} is not ws or wss")
        if not parts.hostname:
            raise UpstreamInvalid(url, "it has no host")
        if parts.username is not None:
            raise UpstreamInvalid(url, "credentials in the address are not supported")
        if parts.query or parts.fragment:
            raise UpstreamInvalid(url, "a query or fragment has no meaning here")
        secure = _SCHEMES[parts.scheme.lower()]
        return cls(secure, parts.hostname, port or (443 if secure else 80), parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        """``host:port`` as it goes in a URL and a Host header (the port left out when it
        is the scheme's default)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The upstream's WebSocket URL, with its prefix."""
        return f"{'wss' if self.secure else 'ws'}://{self.netloc}{self.prefix}"

    @property
    def http_url(self) -> str:
        """The upstream's HTTP URL, with its prefix: where plain requests go."""
        return f"{'https' if self.secure else 'http'}://{self.netloc}{self.prefix}"

    def target(self, client_target: str) -> str:
        """The request target on the upstream for the one a client asked the proxy for
        (path and query, as sent)."""
        if not client_target.startswith("/"):
            client_target = "/" + client_target
        return self.prefix + client_target


def split_target(target: str) -> tuple[str, str]:
    """A request target's path and query (without the ``?``), as sent."""
    path, _, query = target.partition("?")
    return path or "/", query


def query_value(query: str, name: str) -> str | None:
    """The first value of the query parameter ``name``, decoded, or None."""
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


def connection_options(headers: Iterable[tuple[str, str]]) -> set[str]:
    """The header names a ``Connection`` header lists (they describe this hop only)."""
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(part.strip().lower() for part in value.split(",") if part.strip())
    return named


def forwarded(headers: Iterable[tuple[str, str]]) -> Pairs:
    """The headers to pass on to the next hop: all but hop-by-hop ones, ``Proxy-*``, the
    ones the proxy writes itself, and any a ``Connection`` header names."""
    pairs = list(headers)
    named = connection_options(pairs)
    return [
        (name, value)
        for name, value in pairs
        if (lower := name.lower()) not in NOT_FORWARDED
        and lower not in named
        and not lower.startswith("proxy-")
    ]


def offered_subprotocols(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The subprotocols a client offered (``Sec-WebSocket-Protocol``), in its order."""
    offered: list[str] = []
    for name, value in headers:
        if name.lower() == "sec-websocket-protocol":
            offered += [part.strip() for part in value.split(",") if part.strip()]
    return offered


def is_websocket_upgrade(method: str, headers: Iterable[tuple[str, str]]) -> bool:
    """Whether a request asks for a WebSocket (a GET with ``Upgrade: websocket``)."""
    if method != "GET":
        return False
    return any(
        name.lower() == "upgrade" and "websocket" in value.lower().replace(" ", "").split(",")
        for name, value in headers
    )
