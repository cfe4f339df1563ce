"""The shipped scenarios: each validates, its broken variants give located errors, and each
plays against real uvicorn with real `websockets` clients that behave like a frontend.

Runs use ``speed=10`` (waits' timeouts are not scaled) so the file stays quick; these check
frames and order, never speed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from replay.cli import main
from replay.library import ScenarioLibrary
from replay.schema import scenario_schema
from replay.server import Settings
from tests.conftest import (
    SHIPPED,
    HoldingClock,
    LiveServer,
    hold_at_drops,
    start_live_server,
)

EXAMPLES = ["agent-run", "chat", "pause", "pause-status", "crash", "welcome"]
TIMEOUT = 10


@pytest.fixture
def live(scenarios_dir: Path) -> Iterator[LiveServer]:
    server_live, server, thread = start_live_server(
        Settings(scenarios=scenarios_dir, isolated=True, on_connect=[])
    )
    try:
        yield server_live
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def trigger(live: LiveServer, name: str, query: str = "speed=10", **body: Any) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{live.url}/trigger/{name}?{query}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


async def client_count(live: LiveServer, count: int) -> None:
    for _ in range(500):
        if sum(live.replay.delivery.client_counts().values()) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server never counted {count} clients")


async def frames_until(ws: ClientConnection, done: Any) -> list[Any]:
    """JSON frames from ``ws`` until ``done(frame)`` is true for one."""
    got: list[Any] = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        got.append(frame)
        if done(frame):
            return got


async def run_in_background(live: LiveServer, name: str, **body: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(asyncio.to_thread(trigger, live, name, **body))


@pytest.fixture
async def clients(live: LiveServer) -> AsyncIterator[tuple[ClientConnection, ClientConnection]]:
    async with (
        connect(live.ws_url + "/ws?client_id=ui") as messages,
        connect(live.ws_url + "/ws/stream?client_id=ui") as stream,
    ):
        await client_count(live, 2)
        yield messages, stream


async def nothing_else(live: LiveServer, ws: ClientConnection) -> None:
    """``ws`` got nothing more than what the test read: play 'messages' to everyone, and
    its first frame must be the next one ``ws`` receives (waiting for a frame that should
    not come would prove nothing on a slow machine)."""
    answer = await asyncio.to_thread(trigger, live, "messages", "speed=0")
    assert answer["state"] == "finished"
    frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert frame == {"message_type": "CHAT_REQUESTED", "message": "Test chat request"}


def is_close(frame: Any) -> bool:
    return isinstance(frame, dict) and frame.get("type") == "close"


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_validates(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(SHIPPED / f"{name}.yaml")]) == 0
    assert f"ok       {SHIPPED / name}.yaml" in capsys.readouterr().out


def test_the_whole_folder_validates_with_its_protocol_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["validate", "--scenarios", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "_protocol.yaml (2 endpoints, 0 message types, " in out
    assert " 0 invalid" in out


BROKEN = [
    (
        "chat",
        "  - wait: CHAT_INPUT\n    timeout: 5m\n",
        "  - wait: CHAT_INPT\n    timeout: 5m\n",
        ":13:5: steps.2.wait: unknown message type 'CHAT_INPT' (did you mean 'CHAT_INPUT'?)",
    ),
    (
        "agent-run",
        'trace: "{{ hex(32) }}"',
        'trace: "{{ hex(32 }}"',
        ":24:7: steps.0.let.trace: template syntax error",
    ),
    (
        "agent-run",
        '"{{ vars.agent }} - EventType.START_TURN"',
        '"{{ vars.agnt }} - EventType.START_TURN"',
        "steps.1.data.name: variable 'agnt' is not declared (did you mean 'agent'?)",
    ),
    (
        "pause",
        "  - repeat: 3\n",
        "  - repeat: 0\n",
        ":10:5: steps.1.repeat: not a repeat count; expected 1 to 1000000 or 'forever'",
    ),
    (
        "crash",
        "  - drop: all\n",
        "  - drop: everyone\n",
        ":10:5: steps.1.drop: unknown endpoint 'everyone'; expected one of /ws, /ws/stream, all",
    ),
    (
        "pause-status",
        "  message: PAUSE_REQUEST\n",
        "  mesage: PAUSE_REQUEST\n",
        "reacts_to.mesage: unknown field 'mesage' (did you mean 'message'?)",
    ),
]


@pytest.mark.parametrize(("name", "old", "new", "expected"), BROKEN)
def test_broken_variants_give_located_errors(
    name: str,
    old: str,
    new: str,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "scenarios"
    shutil.copytree(SHIPPED, folder)
    path = folder / f"{name}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"INVALID  {path}" in out
    assert (f"{path}{expected}" if expected.startswith(":") else expected) in out


def test_the_shipped_schema_is_current() -> None:
    shipped = json.loads((SHIPPED / "scenario.schema.json").read_text())
    refresh = "run: uv run replay schema > scenarios/scenario.schema.json"
    # With the folder's protocol: its routes are things a wait may name.
    assert shipped == scenario_schema(ScenarioLibrary(SHIPPED).catalog().protocol), refresh


def test_every_shipped_scenario_points_editors_at_the_schema() -> None:
    for path in sorted(SHIPPED.glob("[!_]*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=scenario.schema.json", path.name


async def test_agent_run_sends_spans_with_fresh_ids_and_the_trigger_vars(
    live: LiveServer, clients: tuple[ClientConnection, ClientConnection]
) -> None:
    messages, stream = clients
    run = await run_in_background(live, "agent-run", vars={"agent": "triage"})
    spans = [
        json.loads(frame["message"])
        for frame in await frames_until(
            messages, lambda f: "START_TURN" in f["message"] and "coder" in f["message"]
        )
    ]
    chunks = await frames_until(stream, is_close)
    answer = await run
    assert answer["state"] == "finished"
    names = [span["name"] for span in spans]
    assert names == [
        "triage - EventType.START_TURN",
        "triage - EventType.INSTRUCT",
        "triage - EventType.TOOL_EXECUTION",
        "triage - EventType.HANDOFF",
        "coder - EventType.START_TURN",
    ]
    # What the dashboard parses: 16-hex ids (id = span_id), parents, nanosecond strings,
    # string attributes and one 32-hex run_id.
    assert len({span["span_id"] for span in spans}) == 5
    assert all(re.fullmatch("[0-9a-f]{16}", span["id"]) for span in spans)
    assert all(span["id"] == span["span_id"] for span in spans)
    root = spans[0]["id"]
    assert [span["parent_span_id"] for span in spans] == [None, root, root, root, root]
    assert len({span["trace_id"] for span in spans}) == 1
    for span in spans:
        started, ended = int(span["start_time"]), int(span["end_time"])
        assert span["start_time"] == str(started)  # a string of nanoseconds
        assert abs(started / 1e9 - time.time()) < 3600  # Number(start_time) / 1e6 is a date
        assert ended > started
        assert all(isinstance(value, str) for value in span["attributes"].values())
    [run_id] = {span["attributes"]["run_id"] for span in spans}
    assert re.fullmatch("[0-9a-f]{32}", run_id)
    tool = "".join(c["content"] for c in chunks if c["type"] == "tool")
    text = "".join(c["content"] for c in chunks if c["type"] == "default")
    assert tool == "search_changelog(query='Plan the release notes') -> 12 entries found"
    assert text.endswith("Handing over to coder.")


async def test_chat_answers_the_users_input(
    live: LiveServer, clients: tuple[ClientConnection, ClientConnection]
) -> None:
    messages, stream = clients
    run = await run_in_background(live, "chat")
    asked = await frames_until(messages, lambda f: f["message_type"] == "IS_WAITING")
    assert asked[0] == {"message_type": "CHAT_REQUESTED", "message": "What should I do next?"}
    await messages.send(json.dumps({"message_type": "CHAT_INPUT", "message": "ship it"}))
    event = (await frames_until(messages, lambda f: f["message_type"] == "EVENT"))[-1]
    chunks = await frames_until(stream, is_close)
    answer = await run
    assert answer["state"] == "finished"
    assert json.loads(event["message"])["attributes"] == {"input": "ship it"}
    text = "".join(c["content"] for c in chunks if c["type"] == "default")
    assert text.startswith('You asked: "ship it". Here is my plan')
    assert len(chunks) > 10  # token-sized, not one chunk


async def test_pause_waits_for_two_pause_requests(
    live: LiveServer, clients: tuple[ClientConnection, ClientConnection]
) -> None:
    messages, _ = clients
    run = await run_in_background(live, "pause")
    work = await frames_until(messages, lambda f: '"step":3' in f["message"])
    assert len(work) == 4
    await messages.send(json.dumps({"message_type": "PAUSE_REQUEST", "message": ""}))
    paused = await frames_until(messages, lambda f: f["message_type"] == "PAUSE_STATUS")
    assert paused[-1]["message"] == "System paused"
    await messages.send(json.dumps({"message_type": "PAUSE_REQUEST", "message": ""}))
    rest = await frames_until(messages, lambda f: "END_TURN" in f["message"])
    assert [f["message"] for f in rest if f["message_type"] == "PAUSE_STATUS"] == ["System resumed"]
    assert (await run)["state"] == "finished"


async def test_pause_status_reacts_to_the_client_that_asked(live: LiveServer) -> None:
    async with (
        connect(live.ws_url + "/ws?client_id=asker") as asker,
        connect(live.ws_url + "/ws?client_id=other") as other,
    ):
        await client_count(live, 2)
        await asker.send(json.dumps({"message_type": "PAUSE_REQUEST", "message": "pause"}))
        reply = json.loads(await asyncio.wait_for(asker.recv(), TIMEOUT))
        assert reply == {"message_type": "PAUSE_STATUS", "message": "System paused"}
        await nothing_else(live, other)


async def test_crash_drops_everyone_and_a_reconnecting_client_gets_the_rest(
    scenarios_dir: Path,
) -> None:
    # The backend is down for 3 s (0.3 s at speed 10), time for a frontend to reconnect; the
    # test's clients may take longer on a busy machine: the clock holds the run in that
    # pause until they are back.
    clock = HoldingClock()
    live, server, thread = start_live_server(
        Settings(scenarios=scenarios_dir, isolated=True, on_connect=[]), clock=clock
    )
    hold_at_drops(live, clock)
    try:
        stream = await connect(live.ws_url + "/ws/stream")
        await client_count(live, 1)
        run = await run_in_background(live, "crash")
        before: list[Any] = []

        async def read_until_cut() -> None:
            while True:
                before.append(json.loads(await asyncio.wait_for(stream.recv(), TIMEOUT)))

        with pytest.raises(ConnectionClosed) as closed:
            await read_until_cut()
        assert closed.value.rcvd is None  # no close frame: the TCP connection was cut
        assert "".join(c["content"] for c in before) == "The deployment finished and all checks"
        # Reconnect, as a frontend does, while the backend is down.
        async with (
            connect(live.ws_url + "/ws") as messages,
            connect(live.ws_url + "/ws/stream") as stream_again,
        ):
            await client_count(live, 2)
            clock.release()
            error = json.loads(await asyncio.wait_for(messages.recv(), TIMEOUT))
            after = await frames_until(stream_again, is_close)
        assert error["message_type"] == "ERROR"
        text = "".join(c["content"] for c in after if c["type"] == "default")
        assert text == "The deployment finished and all checks passed."
        assert (await run)["state"] == "finished"
    finally:
        clock.release()
        server.should_exit = True
        thread.join(timeout=10)


async def test_welcome_plays_to_each_client_as_it_connects(scenarios_dir: Path) -> None:
    live, server, thread = start_live_server(
        Settings(scenarios=scenarios_dir, isolated=True, on_connect=["welcome"])
    )
    try:
        async with connect(live.ws_url + "/ws?client_id=first") as first:
            greeting = json.loads(await asyncio.wait_for(first.recv(), TIMEOUT))
            assert json.loads(greeting["message"])["client"] == "first"
            async with connect(live.ws_url + "/ws?client_id=second") as second:
                hello = json.loads(await asyncio.wait_for(second.recv(), TIMEOUT))
                assert json.loads(hello["message"])["client"] == "second"
                await nothing_else(live, first)  # no second copy
    finally:
        server.should_exit = True
        thread.join(timeout=10)
