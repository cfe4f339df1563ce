"""``replay serve --workers N``, end to end: a real parent process, its real worker
processes on one port, a real redis-server between them, real WebSocket clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from replay.cli import main
from replay.server import Settings
from replay.workers import (
    MAX_RESTARTS,
    Plan,
    Supervisor,
    Worker,
    WorkersRefused,
    bind_sockets,
    check_backplane,
    exit_description,
)
from tests.redis_server import RedisServer, redis_server  # noqa: F401 (a fixture)

#: Seconds a test waits for what should happen soon (generous: 2 shared cores, and each
#: worker is a new interpreter importing the server).
PATIENCE = 40.0
CLIENTS = 20
MESSAGES = "steps:\n" + "".join(f"  - message: EVENT\n    text: frame {n}\n" for n in range(5))
FRAMES = [f"frame {n}" for n in range(5)]
NEEDS_REDIS = (
    "replay: --workers 2 needs --backplane redis://HOST:PORT/DB: the worker processes "
    "share triggered runs only through Redis (start one with 'redis-server --port 6379' "
    "and add --backplane redis://127.0.0.1:6379/0)\n"
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "messages.yaml").write_text(MESSAGES)
    return scenarios


class Served:
    """``replay serve --workers N --port 0 --ready-file`` as a child process."""

    def __init__(self, tmp: Path, *options: str, python: Sequence[str] = ("-m", "replay")) -> None:
        self.ready = tmp / "ready.json"
        self.out, self.err = tmp / "stdout", tmp / "stderr"
        command = [sys.executable, *python, "serve", "--port", "0"]
        command += ["--ready-file", str(self.ready), *options]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(
                command, cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self.url = ""

    def log(self) -> str:
        return self.err.read_text(errors="replace")[-4000:]

    def until(self, done: Callable[[], Any], what: str) -> Any:
        """Poll ``done()`` until it gives something true (returned); fail if the parent
        exits first, or after PATIENCE."""
        deadline = time.monotonic() + PATIENCE
        while not (result := done()):
            assert self.process.poll() is None, f"exited ({self.process.returncode}) " + (
                f"before {what}:\n{self.log()}"
            )
            assert time.monotonic() < deadline, f"no {what} after {PATIENCE}s:\n{self.log()}"
            time.sleep(0.02)
        return result

    def until_true(self, done: Callable[[], bool], what: str) -> None:
        """Poll ``done()`` until it is true, PATIENCE at most (whether or not the parent
        runs)."""
        deadline = time.monotonic() + PATIENCE
        while not done():
            assert time.monotonic() < deadline, f"no {what} after {PATIENCE}s:\n{self.log()}"
            time.sleep(0.02)

    def started(self) -> dict[str, Any]:
        self.until(self.ready.exists, "ready file")
        document: dict[str, Any] = json.loads(self.ready.read_text())
        self.url = document["url"]
        return document

    def health(self) -> dict[str, Any]:
        """One answer of /healthz: from whichever worker the connection landed on."""
        with urllib.request.urlopen(self.url + "/healthz", timeout=PATIENCE) as answer:
            return json.loads(answer.read())  # type: ignore[no-any-return]

    def workers(self, expected: Callable[[dict[int, dict[str, Any]]], bool]) -> dict[int, Any]:
        """The last /healthz answer of each worker index (by a new connection each time,
        so spread over the workers), once ``expected`` holds for them."""
        seen: dict[int, dict[str, Any]] = {}

        def look() -> dict[int, Any] | None:
            try:
                health = self.health()
            except OSError:  # queued on a worker just killed: the next one lands elsewhere
                return None
            seen[health["worker"]["index"]] = health
            return dict(seen) if expected(seen) else None

        return self.until(look, "the workers expected at /healthz")  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(PATIENCE)


@pytest.fixture
def served(tmp_path: Path, folder: Path, redis_server: RedisServer) -> Iterator[Served]:  # noqa: F811
    serve = Served(
        tmp_path, "--workers", "2", "--scenarios", str(folder), "--backplane", redis_server.url
    )
    try:
        yield serve
    finally:
        pids = []
        with contextlib.suppress(Exception):
            if serve.process.poll() is None:
                pids = [h["worker"]["pid"] for h in serve.workers(lambda s: len(s) == 2).values()]
        serve.stop()
        for pid in pids:  # never leave a worker behind, even when a test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie not yet reaped by whoever adopted it
    has ended too)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def trigger(url: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/trigger/messages?speed=0", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def read(url: str) -> str:
    with urllib.request.urlopen(url, timeout=PATIENCE) as answer:
        return str(answer.read().decode())


def connected(workers: dict[int, dict[str, Any]]) -> int:
    return sum(health["clients"]["/ws"] for health in workers.values())


async def texts(ws: ClientConnection, count: int) -> list[str]:
    return [
        json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))["message"] for _ in range(count)
    ]


def two_workers(seen: dict[int, dict[str, Any]]) -> bool:
    return len(seen) == 2


async def test_two_workers_share_one_port_and_every_client_hears_a_trigger(
    served: Served,
) -> None:
    document = await asyncio.to_thread(served.started)
    assert document["pid"] == served.process.pid  # the parent's: the one to signal
    line = served.out.read_text().splitlines()[0]
    assert f"on http://127.0.0.1:{document['port']} (dashboard:" in line
    workers = await asyncio.to_thread(served.workers, two_workers)
    pids = {health["worker"]["pid"] for health in workers.values()}
    assert len(pids) == 2
    assert served.process.pid not in pids
    nodes = {health["backplane"]["node"] for health in workers.values()}
    assert len(nodes) == 2  # each worker is a node of its own
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(connect(f"{document['ws']}/ws?client_id=c{n}"))
            for n in range(CLIENTS)
        ]
        # A run plays to the clients a worker holds when it starts: wait until all are held.
        await asyncio.to_thread(served.workers, lambda s: len(s) == 2 and connected(s) == CLIENTS)
        status, run = await asyncio.to_thread(trigger, served.url)
        assert (status, run["status"]) == (200, "success")
        for ws in clients:
            assert await texts(ws, 5) == FRAMES
    # Each worker's metrics say which node and worker they are, on every sample.
    text = await asyncio.to_thread(read, served.url + "/metrics")
    samples = [line for line in text.splitlines() if line[:1] != "#"]
    assert any(line.startswith("replay_node_info{") for line in samples)
    assert all('node="' in line and 'worker="' in line for line in samples)


async def test_a_killed_worker_is_restarted_and_the_other_keeps_its_clients(
    served: Served,
) -> None:
    document = await asyncio.to_thread(served.started)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(connect(f"{document['ws']}/ws?client_id=c{n}"))
            for n in range(CLIENTS)
        ]
        before = await asyncio.to_thread(
            served.workers, lambda s: len(s) == 2 and connected(s) == CLIENTS
        )
        killed = before[0]["worker"]["pid"]
        held = before[0]["clients"]["/ws"]
        os.kill(killed, signal.SIGKILL)
        after = await asyncio.to_thread(
            served.workers,
            lambda s: len(s) == 2 and s[0]["worker"]["pid"] != killed,
        )
        assert after[1]["worker"]["pid"] == before[1]["worker"]["pid"]
        assert f"worker 0 (pid {killed}) was killed by SIGKILL: restarting it" in served.log()
        # The clients of the worker that lived are still connected and still hear triggers.
        status, run = await asyncio.to_thread(trigger, served.url)
        assert (status, run["status"]) == (200, "success")
        closed = 0
        for ws in clients:
            try:
                assert await texts(ws, 5) == FRAMES
            except ConnectionClosed:
                closed += 1
        assert closed == held


async def test_sigterm_stops_every_worker_and_the_parent_exits_0(served: Served) -> None:
    await asyncio.to_thread(served.started)
    workers = await asyncio.to_thread(served.workers, two_workers)
    served.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(served.process.wait, PATIENCE) == 0
    assert not served.ready.exists()
    for health in workers.values():
        assert gone(health["worker"]["pid"])  # the parent waited for them: none is left
    assert "Traceback" not in served.log()


async def test_workers_end_with_a_parent_that_is_killed(served: Served) -> None:
    await asyncio.to_thread(served.started)
    workers = await asyncio.to_thread(served.workers, two_workers)
    served.process.kill()  # no chance to stop them: the kernel (or their pipe) tells them
    served.process.wait(PATIENCE)
    pids = [health["worker"]["pid"] for health in workers.values()]
    await asyncio.to_thread(served.until_true, lambda: all(map(gone, pids)), "workers gone")


def test_without_so_reuseport_the_workers_share_one_listening_socket(
    tmp_path: Path,
    folder: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # The parent as a system without SO_REUSEPORT sees it; the workers need no patch:
    # they are handed the parent's listening socket.
    code = (
        "import sys, replay.workers as w; w.reuse_port_available = lambda: False; "
        "from replay.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    options = ["--workers", "2", "--scenarios", str(folder), "--backplane", redis_server.url]
    serve = Served(tmp_path, *options, python=["-c", code])
    try:
        serve.started()
        workers = serve.workers(two_workers)
        assert len({health["worker"]["pid"] for health in workers.values()}) == 2
        assert trigger(serve.url)[0] == 200
        serve.process.send_signal(signal.SIGTERM)
        assert serve.process.wait(PATIENCE) == 0
    finally:
        serve.stop()


def test_a_worker_that_dies_too_often_is_given_up(folder: Path) -> None:
    plan = Plan(Settings(scenarios=folder, backplane="redis://h/0"), "127.0.0.1", 0, "info")
    supervisor = Supervisor(plan, 1, announce=lambda host, port: None)
    started: list[int] = []

    def start(worker: Worker) -> None:
        started.append(worker.index)

    supervisor._start = start  # type: ignore[method-assign]
    worker = supervisor.workers[0]
    for _ in range(MAX_RESTARTS):
        supervisor._restart(worker, "worker 0 (pid 1) exited with code 1")
    assert (started, worker.given_up) == ([0] * MAX_RESTARTS, False)
    supervisor._restart(worker, "worker 0 (pid 1) exited with code 1")
    assert (len(started), worker.given_up) == (MAX_RESTARTS, True)


def test_a_worker_that_never_becomes_ready_stops_the_parent(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = Plan(Settings(scenarios=folder, backplane="redis://h/0"), "127.0.0.1", 0, "info")
    supervisor = Supervisor(plan, 1, announce=lambda host, port: None)
    supervisor.start_timeout = 0.5

    pipes = []

    def start(worker: Worker) -> None:  # a worker stuck before it serves: it never says
        ours, theirs = supervisor.context.Pipe()
        pipes.append(theirs)  # open, and silent
        stuck = supervisor.context.Process(target=time.sleep, args=(60,), daemon=True)
        stuck.start()
        worker.process, worker.connection, worker.ready = stuck, ours, False

    supervisor._start = start  # type: ignore[method-assign]
    assert supervisor.run() == 1
    assert "replay: worker 0 did not become ready within 0.5 s" in capsys.readouterr().err
    process = supervisor.workers[0].process
    assert process is not None
    assert not process.is_alive()  # stopped on the way out


def test_a_worker_that_cannot_start_stops_the_parent_with_its_reason(
    tmp_path: Path, folder: Path
) -> None:
    serve = Served(
        tmp_path, "--workers", "2", "--scenarios", str(folder), "--backplane", "nats://x"
    )
    try:
        assert serve.process.wait(PATIENCE) == 1
    finally:
        serve.stop()
    assert "replay: worker 0 could not start: " in serve.log() or (
        "replay: worker 1 could not start: " in serve.log()
    )
    assert "expected memory://NAME or redis://HOST:PORT/DB" in serve.log()
    assert not serve.ready.exists()


def test_workers_need_a_redis_backplane(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--scenarios", str(folder), "--workers", "2"]) == 2
    assert capsys.readouterr().err == NEEDS_REDIS
    args = ["serve", "--scenarios", str(folder), "--workers", "3", "--backplane", "memory://x"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "replay: --workers 3 cannot use --backplane memory://x: memory:// is shared only "
        "inside one process, and workers are separate processes; use --backplane "
        "redis://HOST:PORT/DB (a Redis, e.g. 'redis-server --port 6379')\n"
    )


def test_workers_must_be_a_positive_count(folder: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--scenarios", str(folder), "--workers", "0"])
    assert exited.value.code == 2


def test_one_worker_needs_no_backplane() -> None:
    check_backplane(1, None)
    with pytest.raises(WorkersRefused):
        check_backplane(2, None)
    check_backplane(2, "redis://127.0.0.1:6379/0")


def test_exit_descriptions() -> None:
    assert exit_description(-9) == "was killed by SIGKILL"
    assert exit_description(3) == "exited with code 3"
    assert exit_description(None) == "is still running"
    assert MAX_RESTARTS >= 1


def test_a_plan_travels_pickled(folder: Path) -> None:
    import pickle

    plan = Plan(Settings(scenarios=folder, backplane="redis://h/0"), "127.0.0.1", 0, "info")
    assert pickle.loads(pickle.dumps(plan)) == plan


# --- the addresses ------------------------------------------------------------------------


def names(*addresses: tuple[int, str]) -> Callable[..., list[Any]]:
    """A getaddrinfo that names these (family, host) addresses (twice each, as for UDP and
    TCP), whatever it is asked."""

    def getaddrinfo(host: Any, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        found = []
        for family, address in addresses:
            where = (address, port) if family == socket.AF_INET else (address, port, 0, 0)
            found += [(family, socket.SOCK_STREAM, 6, "", where)] * 2
        return found

    return getaddrinfo


def test_workers_bind_every_address_a_host_names_on_one_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "localhost" names ::1 too on many systems; a single uvicorn binds both.
    both = names((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
    monkeypatch.setattr(socket, "getaddrinfo", both)
    sockets = bind_sockets("localhost", 0, reuse_port=True)
    try:
        assert [s.family for s in sockets] == [socket.AF_INET, socket.AF_INET6]
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1
        assert 0 not in ports
        assert sockets[1].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        for sock in sockets:
            sock.listen(8)
            with socket.create_connection(sock.getsockname()[:2], timeout=5):
                pass  # both addresses take connections
    finally:
        for sock in sockets:
            sock.close()


def test_a_host_whose_second_address_cannot_be_bound_leaves_nothing_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine.
    monkeypatch.setattr(
        socket, "getaddrinfo", names((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "192.0.2.1"))
    )
    made: list[socket.socket] = []
    plain = socket.socket

    def recorded(*args: Any, **kwargs: Any) -> socket.socket:
        made.append(plain(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(socket, "socket", recorded)
    with pytest.raises(OSError, match="assign requested address"):
        bind_sockets("somewhere", 0, reuse_port=False)
    assert len(made) == 2
    assert [sock.fileno() for sock in made] == [-1, -1]  # both closed


def test_a_host_that_names_one_address_binds_one_socket() -> None:
    sockets = bind_sockets("127.0.0.1", 0, reuse_port=True)
    try:
        assert len(sockets) == 1
        assert sockets[0].getsockname()[0] == "127.0.0.1"
    finally:
        for sock in sockets:
            sock.close()
