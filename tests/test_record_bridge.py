"""Frames through the proxy, one by one: pings and pongs, close codes both ways, cuts,
fragments, and what the proxy cannot take. The client is a raw sans-I/O one, so every
frame it gets is seen (pongs and close frames included)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

import replay.record.opening
from tests.recording import PATIENCE, RawClient, ended, ops, proxying, ws_upstream, ws_url


async def test_a_ping_from_the_client_is_answered_once_and_recorded(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.PING, b"are you there")
        client.send(Opcode.TEXT, b"after")  # its echo comes after the upstream's pong
        await client.wait(lambda: client.of(Opcode.TEXT))
        client.close(1000)
        await client.until_eof()
        (recording,) = await ended(tmp_path)
    assert [frame.data for frame in client.of(Opcode.PONG)] == [b"are you there"]
    assert ops(recording)[:4] == [
        ("client", "ping", b"are you there"),
        ("client", "text", "after"),
        ("server", "pong", b"are you there"),  # the upstream's own pong, recorded
        ("server", "text", "after"),
    ]


async def test_a_ping_from_the_upstream_reaches_the_client(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.TEXT, b"ping keepalive")
        await client.wait(lambda: client.of(Opcode.PING))
        client.send(Opcode.TEXT, b"done")  # echoed once the upstream has had our pong
        await client.wait(lambda: client.of(Opcode.TEXT))
        client.close(1000)
        await client.until_eof()
        (recording,) = await ended(tmp_path)
    assert [frame.data for frame in client.of(Opcode.PING)] == [b"keepalive"]
    assert [frame.data for frame in client.of(Opcode.TEXT)] == [b"done"]
    assert ("server", "ping", b"keepalive") in ops(recording)
    assert ("client", "pong", b"keepalive") in ops(recording)


async def test_a_pong_nobody_asked_for_is_passed_on(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.PONG, b"heartbeat")
        client.close(1000)
        await client.until_eof()
        (recording,) = await ended(tmp_path)
    assert ops(recording)[0] == ("client", "pong", b"heartbeat")


async def test_the_upstreams_close_code_and_reason_reach_the_client(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy)) as ws:
            await ws.send("close 4001 the run is over")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), PATIENCE)
        (recording,) = await ended(tmp_path)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "the run is over")
    assert ops(recording)[1:] == [
        ("server", "close", (4001, "the run is over")),
        ("client", "close", (4001, "the run is over")),
    ]
    assert recording.end is not None
    assert (recording.end.code, recording.end.reason, recording.end.by) == (
        4001,
        "the run is over",
        "server",
    )


async def test_the_clients_close_code_and_reason_reach_the_upstream(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy)) as ws:
            await ws.close(4002, "tab closed")
        assert await asyncio.wait_for(seen.closes.get(), PATIENCE) == (4002, "tab closed")
        (recording,) = await ended(tmp_path)
    assert recording.end is not None
    assert (recording.end.code, recording.end.by) == (4002, "client")


async def test_a_close_without_a_status_stays_without(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.close()
        await client.until_eof()
        assert await asyncio.wait_for(seen.closes.get(), PATIENCE) == (1005, "")
        (recording,) = await ended(tmp_path)
    assert ops(recording)[0] == ("client", "close", (None, ""))
    assert recording.end is not None
    assert recording.end.code is None


async def test_an_upstream_that_cuts_the_connection_is_cut_for_the_client(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.TEXT, b"cut")
        await client.until_eof()
        (recording,) = await ended(tmp_path)
    assert client.of(Opcode.CLOSE) == []  # no close frame: 1006 for the client
    assert recording.end is not None
    assert (recording.end.code, recording.end.by) == (1006, "server")


async def test_a_client_that_cuts_the_connection_is_cut_for_the_upstream(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.TEXT, b"hello")
        await client.wait(lambda: client.of(Opcode.TEXT))
        client.writer.transport.abort()
        assert await asyncio.wait_for(seen.closes.get(), PATIENCE) == (None, "")
        (recording,) = await ended(tmp_path)
    assert recording.end is not None
    assert (recording.end.code, recording.end.by) == (1006, "client")


async def test_fragments_pass_as_fragments_and_are_recorded_whole(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.TEXT, b"frag", fin=False)
        client.send(Opcode.CONT, b"ments", fin=True)  # the upstream answers three frames
        await client.wait(lambda: any(frame.fin for frame in client.frames))
        client.close(1000)
        await client.until_eof()
        (recording,) = await ended(tmp_path)
    assert seen.texts == ["fragments"]
    got = [(frame.opcode, bytes(frame.data), frame.fin) for frame in client.frames[:4]]
    assert got == [  # as the upstream's library sends an iterable: an empty last fragment
        (Opcode.TEXT, b"one ", False),
        (Opcode.CONT, b"two ", False),
        (Opcode.CONT, b"three", False),
        (Opcode.CONT, b"", True),
    ]
    assert ops(recording)[:2] == [
        ("client", "text", "fragments"),
        ("server", "text", "one two three"),
    ]


async def test_a_message_too_big_closes_both_sides_with_1009(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay.record.opening, "MAX_MESSAGE", 1024)
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.TEXT, b"x" * 2000)
        await client.until_eof()
        code, _ = await asyncio.wait_for(seen.closes.get(), PATIENCE)
        (recording,) = await ended(tmp_path)
    assert client.protocol is not None
    assert client.protocol.close_rcvd is not None
    assert client.protocol.close_rcvd.code == 1009
    assert code == 1009
    assert recording.end is not None
    assert (recording.end.code, recording.end.by) == (1009, "client")


async def test_a_protocol_error_closes_both_sides_with_1002(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        client = await RawClient.connect(ws_url(proxy))
        client.send(Opcode.CONT, b"a continuation of nothing")
        await client.until_eof()
        code, _ = await asyncio.wait_for(seen.closes.get(), PATIENCE)
    assert client.protocol is not None
    assert client.protocol.close_rcvd is not None
    assert client.protocol.close_rcvd.code == 1002
    assert code == 1002
