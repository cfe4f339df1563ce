"""The recording proxy end to end, in process: a real upstream on the ``websockets``
library, a real client through the proxy, and the recordings it writes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from replay.record.proxy import RecordingProxy, listening_address, serve
from replay.record.upstream import Upstream
from tests.recording import (
    PATIENCE,
    ended,
    file_text,
    ops,
    proxying,
    read_all,
    ws_upstream,
    ws_url,
)


async def test_text_and_binary_pass_both_ways_and_are_recorded(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy, "/ws?client_id=ui&token=s3cret")) as ws:
            await ws.send('{"message_type": "CHAT_INPUT", "message": "hi"}')
            assert await ws.recv() == '{"message_type": "CHAT_INPUT", "message": "hi"}'
            await ws.send(b"\x00\x01\xff")
            assert await ws.recv() == b"\x00\x01\xff"
        (recording,) = await ended(tmp_path)
    assert seen.requests[0].path == "/ws?client_id=ui&token=s3cret"  # the upstream's is real
    header = recording.header
    assert (header.kind, header.endpoint, header.client) == ("websocket", "/ws", "ui")
    assert header.query == "client_id=ui&token=***"
    assert header.upstream == upstream
    assert recording.file.endswith(f"{header.session}.jsonl")
    assert len(header.session) == 12
    assert ops(recording) == [
        ("client", "text", '{"message_type": "CHAT_INPUT", "message": "hi"}'),
        ("server", "text", '{"message_type": "CHAT_INPUT", "message": "hi"}'),
        ("client", "binary", b"\x00\x01\xff"),
        ("server", "binary", b"\x00\x01\xff"),
        ("client", "close", (1000, "")),
        ("server", "close", (1000, "")),
    ]
    assert recording.end is not None
    assert (recording.end.code, recording.end.by) == (1000, "client")
    times = [frame.t for frame in recording.frames]
    assert times == sorted(times)


async def test_frames_keep_their_order_in_a_burst(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy)) as ws:
            for index in range(300):
                await ws.send(f"frame {index}")
            got = [await asyncio.wait_for(ws.recv(), PATIENCE) for _ in range(300)]
        (recording,) = await ended(tmp_path)
    assert got == [f"frame {index}" for index in range(300)]
    sent = [f.data for f in recording.frames if f.side == "client" and f.op == "text"]
    assert sent == got


async def test_the_authorization_header_reaches_the_upstream_but_not_the_recording(
    tmp_path: Path,
) -> None:
    headers = {"Authorization": "Bearer s3cret", "X-Api-Key": "k3y", "X-Trace": "abc"}
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        async with connect(ws_url(proxy), additional_headers=headers) as ws:
            await ws.send("hello")
            await ws.recv()
        (recording,) = await ended(tmp_path)
    got = seen.requests[0].headers
    assert (got["Authorization"], got["X-Api-Key"], got["X-Trace"]) == (
        "Bearer s3cret",
        "k3y",
        "abc",
    )
    kept = recording.header.headers
    assert (kept["authorization"], kept["x-api-key"], kept["x-trace"]) == ("***", "***", "abc")
    assert "s3cret" not in file_text(recording.file)


async def test_payload_paths_are_redacted_in_the_recording_only(tmp_path: Path) -> None:
    frame = '{"message_type": "EVENT", "message": "{\\"token\\": \\"t0k\\", \\"n\\": 1}"}'
    async with (
        ws_upstream() as (upstream, seen),
        proxying(upstream, tmp_path, redact=("message.token",)) as proxy,
        connect(ws_url(proxy)) as ws,
    ):
        await ws.send(frame)
        assert await ws.recv() == frame  # passed on unchanged
    (recording,) = await ended(tmp_path)
    assert seen.texts == [frame]
    assert recording.frames[0].data == (
        '{"message_type": "EVENT", "message": "{\\"token\\": \\"***\\", \\"n\\": 1}"}'
    )


async def test_any_path_is_proxied_and_a_prefix_is_kept(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream + "/base", tmp_path) as proxy:
        async with connect(ws_url(proxy, "/deep/path/x?a=1&b=%20")) as ws:
            await ws.send("x")
            await ws.recv()
        (recording,) = await ended(tmp_path)
    assert seen.requests[0].path == "/base/deep/path/x?a=1&b=%20"
    assert (recording.header.endpoint, recording.header.query) == ("/deep/path/x", "a=1&b=%20")


async def test_serve_runs_until_stopped_and_closes_sessions_with_1001(tmp_path: Path) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    async with ws_upstream() as (upstream, seen):
        proxy = RecordingProxy(Upstream.parse(upstream), tmp_path / "new" / "folder")
        task = asyncio.create_task(
            serve(proxy, stop, "127.0.0.1", 0, lambda host, port: ready.set_result((host, port)))
        )
        host, port = await asyncio.wait_for(ready, PATIENCE)
        assert (host, port) == proxy.address
        async with connect(f"ws://{host}:{port}/ws") as ws:
            await ws.send("before")
            await ws.recv()
            stop.set()
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), PATIENCE)
        await asyncio.wait_for(task, PATIENCE)
        upstream_close = await asyncio.wait_for(seen.closes.get(), PATIENCE)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (  # type: ignore[union-attr]
        1001,
        "replay record is stopping",
    )
    assert upstream_close == (1001, "replay record is stopping")
    (recording,) = await ended(tmp_path / "new" / "folder")
    assert recording.end is not None
    assert (recording.end.code, recording.end.by) == (1001, None)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, port)  # no longer listening


async def test_a_request_that_is_not_http_gets_400(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _), proxying(upstream, tmp_path) as proxy:
        assert proxy.address is not None
        reader, writer = await asyncio.open_connection(*proxy.address)
        writer.write(b"HELLO THERE\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), PATIENCE)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"not an HTTP/1.1 request line" in answer
    assert read_all(tmp_path) == []


async def test_a_client_that_connects_and_goes_records_nothing(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, seen), proxying(upstream, tmp_path) as proxy:
        assert proxy.address is not None
        _, writer = await asyncio.open_connection(*proxy.address)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        async with connect(ws_url(proxy)) as ws:  # and the proxy still serves
            await ws.send("x")
            assert await ws.recv() == "x"
    assert len(seen.requests) == 1


def test_listening_address_prefers_ipv4() -> None:
    sockets = [socket.socket(socket.AF_INET6), socket.socket(socket.AF_INET)]
    try:
        sockets[1].bind(("127.0.0.1", 0))
        address = listening_address(sockets)
        assert address is not None
        assert address[0] == "127.0.0.1"
        assert listening_address([]) is None
    finally:
        for sock in sockets:
            sock.close()
