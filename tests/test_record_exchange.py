"""Plain HTTP requests through the recording proxy, to a real ``http.server`` upstream:
passed on and answered whole, and recorded as ``http`` sessions."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import replay.record.exchange
from replay.record.http1 import MAX_BODY
from tests.recording import (
    PATIENCE,
    HttpUpstream,
    closed_port,
    ended,
    http_upstream,
    http_url,
    proxying,
    read_all,
)


def fetch(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


async def raw(address: Any, data: bytes) -> bytes:
    """Send ``data`` on a new connection; everything the proxy answers."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), PATIENCE)
    writer.close()
    return answer


async def test_a_get_is_passed_on_and_recorded(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path, redact=("user.token",)) as proxy:
            url = http_url(proxy, "/json?client_id=ui&api_key=k3y")
            headers = {"Authorization": "Bearer s3cret", "X-Trace": "t1"}
            status, answer_headers, body = await asyncio.to_thread(fetch, url, headers=headers)
            (recording,) = await ended(tmp_path)
    assert status == 200
    assert json.loads(body)["user"]["token"] == "t0k"  # passed on unchanged
    assert answer_headers["Set-Cookie"] == "sid=abc123"
    seen = HttpUpstream.seen[0]
    assert seen["path"] == "/json?client_id=ui&api_key=k3y"
    assert seen["headers"]["Authorization"] == "Bearer s3cret"
    assert seen["headers"]["Host"] == upstream.removeprefix("ws://")
    header = recording.header
    assert (header.kind, header.endpoint, header.client) == ("http", "/json", "ui")
    assert header.query == "client_id=ui&api_key=***"
    assert header.upstream == upstream.replace("ws://", "http://")
    request, response = recording.frames
    assert (request.side, request.op) == ("client", "request")
    assert request.extra["method"] == "GET"
    assert request.extra["headers"]["authorization"] == "***"
    assert request.extra["headers"]["x-trace"] == "t1"
    assert (response.side, response.op, response.extra["status"]) == ("server", "response", 200)
    assert response.extra["headers"]["set-cookie"] == "***"
    assert json.loads(response.extra["body"])["user"]["token"] == "***"
    assert recording.end is not None


async def test_a_post_body_goes_on_and_the_answer_comes_back(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            status, _, body = await asyncio.to_thread(
                fetch, http_url(proxy, "/chat"), "POST", b'{"q": "hi"}'
            )
            (recording,) = await ended(tmp_path)
    assert status == 201
    assert json.loads(body) == {"method": "POST", "path": "/chat", "body": '{"q": "hi"}'}
    assert recording.frames[0].extra["body"] == '{"q": "hi"}'
    assert recording.frames[1].extra["status"] == 201


async def test_a_chunked_answer_comes_back_whole(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            status, headers, body = await asyncio.to_thread(fetch, http_url(proxy, "/chunked"))
            (recording,) = await ended(tmp_path)
    assert (status, body) == (200, b"first second third")
    assert headers["Content-Length"] == "18"
    assert "Transfer-Encoding" not in headers
    assert recording.frames[1].extra["body"] == "first second third"


async def test_a_chunked_request_goes_on_with_a_length(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            answer = await raw(
                proxy.address,
                b"PUT /items HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            )
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert HttpUpstream.seen[0]["body"] == b"hello world"
    assert HttpUpstream.seen[0]["headers"]["Content-Length"] == "11"


async def test_a_binary_answer_is_recorded_as_base64(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            _, _, body = await asyncio.to_thread(fetch, http_url(proxy, "/bytes"))
            (recording,) = await ended(tmp_path)
    assert body == b"\x00\xff\x10"
    response = recording.frames[1].extra
    assert (response["body"], response["base64"]) == ("AP8Q", True)


async def test_a_head_request_keeps_the_length_and_has_no_body(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            answer = await raw(proxy.address, b"HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: 58" in head  # what the GET would get
    assert body == b""


async def test_expect_100_continue_is_answered(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            assert proxy.address is not None
            reader, writer = await asyncio.open_connection(*proxy.address)
            writer.write(
                b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
            writer.write(b"ok")
            answer = await asyncio.wait_for(reader.read(), PATIENCE)
            writer.close()
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert "Expect" not in HttpUpstream.seen[0]["headers"]


async def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            answer = await raw(
                proxy.address,
                f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode(),
            )
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert HttpUpstream.seen == []


async def test_an_upstream_that_is_down_gives_502(tmp_path: Path) -> None:
    async with proxying(f"ws://127.0.0.1:{closed_port()}", tmp_path) as proxy:
        status, _, body = await asyncio.to_thread(fetch, http_url(proxy, "/json?token=x"))
        assert proxy.observer.counts.refused == 1
    assert status == 502
    assert body.decode().count("\n") == 1
    assert "cannot connect" in body.decode()
    assert read_all(tmp_path) == []


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"garbage\r\n\r\n", "not an HTTP/1.1 status line"),
        (b"", "closed the connection unanswered"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "the body ended early"),
    ],
)
async def test_an_upstream_answer_that_is_not_valid_gives_502(
    tmp_path: Path, answer: bytes, reason: str
) -> None:
    async def bad(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        writer.close()

    server = await asyncio.start_server(bad, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with proxying(f"ws://127.0.0.1:{port}", tmp_path) as proxy:
            status, _, body = await asyncio.to_thread(fetch, http_url(proxy, "/x"))
    finally:
        server.close()
    assert status == 502
    assert reason in body.decode()


async def test_a_body_that_does_not_come_is_408(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay.record.exchange, "BODY_TIMEOUT", 0.1)
    with http_upstream() as upstream:
        async with proxying(upstream, tmp_path) as proxy:
            answer = await raw(proxy.address, b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b"the body did not come within 0.1 s\n")
    assert HttpUpstream.seen == []


async def test_an_upstream_that_does_not_answer_in_time_gives_504(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay.record.exchange, "ANSWER_TIMEOUT", 0.1)
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with proxying(f"ws://127.0.0.1:{port}", tmp_path) as proxy:
            answer = await raw(proxy.address, b"GET /slow HTTP/1.1\r\n\r\n")
    finally:
        server.close()
    assert answer.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n")
    assert b"no answer within 0.1 s" in answer
