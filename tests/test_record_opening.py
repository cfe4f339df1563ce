"""Opening sessions through the proxy: the subprotocol and headers passed on, frames the
upstream sends at once, and the 502s for an upstream that refuses or is down."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from replay.record.http1 import RequestHead
from replay.record.opening import UpstreamFailed, client_protocol, connect_upstream
from replay.record.upstream import Upstream
from tests.recording import closed_port, ended, proxying, read_all, ws_upstream, ws_url


async def test_the_subprotocol_is_negotiated_end_to_end(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy), subprotocols=["chat", "superchat"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "superchat"  # the upstream's choice
            await ws.send("x")
            await ws.recv()
        (recording,) = await ended(tmp_path)
    assert seen.subprotocols == ["superchat"]
    assert seen.requests[0].headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert recording.header.subprotocol == "superchat"


async def test_without_subprotocols_there_is_none(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy)) as ws:
            assert ws.subprotocol is None
        (recording,) = await ended(tmp_path)
    assert "Sec-WebSocket-Protocol" not in seen.requests[0].headers
    assert recording.header.subprotocol is None


async def test_the_headers_a_backend_needs_go_on_and_hop_by_hop_ones_stay(tmp_path: Path) -> None:
    headers = {
        "Cookie": "sid=abc",
        "Origin": "http://localhost:5173",
        "User-Agent": "Mozilla/5.0 (frontend)",
        "X-Custom": "yes",
        "Proxy-Authorization": "Basic eA==",
        "Keep-Alive": "timeout=5",
    }
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        async with connect(
            ws_url(proxy), additional_headers=headers, user_agent_header=None, compression=None
        ):
            pass
        await ended(tmp_path)
    got = seen.requests[0].headers
    assert got["Cookie"] == "sid=abc"
    assert got["Origin"] == "http://localhost:5173"
    assert got["User-Agent"] == "Mozilla/5.0 (frontend)"
    assert got["X-Custom"] == "yes"
    assert "Proxy-Authorization" not in got
    assert "Keep-Alive" not in got
    assert got["Host"] == upstream.removeprefix("ws://")  # rewritten
    assert got.get_all("Sec-WebSocket-Key") != []
    assert got["Connection"] == "Upgrade"


async def test_frames_the_upstream_sends_at_once_reach_the_client(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy, "/greet")) as ws:
            assert await asyncio.wait_for(ws.recv(), 10) == "welcome"
        (recording,) = await ended(tmp_path)
    assert recording.frames[0].data == "welcome"


async def test_an_upstream_that_refuses_gives_the_client_502(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(proxy, "/refuse/me")):
                pass
        assert proxy.observer.counts.refused == 1
    answer = refused.value.response
    assert answer.status_code == 502
    assert answer.body.decode().count("\n") == 1
    assert "refused the WebSocket handshake: HTTP 403 Forbidden" in answer.body.decode()
    assert read_all(tmp_path) == []


async def test_an_upstream_that_is_down_gives_the_client_502(tmp_path: Path) -> None:
    async with proxying(f"ws://127.0.0.1:{closed_port()}", tmp_path) as proxy:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(proxy)):
                pass
    answer = refused.value.response
    assert answer.status_code == 502
    assert "cannot connect" in answer.body.decode()


async def test_a_handshake_that_is_not_valid_is_answered_without_the_upstream(
    tmp_path: Path,
) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        assert proxy.address is not None
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"Sec-WebSocket-Key" in answer
    assert seen.requests == []


def test_the_library_reads_the_clients_handshake() -> None:
    raw = (
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    _, response = client_protocol(RequestHead("GET", "/ws", "HTTP/1.1", [], raw))
    assert response is not None
    assert response.status_code == 101
    _, unread = client_protocol(
        RequestHead("GET", "/ws", "HTTP/1.1", [], b"GET /\xff HTTP/1.1\r\n\r\n")
    )
    assert unread is None


async def test_an_upstream_that_never_answers_fails_in_time() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    head = RequestHead("GET", "/ws", "HTTP/1.1", [])
    try:
        with pytest.raises(UpstreamFailed, match=r"no handshake answer within 0\.2 s"):
            await connect_upstream(Upstream.parse(f"ws://127.0.0.1:{port}"), head, patience=0.2)
    finally:
        server.close()
