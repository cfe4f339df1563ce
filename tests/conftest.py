"""Shared fixtures: a copy of the shipped scenarios, and a real uvicorn server on port 0."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import uvicorn
from fastapi.testclient import TestClient

import replay.server as server_module
from replay.clock import Clock, MonotonicClock
from replay.direct import burst
from replay.server import Replay, Server, Settings, create_app, uvicorn_config

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"


@pytest.fixture(autouse=True)
def _no_burst_left_open() -> Iterator[None]:
    """A test that fails with a burst open (see replay.direct.Burst) leaves it to no other."""
    yield
    burst.flush()


#: The modules whose tests take longest (the soaks, ``serve`` processes, a cluster, an
#: hour-long recording, the browser), run first. Run on two processes (pytest-xdist's
#: ``-n 2``, in pyproject.toml), each starts on a block of consecutive tests: one begins
#: with these while the other takes the short ones, instead of both ending on one of these.
FIRST = (
    "tests/test_soak.py",
    "tests/test_dashboard.py",
    "tests/test_workers.py",
    "tests/test_e2e_cluster.py",
    "tests/test_record_convert.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the FIRST modules' tests first (in FIRST's order), each module's tests and every
    other test in the order they were collected in."""

    def rank(item: pytest.Item) -> int:
        module = item.nodeid.partition("::")[0]
        return FIRST.index(module) if module in FIRST else len(FIRST)

    items.sort(key=rank)  # stable


#: Seconds between a test server's looks at its scenarios folder (the server's own is
#: WATCH_EVERY, 1 s): a test waiting for a change it made is told of it sooner, and each
#: look is one ``stat`` per file when nothing changed.
TEST_WATCH_EVERY = 0.1


@pytest.fixture(autouse=True)
def _quick_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started in this process look at their folder every TEST_WATCH_EVERY s."""
    monkeypatch.setattr(server_module, "WATCH_EVERY", TEST_WATCH_EVERY)


class LocalClient(TestClient):
    """Starlette's TestClient, sending its requests and WebSocket handshakes to
    ``localhost``: unless told, it says ``Host: testserver``, a name a server bound to
    loopback does not answer to (see replay.hosts)."""

    def __init__(self, app: Any, **options: Any) -> None:
        options.setdefault("base_url", "http://localhost")
        super().__init__(app, **options)

    def websocket_connect(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().websocket_connect(urljoin("ws://localhost", url), *args, **kwargs)


@pytest.fixture
def scenarios_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped scenarios folder, free to edit."""
    folder = tmp_path / "scenarios"
    shutil.copytree(SHIPPED, folder)
    return folder


@dataclass
class LiveServer:
    url: str
    ws_url: str
    replay: Replay


def start_live_server(
    settings: Settings, port: int = 0, clock: Clock | None = None, **options: Any
) -> tuple[LiveServer, uvicorn.Server, threading.Thread]:
    """uvicorn on 127.0.0.1 (port 0: a free one), in a thread with its own event loop;
    ``clock`` replaces the runner's real one, ``options`` go to uvicorn's config."""
    app = create_app(settings, clock)
    config = uvicorn_config(app, "127.0.0.1", port, log_level="warning", lifespan="on", **options)
    server = Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app.state.replay)
    return live, server, thread


def wait_until_watched(live: LiveServer) -> None:
    """Wait (10 s at most) until the server's watcher has taken its first look at the
    scenarios folder: it publishes what changes after that look, and the look is taken in
    the server's own time, after it has started."""
    deadline = time.monotonic() + 10.0
    while live.replay._seen is None:
        assert time.monotonic() < deadline, "the scenarios folder is not being watched"
        threading.Event().wait(0.01)


class HoldingClock(MonotonicClock):
    """Real time that can be held: while it is, time stands still for the runs and a
    run's pause does not end (until :meth:`release`, called from any thread). For tests
    in which something must happen during a scenario's pause, such as a client
    reconnecting after a drop, however long the machine takes to do it.

    Time stands still, not only the sleeps: a run that reaches its pause late (a loaded
    machine) finds the pause already over and does not sleep at all, so a held sleep
    alone would let it run on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = False
        self._held_at = 0.0
        self._waiting: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def now(self) -> float:
        with self._lock:
            return self._held_at if self._held else super().now()

    def hold(self) -> None:
        with self._lock:
            if not self._held:
                self._held_at = super().now()
            self._held = True

    def release(self) -> None:
        with self._lock:
            self._held, waiting, self._waiting = False, self._waiting, []
        for loop, released in waiting:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(released.set)

    async def sleep_until(self, deadline: float) -> None:
        await super().sleep_until(deadline)
        with self._lock:
            if not self._held:
                return
            released = asyncio.Event()
            self._waiting.append((asyncio.get_running_loop(), released))
        await released.wait()


def hold_at_drops(live: LiveServer, clock: HoldingClock) -> None:
    """Hold ``clock`` when a run drops clients (a ``drop`` step), before its next pause
    begins: the run waits there until the test releases the clock."""
    delivery = live.replay.runner.delivery
    hangup = delivery.hangup

    def holding(endpoint: Any, to: Any, code: int, reason: str, abort: bool) -> int:
        if abort:
            clock.hold()
        return hangup(endpoint, to, code, reason, abort)

    delivery.hangup = holding  # type: ignore[method-assign]


@contextlib.contextmanager
def serving(settings: Settings, **options: Any) -> Iterator[LiveServer]:
    """:func:`start_live_server` for the block, stopped after it (``options`` as there)."""
    live, server, thread = start_live_server(settings, **options)
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_server(scenarios_dir: Path) -> Iterator[LiveServer]:
    """A real replay server on a free port, serving a copy of the shipped scenarios."""
    with serving(Settings(scenarios=scenarios_dir, isolated=True)) as live:
        yield live
