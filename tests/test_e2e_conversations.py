"""End to end, the scenario language as a conversation: real uvicorn on port 0, real
``websockets`` clients that answer, react, get targeted, dropped and reconnect.

Every wait is bounded (``asyncio.wait_for``); nothing asserts speed. "A client got
nothing else" is checked with a marker: a scenario played to everyone afterwards must be
the next frame each client receives.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from replay.clock import Clock
from replay.server import Settings
from tests.conftest import SHIPPED, HoldingClock, LiveServer, hold_at_drops, start_live_server

TIMEOUT = 5.0  # seconds any single expected thing may take; generous on purpose

#: Played to every client after a test's own run: the next frame every client receives
#: must be this one, which proves it received nothing else in between.
MARK = '{"message_type":"EVENT","message":"mark"}'
MARK_FILE = """
steps:
  - message: EVENT
    text: mark
"""

Serve = Callable[..., LiveServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a live server on a fresh scenarios folder holding ``files`` (name -> YAML)
    plus ``mark.yaml``, with ``clock`` if given; ``options`` go to Settings. Stopped after
    the test."""
    stops: list[Any] = []

    def start(files: dict[str, str], clock: Clock | None = None, **options: Any) -> LiveServer:
        folder = tmp_path / "scenarios"
        folder.mkdir()
        for name, text in {"mark.yaml": MARK_FILE, **files}.items():
            (folder / name).write_text(textwrap.dedent(text))
        live, server, thread = start_live_server(
            Settings(scenarios=folder, isolated=True, **options), clock=clock
        )
        stops.append((server, thread))
        return live

    yield start
    for server, thread in stops:
        server.should_exit = True
        thread.join(timeout=10)


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    return await asyncio.to_thread(_http, method, url, body)


async def trigger(
    live: LiveServer, name: str, body: Any = None, **query: Any
) -> tuple[int, dict[str, Any]]:
    """POST /trigger/name?query with an optional JSON body; (status, answer)."""
    params = urllib.parse.urlencode(
        {
            key: str(value).lower() if isinstance(value, bool) else value
            for key, value in query.items()
        }
    )
    url = f"{live.url}/trigger/{name}" + (f"?{params}" if params else "")
    return await asyncio.wait_for(http("POST", url, body), TIMEOUT * 2)


async def clients(live: LiveServer) -> list[dict[str, Any]]:
    status, body = await http("GET", f"{live.url}/clients")
    assert status == 200, body
    return body["clients"]  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Any], what: str) -> Any:
    """Await ``check()`` (an async callable) until it returns something truthy."""
    for _ in range(int(TIMEOUT / 0.02)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"never happened within {TIMEOUT}s: {what}")


async def registered(live: LiveServer, *wanted: tuple[str, str]) -> None:
    """Wait until the server lists every (endpoint, client_id) in ``wanted``."""

    async def check() -> bool:
        have = {(c["endpoint"], c["client_id"]) for c in await clients(live)}
        return set(wanted) <= have

    await eventually(check, f"clients {wanted} connected")


async def connected_count(live: LiveServer, count: int) -> None:
    async def check() -> bool:
        return len(await clients(live)) >= count

    await eventually(check, f"{count} clients connected")


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def recv_json(ws: ClientConnection) -> Any:
    frame = await recv(ws)
    assert isinstance(frame, str), frame
    return json.loads(frame)


async def closed(ws: ClientConnection) -> ConnectionClosed:
    """Read until the connection ends; the ConnectionClosed it ended with."""
    try:
        while True:
            await recv(ws)
    except ConnectionClosed as ended:
        return ended


async def nothing_else(live: LiveServer, *sockets: ClientConnection) -> None:
    """Play the marker to everyone: it must be each client's next frame."""
    status, answer = await trigger(live, "mark", speed=0)
    assert status == 200, answer
    for ws in sockets:
        assert await recv(ws) == MARK


async def wait_until_waiting(live: LiveServer, run_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status, run = await http("GET", f"{live.url}/runs/{run_id}")
        assert status == 200, run
        assert run["state"] == "running", run
        return run if run["waiting"] else None

    return await eventually(check, f"run {run_id} waiting for a client")  # type: ignore[no-any-return]


async def run_ended(live: LiveServer, run_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        _, run = await http("GET", f"{live.url}/runs/{run_id}")
        return run if run["state"] != "running" else None

    return await eventually(check, f"run {run_id} ended")  # type: ignore[no-any-return]


# 1. A chat round trip ---------------------------------------------------------------

CHAT = """
description: Ask, wait for the answer, echo it, stream a reply.
steps:
  - message: CHAT_REQUESTED
    text: What should I do next?
  - wait: CHAT_INPUT
    timeout: 5s
  - message: CHAT
    text: "You said: {{ received.message }}"
  - stream: "Sure, {{ received.message }}: I will write the tests first, then the code."
    rate: 500
    close_stream: true
"""
ANSWER = "Sure, hello: I will write the tests first, then the code."


async def test_chat_round_trip(serve: Serve) -> None:
    live = serve({"chat.yaml": CHAT})
    async with (
        connect(f"{live.ws_url}/ws?client_id=ui") as ws,
        connect(f"{live.ws_url}/ws/stream?client_id=ui") as stream,
    ):
        await registered(live, ("/ws", "ui"), ("/ws/stream", "ui"))
        run = asyncio.create_task(trigger(live, "chat", wait=True))

        assert await recv_json(ws) == {
            "message_type": "CHAT_REQUESTED",
            "message": "What should I do next?",
        }
        await ws.send(json.dumps({"message_type": "CHAT_INPUT", "message": "hello"}))
        assert await recv_json(ws) == {"message_type": "CHAT", "message": "You said: hello"}

        tokens: list[str] = []
        while True:
            frame = await recv_json(stream)
            if frame["type"] == "close":
                assert frame == {"type": "close", "content": None}
                break
            assert frame["type"] == "default"
            tokens.append(frame["content"])
        assert "".join(tokens) == ANSWER
        assert len(tokens) > 1  # streamed as tokens, not one chunk

        status, answer = await asyncio.wait_for(run, TIMEOUT)
        assert status == 200, answer
        assert answer["status"] == "success"
        assert answer["state"] == "finished"
        assert answer["sent"] == 2 + len(tokens) + 1
        assert answer["waiting"] is None


async def test_the_shipped_chat_completes_for_a_client_that_answers_at_once(
    serve: Serve,
) -> None:
    # Issue 11: an answer sent within a millisecond of CHAT_REQUESTED arrives before the
    # run reaches its wait (chat pauses 0.3 s first); the run's mailbox keeps it.
    live = serve({"chat.yaml": (SHIPPED / "chat.yaml").read_text()})
    async with (
        connect(f"{live.ws_url}/ws?client_id=fast") as ws,
        connect(f"{live.ws_url}/ws/stream?client_id=fast") as stream,
    ):
        await registered(live, ("/ws", "fast"), ("/ws/stream", "fast"))
        for attempt in range(100):
            # speed 50: a 6 ms pause before the wait, still longer than the answer takes
            run = asyncio.create_task(trigger(live, "chat", client="fast", speed=50))
            asked = await recv_json(ws)
            await ws.send(json.dumps({"message_type": "CHAT_INPUT", "message": f"go {attempt}"}))
            assert asked["message_type"] == "CHAT_REQUESTED"
            assert (await recv_json(ws))["message_type"] == "IS_WAITING"
            event = await recv_json(ws)
            assert json.loads(event["message"])["attributes"] == {"input": f"go {attempt}"}
            text = []
            while (chunk := await recv_json(stream))["type"] != "close":
                text.append(chunk["content"])
            assert "".join(text).startswith(f'You asked: "go {attempt}".')
            status, answer = await asyncio.wait_for(run, TIMEOUT)
            assert (status, answer["state"]) == (200, "finished"), answer
            assert answer["mailbox"]["taken"] == 1


async def test_a_targeted_run_takes_answers_from_its_target_only(serve: Serve) -> None:
    live = serve({"chat.yaml": CHAT})
    async with (
        connect(f"{live.ws_url}/ws?client_id=a") as a,
        connect(f"{live.ws_url}/ws?client_id=b") as b,
        connect(f"{live.ws_url}/ws/stream?client_id=a") as stream,
    ):
        await registered(live, ("/ws", "a"), ("/ws", "b"), ("/ws/stream", "a"))
        status, started = await trigger(live, "chat", wait=False, client="a")
        assert status == 202, started
        assert (await recv_json(a))["message_type"] == "CHAT_REQUESTED"
        run = await wait_until_waiting(live, started["run_id"])
        assert run["waiting"] == "CHAT_INPUT from client a"

        await b.send(json.dumps({"message_type": "CHAT_INPUT", "message": "from b"}))
        await a.send(json.dumps({"message_type": "CHAT_INPUT", "message": "from a"}))
        assert await recv_json(a) == {"message_type": "CHAT", "message": "You said: from a"}
        ended = await run_ended(live, started["run_id"])
        assert ended["state"] == "finished"
        frames = [await recv_json(stream) for _ in range(ended["sent"] - 2)]
        assert frames[-1] == {"type": "close", "content": None}
        await nothing_else(live, a, b)


# 2. A wait that times out -------------------------------------------------------------

TIMES_OUT = """
steps:
  - message: CHAT_REQUESTED
    text: anyone?
  - wait: CHAT_INPUT
    timeout: 300ms
    on_timeout: {on_timeout}
  - message: EVENT
    text: went on
"""


async def test_a_wait_that_times_out_fails_the_run(serve: Serve) -> None:
    live = serve({"ask.yaml": TIMES_OUT.format(on_timeout="fail")})
    async with connect(f"{live.ws_url}/ws") as ws:
        await connected_count(live, 1)
        status, answer = await trigger(live, "ask")
        assert status == 500, answer
        assert answer["status"] == "failed"
        assert answer["state"] == "failed"
        assert "CHAT_INPUT" in answer["error"]
        assert answer["sent"] == 1
        assert json.loads(await recv(ws))["message"] == "anyone?"
        await nothing_else(live, ws)  # "went on" was never sent


async def test_a_wait_that_times_out_may_continue(serve: Serve) -> None:
    live = serve({"ask.yaml": TIMES_OUT.format(on_timeout="continue")})
    async with connect(f"{live.ws_url}/ws") as ws:
        await connected_count(live, 1)
        status, answer = await trigger(live, "ask")
        assert status == 200, answer
        assert answer["state"] == "finished"
        assert answer["error"] is None
        assert [json.loads(await recv(ws))["message"] for _ in range(2)] == ["anyone?", "went on"]


# 3. Targeting ---------------------------------------------------------------------------

TARGETED = """
steps:
  - message: EVENT
    text: for the target
  - message: EVENT
    text: for everyone
    to: all
  - message: EVENT
    text: for the target again
"""
FOR_B = """
to: b
steps:
  - message: EVENT
    text: only b
"""


async def test_targeting_by_trigger_step_and_scenario(serve: Serve) -> None:
    live = serve({"x.yaml": TARGETED, "for-b.yaml": FOR_B})
    async with (
        connect(f"{live.ws_url}/ws?client_id=a") as a,
        connect(f"{live.ws_url}/ws?client_id=b") as b,
    ):
        await registered(live, ("/ws", "a"), ("/ws", "b"))

        status, answer = await trigger(live, "x", client="a", speed=0)
        assert status == 200, answer
        assert answer["client"] == "a"
        texts = [json.loads(await recv(a))["message"] for _ in range(3)]
        assert texts == ["for the target", "for everyone", "for the target again"]
        assert json.loads(await recv(b))["message"] == "for everyone"
        await nothing_else(live, a, b)

        status, answer = await trigger(live, "for-b", speed=0)
        assert status == 200, answer
        assert json.loads(await recv(b))["message"] == "only b"
        await nothing_else(live, a, b)


# 4. GET /clients ------------------------------------------------------------------------

ONE_EACH = """
steps:
  - message: EVENT
    text: to /ws
  - chunk: to /ws/stream
"""


async def test_clients_lists_connections_and_counts_frames_both_ways(serve: Serve) -> None:
    live = serve({"one-each.yaml": ONE_EACH})
    async with (
        connect(f"{live.ws_url}/ws?client_id=a") as a,
        connect(f"{live.ws_url}/ws/stream?client_id=b") as b,
    ):
        await registered(live, ("/ws", "a"), ("/ws/stream", "b"))
        listed = {c["client_id"]: c for c in await clients(live)}
        assert set(listed) == {"a", "b"}
        assert listed["a"]["endpoint"] == "/ws"
        assert listed["b"]["endpoint"] == "/ws/stream"
        for entry in listed.values():
            assert entry["connected_since"].endswith("Z")
            assert "T" in entry["connected_since"]
            assert (entry["sent"], entry["received"]) == (0, 0)

        await a.send('{"message_type":"CHAT_INPUT","message":"one"}')
        await a.send("not even json")
        status, _ = await trigger(live, "one-each", speed=0)
        assert status == 200
        assert json.loads(await recv(a))["message"] == "to /ws"
        assert json.loads(await recv(b))["content"] == "to /ws/stream"

        async def counted() -> bool:
            now = {c["client_id"]: c for c in await clients(live)}
            return (now["a"]["sent"], now["a"]["received"], now["b"]["sent"]) == (1, 2, 1)

        await eventually(counted, "sent/received counts updated")
        final = {c["client_id"]: c for c in await clients(live)}
        assert final["b"]["received"] == 0
        assert final["a"]["connected_since"] == listed["a"]["connected_since"]


# 5. Reactions ---------------------------------------------------------------------------

REACTION = """
reacts_to:
  message: PAUSE_REQUEST
steps:
  - message: PAUSE_STATUS
    text: "paused for {{ sender }}"
    to: sender
"""
HOLD = """
steps:
  - wait: PAUSE_REQUEST
    timeout: 5s
  - message: EVENT
    text: "the wait took it from {{ sender }}"
    to: sender
"""


async def test_a_reaction_answers_the_sender_only(serve: Serve) -> None:
    live = serve({"react.yaml": REACTION})
    async with (
        connect(f"{live.ws_url}/ws?client_id=a") as a,
        connect(f"{live.ws_url}/ws?client_id=b") as b,
    ):
        await registered(live, ("/ws", "a"), ("/ws", "b"))
        await a.send('{"message_type":"PAUSE_REQUEST","message":"pause please"}')
        assert await recv_json(a) == {"message_type": "PAUSE_STATUS", "message": "paused for a"}
        await nothing_else(live, a, b)

        _, body = await http("GET", f"{live.url}/runs")
        reactions = [r for r in body["runs"] if r["started_by"] == "reaction"]
        assert [(r["scenario"], r["sender"]) for r in reactions] == [("react", "a")]


async def test_a_frame_taken_by_a_wait_starts_no_reaction(serve: Serve) -> None:
    live = serve({"react.yaml": REACTION, "hold.yaml": HOLD})
    async with (
        connect(f"{live.ws_url}/ws?client_id=a") as a,
        connect(f"{live.ws_url}/ws?client_id=b") as b,
    ):
        await registered(live, ("/ws", "a"), ("/ws", "b"))
        status, started = await trigger(live, "hold", wait=False)
        assert status == 202, started
        run = await wait_until_waiting(live, started["run_id"])
        assert "PAUSE_REQUEST" in run["waiting"]

        await a.send('{"message_type":"PAUSE_REQUEST","message":"pause please"}')
        assert await recv_json(a) == {"message_type": "EVENT", "message": "the wait took it from a"}
        assert (await run_ended(live, started["run_id"]))["state"] == "finished"
        await nothing_else(live, a, b)  # no PAUSE_STATUS for a, nothing for b

        _, body = await http("GET", f"{live.url}/runs")
        assert [r for r in body["runs"] if r["started_by"] == "reaction"] == []


# 6. On connect --------------------------------------------------------------------------

HELLO = """
steps:
  - message: EVENT
    text: "hello {{ sender }}"
"""
GREET = """
on_connect: true
steps:
  - message: EVENT
    text: "greetings {{ sender }}"
"""


async def test_on_connect_greets_each_new_client_once(serve: Serve) -> None:
    live = serve({"hello.yaml": HELLO, "greet.yaml": GREET}, on_connect=["hello"])
    async with connect(f"{live.ws_url}/ws?client_id=first") as first:
        got = {json.loads(await recv(first))["message"] for _ in range(2)}
        assert got == {"hello first", "greetings first"}
        await registered(live, ("/ws", "first"))

        async with connect(f"{live.ws_url}/ws?client_id=second") as second:
            got = {json.loads(await recv(second))["message"] for _ in range(2)}
            assert got == {"hello second", "greetings second"}
            # A /ws/stream connection is not greeted (and greets no one).
            async with connect(f"{live.ws_url}/ws/stream?client_id=third") as third:
                await registered(live, ("/ws/stream", "third"))
                await nothing_else(live, first, second)
                await asyncio.wait_for(third.ping(), TIMEOUT)

        _, body = await http("GET", f"{live.url}/runs")
        greetings = sorted(
            (r["scenario"], r["sender"]) for r in body["runs"] if r["started_by"] == "connect"
        )
        assert greetings == [
            ("greet", "first"),
            ("greet", "second"),
            ("hello", "first"),
            ("hello", "second"),
        ]


async def test_a_scenario_both_flagged_and_configured_greets_once(serve: Serve) -> None:
    live = serve({"greet.yaml": GREET}, on_connect=["greet"])
    async with connect(f"{live.ws_url}/ws?client_id=solo") as ws:
        assert json.loads(await recv(ws))["message"] == "greetings solo"
        await registered(live, ("/ws", "solo"))
        await nothing_else(live, ws)


# 7. Faults ------------------------------------------------------------------------------

GARBAGE = """
steps:
  - raw: "not json {"
  - binary: AAEC/w==
  - raw: "{{ 'raw' }} on the stream"
    endpoint: /ws/stream
"""
HANGS_UP = """
steps:
  - message: EVENT
    text: one
  - message: EVENT
    text: two
  - disconnect: /ws
    code: 4001
    reason: the scenario says goodbye
  - sleep: 100ms
  - chunk: the stream lives on
"""
CRASH = """
steps:
  - message: EVENT
    text: before the crash
  - drop: all
  - sleep: 1s
  - message: ERROR
    text: back after the crash
"""


async def test_raw_and_binary_frames_arrive_exactly(serve: Serve) -> None:
    live = serve({"garbage.yaml": GARBAGE})
    async with connect(f"{live.ws_url}/ws") as ws, connect(f"{live.ws_url}/ws/stream") as stream:
        await connected_count(live, 2)
        status, answer = await trigger(live, "garbage", speed=0)
        assert status == 200, answer
        assert await recv(ws) == "not json {"
        assert await recv(ws) == b"\x00\x01\x02\xff"
        assert await recv(stream) == "raw on the stream"


async def test_disconnect_closes_with_the_code_and_reason_after_earlier_frames(
    serve: Serve,
) -> None:
    live = serve({"bye.yaml": HANGS_UP})
    async with connect(f"{live.ws_url}/ws") as ws, connect(f"{live.ws_url}/ws/stream") as stream:
        await connected_count(live, 2)
        status, answer = await trigger(live, "bye", speed=0)
        assert status == 200, answer
        assert [json.loads(await recv(ws))["message"] for _ in range(2)] == ["one", "two"]
        ended = await closed(ws)
        assert ended.rcvd is not None
        assert (ended.rcvd.code, ended.rcvd.reason) == (4001, "the scenario says goodbye")
        # Only /ws was closed.
        assert json.loads(await recv(stream))["content"] == "the stream lives on"


async def test_drop_cuts_the_connection_and_a_reconnecting_client_gets_what_follows(
    serve: Serve,
) -> None:
    # The run is down for 1 s after the drop; the clock holds it there until the client is
    # back, which may take longer on a busy machine.
    clock = HoldingClock()
    live = serve({"crash.yaml": CRASH}, clock=clock)
    hold_at_drops(live, clock)
    async with (
        connect(f"{live.ws_url}/ws?client_id=ui") as ws,
        connect(f"{live.ws_url}/ws/stream?client_id=ui") as stream,
    ):
        await registered(live, ("/ws", "ui"), ("/ws/stream", "ui"))
        status, started = await trigger(live, "crash", wait=False)
        assert status == 202, started
        assert json.loads(await recv(ws))["message"] == "before the crash"
        for cut in (await closed(ws), await closed(stream)):
            assert cut.rcvd is None  # no close frame: the TCP connection was cut (1006)

    async with connect(f"{live.ws_url}/ws?client_id=ui") as again:
        await registered(live, ("/ws", "ui"))
        clock.release()
        assert await recv_json(again) == {
            "message_type": "ERROR",
            "message": "back after the crash",
        }
    run = await run_ended(live, started["run_id"])
    assert run["state"] == "finished"
    assert run["sent"] == 2


RECONNECT = """
description: Cut the connection, then greet the client when it comes back.
steps:
  - message: EVENT
    text: before the crash
  - drop: all
  - wait_connect: sender
    endpoint: /ws
    new: true
    timeout: 10s
  - message: ERROR
    text: "back after the crash, {{ sender }}"
    to: sender
"""


async def test_wait_connect_goes_on_when_the_sender_reconnects(serve: Serve) -> None:
    # No clock to hold: the run waits for the reconnection itself, however long it takes.
    live = serve({"reconnect.yaml": RECONNECT})
    async with connect(f"{live.ws_url}/ws?client_id=ui") as ws:
        await registered(live, ("/ws", "ui"))
        status, started = await trigger(live, "reconnect", client="ui", wait=False)
        assert status == 202, started
        assert await recv_json(ws) == {"message_type": "EVENT", "message": "before the crash"}
        assert (await closed(ws)).rcvd is None  # cut, no close frame
    run = await wait_until_waiting(live, started["run_id"])
    assert run["waiting"] == "a new connection from client ui to /ws"

    # Neither another client nor the sender's stream connection is what it waits for.
    async with (
        connect(f"{live.ws_url}/ws?client_id=other") as other,
        connect(f"{live.ws_url}/ws/stream?client_id=ui"),
    ):
        await registered(live, ("/ws", "other"), ("/ws/stream", "ui"))
        _, run = await http("GET", f"{live.url}/runs/{started['run_id']}")
        assert (run["state"], run["waiting"]) == (
            "running",
            "a new connection from client ui to /ws",
        )

        async with connect(f"{live.ws_url}/ws?client_id=ui") as again:
            assert await recv_json(again) == {
                "message_type": "ERROR",
                "message": "back after the crash, ui",
            }
            run = await run_ended(live, started["run_id"])
            assert run["state"] == "finished"
            assert run["sent"] == 2
            await nothing_else(live, other, again)


# 8. Client ids --------------------------------------------------------------------------


@pytest.mark.parametrize("client_id", ["a" * 100, "has spaces", "semi;colon", ""])
async def test_an_invalid_client_id_is_closed_with_1008(serve: Serve, client_id: str) -> None:
    live = serve({})
    query = urllib.parse.urlencode({"client_id": client_id})
    async with connect(f"{live.ws_url}/ws?{query}") as ws:
        ended = await closed(ws)
    assert ended.rcvd is not None
    assert ended.rcvd.code == 1008
    assert "client_id" in ended.rcvd.reason
    assert await clients(live) == []


async def test_the_longest_valid_client_id_is_accepted(serve: Serve) -> None:
    live = serve({})
    client_id = "A-z_0.9:" * 8  # 64 characters, every kind allowed
    async with connect(f"{live.ws_url}/ws?client_id={urllib.parse.quote(client_id)}"):
        await registered(live, ("/ws", client_id))


# 9. Seeds -------------------------------------------------------------------------------

RANDOM = """
delay: 10ms
jitter: 5ms
steps:
  - message: EVENT
    data: {span_id: "{{ uuid() }}", roll: "{{ randint(1, 1000) }}"}
  - repeat: 3
    steps:
      - message: EVENT
        text: "{{ iteration }}: {{ randint(1, 1000) }} {{ uuid() }}"
  - parallel: [side]
  - stream: "{{ choice(['alpha', 'beta', 'gamma', 'delta']) }} and some more words"
    rate: 1000
    jitter: 1ms
"""
SIDE = """
steps:
  - message: EVENT
    text: "side {{ randint(1, 1000000) }}"
"""


async def test_the_same_seed_plays_the_same_frames(serve: Serve) -> None:
    live = serve({"random.yaml": RANDOM, "side.yaml": SIDE})
    async with connect(f"{live.ws_url}/ws") as ws, connect(f"{live.ws_url}/ws/stream") as stream:
        await connected_count(live, 2)

        async def one_run(seed: int) -> list[str | bytes]:
            status, answer = await trigger(live, "random", speed=0, seed=seed)
            assert status == 200, answer
            assert answer["seed"] == seed
            frames = [await recv(ws) for _ in range(5)]
            stream_frames = answer["sent"] - 5
            assert stream_frames > 1
            return frames + [await recv(stream) for _ in range(stream_frames)]

        first = await one_run(7)
        again = await one_run(7)
        other = await one_run(8)
    assert first == again
    assert first != other
    assert len(set(first)) == len(first)  # the random values really vary within a run


# 10. Variables --------------------------------------------------------------------------

GREETING = """
vars:
  user: World
  punctuation: "!"
steps:
  - message: CHAT
    text: "Hello {{ vars.user }}{{ vars.punctuation }}"
"""


async def test_vars_from_the_body_defaults_and_undeclared_ones(serve: Serve) -> None:
    live = serve({"greeting.yaml": GREETING})
    async with connect(f"{live.ws_url}/ws") as ws:
        await connected_count(live, 1)

        status, answer = await trigger(live, "greeting", {"vars": {"user": "Ada"}}, speed=0)
        assert status == 200, answer
        assert answer["vars"] == {"user": "Ada"}
        assert json.loads(await recv(ws))["message"] == "Hello Ada!"

        status, answer = await trigger(live, "greeting", speed=0)
        assert status == 200, answer
        assert json.loads(await recv(ws))["message"] == "Hello World!"

        status, answer = await trigger(live, "greeting", {"vars": {"usr": "Ada"}}, speed=0)
        assert status == 422, answer
        assert answer["unknown"] == ["usr"]
        assert answer["declared"] == ["punctuation", "user"]
        assert "did you mean 'user'?" in answer["detail"]
        await nothing_else(live, ws)
