"""Faults during a run, on a real server: clients that leave mid-stream, a scenario file edited
or deleted while it plays, the server stopped mid-run, and one scenario triggered twice at
once (both play: the documented policy)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from replay.runner import RunState
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.hostile import (
    PATIENCE,
    TICKS,
    add_tick,
    connected,
    post,
    request,
    serving,
    settled,
    tick_frame,
    until_closed,
)


def event(text: str) -> str:
    return json.dumps({"message_type": "EVENT", "message": text}, separators=(",", ":"))


async def receive(ws: Any, count: int) -> list[str]:
    return [str(await asyncio.wait_for(ws.recv(), PATIENCE)) for _ in range(count)]


async def run_state(live: LiveServer, run_id: str, state: RunState) -> Any:
    """Wait until the run is in ``state``; the run."""
    deadline = time.monotonic() + PATIENCE
    while (run := live.replay.runner.get(run_id)).state is not state:
        assert time.monotonic() < deadline, f"run {run_id} is {run.state}, never {state}"
        await asyncio.sleep(0.01)
    return run


@pytest.fixture
def folder(scenarios_dir: Path) -> Path:
    add_tick(scenarios_dir)
    return scenarios_dir


async def test_clients_leaving_mid_stream_do_not_stop_the_run_for_the_others(
    folder: Path,
) -> None:
    with serving(Settings(scenarios=folder, isolated=True)) as (live, _):
        async with (
            connect(live.ws_url + "/ws") as keeper,
            connect(live.ws_url + "/ws") as polite,
            connect(live.ws_url + "/ws") as rude,
        ):
            await connected(live, 3)
            run_id = (await post(live, "/trigger/tick?wait=false"))["run_id"]
            assert await receive(polite, 1) == [tick_frame(0)]
            assert await receive(rude, 2) == [tick_frame(0), tick_frame(1)]
            await polite.close()  # a close handshake mid-run
            rude.transport.abort()  # a vanished peer: no close frame at all
            assert await receive(keeper, TICKS) == [tick_frame(i) for i in range(TICKS)]
            run = await run_state(live, run_id, RunState.FINISHED)
            assert run.summary()["sent"] == TICKS
            assert run.error is None
            await settled(live, 1)


async def test_a_scenario_edited_while_it_plays_keeps_the_version_it_started_with(
    folder: Path,
) -> None:
    outer, inner = folder / "outer.yaml", folder / "inner.yaml"

    def write(version: str) -> None:
        outer.write_text(
            "delay: 150ms\nsteps:\n"
            f"  - message: EVENT\n    text: {version} 0\n"
            f"  - message: EVENT\n    text: {version} 1\n"
            "  - play: inner\n"
            f"  - message: EVENT\n    text: {version} 3\n"
        )
        inner.write_text(f"delay: 150ms\nsteps:\n  - message: EVENT\n    text: {version} 2\n")
        for path in (outer, inner):  # seen as changed even with coarse timestamps
            stamp = time.time_ns() + (5_000_000_000 if version == "new" else 0)
            os.utime(path, ns=(stamp, stamp))

    write("old")
    with serving(Settings(scenarios=folder, isolated=True)) as (live, _):
        async with connect(live.ws_url + "/ws") as ws:
            await connected(live, 1)
            await post(live, "/trigger/outer?wait=false")
            assert await receive(ws, 1) == [event("old 0")]
            write("new")  # both the scenario and the one it plays, mid-run
            assert await receive(ws, 3) == [event(f"old {i}") for i in (1, 2, 3)]
            # The next trigger plays the new version.
            await post(live, "/trigger/outer?speed=0")
            assert await receive(ws, 4) == [event(f"new {i}") for i in range(4)]


async def test_a_scenario_deleted_while_it_plays_finishes_as_it_started(folder: Path) -> None:
    (folder / "doomed.yaml").write_text(
        "delay: 150ms\nsteps:\n"
        + "".join(f"  - message: EVENT\n    text: d{i}\n" for i in range(4))
    )
    with serving(Settings(scenarios=folder, isolated=True)) as (live, _):
        async with connect(live.ws_url + "/ws") as ws:
            await connected(live, 1)
            run_id = (await post(live, "/trigger/doomed?wait=false"))["run_id"]
            assert await receive(ws, 1) == [event("d0")]
            (folder / "doomed.yaml").unlink()
            assert await receive(ws, 3) == [event(f"d{i}") for i in (1, 2, 3)]
            await run_state(live, run_id, RunState.FINISHED)
            status, body = await asyncio.to_thread(request, live.url + "/trigger/doomed")
            assert status == 404
            assert "no scenario named 'doomed'" in body["detail"]
            status, body = await asyncio.to_thread(request, live.url + "/scenarios", "GET")
            assert "doomed" not in [s["name"] for s in body["scenarios"]]


async def test_two_triggers_of_one_scenario_at_once_both_play(folder: Path) -> None:
    with serving(Settings(scenarios=folder, isolated=True)) as (live, _):
        async with connect(live.ws_url + "/ws") as ws:
            await connected(live, 1)
            first, second = await asyncio.gather(
                post(live, "/trigger/tick"), post(live, "/trigger/tick")
            )
            assert first["status"] == second["status"] == "success"
            assert first["run_id"] != second["run_id"]
            assert first["sent"] == second["sent"] == TICKS
            frames = await receive(ws, 2 * TICKS)
            # Interleaved, each run in its own order: every tick twice, none before the last.
            assert sorted(frames) == sorted([tick_frame(i) for i in range(TICKS)] * 2)
            for index in range(1, TICKS):
                assert frames.index(tick_frame(index)) > frames.index(tick_frame(index - 1))
            assert {run.id for run in live.replay.runner.runs()} >= {
                first["run_id"],
                second["run_id"],
            }


async def test_stopping_the_server_mid_run_closes_clients_with_1001_and_cancels_the_run(
    folder: Path,
) -> None:
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    try:
        async with (
            connect(live.ws_url + "/ws") as messages,
            connect(live.ws_url + "/ws/stream") as stream,
        ):
            await connected(live, 2)
            # 'messages' lasts 2 s; a trigger that waits for it is answered when it ends.
            waiting = asyncio.create_task(
                asyncio.to_thread(request, live.url + "/trigger/messages", "POST")
            )
            first = json.loads(await asyncio.wait_for(messages.recv(), PATIENCE))
            assert first["message_type"] == "CHAT_REQUESTED"
            [run] = live.replay.runner.runs()
            assert run.state is RunState.RUNNING
            stopping = time.monotonic()
            server.should_exit = True
            for ws in (messages, stream):
                closed = await until_closed(ws)
                assert closed.rcvd is not None
                assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "server shutting down")
            status, answer = await asyncio.wait_for(waiting, PATIENCE)
            assert (status, answer["status"], answer["state"]) == (200, "cancelled", "cancelled")
        # It stops (the run was cancelled, not waited for: see below), with room for a busy
        # machine.
        await asyncio.to_thread(thread.join, PATIENCE)
        assert not thread.is_alive()
        assert time.monotonic() - stopping < PATIENCE
        assert run.state is RunState.CANCELLED
        assert live.replay.runner.runs()[0].summary()["state"] == "cancelled"
        assert live.replay.runner.ended[RunState.CANCELLED] == 1
    finally:
        server.should_exit = True
        thread.join(timeout=PATIENCE)


async def test_stopping_the_server_with_a_forever_run_and_a_follower_ends_promptly(
    folder: Path,
) -> None:
    (folder / "forever.yaml").write_text(
        "steps:\n  - repeat: forever\n    steps:\n      - message: EVENT\n        text: beat\n"
        "        delay: 50ms\n"
    )
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    try:
        async with connect(live.ws_url + "/ws") as ws:
            await connected(live, 1)
            following = asyncio.create_task(
                asyncio.to_thread(request_lines, live.url + "/trigger/forever?follow=true")
            )
            assert await receive(ws, 3) == [event("beat")] * 3
            stopping = time.monotonic()
            server.should_exit = True
            await until_closed(ws)
            lines = await asyncio.wait_for(following, PATIENCE)
        # It stops (the run was cancelled, not waited for: see below), with room for a busy
        # machine.
        await asyncio.to_thread(thread.join, PATIENCE)
        assert not thread.is_alive()
        assert time.monotonic() - stopping < PATIENCE
        # The follower saw the run end, cancelled.
        assert lines[0]["event"] == "start"
        assert lines[-1]["event"] == "end"
        assert lines[-1]["state"] == "cancelled"
    finally:
        server.should_exit = True
        thread.join(timeout=PATIENCE)


def request_lines(url: str) -> list[dict[str, Any]]:
    """POST ``url`` and read its JSON lines until the server ends the response."""
    prepared = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(prepared, timeout=PATIENCE) as answer:
        return [json.loads(line) for line in answer if line.strip()]
