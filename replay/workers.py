"""``replay serve --workers N``: N server processes on one port, sharing runs through the
backplane.

Each worker is a whole ``replay serve`` node (its own event loop, its own
:class:`~replay.backplane.node.Node`, its own clients); a trigger taken by any of them
plays on all of them, as on any cluster. The parent process does not serve: it reserves
the port, starts the workers, says the server is ready once every worker is, restarts a
worker that dies, and stops them all on SIGINT or SIGTERM.

How connections are spread: on Linux each worker opens its own listening socket on the
same address with ``SO_REUSEPORT``, and the kernel hashes each new connection to one of
them. The parent binds the address with ``SO_REUSEPORT`` too but never listens on it: the
port stays reserved (and, with ``--port 0``, known) while workers come and go, and no
connection is ever queued on the parent. Without ``SO_REUSEPORT`` the parent listens on
one socket and every worker accepts from it.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from replay.errors import ReplayError
from replay.ready import ready_document, write_atomically

if TYPE_CHECKING:  # the server's modules load in the workers only
    from replay.server import Settings

log = logging.getLogger("replay.workers")

#: A worker may die this many times within RESTART_WINDOW seconds and be restarted;
#: once more and the parent gives up on it.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
#: Seconds every worker has to become ready when the server starts; then the parent stops
#: them and exits 1 (a worker stuck before it serves must not leave the command hanging).
START_TIMEOUT = 60.0
#: Seconds the workers have to stop after SIGTERM before they are killed.
STOP_GRACE = 5.0
#: Pending connections a worker's socket holds (uvicorn's default).
BACKLOG = 2048
#: Linux's prctl option that sends a signal to a process when its parent dies.
PR_SET_PDEATHSIG = 1


class WorkersRefused(ReplayError):
    """A ``--workers`` command line that cannot work; the message says what to add."""


def check_backplane(workers: int, backplane: str | None) -> None:
    """Raise WorkersRefused unless ``workers`` processes can share runs on ``backplane``."""
    if workers < 2:
        return
    if backplane is None:
        raise WorkersRefused(
            f"--workers {workers} needs --backplane redis://HOST:PORT/DB: the worker "
            "processes share triggered runs only through Redis (start one with "
            "'redis-server --port 6379' and add --backplane redis://127.0.0.1:6379/0)"
        )
    if urlsplit(backplane).scheme == "memory":
        raise WorkersRefused(
            f"--workers {workers} cannot use --backplane {backplane}: memory:// is shared "
            "only inside one process, and workers are separate processes; use "
            "--backplane redis://HOST:PORT/DB (a Redis, e.g. 'redis-server --port 6379')"
        )


@dataclass
class Plan:
    """What every worker is given (pickled to it): how to serve and where."""

    settings: Settings
    host: str
    port: int
    log_level: str
    #: uvicorn's options besides host and port (ws_max_size, ws_per_message_deflate).
    uvicorn: dict[str, Any] = field(default_factory=dict)
    #: True: each worker binds its own SO_REUSEPORT socket; False: the parent's is shared.
    reuse_port: bool = True


def reuse_port_available() -> bool:
    """Whether this system spreads connections over SO_REUSEPORT sockets (Linux does)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_sockets(host: str, port: int, *, reuse_port: bool) -> list[socket.socket]:
    """TCP sockets bound (not listening) to every address ``host`` names, as uvicorn
    alone binds them (``localhost``: 127.0.0.1, and ::1 where the system names it too),
    all on one port: with ``port`` 0, the one the system chose for the first."""
    sockets: list[socket.socket] = []
    try:
        for family, address in _addresses(host, port):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # Else "::" would take IPv4 too, and the IPv4 address found besides it
                # could not be bound.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            chosen = sockets[0].getsockname()[1] if len(sockets) > 1 else port
            sock.bind((address[0], chosen, *address[2:]))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _addresses(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    """Each (family, address) ``host`` names for a server, once (as asyncio's
    ``create_server`` finds them)."""
    found = socket.getaddrinfo(
        host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    unique: dict[tuple[int, str], tuple[Any, ...]] = {}
    for family, _, _, _, address in found:
        if family in (socket.AF_INET, socket.AF_INET6):
            unique.setdefault((family, str(address[0])), address)
    return [(family, address) for (family, _), address in unique.items()]


# --- the worker --------------------------------------------------------------------------


def worker_main(
    plan: Plan,
    index: int,
    parent: Connection,
    parent_pid: int,
    shared: list[socket.socket] | None,
) -> None:
    """A worker process: serve ``plan`` as worker ``index``, telling ``parent`` when it
    is ready (``("ready", host, port)``) or why it could not start (``("failed", why)``)."""
    _die_with_parent(parent, parent_pid)
    from replay.cli import _budget_files, _configure_logging

    _configure_logging(plan.log_level, prefix=f"worker {index}: ")
    try:
        server = _worker_server(plan, index, parent)
        sockets = shared or _listening_sockets(plan)
    except Exception as error:  # the parent reports it: the user sees why
        with contextlib.suppress(OSError):
            parent.send(("failed", str(error) or repr(error)))
        raise SystemExit(1) from None
    _budget_files(plan.settings)
    # uvicorn exits 3 when the application cannot start: said just below.
    with contextlib.suppress(SystemExit):
        server.run(sockets=sockets)
    if not server.started:
        with contextlib.suppress(OSError):
            parent.send(("failed", "the server did not start (see the log above)"))
        raise SystemExit(3)


def _worker_server(plan: Plan, index: int, parent: Connection) -> Any:
    from replay.ready import ReadyServer
    from replay.server import create_app, uvicorn_config

    plan.settings.worker = index
    config = uvicorn_config(
        create_app(plan.settings),
        plan.host,
        plan.port,
        log_level=plan.log_level,
        **plan.uvicorn,
    )

    def ready(host: str, port: int) -> None:
        with contextlib.suppress(OSError):
            parent.send(("ready", host, port))

    return ReadyServer(config, announce=ready)


def _listening_sockets(plan: Plan) -> list[socket.socket]:
    sockets = bind_sockets(plan.host, plan.port, reuse_port=True)
    for sock in sockets:
        sock.listen(BACKLOG)
    return sockets


def _die_with_parent(parent: Connection, parent_pid: int) -> None:
    """Make sure this worker does not outlive the parent: the kernel sends SIGTERM when
    the parent dies (Linux), and, everywhere, a thread that sees the parent's end of the
    pipe close sends it too."""
    # A group of its own: a Ctrl-C in the terminal reaches the parent, which stops the
    # workers in order, and not every worker at once behind its back.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            try:
                parent.recv()  # the parent sends nothing: this returns when it is gone
            except (EOFError, OSError):
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except Exception:  # something that does not unpickle: not a reason to stop
                continue

    threading.Thread(target=watch, name="replay-watch-parent", daemon=True).start()


# --- the parent ----------------------------------------------------------------------------


@dataclass
class Worker:
    """The parent's view of one worker slot: the process now in it, and its history."""

    index: int
    process: BaseProcess | None = None
    connection: Connection | None = None
    ready: bool = False
    #: When it died unexpectedly lately (monotonic seconds), to limit restarts.
    deaths: collections.deque[float] = field(default_factory=collections.deque)
    #: Why it could not start, if it said so.
    failure: str | None = None
    given_up: bool = False


class StartFailed(ReplayError):
    """A worker could not start; the message is its reason."""


class Supervisor:
    """Starts, watches and stops the workers of one ``replay serve --workers N``."""

    def __init__(
        self,
        plan: Plan,
        count: int,
        *,
        announce: Callable[[str, int], None],
        ready_file: Path | None = None,
    ) -> None:
        self.plan = plan
        self.count = count
        self.announce = announce
        self.ready_file = ready_file
        self.context = multiprocessing.get_context("spawn")
        self.workers = [Worker(i) for i in range(count)]
        self.reserved: list[socket.socket] = []
        self.shared: list[socket.socket] | None = None
        self.stopping = False
        #: True once every worker has been ready (the address announced).
        self.announced = False
        self._wrote_ready = False
        #: When the workers must all be ready by (time.monotonic()), set by run().
        self.start_timeout = START_TIMEOUT
        self._start_deadline = 0.0
        #: A pipe the signal handlers write to, waking the parent (made by run()).
        self._wakeup_read = self._wakeup_write = -1

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM: 0 then; 1 if a worker could not start or every
        worker had to be given up."""
        previous = self._capture_signals()
        try:
            self._bind()
            self._start_deadline = time.monotonic() + self.start_timeout
            for worker in self.workers:
                self._start(worker)
            return self._supervise()
        except StartFailed as error:
            print(f"replay: {error}", file=sys.stderr)
            return 1
        finally:
            self._stop_all()
            self._remove_ready_file()
            for sock in [*self.reserved, *(self.shared or [])]:
                sock.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)

    # Signals --------------------------------------------------------------------------

    def _capture_signals(self) -> dict[int, Any]:
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_write, False)
        signal.set_wakeup_fd(self._wakeup_write)

        def stop(signum: int, frame: Any) -> None:
            self.stopping = True

        return {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    # Starting -------------------------------------------------------------------------

    def _bind(self) -> None:
        """Reserve the address (SO_REUSEPORT, not listening) or, without SO_REUSEPORT,
        open the one listening socket all workers share."""
        host, port = self.plan.host, self.plan.port
        try:
            if self.plan.reuse_port:
                self.reserved = sockets = bind_sockets(host, port, reuse_port=True)
            else:
                self.shared = sockets = bind_sockets(host, port, reuse_port=False)
                for sock in sockets:
                    sock.listen(BACKLOG)
        except OSError as error:
            raise StartFailed(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
            ) from None
        self.plan.port = int(sockets[0].getsockname()[1])  # the port the system chose for 0

    def _start(self, worker: Worker) -> None:
        ours, theirs = self.context.Pipe(duplex=True)
        process = self.context.Process(
            target=worker_main,
            args=(self.plan, worker.index, theirs, os.getpid(), self.shared),
            name=f"replay-worker-{worker.index}",
            daemon=True,  # and should the parent end some other way: terminated at exit
        )
        process.start()
        theirs.close()
        worker.process, worker.connection, worker.ready = process, ours, False
        worker.failure = None
        log.info("worker %d started (pid %d)", worker.index, process.pid)

    # Watching -------------------------------------------------------------------------

    def _supervise(self) -> int:
        while not self.stopping:
            waited: list[Any] = [self._wakeup_read]
            for worker in self._running():
                assert worker.process is not None
                assert worker.connection is not None
                waited += [worker.process.sentinel, worker.connection]
            if len(waited) == 1:
                log.error("every worker was given up on: stopping")
                return 1
            timeout = None
            if not self.announced:
                timeout = max(0.0, self._start_deadline - time.monotonic())
            heard = wait(waited, timeout)
            if not self.announced and time.monotonic() >= self._start_deadline:
                slow = [str(w.index) for w in self.workers if not w.ready]
                raise StartFailed(
                    f"worker {', '.join(slow)} did not become ready within "
                    f"{self.start_timeout:g} s (see its log lines above)"
                )
            for ready in heard:
                if ready == self._wakeup_read:
                    with contextlib.suppress(OSError):
                        os.read(self._wakeup_read, 512)
            if self.stopping:
                break
            for worker in self._running():
                self._hear(worker)
        return 0

    def _running(self) -> list[Worker]:
        return [w for w in self.workers if w.process is not None and not w.given_up]

    def _hear(self, worker: Worker) -> None:
        """What a worker said (ready, or why it failed), and whether it died."""
        assert worker.process is not None
        assert worker.connection is not None
        with contextlib.suppress(EOFError, OSError):
            while worker.connection.poll():
                self._message(worker, worker.connection.recv())
        if worker.process.is_alive():
            return
        worker.process.join()
        how = exit_description(worker.process.exitcode)
        if not self.announced:
            raise StartFailed(f"worker {worker.index} could not start: {worker.failure or how}")
        said = f" ({worker.failure})" if worker.failure else ""
        self._restart(worker, f"worker {worker.index} (pid {worker.process.pid}) {how}{said}")

    def _message(self, worker: Worker, message: Any) -> None:
        if message[0] == "ready":
            worker.ready = True
            assert worker.process is not None
            log.info("worker %d (pid %s) is ready", worker.index, worker.process.pid)
            if all(w.ready for w in self.workers) and not self.announced:
                self._say_ready(message[1], message[2])
        elif message[0] == "failed":
            worker.failure = str(message[1])

    def _say_ready(self, host: str, port: int) -> None:
        self.announced = True
        if self.ready_file is not None:
            try:
                write_atomically(self.ready_file, json.dumps(ready_document(host, port)) + "\n")
            except OSError as error:
                raise StartFailed(
                    f"could not write the ready file {self.ready_file}: {error}"
                ) from None
            self._wrote_ready = True
        self.announce(host, port)

    def _restart(self, worker: Worker, died: str) -> None:
        if worker.connection is not None:
            worker.connection.close()
        now = time.monotonic()
        worker.deaths.append(now)
        while worker.deaths and now - worker.deaths[0] > RESTART_WINDOW:
            worker.deaths.popleft()
        if len(worker.deaths) > MAX_RESTARTS:
            worker.given_up = True
            log.error(
                "%s: not restarted again, it died %d times within %d seconds",
                died,
                len(worker.deaths),
                int(RESTART_WINDOW),
            )
            return
        log.warning("%s: restarting it", died)
        self._start(worker)

    # Stopping -------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """SIGTERM every worker, wait STOP_GRACE seconds at most, then kill the rest."""
        alive = [w.process for w in self.workers if w.process is not None and w.process.is_alive()]
        for process in alive:
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + STOP_GRACE
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in alive:
            if process.is_alive():
                log.warning("worker pid %d did not stop in %gs: killed", process.pid, STOP_GRACE)
                process.kill()
                process.join()
        for worker in self.workers:
            if worker.connection is not None:
                worker.connection.close()
                worker.connection = None

    def _remove_ready_file(self) -> None:
        if self._wrote_ready and self.ready_file is not None:
            self._wrote_ready = False
            with contextlib.suppress(OSError):
                self.ready_file.unlink()


def exit_description(code: int | None) -> str:
    """How a process ended, for the log: 'exited with code 1', 'was killed by SIGKILL'."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"
