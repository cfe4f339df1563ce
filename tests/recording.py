"""Helpers for the tests of ``replay record``: a real upstream on the ``websockets``
library, a plain HTTP upstream, a raw client on the sans-I/O layer (to see every frame,
pongs and close frames included), and recordings read back once written."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.uri import parse_uri

from replay.record.format import Recording, read_recording
from replay.record.proxy import RecordingProxy
from replay.record.redact import PayloadPath
from replay.record.upstream import Upstream

#: Seconds to wait for anything that should happen at once.
PATIENCE = 10.0


@dataclass
class Seen:
    """What the upstream saw of each connection."""

    requests: list[Request] = field(default_factory=list)
    subprotocols: list[str | None] = field(default_factory=list)
    closes: asyncio.Queue[tuple[int | None, str]] = field(default_factory=asyncio.Queue)
    texts: list[str] = field(default_factory=list)


async def upstream_handler(ws: ServerConnection, seen: Seen) -> None:
    """Echo every message, except commands: ``close CODE REASON``, ``cut``, ``ping
    DATA``, ``fragments`` (a message in three frames). On ``/greet...`` paths, say
    ``welcome`` first."""
    seen.requests.append(ws.request)  # type: ignore[arg-type]
    seen.subprotocols.append(ws.subprotocol)
    try:
        if ws.request is not None and ws.request.path.startswith("/greet"):
            await ws.send("welcome")
        async for message in ws:
            if isinstance(message, str):
                seen.texts.append(message)
            command, _, rest = message.partition(" ") if isinstance(message, str) else ("", "", "")
            if command == "close":
                code, _, reason = rest.partition(" ")
                await ws.close(int(code), reason)
            elif command == "cut":
                ws.transport.abort()
            elif command == "ping":
                await ws.ping(rest.encode())
            elif command == "fragments":
                await ws.send(iter(["one ", "two ", "three"]))
            else:
                await ws.send(message)
    except ConnectionClosed:
        pass  # a close code other than 1000 or 1001, or a cut: noted below
    finally:
        rcvd = ws.protocol.close_rcvd
        await seen.closes.put((None, "") if rcvd is None else (rcvd.code, rcvd.reason))


def refuse(connection: ServerConnection, request: Request) -> Response | None:
    """The upstream refuses handshakes to paths under ``/refuse`` with 403."""
    if request.path.startswith("/refuse"):
        return connection.respond(HTTPStatus.FORBIDDEN, "no\n")
    return None


@contextlib.asynccontextmanager
async def ws_upstream() -> AsyncIterator[tuple[str, Seen]]:
    """A ``websockets`` server on a free port (subprotocols ``chat`` and ``superchat``):
    its URL and what it saw."""
    seen = Seen()
    async with serve(
        lambda ws: upstream_handler(ws, seen),
        "127.0.0.1",
        0,
        subprotocols=["chat", "superchat"],  # type: ignore[list-item]
        process_request=refuse,
        select_subprotocol=_select,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}", seen


def _select(connection: ServerConnection, offered: Any) -> Any:
    """``superchat`` if offered, else ``chat`` if offered, else none (no refusal)."""
    return next((p for p in ("superchat", "chat") if p in offered), None)


@contextlib.asynccontextmanager
async def proxying(
    upstream: str, out: Path, redact: tuple[str, ...] = ()
) -> AsyncIterator[RecordingProxy]:
    """The recording proxy in this event loop, on a free port."""
    paths = [PayloadPath.parse(path) for path in redact]
    async with RecordingProxy(Upstream.parse(upstream), out, paths) as proxy:
        yield proxy


def ws_url(proxy: RecordingProxy, target: str = "/ws") -> str:
    assert proxy.address is not None
    host, port = proxy.address
    return f"ws://{host}:{port}{target}"


def http_url(proxy: RecordingProxy, target: str) -> str:
    return ws_url(proxy, target).replace("ws://", "http://", 1)


def read_all(folder: Path) -> list[Recording]:
    """Every recording in ``folder``, oldest first."""
    files = sorted(folder.glob("*.jsonl"), key=lambda path: path.stat().st_mtime_ns)
    return [read_recording(path.read_text().splitlines(True), str(path)) for path in files]


async def ended(folder: Path, count: int = 1) -> list[Recording]:
    """The recordings in ``folder`` once ``count`` of them have their end line."""
    deadline = time.monotonic() + PATIENCE
    while True:
        recordings = read_all(folder)
        if sum(r.end is not None for r in recordings) >= count:
            return recordings
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count} ended recordings in {folder}: {recordings}")
        await asyncio.sleep(0.01)


async def eventually(check: Any) -> None:
    """Wait until ``check()`` holds (PATIENCE at most), looking every millisecond."""
    deadline = time.monotonic() + PATIENCE
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("not in time")
        await asyncio.sleep(0.001)


def file_text(path: str | Path) -> str:
    return Path(path).read_text()


def ops(recording: Recording) -> list[tuple[str, str, Any]]:
    """A recording's frames as (from, op, payload or (code, reason))."""
    shown: list[tuple[str, str, Any]] = []
    for frame in recording.frames:
        payload = (frame.code, frame.reason) if frame.op == "close" else frame.payload
        shown.append((frame.side, frame.op, payload))
    return shown


class RawClient:
    """A WebSocket client on the sans-I/O layer: every frame it receives, pongs and
    close frames included, and nothing done for it but what the library must do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol: ClientProtocol | None = None
        self.frames: list[Frame] = []
        self.eof = False

    @classmethod
    async def connect(cls, url: str, **headers: str) -> RawClient:
        uri = parse_uri(url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        client = cls(reader, writer)
        client.protocol = ClientProtocol(uri)
        request = client.protocol.connect()
        for name, value in headers.items():
            request.headers[name.replace("_", "-")] = value
        client.protocol.send_request(request)
        client.flush()
        await client.wait(lambda: client.protocol is not None and client.handshaken)
        return client

    @property
    def handshaken(self) -> bool:
        assert self.protocol is not None
        return self.protocol.state.name != "CONNECTING" or self.eof

    def flush(self) -> None:
        assert self.protocol is not None
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
            elif self.writer.can_write_eof():
                self.writer.write_eof()

    def send(self, opcode: Opcode, data: bytes, fin: bool = True) -> None:
        """Send one frame as it is (a fragment if ``fin`` is false)."""
        assert self.protocol is not None
        self.protocol.send_frame(Frame(opcode, data, fin))
        self.flush()

    def close(self, code: int | None = None, reason: str = "") -> None:
        assert self.protocol is not None
        self.protocol.send_close(code, reason)
        self.flush()

    def of(self, opcode: Opcode) -> list[Frame]:
        return [frame for frame in self.frames if frame.opcode is opcode]

    async def wait(self, check: Any) -> None:
        """Read until ``check()`` holds (or fail after PATIENCE)."""
        assert self.protocol is not None
        deadline = time.monotonic() + PATIENCE
        while not check():
            if self.eof:
                raise AssertionError("the connection ended first")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("not in time")
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                continue
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
                self.eof = True
            self.frames += [e for e in self.protocol.events_received() if isinstance(e, Frame)]
            self.flush()

    async def until_eof(self) -> None:
        """Read until the proxy ends the connection, then close it (as clients do)."""
        with contextlib.suppress(AssertionError):
            await self.wait(lambda: False)
        assert self.eof
        self.writer.close()


# --- a plain HTTP upstream ---------------------------------------------------------------


class HttpUpstream(http.server.BaseHTTPRequestHandler):
    """``GET /json``: a JSON answer with a cookie; ``GET /chunked``: a chunked answer;
    ``POST``/``PUT`` anything: the request echoed as JSON; ``GET /bytes``: binary."""

    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._note(b"")
        if self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first ", b"second ", b"third"):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/bytes"):
            self._answer(200, b"\x00\xff\x10", "application/octet-stream")
            return
        body = json.dumps({"user": {"name": "ada", "token": "t0k"}, "items": [1, 2]}).encode()
        self._answer(200, body, "application/json", cookie="sid=abc123")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._note(body)
        answer = {"method": self.command, "path": self.path, "body": body.decode()}
        self._answer(201, json.dumps(answer).encode(), "application/json")

    do_PUT = do_POST

    def do_HEAD(self) -> None:
        body = json.dumps({"user": {"name": "ada", "token": "t0k"}, "items": [1, 2]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def _note(self, body: bytes) -> None:
        HttpUpstream.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )

    def _answer(self, status: int, body: bytes, kind: str, cookie: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        if cookie:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def http_upstream() -> Iterator[str]:
    """A threaded ``http.server`` on a free port; its URL (as ws://, the proxy's form)."""
    HttpUpstream.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HttpUpstream)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(PATIENCE)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
