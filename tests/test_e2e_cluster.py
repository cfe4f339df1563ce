"""End to end: a cluster of three real replay servers (uvicorn on port 0, each with its
own event loop) on a real redis-server, a real `websockets` client on each."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from websockets.asyncio.client import ClientConnection, connect

from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.hostile import connected
from tests.protocols import CHAT, SCHWARM_PROTOCOL, write_protocol
from tests.redis_server import RedisServer, redis_server  # noqa: F401 (a fixture)

#: Seconds a test waits for what should happen soon.
PATIENCE = 15.0

FIVE = "steps:\n" + "".join(f"  - message: EVENT\n    text: frame {n}\n" for n in range(5))
OTHER = "steps:\n  - message: EVENT\n    text: to everyone\n"
ASK = """\
steps:
  - message: CHAT_REQUESTED
    text: Shall I deploy?
  - wait: CHAT_INPUT
    timeout: 30s
  - choose:
      - when: "received.message == 'yes'"
        steps:
          - message: CHAT
            text: deploying
      - otherwise:
          - message: CHAT
            text: "not deploying: {{ received.message }}"
  - message: EVENT
    text: "answered by {{ sender }}"
    to: sender
  - message: EVENT
    text: done
"""
REACT = """\
reacts_to:
  message: PAUSE_REQUEST
steps:
  - message: EVENT
    text: "paused for {{ sender }}"
    to: sender
  - message: EVENT
    text: "{{ sender }} paused"
"""


def answer(url: str) -> tuple[int, dict[str, Any]]:
    """POST ``url``: the status and the JSON answer, whatever the status."""
    request = urllib.request.Request(url, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def get(url: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


async def trigger(live: LiveServer, path: str) -> tuple[int, dict[str, Any]]:
    return await asyncio.to_thread(answer, live.url + path)


async def frames(ws: ClientConnection, count: int) -> list[str]:
    """The next ``count`` frames' texts (the message field), PATIENCE at most."""
    texts = []
    for _ in range(count):
        frame = json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))
        texts.append(frame["message"])
    return texts


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "five.yaml").write_text(FIVE)
    (scenarios / "other.yaml").write_text(OTHER)
    (scenarios / "ask.yaml").write_text(ASK)
    (scenarios / "react.yaml").write_text(REACT)
    return scenarios


@contextmanager
def cluster(folders: list[Path], backplane: str) -> Iterator[list[LiveServer]]:
    """A node serving each folder, all on ``backplane``; stopped afterwards."""
    started = []
    try:
        for folder in folders:
            settings = Settings(scenarios=folder, isolated=True, backplane=backplane)
            started.append(start_live_server(settings))
        yield [live for live, _, _ in started]
    finally:
        for _, server, _ in started:
            server.should_exit = True
        for _, _, thread in started:
            thread.join(timeout=10)
            assert not thread.is_alive(), "a node did not stop"


@pytest.fixture
def nodes(folder: Path, redis_server: RedisServer) -> Iterator[list[LiveServer]]:  # noqa: F811
    with cluster([folder] * 3, redis_server.url) as started:
        yield started


@pytest.fixture
async def clients(nodes: list[LiveServer]) -> AsyncIterator[list[ClientConnection]]:
    """One client on each node: client-0 on the first, client-1 on the second..."""
    async with AsyncExitStack() as stack:
        made = []
        for n, live in enumerate(nodes):
            url = f"{live.ws_url}/ws?client_id=client-{n}"
            made.append(await stack.enter_async_context(connect(url)))
            await connected(live, 1)
        yield made


async def test_one_trigger_plays_on_every_node_to_every_client_in_order(
    nodes: list[LiveServer], clients: list[ClientConnection]
) -> None:
    status, run = await trigger(nodes[0], "/trigger/five?speed=0")
    assert (status, run["status"]) == (200, "success")
    expected = [f"frame {n}" for n in range(5)]
    for ws in clients:
        assert await frames(ws, 5) == expected
    for live in nodes:  # one run, under one id, on every node
        await until(lambda live=live: live.replay.runner.get(run["run_id"]).done, "never ended")
        assert live.replay.runner.get(run["run_id"]).scenario == "five"


async def test_a_trigger_for_a_client_on_another_node_reaches_it_alone(
    nodes: list[LiveServer], clients: list[ClientConnection]
) -> None:
    status, run = await trigger(nodes[0], "/trigger/five?speed=0&client=client-1")
    assert status == 200
    assert run["deliveries"] == 0  # the first node holds no client-1
    assert await frames(clients[1], 5) == [f"frame {n}" for n in range(5)]
    status, _ = await trigger(nodes[2], "/trigger/other?speed=0")
    assert status == 200
    # The others' next frame is the broadcast's: the run for client-1 sent them nothing.
    assert await frames(clients[0], 1) == ["to everyone"]
    assert await frames(clients[2], 1) == ["to everyone"]
    assert await frames(clients[1], 1) == ["to everyone"]


def said(message_type: str, text: str) -> str:
    return json.dumps({"message_type": message_type, "message": text})


async def test_a_wait_hears_a_client_on_another_node_and_every_node_takes_its_branch(
    nodes: list[LiveServer], clients: list[ClientConnection]
) -> None:
    status, run = await trigger(nodes[0], "/trigger/ask?speed=0&wait=false")
    assert status == 202
    for ws in clients:
        assert await frames(ws, 1) == ["Shall I deploy?"]
    await clients[1].send(said("CHAT_INPUT", "no thanks"))
    rest = ["not deploying: no thanks", "done"]
    assert await frames(clients[1], 3) == [rest[0], "answered by client-1", rest[1]]
    assert await frames(clients[0], 2) == rest  # `to: sender` reached client-1 alone
    assert await frames(clients[2], 2) == rest
    for live in nodes:
        await until(lambda live=live: live.replay.runner.get(run["run_id"]).done, "never ended")
        assert live.replay.runner.get(run["run_id"]).mailbox.summary()["taken"] == 1
    _, health = await asyncio.to_thread(get, nodes[1].url + "/healthz")
    assert health["backplane"]["frames_unshared"] == 0


async def test_a_reaction_to_a_client_on_one_node_plays_once_for_the_cluster(
    nodes: list[LiveServer], clients: list[ClientConnection]
) -> None:
    await clients[1].send(said("PAUSE_REQUEST", "please"))
    assert await frames(clients[1], 2) == ["paused for client-1", "client-1 paused"]
    assert await frames(clients[0], 1) == ["client-1 paused"]
    assert await frames(clients[2], 1) == ["client-1 paused"]
    ids = set()
    for live in nodes:
        _, listed = await asyncio.to_thread(get, live.url + "/runs")
        runs = [r for r in listed["runs"] if r["scenario"] == "react"]
        assert [(r["started_by"], r["sender"]) for r in runs] == [("reaction", "client-1")]
        ids.add(runs[0]["run_id"])
    assert len(ids) == 1  # one run id on every node


async def test_redis_down_answers_503_and_a_trigger_works_again_once_it_is_back(
    nodes: list[LiveServer],
    clients: list[ClientConnection],
    redis_server: RedisServer,  # noqa: F811
) -> None:
    status, health = await asyncio.to_thread(get, nodes[1].url + "/healthz")
    assert health["backplane"]["subscribed"] is True
    assert health["backplane"]["url"] == redis_server.url
    redis_server.stop()
    status, refused = await trigger(nodes[1], "/trigger/five?speed=0")
    assert status == 503
    assert refused["detail"].startswith(f"the backplane {redis_server.url} is unreachable: ")
    assert refused["detail"].endswith("; triggers come back when it does")
    for ws in clients:  # the nodes keep their clients
        await asyncio.wait_for(ws.ping(), PATIENCE)
    # A node cut off reacts to its clients as a single process does.
    cut_off = nodes[1].replay.node
    assert cut_off is not None
    await until(lambda: not cut_off.backplane.subscribed, "still subscribed to nothing")
    await clients[1].send(said("PAUSE_REQUEST", "please"))
    assert await frames(clients[1], 2) == ["paused for client-1", "client-1 paused"]
    redis_server.start()
    for live in nodes:
        node = live.replay.node
        assert node is not None
        await until(lambda node=node: node.backplane.subscribed, "never subscribed again")
    status, run = await trigger(nodes[1], "/trigger/other?speed=0")
    assert (status, run["status"]) == (200, "success")
    for ws in clients:
        assert await frames(ws, 1) == ["to everyone"]


async def test_every_node_plays_the_version_of_the_node_that_took_the_trigger(
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    # The second node's folder has another version of "five", and lacks the scenario
    # "five" plays: mid-deploy, folders differ for a moment.
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "five.yaml").write_text("steps:\n  - play: part\n  - message: EVENT\n    text: new\n")
    (first / "part.yaml").write_text("steps:\n  - message: EVENT\n    text: part\n")
    (second / "five.yaml").write_text("steps:\n  - message: EVENT\n    text: old\n")
    with cluster([first, second], redis_server.url) as (a, b):
        async with connect(f"{b.ws_url}/ws") as ws:
            await connected(b, 1)
            status, run = await trigger(a, "/trigger/five?speed=0")
            assert (status, run["clients"]) == (200, 0)
            assert await frames(ws, 2) == ["part", "new"]


async def test_what_the_node_taking_a_trigger_refuses_is_refused_as_without_a_cluster(
    nodes: list[LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, missing = await trigger(nodes[0], "/trigger/fiv?speed=0")
    assert status == 404
    assert "did you mean 'five'" in missing["detail"]
    monkeypatch.setattr("replay.backplane.node.MAX_START_BYTES", 10)
    status, large = await trigger(nodes[0], "/trigger/five?speed=0")
    assert status == 413
    assert large["limit"] == 10
    assert "split it, or serve it without --backplane" in large["detail"]
    monkeypatch.setattr(nodes[0].replay.runner, "max_active", 0)
    status, full = await trigger(nodes[0], "/trigger/five?speed=0")
    assert (status, full["share"]) == (429, "trigger")


async def test_nodes_in_one_process_share_a_memory_backplane(folder: Path) -> None:
    with cluster([folder, folder], "memory://e2e") as (a, b):
        async with connect(f"{b.ws_url}/ws") as ws:
            await connected(b, 1)
            status, run = await trigger(a, "/trigger/other?speed=0")
            assert (status, run["status"]) == (200, "success")
            assert await frames(ws, 1) == ["to everyone"]
            assert b.replay.runner.get(run["run_id"]).scenario == "other"
            # The same version again: parsed once per node; a new version: parsed again.
            assert await trigger(a, "/trigger/other?speed=0") == (200, ANY)
            assert await frames(ws, 1) == ["to everyone"]
            assert b.replay.node is not None
            assert len(b.replay.node._catalogs) == 1
            (folder / "other.yaml").write_text(OTHER.replace("everyone", "all"))
            assert await trigger(a, "/trigger/other?speed=0") == (200, ANY)
            assert await frames(ws, 1) == ["to all"]
            assert len(b.replay.node._catalogs) == 2


def clients_of(url: str) -> list[str]:
    with urllib.request.urlopen(url + "/clients", timeout=30) as response:
        return [client["client_id"] for client in json.loads(response.read())["clients"]]


async def listed(url: str, client: str) -> None:
    """Wait until the node at ``url`` lists ``client`` (a run plays to those it lists)."""
    deadline = time.monotonic() + PATIENCE
    while client not in await asyncio.to_thread(clients_of, url):
        assert time.monotonic() < deadline, f"{url} never listed {client}"
        await asyncio.sleep(0.01)


class Process:
    """``replay serve --port 0 --ready-file`` as a child process."""

    def __init__(self, folder: Path, backplane: str, tmp: Path, n: int) -> None:
        self.ready = tmp / f"ready-{n}.json"
        self.log = tmp / f"node-{n}.log"
        command = [sys.executable, "-m", "replay", "serve", "--port", "0"]
        command += ["--scenarios", str(folder), "--backplane", backplane]
        command += ["--ready-file", str(self.ready)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    async def started(self) -> dict[str, Any]:
        """The ready file's document, once the node answers."""
        deadline = time.monotonic() + PATIENCE * 2
        while not self.ready.exists():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "no ready file: " + self.log.read_text()
            await asyncio.sleep(0.02)
        return json.loads(self.ready.read_text())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


async def test_three_serve_processes_play_one_trigger_and_one_killed_takes_only_its_clients(
    folder: Path,
    tmp_path: Path,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    processes = [Process(folder, redis_server.url, tmp_path, n) for n in range(3)]
    try:
        ready = [await process.started() for process in processes]
        async with AsyncExitStack() as stack:
            clients = []
            for n, document in enumerate(ready):
                url = f"{document['ws']}/ws?client_id=client-{n}"
                clients.append(await stack.enter_async_context(connect(url)))
                await listed(document["url"], f"client-{n}")
            status, run = await asyncio.to_thread(answer, ready[0]["url"] + "/trigger/five?speed=0")
            assert (status, run["status"]) == (200, "success")
            for ws in clients:
                assert await frames(ws, 5) == [f"frame {n}" for n in range(5)]
            processes[2].process.kill()
            processes[2].process.wait(10)
            status, run = await asyncio.to_thread(
                answer, ready[1]["url"] + "/trigger/other?speed=0"
            )
            assert (status, run["status"]) == (200, "success")
            for ws in clients[:2]:
                assert await frames(ws, 1) == ["to everyone"]
    finally:
        for process in processes:
            process.stop()
    for process in processes[:2]:
        assert "Traceback" not in process.log.read_text()


def test_a_server_without_a_backplane_is_no_node(folder: Path) -> None:
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    try:
        assert live.replay.node is None
        _, health = get(live.url + "/healthz")
        assert "backplane" not in health
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive()


def request(live: LiveServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """An HTTP request with an optional JSON body: its status and JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    made = urllib.request.Request(live.url + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(made, timeout=PATIENCE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_a_request_to_a_declared_route_on_one_node_answers_a_wait_on_every_node(
    folder: Path,
) -> None:
    write_protocol(folder, SCHWARM_PROTOCOL)
    (folder / "chat-http.yaml").write_text(CHAT)
    with cluster([folder, folder], "memory://routes") as (a, b):
        async with connect(f"{a.ws_url}/ws?client_id=on-a") as ws:
            await connected(a, 1)
            status, run = await trigger(b, "/trigger/chat-http?wait=false")
            assert status == 202
            asked = json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))
            assert asked["message_type"] == "CHAT_REQUESTED"
            # Asked on node b: a's copy of the run hears it, and answers a's client.
            answered = await asyncio.to_thread(request, b, "POST", "/chat?user_input=Hello")
            assert answered == (200, "Hello")
            said = json.loads(await asyncio.wait_for(ws.recv(), PATIENCE))
            assert said == {"message_type": "CHAT", "message": ANY}
            assert said["message"].startswith("You said: Hello (")
            # The run ends just after its last frame is written, in the server's thread:
            # the client may read the frame before that.
            played = a.replay.runner.get(run["run_id"])
            await until(lambda: played.state.value == "finished", "a's run never finished")


async def test_a_routes_state_change_on_one_node_is_read_on_every_node(folder: Path) -> None:
    write_protocol(folder, SCHWARM_PROTOCOL)
    with cluster([folder, folder, folder], "memory://state") as nodes:
        a, b, c = nodes
        for live in nodes:  # each node reads the folder: the declared state
            assert await asyncio.to_thread(request, live, "GET", "/break") == (200, True)
        assert await asyncio.to_thread(request, a, "POST", "/break") == (200, False)
        for live in (b, c):
            await until(lambda live=live: request(live, "GET", "/break") == (200, False), "break")
        status, state = await asyncio.to_thread(request, c, "PUT", "/state", {"turns": 7})
        assert (status, state["turns"]) == (200, 7)
        for live in (a, b):
            await until(
                lambda live=live: request(live, "GET", "/state")[1].get("turns") == 7, "turns"
            )
        # A change heard from another node is applied once, not shared again.
        assert a.replay.state.version == b.replay.state.version
