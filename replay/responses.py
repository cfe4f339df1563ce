"""JSON answers that always encode.

Python strings may hold lone surrogates (a JSON body's ``"\\ud800"`` escape decodes into
one), which UTF-8 cannot encode: Starlette's ``JSONResponse`` then fails with a 500, and
an answer that repeats a bad request (a 422 echoing its input) or lists what a client
sent would fail every time it is asked for. :class:`JSONAnswer` writes such text as JSON
``\\uXXXX`` escapes instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.responses import JSONResponse

#: How deep :func:`json_bytes` splits an answer: the answer, its fields, and their items
#: (a scenario page's steps and cues) are encoded one by one, each item whole.
SPLIT_DEPTH = 2


class JSONAnswer(JSONResponse):
    """A JSON response, as Starlette writes it, that never fails to encode."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            # ASCII escapes carry any string, lone surrogates included.
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def json_bytes(content: Any) -> bytes:
    """``content`` as :class:`JSONAnswer` writes it, encoded piece by piece: the C
    encoder holds the interpreter while it runs, so encoding a long answer at once (a
    scenario page of 10,000 cues takes about 50 ms) in a thread would hold up the event
    loop all the same; between pieces, the loop gets its turn."""
    try:
        return _joined(_pieces(content, SPLIT_DEPTH, False), "utf-8")
    except UnicodeEncodeError:
        return _joined(_pieces(content, SPLIT_DEPTH, True), "ascii")


#: Characters of an answer joined and encoded at once (joining and encoding a page of
#: megabytes at once would be milliseconds in one call into C).
BATCH_CHARS = 64 * 1024


def _joined(pieces: Iterator[str], encoding: str) -> bytes:
    encoded: list[bytes] = []
    batch: list[str] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= BATCH_CHARS:
            encoded.append("".join(batch).encode(encoding))
            batch, size = [], 0
    encoded.append("".join(batch).encode(encoding))
    return b"".join(encoded)


def _pieces(value: Any, depth: int, ascii: bool) -> Iterator[str]:
    if depth and isinstance(value, dict) and value:
        separator = "{"
        for key, item in value.items():
            name = key if isinstance(key, str) else json.dumps(key)  # as json writes keys
            yield separator + _dumps(name, ascii) + ":"
            yield from _pieces(item, depth - 1, ascii)
            separator = ","
        yield "}"
    elif depth and isinstance(value, list | tuple) and value:
        separator = "["
        for item in value:
            yield separator
            yield from _pieces(item, depth - 1, ascii)
            separator = ","
        yield "]"
    else:
        yield _dumps(value, ascii)


def _dumps(value: Any, ascii: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii, allow_nan=False, separators=(",", ":"))
