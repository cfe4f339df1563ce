"""The backplane's backends (memory://, and redis:// against a real redis-server) and the
start command's encoding."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from replay.backplane import Backplane, StartCommand, open_backplane
from replay.backplane.command import SourceFile, bytes_of, decode, text_of
from replay.backplane.heard import HeardFrame, HeardState, decode_message
from replay.backplane.node import PARSE_RATE, START_DELAY, Node, played, start_delay
from replay.backplane.redis_pubsub import RedisBackplane
from replay.clock import MonotonicClock
from replay.errors import BackplaneInvalid, BackplaneUnreachable
from replay.matching import ClientFrame
from replay.runner import Runner
from tests.redis_server import RedisServer, redis_server  # noqa: F401 (a fixture)
from tests.test_runner import FakeDelivery

#: Seconds a test waits for something that should happen at once.
DEADLINE = 15.0


def command(run_id: str = "r1", scenario: str = "chat") -> StartCommand:
    source = SourceFile("scenarios/chat.yaml", text_of(b"name: chat\nsteps: []\n\xff"))
    return StartCommand(
        run_id=run_id,
        scenario=scenario,
        files={scenario: source},
        protocol=None,
        vars={"user": "Ada"},
        seed=7,
        speed=2.0,
        client="c-1",
        started_by="trigger",
        start_at=1234.5,
        origin="node-a",
    )


def test_a_command_survives_its_encoding_byte_for_byte() -> None:
    sent = command()
    heard = decode(sent.encode())
    assert heard == sent
    assert bytes_of(heard.files["chat"].text) == b"name: chat\nsteps: []\n\xff"


@pytest.mark.parametrize(
    "message", [b"", b"[]", b'{"run_id": 1}', b"\xff", command(scenario="x").encode()[:-5]]
)
def test_anything_else_is_not_a_command(message: bytes) -> None:
    with pytest.raises(ValueError, match="not a start command"):
        decode(message)


def test_a_command_must_carry_its_scenario() -> None:
    data = command().encode().replace(b'"scenario":"chat"', b'"scenario":"other"')
    with pytest.raises(ValueError, match="no source for 'other'"):
        decode(data)


@pytest.mark.parametrize("url", ["nats://x", "redis", "http://localhost:6379"])
def test_an_unknown_url_is_refused_saying_what_works(url: str) -> None:
    with pytest.raises(BackplaneInvalid, match="expected memory://NAME or redis://"):
        open_backplane(url)


class Listener:
    """A backplane's subscription, collecting what it hears."""

    def __init__(self, backplane: Backplane) -> None:
        self.backplane = backplane
        self.heard: list[StartCommand] = []
        self.task = asyncio.create_task(backplane.listen(self.heard.append))

    async def until(self, condition: object, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():  # type: ignore[operator]
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.01)

    async def subscribed(self) -> None:
        await self.until(lambda: self.backplane.subscribed, "never subscribed")

    async def close(self) -> None:
        self.task.cancel()
        await self.backplane.close()


@pytest.fixture
async def listeners() -> AsyncIterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for listener in made:
        await listener.close()


async def test_memory_nodes_with_one_name_hear_each_other_and_no_one_else(
    listeners: list[Listener],
) -> None:
    a, b, other = (
        Listener(open_backplane(url)) for url in ("memory://t1", "memory://t1", "memory://t2")
    )
    listeners += [a, b, other]
    await a.subscribed()
    await b.subscribed()
    await a.backplane.publish_start(command("one"))
    await a.until(lambda: len(a.heard) == 1 and len(b.heard) == 1, "not heard by both")
    assert a.heard[0] == b.heard[0] == command("one")
    assert other.heard == []


async def test_redis_carries_a_command_to_every_subscriber(
    redis_server: RedisServer,  # noqa: F811
    listeners: list[Listener],
) -> None:
    a = Listener(open_backplane(redis_server.url))
    b = Listener(open_backplane(redis_server.url))
    elsewhere = Listener(open_backplane(redis_server.url + "?cluster=other"))
    listeners += [a, b, elsewhere]
    for listener in listeners:
        await listener.subscribed()
    for n in range(3):
        await a.backplane.publish_start(command(f"run-{n}"))
    expected = [f"run-{n}" for n in range(3)]
    await a.until(lambda: len(a.heard) == 3 and len(b.heard) == 3, "not all heard")
    assert [c.run_id for c in a.heard] == [c.run_id for c in b.heard] == expected
    assert elsewhere.heard == []


async def test_redis_down_refuses_fast_and_comes_back(
    redis_server: RedisServer,  # noqa: F811
    listeners: list[Listener],
) -> None:
    node = Listener(open_backplane(redis_server.url))
    listeners.append(node)
    await node.subscribed()
    redis_server.stop()
    await node.until(lambda: not node.backplane.subscribed, "still subscribed to nothing")
    with pytest.raises(BackplaneUnreachable, match=r"the backplane redis://127\.0\.0\.1:\d+/0 is"):
        await node.backplane.publish_start(command("lost"))
    redis_server.start()
    await node.subscribed()
    await node.backplane.publish_start(command("back"))
    await node.until(lambda: [c.run_id for c in node.heard] == ["back"], "not heard after")


async def test_a_publish_to_a_redis_that_never_answered_fails_with_the_reason(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    url = redis_server.url
    redis_server.stop()
    backplane = open_backplane(url)
    task = asyncio.create_task(backplane.listen(lambda _: None))
    try:
        with pytest.raises(BackplaneUnreachable, match="triggers come back when it does"):
            await backplane.publish_start(command())
        assert not backplane.subscribed
    finally:
        task.cancel()
        await backplane.close()


def test_a_password_in_the_url_is_not_shown() -> None:
    backplane = open_backplane("redis://user:secret@127.0.0.1:1/0")
    assert "secret" not in backplane.url
    assert backplane.url == "redis://127.0.0.1:1/0"


async def test_a_redis_that_never_answers_fails_the_publish_and_never_subscribes() -> None:
    # A listening socket nobody reads: connections open, commands go unanswered.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    backplane = open_backplane(url)
    assert isinstance(backplane, RedisBackplane)
    task = asyncio.create_task(backplane.listen(lambda _: None))
    try:
        backplane._subscribed = True  # as if it had been: the publish itself must give up
        with pytest.raises(BackplaneUnreachable, match=r"is unreachable: .*; triggers come"):
            await asyncio.wait_for(backplane.publish_start(command()), DEADLINE)
        backplane._subscribed = False
        # The subscription is refused for the same reason (not confirmed), and retried.
        deadline = time.monotonic() + DEADLINE
        while not backplane._failing:
            assert time.monotonic() < deadline, "the subscription never gave up"
            await asyncio.sleep(0.01)
        assert "no confirmation" in backplane._failing or "no answer" in backplane._failing
        assert not backplane.subscribed
    finally:
        task.cancel()
        await backplane.close()
        silent.close()


# --- a node ---------------------------------------------------------------------------------

HELLO = "vars:\n  user: Ada\nsteps:\n  - message: EVENT\n    text: 'hi {{ vars.user }}'\n"


def hello(run_id: str, start_at: float, **changes: object) -> StartCommand:
    base = replace(command(run_id, "hello"), files={"hello": SourceFile("x/hello.yaml", HELLO)})
    fields: dict[str, object] = {"speed": 0.0, "client": None, "vars": {}, "start_at": start_at}
    return replace(base, **{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Node, FakeDelivery]]:
    delivery = FakeDelivery(MonotonicClock())
    made = Node(open_backplane(f"memory://{tmp_path}"), Runner(delivery), tmp_path)
    await made.join()
    yield made, delivery
    await made.close()
    await made.runner.shutdown()


async def test_a_node_plays_another_nodes_command_from_its_sources_under_its_run_id(
    node: tuple[Node, FakeDelivery],
) -> None:
    played, delivery = node
    await played.backplane.publish_start(hello("abc", time.time(), vars={"user": "Bo"}))
    deadline = time.monotonic() + DEADLINE
    while not delivery.frames:
        assert time.monotonic() < deadline, "the command was not played"
        await asyncio.sleep(0.01)
    run = played.runner.get("abc")
    assert (run.scenario, run.seed, dict(run.vars)) == ("hello", 7, {"user": "Bo"})
    assert json.loads(delivery.frames[0]) == {"message_type": "EVENT", "message": "hi Bo"}


async def test_a_node_does_not_play_a_command_heard_long_after_its_start_nor_a_bad_one(
    node: tuple[Node, FakeDelivery], caplog: pytest.LogCaptureFixture
) -> None:
    played, _ = node
    await played._play(hello("late", time.time() - 60))
    await played._play(hello("bad", time.time(), vars={"nobody": 1}))
    assert played.runner.runs() == []
    assert "run late: heard 60." in caplog.text
    assert "run bad: not played on this node" in caplog.text


# --- client frames shared across nodes ------------------------------------------------------


def test_a_shared_frame_survives_its_encoding_and_is_told_from_a_command() -> None:
    frame = ClientFrame("c-9", '{"message_type": "CHAT_INPUT", "message": "yes \\u00e9"}')
    shared = HeardFrame.of(frame, "node-b", 3)
    heard = decode_message(shared.encode())
    assert heard == shared
    assert isinstance(heard, HeardFrame)
    assert heard.frame().message_type == "CHAT_INPUT"
    assert (heard.frame().client, heard.frame().payload) == ("c-9", "yes \u00e9")
    assert decode_message(command().encode()) == command()


def test_a_reaction_command_carries_its_sender_and_frame() -> None:
    received = {"client": "c-2", "text": "{}", "endpoint": "/ws", "type_field": "message_type"}
    received |= {"payload_field": "message", "kind": None}
    sent = replace(command(), started_by="reaction", sender="c-2", received=received)
    assert decode(sent.encode()) == sent
    assert decode(command().encode()).sender is None  # a trigger's has none


def test_a_request_to_a_route_and_a_state_change_survive_their_encoding() -> None:
    request = ClientFrame("ui", '{"query": {}}', endpoint="http", kind="POST /chat")
    shared = HeardFrame.of(request, "node-b", 4)
    heard = decode_message(shared.encode())
    assert heard == shared
    assert isinstance(heard, HeardFrame)
    assert (heard.frame().message_type, heard.frame().endpoint) == ("POST /chat", "http")
    change = HeardState("node-b", 5, {"paused": False, "rooms": [1, 2]}, "route POST /break")
    assert decode_message(change.encode()) == change


@pytest.mark.parametrize(
    "message",
    [b'{"kind": "state", "origin": "a", "seq": 1, "by": "x"}', b'{"kind": "state", "changes": 1}'],
)
def test_a_broken_state_change_is_refused(message: bytes) -> None:
    with pytest.raises(ValueError, match="not a shared state change"):
        decode_message(message)


@pytest.mark.parametrize(
    "message", [b'{"kind": "frame"}', b'{"kind": "frame", "origin": "a", "seq": "x"}']
)
def test_a_broken_shared_frame_is_refused(message: bytes) -> None:
    with pytest.raises(ValueError, match="not a shared frame"):
        decode_message(message)


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
"""


def chat_input(client: str, text: str) -> ClientFrame:
    return ClientFrame(client, json.dumps({"message_type": "CHAT_INPUT", "message": text}))


class Member:
    """A node of a test cluster with a runner that records what it sends."""

    def __init__(self, url: str, folder: Path) -> None:
        self.delivery = FakeDelivery(MonotonicClock())
        self.node = Node(open_backplane(url), Runner(self.delivery), folder)

    def said(self) -> list[str]:
        return [json.loads(frame)["message"] for frame in self.delivery.frames]


@pytest.fixture
async def members(tmp_path: Path) -> AsyncIterator[list[Member]]:
    made: list[Member] = []
    yield made
    for member in made:
        await member.node.close()
        await member.node.runner.shutdown()


async def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


async def test_a_wait_on_every_node_takes_the_frame_a_client_of_another_node_sent(
    redis_server: RedisServer,  # noqa: F811
    members: list[Member],
    tmp_path: Path,
) -> None:
    members += [Member(redis_server.url, tmp_path) for _ in range(3)]
    for member in members:
        await member.node.join()
    a, b, _ = members
    asking = hello("ask", time.time(), files={"hello": SourceFile("x/hello.yaml", ASK)})
    await a.node.backplane.publish_start(asking)
    await until(lambda: all(m.said() == ["Shall I deploy?"] for m in members), "not asked")
    # The client answering is on b: b's runs hear it first, then shares it.
    frame = chat_input("c-b", "no thanks")
    assert b.node.runner.keep(frame) == ["ask"]
    b.node.share(frame)
    expected = ["Shall I deploy?", "not deploying: no thanks"]
    await until(lambda: all(m.said() == expected for m in members), "not every node took it")
    for member in members:
        run = member.node.runner.get("ask")
        await until(lambda run=run: run.done, "the run never ended")
        assert run.mailbox.summary()["taken"] == 1  # b's own echo was not taken again
    assert b.node.unshared == 0


async def test_frames_of_a_client_on_another_node_come_in_its_order_once_each(
    redis_server: RedisServer,  # noqa: F811
    members: list[Member],
    tmp_path: Path,
) -> None:
    members += [Member(redis_server.url, tmp_path) for _ in range(2)]
    for member in members:
        await member.node.join()
    a, b = members
    heard: list[str] = []
    a.node.runner.keep = lambda frame: heard.append(frame.payload) or []  # type: ignore[method-assign]
    for n in range(50):
        b.node.share(chat_input("c-b", f"answer {n}"))
    await until(lambda: len(heard) == 50, "not all heard")
    # Heard again (a Redis that delivered twice): given to the runs once.
    a.node._hear_frame(HeardFrame.of(chat_input("c-b", "answer 49"), b.node.id, 50))
    assert heard == [f"answer {n}" for n in range(50)]


async def test_with_redis_down_local_runs_hear_their_clients_and_sharing_fails_once(
    redis_server: RedisServer,  # noqa: F811
    members: list[Member],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    member = Member(redis_server.url, tmp_path)
    members.append(member)
    await member.node.join()
    redis_server.stop()
    await until(lambda: not member.node.backplane.subscribed, "still subscribed to nothing")
    asking = hello("ask", time.time(), files={"hello": SourceFile("x/hello.yaml", ASK)})
    await member.node._play(asking)  # as if heard before Redis went down
    await until(lambda: member.said() == ["Shall I deploy?"], "not asked")
    frame = chat_input("c-a", "yes")
    assert member.node.runner.keep(frame) == ["ask"]
    member.node.share(frame)
    member.node.share(chat_input("c-a", "again"))
    await until(lambda: member.said()[1:] == ["deploying"], "the local run did not go on")
    await until(lambda: member.node.unshared == 2, "the frames were not given up")
    assert caplog.text.count("client frames are not shared with the other nodes") == 1


async def test_an_answer_heard_before_a_run_starts_on_this_node_is_kept_for_it(
    node: tuple[Node, FakeDelivery],
) -> None:
    played, delivery = node
    later = time.time() + 0.3  # as a node whose start came a little after the answer's
    asking = hello("ask", later, files={"hello": SourceFile("x/hello.yaml", ASK)})
    await played.backplane.publish_start(asking)
    await until(lambda: "ask" in played._starting, "the command was not heard")
    played._hear_frame(HeardFrame.of(chat_input("c-b", "yes"), "node-b", 1))
    await until(lambda: len(delivery.frames) == 2, "the run did not take the answer")
    assert [json.loads(f)["message"] for f in delivery.frames] == ["Shall I deploy?", "deploying"]
    assert played._starting == {}


REACT = """\
reacts_to:
  message: PAUSE_REQUEST
steps:
  - message: EVENT
    text: "paused for {{ sender }}: {{ received.message }}"
    to: sender
"""


async def test_a_reaction_starts_once_and_every_node_plays_it_with_its_sender(
    members: list[Member], tmp_path: Path
) -> None:
    (tmp_path / "react.yaml").write_text(REACT)
    members += [Member(f"memory://{tmp_path}", tmp_path) for _ in range(2)]
    for member in members:
        await member.node.join()
    b = members[1]
    catalog = played({"react": SourceFile(str(tmp_path / "react.yaml"), REACT)}, None)
    asked = ClientFrame("c-b", json.dumps({"message_type": "PAUSE_REQUEST", "message": "now"}))
    run = await b.node.react("react", catalog, asked)
    assert (run.started_by, run.sender) == ("reaction", "c-b")
    for member in members:
        await until(lambda m=member: len(m.delivery.sent) == 1, "not played on every node")
        assert member.delivery.targets == ["c-b"]  # delivered by whoever holds c-b
        assert member.said() == ["paused for c-b: now"]
        assert [r.id for r in member.node.runner.runs()] == [run.id]


def test_a_large_scenario_starts_later_so_that_every_node_has_parsed_it() -> None:
    small = {"chat": SourceFile("chat.yaml", "steps: []\n")}
    large = {"long": SourceFile("long.yaml", "x" * 3_000_000)}
    assert start_delay(small, None) == pytest.approx(START_DELAY, abs=0.001)
    assert start_delay(large, None) == pytest.approx(START_DELAY + 3_000_000 / PARSE_RATE)
    protocol = SourceFile("_protocol.yaml", "y" * 500_000)
    assert start_delay(small, protocol) > START_DELAY + 0.4
