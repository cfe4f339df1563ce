"""Fan-out and idle-cost benchmark: replay against a bare ``websockets`` broadcast server.

Run from the project root::

    uv run python bench/fanout.py --quick     # a small run, under a minute
    uv run python bench/fanout.py             # the full run, a few minutes

It prints one table. Everything runs on 127.0.0.1; every wait is bounded; all the child
processes (servers and client processes) are stopped when it ends, even on error.

Fan-out: N clients are connected (spread over several client processes, each using the
``websockets`` asyncio client) and M frames are played to them with no pause, by

* replay: ``POST /trigger/<scenario>?speed=0`` on a ``replay serve`` subprocess whose
  scenario has M ``message: EVENT`` steps, and
* bare: a minimal ``websockets.asyncio.server.serve`` server that, when told to over a
  control WebSocket, calls ``broadcast()`` M times in a row with pre-encoded frames.

Both send the same bytes. The time is taken from the trigger to the moment the last client
has received its M-th frame. Every client checks that it got all M frames, in order.

Idle cost: the server's CPU use (utime + stime from /proc/<pid>/stat) over a few seconds
and its resident memory (VmRSS from /proc/<pid>/status) with many idle clients connected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
SCENARIO = "bench_fanout"
#: Connections a client process opens at once (keeps the listen backlogs from overflowing).
CONNECT_CONCURRENCY = 64
#: How long any one child process may live, whatever happens (a last-resort bound).
CHILD_LIFETIME = 900.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------
# Frames: the same bytes from both servers, checked exactly by the clients.


def frame_text(seq: int) -> str:
    return f"seq {seq}"


def frame(seq: int) -> str:
    """What replay puts on the wire for ``message: EVENT`` / ``text: seq <n>``."""
    return json.dumps(
        {"message_type": "EVENT", "message": frame_text(seq)},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def frame_seq(text: str) -> int | None:
    try:
        return int(json.loads(text)["message"].split()[1])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


# --------------------------------------------------------------------------------------
# Small helpers.


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def host_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine, all cores (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def other_load(seconds: float = 1.0) -> float:
    """CPU % (of one core) used by other processes while this one sleeps."""
    busy0, _ = host_ticks()
    time.sleep(seconds)
    busy1, _ = host_ticks()
    return 100 * (busy1 - busy0) / CLOCK_TICKS / seconds


def memory_kib(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def http_json(url: str, method: str = "GET", timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def poll(check: Any, timeout: float, interval: float = 0.05) -> bool:
    """Call ``check()`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------------------
# The bare websockets broadcast server (run in its own process: fanout.py --bare-server).


def run_bare_server(port: int) -> None:
    import logging

    from websockets.asyncio.server import broadcast, serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    raise_open_files_limit()

    async def main() -> None:
        clients: set[Any] = set()
        frames: list[bytes] = []

        async def handler(connection: Any) -> None:
            if connection.request.path == "/control":
                # Commands from the bench: "count", "prepare M", "go".
                async for command in connection:
                    words = str(command).split()
                    if words[0] == "count":
                        await connection.send(str(len(clients)))
                    elif words[0] == "prepare":
                        frames[:] = [frame(i).encode() for i in range(int(words[1]))]
                        await connection.send("ready")
                    elif words[0] == "go":
                        targets = list(clients)
                        for data in frames:  # no pause between frames
                            broadcast(targets, data, text=True)
                        await connection.send(f"sent {len(frames)} {len(targets)}")
                return
            clients.add(connection)
            try:
                await connection.wait_closed()
            finally:
                clients.discard(connection)

        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
        async with serve(handler, HOST, port, backlog=2048):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(stop, CHILD_LIFETIME)

    with contextlib.suppress(TimeoutError):
        asyncio.run(main())


# --------------------------------------------------------------------------------------
# Client processes.


@dataclass
class ConnStat:
    next: int = 0  # the sequence number expected next
    received: int = 0
    lost: int = 0  # frames skipped over (a gap in the sequence)
    disorder: int = 0  # frames older than one already received, or unreadable
    last: float = 0.0
    first: float = 0.0
    close_code: int | None = None
    closed_early: bool = False


def client_process(
    worker: int,
    url: str,
    count: int,
    frames: int,
    deflate: bool,
    reports: Any,
    stop: Any,
    timeout: float,
) -> None:
    """Hold ``count`` connections to ``url``; read ``frames`` frames on each; report."""
    raise_open_files_limit()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench process decides when to stop
    try:
        asyncio.run(
            _client_main(worker, url, count, frames, deflate, reports, stop, timeout),
        )
    except Exception as error:  # report it: the bench must not wait for us in vain
        reports.put(("error", worker, f"{type(error).__name__}: {error}"))


async def _client_main(
    worker: int,
    url: str,
    count: int,
    frames: int,
    deflate: bool,
    reports: Any,
    stop: Any,
    read_timeout: float,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    expected = [frame(i) for i in range(frames)]
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures: Counter[str] = Counter()

    async def open_one() -> Any:
        async with gate:
            for attempt in range(3):
                try:
                    return await connect(
                        url,
                        compression="deflate" if deflate else None,
                        open_timeout=20,
                        ping_interval=None,  # like a browser: the server pings, not the client
                        close_timeout=5,
                        max_size=2**20,
                    )
                except Exception as error:
                    if attempt == 2:
                        failures[type(error).__name__] += 1
                        return None
                    await asyncio.sleep(0.2 * (attempt + 1))
        return None

    opened = await asyncio.wait_for(asyncio.gather(*(open_one() for _ in range(count))), 90)
    connections = [c for c in opened if c is not None]
    cpu0 = time.process_time()
    reports.put(("connected", worker, len(connections), dict(failures)))

    stats = [ConnStat() for _ in connections]

    async def read(connection: Any, stat: ConnStat) -> None:
        try:
            while stat.next < frames:
                message = await connection.recv()
                now = time.monotonic()
                if not stat.received:
                    stat.first = now
                stat.received += 1
                stat.last = now
                if message == expected[stat.next]:
                    stat.next += 1
                    continue
                seq = frame_seq(message)
                if seq is None or seq < stat.next:
                    stat.disorder += 1
                else:
                    stat.lost += seq - stat.next
                    stat.next = seq + 1
        except ConnectionClosed as closed:
            stat.closed_early = True
            stat.close_code = closed.rcvd.code if closed.rcvd else None

    if frames:
        readers = [asyncio.create_task(read(c, s)) for c, s in zip(connections, stats, strict=True)]
        _, pending = await asyncio.wait(readers, timeout=read_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    cpu1 = time.process_time()
    complete = [s for s in stats if s.next >= frames and not s.lost and not s.disorder]
    reports.put(
        (
            "done",
            worker,
            {
                "connections": len(connections),
                "complete": len(complete),
                "received": sum(s.received for s in stats),
                "lost": sum(s.lost for s in stats),
                "disorder": sum(s.disorder for s in stats),
                "unfinished": sum(s.next < frames for s in stats),
                "closed_early": sum(s.closed_early for s in stats),
                "close_codes": dict(Counter(str(s.close_code) for s in stats if s.closed_early)),
                "first": min((s.first for s in stats if s.received), default=None),
                "lasts": [s.last for s in stats if s.received],
                "cpu": cpu1 - cpu0,
            },
        )
    )
    # Hold the connections until the bench says stop (bounded).
    await asyncio.to_thread(stop.wait, CHILD_LIFETIME)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.gather(*(c.close() for c in connections), return_exceptions=True), 15
        )
    reports.put(("closed", worker))


class ClientFleet:
    """N connections spread over k client processes."""

    def __init__(
        self,
        ctx: Any,
        url: str,
        clients: int,
        frames: int,
        processes: int,
        deflate: bool,
        timeout: float,
    ) -> None:
        self.ctx = ctx
        self.reports = ctx.Queue()
        self.stop = ctx.Event()
        self.processes: list[Any] = []
        self.done: dict[int, dict[str, Any]] = {}
        self.connected: dict[int, int] = {}
        self.failures: Counter[str] = Counter()
        self.errors: list[str] = []
        self._closed: set[int] = set()
        self.timeout = timeout
        k = max(1, min(processes, clients))
        shares = [clients // k + (1 if i < clients % k else 0) for i in range(k)]
        for worker, share in enumerate(shares):
            process = ctx.Process(
                target=client_process,
                args=(worker, url, share, frames, deflate, self.reports, self.stop, timeout),
                daemon=True,
                name=f"bench-client-{worker}",
            )
            self.processes.append(process)

    def start(self) -> None:
        for process in self.processes:
            process.start()
            CHILDREN.append(process)

    def _collect(self, kind: str, want: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        got = sum(1 for _ in self._seen(kind))
        while got < want:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                report = self.reports.get(timeout=min(left, 0.5))
            except Exception:
                if not any(p.is_alive() for p in self.processes):
                    return False
                continue
            if report[0] == "connected":
                self.connected[report[1]] = report[2]
                self.failures.update(report[3])
            elif report[0] == "done":
                self.done[report[1]] = report[2]
            elif report[0] == "error":
                self.errors.append(f"client process {report[1]}: {report[2]}")
                return False
            elif report[0] == "closed":
                self._closed.add(report[1])
            got = sum(1 for _ in self._seen(kind))
        return True

    def _seen(self, kind: str) -> Any:
        return {"connected": self.connected, "done": self.done, "closed": self._closed}[kind]

    def wait_connected(self, timeout: float = 120.0) -> int:
        self._collect("connected", len(self.processes), timeout)
        return sum(self.connected.values())

    def wait_done(self) -> bool:
        return self._collect("done", len(self.processes), self.timeout + 30)

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(Exception):
            self._collect("closed", len(self.processes), 20)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
            with contextlib.suppress(ValueError):
                CHILDREN.remove(process)


# --------------------------------------------------------------------------------------
# Servers.

CHILDREN: list[Any] = []  # every process started, stopped in main()'s finally


class Server:
    kind = ""

    def __init__(self, argv: list[str], log: Path, port: int) -> None:
        self.argv = argv
        self.log_path = log
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the bench only; it stops us
            )
        CHILDREN.append(self.process)
        if not poll(self.ready, 30, 0.1):
            raise RuntimeError(f"{self.kind} server did not start; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        raise NotImplementedError

    def clients(self) -> int:
        raise NotImplementedError

    def trigger(self, frames: int) -> dict[str, Any]:
        raise NotImplementedError

    def prepare(self, frames: int) -> None:
        """Anything to do before the clock starts."""

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        with contextlib.suppress(ValueError):
            CHILDREN.remove(process)

    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}/ws"

    def log_problems(self) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        keys = ("WARNING", "ERROR", "CRITICAL", "Traceback", "Exception")
        return [line for line in lines if any(key in line for key in keys)]


class ReplayServer(Server):
    kind = "replay"

    def __init__(self, scenarios: Path, log: Path, queue_size: int | None = None) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "replay", "serve", "--host", HOST, "--port", str(port)]
        argv += ["--scenarios", str(scenarios), "--log-level", "warning"]
        if queue_size is not None:
            argv += ["--queue-size", str(queue_size)]
        super().__init__(argv, log, port)
        self.queue_size = queue_size

    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def ready(self) -> bool:
        return self.alive() and http_json(f"{self.base()}/healthz", timeout=2)["status"] == "ok"

    def clients(self) -> int:
        return int(http_json(f"{self.base()}/healthz", timeout=5)["clients"]["/ws"])

    def trigger(self, frames: int) -> dict[str, Any]:
        url = f"{self.base()}/trigger/{SCENARIO}?speed=0"
        try:
            return dict(http_json(url, method="POST", timeout=120))
        except urllib.error.HTTPError as error:
            return {"status": f"HTTP {error.code}", "detail": error.read()[:300].decode()}


class BareServer(Server):
    kind = "bare"

    def __init__(self, log: Path) -> None:
        port = free_port()
        argv = [sys.executable, str(Path(__file__).resolve()), "--bare-server", str(port)]
        super().__init__(argv, log, port)
        self.control: Any = None
        self._exit = contextlib.ExitStack()

    def _ask(self, command: str) -> str:
        if self.control is None:
            from websockets.sync.client import connect

            self.control = self._exit.enter_context(
                connect(f"ws://{HOST}:{self.port}/control", open_timeout=5, compression=None)
            )
        self.control.send(command)
        return str(self.control.recv(timeout=120))

    def ready(self) -> bool:
        return self.alive() and self._ask("count").isdigit()

    def clients(self) -> int:
        return int(self._ask("count"))

    def prepare(self, frames: int) -> None:
        self._ask(f"prepare {frames}")

    def trigger(self, frames: int) -> dict[str, Any]:
        _, sent, clients = self._ask("go").split()
        return {"status": "success", "sent": int(sent), "clients": int(clients)}

    def stop(self) -> None:
        if self.control is not None:
            with contextlib.suppress(Exception):
                self._exit.close()
            self.control = None
        super().stop()


def write_scenario(folder: Path, frames: int) -> None:
    lines = [
        "version: 1",
        f"description: Benchmark fan-out, {frames} EVENT frames with no delay.",
        "delay: 0",
        "steps:",
    ]
    for seq in range(frames):
        lines += ["  - message: EVENT", f'    text: "{frame_text(seq)}"']
    (folder / f"{SCENARIO}.yaml").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------
# Measurements.


@dataclass
class FanoutResult:
    server: str
    label: str
    clients: int
    frames: int
    times: list[float] = field(default_factory=list)
    firsts: list[float] = field(default_factory=list)
    medians: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    server_cpu_s: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    host_busy: list[float] = field(default_factory=list)
    other_cpu: list[float] = field(default_factory=list)
    connected: int = 0
    complete: int = 0
    lost: int = 0
    disorder: int = 0
    unfinished: int = 0
    dropped: int = 0
    close_codes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def time(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    @property
    def us_per_frame(self) -> float | None:
        """Server CPU time per frame delivered to one client, in microseconds."""
        # /proc counts 10 ms ticks: below ~50 ms of CPU the figure is noise.
        if not self.times or not self.server_cpu_s or statistics.median(self.server_cpu_s) < 0.05:
            return None
        return 1e6 * statistics.median(self.server_cpu_s) / (self.clients * self.frames)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.disorder or self.unfinished or self.dropped or self.problems)


def fanout_once(
    server: Server, clients: int, frames: int, args: argparse.Namespace, result: FanoutResult
) -> None:
    ctx = mp.get_context("spawn")
    server.prepare(frames)
    fleet = ClientFleet(
        ctx, server.ws_url(), clients, frames, args.client_procs, args.deflate, args.timeout
    )
    try:
        fleet.start()
        connected = fleet.wait_connected()
        result.connected = min(result.connected or connected, connected)
        if fleet.errors:
            result.problems += fleet.errors
            return
        if connected < clients:
            result.problems.append(
                f"only {connected}/{clients} clients connected ({dict(fleet.failures)})"
            )
        if not poll(lambda: server.clients() >= connected, 20):
            result.problems.append(f"server saw {server.clients()} of {connected} clients")
        cpu0, host0, own0 = cpu_seconds(server.pid), host_ticks(), time.process_time()
        start = time.monotonic()
        answer = server.trigger(frames)
        finished = fleet.wait_done()
        wall = time.monotonic() - start
        cpu1, host1, own1 = cpu_seconds(server.pid), host_ticks(), time.process_time()
        result.runs.append(answer)
        if answer.get("status") != "success":
            result.problems.append(f"trigger answered {answer}")
        if not finished:
            result.problems += fleet.errors or ["client processes did not report in time"]
        reports = list(fleet.done.values())
        lasts = [t for r in reports for t in r["lasts"]]
        firsts = [r["first"] for r in reports if r["first"] is not None]
        complete = sum(r["complete"] for r in reports)
        result.complete = min(result.complete, complete) if result.runs[:-1] else complete
        result.lost += sum(r["lost"] for r in reports)
        result.disorder += sum(r["disorder"] for r in reports)
        result.unfinished += sum(r["unfinished"] for r in reports)
        result.dropped += sum(r["closed_early"] for r in reports)
        for r in reports:
            result.close_codes.update(r["close_codes"])
        if not (lasts and complete == clients):
            # A time to "last client" means nothing if some clients never got everything.
            result.problems.append(f"run {len(result.runs)}: {complete}/{clients} complete")
            return
        result.times.append(max(lasts) - start)
        result.medians.append(statistics.median(lasts) - start)
        if firsts:
            result.firsts.append(min(firsts) - start)
        result.server_cpu.append(100 * (cpu1 - cpu0) / wall)
        result.server_cpu_s.append(cpu1 - cpu0)
        total = host1[1] - host0[1]
        result.host_busy.append(100 * (host1[0] - host0[0]) / total if total else 0.0)
        # CPU used by processes outside the benchmark (e.g. another job on the machine).
        ours = (cpu1 - cpu0) + sum(r["cpu"] for r in reports) + (own1 - own0)
        other = (host1[0] - host0[0]) / CLOCK_TICKS - ours
        result.other_cpu.append(max(0.0, 100 * other / wall))
        result.client_cpu.append(
            max((100 * r["cpu"] / wall for r in reports), default=0.0),
        )
    finally:
        fleet.close()
    # Wait for the server to forget the clients before the next measurement.
    poll(lambda: server.clients() == 0, 20, 0.1)


def measure_fanout(
    server: Server, label: str, clients: int, frames: int, args: argparse.Namespace
) -> FanoutResult:
    result = FanoutResult(server.kind, label, clients, frames)
    for _ in range(args.repeat):
        if not server.alive():
            result.problems.append(f"{server.kind} server died; see {server.log_path}")
            break
        fanout_once(server, clients, frames, args, result)
        if result.problems:
            break
    return result


@dataclass
class IdleResult:
    server: str
    clients: int = 0
    cpu_percent: float = 0.0
    rss_before_kib: int = 0
    rss_after_kib: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def per_client_kib(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.clients if self.clients else 0.0


def measure_idle(server: Server, args: argparse.Namespace) -> IdleResult:
    result = IdleResult(server.kind)
    server.start()
    try:
        time.sleep(1.0)
        result.rss_before_kib = memory_kib(server.pid)
        ctx = mp.get_context("spawn")
        fleet = ClientFleet(
            ctx, server.ws_url(), args.idle_clients, 0, args.client_procs, args.deflate, 10
        )
        try:
            fleet.start()
            result.clients = fleet.wait_connected()
            if fleet.errors:
                result.problems += fleet.errors
            if result.clients < args.idle_clients:
                result.problems.append(
                    f"only {result.clients}/{args.idle_clients} connected ({dict(fleet.failures)})"
                )
            poll(lambda: server.clients() >= result.clients, 20)
            fleet.wait_done()
            time.sleep(1.0)  # let the connection set-up settle
            cpu0, start = cpu_seconds(server.pid), time.monotonic()
            time.sleep(args.idle_seconds)
            cpu1, end = cpu_seconds(server.pid), time.monotonic()
            result.seconds = end - start
            result.cpu_percent = 100 * (cpu1 - cpu0) / (end - start)
            result.rss_after_kib = memory_kib(server.pid)
            if server.clients() != result.clients:
                result.problems.append(f"server has {server.clients()} clients at the end")
        finally:
            fleet.close()
    finally:
        server.stop()
    return result


# --------------------------------------------------------------------------------------
# Output.


def fmt_time(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def fmt_rate(result: FanoutResult) -> str:
    if result.time is None or not result.time:
        return "-"
    return f"{result.clients * result.frames / result.time:,.0f}"


def cpu_cell(percents: list[float], times: list[float]) -> str:
    """CPU % from /proc ticks (10 ms): meaningless over very short runs."""
    if not percents or not times or statistics.median(times) < 0.3:
        return "-"
    return f"{statistics.median(percents):.0f}%"


def delivery_note(result: FanoutResult) -> str:
    if result.ok:
        return f"all {result.complete}/{result.clients} in order"
    notes = []
    if result.dropped:
        codes = ", ".join(f"{code}: {n}" for code, n in result.close_codes.items())
        notes.append(f"{result.dropped} dropped (close codes {codes})")
    if result.lost:
        notes.append(f"{result.lost} frames lost")
    if result.disorder:
        notes.append(f"{result.disorder} out of order")
    if result.unfinished and not result.dropped:
        notes.append(f"{result.unfinished} incomplete")
    notes += result.problems[:1]
    return "; ".join(notes)


def source_version() -> str:
    """The commit replay was measured at, and whether replay/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "replay"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown commit"
    return f"{head or 'unknown commit'}{' + uncommitted changes' if dirty else ''}"


def print_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    right = [i > 1 for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if r else str(c).ljust(w)
            for c, w, r in zip(cells, widths, right, strict=True)
        ).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def report(
    fanouts: list[FanoutResult],
    idles: list[IdleResult],
    args: argparse.Namespace,
) -> None:
    print()
    print(
        f"replay fan-out benchmark — {os.cpu_count()} CPU(s), Python {platform.python_version()},"
        f" {args.client_procs} client processes, websockets asyncio client,"
        f" compression {'deflate' if args.deflate else 'off'}, median of {args.repeat} run(s),"
        f" replay at {source_version()}"
    )
    print(
        "NOTE: server and client processes share this machine's "
        f"{os.cpu_count()} cores: the figures are relative, not absolute capacity."
    )
    print()
    print("1. Fan-out: M frames to N clients, trigger -> last client has all M (speed=0)")
    bare = {(r.clients, r.frames): r for r in fanouts if r.server == "bare"}
    rows = []
    for r in fanouts:
        ref = bare.get((r.clients, r.frames))
        ratio = cpu_ratio = "-"
        if r.server != "bare" and ref and ref.time and r.time:
            ratio = f"{r.time / ref.time:.2f}x"
        if r.server != "bare" and ref and ref.us_per_frame and r.us_per_frame:
            cpu_ratio = f"{r.us_per_frame / ref.us_per_frame:.2f}x"
        us = r.us_per_frame
        spread = (
            f"{min(r.times) * 1000:,.0f}-{max(r.times) * 1000:,.0f}" if len(r.times) > 1 else "-"
        )
        rows.append(
            [
                r.label,
                f"{r.clients}",
                f"{r.frames}",
                fmt_time(r.time),
                spread,
                fmt_time(statistics.median(r.firsts) if r.firsts else None),
                fmt_rate(r),
                ratio,
                cpu_cell(r.server_cpu, r.times),
                "-" if us is None else f"{us:.1f}",
                cpu_ratio,
                cpu_cell(r.client_cpu, r.times),
                cpu_cell(r.host_busy, r.times),
                cpu_cell(r.other_cpu, r.times),
                delivery_note(r),
            ]
        )
    print_table(
        rows,
        [
            "server",
            "N",
            "M",
            "last client",
            "range ms",
            "1st frame",
            "frames/s",
            "vs bare",
            "srv CPU",
            "srv us/frame",
            "vs bare",
            "max cli CPU",
            "host busy",
            "other",
            "delivery",
        ],
    )
    for text in (
        "last client = median over the runs of trigger -> last frame at the last client;"
        " range = fastest-slowest run; 1st frame = trigger -> first frame anywhere",
        "frames/s = N*M / last client; first 'vs bare' = replay time / bare time (>1 = slower)",
        "srv CPU = server process CPU / wall time of the run (100% = one core; both servers"
        " are single-threaded); srv us/frame = server CPU time per frame per client,"
        " and its 'vs bare' ratio: the figure least distorted by the shared cores",
        "max cli CPU = busiest client process; host busy = all cores (100% = machine"
        " saturated: then server and clients slow each other down); other = CPU used by"
        " processes outside the benchmark (100% = one core); '-' = run too short",
    ):
        print(f"   {text}")
    if not idles:
        return
    print()
    print(
        f"2. Idle cost: {args.idle_clients} idle clients connected,"
        f" server CPU over {args.idle_seconds:g} s, resident memory"
    )
    rows = []
    by_kind = {r.server: r for r in idles}
    for r in idles:
        ratio = "-"
        ref = by_kind.get("bare")
        if r.server != "bare" and ref and ref.per_client_kib > 0:
            ratio = f"{r.per_client_kib / ref.per_client_kib:.2f}x"
        rows.append(
            [
                r.server,
                f"{r.clients}",
                f"{r.cpu_percent:.1f}%",
                mib(r.rss_before_kib),
                mib(r.rss_after_kib),
                f"{r.per_client_kib:.1f} KiB",
                ratio,
                "; ".join(r.problems) or "ok",
            ]
        )
    print_table(
        rows,
        ["server", "clients", "CPU", "RSS before", "RSS with clients", "RSS/client", "vs bare", ""],
    )


# --------------------------------------------------------------------------------------
# Main.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fan-out and idle-cost benchmark: replay vs a bare websockets server."
    )
    parser.add_argument(
        "--clients",
        default="100,1000",
        help="comma-separated client counts N for the fan-out (default 100,1000)",
    )
    parser.add_argument("--frames", type=int, default=200, help="frames M per run (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row; median (default 5)")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--idle-clients", type=int, default=2000, help="default 2000")
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="CPU sampling time (default 5)"
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=None,
        help="replay's --queue-size for the main rows (default: replay's own, 1024)",
    )
    parser.add_argument(
        "--big-queue-size",
        type=int,
        default=None,
        help="replay's --queue-size for the extra row run when clients were dropped "
        "(default max(8 * M, 8192))",
    )
    parser.add_argument(
        "--burst-frames",
        type=int,
        default=None,
        help="also play a burst of this many frames (more than replay's queue bound) to "
        "the smallest N, to see whether speed=0 outruns the client writers "
        "(default 3000; 0 = off; --quick: off)",
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="clients offer permessage-deflate (browsers do; default off: no compression)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a fan-out run may take (default 60)"
    )
    parser.add_argument("--no-idle", action="store_true", help="skip the idle-cost part")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run: N=20,200, M=50, 1 run, 400 idle clients for 2 s",
    )
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])

        def default(option: str, name: str, value: Any) -> None:
            if not any(g == option or g.startswith(option + "=") for g in given):
                setattr(args, name, value)

        default("--clients", "clients", "20,200")
        default("--frames", "frames", 50)
        default("--repeat", "repeat", 1)
        default("--idle-clients", "idle_clients", 400)
        default("--idle-seconds", "idle_seconds", 2.0)
        default("--burst-frames", "burst_frames", 0)
    if args.burst_frames is None:
        args.burst_frames = 3000
    args.client_counts = [int(n) for n in str(args.clients).split(",") if n.strip()]
    if args.big_queue_size is None:
        args.big_queue_size = max(8 * max(args.frames, args.burst_frames), 8192)
    for name in ("frames", "repeat", "client_procs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def stop_children() -> None:
    for child in list(CHILDREN):
        with contextlib.suppress(Exception):
            if isinstance(child, subprocess.Popen):
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
                    try:
                        child.wait(5)
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait(5)
            else:
                if child.is_alive():
                    child.terminate()
                    child.join(5)
                if child.is_alive():
                    child.kill()
                    child.join(5)
        with contextlib.suppress(ValueError):
            CHILDREN.remove(child)


def run(args: argparse.Namespace) -> int:
    limit = raise_open_files_limit()
    need = max([*args.client_counts, args.idle_clients]) + 200
    notes: list[str] = []
    if limit < need:
        notes.append(f"open-files limit is {limit}; {need} wanted: connections may fail")
    other = other_load()
    if other > 20:
        notes.append(
            f"the machine was not idle: other processes used {other:.0f}% CPU (of one core)"
            " just before the bench; the figures are less reliable"
        )
    began = time.monotonic()
    fanouts: list[FanoutResult] = []
    idles: list[IdleResult] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.no_save:
        work_dir = Path(tempfile.mkdtemp(prefix="replay-bench-"))
    else:
        work_dir = RESULTS / f"fanout-{stamp}"
        work_dir.mkdir(parents=True, exist_ok=True)
    scenario_dirs: dict[int, Path] = {}

    def scenarios_for(frames: int) -> Path:
        if frames not in scenario_dirs:
            folder = Path(tempfile.mkdtemp(prefix="replay-bench-scenarios-"))
            write_scenario(folder, frames)
            scenario_dirs[frames] = folder
        return scenario_dirs[frames]

    servers: list[Server] = []

    def started(server: Server) -> Server:
        servers.append(server)
        server.start()
        return server

    def log(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", file=sys.stderr, flush=True)

    try:
        # ---- 1. fan-out
        frames = args.frames
        replay = started(
            ReplayServer(scenarios_for(frames), work_dir / "replay.log", args.queue_size)
        )
        bare = started(BareServer(work_dir / "bare.log"))
        queue_label = f"replay (queue {args.queue_size or 1024})"
        big: ReplayServer | None = None
        for n in args.client_counts:
            for server, label in ((replay, queue_label), (bare, "bare websockets")):
                log(f"fan-out: {label}, N={n}, M={frames}, {args.repeat} run(s)")
                result = measure_fanout(server, label, n, frames, args)
                fanouts.append(result)
                log(f"  -> {fmt_time(result.time)}; {delivery_note(result)}")
            if fanouts[-2].dropped or fanouts[-2].unfinished:
                if big is None:
                    big = started(
                        ReplayServer(
                            scenarios_for(frames),
                            work_dir / "replay-big-queue.log",
                            args.big_queue_size,
                        )
                    )
                label = f"replay (queue {args.big_queue_size})"
                log(f"fan-out: clients were dropped or incomplete; again with {label}")
                fanouts.append(measure_fanout(big, label, n, frames, args))
        if args.burst_frames:
            n = min(args.client_counts)
            burst = args.burst_frames
            burst_replay = started(
                ReplayServer(scenarios_for(burst), work_dir / "replay-burst.log", args.queue_size)
            )
            for server, label in ((burst_replay, queue_label), (bare, "bare websockets")):
                log(f"burst: {label}, N={n}, M={burst}")
                result = measure_fanout(server, label, n, burst, args)
                fanouts.append(result)
                log(f"  -> {fmt_time(result.time)}; {delivery_note(result)}")
            if fanouts[-2].dropped or fanouts[-2].unfinished:
                label = f"replay (queue {args.big_queue_size})"
                log(f"burst: clients were dropped or incomplete; again with {label}")
                burst_big = started(
                    ReplayServer(
                        scenarios_for(burst),
                        work_dir / "replay-burst-big-queue.log",
                        args.big_queue_size,
                    )
                )
                fanouts.append(measure_fanout(burst_big, label, n, burst, args))
        for server in servers:
            if server.alive():
                notes.append(
                    f"{server.kind} server on port {server.port}: peak RSS "
                    f"{mib(memory_kib(server.pid, 'VmHWM'))} after the fan-out runs"
                )
            server.stop()

        # ---- 2. idle cost (fresh servers, so "RSS before" is a fresh process)
        if not args.no_idle:
            for server in (
                ReplayServer(scenarios_for(frames), work_dir / "replay-idle.log"),
                BareServer(work_dir / "bare-idle.log"),
            ):
                servers.append(server)
                log(f"idle: {server.kind}, {args.idle_clients} clients, {args.idle_seconds:g} s")
                idles.append(measure_idle(server, args))
    finally:
        for server in servers:
            with contextlib.suppress(Exception):
                server.stop()
        stop_children()
        for folder in scenario_dirs.values():
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()

    for server in servers:
        problems = server.log_problems()
        if problems:
            distinct = Counter(_shape(line) for line in problems)
            top = "; ".join(f"{n}x {line[:140]}" for line, n in distinct.most_common(3))
            notes.append(f"{server.log_path.name}: {len(problems)} warning/error lines: {top}")
    if any(r.server == "bare" for r in fanouts):
        notes.append(
            "bare = websockets.asyncio.server.broadcast(), M calls in a row with no pause "
            "(no per-client queue, no backpressure); "
            "replay = a bounded queue and a writer task per client."
        )
    notes.append(
        f"total bench time {time.monotonic() - began:.0f} s"
        + ("" if args.no_save else f"; server logs in {work_dir.relative_to(ROOT)}/")
    )
    if args.no_save:
        shutil.rmtree(work_dir, ignore_errors=True)
    report(fanouts, idles, args)
    print()
    print("Notes:")
    for note in notes:
        print(f" - {note}")
    if not args.no_save:
        out = work_dir / "results.json"
        out.write_text(json.dumps(_as_json(fanouts, idles, args), indent=2) + "\n")
        print(f"\nresults: {out.relative_to(ROOT)}")
    return 0


def _shape(line: str) -> str:
    """A log line without its variable parts (client ids, counts), for grouping."""
    import re

    return re.sub(r"\b[0-9a-f]{8}\b|\b\d+\b", "#", line)


def _as_json(
    fanouts: list[FanoutResult], idles: list[IdleResult], args: argparse.Namespace
) -> dict[str, Any]:
    return {
        "args": {k: v for k, v in vars(args).items() if k != "bare_server"},
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "replay_source": source_version(),
        "fanout": [
            {
                "server": r.server,
                "label": r.label,
                "clients": r.clients,
                "frames": r.frames,
                "times_s": r.times,
                "median_s": r.time,
                "first_frame_s": r.firsts,
                "median_client_s": r.medians,
                "frames_per_s": r.clients * r.frames / r.time if r.time else None,
                "server_cpu_percent": r.server_cpu,
                "server_cpu_s": r.server_cpu_s,
                "server_us_per_frame": r.us_per_frame,
                "host_busy_percent": r.host_busy,
                "other_cpu_percent": r.other_cpu,
                "client_cpu_percent_max": r.client_cpu,
                "complete": r.complete,
                "lost": r.lost,
                "disorder": r.disorder,
                "unfinished": r.unfinished,
                "dropped": r.dropped,
                "close_codes": dict(r.close_codes),
                "problems": r.problems,
                "trigger_answers": r.runs,
            }
            for r in fanouts
        ],
        "idle": [
            {
                "server": r.server,
                "clients": r.clients,
                "seconds": r.seconds,
                "cpu_percent": r.cpu_percent,
                "rss_before_kib": r.rss_before_kib,
                "rss_after_kib": r.rss_after_kib,
                "rss_per_client_kib": r.per_client_kib,
                "problems": r.problems,
            }
            for r in idles
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_server:
        run_bare_server(args.bare_server)
        return 0

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stop_children()


if __name__ == "__main__":
    sys.exit(main())
