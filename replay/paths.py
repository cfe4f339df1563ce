"""The paths of declared HTTP routes: their grammar, and which requests they match.

A path starts with ``/`` and is made of segments, each whole: a literal (letters, digits
and ``-._~!$&'()*+,;=:@``), a parameter ``{name}`` (any one non-empty segment), or, as
the last segment, ``{name:path}`` (the rest of the path, slashes included, even nothing).
A final ``/`` is part of the path (``/stream/`` is not ``/stream``). Paths are matched
against requests' paths as the server received them, percent-escapes decoded, with the
regular expressions Starlette builds for the same paths.

:func:`overlap` tells whether two paths could match the same request (a declared route
may not take requests meant for one of replay's own), :func:`covers` whether one matches
every request the other does (a route declared after one that covers it is never
answered). Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal, NamedTuple

from replay.errors import PathRefused

#: What a path may be, for error messages.
PATH_RULE = (
    "a path such as /spans or /spans/{id}: segments of letters, digits and -._~!$&'()*+,;=:@, "
    "or parameters {name} (one segment) and, last, {name:path} (the rest)"
)
_LITERAL = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@]*$")
_PARAMETER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]*))?\}$")


class Segment(NamedTuple):
    """One segment of a path: a ``literal``, a ``param`` (one non-empty segment) or the
    ``rest`` of the path (anything, slashes included, even nothing). ``text`` is the
    literal, or the parameter's name."""

    kind: Literal["literal", "param", "rest"]
    text: str


def segments(path: str) -> tuple[Segment, ...]:
    """A path's segments; raises :class:`PathRefused` for a path that is not one."""
    if not path.startswith("/"):
        raise PathRefused(path, "a route's path starts with '/'", PATH_RULE)
    if "?" in path or "#" in path:
        raise PathRefused(
            path,
            "a route's path has no query or fragment: a route matches any query string, "
            "which templates read as request.query.NAME",
            PATH_RULE,
        )
    parts = path[1:].split("/")
    found: list[Segment] = []
    for index, part in enumerate(parts):
        segment = _segment(path, part, last=index == len(parts) - 1)
        if segment.kind != "literal" and any(segment.text == other.text for other in found):
            message = f"parameter {segment.text!r} appears twice in the path"
            raise PathRefused(path, message, PATH_RULE)
        found.append(segment)
    return tuple(found)


def _segment(path: str, part: str, last: bool) -> Segment:
    if part == "" and not last:
        raise PathRefused(path, "a route's path has an empty segment ('//')", PATH_RULE)
    parameter = _PARAMETER.match(part)
    if parameter is not None:
        name, kind = parameter.group(1), parameter.group(2)
        if kind in (None, "str"):
            return Segment("param", name)
        if kind == "path" and last:
            return Segment("rest", name)
        if kind == "path":
            message = f"{{{name}:path}} takes the rest of the path: it must be the last segment"
            raise PathRefused(path, message, PATH_RULE)
        raise PathRefused(
            path,
            f"unknown parameter type {kind!r} in {part!r}",
            "{name} (one segment) or {name:path} (the rest of the path)",
        )
    if "{" in part or "}" in part:
        message = f"a parameter must be a whole segment, like /spans/{{id}}; found {part!r}"
        raise PathRefused(path, message, PATH_RULE)
    if not _LITERAL.match(part):
        bad = next(char for char in part if not _LITERAL.match(char))
        why = " (requests' paths are matched unescaped: write the character itself)"
        message = f"a route's path cannot hold {bad!r}" + (why if bad == "%" else "")
        raise PathRefused(path, message, PATH_RULE)
    return Segment("literal", part)


@lru_cache(maxsize=1024)
def pattern(path: str) -> re.Pattern[str]:
    """The regular expression requests' paths are matched with (as Starlette's for the
    same path); raises :class:`PathRefused`."""
    source = ""
    for segment in segments(path):
        if segment.kind == "literal":
            source += "/" + re.escape(segment.text)
        elif segment.kind == "param":
            source += f"/(?P<{segment.text}>[^/]+)"
        else:
            source += f"/(?P<{segment.text}>.*)"
    return re.compile(source, re.DOTALL)


def overlap(a: Sequence[Segment], b: Sequence[Segment]) -> bool:
    """Whether some request path matches both ``a`` and ``b``."""
    if not a or not b:
        return not a and not b
    if a[0].kind == "rest" or b[0].kind == "rest":
        return True
    if a[0].kind == "literal" and b[0].kind == "literal":
        return a[0].text == b[0].text and overlap(a[1:], b[1:])
    literal = next((s for s in (a[0], b[0]) if s.kind == "literal"), None)
    # A parameter matches any non-empty segment.
    return (literal is None or literal.text != "") and overlap(a[1:], b[1:])


def covers(a: Sequence[Segment], b: Sequence[Segment]) -> bool:
    """Whether ``a`` matches every request path ``b`` matches."""
    if not a or not b:
        return not a and not b
    if a[0].kind == "rest":
        return True
    if b[0].kind == "rest":
        return False
    if a[0].kind == "param":
        return (b[0].kind == "param" or b[0].text != "") and covers(a[1:], b[1:])
    return b[0].kind == "literal" and a[0].text == b[0].text and covers(a[1:], b[1:])
