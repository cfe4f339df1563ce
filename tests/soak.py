"""The soak test (issue 6): many clients, a trigger every second, random disconnects and
reconnects, for minutes. It checks that every healthy client receives every frame of
every run, in order; that the server's resident memory and asyncio tasks stay flat; and
that ordinary disconnects, clean or abrupt, log no ERROR.

    uv run python -m tests.soak --clients 1000 --seconds 180 --json soak.json
    uv run python -m tests.soak --help

``tests/test_soak.py`` runs a short form of it in the suite. With ``--cluster nodes`` or
``--cluster workers`` it soaks a cluster on a real Redis instead, with a node killed and
restarted in the middle: see tests/soak_cluster.py, which holds what differs.

**The server** is ``replay serve`` itself, run as a subprocess (the command's own code
path, logging set up as the command does it), with one extra route, ``GET /_soak/stats``,
that counts the asyncio tasks in the server's loop and the memory blocks Python has
allocated (and, when asked, collects garbage first and counts the objects the collector
tracks, by type). A subprocess, not a thread of this process, so that its resident
memory (``VmRSS`` in ``/proc/<pid>/status``) is the server's alone, the server does not
share a GIL with the driver, and its standard error holds everything it logs, including
what uvicorn's loggers (which do not propagate to the root logger, so pytest's caplog
would miss them) and asyncio's "exception was never retrieved" reports say.

**The scenario** repeats, ``--frames`` times, a ``/ws`` message and a ``/ws/stream`` chunk
whose text is ``"<run id> <iteration>"``, then pauses ``--delay``: each client (half on
``/ws``, half on ``/ws/stream``) gets ``--frames`` numbered frames per run.

**The clients** (``--clients``) are spread over ``--workers`` processes, each an asyncio
loop of ``websockets`` clients (``compression=None``). Every second, each client leaves
with probability ``--churn``: a clean close (close handshake), or, for ``--abort`` of
them, an abrupt one (the TCP connection is cut without a close frame); it reconnects at
once with a new connection. Each connection records, per run id, which iterations it
received and whether any came out of order.

**Which runs a connection must have received in full.** All times are
``time.monotonic()``, which on Linux is one clock for every process of the machine. The
driver notes when it sends each trigger (``posted``, before the run can start) and when
the trigger's answer arrives (``answered``, after the run's last frame was written:
triggers use ``wait=true``, in their own tasks, so they do not hold up the next one). A
connection notes ``opened`` when its handshake has completed (the server answers the
handshake and registers the client in one step of its event loop, with no await in
between, so every frame sent after the answer reaches the client) and ``closing`` when
it decides to leave, before it sends anything. A run is *required* of a connection when

    opened < posted  and  answered < closing

Then the server had the client registered before the run began, and wrote the run's
last frame before the client sent its close frame, so TCP delivers every frame of the
run before the server's close frame; the client keeps reading until the connection has
ended (``websockets`` hands over frames that arrive while it is closing), so it must have
them all, in order. A run that fails this rule is *partial* for the connection: what
it got must still be consecutive iterations, in order, starting at 0 if the connection
was there before the trigger and ending at the last if it left after the answer (any
other hole is a frame lost while the client was connected).

An abrupt disconnect discards whatever the client had not read yet: for those
connections ``closing`` is moved ``ABORT_MARGIN`` earlier, and the client processes
report their event loops' worst lag, which must stay well under it for the rule to hold.

**Memory and tasks.** Before any client connects, ``KEEP_FINISHED`` runs of the scenario
at ``speed=0`` fill the runner's history of finished runs (it keeps the last 100, so it
would otherwise grow during the first 100 s); once the clients are connected,
``--warmup`` seconds of the soak itself run. The start figures are taken then and the
end figures after the last run, both with the churn paused, every client connected and
no run playing; the same figures are taken before any client connects and after they
have all left. Resident memory also holds garbage that only the cyclic collector frees
(and that it frees late), and memory the allocators keep for reuse; the blocks Python
has allocated, counted right after a full collection, are what is alive, and the
precise measure of a leak.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from replay.runner import KEEP_FINISHED

ROOT = Path(__file__).resolve().parent.parent
#: Seconds an abruptly closed connection's ``closing`` is moved back (see the docstring).
ABORT_MARGIN = 2.0
#: Connections a client process opens at once.
CONNECT_CONCURRENCY = 32
#: Seconds any one wait for a server or a client process may take.
PATIENCE = 60.0
#: The client the runs of ``POST /_soak/fill`` are for: no client has that id.
FILL_CLIENT = "soak-fill"
#: The environment variable that makes a worker process of the soak's server instrument
#: itself (see :func:`serve`).
INSTRUMENT = "REPLAY_SOAK_INSTRUMENT"
#: How many failures of each kind the report describes in full.
EXAMPLES = 10
#: Tasks the server may hold at the end beyond those at the start (a client the server
#: dropped keeps a closing task for up to 2 s).
TASKS_TOLERANCE = 5
#: Memory blocks Python may hold, after a full collection, beyond those at the start:
#: this many, plus BLOCKS_PER_CLIENT for each client connected at both times. Caches
#: that fill once (ABC and type caches, cancelled timers waiting in the loop's heap)
#: account for about 1,000, whatever the number of connections; a connection that has
#: exchanged pings holds a few blocks more than a new one (the last frame its parser
#: read, for one). A connected client holds about 230 blocks, so leaking what each
#: connection leaves behind would add about 100,000 over the pytest form's ~470
#: reconnections, and a leak of 10 blocks a connection exceeds the bound there.
BLOCKS_TOLERANCE = 3_000
BLOCKS_PER_CLIENT = 10

SCENARIO = """\
description: The soak test's run; every frame says which run and which iteration it is.
steps:
  - repeat: {frames}
    steps:
      - message: EVENT
        text: "{{{{ run.id }}}} {{{{ iteration }}}}"
        delay: 0
      - chunk: "{{{{ run.id }}}} {{{{ iteration }}}}"
        delay: {delay}
"""


@dataclass
class Options:
    clients: int = 1000
    seconds: float = 180.0
    trigger_every: float = 1.0
    churn: float = 0.02
    abort: float = 0.25
    frames: int = 20
    delay: float = 0.015
    workers: int = 4
    warmup: float = 5.0
    seed: int = 0
    json: Path | None = None
    quiet: bool = False
    #: The cluster soak (see tests/soak_cluster.py): "nodes" or "workers"; None: one server.
    cluster: str | None = None
    #: What the cluster soak kills in the middle: "node", "worker" or "both".
    kill: str = "node"


# -- the server -----------------------------------------------------------------------


def serve(scenarios: str, arguments: list[str] | None = None) -> int:
    """``replay serve --host 127.0.0.1 --port 0 --scenarios SCENARIOS [ARGUMENTS]``, plus
    the soak's routes (see :func:`instrument`); ``ARGUMENTS`` come last, so a later
    ``--port`` wins."""
    from replay import cli

    record_runs = bool(arguments)
    # `serve --workers` starts its workers with multiprocessing's "spawn": each imports
    # this module (as __mp_main__) first, and instruments itself if this says so.
    os.environ[INSTRUMENT] = "runs" if record_runs else "stats"
    instrument(record_runs)
    command = ["serve", "--host", "127.0.0.1", "--port", "0", "--scenarios", scenarios]
    return cli.main([*command, *(arguments or [])])


def instrument(record_runs: bool = False) -> None:
    """Add ``GET /_soak/stats`` to the app ``replay serve`` makes in this process: the
    process id, its resident memory, the clients connected to it, the asyncio tasks in
    the server's loop and the memory blocks Python has allocated (and, when asked,
    collects garbage first and counts the objects the collector tracks, by type).

    With ``record_runs`` (the cluster soak), every run of the soak scenario this process
    ends is noted too (``[run id, when it ended (time.monotonic()), state, frames
    sent]``), handed over (and forgotten) by the next ``GET /_soak/stats?played=true``
    (with ``at``, the moment they were taken);
    and ``POST /_soak/fill`` fills the runner's history of finished runs with runs that
    reach no client (a node restarted in the middle of a soak starts with an empty one).

    The routes are added by wrapping ``replay.server.create_app``, which the command looks
    up when it runs, so everything else is the command's own code.
    """
    import gc

    import replay.server
    from replay.runner import Runner

    make_app = replay.server.create_app
    played: list[tuple[str, float, str, int]] = []

    def create_app(*args: Any, **kwargs: Any) -> Any:
        app = make_app(*args, **kwargs)

        @app.get("/_soak/stats", include_in_schema=False)
        async def stats(objects: bool = False, played: bool = False) -> dict[str, Any]:
            rss = rss_kib(os.getpid())
            # The journal keeps the newest 10,000 entries by design: a bound, not a leak.
            # Emptied before counting, so that only what should not stay counts.
            app.state.replay.journal.clear()
            clients = sum(app.state.replay.delivery.client_counts().values())
            tasks = len(asyncio.all_tasks())
            found = {"pid": os.getpid(), "rss_kib": rss, "tasks": tasks, "clients": clients}
            if played:
                found["at"] = time.monotonic()  # every run ended before is in the notes
                found["played"] = take_played()
            if not objects:
                return {**found, "blocks": sys.getallocatedblocks()}
            gc.collect()
            types = Counter(type(thing).__qualname__ for thing in gc.get_objects())
            blocks = sys.getallocatedblocks()
            return {**found, "blocks": blocks, "objects": types.total(), "types": types}

        @app.post("/_soak/fill", include_in_schema=False)
        async def fill() -> dict[str, Any]:
            server = app.state.replay
            catalog = await server.catalog()
            missing = KEEP_FINISHED - len(server.runner._finished)
            runs = [
                server.runner.start("soak", catalog, speed=0, client=FILL_CLIENT)
                for _ in range(missing)
            ]
            await asyncio.gather(*(run.wait() for run in runs))
            return {"pid": os.getpid(), "runs": len(runs)}

        return app

    def take_played() -> list[tuple[str, float, str, int]]:
        taken = played[:]
        played.clear()
        return taken

    def end(runner: Runner, run: Any, *args: Any, **kwargs: Any) -> None:
        ended(runner, run, *args, **kwargs)
        if run.scenario == "soak" and run.client is None:
            played.append((run.id, time.monotonic(), run.state.value, run.sent))

    replay.server.create_app = create_app
    if record_runs:
        ended = Runner._end
        Runner._end = end  # type: ignore[method-assign,assignment]


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid``, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found.group(1))


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the machine has been busy, and in all, summed over its cores."""
    jiffies = [int(n) for n in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    total = sum(jiffies)
    idle = jiffies[3] + jiffies[4]
    ticks = os.sysconf("SC_CLK_TCK")
    return (total - idle) / ticks, total / ticks


def _die_with_parent() -> None:
    """In a child process: be sent SIGTERM when the parent dies (Linux)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServerProcess:
    """``replay serve`` in a subprocess, logging to ``log``."""

    def __init__(self, scenarios: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.soak", "--serve", str(scenarios)],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        self.url = f"http://127.0.0.1:{self._port()}"

    def _port(self) -> int:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", self.log.read_text())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server did not start:\n{self.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> float:
        """CPU time the server has used (user and system)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def request(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    async def sample(self, objects: bool = False) -> dict[str, Any]:
        """The server's memory, tasks and clients now."""
        query = "?objects=true" if objects else ""
        # The RSS first, before this sample's own requests; then one request at a time
        # (each is a task in the server while it is served).
        rss = self.rss_kib()
        asked = time.monotonic()
        stats = await asyncio.to_thread(self.request, "GET", "/_soak/stats" + query)
        answered = time.monotonic()
        health = await asyncio.to_thread(self.request, "GET", "/healthz")
        return {
            "rss_kib": rss,
            "tasks": stats["tasks"],
            "blocks": stats["blocks"],
            "objects": stats.get("objects"),
            "types": stats.get("types"),
            "clients": sum(health["clients"].values()),
            "latency_ms": round(1000 * (answered - asked), 1),
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


# -- the client processes ---------------------------------------------------------------


class Connection:
    """One connection's record: when it opened and began to close, how it ended, and per
    run id ``[first, last, count, mask, disorder]``: the first and the latest iteration
    received, how many frames, a bit per iteration received, and how many frames came
    with an iteration not above the one before (out of order or repeated)."""

    __slots__ = ("client", "closing", "code", "kind", "opened", "path", "runs")

    def __init__(self, client: str, path: str) -> None:
        self.client = client
        self.path = path
        self.opened = time.monotonic()
        self.closing: float | None = None
        #: "close", "abort" (we left), "end" (the soak is over), "server" (not us).
        self.kind: str | None = None
        self.code: int | None = None
        self.runs: dict[str, list[int]] = {}

    def frame(self, message: str | bytes) -> bool:
        """Note a frame; False if it is not one of the soak's."""
        try:
            data = json.loads(message)
            run_id, _, number = str(data.get("message", data.get("content"))).rpartition(" ")
            iteration = int(number)
        except (ValueError, AttributeError):
            return False
        record = self.runs.get(run_id)
        if record is None:
            self.runs[run_id] = [iteration, iteration, 1, 1 << iteration, 0]
            return True
        if iteration <= record[1]:
            record[4] += 1
        record[1] = iteration
        record[2] += 1
        record[3] |= 1 << iteration
        return True

    def summary(self) -> tuple[Any, ...]:
        return (self.client, self.path, self.opened, self.closing, self.kind, self.code, self.runs)


class Fleet:
    """One client process's clients, driven by the parent over ``pipe``."""

    def __init__(self, clients: list[tuple[str, str]], options: Options, pipe: Pipe) -> None:
        #: Each client's id and URL (``http://HOST:PORT/PATH``).
        self.clients = [Client(self, client_id, url) for client_id, url in clients]
        self.options = options
        self.pipe = pipe
        self.churning = False
        self.finishing = False
        self.gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self.finished: list[tuple[Any, ...]] = []
        self.stats: Counter[str] = Counter()
        self.problems: Counter[str] = Counter()
        self.max_lag = 0.0
        self.commands: asyncio.Queue[str] = asyncio.Queue()
        #: Set whenever a client has connected.
        self.connected = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.pipe.fileno(), self._command)
        tasks = [asyncio.create_task(client.run()) for client in self.clients]
        helpers = [
            asyncio.create_task(self._churn()),
            asyncio.create_task(self._flush()),
            asyncio.create_task(self._watch_lag()),
        ]
        await self._all_connected()
        self.pipe.send(("ready", None))
        while True:
            command = await self.commands.get()
            if command == "go":
                self.churning = True
            elif command == "hold":
                self.churning = False
                await self._all_connected()
                self.pipe.send(("held", time.process_time()))
            elif command == "finish":
                break
        self.churning = False
        self.finishing = True
        for client in self.clients:
            client.leave("end")
        await asyncio.gather(*tasks)
        for helper in helpers:
            helper.cancel()
        self._send_finished()
        stats = {**self.stats, "max_lag_s": self.max_lag, "problems": dict(self.problems)}
        self.pipe.send(("done", stats))

    def _command(self) -> None:
        try:
            while self.pipe.poll():
                self.commands.put_nowait(self.pipe.recv())
        except EOFError:  # the parent has gone
            print("soak client process: the driver has gone", file=sys.stderr)
            os._exit(1)

    async def _all_connected(self) -> None:
        while not all(client.connected for client in self.clients):
            self.connected.clear()
            await self.connected.wait()

    async def _churn(self) -> None:
        # Each second, the clients that leave are chosen, each to leave at a random moment
        # of that second: the runs, triggered every second too, meet leaves at any phase.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            if not self.churning:
                continue
            for client in self.clients:
                if random.random() < self.options.churn:
                    kind = "abort" if random.random() < self.options.abort else "close"
                    loop.call_later(random.random(), self._leave, client, kind)

    def _leave(self, client: Client, kind: str) -> None:
        if self.churning:
            client.leave(kind)

    async def _flush(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._send_finished()

    def _send_finished(self) -> None:
        if self.finished:
            batch, self.finished = self.finished, []
            self.pipe.send(("records", batch))

    async def _watch_lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.1)
            self.max_lag = max(self.max_lag, time.monotonic() - before - 0.1)

    def spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def connect(self, client_id: str, path: str) -> Any:
        """A new connection to ``path`` (a URL), or None once the soak is over."""
        from websockets.asyncio.client import connect

        url = f"{path.replace('http', 'ws', 1)}?client_id={client_id}"
        while not self.finishing:
            try:
                async with self.gate:
                    ws = await connect(url, compression=None, open_timeout=PATIENCE)
            except ConnectionRefusedError:
                # Nothing listens there: the cluster soak's killed node, until it is back.
                self.problems[f"connect refused: {_server(path)}"] += 1
                await asyncio.sleep(0.5)
                continue
            except Exception as error:
                self.problems[f"connect failed: {_server(path)}: {error!r}"[:200]] += 1
                await asyncio.sleep(0.5)
                continue
            if self.finishing:
                await ws.close()
                return None
            self.stats["connections"] += 1
            return ws
        return None


class Client:
    """One client: connects, reads every frame until the connection ends, reconnects."""

    def __init__(self, fleet: Fleet, client_id: str, path: str) -> None:
        self.fleet = fleet
        self.id = client_id
        self.path = path
        self.ws: Any = None
        self.connection: Connection | None = None

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.kind is None

    def leave(self, kind: str) -> None:
        """Close the connection cleanly ("close", "end") or cut it ("abort")."""
        ws, connection = self.ws, self.connection
        if ws is None or connection is None or connection.kind is not None:
            return
        connection.kind = kind
        connection.closing = time.monotonic()
        if kind == "abort":
            ws.transport.abort()
        else:
            self.fleet.spawn(ws.close())

    async def run(self) -> None:
        from websockets.exceptions import ConnectionClosed

        fleet = self.fleet
        while not fleet.finishing:
            ws = await fleet.connect(self.id, self.path)
            if ws is None:
                return
            connection = Connection(self.id, self.path)
            self.ws, self.connection = ws, connection
            fleet.connected.set()
            try:
                async for message in ws:
                    fleet.stats["frames"] += 1
                    if not connection.frame(message):
                        fleet.problems[f"not a soak frame: {message!r}"[:200]] += 1
            except ConnectionClosed:
                pass
            except Exception as error:
                fleet.problems[f"reading failed: {error!r}"[:200]] += 1
            if connection.kind is None:  # the server closed it, or the network failed
                connection.kind = "server"
                connection.closing = time.monotonic()
            connection.code = ws.close_code
            fleet.stats[f"ended: {connection.kind}"] += 1
            fleet.finished.append(connection.summary())


def _server(url: str) -> str:
    """``http://HOST:PORT`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _client_process(clients: list[tuple[str, str]], options: Options, pipe: Pipe) -> None:
    random.seed(f"{options.seed}/{clients[0][0] if clients else ''}")
    try:
        asyncio.run(Fleet(clients, options, pipe).main())
    except KeyboardInterrupt:
        pass
    except BaseException:
        with contextlib.suppress(Exception):
            pipe.send(("failed", traceback.format_exc()))
        raise


class Workers:
    """The client processes, seen from the driver."""

    def __init__(
        self,
        base: Callable[[int], str],
        options: Options,
        on_records: Callable[[list[Any]], None],
    ) -> None:
        """``base(n)``: the server's URL (``http://HOST:PORT``) client ``n`` connects to."""
        context = mp.get_context("spawn")
        self.on_records = on_records
        self.pipes: list[Pipe] = []
        self.processes: list[Any] = []
        self.replies: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        for index in range(options.workers):
            clients = [
                (f"soak-{n}", base(n) + ("/ws" if n % 2 == 0 else "/ws/stream"))
                for n in range(index, options.clients, options.workers)
            ]
            mine, theirs = context.Pipe()
            process = context.Process(
                target=_client_process, args=(clients, options, theirs), daemon=True
            )
            process.start()
            theirs.close()
            self.pipes.append(mine)
            self.processes.append(process)
            asyncio.get_running_loop().add_reader(mine.fileno(), self._readable, index)

    def _readable(self, index: int) -> None:
        pipe = self.pipes[index]
        try:
            while pipe.poll():
                kind, payload = pipe.recv()
                if kind == "records":
                    self.on_records(payload)
                else:
                    self.replies.put_nowait((index, kind, payload))
        except EOFError:
            asyncio.get_running_loop().remove_reader(pipe.fileno())
            self.processes[index].join(1)
            self.replies.put_nowait((index, "died", self.processes[index].exitcode))

    def send(self, command: str) -> None:
        for pipe in self.pipes:
            pipe.send(command)

    async def expect(self, kind: str, within: float = PATIENCE) -> list[Any]:
        """Wait for every client process to answer ``kind``; their payloads."""
        answers: dict[int, Any] = {}
        async with asyncio.timeout(within):
            while len(answers) < len(self.pipes):
                index, got, payload = await self.replies.get()
                if index in answers and got == "died":
                    # It answered, then ended (its end of the pipe closed): the end of a
                    # process that finished before the others did, not a failure.
                    continue
                if got != kind:
                    raise RuntimeError(f"client process {index}: {got} ({payload}), not {kind}")
                answers[index] = payload
        return [answers[index] for index in sorted(answers)]

    def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                loop.remove_reader(pipe.fileno())
            pipe.close()
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)


# -- the check ---------------------------------------------------------------------------


@dataclass
class Run:
    posted: float
    answered: float | None = None
    run_id: str | None = None
    state: str | None = None
    sent: int = 0
    deliveries: int = 0
    clients: int = 0
    max_lateness_s: float = 0.0
    #: The cluster soak: the node the trigger was sent to.
    node: str | None = None


@dataclass
class Check:
    """Connection records held against the runs (see the module's docstring)."""

    frames: int
    runs: list[Run] = field(default_factory=list)
    posted: list[float] = field(default_factory=list)
    by_id: dict[str, Run] = field(default_factory=dict)
    connections: int = 0
    clients: set[str] = field(default_factory=set)
    ended: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[str] = field(default_factory=Counter)
    required: int = 0
    expected: int = 0
    delivered: int = 0
    delivered_required: int = 0
    lost: int = 0
    out_of_order: int = 0
    repeated: int = 0
    runs_missing: int = 0
    partial: int = 0
    partial_with_holes: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add_run(self, run: Run) -> None:
        """A run triggered (in the order they were triggered)."""
        self.runs.append(run)
        self.posted.append(run.posted)

    def answered(self, run: Run) -> None:
        """A run that has ended (its answer has come)."""
        assert run.run_id is not None
        self.by_id[run.run_id] = run

    def add(self, records: list[tuple[Any, ...]]) -> None:
        for record in records:
            self.record(*record)

    def record(
        self,
        client: str,
        path: str,
        opened: float,
        closing: float,
        kind: str,
        code: int | None,
        runs: dict[str, list[int]],
    ) -> None:
        self.connections += 1
        self.ended[kind] += 1
        until = self.until(client, path, opened, closing, kind, code)
        required: set[str] = set()
        for index in range(bisect.bisect_right(self.posted, opened), len(self.runs)):
            run = self.runs[index]
            if run.posted >= until:
                break
            if run.answered is None or run.answered >= until or run.run_id is None:
                continue
            required.add(run.run_id)
            self.required += 1
            self.expected += self.frames
            self.clients.add(client)
            got = runs.get(run.run_id)
            if got is None:
                self.runs_missing += 1
                self.lost += self.frames
                self._example("run missing", client, path, opened, closing, run=asdict(run))
                continue
            first, _, count, mask, disorder = got
            distinct = mask.bit_count()
            self.delivered_required += count
            lost = self.frames - distinct
            self.lost += lost
            self.out_of_order += disorder
            self.repeated += count - distinct
            if lost or disorder or count != distinct:
                self._example(
                    "frames lost or out of order",
                    client,
                    path,
                    opened,
                    closing,
                    run=asdict(run),
                    received=_iterations(mask),
                    disorder=disorder,
                )
        for run_id, (first, _last, count, mask, disorder) in runs.items():
            self.delivered += count
            if run_id in required:
                continue
            # Seen in part: what came must be consecutive iterations, in order; and if the
            # connection was there when the run began (or ended), they must start at 0
            # (or end at the last). The run is known here if it has ended.
            self.partial += 1
            block = mask >> first
            run = self.by_id.get(run_id)
            if (
                block & (block + 1)
                or disorder
                or count != mask.bit_count()
                or (run is not None and opened < run.posted and first != 0)
                or (run is not None and run.answered < until and mask >> (self.frames - 1) != 1)
            ):
                self.partial_with_holes += 1
                self._example(
                    "a hole in a partial run",
                    client,
                    path,
                    opened,
                    closing,
                    run=asdict(run) if run else run_id,
                    received=_iterations(mask),
                    disorder=disorder,
                )

    def until(
        self, client: str, path: str, opened: float, closing: float, kind: str, code: int | None
    ) -> float:
        """Until when the connection was sure to receive what the server wrote (see the
        module's docstring); a connection the server closed is noted."""
        if kind == "server":
            self.close_codes[str(code)] += 1
            self._example("closed by the server", client, path, opened, closing, code=code)
        return closing - ABORT_MARGIN if kind == "abort" else closing

    def _example(
        self, what: str, client: str, path: str, opened: float, closing: float, **details: Any
    ) -> None:
        if sum(1 for e in self.examples if e["what"] == what) < EXAMPLES:
            connection = {"client": client, "path": path, "opened": opened, "closing": closing}
            self.examples.append({"what": what, "connection": connection, **details})


def _iterations(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


# -- the driver ----------------------------------------------------------------------------


class Soak:
    def __init__(self, options: Options, server: ServerProcess, say: Callable[[str], None]):
        self.options = options
        self.server = server
        self.say = say
        self.check = Check(options.frames)
        self.pending: set[asyncio.Task[None]] = set()
        self.trigger_errors: list[str] = []
        self.samples: list[dict[str, Any]] = []
        #: CPU seconds used during the measured part (see _cpu).
        self.cpu: dict[str, float] = {}
        #: When the measured part began.
        self.began = time.monotonic()

    async def trigger(self) -> None:
        run = Run(posted=time.monotonic())
        self.check.add_run(run)
        try:
            answer = await asyncio.to_thread(self.server.request, "POST", "/trigger/soak")
        except Exception as error:
            self.trigger_errors.append(repr(error))
            return
        run.answered = time.monotonic()
        run.run_id = answer["run_id"]
        run.state = answer["status"]
        run.sent = answer["sent"]
        run.deliveries = answer["deliveries"]
        run.clients = answer["clients"]
        run.max_lateness_s = answer["max_lateness_s"]
        self.check.answered(run)

    async def play(self, seconds: float, workers: Workers, phase: str) -> float:
        """Trigger every ``trigger_every`` seconds for ``seconds``, with churn, sampling
        the server every second; then wait for the runs to end and every client to be
        connected again. Returns the CPU time the client processes have used."""
        workers.send("go")
        started = time.monotonic()
        sampler = asyncio.create_task(self._sampler(started, phase))
        for n in range(max(1, round(seconds / self.options.trigger_every))):
            await asyncio.sleep(
                max(0.0, started + n * self.options.trigger_every - time.monotonic())
            )
            self._spawn(self.trigger())
        await asyncio.sleep(max(0.0, started + seconds - time.monotonic()))
        sampler.cancel()
        workers.send("hold")
        clients_cpu = sum(await workers.expect("held"))
        await asyncio.gather(*self.pending)
        return clients_cpu

    def _cpu(self, clients: float) -> dict[str, float]:
        """CPU seconds used so far: by the server, the client processes, this process and
        every process of the machine."""
        busy, _ = machine_cpu()
        return {
            "server": self.server.cpu_seconds(),
            "clients": clients,
            "driver": time.process_time(),
            "machine": busy,
        }

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _sampler(self, started: float, phase: str) -> None:
        for n in itertools.count():
            await asyncio.sleep(max(0.0, started + n - time.monotonic()))
            sample = await self.server.sample()
            del sample["types"]
            sample = {"phase": phase, "t": round(time.monotonic() - started, 1), **sample}
            self.samples.append(sample)
            if not self.options.quiet and n % 10 == 0 and phase == "soak":
                runs = sum(1 for run in self.check.runs if run.answered is not None)
                self.say(
                    f"  {sample['t']:6.0f} s  {runs} runs, {self.check.connections} "
                    f"connections ended, {sample['clients']} connected, RSS "
                    f"{sample['rss_kib'] / 1024:.1f} MiB, {sample['tasks']} tasks, "
                    f"{self.check.lost} frames lost"
                )

    async def main(self) -> dict[str, Any]:
        options, server, say = self.options, self.server, self.say
        # Triggers hold a thread each until their run ends: enough threads that samples
        # never wait behind them.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(64))
        # Fill the history of finished runs with the soak's own runs (with no client
        # connected and no pauses, they cost nothing), so that it does not grow later.
        for _ in range(KEEP_FINISHED):
            await asyncio.to_thread(server.request, "POST", "/trigger/soak?speed=0")
        idle_before = await server.sample(objects=True)
        workers = Workers(lambda n: server.url, options, self.check.add)
        try:
            say(f"connecting {options.clients} clients ({options.workers} processes)")
            await workers.expect("ready", PATIENCE * 2)
            say(f"warming up for {options.warmup:g} s")
            clients_cpu = await self.play(options.warmup, workers, "warmup")
            start = await server.sample(objects=True)
            say(f"soaking for {options.seconds:g} s")
            cpu = self._cpu(clients_cpu)
            self.began = time.monotonic()
            clients_cpu = await self.play(options.seconds, workers, "soak")
            duration = time.monotonic() - self.began
            self.cpu = {k: round(v - cpu[k], 1) for k, v in self._cpu(clients_cpu).items()}
            end = await server.sample(objects=True)
            workers.send("finish")
            fleets = await workers.expect("done", PATIENCE * 2)
        finally:
            workers.stop()
        # Until the tasks are back to the idle count, for at most a few seconds (a client
        # the server dropped has a close task for up to 2 s).
        settled = time.monotonic() + 5.0
        while (idle_after := await server.sample())["tasks"] > idle_before["tasks"]:
            if time.monotonic() > settled:
                break
            await asyncio.sleep(0.2)
        idle_after = await server.sample(objects=True)
        return self.report(duration, idle_before, start, end, idle_after, fleets)

    def report(
        self,
        duration: float,
        idle_before: dict[str, Any],
        start: dict[str, Any],
        end: dict[str, Any],
        idle_after: dict[str, Any],
        fleets: list[dict[str, Any]],
    ) -> dict[str, Any]:
        options, check = self.options, self.check
        answered = [run for run in check.runs if run.answered is not None]
        soaking = [sample for sample in self.samples if sample["phase"] == "soak"]
        problems: Counter[str] = Counter()
        for fleet in fleets:
            problems.update(fleet["problems"])
        return {
            "options": {
                k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
            },
            "duration_s": round(duration, 1),
            "clients": options.clients,
            "connections": check.connections,
            "connections_ended": dict(check.ended),
            "closed_by_server": dict(check.close_codes),
            "runs": len(answered),
            "runs_not_finished": sum(1 for run in answered if run.state != "success"),
            "runs_short": sum(1 for run in answered if run.sent != 2 * options.frames),
            "trigger_errors": self.trigger_errors,
            "max_lateness_s": max((run.max_lateness_s for run in answered), default=0.0),
            "frames_delivered": check.delivered,
            "server_deliveries": sum(run.deliveries for run in answered),
            "healthy_clients": len(check.clients),
            "runs_required": check.required,
            "frames_expected": check.expected,
            "frames_delivered_required": check.delivered_required,
            "frames_lost": check.lost,
            "out_of_order": check.out_of_order,
            "repeated": check.repeated,
            "runs_missing": check.runs_missing,
            "partial_runs": check.partial,
            "partial_runs_with_holes": check.partial_with_holes,
            "client_problems": dict(problems),
            "cpu_s": {
                **self.cpu,
                "others": round(
                    self.cpu["machine"]
                    - self.cpu["server"]
                    - self.cpu["clients"]
                    - self.cpu["driver"],
                    1,
                ),
                "cores": os.cpu_count(),
            },
            "client_max_lag_s": round(max(fleet["max_lag_s"] for fleet in fleets), 3),
            "object_growth": _growth(start.pop("types"), end.pop("types")),
            "object_growth_idle": _growth(idle_before.pop("types"), idle_after.pop("types")),
            "idle_before": idle_before,
            "start": start,
            "end": end,
            "idle_after": idle_after,
            "rss_max_kib": max((s["rss_kib"] for s in soaking), default=0),
            "rss_slope_mib_per_min": _slope(soaking[len(soaking) // 2 :]),
            "tasks_max": max((s["tasks"] for s in soaking), default=0),
            "stats_latency_ms": _spread([s["latency_ms"] for s in soaking]),
            "run_lateness_ms": _spread([1000 * run.max_lateness_s for run in answered]),
            "examples": check.examples,
            "samples": self.samples,
            "run_details": [
                {
                    "run_id": run.run_id,
                    "posted": round(run.posted - self.began, 3),
                    "took_s": round(run.answered - run.posted, 3) if run.answered else None,
                    "max_lateness_s": run.max_lateness_s,
                    "clients": run.clients,
                    "deliveries": run.deliveries,
                }
                for run in check.runs
            ],
        }


def _spread(values: list[float]) -> dict[str, float]:
    """The median, 99th percentile and maximum of ``values``."""
    if not values:
        return {}
    ranked = sorted(values)

    def pick(share: float) -> float:
        return round(ranked[min(len(ranked) - 1, int(share * len(ranked)))], 1)

    return {"median": pick(0.5), "p99": pick(0.99), "max": round(ranked[-1], 1)}


def _slope(samples: list[dict[str, Any]]) -> float | None:
    """How fast the RSS grew over ``samples`` (least squares), in MiB a minute."""
    if len(samples) < 2:
        return None
    times = [sample["t"] for sample in samples]
    sizes = [sample["rss_kib"] / 1024 for sample in samples]
    mean_t, mean_size = sum(times) / len(times), sum(sizes) / len(sizes)
    spread = sum((t - mean_t) ** 2 for t in times)
    covariance = sum(
        (t - mean_t) * (size - mean_size) for t, size in zip(times, sizes, strict=True)
    )
    return round(60 * covariance / spread, 3)


def _growth(before: dict[str, int], after: dict[str, int], top: int = 10) -> dict[str, int]:
    """The object types whose count changed most, with the change."""
    change = Counter(after)
    change.subtract(before)
    biggest = sorted(change.items(), key=lambda item: -abs(item[1]))[:top]
    return {name: count for name, count in biggest if count}


def log_findings(lines: list[str]) -> dict[str, Any]:
    """ERROR and WARNING lines in the server's log (WARNING lines grouped, ids masked)."""
    errors = [line for line in lines if line.startswith(("ERROR", "CRITICAL", "Traceback"))]
    warnings: Counter[str] = Counter()
    for line in lines:
        if line.startswith("WARNING"):
            warnings[re.sub(r"soak-\d+|\b[0-9a-f]{8}\b", "<id>", line)] += 1
    return {"error_lines": len(errors), "errors": errors[:20], "warnings": dict(warnings)}


def run_soak(options: Options, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the soak test; its report (also written to ``options.json``, and the server's
    log next to it, with the suffix ``.server.log``)."""
    with tempfile.TemporaryDirectory(prefix="replay-soak-") as folder:
        scenarios = Path(folder) / "scenarios"
        scenarios.mkdir()
        scenario = SCENARIO.format(frames=options.frames, delay=options.delay)
        (scenarios / "soak.yaml").write_text(scenario)
        server = ServerProcess(scenarios, Path(folder) / "server.log")
        try:
            report = asyncio.run(Soak(options, server, say).main())
        finally:
            server.stop()
        report.update(log_findings(server.log_lines()))
        report["server_exit_code"] = server.process.returncode
        if options.json is not None:
            options.json.write_text(json.dumps(report, indent=2) + "\n")
            shutil.copy(server.log, options.json.with_suffix(".server.log"))
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as a table."""
    mib = 1024
    start, end = report["start"], report["end"]
    before, after = report["idle_before"], report["idle_after"]
    rss_growth = (end["rss_kib"] - start["rss_kib"]) / mib
    rows = [
        ("duration", f"{report['duration_s']} s (after warm-up)"),
        ("clients", report["clients"]),
        ("connections made in all", report["connections"]),
        ("connections ended", _counts(report["connections_ended"])),
        ("closed by the server", _counts(report["closed_by_server"]) or 0),
        (
            "runs",
            f"{report['runs']} ({report['runs_not_finished']} not finished, "
            f"{report['runs_short']} short; max lateness "
            f"{report['max_lateness_s'] * 1000:.0f} ms)",
        ),
        (
            "frames delivered (all)",
            f"{report['frames_delivered']:,} (server wrote {report['server_deliveries']:,})",
        ),
        ("runs' worst lateness, median / p99 / max", _spread_text(report["run_lateness_ms"])),
        ("server answer time, median / p99 / max", _spread_text(report["stats_latency_ms"])),
        ("healthy clients", report["healthy_clients"]),
        ("(connection, run) pairs checked", f"{report['runs_required']:,}"),
        ("frames expected by them", f"{report['frames_expected']:,}"),
        ("frames lost", report["frames_lost"]),
        ("out of order / repeated", f"{report['out_of_order']} / {report['repeated']}"),
        (
            "partial runs (connect/leave mid-run)",
            f"{report['partial_runs']:,} ({report['partial_runs_with_holes']} with holes)",
        ),
        (
            "server RSS idle / start / end / max",
            f"{before['rss_kib'] / mib:.1f} / {start['rss_kib'] / mib:.1f} / "
            f"{end['rss_kib'] / mib:.1f} / {report['rss_max_kib'] / mib:.1f} MiB "
            f"(end - start {rss_growth:+.1f} MiB)",
        ),
        (
            "server tasks idle / start / end / max / idle after",
            f"{before['tasks']} / {start['tasks']} / {end['tasks']} / {report['tasks_max']} / "
            f"{after['tasks']}",
        ),
        (
            "server RSS growth, second half of the soak",
            f"{report['rss_slope_mib_per_min']} MiB/min",
        ),
        (
            "server allocated blocks idle / start / end / idle after",
            f"{before['blocks']:,} / {start['blocks']:,} / {end['blocks']:,} / {after['blocks']:,}",
        ),
        (
            "server gc objects start / end / idle before / after",
            f"{start['objects']:,} / {end['objects']:,} / {before['objects']:,} / "
            f"{after['objects']:,}",
        ),
        ("server gc objects growth, start to end", _counts(report["object_growth"]) or 0),
        ("server gc objects growth, idle to idle", _counts(report["object_growth_idle"]) or 0),
        ("CPU during the soak", _cpu_text(report["cpu_s"], report["duration_s"])),
        ("server ERROR lines", report["error_lines"]),
        ("server WARNING lines", sum(report["warnings"].values())),
        ("client processes' worst loop lag", f"{report['client_max_lag_s'] * 1000:.0f} ms"),
        ("client problems", _counts(report["client_problems"]) or 0),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    for line, count in sorted(report["warnings"].items(), key=lambda item: -item[1]):
        lines.append(f"  {count:6d} x {line[:160]}")
    for line in report["errors"]:
        lines.append(f"  {line[:200]}")
    for example in report["examples"][:EXAMPLES]:
        lines.append(f"  {json.dumps(example)[:300]}")
    return "\n".join(lines)


def _cpu_text(cpu: dict[str, float], duration: float) -> str:
    share = cpu["machine"] / (duration * (cpu["cores"] or 1))
    return (
        f"server {cpu['server']:.0f} s ({cpu['server'] / duration:.0%} of a core), "
        f"clients {cpu['clients']:.0f} s, driver {cpu['driver']:.0f} s, other processes "
        f"{cpu['others']:.0f} s; the machine was {share:.0%} busy ({cpu['cores']} cores)"
    )


def _spread_text(spread: dict[str, float]) -> str:
    return " / ".join(f"{spread[key]:.0f}" for key in ("median", "p99", "max")) + " ms"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def failures(report: dict[str, Any]) -> list[str]:
    """What the report says went wrong: frames, runs, logs, clients, tasks and live
    memory (empty when the soak passed). Resident memory is reported, not judged here."""
    found = []
    start, end = report["start"], report["end"]
    before, after = report["idle_before"], report["idle_after"]
    if end["tasks"] > start["tasks"] + TASKS_TOLERANCE:
        found.append(f"tasks grew from {start['tasks']} to {end['tasks']}")
    if after["tasks"] > before["tasks"]:
        found.append(f"idle tasks grew from {before['tasks']} to {after['tasks']}")
    connected = BLOCKS_PER_CLIENT * report["clients"]
    for first, last, what, more in (
        (start, end, "live blocks", connected),
        (before, after, "idle live blocks", 0),
    ):
        if last["blocks"] > first["blocks"] + BLOCKS_TOLERANCE + more:
            found.append(f"{what} grew from {first['blocks']:,} to {last['blocks']:,}")
    found += checked(report, (*LOSSES, "error_lines"), ("warnings", *TROUBLES))
    return found


#: What a soak's report counts that must be 0 for it to pass: frames and runs.
LOSSES = (
    "frames_lost",
    "out_of_order",
    "repeated",
    "runs_missing",
    "partial_runs_with_holes",
    "runs_not_finished",
    "runs_short",
)
#: What a soak's report lists that must be empty for it to pass (besides its warnings).
TROUBLES = ("closed_by_server", "client_problems", "trigger_errors")


def checked(report: dict[str, Any], counts: Iterable[str], lists: Iterable[str]) -> list[str]:
    """What went wrong by the report's ``counts`` (each must be 0) and ``lists`` (each
    must be empty), its clients' loop lag and whether anything was checked at all."""
    found = [f"{key}: {report[key]}" for key in (*counts, *lists) if report[key]]
    if report["client_max_lag_s"] >= ABORT_MARGIN / 2:
        found.append(f"client loop lag {report['client_max_lag_s']} s: the abort margin is unsafe")
    if not report["runs_required"]:
        found.append("no (connection, run) pair was checked")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.soak",
        description="Soak replay: many clients, a trigger every second, random disconnects.",
    )
    defaults = Options()
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument(
        "--seconds",
        type=float,
        default=defaults.seconds,
        help="how long to soak, after the warm-up",
    )
    parser.add_argument(
        "--trigger-every",
        type=float,
        default=defaults.trigger_every,
        help="seconds between triggers",
    )
    parser.add_argument(
        "--churn",
        type=float,
        default=defaults.churn,
        help="each client's chance to disconnect and reconnect, each second",
    )
    parser.add_argument(
        "--abort",
        type=float,
        default=defaults.abort,
        help="the share of those disconnects that cut the TCP connection",
    )
    parser.add_argument(
        "--frames", type=int, default=defaults.frames, help="frames per run, per client"
    )
    parser.add_argument(
        "--delay", type=float, default=defaults.delay, help="seconds between a run's frames"
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="client processes")
    parser.add_argument(
        "--warmup",
        type=float,
        default=defaults.warmup,
        help="seconds of soak before the start figures are taken",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", type=Path, help="write the report here as JSON")
    parser.add_argument("--quiet", action="store_true", help="print only the report")
    parser.add_argument(
        "--cluster",
        choices=["nodes", "workers"],
        help="soak a cluster on a real Redis (see tests/soak_cluster.py): three nodes, or "
        "`serve --workers 2` and one more node; one is killed and restarted in the middle",
    )
    parser.add_argument(
        "--kill",
        choices=["node", "worker", "both"],
        default=defaults.kill,
        help="with --cluster: kill the lone node, one worker (--cluster workers) or both",
    )
    parser.add_argument("--serve", metavar="SCENARIOS", help=argparse.SUPPRESS)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--serve"]:  # a server of the soak: the rest is replay serve's
        return serve(arguments[1], arguments[2:])
    args = parser.parse_args(arguments)
    options = Options(**{k: v for k, v in vars(args).items() if k != "serve"})
    if options.kill != "node" and options.cluster != "workers":
        parser.error("--kill worker and --kill both need --cluster workers")
    say = (lambda line: None) if options.quiet else (lambda line: print(line, flush=True))
    if options.cluster:
        from tests.soak_cluster import cluster_failures, format_cluster_report, run_cluster_soak

        report = run_cluster_soak(options, say)
        print(format_cluster_report(report))
        found = cluster_failures(report)
    else:
        report = run_soak(options, say)
        print(format_report(report))
        found = failures(report)
    for failure in found:
        print(f"FAILED: {failure}")
    return 1 if found else 0


if __name__ == "__mp_main__" and os.environ.get(INSTRUMENT):
    instrument(record_runs=os.environ[INSTRUMENT] == "runs")

if __name__ == "__main__":
    sys.exit(main())
