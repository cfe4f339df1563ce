"""Helpers for the tests of hostile requests, clients and faults: a live server, triggers over
HTTP, and a healthy client that checks it still gets a scenario, on time, whatever else the
server is put through meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.exceptions import ConnectionClosed

from replay.server import Server, Settings
from tests.conftest import LiveServer, start_live_server

#: The healthy client's scenario: TICKS frames on /ws, TICK seconds apart.
TICKS = 5
TICK = 0.1
TICK_SCENARIO = f"delay: {int(TICK * 1000)}ms\nsteps:\n" + "".join(
    f"  - message: EVENT\n    text: tick {index}\n" for index in range(TICKS)
)
#: How late a healthy client's frame may be (trigger over HTTP included). Generous: the
#: tests share two cores with the server, the hostile clients and whatever else the machine
#: runs (frames came up to 0.55 s late with two CPU-bound processes beside the suite), and
#: they check that no hostile client holds the server up, which is a matter of seconds
#: (before issue 10, reloading scenarios made frames 30 s late). The 50 ms bound replay
#: keeps is measured by bench/lateness.py, on a quiet machine.
LATE = 2.0
#: Seconds to wait for anything that should happen at once.
PATIENCE = 10.0


def tick_frame(index: int) -> str:
    return json.dumps({"message_type": "EVENT", "message": f"tick {index}"}, separators=(",", ":"))


def add_tick(folder: Path) -> None:
    (folder / "tick.yaml").write_text(TICK_SCENARIO)


@contextlib.contextmanager
def serving(settings: Settings, **options: Any) -> Iterator[tuple[LiveServer, Server]]:
    """A live server (see tests.conftest.start_live_server), stopped at the end."""
    live, server, thread = start_live_server(settings, **options)
    try:
        yield live, server  # type: ignore[misc]
    finally:
        server.should_exit = True
        thread.join(timeout=PATIENCE)


def request(
    url: str,
    method: str = "POST",
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """An HTTP request; the status and the JSON body (errors included, never raised)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    prepared = urllib.request.Request(url, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(prepared, timeout=PATIENCE) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


async def post(live: LiveServer, path: str, token: str | None = None) -> dict[str, Any]:
    """POST ``path`` from a thread (the server runs in this process); the JSON answer."""
    status, body = await asyncio.to_thread(request, live.url + path, "POST", token)
    assert status < 300, (status, body)
    return body


async def connected(live: LiveServer, count: int) -> None:
    """Wait until the server counts ``count`` clients in all."""
    deadline = time.monotonic() + PATIENCE
    while sum(live.replay.delivery.client_counts().values()) < count:
        assert time.monotonic() < deadline, f"the server never counted {count} clients"
        await asyncio.sleep(0.01)


async def settled(live: LiveServer, count: int) -> None:
    """Wait until the server counts exactly ``count`` clients in all."""
    deadline = time.monotonic() + PATIENCE
    while sum(live.replay.delivery.client_counts().values()) != count:
        assert time.monotonic() < deadline, f"the server never settled at {count} clients"
        await asyncio.sleep(0.01)


async def until_closed(ws: Any) -> ConnectionClosed:
    """Read (what was sent before the close may still be on its way) until the connection
    closes; how it closed."""
    while True:
        try:
            await asyncio.wait_for(ws.recv(), PATIENCE)
        except ConnectionClosed as closed:
            return closed


async def ticks_arrive_on_time(live: LiveServer, ws: Any, token: str | None = None) -> None:
    """Trigger the tick scenario and check the connected client ``ws`` gets every frame of
    it, in order, none later than LATE seconds after it was due."""
    started = time.monotonic()
    await post(live, "/trigger/tick?wait=false", token)
    for index in range(TICKS):
        frame = await asyncio.wait_for(ws.recv(), PATIENCE)
        late = time.monotonic() - started - index * TICK
        assert frame == tick_frame(index)
        assert late < LATE, f"tick {index} arrived {late:.3f}s after it was due"
