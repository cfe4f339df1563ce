"""File descriptors (replay/fds.py) and the logs they would flood (replay/logs.py): ``replay
serve`` in a subprocess with a small open-file limit, and its log read from a file."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from replay.fds import FileBudget, file_budget, reserve
from replay.guard import CLOSE_TRY_LATER
from tests.hostile import PATIENCE
from tests.served import Served, healthz

resource = pytest.importorskip("resource")


@pytest.fixture
def serve(scenarios_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(files: int, *options: str) -> Served:
        log = tmp_path / f"serve-{len(started)}.log"
        started.append(Served(scenarios_dir, log, *options, files=files))
        return started[-1]

    yield start
    for served in started:
        served.stop()


# --- the budget itself ----------------------------------------------------------------------


def test_the_reserve_is_64_or_a_tenth() -> None:
    assert (reserve(128), reserve(1024), reserve(100_000)) == (64, 102, 10_000)


def test_what_the_budget_says() -> None:
    assert FileBudget(10_000, 10_000, 1_048_576, None).message() is None
    assert FileBudget(10_000, 10_000, 524_288, 1024).message() == (
        "raised the open-file limit from 1024 to 524288"
    )
    assert FileBudget(922, 10_000, 1024, None).message() == (
        "client limit lowered from 10000 to 922 because only 1024 file descriptors are "
        "allowed (raise the hard limit, 'ulimit -Hn', to allow more)"
    )
    assert FileBudget(1800, 10_000, 2000, 1024).message() == (
        "raised the open-file limit from 1024 to 2000; client limit lowered from 10000 to "
        "1800 because only 2000 file descriptors are allowed (raise the hard limit, "
        "'ulimit -Hn', to allow more)"
    )


def test_the_budget_raises_the_soft_limit_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lower = min(soft, 512)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lower, hard))
        budget = file_budget(10)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == budget.limit
        if hard != resource.RLIM_INFINITY and hard > lower:
            assert (budget.raised_from, budget.limit) == (lower, hard)
        assert budget.clients == 10
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# --- replay serve under a small limit -------------------------------------------------------


async def refused_with_1013(url: str) -> tuple[int, str]:
    async with connect(url) as extra:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(extra.recv(), PATIENCE)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_clients_over_what_the_files_allow_get_1013_and_healthz_still_answers(
    serve: Callable[..., Served],
) -> None:
    served = serve(128)  # the hard limit too: it cannot be raised
    served.wait_for(
        "client limit lowered from 10000 to 64 because only 128 file descriptors are allowed"
    )
    ws = f"ws://127.0.0.1:{served.port}"
    clients: list[ClientConnection] = []
    try:
        for index in range(64):
            clients.append(await connect(f"{ws}/{'ws' if index % 2 else 'ws/stream'}"))
        assert (await asyncio.to_thread(healthz, served))["clients"] == {
            "/ws": 32,
            "/ws/stream": 32,
        }
        # One after the other, more clients than the process may open files: each is told
        # 1013 and let go, so none is left hanging for want of a file descriptor.
        for _ in range(100):
            assert await refused_with_1013(f"{ws}/ws") == (
                CLOSE_TRY_LATER,
                "too many clients (limit 64)",
            )
        health = await asyncio.to_thread(healthz, served)
        assert health["clients"] == {"/ws": 32, "/ws/stream": 32}
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    served.stop()
    log = served.text()
    assert "out of system resource" not in log
    # A line or two per connection, not a flood.
    assert len(log.splitlines()) < 600, log[-3000:]


def test_running_out_of_files_logs_one_line_not_a_flood(serve: Callable[..., Served]) -> None:
    served = serve(128)
    assert healthz(served)["status"] == "ok"
    # Connections that are not WebSockets are not counted against the client limit: enough
    # of them leave the server no file descriptor to accept with.
    idle = []
    try:
        for _ in range(160):
            idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=PATIENCE))
        served.wait_for("socket.accept\\(\\) out of system resource")
    finally:
        for sock in idle:
            sock.close()
    # Once they have gone, the server accepts again.
    assert healthz(served)["status"] == "ok"
    served.stop()
    log = served.text()
    # asyncio reports each failed accept up to 2048 times a try (hundreds of megabytes a
    # minute): one report in ten seconds gets through.
    assert log.count("out of system resource") == 1, log[-3000:]
    assert len(log.splitlines()) < 200, log[-3000:]
