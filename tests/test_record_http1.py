"""HTTP/1.1 heads and bodies as the recording proxy reads and writes them."""

from __future__ import annotations

import asyncio

import pytest

import replay.record.http1 as http1
from replay.record.http1 import (
    HttpMessageInvalid,
    header,
    no_body,
    parse_request_head,
    parse_response_head,
    plain_response,
    read_body,
    read_head,
    request_bytes,
    response_bytes,
)


def reader_of(data: bytes, limit: int = 2**16) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def test_a_request_head_parses() -> None:
    raw = b"GET /ws?a=1 HTTP/1.1\r\nHost: x\r\nX-Name:  caf\xe9 \r\n\r\n"
    head = parse_request_head(raw)
    assert (head.method, head.target, head.version) == ("GET", "/ws?a=1", "HTTP/1.1")
    assert head.headers == [("Host", "x"), ("X-Name", "café")]
    assert head.raw == raw
    assert header(head.headers, "x-name") == "café"
    assert header(head.headers, "missing") is None


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /\r\n\r\n",
        b"GET / HTTP/2\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"GET / HTTP/1.1\r\n x: y\r\n\r\n",
    ],
)
def test_request_heads_that_do_not_parse(raw: bytes) -> None:
    with pytest.raises(HttpMessageInvalid) as problem:
        parse_request_head(raw)
    assert problem.value.status == 400


def test_a_response_head_parses() -> None:
    head = parse_response_head(b"HTTP/1.1 404 Not Found\r\nA: b\r\n\r\n")
    assert (head.status, head.reason, head.headers) == (404, "Not Found", [("A", "b")])
    assert parse_response_head(b"HTTP/1.0 204\r\n\r\n").reason == ""
    with pytest.raises(HttpMessageInvalid) as problem:
        parse_response_head(b"HTTP/1.1 abc OK\r\n\r\n")
    assert problem.value.status == 502


async def test_heads_are_read_whole_or_refused() -> None:
    assert await read_head(reader_of(b"GET / HTTP/1.1\r\n\r\nrest")) == b"GET / HTTP/1.1\r\n\r\n"
    assert await read_head(reader_of(b"")) == b""
    with pytest.raises(HttpMessageInvalid, match="ended early"):
        await read_head(reader_of(b"GET / HTTP/1.1\r\n"))
    with pytest.raises(HttpMessageInvalid, match="larger than") as problem:
        await read_head(reader_of(b"GET /" + b"x" * 200, limit=64))
    assert problem.value.status == 431


async def test_bodies_by_length_chunks_or_to_the_end() -> None:
    length = [("Content-Length", "5")]
    assert await read_body(reader_of(b"hello!"), length, to_eof=False) == b"hello"
    chunked = [("Transfer-Encoding", "chunked")]
    data = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
    assert await read_body(reader_of(data), chunked, to_eof=False) == b"abcde"
    assert await read_body(reader_of(b"all of it"), [], to_eof=True) == b"all of it"
    assert await read_body(reader_of(b"ignored"), [], to_eof=False) == b""


@pytest.mark.parametrize(
    ("headers", "data", "reason"),
    [
        ([("Content-Length", "x")], b"", "is not a number"),
        ([("Content-Length", "9")], b"short", "ended early"),
        ([("Transfer-Encoding", "chunked")], b"zz\r\n", "a bad chunk size line"),
        ([("Transfer-Encoding", "chunked")], b"5\r\nab", "ended early"),
    ],
)
async def test_bodies_that_cannot_be_read(
    headers: list[tuple[str, str]], data: bytes, reason: str
) -> None:
    with pytest.raises(HttpMessageInvalid, match=reason):
        await read_body(reader_of(data), headers, to_eof=False)


async def test_bodies_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_BODY", 4)
    for headers, data in [
        ([("Content-Length", "5")], b"12345"),
        ([("Transfer-Encoding", "chunked")], b"5\r\n12345\r\n0\r\n\r\n"),
        ([], b"12345"),
    ]:
        with pytest.raises(HttpMessageInvalid, match="larger than") as problem:
            await read_body(reader_of(data), headers, to_eof=True, status=502)
        assert problem.value.status == 502
    with pytest.raises(HttpMessageInvalid) as problem:
        await read_body(reader_of(b"12345"), [("Content-Length", "5")], to_eof=False)
    assert problem.value.status == 413


def test_no_body_by_definition() -> None:
    assert no_body("HEAD", 200)
    assert no_body("GET", 204)
    assert no_body("GET", 304)
    assert no_body("GET", 101)
    assert not no_body("GET", 200)
    assert not no_body("GET")


def test_messages_are_written_with_a_length_and_connection_close() -> None:
    assert request_bytes("POST", "/x", [("Host", "h")], b"") == (
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert request_bytes("GET", "/", [], b"") == b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
    assert response_bytes(200, "OK", [("A", "b")], b"hi") == (
        b"HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    )
    assert response_bytes(204, "", [], b"", length=False) == (
        b"HTTP/1.1 204\r\nConnection: close\r\n\r\n"
    )
    assert plain_response(502, "Bad Gateway", "down").endswith(b"\r\n\r\ndown\n")
