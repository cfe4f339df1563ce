"""End to end, the shipped profiles as their frontends use them: for P5 (the default
folder), P3 and P6, a real uvicorn on port 0 serving ``replay.profiles.profile_folder``
and real ``websockets`` clients sending and reading the frames, and calling the routes,
that each version of Schwarm's frontend (Nektar) does (see the shared protocol notes).

Every wait is bounded; nothing asserts speed. Runs play at ``speed=0`` where the timing
is not the point (waits for a client are not scaled by speed), so the module stays quick.
Spans are checked the way the frontends parse them (:func:`check_spans`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from replay.cli import main
from replay.clock import Clock
from replay.profiles import PROFILES, profile_folder
from replay.server import Settings
from tests.conftest import HoldingClock, LiveServer, start_live_server
from tests.test_e2e_conversations import (
    TIMEOUT,
    eventually,
    http,
    recv_json,
    registered,
    run_ended,
    trigger,
    wait_until_waiting,
)

Serve = Callable[..., LiveServer]

BREAKPOINTS = [
    "on_start",
    "on_start_turn",
    "on_instruct",
    "on_message_completion",
    "on_post_message_completion",
    "on_tool_execution",
    "on_post_tool_execution",
    "on_handoff",
]
CLOSE = {"type": "close", "content": None}
HEX16 = re.compile(r"[0-9a-f]{16}")
HEX32 = re.compile(r"[0-9a-f]{32}")
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a live server on a shipped profile's folder, as ``replay serve --profile``
    does (the folder is only read); stopped after the test."""
    stops: list[Any] = []

    def start(profile: str, clock: Clock | None = None) -> LiveServer:
        settings = Settings(scenarios=profile_folder(profile), isolated=True)
        live, server, thread = start_live_server(settings, clock=clock)
        stops.append((server, thread))
        return live

    yield start
    for server, thread in stops:
        server.should_exit = True
        thread.join(timeout=10)


async def call(live: LiveServer, method: str, path: str, **query: Any) -> tuple[int, Any]:
    """An HTTP request as the frontends make them (parameters in the query string, no
    body): (status, the JSON answer)."""
    url = live.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    return await asyncio.wait_for(http(method, url), TIMEOUT * 2)


async def ok(live: LiveServer, method: str, path: str, **query: Any) -> Any:
    """The JSON answer of a request that must succeed."""
    status, body = await call(live, method, path, **query)
    assert status == 200, (method, path, status, body)
    return body


async def put_state(live: LiveServer, **values: Any) -> dict[str, Any]:
    """PUT /state: set some keys of the shared state; the whole state."""
    status, state = await asyncio.wait_for(http("PUT", f"{live.url}/state", values), TIMEOUT)
    assert status == 200, state
    return state  # type: ignore[no-any-return]


async def finished(live: LiveServer, run_id: str) -> dict[str, Any]:
    run = await run_ended(live, run_id)
    assert run["state"] == "finished", run
    assert run["error"] is None, run
    return run


# Spans, as the frontends parse them ------------------------------------------------------


def check_spans(spans: list[dict[str, Any]], agents: set[str]) -> None:
    """Spans of one run, checked the way Nektar reads them: ``id`` is ``span_id`` (16
    lower-case hex), a parent is null or an earlier span of the run, times are strings of
    integer nanoseconds the frontend turns into dates with ``Number(t) / 1e6``, every
    attribute is a string, one 32-hex ``run_id``, a known status, and a name that is
    ``SCHWARM_START``, an agent, or ``<agent> - EventType.<X>``."""
    assert spans, "no spans"
    now_ms = time.time() * 1000
    seen: set[str] = set()
    run_ids: set[str] = set()
    for span in spans:
        assert isinstance(span, dict), span
        assert HEX16.fullmatch(span["id"]), span
        assert span["span_id"] == span["id"], span
        assert span["id"] not in seen, f"span {span['id']} twice"
        assert HEX32.fullmatch(span["trace_id"]), span
        parent = span["parent_span_id"]
        if parent is not None:
            assert HEX16.fullmatch(parent), span
            assert parent in seen, f"the parent of {span['name']} is no earlier span of the run"
        times = []
        for key in ("start_time", "end_time"):
            value = span[key]
            assert isinstance(value, str), (key, span)
            assert value.isdigit(), (key, span)
            assert str(int(value)) == value, (key, span)
            ms = float(value) / 1e6  # Number(start_time) / 1e6, as the frontend does
            assert abs(ms - now_ms) < DAY_MS, f"{key} {value} is no date near now"
            times.append(int(value))
        assert times[1] >= times[0], span
        attributes = span["attributes"]
        assert isinstance(attributes, dict), span
        assert all(isinstance(v, str) for v in attributes.values()), attributes
        assert HEX32.fullmatch(attributes["run_id"]), span
        run_ids.add(attributes["run_id"])
        assert span["status_code"] in ("UNSET", "OK", "ERROR"), span
        name = span["name"]
        parts = name.split(" - ")
        if len(parts) == 2:
            agent, event = parts
            assert agent in agents, name
            assert re.fullmatch(r"EventType\.[A-Z_]+", event), name
        else:
            assert name == "SCHWARM_START" or name in agents, name
        # The frontend splits on '-': an agent named with one would be read wrong.
        assert len(name.split("-")) == len(parts), name
        seen.add(span["id"])
    assert len(run_ids) == 1, f"one run, but run_ids {run_ids}"


def test_the_span_check_fails_what_the_frontend_would_misread() -> None:
    good = {
        "id": "0123456789abcdef",
        "span_id": "0123456789abcdef",
        "trace_id": "0" * 32,
        "parent_span_id": None,
        "name": "SCHWARM_START",
        "start_time": str(time.time_ns()),
        "end_time": str(time.time_ns()),
        "attributes": {"run_id": "a" * 32},
        "status_code": "OK",
    }
    child = {**good, "id": "1" * 16, "span_id": "1" * 16, "parent_span_id": good["id"]}
    check_spans([good, {**child, "name": "Bot - EventType.TOOL_EXECUTION"}], {"Bot"})
    wrong = [
        {"span_id": "f" * 16},
        {"id": "0123456789ABCDEF", "span_id": "0123456789ABCDEF"},
        {"parent_span_id": "2" * 16},  # no earlier span
        {"start_time": int(good["start_time"])},
        {"end_time": "1733260000000000000"},  # 2024: not a date near now
        {"end_time": str(int(good["start_time"]) - 1)},
        {"attributes": {"run_id": "a" * 32, "current_turn": 1}},
        {"attributes": {"run_id": "b" * 32}},  # a second run
        {"status_code": "FINE"},
        {"name": "Bot: EventType.TOOL_EXECUTION"},
        {"name": "sub-agent - EventType.START_TURN"},
    ]
    for change in wrong:
        with pytest.raises(AssertionError):
            check_spans([good, {**child, **change}], {"Bot", "sub-agent"})


# P5, the default folder ------------------------------------------------------------------


async def test_p5_the_pause_button_pauses_and_resumes_a_pausable_run(serve: Serve) -> None:
    # The clock holds the run in its first pause until the Pause button has been
    # pressed, however long that takes on a busy machine.
    clock = HoldingClock()
    live = serve("p5", clock=clock)
    async with (
        connect(f"{live.ws_url}/ws?client_id=ui") as ws,
        connect(f"{live.ws_url}/ws/stream?client_id=ui") as stream,
    ):
        await registered(live, ("/ws", "ui"), ("/ws/stream", "ui"))
        assert await ok(live, "GET", "/break") is False
        clock.hold()
        status, started = await trigger(live, "pausable", wait=False, speed=20)
        assert status == 202, started
        assert await recv_json(ws) == {
            "message_type": "IS_WAITING",
            "message": "Waiting for user input",
        }
        assert await ok(live, "POST", "/break") is True  # the Pause button
        assert await ok(live, "GET", "/break") is True
        clock.release()
        assert await recv_json(ws) == {"message_type": "PAUSE_STATUS", "message": "System paused"}

        # Paused: the run waits for the next click and has sent nothing more.
        run = await wait_until_waiting(live, started["run_id"])
        assert run["waiting"] == "POST /break from any client"
        assert run["sent"] == 2, run
        assert await ok(live, "GET", "/break") is True

        assert await ok(live, "POST", "/break") is False  # Resume
        assert await recv_json(ws) == {"message_type": "PAUSE_STATUS", "message": "System resumed"}
        events = [await recv_json(ws) for _ in range(5)]
        assert {frame["message_type"] for frame in events} == {"EVENT"}
        spans = [json.loads(frame["message"]) for frame in events]
        check_spans(spans, {"worker"})
        assert [span["attributes"]["current_turn"] for span in spans] == ["1", "2", "3", "4", "5"]

        run = await finished(live, started["run_id"])
        assert run["sent"] == 1 + 2 + 5  # nothing else: no second pause
        assert run["deliveries"] == run["sent"]  # all to /ws, nothing to /ws/stream
        assert (await ok(live, "GET", "/state"))["paused"] is False
        assert stream.state.name == "OPEN"


async def test_p5_a_run_started_paused_waits_for_one_click(serve: Serve) -> None:
    live = serve("p5")
    async with connect(f"{live.ws_url}/ws?client_id=ui") as ws:
        await registered(live, ("/ws", "ui"))
        assert (await put_state(live, paused=True))["paused"] is True
        status, started = await trigger(live, "pausable", wait=False, speed=0)
        assert status == 202, started
        assert (await recv_json(ws))["message_type"] == "IS_WAITING"
        assert await recv_json(ws) == {"message_type": "PAUSE_STATUS", "message": "System paused"}
        await wait_until_waiting(live, started["run_id"])
        assert await ok(live, "POST", "/break") is False
        assert await recv_json(ws) == {"message_type": "PAUSE_STATUS", "message": "System resumed"}
        assert [(await recv_json(ws))["message_type"] for _ in range(5)] == ["EVENT"] * 5
        assert (await finished(live, started["run_id"]))["sent"] == 8


@pytest.mark.parametrize("profile", ["p5", "p3"])
async def test_breakpoints_and_turns_answer_as_schwarm_does(serve: Serve, profile: str) -> None:
    live = serve(profile)
    everything_off = dict.fromkeys(BREAKPOINTS, False)
    assert await ok(live, "GET", "/breakpoint") == everything_off
    answer = await ok(live, "POST", "/breakpoint", event_type="on_tool_execution")
    assert answer == {**everything_off, "on_tool_execution": True}
    assert list(answer) == BREAKPOINTS
    assert await ok(live, "GET", "/breakpoint") == answer
    again = await ok(live, "POST", "/breakpoint", event_type="on_tool_execution")
    assert again == everything_off
    await ok(live, "POST", "/breakpoint", event_type="on_handoff")

    assert await ok(live, "GET", "/breakpoint/turns") == 0
    turns = await ok(live, "POST", "/breakpoint/turns", turn_amount=3)
    assert turns == 2
    assert type(turns) is int  # a bare int, as Schwarm answers (not true, not "2")
    got = await ok(live, "GET", "/breakpoint/turns")
    assert got == 2
    assert type(got) is int

    state = await ok(live, "GET", "/state")
    assert state["turns"] == 2
    assert state["breakpoints"] == {**everything_off, "on_handoff": True}
    await ok(live, "POST", "/reset")  # the declared values back
    assert await ok(live, "GET", "/breakpoint") == everything_off
    assert await ok(live, "GET", "/breakpoint/turns") == 0


async def test_p5_chat_routes_answer_the_input_and_resume(serve: Serve) -> None:
    live = serve("p5")
    assert await ok(live, "GET", "/chat") is False
    await put_state(live, paused=True, waiting_for_input=True)  # as a blocked agent has it
    assert await ok(live, "GET", "/chat") is True
    assert await ok(live, "POST", "/chat", user_input="Hi") == "Hi"
    assert await ok(live, "GET", "/chat") is False
    assert await ok(live, "GET", "/break") is False
    assert (await ok(live, "GET", "/state"))["chat_input"] == "Hi"
    assert await ok(live, "POST", "/chat") == ""  # no input: an empty one


async def test_p5_all_still_sends_the_seed_frames(serve: Serve) -> None:
    live = serve("p5")
    async with (
        connect(f"{live.ws_url}/ws?client_id=ui") as ws,
        connect(f"{live.ws_url}/ws/stream?client_id=ui") as stream,
    ):
        await registered(live, ("/ws", "ui"), ("/ws/stream", "ui"))
        status, answer = await trigger(live, "all", speed=0)
        assert status == 200, answer
        assert answer["sent"] == 8
        assert [await ws.recv() for _ in range(4)] == [
            '{"message_type":"CHAT_REQUESTED","message":"Test chat request"}',
            '{"message_type":"IS_WAITING","message":"Waiting for user input"}',
            '{"message_type":"EVENT","message":"Test event message"}',
            '{"message_type":"PAUSE_STATUS","message":"System paused"}',
        ]
        assert [await asyncio.wait_for(stream.recv(), TIMEOUT) for _ in range(4)] == [
            '{"type":"default","content":"This is a "}',
            '{"type":"default","content":"streaming message "}',
            '{"type":"default","content":"sent in chunks."}',
            '{"type":"close","content":null}',
        ]


async def test_p5_agent_run_spans_parse_as_the_dashboard_parses_them(serve: Serve) -> None:
    live = serve("p5")
    async with (
        connect(f"{live.ws_url}/ws?client_id=ui") as ws,
        connect(f"{live.ws_url}/ws/stream?client_id=ui") as stream,
    ):
        await registered(live, ("/ws", "ui"), ("/ws/stream", "ui"))
        status, answer = await trigger(live, "agent-run", speed=0)
        assert status == 200, answer
        events = [await recv_json(ws) for _ in range(5)]
        assert {frame["message_type"] for frame in events} == {"EVENT"}
        spans = [json.loads(frame["message"]) for frame in events]
        check_spans(spans, {"planner", "coder"})
        assert [span["name"].split(" - ")[1] for span in spans] == [
            "EventType.START_TURN",
            "EventType.INSTRUCT",
            "EventType.TOOL_EXECUTION",
            "EventType.HANDOFF",
            "EventType.START_TURN",
        ]
        chunks = []
        while (frame := await recv_json(stream)) != CLOSE:
            chunks.append(frame)
        assert {frame["type"] for frame in chunks} == {"tool", "default"}
        assert answer["sent"] == 5 + len(chunks) + 1


# P3: chunks on /ws (and /ws/tool), everything else polled over HTTP ---------------------


async def completion(ws: ClientConnection, agent: str = "Bot") -> tuple[str, int]:
    """One streamed completion as P3's frontend reads it: ``default`` chunks naming the
    agent, then ``close`` twice. Its text, and how many frames it took."""
    text = []
    while (frame := await recv_json(ws))["type"] != "close":
        assert frame == {"type": "default", "content": frame["content"], "agent": agent}
        assert isinstance(frame["content"], str)
        assert frame["content"]
        text.append(frame["content"])
    assert frame == CLOSE
    assert await recv_json(ws) == CLOSE  # twice
    return "".join(text), len(text) + 2


async def test_p3_agent_run_starts_paused_streams_and_serves_its_spans(serve: Serve) -> None:
    live = serve("p3")
    async with (
        connect(f"{live.ws_url}/ws?client_id=ui") as ws,
        connect(f"{live.ws_url}/ws/tool?client_id=tool") as tool,
    ):
        await registered(live, ("/ws", "ui"), ("/ws", "tool"))  # /ws/tool is /ws
        assert await ok(live, "GET", "/spans") == []
        status, started = await trigger(live, "agent-run", wait=False, speed=0)
        assert status == 202, started

        async def paused() -> bool:
            return await ok(live, "GET", "/break") is True

        await eventually(paused, "GET /break is true: the run waits for the frontend")
        run = await wait_until_waiting(live, started["run_id"])
        assert run["sent"] == 0
        assert await ok(live, "GET", "/spans") == []
        assert await ok(live, "POST", "/break") is False  # Resume

        received = []
        for socket in (ws, tool):  # both get every chunk
            first, count = await completion(socket)
            assert first == 'I\'ll look that up in the changelog.{"query": "release notes"}'
            second, more = await completion(socket)
            assert second.startswith("Twelve changes since the last release")
            received.append(count + more)
        run = await finished(live, started["run_id"])
        assert received == [run["sent"]] * 2  # nothing else
        assert run["deliveries"] == 2 * run["sent"]

        spans = await ok(live, "GET", "/spans")
        check_spans(spans, {"Bot"})
        assert [span["name"] for span in spans] == [
            "SCHWARM_START",
            "Bot - EventType.START_TURN",
            "Bot - EventType.TOOL_EXECUTION",
            "Bot - EventType.POST_TOOL_EXECUTION",
            "Bot - EventType.POST_MESSAGE_COMPLETION",
        ]
        completion_span = spans[-1]["attributes"]
        assert completion_span["message.info.token_counter"].isdigit()
        float(completion_span["message.info.completion_cost"])
        ids = [span["id"] for span in spans]
        assert await ok(live, "GET", "/spans", after_id=ids[0]) == spans[1:]
        assert await ok(live, "GET", "/spans", after_id=ids[3]) == spans[4:]
        assert await ok(live, "GET", "/spans", after_id=ids[-1]) == []
        assert await ok(live, "GET", "/spans", after_id="unknown") == []
        assert await ok(live, "GET", f"/spans/{ids[2]}") == spans[2]
        assert await ok(live, "GET", "/spans/0123456789abcdef") is None

        status, answer = await trigger(live, "reset", speed=0)
        assert status == 200, answer
        assert answer["sent"] == 0
        assert await ok(live, "GET", "/spans") == []
        assert await ok(live, "GET", "/break") is False


async def test_p3_chat_asks_over_get_chat_and_answers_on_the_socket(serve: Serve) -> None:
    live = serve("p3")
    async with connect(f"{live.ws_url}/ws?client_id=ui") as ws:
        await registered(live, ("/ws", "ui"))
        assert await ok(live, "GET", "/chat") is False
        status, started = await trigger(live, "chat", wait=False, speed=0)
        assert status == 202, started

        async def asked() -> bool:
            return await ok(live, "GET", "/chat") is True

        await eventually(asked, "GET /chat is true")
        assert await ok(live, "GET", "/break") is True
        answer = await ok(live, "POST", "/chat", user_input="Hi")
        assert answer == "Hi"
        text, _ = await completion(ws)
        assert "You said: Hi" in text
        await finished(live, started["run_id"])
        assert await ok(live, "GET", "/chat") is False
        assert await ok(live, "GET", "/break") is False
        assert (await ok(live, "GET", "/state"))["chat_input"] == "Hi"


async def test_p3_a_frontend_that_reopens_its_socket_after_close_misses_no_chunk(
    serve: Serve,
) -> None:
    # P3's frontend closes its socket on close and opens it 2 s later; chunks sent while
    # it is away are lost (the backend keeps nothing). The served timeline must leave it
    # that time after every end of a completion.
    live = serve("p3")
    shown = await ok(live, "GET", "/scenarios/agent-run")
    frames = [cue for cue in shown["timeline"] if cue["kind"] == "frame"]
    assert frames
    for index, cue in enumerate(frames):
        if json.loads(cue["frame"]) != CLOSE:
            continue
        if index > 0 and json.loads(frames[index - 1]["frame"]) == CLOSE:
            continue  # the second close of a pair
        assert index + 1 < len(frames), "a close comes twice"
        assert json.loads(frames[index + 1]["frame"]) == CLOSE, "a close comes twice"
        for later in frames[index + 2 :]:
            assert later["offset"] >= cue["offset"] + 2.0, (cue, later)


# P6: one socket at "/", {message_type, message} frames ----------------------------------


async def test_p6_agent_run_waits_for_break_false_then_streams_without_an_end(
    serve: Serve,
) -> None:
    live = serve("p6")
    async with connect(f"{live.ws_url}/?client_id=ui") as ws:
        await registered(live, ("/", "ui"))
        status, started = await trigger(live, "agent-run", wait=False, speed=0)
        assert status == 202, started
        assert await recv_json(ws) == {
            "message_type": "BREAK",
            "message": "Waiting for user input",
        }
        await wait_until_waiting(live, started["run_id"])
        await ws.send(json.dumps({"message_type": "BREAK", "message": "false"}))

        events = [await recv_json(ws) for _ in range(2)]
        assert [frame["message_type"] for frame in events] == ["EVENT", "EVENT"]
        assert all(isinstance(frame["message"], str) for frame in events)
        spans = [json.loads(frame["message"]) for frame in events]  # JSON.parse(message)
        check_spans(spans, {"Bot"})
        assert [span["name"] for span in spans] == ["SCHWARM_START", "Bot - EventType.START_TURN"]

        assert await recv_json(ws) == {"message_type": "STREAM", "message": "##START##"}
        text = []
        while (frame := await recv_json(ws))["message_type"] == "STREAM":
            assert "##START##" not in frame["message"]
            text.append(frame["message"])
        assert "".join(text) == "Twelve changes since the last release."
        # No end marker: the next frame is the chat request.
        assert frame == {"message_type": "CHAT", "message": "Test chat request"}
        assert (await finished(live, started["run_id"]))["sent"] == 1 + 2 + 1 + len(text) + 1
        # What the frontend loads once: the same spans.
        assert await ok(live, "GET", "/spans") == spans


async def test_p6_chat_frames_are_echoed_to_every_client(serve: Serve) -> None:
    live = serve("p6")
    async with (
        connect(f"{live.ws_url}/?client_id=a") as a,
        connect(f"{live.ws_url}/?client_id=b") as b,
    ):
        await registered(live, ("/", "a"), ("/", "b"))
        await a.send(json.dumps({"message_type": "CHAT", "message": "hello"}))
        for ws in (a, b):
            assert await recv_json(ws) == {"message_type": "CHAT", "message": "hello"}
        # The test button: POST /trigger/messages sends BREAK "" (and it is the next
        # frame each client gets: nothing else came).
        status, answer = await trigger(live, "messages", speed=0)
        assert status == 200, answer
        for ws in (a, b):
            assert await recv_json(ws) == {"message_type": "BREAK", "message": ""}


async def test_p6_breakpoints_toggle(serve: Serve) -> None:
    live = serve("p6")
    everything_off = dict.fromkeys(BREAKPOINTS, False)
    assert await ok(live, "GET", "/breakpoint") == everything_off
    answer = await ok(live, "POST", "/breakpoint", event_type="on_start_turn")
    assert answer == {**everything_off, "on_start_turn": True}
    assert await ok(live, "GET", "/spans") == []


# Every profile validates ------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_validates(profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--profile", profile]) == 0
    out = capsys.readouterr().out
    assert "INVALID" not in out
    assert re.search(r"^\d+ valid, 0 invalid$", out, re.MULTILINE), out
    assert str(profile_folder(profile)) in out
