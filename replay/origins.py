"""Which web pages may call replay's HTTP API: the ``Origin`` allow-list.

One policy serves both the guard that refuses requests from other pages before any route
runs (:class:`replay.guard.BrowserGuard`; CORS alone only hides the answer from the page,
while the request has already played) and the CORS answers (:class:`Cors`), so the two
never disagree.

Allowed by default: the server's own pages (an ``Origin`` naming the host and port the
request was sent to) and pages served from this machine's loopback names (``http`` or
``https``, ``localhost``, ``*.localhost``, 127.0.0.0/8, ``[::1]``, any port): a frontend's
dev server on ``localhost:5173`` calls replay, a page on ``evil.example`` does not.
``--cors-origin ORIGIN`` adds origins; ``--cors-origin '*'`` allows any page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from replay.hosts import is_loopback, split_authority

#: What ``--cors-origin '*'`` says: any page may call the API.
ANY = "*"
#: The schemes of web origins, with their default ports.
DEFAULT_PORTS = {"http": 80, "https": 443}


def split_origin(origin: str) -> tuple[str, str, int] | None:
    """The scheme, host and port (the scheme's default if not given) of a web origin such
    as ``http://localhost:5173``, or None if it is not an http(s) origin (``null``, a
    ``file://`` page, anything malformed)."""
    scheme, separator, authority = origin.strip().partition("://")
    scheme = scheme.lower()
    if not separator or scheme not in DEFAULT_PORTS:
        return None
    split = split_authority(authority.removesuffix("/"))
    if split is None:
        return None
    host, port = split
    return scheme, host, DEFAULT_PORTS[scheme] if port is None else port


def normal(origin: str) -> str:
    """``origin`` as compared: lower case, without a final slash or a default port."""
    split = split_origin(origin)
    if split is None:
        return origin.strip().lower().removesuffix("/")
    scheme, host, port = split
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")


@dataclass(frozen=True)
class OriginPolicy:
    """The page origins allowed to call the HTTP API; see the module's description."""

    #: Origins added with --cors-origin, as :func:`normal` gives them.
    extra: frozenset[str] = frozenset()
    #: Whether any page may (--cors-origin '*').
    any_origin: bool = False

    @classmethod
    def of(cls, origins: Sequence[str]) -> OriginPolicy:
        """The policy for the ``--cors-origin`` values ``origins``."""
        if any(origin.strip() == ANY for origin in origins):
            return cls(any_origin=True)
        return cls(frozenset(normal(origin) for origin in origins))

    def allows_page(self, origin: str) -> bool:
        """Whether pages of ``origin`` may call the API from another origin (what CORS
        answers): loopback origins and those added."""
        if self.any_origin or normal(origin) in self.extra:
            return True
        split = split_origin(origin)
        return split is not None and is_loopback(split[1])

    def allows(self, origin: str, host: str | None) -> bool:
        """Whether a request with this ``Origin`` header, sent to ``host`` (its Host
        header), may go on: :meth:`allows_page`, or the server's own pages."""
        return self.allows_page(origin) or _same_origin(origin, host)


def _same_origin(origin: str, host: str | None) -> bool:
    split, authority = split_origin(origin), split_authority(host or "")
    if split is None or authority is None:
        return False
    scheme, name, port = split
    # http or https alike: behind a TLS proxy the page is https and the Host the same.
    return authority[0] == name and (authority[1] or DEFAULT_PORTS[scheme]) == port


class Cors(CORSMiddleware):
    """Starlette's CORS middleware answering from an :class:`OriginPolicy`.

    Credentials are allowed (the dashboard's token may be a cookie); an allowed origin is
    echoed back, never ``*``, which browsers refuse with credentials.
    """

    def __init__(self, app: ASGIApp, policy: OriginPolicy) -> None:
        super().__init__(
            app,
            allow_origins=[ANY] if policy.any_origin else sorted(policy.extra),
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
        )
        self.policy = policy

    def is_allowed_origin(self, origin: str) -> bool:
        return self.policy.allows_page(origin)
