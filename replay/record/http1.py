"""HTTP/1.1 messages on asyncio streams, as far as the recording proxy needs them: heads
read and parsed, bodies read whole (``Content-Length``, ``chunked``, or up to the end of
the connection) and messages written with a ``Content-Length``.

Parsing (:func:`parse_request_head`, :func:`parse_response_head`) and writing
(:func:`request_bytes`, :func:`response_bytes`) are pure; :func:`read_head` and
:func:`read_body` read from a :class:`asyncio.StreamReader`. Header names and values are
ISO-8859-1, as HTTP/1.1 has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from replay.errors import ReplayError

#: The largest request or response head: request line (or status line) and headers.
MAX_HEAD = 64 * 1024
#: The largest body the proxy takes, either way.
MAX_BODY = 10 * 1024 * 1024
_END_OF_HEAD = b"\r\n\r\n"
_CHUNK = 64 * 1024

Pairs = list[tuple[str, str]]


class HttpMessageInvalid(ReplayError):
    """An HTTP message the proxy cannot pass on; ``status`` is what the client is told."""

    def __init__(self, reason: str, status: int = 400) -> None:
        self.reason, self.status = reason, status
        super().__init__(reason)


@dataclass(frozen=True)
class RequestHead:
    """A request's line and headers, and the bytes they came in."""

    method: str
    target: str
    version: str
    headers: Pairs
    raw: bytes = b""


@dataclass(frozen=True)
class ResponseHead:
    """A response's status line and headers."""

    version: str
    status: int
    reason: str
    headers: Pairs


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case), or None."""
    wanted = name.lower()
    return next((value for key, value in headers if key.lower() == wanted), None)


def parse_request_head(raw: bytes) -> RequestHead:
    """A request head (up to and with its empty line); raises :class:`HttpMessageInvalid`."""
    first, headers = _lines(raw)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpMessageInvalid(f"not an HTTP/1.1 request line: {first[:80]!r}")
    method, target, version = parts
    return RequestHead(method, target, version, headers, raw)


def parse_response_head(raw: bytes) -> ResponseHead:
    """A response head; raises :class:`HttpMessageInvalid` (status 502: it is the
    upstream's)."""
    first, headers = _lines(raw, status=502)
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not (code.isdigit() and len(code) == 3):
        raise HttpMessageInvalid(f"not an HTTP/1.1 status line: {first[:80]!r}", 502)
    return ResponseHead(version, int(code), reason, headers)


def _lines(raw: bytes, status: int = 400) -> tuple[str, Pairs]:
    text = raw.decode("iso-8859-1")
    lines = text.split("\r\n")
    headers: Pairs = []
    for row in lines[1:]:
        if not row:
            continue
        name, colon, value = row.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpMessageInvalid(f"not a header line: {row[:80]!r}", status)
        headers.append((name, value.strip()))
    return lines[0], headers


async def read_head(reader: asyncio.StreamReader, status: int = 400) -> bytes:
    """The next message head, with its empty line; b"" if the connection ended before
    one began. Raises :class:`HttpMessageInvalid` for a head over :data:`MAX_HEAD`
    (431) or cut short."""
    try:
        return await reader.readuntil(_END_OF_HEAD)
    except asyncio.IncompleteReadError as error:
        if not error.partial.strip():
            return b""
        raise HttpMessageInvalid("the message head ended early", status) from None
    except asyncio.LimitOverrunError:
        raise HttpMessageInvalid(
            f"the message head is larger than {MAX_HEAD // 1024} KiB", 431 if status < 500 else 502
        ) from None


def no_body(method: str, status: int | None = None) -> bool:
    """Whether a response (to ``method``, with ``status``) has no body by definition."""
    if status is None:
        return False
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


async def read_body(
    reader: asyncio.StreamReader, headers: Pairs, *, to_eof: bool, status: int = 400
) -> bytes:
    """A whole body: by its ``Transfer-Encoding: chunked`` framing, its
    ``Content-Length``, else (``to_eof``: a response) up to the end of the connection.
    Raises :class:`HttpMessageInvalid` (413 for a request, 502 for a response) past
    :data:`MAX_BODY` or for a body cut short."""
    too_large = 413 if status < 500 else 502
    try:
        encoding = (header(headers, "transfer-encoding") or "").lower()
        if "chunked" in encoding:
            return await _read_chunked(reader, too_large)
        length = header(headers, "content-length")
        if length is not None:
            size = _length(length, status)
            if size > MAX_BODY:
                raise HttpMessageInvalid(_over(size), too_large)
            return await reader.readexactly(size)
        return await _read_to_eof(reader, too_large) if to_eof else b""
    except asyncio.IncompleteReadError:
        raise HttpMessageInvalid("the body ended early", status) from None
    except asyncio.LimitOverrunError:
        raise HttpMessageInvalid("a chunk's size line is too long", status) from None


def _length(text: str, status: int) -> int:
    if not text.strip().isdigit():
        raise HttpMessageInvalid(f"Content-Length {text!r} is not a number", status)
    return int(text)


def _over(size: int | None = None) -> str:
    got = f" ({size} bytes)" if size is not None else ""
    return f"the body is larger than {MAX_BODY // (1024 * 1024)} MiB{got}"


async def _read_chunked(reader: asyncio.StreamReader, too_large: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise HttpMessageInvalid(f"a bad chunk size line: {size_line[:40]!r}") from None
        if size == 0:
            break
        total += size
        if total > MAX_BODY:
            raise HttpMessageInvalid(_over(), too_large)
        parts.append(await reader.readexactly(size))
        await reader.readuntil(b"\n")
    while (await reader.readuntil(b"\n")).strip():  # trailer fields: not passed on
        pass
    return b"".join(parts)


async def _read_to_eof(reader: asyncio.StreamReader, too_large: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(_CHUNK):
        total += len(chunk)
        if total > MAX_BODY:
            raise HttpMessageInvalid(_over(), too_large)
        parts.append(chunk)
    return b"".join(parts)


def request_bytes(method: str, target: str, headers: Pairs, body: bytes) -> bytes:
    """A request with ``headers`` as given, then ``Content-Length`` (when there is a body
    or the method usually has one) and ``Connection: close``."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in headers)]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + body


def response_bytes(
    status: int, reason: str, headers: Pairs, body: bytes, *, length: bool = True
) -> bytes:
    """A response with ``headers`` as given, then ``Content-Length`` (unless ``length``
    is false: a HEAD answer keeps the upstream's) and ``Connection: close``."""
    lines = [f"HTTP/1.1 {status} {reason}".rstrip(), *(f"{n}: {v}" for n, v in headers)]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("iso-8859-1") + body


def plain_response(status: int, reason: str, text: str) -> bytes:
    """A short text/plain answer from the proxy itself (a 502, a 400...)."""
    body = (text.rstrip("\n") + "\n").encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    return response_bytes(status, reason, headers, body)
