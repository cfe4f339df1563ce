"""The load generator: many WebSocket clients spread over a few processes, and a stalled one.

The clients are a minimal RFC 6455 client on ``asyncio.Protocol`` (a handshake, then frame
parsing in ``data_received``), not the ``websockets`` client: reading a frame costs about a
microsecond, so a few client processes can keep up with any of the servers and the
benchmark measures the server. Each client still checks every frame: it compares the
payload with the bytes expected next and notes frames lost, out of order or unexpected;
it answers pings (the servers' keepalive) and close frames.

A :class:`Fleet` is a few worker processes, each driven over a pipe by the bench process:
``open`` / ``close`` connections, ``arm`` a round (reset the counters, expect M frames),
then wait for each worker's report. Every wait is bounded; a worker whose parent goes away
exits.

:class:`StalledClient` completes the handshake and then never reads again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import math
import multiprocessing as mp
import os
import signal
import socket
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from common import CHILD_LIFETIME, BenchError, frame, frame_seq, raise_open_files_limit

#: Connections a client process opens at once (keeps the listen backlogs from overflowing).
CONNECT_CONCURRENCY = 64
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CHILDREN: list[Any] = []  # every client process started; run.py stops them all at the end


def handshake_request(host: str, port: int, path: str) -> tuple[bytes, bytes]:
    """An opening handshake, and the Sec-WebSocket-Accept the server must answer."""
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    request = (
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        ).encode()
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )
    return request, accept


def masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask), for short control payloads."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload[:125]))
    return bytes([0x80 | opcode, 0x80 | len(body)]) + mask + body


def parse_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Complete server frames (opcode, payload) at the start of ``data``, and the rest."""
    frames = []
    pos, size = 0, len(data)
    while size - pos >= 2:
        length = data[pos + 1] & 0x7F
        start = pos + 2
        if length == 126:
            if size - pos < 4:
                break
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            start = pos + 4
        elif length == 127:
            if size - pos < 10:
                break
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            start = pos + 10
        end = start + length
        if end > size:
            break
        frames.append((data[pos] & 0x0F, data[start:end]))
        pos = end
    return frames, data[pos:]


# --------------------------------------------------------------------------------------
# One client connection.


@dataclass
class Round:
    """``frames`` frames expected by every connection of a worker: ``expected`` over and
    over (frame ``i`` is ``expected[i % len(expected)]``: a scenario played in a loop)."""

    frames: int
    expected: list[bytes]
    record: bool
    remaining: int
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def finished_one(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()


class WsClient(asyncio.Protocol):
    def __init__(self, request: bytes, accept: bytes) -> None:
        self.request = request
        self.accept = accept
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_open = False
        self.closed = False
        self.gone = asyncio.Event()
        self.pending = b""
        self.close_code: int | None = None
        self.round: Round | None = None
        self.begin(None)

    def begin(self, round_: Round | None) -> None:
        """Take part in a new round: reset the counters."""
        self.round = round_
        self.next = 0
        self.received = 0
        self.lost = 0
        self.disorder = 0
        self.first = 0.0
        self.last = 0.0
        self.complete = False
        self.closed_early = False
        self.times: list[float] | None = (
            [math.nan] * round_.frames if round_ is not None and round_.record else None
        )

    # asyncio callbacks

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gone.set()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"connection lost: {exc!r}"))
        round_ = self.round
        if round_ is not None and not self.complete:
            self.closed_early = True
            self.complete = True  # nothing more will come
            round_.finished_one()

    def data_received(self, data: bytes) -> None:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        if not self.is_open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.pending = data
                return
            head, data = data[:end], data[end + 4 :]
            if not head.startswith(b"HTTP/1.1 101") or self.accept not in head:
                status = head.split(b"\r\n", 1)[0].decode(errors="replace")
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(f"handshake failed: {status}"))
                assert self.transport is not None
                self.transport.abort()
                return
            self.is_open = True
            self.opened.set_result(None)
        now = time.monotonic()
        pos, size = 0, len(data)
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = data[pos] & 0x0F
            if opcode == 1:
                self.text(data[start:end], now)
            else:
                self.control(opcode, data[start:end])
            pos = end
        if pos < size:
            self.pending = data[pos:]

    # frames

    def text(self, payload: bytes, now: float) -> None:
        self.received += 1
        round_ = self.round
        if round_ is None or self.complete:
            self.disorder += 1
            return
        if not self.first:
            self.first = now
        self.last = now
        nxt = self.next
        cycle = len(round_.expected)
        if payload == round_.expected[nxt % cycle]:
            if self.times is not None:
                self.times[nxt] = now
            nxt += 1
        else:
            seq = frame_seq(payload)
            if seq is None or seq >= cycle or (cycle == round_.frames and seq < nxt):
                self.disorder += 1
                return
            at = nxt + (seq - nxt) % cycle  # the next frame that carries this number
            if at >= round_.frames:
                self.disorder += 1
                return
            self.lost += at - nxt
            if self.times is not None:
                self.times[at] = now
            nxt = at + 1
        self.next = nxt
        if nxt >= round_.frames:
            self.complete = True
            round_.finished_one()

    def control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == 9:  # ping
            self.transport.write(masked(10, payload))
        elif opcode == 8:  # close: answer it; the server closes the TCP connection
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self.transport.is_closing():
                self.transport.write(masked(8, payload[:2]))
        elif opcode != 10:
            self.disorder += 1  # binary or continuation frames: never sent by our servers

    async def close(self, grace: float) -> None:
        """Close with 1000 and wait (``grace`` s at most) for the server to end the
        connection; then cut it."""
        transport = self.transport
        if transport is None or self.closed:
            return
        with contextlib.suppress(Exception):
            transport.write(masked(8, struct.pack("!H", 1000)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.gone.wait(), grace)
        if not self.closed:
            transport.abort()


# --------------------------------------------------------------------------------------
# A worker process: holds connections, runs rounds, answers the bench over a pipe.


def worker_main(index: int, pipe: Connection, host: str, port: int, path: str, nice: int) -> None:
    raise_open_files_limit()
    if nice:
        # Where the cores are shared, the server under test gets the CPU first: the clients
        # use what is left, and read bigger batches when they fall behind.
        os.nice(nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench process decides when to stop
    try:
        asyncio.run(Worker(index, pipe, host, port, path).main())
    except Exception as error:  # report it: the bench must not wait for us in vain
        with contextlib.suppress(Exception):
            pipe.send(("error", f"client process {index}: {type(error).__name__}: {error}"))


class Worker:
    def __init__(self, index: int, pipe: Connection, host: str, port: int, path: str) -> None:
        self.index = index
        self.pipe = pipe
        self.host, self.port, self.path = host, port, path
        self.clients: list[WsClient] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.round: Round | None = None  # the round going on, if any

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.pipe.fileno(), readable.set)
        deadline = loop.time() + CHILD_LIFETIME
        while True:
            try:
                await asyncio.wait_for(readable.wait(), max(0.1, deadline - loop.time()))
            except TimeoutError:
                return
            readable.clear()
            while self.pipe.poll():
                try:
                    command = self.pipe.recv()
                except (EOFError, OSError):  # the bench process is gone
                    await self.close(len(self.clients), 2.0)
                    return
                if command[0] == "quit":
                    await self.close(len(self.clients), command[1])
                    self.pipe.send(("bye",))
                    return
                if command[0] == "cancel":  # end the round now: report what came
                    if self.round is not None:
                        self.round.done.set()
                    continue
                task = asyncio.create_task(self.handle(command))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def handle(self, command: tuple[Any, ...]) -> None:
        try:
            kind, *args = command
            if kind == "open":
                self.pipe.send(("opened", *await self.open(*args)))
            elif kind == "close":
                await self.close(*args)
                self.pipe.send(("closed", self.live()))
            elif kind == "arm":
                await self.run_round(*args)
            else:
                raise ValueError(f"unknown command {kind!r}")
        except Exception as error:
            self.pipe.send(
                ("error", f"client process {self.index}: {type(error).__name__}: {error}")
            )

    def live(self) -> int:
        return sum(not c.closed for c in self.clients)

    async def open(self, count: int, within: float) -> tuple[int, dict[str, int]]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        failures: Counter[str] = Counter()

        async def one() -> None:
            async with gate:
                for attempt in range(3):
                    request, accept = handshake_request(self.host, self.port, self.path)
                    transport = None
                    try:
                        transport, client = await asyncio.wait_for(
                            loop.create_connection(
                                lambda r=request, a=accept: WsClient(r, a), self.host, self.port
                            ),
                            20,
                        )
                        await asyncio.wait_for(client.opened, 20)
                        self.clients.append(client)
                        return
                    except Exception as error:
                        if transport is not None:
                            transport.abort()
                        if attempt == 2:
                            failures[describe(error)] += 1
                            return
                        await asyncio.sleep(0.2 * (attempt + 1))

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            failures["timed out"] += len(pending)
            await asyncio.gather(*pending, return_exceptions=True)
        self.clients = [c for c in self.clients if not c.closed]
        return self.live(), dict(failures)

    async def close(self, count: int, grace: float = 5.0) -> None:
        self.clients = [c for c in self.clients if not c.closed]
        if count <= 0:
            return
        going, self.clients = self.clients[-count:], self.clients[:-count]
        await asyncio.gather(*(c.close(grace) for c in going), return_exceptions=True)

    async def run_round(
        self, frames: int, repeat: int, pad: int, record: bool, within: float
    ) -> None:
        clients = [c for c in self.clients if not c.closed]
        expected = [frame(i, pad).encode() for i in range(frames)]
        frames *= repeat
        round_ = Round(frames, expected, record, len(clients))
        self.round = round_
        for client in clients:
            client.begin(round_)
        if not clients:
            round_.done.set()
        cpu0 = time.process_time()
        self.pipe.send(("armed", len(clients)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(round_.done.wait(), within)
        cpu1 = time.process_time()
        self.round = None
        for client in clients:
            client.round = None  # late frames now count as unexpected
        report: dict[str, Any] = {
            "connections": len(clients),
            "complete": sum(c.next >= frames and not c.lost and not c.disorder for c in clients),
            "received": sum(c.received for c in clients),
            "lost": sum(c.lost for c in clients),
            "disorder": sum(c.disorder for c in clients),
            "unfinished": sum(c.next < frames for c in clients),
            "closed_early": sum(c.closed_early for c in clients),
            "close_codes": dict(Counter(str(c.close_code) for c in clients if c.closed_early)),
            "firsts": [c.first for c in clients if c.first],
            "lasts": [c.last for c in clients if c.next >= frames],
            "got": [c.next for c in clients],
            "cpu": cpu1 - cpu0,
        }
        if record:
            # Per frame: its arrival at the first and at the last client of this process.
            rows = [c.times for c in clients if c.times is not None]
            report["frame_first"] = [
                min((r[i] for r in rows if r[i] == r[i]), default=math.nan) for i in range(frames)
            ]
            report["frame_last"] = [
                max((r[i] for r in rows if r[i] == r[i]), default=math.nan) for i in range(frames)
            ]
        self.pipe.send(("round", report))


def describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        return f"{type(error).__name__} errno {error.errno} ({os.strerror(error.errno)})"
    if isinstance(error, TimeoutError):
        return "handshake timed out"
    return f"{type(error).__name__}: {str(error)[:80]}"


# --------------------------------------------------------------------------------------
# The fleet, as the bench process sees it.


class Fleet:
    """``processes`` worker processes holding connections to ``ws://host:port/path``,
    running at ``nice`` (a lower priority than the server's)."""

    def __init__(self, host: str, port: int, path: str, processes: int, nice: int = 0) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        self.sizes: list[int] = []
        for index in range(max(1, processes)):
            ours, theirs = ctx.Pipe()
            process = ctx.Process(
                target=worker_main,
                args=(index, theirs, host, port, path, nice),
                daemon=True,
                name=f"bench-client-{index}",
            )
            process.start()
            theirs.close()
            CHILDREN.append(process)
            self.pipes.append(ours)
            self.processes.append(process)
            self.sizes.append(0)
        self.pids = [p.pid for p in self.processes]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def _reply(self, index: int, timeout: float, want: str) -> tuple[Any, ...]:
        pipe = self.pipes[index]
        if not pipe.poll(timeout):
            alive = self.processes[index].is_alive()
            raise BenchError(
                f"client process {index} did not answer {want!r} within {timeout:.0f} s"
                + ("" if alive else " (it died)")
            )
        try:
            reply = pipe.recv()
        except (EOFError, OSError) as error:
            raise BenchError(f"client process {index} is gone ({error!r})") from None
        if reply[0] == "error":
            raise BenchError(reply[1])
        if reply[0] != want:
            raise BenchError(f"client process {index} answered {reply[0]!r}, not {want!r}")
        return tuple(reply)

    def _all(self, want: str, timeout: float, indexes: list[int]) -> dict[int, tuple[Any, ...]]:
        """Each worker's reply, waiting for them together (one deadline for all)."""
        deadline = time.monotonic() + timeout
        replies: dict[int, tuple[Any, ...]] = {}
        waiting = {self.pipes[i]: i for i in indexes}
        while waiting:
            left = deadline - time.monotonic()
            ready = wait(list(waiting), timeout=max(0.0, left))
            if not ready:
                i = next(iter(waiting.values()))
                self._reply(i, 0, want)  # raises, saying who
            for pipe in ready:
                i = waiting.pop(pipe)  # type: ignore[call-overload]
                replies[i] = self._reply(i, 0, want)
        return replies

    def open(self, total: int, timeout: float = 120.0) -> tuple[int, dict[str, int]]:
        """Open connections until ``total`` are open; returns (open, failures)."""
        adds = [0] * len(self.pipes)
        sizes = list(self.sizes)
        for _ in range(max(0, total - self.size)):
            i = sizes.index(min(sizes))
            sizes[i] += 1
            adds[i] += 1
        busy = [i for i, n in enumerate(adds) if n]
        for i in busy:
            self.pipes[i].send(("open", adds[i], timeout))
        failures: Counter[str] = Counter()
        for i, reply in self._all("opened", timeout + 30, busy).items():
            self.sizes[i] = reply[1]
            failures.update(reply[2])
        return self.size, dict(failures)

    def close_to(self, total: int, timeout: float = 30.0) -> int:
        """Close connections until ``total`` are left open."""
        drops = [0] * len(self.pipes)
        sizes = list(self.sizes)
        for _ in range(max(0, self.size - total)):
            i = sizes.index(max(sizes))
            sizes[i] -= 1
            drops[i] += 1
        busy = [i for i, n in enumerate(drops) if n]
        for i in busy:
            self.pipes[i].send(("close", drops[i], 5.0))
        for i, reply in self._all("closed", timeout, busy).items():
            self.sizes[i] = reply[1]
        return self.size

    def arm(
        self,
        frames: int,
        repeat: int = 1,
        pad: int = 0,
        record: bool = False,
        timeout: float = 60.0,
    ) -> int:
        """Make every connection expect frames 0..M-1 (``repeat`` times over); returns how
        many connections are armed. ``record`` keeps each frame's arrival time."""
        everyone = list(range(len(self.pipes)))
        for pipe in self.pipes:
            pipe.send(("arm", frames, repeat, pad, record, timeout))
        return sum(r[1] for r in self._all("armed", 30, everyone).values())

    def cancel(self) -> None:
        """End the round now: each worker reports what its clients got so far."""
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("cancel",))

    def results(self, timeout: float) -> list[dict[str, Any]]:
        """Each worker's report of the round (they report when done or timed out)."""
        everyone = list(range(len(self.pipes)))
        return [r[1] for r in self._all("round", timeout, everyone).values()]

    def stop(self) -> None:
        """Close every connection and end the processes (bounded; kills if need be)."""
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.send(("quit", 5.0))
        deadline = time.monotonic() + 15
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
            with contextlib.suppress(ValueError):
                CHILDREN.remove(process)
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.close()
        self.sizes = [0] * len(self.pipes)


def stop_clients() -> None:
    for process in list(CHILDREN):
        with contextlib.suppress(Exception):
            if process.is_alive():
                process.terminate()
                process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        with contextlib.suppress(ValueError):
            CHILDREN.remove(process)


# --------------------------------------------------------------------------------------
# A client that stops reading.


TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


class StalledClient:
    """Completes the opening handshake, then never reads the socket again.

    Its receive buffer is made small before connecting, so the server's frames back up
    quickly into the server's own send buffers.
    """

    def __init__(self, host: str, port: int, path: str, rcvbuf: int = 4096) -> None:
        self.host, self.port, self.path = host, port, path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.head = b""

    def open(self, timeout: float = 10.0) -> None:
        self.sock.settimeout(timeout)
        self.sock.connect((self.host, self.port))
        request, accept = handshake_request(self.host, self.port, self.path)
        self.sock.sendall(request)
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data:
            if time.monotonic() > deadline:
                raise BenchError("the stalled client's handshake timed out")
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BenchError("the server closed the stalled client during the handshake")
            data += chunk
        head, _, self.head = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101") or accept not in head:
            raise BenchError(f"the stalled client's handshake failed: {head[:80]!r}")
        # From here on it never calls recv() until finish().

    def tcp_state(self) -> dict[str, Any]:
        """The TCP state of both ends of its connection, from /proc/net/tcp: ``client``
        (with ``rx_queue``, bytes it has not read) and ``server`` (with ``tx_queue``, bytes
        the server's kernel still holds for it; "gone" once it has given up)."""
        port = self.sock.getsockname()[1]
        found: dict[str, Any] = {"client": "gone", "rx_queue": 0, "server": "gone", "tx_queue": 0}
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                parts = line.split()
                local = int(parts[1].split(":")[1], 16)
                remote = int(parts[2].split(":")[1], 16)
                tx, rx = (int(v, 16) for v in parts[4].split(":"))
                state = TCP_STATES.get(parts[3], parts[3])
                if (local, remote) == (port, self.port):
                    found.update(client=state, rx_queue=rx)
                elif (local, remote) == (self.port, port):
                    found.update(server=state, tx_queue=tx)
        return found

    def finish(self) -> dict[str, Any]:
        """Read what is waiting (bounded), say how the server ended it, and close."""
        state = self.tcp_state()
        frames = 0
        close_code = None
        error = None
        data = self.head
        self.sock.settimeout(0.2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                break  # nothing more waiting: still open
            except OSError as exc:
                error = describe(exc)
                break
            if not chunk:
                break
            data += chunk
            parsed, data = parse_frames(data)
            for opcode, payload in parsed:
                if opcode == 1:
                    frames += 1
                elif opcode == 8 and len(payload) >= 2:
                    close_code = struct.unpack("!H", payload[:2])[0]
        with contextlib.suppress(OSError):
            self.sock.close()
        return {
            **state,
            "frames_read_after": frames,
            "close_code": close_code,
            "error": error,
            "rcvbuf": self.rcvbuf,
        }
