"""What ``replay record`` costs: per-frame added latency and throughput through the
recording proxy, against a direct connection to the same upstream, in one run.

Run from the project root::

    uv run python bench/proxy.py            # about 20 s on 2 cores
    uv run python bench/proxy.py --quick    # a smoke run (about 10 s)

Upstreams (each a child process, with ``replay record --upstream`` in front of it, its
recordings written to a temporary folder): **bare** (``bare_server.py``: ``broadcast()``,
and ``/echo``) and **seed-style** (``seed_style.py``: broadcast only, it never reads its
clients). The clients are this process's minimal RFC 6455 clients on
``asyncio.Protocol`` (``clients.py``'s handshake and frame parsing): each stamps a frame
with ``time.monotonic()`` as it reads it.

1. **Echo round trip** (bare only): one direct and one proxied client on ``/echo``, each
   sending a frame and waiting for it to come back, in turn. The proxy is crossed twice a
   round trip: the added latency per frame is half the difference.
2. **Broadcast, added latency per frame**: one direct and one proxied client on ``/ws``;
   the upstream broadcasts frames 2 ms apart to both at once; for each frame, its arrival
   through the proxy minus its arrival direct.
3. **Throughput**: M frames with no pause to one client, direct, then through the proxy
   (rounds alternating); frames/s = M / (trigger -> the last frame), and the proxy's CPU
   time per frame (utime + stime from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients import handshake_request, masked, parse_frames
from common import HOST, ROOT, BenchError, cpu_seconds, frame, frame_seq, free_port, poll
from report import print_table
from servers import BareServer, ReferenceServer, SeedServer, stop_servers

PATIENCE = 30.0


# --- the recording proxy, as a child process ---------------------------------------------------


class RecordProcess:
    """``replay record --upstream ws://HOST:PORT --port P`` (recordings in ``out``)."""

    def __init__(self, upstream_port: int, out: Path, log: Path) -> None:
        self.port = free_port()
        self.ready = out.parent / f"ready-{self.port}.json"
        command = [sys.executable, "-m", "replay", "record", "--port", str(self.port)]
        command += ["--upstream", f"ws://{HOST}:{upstream_port}", "--out", str(out)]
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                [*command, "--ready-file", str(self.ready)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not poll(lambda: self.ready.exists() or self.process.poll() is not None, PATIENCE):
            raise BenchError(f"replay record did not start; see {log}")
        if self.process.poll() is not None:
            raise BenchError(f"replay record exited ({self.process.returncode}); see {log}")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- a client that stamps every frame ----------------------------------------------------------


@dataclass(eq=False)
class Client(asyncio.Protocol):
    """One connection: the time each text frame arrived, by sequence number; for ``/echo``,
    the time its echo arrived."""

    request: bytes
    accept: bytes
    opened: asyncio.Future[None] = field(default_factory=lambda: _future())
    arrivals: dict[int, float] = field(default_factory=dict)
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    echo: asyncio.Future[float] | None = None
    transport: Any = None
    pending: bytes = b""
    shaken: bool = False

    @classmethod
    async def connect(cls, port: int, path: str) -> Client:
        request, accept = handshake_request(HOST, port, path)
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(request, accept), HOST, port)
        await asyncio.wait_for(client.opened, PATIENCE)
        return client

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.pending += data
        if not self.shaken:
            head, found, rest = self.pending.partition(b"\r\n\r\n")
            if not found:
                return
            if b" 101 " not in head.split(b"\r\n")[0] or self.accept not in head:
                self.opened.set_exception(BenchError(f"handshake refused: {head[:80]!r}"))
                return
            self.shaken, self.pending = True, rest
            self.opened.set_result(None)
        frames, self.pending = parse_frames(self.pending)
        for opcode, payload in frames:
            if opcode == 0x1:
                self._text(payload, now)
            elif opcode == 0x9:
                self.transport.write(masked(0xA, payload))

    def _text(self, payload: bytes, now: float) -> None:
        if self.echo is not None and not self.echo.done():
            self.echo.set_result(now)
            return
        seq = frame_seq(payload)
        if seq is not None:
            self.arrivals[seq] = now
            if len(self.arrivals) >= self.expected:
                self.done.set()

    def arm(self, frames: int) -> None:
        self.arrivals, self.expected = {}, frames
        self.done.clear()

    async def round_trip(self, payload: bytes) -> float:
        """Send one text frame; seconds until it comes back."""
        self.echo = _future()
        start = time.monotonic()
        self.transport.write(masked(0x1, payload))
        return await asyncio.wait_for(self.echo, PATIENCE) - start

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _future() -> asyncio.Future[Any]:
    return asyncio.get_running_loop().create_future()


# --- the measurements -------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


async def echo(upstream: int, proxy: int, rounds: int) -> dict[str, Any]:
    """Round trips on ``/echo``, direct and proxied in turn; seconds."""
    direct, proxied = await Client.connect(upstream, "/echo"), await Client.connect(proxy, "/echo")
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    payload = frame(0).encode()
    try:
        for index in range(rounds + rounds // 10):  # the first tenth warms up
            for name, client in (("direct", direct), ("proxy", proxied)):
                took = await client.round_trip(payload)
                if index >= rounds // 10:
                    times[name].append(took)
    finally:
        direct.close()
        proxied.close()
    return {name: percentiles(values) for name, values in times.items()}


async def broadcast(server: ReferenceServer, proxy: int, frames: int) -> dict[str, Any]:
    """Frames 2 ms apart to a direct and a proxied client: each frame's added latency."""
    direct, proxied = await Client.connect(server.port, "/ws"), await Client.connect(proxy, "/ws")
    try:
        await _until(lambda: server.count() == 2)
        for client in (direct, proxied):
            client.arm(frames)
        status, _ = await asyncio.to_thread(server.trigger, frames, 0.002)
        if status != 200:
            raise BenchError(f"the {server.kind} trigger answered {status}")
        await asyncio.wait_for(asyncio.gather(direct.done.wait(), proxied.done.wait()), PATIENCE)
    finally:
        direct.close()
        proxied.close()
        await _gone(server)
    added = [proxied.arrivals[i] - direct.arrivals[i] for i in range(frames)]
    return percentiles(added)


async def throughput(
    server: ReferenceServer, record: RecordProcess, frames: int, pad: int, rounds: int
) -> dict[str, Any]:
    """Frames/s with no pause, direct and through the proxy (rounds alternating), and the
    proxy's CPU per frame."""
    rates: dict[str, list[float]] = {"direct": [], "proxy": []}
    cpu: list[float] = []
    for index in range(rounds + 1):  # the first round of each warms up
        for name, port in (("direct", server.port), ("proxy", record.port)):
            client = await Client.connect(port, "/ws")
            try:
                await _until(lambda: server.count() == 1)
                client.arm(frames)
                before, start = record.cpu(), time.monotonic()
                await asyncio.to_thread(server.trigger, frames, 0.0, pad)
                await asyncio.wait_for(client.done.wait(), PATIENCE)
                took = max(client.arrivals.values()) - start
                if index:
                    rates[name].append(frames / took)
                    if name == "proxy":
                        cpu.append((record.cpu() - before) / frames)
            finally:
                client.close()
                await _gone(server)
    return {
        "direct": statistics.median(rates["direct"]),
        "proxy": statistics.median(rates["proxy"]),
        "proxy_cpu_per_frame": statistics.median(cpu),
    }


async def _until(check: Any) -> None:
    deadline = time.monotonic() + PATIENCE
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise BenchError("a server did not reach the expected client count")
        await asyncio.sleep(0.02)


async def _gone(server: ReferenceServer) -> None:
    """Wait until the server holds no client. seed-style never reads its clients: it only
    notices one has gone when a send to it fails, so it is sent a frame meanwhile."""

    def empty() -> bool:
        if server.count() == 0:
            return True
        if server.kind == "seed":
            server.trigger(1)
        return False

    await _until(empty)


# --- one upstream -----------------------------------------------------------------------------


async def measure(kind: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    server: ReferenceServer = (BareServer if kind == "bare" else SeedServer)(work / f"{kind}.log")
    server.start()
    out = work / f"recordings-{kind}"
    record = RecordProcess(server.port, out, work / f"record-{kind}.log")
    try:
        result: dict[str, Any] = {"server": kind}
        if kind == "bare":
            result["echo"] = await echo(server.port, record.port, args.rounds)
        result["broadcast"] = await broadcast(server, record.port, args.frames)
        result["throughput"] = [
            {"frames": frames, "pad": pad}
            | await throughput(server, record, frames, pad, args.throughput_rounds)
            for frames, pad in ((args.burst, 0), (args.burst // 4, 4096))
        ]
        recorded = sum(path.stat().st_size for path in out.glob("*.jsonl"))
        result["recorded_mib"] = recorded / 2**20
        return result
    finally:
        record.stop()
        server.stop()


LABELS = {"bare": "bare websockets", "seed": "seed-style"}


def latency_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"\nreplay record: added latency per frame, in ms (upstreams on {HOST}, one run)")
    rows = []
    for result in results:
        name = LABELS[result["server"]]
        if "echo" in result:
            direct, via = result["echo"]["direct"], result["echo"]["proxy"]
            rows.append(
                [
                    name,
                    f"echo round trip ({args.rounds})",
                    f"{direct['p50'] * 1e3:.3f} / {direct['p99'] * 1e3:.3f}",
                    f"{via['p50'] * 1e3:.3f} / {via['p99'] * 1e3:.3f}",
                    f"{(via['p50'] - direct['p50']) / 2 * 1e3:.3f}"
                    f" / {(via['p99'] - direct['p99']) / 2 * 1e3:.3f}",
                ]
            )
        added = result["broadcast"]
        rows.append(
            [
                name,
                f"broadcast, 2 ms apart ({args.frames})",
                "-",
                "-",
                f"{added['p50'] * 1e3:.3f} / {added['p99'] * 1e3:.3f}"
                f" (max {added['max'] * 1e3:.2f})",
            ]
        )
    headers = ["upstream", "test", "direct p50 / p99", "via replay p50 / p99"]
    print_table(rows, [*headers, "added per frame p50 / p99"], left=2)
    print("   echo: the proxy is crossed twice a round trip; added = (via - direct) / 2")
    print("   broadcast: each frame's arrival through the proxy minus its arrival direct")


def throughput_table(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print("\nreplay record: throughput, M frames with no pause to one client")
    rows = []
    for result in results:
        for t in result["throughput"]:
            rows.append(
                [
                    LABELS[result["server"]],
                    f"{t['frames']:,}",
                    f"{len(frame(0, t['pad']))} B",
                    f"{t['direct']:,.0f}",
                    f"{t['proxy']:,.0f}",
                    f"{t['proxy'] / t['direct']:.2f}x",
                    f"{t['proxy_cpu_per_frame'] * 1e6:.1f}",
                ]
            )
    headers = ["upstream", "M", "frame", "direct frames/s", "via replay frames/s"]
    print_table(rows, [*headers, "via/direct", "proxy us/frame"])
    print(
        f"   median of {args.throughput_rounds} round(s) each, after a warm-up round; proxy"
        " us/frame = the proxy's CPU time (utime+stime, 10 ms ticks) per frame, recording"
        " included"
    )
    recorded = ", ".join(f"{LABELS[r['server']]} {r['recorded_mib']:.1f} MiB" for r in results)
    print(f"   recordings written: {recorded}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and frames")
    parser.add_argument("--rounds", type=int, default=2000, help="echo round trips")
    parser.add_argument("--frames", type=int, default=1000, help="broadcast frames, 2 ms apart")
    parser.add_argument("--burst", type=int, default=20000, help="throughput frames (M)")
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--servers", default="bare,seed", help="bare, seed or both")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.frames, args.burst, args.throughput_rounds = 300, 200, 5000, 1
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    try:
        with tempfile.TemporaryDirectory(prefix="replay-bench-proxy-") as temp:
            results = [
                asyncio.run(measure(kind, Path(temp), args)) for kind in args.servers.split(",")
            ]
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        with contextlib.suppress(Exception):
            stop_servers()
    latency_table(results, args)
    throughput_table(results, args)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
