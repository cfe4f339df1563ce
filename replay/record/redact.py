"""What a recording leaves out: secrets in headers, in the query and, where the user
names them, in payloads. Pure: the forwarded traffic is never changed, only what is
written.

- **Headers**: ``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``,
  and any header whose name contains ``token``, ``secret``, ``key``, ``auth``,
  ``session`` or ``passw`` (``X-Api-Key``, ``X-Auth-Token``, ``X-Session-Id``).
- **Query parameters** named like a secret (``token``, ``access_token``, ``api_key``,
  ``key``, ``password``, ``secret``, ``auth``, ``session``, ``sig``, ``signature``...:
  :data:`replay.logs.SECRET_NAMES`, the same rule replay's own logs follow).
- **Payloads**: the JSON paths given with ``--redact`` (:class:`PayloadPath`), looked up
  in text frames and HTTP bodies that are JSON. A string on the way that holds JSON
  (Schwarm's ``message``) is looked into.

A redacted value becomes ``"***"``, whatever it was.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from replay.errors import ReplayError
from replay.logs import REDACTED, SECRET_NAMES

__all__ = [
    "REDACTED",
    "PayloadPath",
    "RedactPathInvalid",
    "redact_headers",
    "redact_payload",
    "redact_query",
    "secret_header",
    "shown_target",
]

_SECRET_HEADER = re.compile(r"token|secret|key|auth|session|passw|cookie")
#: Any key of a mapping, any item of a list.
WILDCARD = "*"
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+|\*)\]")


class RedactPathInvalid(ReplayError):
    """A ``--redact`` path that does not parse."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(
            f"--redact {path!r} is not a JSON path: {reason} (write keys separated by dots, "
            "list items as [0], any key or item as *: message.token, $.data.users[*].email)"
        )


@dataclass(frozen=True)
class PayloadPath:
    """A JSON path to redact: keys from the root, ``[n]`` for list items, ``*`` for any
    key or item. ``message.token`` and ``$.message.token`` are the same path."""

    text: str
    segments: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> PayloadPath:
        """Parse ``text``; raises :class:`RedactPathInvalid`."""
        rest = text.strip()
        if rest.startswith("$"):
            rest = rest[1:].lstrip(".")
        if not rest:
            raise RedactPathInvalid(text, "it names no key")
        segments: list[str | int] = []
        position = 0
        while position < len(rest):
            found = _SEGMENT.match(rest, position)
            if found is None:
                raise RedactPathInvalid(text, f"unexpected {rest[position]!r}")
            key, index = found.groups()
            if key is not None:
                segments.append(key)
            else:
                segments.append(WILDCARD if index == WILDCARD else int(index))
            position = found.end()
            if position < len(rest) and rest[position] == ".":
                position += 1
                if position == len(rest) or rest[position] in ".[":
                    raise RedactPathInvalid(text, "an empty key")
        return cls(text, tuple(segments))


def secret_header(name: str) -> bool:
    """Whether a header's value is a secret (Authorization, Cookie, X-Api-Key...)."""
    return bool(_SECRET_HEADER.search(name.lower()))


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Headers as a recording keeps them: names in lower case, repeated headers joined
    with ", ", secrets replaced with ``***``."""
    kept: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if secret_header(lower):
            kept[lower] = REDACTED
        elif lower in kept:
            kept[lower] = f"{kept[lower]}, {value}"
        else:
            kept[lower] = value
    return kept


def redact_query(query: str) -> str:
    """A query string (without ``?``) with the value of every secret-looking parameter
    replaced with ``***``; everything else is kept exactly as sent."""
    if not query:
        return query
    pairs = query.split("&")
    for index, pair in enumerate(pairs):
        name, equals, _ = pair.partition("=")
        if equals and SECRET_NAMES.search(urllib.parse.unquote_plus(name).lower()):
            pairs[index] = f"{name}={REDACTED}"
    return "&".join(pairs)


def shown_target(target: str) -> str:
    """A request target (path and query) as logs show it: secrets in the query redacted."""
    path, _, query = target.partition("?")
    return f"{path}?{redact_query(query)}" if query else path


def redact_payload(text: str, paths: Sequence[PayloadPath]) -> str:
    """``text`` with the values at ``paths`` replaced with ``"***"`` if it is JSON and
    has any; otherwise ``text`` itself, unchanged."""
    if not paths:
        return text
    try:
        document = json.loads(text)
    except ValueError:
        return text
    changed = False
    for path in paths:
        document, hit = _redact(document, path.segments)
        changed = changed or hit
    return _dumps(document, text) if changed else text


def _redact(value: Any, segments: Sequence[str | int]) -> tuple[Any, bool]:
    """``value`` with what ``segments`` lead to redacted, and whether anything was."""
    if not segments:
        return REDACTED, True
    if isinstance(value, str):
        return _redact_inside(value, segments)
    head, rest = segments[0], segments[1:]
    if isinstance(value, dict):
        keys = list(value) if head == WILDCARD else [str(head)]
        return _redact_items(value, [k for k in keys if k in value], rest)
    if isinstance(value, list):
        if head == WILDCARD:
            return _redact_items(value, list(range(len(value))), rest)
        if isinstance(head, int) and head < len(value):
            return _redact_items(value, [head], rest)
    return value, False


def _redact_items(
    container: Any, keys: Sequence[Any], rest: Sequence[str | int]
) -> tuple[Any, bool]:
    changed = False
    for key in keys:
        container[key], hit = _redact(container[key], rest)
        changed = changed or hit
    return container, changed


def _redact_inside(text: str, segments: Sequence[str | int]) -> tuple[Any, bool]:
    """A string that holds JSON (an object or a list): redacted inside, still a string."""
    if not text.lstrip().startswith(("{", "[")):
        return text, False
    try:
        inner = json.loads(text)
    except ValueError:
        return text, False
    inner, changed = _redact(inner, segments)
    return (_dumps(inner, text), True) if changed else (text, False)


#: How JSON text is commonly written: JavaScript's JSON.stringify (compact, not ASCII
#: only), Python's json.dumps (spaced, ASCII only; Schwarm writes it so), and the others.
_STYLES: tuple[tuple[tuple[str, str], bool], ...] = (
    ((",", ":"), False),
    ((", ", ": "), True),
    ((", ", ": "), False),
    ((",", ":"), True),
)


def _dumps(document: Any, original: str) -> str:
    """``document`` as JSON text written the way ``original`` was (its separators and
    escapes), so that only the redacted values differ; compact if no style fits."""
    before = json.loads(original)
    separators, ascii_only = next(
        (
            (separators, ascii_only)
            for separators, ascii_only in _STYLES
            if json.dumps(before, separators=separators, ensure_ascii=ascii_only) == original
        ),
        _STYLES[0],
    )
    return json.dumps(document, separators=separators, ensure_ascii=ascii_only)
