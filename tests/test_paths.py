"""Declared routes' paths: the grammar, the patterns requests are matched with, and which
paths could match the same request (no I/O)."""

from __future__ import annotations

import hypothesis
import pytest
from hypothesis import strategies as st
from starlette.routing import compile_path

from replay.errors import PathRefused
from replay.paths import PATH_RULE, Segment, covers, overlap, pattern, segments


def test_segments_of_a_path() -> None:
    assert segments("/") == (Segment("literal", ""),)
    assert segments("/spans/{id}") == (Segment("literal", "spans"), Segment("param", "id"))
    assert segments("/stream/") == (Segment("literal", "stream"), Segment("literal", ""))
    assert segments("/files/{rest:path}") == (
        Segment("literal", "files"),
        Segment("rest", "rest"),
    )
    assert segments("/a/{x:str}") == (Segment("literal", "a"), Segment("param", "x"))


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("spans", "a route's path starts with '/'"),
        ("/a#b", "a route's path has no query or fragment"),
        ("/a//b", "a route's path has an empty segment ('//')"),
        ("/{a}/x/{a:path}", "parameter 'a' appears twice in the path"),
        ("/x/{y}z", "a parameter must be a whole segment"),
        ("/x/{y", "a parameter must be a whole segment"),
        ("/x/{y:uuid}", "unknown parameter type 'uuid' in '{y:uuid}'"),
        ("/a\\b", "a route's path cannot hold '\\\\'"),
    ],
)
def test_paths_that_are_not_refuse_with_a_reason(path: str, reason: str) -> None:
    with pytest.raises(PathRefused) as refused:
        segments(path)
    assert refused.value.reason.startswith(reason)
    assert refused.value.path == path
    assert refused.value.expected in (
        PATH_RULE,
        "{name} (one segment) or {name:path} (the rest of the path)",
    )


@pytest.mark.parametrize(
    ("path", "request_path", "params"),
    [
        ("/spans/{id}", "/spans/1a", {"id": "1a"}),
        ("/spans/{id}", "/spans/", None),
        ("/spans/{id}", "/spans/a/b", None),
        ("/files/{rest:path}", "/files/a/b/", {"rest": "a/b/"}),
        ("/files/{rest:path}", "/files", None),
        ("/", "/", {}),
        ("/stream/", "/stream", None),
        ("/a.b", "/aXb", None),
    ],
)
def test_patterns_match_as_starlettes_do(
    path: str, request_path: str, params: dict[str, str] | None
) -> None:
    found = pattern(path).fullmatch(request_path)
    assert (found.groupdict() if found else None) == params
    starlette, _, _ = compile_path(path)
    theirs = starlette.match(request_path)
    assert (theirs.groupdict() if theirs else None) == params


@pytest.mark.parametrize(
    ("a", "b", "meet"),
    [
        ("/spans/{id}", "/spans/latest", True),
        ("/spans/{id}", "/spans/", False),  # a parameter is never empty
        ("/spans", "/spans/{id}", False),
        ("/ui/{p:path}", "/ui/", True),  # the rest may be empty
        ("/ui/{p:path}", "/ui", False),
        ("/{a}/x", "/y/{b}", True),
        ("/{a}/x", "/y/z", False),
        ("/{all:path}", "/anything/at/all", True),
    ],
)
def test_overlap(a: str, b: str, meet: bool) -> None:
    assert overlap(segments(a), segments(b)) is meet
    assert overlap(segments(b), segments(a)) is meet


@pytest.mark.parametrize(
    ("a", "b", "covered"),
    [
        ("/spans/{id}", "/spans/latest", True),
        ("/spans/latest", "/spans/{id}", False),
        ("/spans/{id}", "/spans/{other}", True),
        ("/files/{p:path}", "/files/{q}/x", True),
        ("/files/{q}/x", "/files/{p:path}", False),
        ("/{a}", "/", False),
        ("/files/{p:path}", "/files", False),
    ],
)
def test_covers(a: str, b: str, covered: bool) -> None:
    assert covers(segments(a), segments(b)) is covered


_PART = st.sampled_from(["a", "b", "", "{x}", "{y}"])


@hypothesis.given(
    st.lists(_PART, min_size=1, max_size=4),
    st.lists(_PART, min_size=1, max_size=4),
    st.booleans(),
    st.lists(st.sampled_from(["a", "b", "c", ""]), min_size=1, max_size=5),
)
def test_overlap_and_covers_agree_with_matching(
    left: list[str], right: list[str], rest: bool, request_parts: list[str]
) -> None:
    """Whatever request both patterns match, they overlap; whatever the covered one
    matches, the covering one does too."""
    paths = []
    for parts in (left, right):
        parts = [part for index, part in enumerate(parts) if part or index == len(parts) - 1]
        named = [part.replace("x", f"x{i}").replace("y", f"y{i}") for i, part in enumerate(parts)]
        path = "/" + "/".join(named)
        if rest and path.endswith("/"):
            path += "{r:path}"
        paths.append(path)
    try:
        a, b = (segments(path) for path in paths)
    except PathRefused:
        return
    request = "/" + "/".join(request_parts)
    in_a = pattern(paths[0]).fullmatch(request) is not None
    in_b = pattern(paths[1]).fullmatch(request) is not None
    if in_a and in_b:
        assert overlap(a, b)
    if covers(a, b) and in_b:
        assert in_a
