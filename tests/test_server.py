"""Every route, in process (Starlette's TestClient; no sockets)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect
from websockets.sync.client import connect as ws_connect

import replay.library
import replay.planning
import replay.server
from replay.library import PROTOCOL_FILE
from replay.loader import MAX_FILE_BYTES
from replay.server import Settings, create_app
from tests.conftest import LiveServer, LocalClient, start_live_server, wait_until_watched
from tests.protocols import write_protocol

MESSAGES = [
    '{"message_type":"CHAT_REQUESTED","message":"Test chat request"}',
    '{"message_type":"IS_WAITING","message":"Waiting for user input"}',
    '{"message_type":"EVENT","message":"Test event message"}',
    '{"message_type":"PAUSE_STATUS","message":"System paused"}',
]
STREAM = [
    '{"type":"default","content":"This is a "}',
    '{"type":"default","content":"streaming message "}',
    '{"type":"default","content":"sent in chunks."}',
    '{"type":"close","content":null}',
]


def names_in(folder: Path) -> list[str]:
    """The scenario names a folder holds (the shipped folder grows over time)."""
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.name.startswith((".", "_")))


@pytest.fixture
def client(scenarios_dir: Path) -> Iterator[TestClient]:
    app = create_app(Settings(scenarios=scenarios_dir, isolated=True))
    with LocalClient(app) as test_client:
        yield test_client


def test_trigger_all_sends_the_seed_frames_to_both_endpoints(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws, client.websocket_connect("/ws/stream") as stream:
        answer = client.post("/trigger/all?speed=0")
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "success"
        assert body["scenario"] == "all"
        assert body["sent"] == 8
        assert body["clients"] == 2
        assert {"run_id", "duration_s"} <= body.keys()
        assert [ws.receive_text() for _ in MESSAGES] == MESSAGES
        assert [stream.receive_text() for _ in STREAM] == STREAM


def test_trigger_unknown_scenario_is_404_listing_known_names(
    client: TestClient, scenarios_dir: Path
) -> None:
    answer = client.post("/trigger/mesages")
    assert answer.status_code == 404
    body = answer.json()
    assert body["known"] == names_in(scenarios_dir)
    assert "did you mean 'messages'?" in body["detail"]


def test_trigger_invalid_scenario_is_422_with_located_problems(
    client: TestClient, scenarios_dir: Path
) -> None:
    (scenarios_dir / "broken.yaml").write_text("steps:\n  - message: EVNT\n    text: x\n")
    answer = client.post("/trigger/broken")
    assert answer.status_code == 422
    problem = answer.json()["problems"][0]
    assert (problem["line"], problem["column"], problem["field"]) == (2, 5, "steps.0.message")
    assert "did you mean 'EVENT'?" in problem["message"]
    assert problem["text"].startswith(str(scenarios_dir / "broken.yaml") + ":2:5:")


def test_broken_file_leaves_the_others_playable(client: TestClient, scenarios_dir: Path) -> None:
    (scenarios_dir / "broken.yaml").write_text("steps: [\n")
    assert client.post("/trigger/messages?speed=0").json()["status"] == "success"
    listed = {s["name"]: s for s in client.get("/scenarios").json()["scenarios"]}
    assert listed["broken"]["valid"] is False
    assert "not valid YAML" in listed["broken"]["problems"][0]["message"]
    assert listed["messages"]["valid"] is True


def broken_folder(folder: Path, outside: Path) -> dict[str, list[str]]:
    """Write one file per kind of mistake next to a good scenario; return the problems each
    file should be listed with (the text users see), by scenario name."""
    folder.mkdir()
    (folder / "good.yaml").write_text("steps:\n  - message: EVENT\n    text: still here\n")
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [
        f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    deep = "[" * 40 + "]" * 40
    sources: dict[str, str | bytes] = {
        "syntax": "steps:\n  - message: EVENT\n    text: [unclosed\n",
        "tabs": "steps:\n  - chunk: a\n\tdelay: 1\n",
        "duplicate": "steps:\n  - chunk: a\nsteps:\n  - chunk: b\n",
        "bomb": "\n".join([*bomb, "steps: *i"]) + "\n",
        "huge": b"# " + b"x" * MAX_FILE_BYTES,
        "deep": f"steps:\n  - message: EVENT\n    data: {deep}\n",
        "wrong-type": "steps:\n  - chunk: [1, 2]\n",
        "kind": "steps:\n  - mesage: EVENT\n    text: hi\n",
        "negative": "steps:\n  - chunk: a\n    delay: -1\n",
        "absurd": "steps:\n  - sleep: 5000\n",
        "message-type": "steps:\n  - message: EVNT\n    text: hi\n",
        "empty": "",
        "latin1": b"steps:\n  - chunk: caf\xe9\n",
        "cycle-a": "steps:\n  - play: cycle-b\n",
        "cycle-b": "steps:\n  - play: cycle-a\n",
        "missing": "steps:\n  - chunk: a\n  - play: godo\n",
        "player": "steps:\n  - play: syntax\n",
        "date": "x-released: 2024-02-30\nsteps:\n  - chunk: a\n",
        "digits": f"x-big: {'9' * 5000}\nsteps:\n  - chunk: a\n",
    }
    for name, source in sources.items():
        path = folder / f"{name}.yaml"
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            path.write_text(source)
    (outside / "secret.yaml").write_text("steps:\n  - message: EVENT\n    text: secret\n")
    (folder / "sneaky.yaml").symlink_to(outside / "secret.yaml")
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    os.mkfifo(folder / "fifo.yaml")
    (folder / "folder.yaml").mkdir()
    (folder / os.fsdecode(b"name\xff.yaml")).write_text("steps:\n  - chunk: a\n")

    def at(name: str) -> str:
        return str(folder / f"{name}.yaml")

    durations = (
        'seconds as a number up to 60 (0.5, 30) or a string with a unit ("500ms", "90s", "2m")'
    )
    kinds = (
        "message, chunk, tool, close, stream, sleep, play, parallel, repeat, wait, raw, "
        "binary, disconnect, drop, choose, let, set, wait_connect"
    )
    types = (
        "CHAT_REQUESTED, IS_WAITING, CHAT_INPUT, EVENT, PAUSE_STATUS, PAUSE_REQUEST, CHAT, "
        "BREAK, ERROR, STREAM"
    )
    return {
        "syntax": [
            f"{at('syntax')}:3:11: not valid YAML: this '[' is never closed: add ']' where its "
            "list ends, or quote the value if the '[' is part of its text; expected ']', found "
            "the end of the file"
        ],
        "tabs": [
            f"{at('tabs')}:3:1: not valid YAML: a tab: YAML indents with spaces only; replace "
            "the tab with spaces; expected spaces, found a tab character"
        ],
        "duplicate": [
            f"{at('duplicate')}:3:1: steps: duplicate key 'steps' (first at line 1); YAML "
            "would keep only the last one: rename or remove one of them"
        ],
        "bomb": [
            f"{at('bomb')}:1:35: e.7.8.8.8.9: the document expands to too many values "
            "(aliases count each time); expected at most 100000 values, found more"
        ],
        "huge": [
            f"{at('huge')}: the file is too large; expected at most {MAX_FILE_BYTES} bytes, "
            f"found {MAX_FILE_BYTES + 2} bytes"
        ],
        "deep": [
            f"{at('deep')}:3:41: steps.0.data{'.0' * 30}: the document nests too deeply; "
            "expected at most 32 levels, found more"
        ],
        "wrong-type": [
            f"{at('wrong-type')}:2:5: steps.0.chunk: wrong type; expected a string, found a list"
        ],
        "kind": [
            f"{at('kind')}:2:5: steps.0: unknown step kind (did you mean 'message'?); "
            f"expected one of {kinds}, found 'mesage'"
        ],
        "negative": [
            f"{at('negative')}:3:5: steps.0.delay: a duration must be zero or more seconds; "
            f"expected {durations}, found -1"
        ],
        "absurd": [
            f"{at('absurd')}:2:5: steps.0.sleep: 5000 is read as seconds (1 h 23 min 20 s), "
            f"over the limit of 1 h for one pause; write 5000ms for milliseconds; expected "
            f"{durations}, found 5000"
        ],
        "message-type": [
            f"{at('message-type')}:2:5: steps.0.message: unknown message type 'EVNT' (did you "
            f"mean 'EVENT'?); expected one of {types}, found 'EVNT'"
        ],
        "empty": [
            f"{at('empty')}: the file is empty; expected a mapping with 'steps' (and "
            "optionally 'description')"
        ],
        "latin1": [
            f"{at('latin1')}:2:15: the file is not valid UTF-8; expected UTF-8 text, found "
            "byte 0xe9"
        ],
        "cycle-a": [
            f"{at('cycle-a')}:2:5: steps.0.play: plays itself: cycle-a -> cycle-b -> cycle-a"
        ],
        "cycle-b": [
            f"{at('cycle-b')}:2:5: steps.0.play: plays itself: cycle-b -> cycle-a -> cycle-b"
        ],
        "missing": [
            f"{at('missing')}:3:5: steps.1.play: plays 'godo', which does not exist (did you "
            "mean 'good'?)"
        ],
        "player": [f"{at('player')}:2:5: steps.0.play: plays 'syntax', which is invalid"],
        "sneaky": [f"{at('sneaky')}: the file links outside the scenarios folder"],
        "date": [
            f"{at('date')}:1:13: x-released: cannot read this value (ValueError: day is out of "
            "range for month); expected a real date or time; quote it to keep it as text, "
            "found '2024-02-30'"
        ],
        "digits": [
            f"{at('digits')}:1:8: x-big: cannot read this value (the number has too many "
            "digits); expected an integer of at most 4000 digits; quote it to keep it as text, "
            f"found '{'9' * 56}..."
        ],
        "loop": [f"{at('loop')}: cannot read the file: Too many levels of symbolic links"],
        "fifo": [f"{at('fifo')}: not a regular file (a named pipe)"],
        "folder": [f"{at('folder')}: not a regular file (a folder)"],
        "name\\xff": [at("name\\xff") + ": the file name is not valid UTF-8: rename the file"],
    }


def test_every_kind_of_broken_file_is_listed_with_its_problem_and_the_good_one_plays(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "scenarios"
    expected = broken_folder(folder, tmp_path)
    with LocalClient(create_app(Settings(scenarios=folder, isolated=True))) as client:
        listed = {s["name"]: s for s in client.get("/scenarios").json()["scenarios"]}
        assert sorted(listed) == sorted([*expected, "good"])
        assert listed["good"]["valid"] is True
        for name, texts in expected.items():
            assert listed[name]["valid"] is False, name
            assert [problem["text"] for problem in listed[name]["problems"]] == texts, name
            detail = client.get(f"/scenarios/{name}").json()
            assert [problem["text"] for problem in detail["problems"]] == texts, name
            refused = client.post(f"/trigger/{name}?speed=0")
            assert refused.status_code == 422, name
            assert [problem["text"] for problem in refused.json()["problems"]] == texts, name
        with client.websocket_connect("/ws") as ws:
            answer = client.post("/trigger/good?speed=0")
            assert answer.status_code == 200
            assert answer.json()["status"] == "success"
            assert ws.receive_text() == '{"message_type":"EVENT","message":"still here"}'


def test_edits_take_effect_on_the_next_trigger(client: TestClient, scenarios_dir: Path) -> None:
    path = scenarios_dir / "hello.yaml"
    path.write_text("steps:\n  - message: EVENT\n    text: first\n")
    with client.websocket_connect("/ws") as ws:
        client.post("/trigger/hello?speed=0")
        assert json.loads(ws.receive_text())["message"] == "first"
        path.write_text("steps:\n  - message: EVENT\n    text: second version\n")
        client.post("/trigger/hello?speed=0")
        assert json.loads(ws.receive_text())["message"] == "second version"


def test_a_trigger_of_an_unchanged_folder_reads_no_file(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[object] = []
    real = replay.library.ScenarioLibrary.catalog

    def counting(self: replay.library.ScenarioLibrary) -> object:
        reads.append(self)
        return real(self)

    monkeypatch.setattr(replay.library.ScenarioLibrary, "catalog", counting)
    assert client.post("/trigger/welcome?speed=0").status_code == 200
    assert client.post("/trigger/welcome?speed=0").status_code == 200
    assert reads == []


def test_an_edit_just_before_a_trigger_plays(client: TestClient, scenarios_dir: Path) -> None:
    path = scenarios_dir / "hello.yaml"
    with client.websocket_connect("/ws") as ws:
        for text in ("one", "two 2", "three 33"):
            # No wait between the edit and the trigger: the trigger sees the file as it is.
            path.write_text(f"steps:\n  - message: EVENT\n    text: {text}\n")
            assert client.post("/trigger/hello?speed=0").status_code == 200
            assert json.loads(ws.receive_text())["message"] == text


def test_a_deleted_file_is_404_at_once_and_a_new_one_plays_at_once(
    client: TestClient, scenarios_dir: Path
) -> None:
    assert client.post("/trigger/welcome?speed=0").status_code == 200
    (scenarios_dir / "welcome.yaml").unlink()
    assert client.post("/trigger/welcome?speed=0").status_code == 404
    added = scenarios_dir / "brand_new.yaml"
    added.write_text("steps:\n  - message: EVENT\n    text: new\n")
    with client.websocket_connect("/ws") as ws:
        assert client.post("/trigger/brand_new?speed=0").status_code == 200
        assert json.loads(ws.receive_text())["message"] == "new"


def test_trigger_without_waiting_answers_202_with_the_run(client: TestClient) -> None:
    answer = client.post("/trigger/messages?wait=false&speed=0.01")
    assert answer.status_code == 202
    body = answer.json()
    assert body["status"] == "started"
    assert body["url"] == f"/runs/{body['run_id']}"
    run = client.get(body["url"]).json()
    assert run["state"] == "running"
    cancelled = client.delete(body["url"])
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    again = client.delete(body["url"])
    assert again.status_code == 409
    assert "already ended" in again.json()["detail"]


def test_trigger_without_waiting_answers_the_run_as_it_started(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        answer = client.post("/trigger/welcome?wait=false&speed=0")
        assert answer.status_code == 202
        assert answer.json()["sent"] == 0
        assert answer.json()["state"] == "running"
        # planned after the first frame went out, and answered with it
        assert answer.json()["frames"] == 1
        assert answer.json()["frames_exact"] is True
        assert json.loads(ws.receive_text())["message_type"]


def test_trigger_follow_streams_json_lines(client: TestClient) -> None:
    answer = client.post("/trigger/stream?follow=true&speed=0")
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in answer.text.splitlines()]
    assert [e["event"] for e in events] == ["start", "frame", "frame", "frame", "frame", "end"]
    assert [e["frame"] for e in events[1:5]] == STREAM
    assert events[-1]["state"] == "finished"


@pytest.mark.parametrize("speed", ["-1", "1001", "fast", "1e-320", "0.0001", "nan", "inf"])
def test_trigger_refuses_bad_speeds(client: TestClient, speed: str) -> None:
    assert client.post(f"/trigger/messages?speed={speed}").status_code == 422
    assert client.get("/runs").json()["runs"] == []  # nothing was started


@pytest.mark.parametrize("variable", ["a\\ud800b", "\\udfff", "x\\ud83d", "\\ud83d\\ud83d\\ude00"])
def test_a_lone_surrogate_in_a_variable_is_refused_and_harms_nothing(
    client: TestClient, scenarios_dir: Path, variable: str
) -> None:
    (scenarios_dir / "hello.yaml").write_text(
        "vars: {user: x}\nsteps:\n  - message: EVENT\n    text: 'hi {{ vars.user }}'\n"
    )
    body = b'{"vars": {"user": "' + variable.encode() + b'"}}'
    answer = client.post(
        "/trigger/hello?speed=0", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert "surrogate" in answer.text
    assert client.get("/runs").json()["runs"] == []
    assert client.post("/trigger/hello?speed=0", json={"vars": {"user": "😀"}}).status_code == 200
    assert client.get("/runs").status_code == 200


def test_scenarios_list_and_detail(client: TestClient, scenarios_dir: Path) -> None:
    listed = client.get("/scenarios").json()["scenarios"]
    assert [s["name"] for s in listed] == names_in(scenarios_dir)
    by_name = {s["name"]: s for s in listed}
    assert by_name["all"]["duration_s"] == pytest.approx(2.6)
    assert by_name["messages"]["frames"] == 4
    detail = client.get("/scenarios/stream").json()
    assert [cue["frame"] for cue in detail["timeline"]] == STREAM
    assert [cue["offset"] for cue in detail["timeline"]] == pytest.approx([0, 0.2, 0.4, 0.6])
    assert detail["steps"][0] == {"chunk": "This is a "}
    assert client.get("/scenarios/nope").status_code == 404


def test_a_scenario_page_is_made_off_the_loop(
    scenarios_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_in: list[str] = []
    real = replay.server._scenario_page

    def spy(*args: Any) -> bytes:
        made_in.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(replay.server, "_scenario_page", spy)
    (scenarios_dir / "long.yaml").write_text(
        "steps:\n" + "".join(f"  - chunk: c{i}\n    delay: 1\n" for i in range(3000))
    )
    with LocalClient(create_app(Settings(scenarios=scenarios_dir, isolated=True))) as client:
        answer = client.get("/scenarios/long")
        assert answer.headers["content-type"] == "application/json"
        detail = answer.json()
        broken = client.get("/scenarios/nope")
    assert made_in
    assert all(name.startswith("replay-plan") for name in made_in)
    assert detail["steps"][:2] == [{"chunk": "c0", "delay": 1.0}, {"chunk": "c1", "delay": 1.0}]
    assert len(detail["steps"]) == 3000
    assert [cue["frame"] for cue in detail["timeline"][:2]] == [
        '{"type":"default","content":"c0"}',
        '{"type":"default","content":"c1"}',
    ]
    assert (detail["frames"], detail["duration_s"], detail["truncated"]) == (3000, 3000.0, False)
    assert broken.status_code == 404


def test_a_server_takes_the_interpreter_back_from_threads_sooner(scenarios_dir: Path) -> None:
    before = sys.getswitchinterval()
    with LocalClient(create_app(Settings(scenarios=scenarios_dir, isolated=True))) as client:
        assert client.get("/healthz").status_code == 200
        assert sys.getswitchinterval() == pytest.approx(replay.server.SWITCH_INTERVAL)
    assert sys.getswitchinterval() == before
    # Two servers in one process: the interval is back only once both have stopped.
    first = LocalClient(create_app(Settings(scenarios=scenarios_dir, isolated=True)))
    second = LocalClient(create_app(Settings(scenarios=scenarios_dir, isolated=True)))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert sys.getswitchinterval() == pytest.approx(replay.server.SWITCH_INTERVAL)
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == before


def test_runs_list_and_unknown_run(client: TestClient) -> None:
    run_id = client.post("/trigger/messages?speed=0").json()["run_id"]
    runs = client.get("/runs").json()["runs"]
    assert runs[0]["run_id"] == run_id
    assert runs[0]["state"] == "finished"
    assert client.get("/runs/nope").status_code == 404
    assert client.delete("/runs/nope").status_code == 404


def test_healthz_counts_clients(client: TestClient) -> None:
    with client.websocket_connect("/ws"):
        body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["clients"] == {"/ws": 1, "/ws/stream": 0}


def test_cors_allows_a_frontend_on_another_port(client: TestClient) -> None:
    answer = client.options(
        "/trigger/all",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] in ("*", "http://localhost:5173")


def test_cors_can_be_restricted(scenarios_dir: Path) -> None:
    settings = Settings(scenarios=scenarios_dir, isolated=True, cors_origins=["http://ok.test"])
    with LocalClient(create_app(settings)) as restricted:
        denied = restricted.options(
            "/trigger/all",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in denied.headers


def test_missing_scenarios_folder_is_503(tmp_path: Path) -> None:
    settings = Settings(scenarios=tmp_path / "absent", isolated=True)
    with LocalClient(create_app(settings)) as missing:
        answer = missing.post("/trigger/all")
        assert answer.status_code == 503
        assert "does not exist" in answer.json()["detail"]


def test_client_garbage_is_ignored(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_text("not json {")
        ws.send_bytes(b"\x00\xff")
        ws.send_text('{"message_type": "CHAT_INPUT", "message": "hi"}')
        client.post("/trigger/messages?speed=0")
        assert ws.receive_text() == MESSAGES[0]


def test_concurrent_runs_both_play(client: TestClient) -> None:
    first = client.post("/trigger/messages?wait=false&speed=0.5").json()["run_id"]
    second = client.post("/trigger/stream?wait=false&speed=0.5").json()["run_id"]
    states = {run["run_id"]: run["state"] for run in client.get("/runs").json()["runs"]}
    assert states[first] == states[second] == "running"
    for run_id in (first, second):
        client.delete(f"/runs/{run_id}")
    assert {client.get(f"/runs/{r}").json()["state"] for r in (first, second)} == {"cancelled"}


def test_openapi_lists_the_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/trigger/{scenario}", "/scenarios", "/runs/{run_id}", "/healthz"} <= paths.keys()


# The scenario language's routes: trigger bodies, clients, and the scenarios' new fields.
# These use a folder of their own, so the shipped examples (reactions, greetings) never
# interfere.

OWN_SCENARIOS = {
    "mark": "steps:\n  - message: EVENT\n    text: mark\n",
    "greeting": """
vars:
  user: World
  punctuation: "!"
steps:
  - message: CHAT
    text: "Hello {{ vars.user }}{{ vars.punctuation }} {{ randint(1, 1000000) }}"
""",
    "outer": """
vars:
  mood: calm
steps:
  - play: greeting
  - message: EVENT
    text: "{{ vars.mood }}"
""",
    "ask": """
delay: 0.5
steps:
  - message: CHAT_REQUESTED
    text: What now?
  - wait: CHAT_INPUT
    timeout: 2s
  - message: CHAT
    text: "You said: {{ received.message }}"
    to: b
  - binary: AAEC
  - disconnect: all
    code: 4000
    reason: done
""",
    "react": """
reacts_to:
  message: PAUSE_REQUEST
  match: "^pause"
to: sender
steps:
  - message: PAUSE_STATUS
    text: "paused ({{ received.message }})"
""",
    "greet": """
on_connect: true
steps:
  - message: EVENT
    text: "hi {{ sender }}"
""",
    "ticker": """
steps:
  - repeat: forever
    steps:
      - message: EVENT
        text: "tick {{ iteration }}"
        delay: 1s
""",
    "answer-sender": """
steps:
  - message: PAUSE_STATUS
    text: for the sender
    to: sender
""",
}
MARK_FRAME = '{"message_type":"EVENT","message":"mark"}'


@pytest.fixture
def own(tmp_path: Path) -> Iterator[TestClient]:
    """A server on a folder of OWN_SCENARIOS (without 'greet', which greets on connect)."""
    folder = tmp_path / "own"
    folder.mkdir()
    for name, text in OWN_SCENARIOS.items():
        if name != "greet":
            (folder / f"{name}.yaml").write_text(text)
    with LocalClient(create_app(Settings(scenarios=folder, isolated=True))) as test_client:
        yield test_client


def test_trigger_body_gives_vars_seed_and_client(own: TestClient) -> None:
    with (
        own.websocket_connect("/ws?client_id=a") as a,
        own.websocket_connect("/ws?client_id=b") as b,
    ):
        body = {"vars": {"user": "Ada"}, "seed": 5, "client": "a"}
        answer = own.post("/trigger/greeting?speed=0", json=body)
        assert answer.status_code == 200, answer.json()
        run = answer.json()
        assert (run["vars"], run["seed"], run["client"]) == ({"user": "Ada"}, 5, "a")
        first = json.loads(a.receive_text())["message"]
        assert first.startswith("Hello Ada! ")
        own.post("/trigger/mark?speed=0")
        assert a.receive_text() == MARK_FRAME
        assert b.receive_text() == MARK_FRAME  # b got nothing of the targeted run

        # The same seed renders the same random value again.
        own.post("/trigger/greeting?speed=0", json=body)
        assert json.loads(a.receive_text())["message"] == first


def test_trigger_query_wins_over_the_body(own: TestClient) -> None:
    with (
        own.websocket_connect("/ws?client_id=a") as a,
        own.websocket_connect("/ws?client_id=b") as b,
    ):
        answer = own.post(
            "/trigger/greeting?speed=0&seed=3&client=b", json={"seed": 5, "client": "a"}
        )
        assert (answer.json()["seed"], answer.json()["client"]) == (3, "b")
        assert json.loads(b.receive_text())["message"].startswith("Hello World! ")
        own.post("/trigger/mark?speed=0")
        assert a.receive_text() == MARK_FRAME


def test_trigger_vars_reach_played_scenarios(own: TestClient) -> None:
    with own.websocket_connect("/ws") as ws:
        answer = own.post("/trigger/outer?speed=0", json={"vars": {"user": "Ada", "mood": "glad"}})
        assert answer.status_code == 200, answer.json()
        assert json.loads(ws.receive_text())["message"].startswith("Hello Ada! ")
        assert json.loads(ws.receive_text())["message"] == "glad"


def test_trigger_unknown_vars_are_422_with_the_declared_ones(own: TestClient) -> None:
    answer = own.post("/trigger/outer", json={"vars": {"usr": "Ada", "mood": "glad"}})
    assert answer.status_code == 422
    body = answer.json()
    assert body["scenario"] == "outer"
    assert body["unknown"] == ["usr"]
    assert body["declared"] == ["mood", "punctuation", "user"]
    assert "'usr'" in body["detail"]
    assert "did you mean 'user'?" in body["detail"]
    assert own.get("/runs").json()["runs"] == []  # nothing played


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("client=has%20space", None),
        ("client=" + "x" * 65, None),
        ("client=", None),
        ("seed=-1", None),
        ("seed=abc", None),
        ("", {"client": "has space"}),
        ("", {"client": "x" * 65}),
        ("", {"seed": -1}),
        ("", {"seed": 2**63}),
        ("", {"vars": ["user"]}),
        ("", {"vars": {}, "speed": 2}),  # a key the body does not take
        ("", {"variables": {"user": "Ada"}}),
        ("", ["vars"]),
    ],
)
def test_trigger_refuses_bad_query_and_body(own: TestClient, query: str, body: object) -> None:
    answer = own.post(f"/trigger/greeting?{query}", json=body)
    assert answer.status_code == 422, answer.json()
    assert own.get("/runs").json()["runs"] == []


def test_trigger_with_client_makes_it_the_sender(own: TestClient) -> None:
    # The failure a 'to: sender' step gives without a sender says "trigger it with
    # ?client=ID": so a run triggered for a client has that client as its sender.
    with own.websocket_connect("/ws?client_id=a") as a:
        answer = own.post("/trigger/answer-sender?speed=0&client=a")
        assert answer.status_code == 200, answer.json()
        assert json.loads(a.receive_text())["message"] == "for the sender"


def test_to_sender_without_a_sender_fails_the_run_saying_why(own: TestClient) -> None:
    answer = own.post("/trigger/answer-sender?speed=0")
    assert answer.status_code == 500
    body = answer.json()
    assert body["status"] == "failed"
    assert "'to: sender'" in body["error"]


def test_clients_lists_every_connection(own: TestClient) -> None:
    assert own.get("/clients").json() == {"clients": []}
    with own.websocket_connect("/ws?client_id=web-1") as ws, own.websocket_connect("/ws/stream"):
        ws.send_text('{"message_type":"CHAT_INPUT","message":"hi"}')
        own.post("/trigger/mark?speed=0")
        assert ws.receive_text() == MARK_FRAME
        listed = own.get("/clients").json()["clients"]
    assert [c["endpoint"] for c in listed] == ["/ws", "/ws/stream"]  # oldest first
    for entry in listed:
        assert set(entry) == {
            "client_id",
            "endpoint",
            "connected_at",
            "connected_since",
            "sent",
            "received",
            "received_bytes",
            "ignored",
            "throttled",
            "skipped",
            "backlog",
        }
        assert entry["connected_since"].endswith("Z")
    web, anonymous = listed
    assert web["client_id"] == "web-1"
    assert (web["sent"], web["received"]) == (1, 1)
    assert len(anonymous["client_id"]) == 8  # made up by the server
    assert (anonymous["sent"], anonymous["received"]) == (0, 0)
    assert own.get("/clients").json() == {"clients": []}


def test_scenarios_list_the_new_fields(own: TestClient, tmp_path: Path) -> None:
    (tmp_path / "own" / "greet.yaml").write_text(OWN_SCENARIOS["greet"])
    listed = {s["name"]: s for s in own.get("/scenarios").json()["scenarios"]}
    greeting = listed["greeting"]
    assert greeting["vars"] == {"user": "World", "punctuation": "!"}
    assert (greeting["reacts_to"], greeting["on_connect"]) == (None, False)
    assert (greeting["frames"], greeting["waits"], greeting["duration_s"]) == (1, 0, 0)
    assert listed["outer"]["vars"] == {"mood": "calm", "user": "World", "punctuation": "!"}
    ask = listed["ask"]
    assert (ask["frames"], ask["waits"]) == (3, 1)
    assert ask["duration_s"] == pytest.approx(1.5)  # as if answered at once
    assert listed["react"]["reacts_to"] == {
        "message": "PAUSE_REQUEST",
        "match": "^pause",
        "fields": None,
    }
    assert listed["greet"]["on_connect"] is True
    ticker = listed["ticker"]
    assert ticker["valid"] is True
    assert ticker["duration_s"] is None  # forever
    assert ticker["frames"] is None


def test_scenario_detail_timeline_has_kinds_and_targets(own: TestClient) -> None:
    detail = own.get("/scenarios/ask").json()
    shown = [(c["kind"], c["endpoint"], c["to"]) for c in detail["timeline"]]
    assert shown == [
        ("frame", "/ws", None),
        ("wait", "/ws", None),
        ("frame", "/ws", "b"),
        ("binary", "/ws", None),
        ("disconnect", "/ws", None),
        ("disconnect", "/ws/stream", None),
    ]
    for cue in detail["timeline"]:
        assert {"offset", "kind", "endpoint", "to", "frame", "scenario", "step"} <= cue.keys()
    assert "CHAT_INPUT" in detail["timeline"][1]["frame"]
    assert "4000" in detail["timeline"][4]["frame"]
    assert detail["steps"][1] == {"wait": "CHAT_INPUT", "timeout": 2.0, "on_timeout": "fail"}


def test_scenario_detail_of_a_forever_scenario_is_cut_off(own: TestClient) -> None:
    detail = own.get("/scenarios/ticker").json()
    assert detail["duration_s"] is None
    assert len(detail["timeline"]) > 100
    assert detail["timeline"][2]["frame"] == '{"message_type":"EVENT","message":"tick 2"}'


def test_a_reaction_in_process(own: TestClient) -> None:
    with own.websocket_connect("/ws?client_id=a") as a:
        a.send_text('{"message_type":"PAUSE_REQUEST","message":"not now"}')  # no match
        a.send_text('{"message_type":"PAUSE_REQUEST","message":"pause please"}')
        assert json.loads(a.receive_text()) == {
            "message_type": "PAUSE_STATUS",
            "message": "paused (pause please)",
        }
        own.post("/trigger/mark?speed=0")
        assert a.receive_text() == MARK_FRAME
    runs = own.get("/runs").json()["runs"]
    assert [
        (r["scenario"], r["started_by"], r["sender"]) for r in runs if r["scenario"] == "react"
    ] == [("react", "reaction", "a")]


def test_a_reaction_with_a_catastrophic_pattern_in_process(tmp_path: Path) -> None:
    # Issue 10: with Python's re, this pattern on the first frame blocked the server for
    # longer than any test runs (2^10000 steps); on RE2 the reaction answers the second.
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "name.yaml").write_text(
        "reacts_to:\n  message: CHAT_INPUT\n  match: '^(\\w+\\s?)+$'\n"
        "to: sender\nsteps:\n  - message: EVENT\n    text: a name\n"
    )
    with (
        LocalClient(create_app(Settings(scenarios=folder, isolated=True))) as app,
        app.websocket_connect("/ws?client_id=a") as a,
    ):
        a.send_text(json.dumps({"message_type": "CHAT_INPUT", "message": "a" * 10_000 + "!"}))
        a.send_text(json.dumps({"message_type": "CHAT_INPUT", "message": "Ada Lovelace"}))
        assert json.loads(a.receive_text()) == {"message_type": "EVENT", "message": "a name"}
    runs = app.get("/runs").json()["runs"]
    assert [r["scenario"] for r in runs] == ["name"]


def test_on_connect_in_process(tmp_path: Path) -> None:
    folder = tmp_path / "greeting"
    folder.mkdir()
    (folder / "greet.yaml").write_text(OWN_SCENARIOS["greet"])
    (folder / "mark.yaml").write_text(OWN_SCENARIOS["mark"])
    with (
        LocalClient(create_app(Settings(scenarios=folder, isolated=True))) as app,
        app.websocket_connect("/ws?client_id=first") as first,
    ):
        assert json.loads(first.receive_text())["message"] == "hi first"
        with app.websocket_connect("/ws?client_id=second") as second:
            assert json.loads(second.receive_text())["message"] == "hi second"
            app.post("/trigger/mark?speed=0")
            assert first.receive_text() == MARK_FRAME
            assert second.receive_text() == MARK_FRAME


def test_drop_without_uvicorn_falls_back_to_a_close_frame(own: TestClient, tmp_path: Path) -> None:
    # The TestClient has no TCP transport to cut: the client sees 1011 instead.

    (tmp_path / "own" / "crash.yaml").write_text("steps:\n  - drop: /ws\n")
    with own.websocket_connect("/ws") as ws:
        assert own.post("/trigger/crash?speed=0").status_code == 200
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert (closed.value.code, closed.value.reason) == (1011, "connection dropped")


def test_an_unplayable_on_connect_scenario_leaves_the_connection_alone(tmp_path: Path) -> None:
    folder = tmp_path / "missing-greeting"
    folder.mkdir()
    (folder / "mark.yaml").write_text(OWN_SCENARIOS["mark"])
    (folder / "broken.yaml").write_text("steps:\n  - message: EVNT\n    text: x\n")
    settings = Settings(scenarios=folder, isolated=True, on_connect=["absent", "broken"])
    with (
        LocalClient(create_app(settings)) as app,
        app.websocket_connect("/ws") as ws,
    ):
        assert app.post("/trigger/mark?speed=0").status_code == 200
        assert ws.receive_text() == MARK_FRAME
        assert app.get("/runs").json()["runs"][0]["scenario"] == "mark"


def test_a_connection_to_either_endpoint_reaches_the_runs_waiting_for_it(tmp_path: Path) -> None:
    folder = tmp_path / "connecting"
    folder.mkdir()
    (folder / "back.yaml").write_text(
        "steps:\n"
        "  - wait_connect: any\n"
        "    endpoint: /ws/stream\n"
        "    timeout: 5s\n"
        "    on_timeout: continue\n"
        "  - chunk: 'hello {{ sender }}'\n"
        "    to: late\n"
        "  - wait_connect: any\n"
        "    endpoint: /ws\n"
        "    timeout: 5s\n"
        "    on_timeout: continue\n"
        "  - message: EVENT\n"
        "    text: 'welcome {{ sender }}'\n"
        "    to: tab\n"
    )
    with (
        LocalClient(create_app(Settings(scenarios=folder, isolated=True))) as app,
        app.websocket_connect("/ws?client_id=tab") as tab,
    ):
        run_id = app.post("/trigger/back?wait=false").json()["run_id"]
        deadline = time.monotonic() + PATIENCE
        while app.get(f"/runs/{run_id}").json()["waiting"] is None:
            assert time.monotonic() < deadline, "the run never waited for a connection"
            time.sleep(0.01)
        assert app.get(f"/runs/{run_id}").json()["waiting"] == (
            "a connection from any client to /ws/stream"
        )
        with app.websocket_connect("/ws/stream?client_id=late") as late:
            assert json.loads(late.receive_text())["content"] == "hello late"
            # tab was there all along: the second wait takes it at once
            assert json.loads(tab.receive_text())["message"] == "welcome tab"
    assert app.get(f"/runs/{run_id}").json()["state"] == "finished"


# The observability routes: the event feed (GET /events, Server-Sent Events, on a live
# server), the dashboard's pages and files. Reads wait for their event with a bound.

#: How long the tests wait for an event (the watcher looks once a second).
PATIENCE = 10.0

Event = dict[str, Any]


class EventStream:
    """GET /events on a live server, read line by line by a thread."""

    def __init__(self, base: str, query: str = "") -> None:
        parts = urllib.parse.urlsplit(base)
        assert parts.hostname is not None
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.connection.request("GET", f"/events{query}", headers={"Accept": "text/event-stream"})
        self.sock = self.connection.sock
        # The headers come once the route has subscribed: nothing published after is missed.
        self.response = self.connection.getresponse()
        self.lines: queue.Queue[str] = queue.Queue()
        self.events: queue.Queue[Event] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the test closed the connection
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                self.lines.put(line)
                if line.startswith("data:"):
                    self.events.put(json.loads(line.removeprefix("data:")))

    def until(self, done: Callable[[Event], bool], timeout: float = PATIENCE) -> list[Event]:
        """Every event up to and including the first for which ``done`` is true."""
        deadline = time.monotonic() + timeout
        seen: list[Event] = []
        while True:
            try:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no such event within {timeout}s; saw {[e['event'] for e in seen]}")
            seen.append(event)
            if done(event):
                return seen

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.reader.join(5)


@contextlib.contextmanager
def event_stream(live: LiveServer, query: str = "") -> Iterator[EventStream]:
    stream = EventStream(live.url, query)
    try:
        yield stream
    finally:
        stream.close()


def trigger(live: LiveServer, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{live.url}{path}", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=PATIENCE) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return body


def is_event(kind: str, **fields: Any) -> Callable[[Event], bool]:
    return lambda event: (
        event["event"] == kind and all(event.get(key) == value for key, value in fields.items())
    )


def wait_for(condition: Callable[[], bool], timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not so after {timeout}s"
        time.sleep(0.01)


def test_events_stream_a_run_in_order(live_server: LiveServer) -> None:
    with event_stream(live_server) as stream:
        assert stream.response.status == 200
        assert stream.response.getheader("content-type", "").startswith("text/event-stream")
        assert stream.response.getheader("cache-control") == "no-cache"
        assert live_server.replay.feed.subscribers
        run_id = trigger(live_server, "/trigger/messages?speed=0")["run_id"]
        seen = stream.until(is_event("run.finished", run_id=run_id))
        lines = [stream.lines.get(timeout=PATIENCE) for _ in range(3)]
    ours = [event for event in seen if event.get("run_id") == run_id]
    assert [event["event"] for event in ours] == [
        "run.started",
        *["run.step", "frame.sent"] * 4,
        "run.finished",
    ]
    frames = [event["frame"] for event in ours if event["event"] == "frame.sent"]
    assert [json.loads(frame)["message_type"] for frame in frames] == [
        "CHAT_REQUESTED",
        "IS_WAITING",
        "EVENT",
        "PAUSE_STATUS",
    ]
    assert ours[0]["run"]["scenario"] == "messages"
    assert ours[-1]["run"]["state"] == "finished"
    assert ours[-1]["run"]["sent"] == 4
    seqs = [event["seq"] for event in seen]
    assert seqs == sorted(seqs)
    # The wire format: a retry hint, then "id: seq" and "data: json" per event.
    assert lines[0] == "retry: 1000"
    assert lines[1] == ""
    assert lines[2] == f"id: {seen[0]['seq']}"


def test_events_kinds_filters_by_kind_and_prefix(live_server: LiveServer) -> None:
    with event_stream(live_server, "?kinds=run.,client.disconnected") as stream:
        with ws_connect(f"{live_server.ws_url}/ws?client_id=filtered", open_timeout=PATIENCE):
            run_id = trigger(live_server, "/trigger/stream?speed=0")["run_id"]
        seen = stream.until(is_event("client.disconnected", client="filtered"))
    kinds = [event["event"] for event in seen]
    assert all(kind.startswith("run.") or kind == "client.disconnected" for kind in kinds)
    assert "client.connected" not in kinds
    assert "frame.sent" not in kinds
    ours = [event["event"] for event in seen if event.get("run_id") == run_id]
    assert ours == ["run.started", "run.step", "run.step", "run.step", "run.step", "run.finished"]


def test_events_show_clients_and_what_they_send(live_server: LiveServer) -> None:
    with event_stream(live_server, "?kinds=client.,frame.received") as stream:
        with ws_connect(f"{live_server.ws_url}/ws?client_id=watcher", open_timeout=PATIENCE) as ws:
            connected = stream.until(is_event("client.connected"))[-1]
            ws.send("hello from the client")
            received = stream.until(is_event("frame.received"))[-1]
        disconnected = stream.until(is_event("client.disconnected"))[-1]
    assert {key: connected[key] for key in ("client", "endpoint", "clients")} == {
        "client": "watcher",
        "endpoint": "/ws",
        "clients": 1,
    }
    assert {key: received[key] for key in ("client", "endpoint", "frame")} == {
        "client": "watcher",
        "endpoint": "/ws",
        "frame": "hello from the client",
    }
    assert (disconnected["client"], disconnected["clients"]) == ("watcher", 0)


def test_events_send_heartbeats_while_quiet(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay.server, "HEARTBEAT", 0.05)
    with event_stream(live_server, "?kinds=nothing.") as stream:
        deadline = time.monotonic() + PATIENCE
        while (line := stream.lines.get(timeout=max(0.0, deadline - time.monotonic()))) != (
            ": heartbeat"
        ):
            assert not line.startswith("data:"), line  # a comment, not an event


def test_an_events_client_that_goes_away_is_unsubscribed(live_server: LiveServer) -> None:
    with event_stream(live_server):
        wait_for(lambda: live_server.replay.feed.subscribers)
    wait_for(lambda: not live_server.replay.feed.subscribers)


def test_the_server_stops_with_an_events_client_connected(scenarios_dir: Path) -> None:
    live, server, thread = start_live_server(Settings(scenarios=scenarios_dir, isolated=True))
    stream = EventStream(live.url)
    try:
        wait_for(lambda: live.replay.feed.subscribers)
        server.should_exit = True
        thread.join(timeout=PATIENCE)
        assert not thread.is_alive()
        stream.reader.join(timeout=PATIENCE)
        assert not stream.reader.is_alive()  # the stream ended: the client saw its end
    finally:
        server.should_exit = True
        stream.close()
        thread.join(timeout=PATIENCE)


def write_whole(path: Path, text: str) -> None:
    """Write a file the watcher may look at any moment: whole or not at all (written
    beside it, then renamed), so that it never sees it half-written (empty, say)."""
    part = path.with_name(path.name + ".part")  # not a .yaml file: not a scenario
    part.write_text(text)
    part.replace(path)


def test_scenario_files_are_watched(live_server: LiveServer, scenarios_dir: Path) -> None:
    path = scenarios_dir / "probe.yaml"
    file = str(path)
    wait_until_watched(live_server)
    with event_stream(live_server, "?kinds=scenario.") as stream:
        write_whole(path, "steps:\n  - message: EVENT\n    text: hello\n")
        added = stream.until(is_event("scenario.added", scenario="probe"))[-1]
        assert added["file"] == file

        write_whole(path, "steps:\n  - message: EVNT\n    text: hello\n")
        invalid = stream.until(is_event("scenario.invalid", scenario="probe"))[-1]
        assert invalid["file"] == file
        problem = invalid["problems"][0]
        assert (problem["line"], problem["column"], problem["field"]) == (2, 5, "steps.0.message")
        assert "did you mean 'EVENT'?" in problem["message"]

        write_whole(path, "steps:\n  - message: EVENT\n    text: fixed again\n")
        changed = stream.until(is_event("scenario.changed", scenario="probe"))[-1]
        assert changed["file"] == file
        assert "problems" not in changed

        path.unlink()
        removed = stream.until(is_event("scenario.removed", scenario="probe"))[-1]
        assert removed["file"] == file
        # Another look later: nothing changed, nothing published (a marker proves it).
        write_whole(scenarios_dir / "zz-marker.yaml", "steps:\n  - chunk: x\n")
        later = stream.until(is_event("scenario.added", scenario="zz-marker"))
    assert [event["event"] for event in later] == ["scenario.added"]


def test_a_scenario_that_stays_broken_differently_is_published_again(
    live_server: LiveServer, scenarios_dir: Path
) -> None:
    path = scenarios_dir / "probe.yaml"
    wait_until_watched(live_server)
    with event_stream(live_server, "?kinds=scenario.") as stream:
        write_whole(path, "steps: [\n")
        first = stream.until(is_event("scenario.invalid", scenario="probe"))[-1]
        write_whole(path, "steps:\n  - sleep: -1\n")
        second = stream.until(is_event("scenario.invalid", scenario="probe"))[-1]
    assert first["problems"] != second["problems"]
    assert "zero or more" in second["problems"][0]["message"]


def test_editing_a_valid_scenario_publishes_changed(
    live_server: LiveServer, scenarios_dir: Path
) -> None:
    # The dashboard re-reads the scenario list on scenario.* events: an edit that keeps
    # the file valid (a new description, other steps) must be published too.
    path = scenarios_dir / "messages.yaml"
    wait_until_watched(live_server)
    with event_stream(live_server, "?kinds=scenario.") as stream:
        write_whole(
            path, "description: edited\nsteps:\n  - message: EVENT\n    text: only one now\n"
        )
        # Written after the edit, so any look that sees the marker has seen the edit.
        write_whole(scenarios_dir / "zz-marker.yaml", "steps:\n  - chunk: x\n")
        seen = stream.until(is_event("scenario.added", scenario="zz-marker"))
    assert [(event["event"], event["scenario"]) for event in seen] == [
        ("scenario.changed", "messages"),
        ("scenario.added", "zz-marker"),
    ]


def test_a_changed_protocol_file_is_published(live_server: LiveServer, scenarios_dir: Path) -> None:
    # The dashboard's protocol panel reads GET /protocol again on protocol.changed: an
    # edit that changes no scenario's problems publishes no scenario.* event.
    path = scenarios_dir / PROTOCOL_FILE
    shipped = path.read_text()
    wait_until_watched(live_server)
    with event_stream(live_server, "?kinds=protocol.,scenario.added") as stream:
        write_protocol(scenarios_dir, shipped + "endpoints:\n  /more: {messages: {}}\n")
        added = stream.until(is_event("protocol.changed"))[-1]
        assert (added["file"], added["problems"]) == (str(path), [])
        assert added["endpoints"] == ["/ws", "/ws/stream", "/more"]

        write_protocol(scenarios_dir, shipped + "endpoints:\n  /more: {messagez: {}}\n")
        broken = stream.until(is_event("protocol.changed"))[-1]
        assert broken["endpoints"] == ["/ws", "/ws/stream"]
        [problem] = broken["problems"]
        assert (problem["file"], problem["field"]) == (str(path), "endpoints./more.messagez")
        assert (problem["line"], problem["column"]) == (shipped.count("\n") + 2, 11)

        path.unlink()
        removed = stream.until(is_event("protocol.changed"))[-1]
        assert (removed["file"], removed["problems"]) == (None, [])
        # Another look later: nothing changed, nothing published (a marker proves it).
        write_whole(scenarios_dir / "zz-marker.yaml", "steps:\n  - chunk: x\n")
        later = stream.until(is_event("scenario.added", scenario="zz-marker"))
    assert [event["event"] for event in later] == ["scenario.added"]


def test_the_dashboard_is_served_at_the_root(client: TestClient) -> None:
    answer = client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    page = answer.text
    assert "replay" in page
    assert "<script" in page
    assert "/ui/dashboard.js" in page


def test_the_viewer_is_served(client: TestClient) -> None:
    answer = client.get("/viewer")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "/ui/viewer.js" in answer.text


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ui/dashboard.js", "javascript"),
        ("/ui/viewer.js", "javascript"),
        ("/ui/viewer.css", "text/css"),
        ("/ui/style.css", "text/css"),
        ("/ui/index.html", "text/html"),
    ],
)
def test_the_dashboard_files_are_served_with_their_types(
    client: TestClient, path: str, content_type: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 200
    assert content_type in answer.headers["content-type"]
    assert answer.content


def test_files_outside_the_dashboard_folder_are_not_served(client: TestClient) -> None:
    assert client.get("/ui/nope.js").status_code == 404
    assert client.get("/ui/../server.py").status_code == 404
    assert client.get("/ui/%2e%2e/server.py").status_code == 404


def test_openapi_lists_the_feed_and_metrics_but_not_the_pages(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/events", "/metrics"} <= paths.keys()
    assert "/" not in paths
    assert "/viewer" not in paths
    assert not [path for path in paths if path.startswith("/ui")]


# --- run shares: what clients start never crowds out the token holder's triggers ----------------

#: A reaction that plays for a minute: every matching frame holds a run that long.
SLOW_REACTION = "reacts_to:\n  message: PAUSE_REQUEST\nsteps:\n  - sleep: 60\n"
PAUSE_FRAME = '{"message_type":"PAUSE_REQUEST","message":"pause"}'


def poll(condition: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    """Wait until ``condition()`` holds, looking every few milliseconds; fail after ``limit``."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def test_a_clients_reactions_never_make_a_trigger_429(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "shares"
    folder.mkdir()
    (folder / "slow-react.yaml").write_text(SLOW_REACTION)
    for name in ("mark", "ticker"):
        (folder / f"{name}.yaml").write_text(OWN_SCENARIOS[name])
    app = create_app(Settings(scenarios=folder, isolated=True))
    replay_state = app.state.replay
    runner = replay_state.runner
    runner.max_active = 2  # triggers' share: small, so that a shared cap would show at once
    with LocalClient(app) as own, own.websocket_connect("/ws?client_id=eager") as ws:
        frames = runner.max_per_client + 5  # well within the client's frame rate
        for _ in range(frames):
            ws.send_text(PAUSE_FRAME)
        [eager] = replay_state.delivery.clients()
        poll(lambda: eager.received == frames, "the server read every frame")
        reactions = [run for run in runner.active if run.started_by == "reaction"]
        assert len(reactions) == runner.max_per_client
        assert eager.skipped == 5
        skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
        assert len(skipped) == 1, "logged once, not once per frame"
        assert "client eager already has 10 runs" in skipped[0].getMessage()
        # The token holder's triggers have a share of their own: the client took none of it.
        answer = own.post("/trigger/mark?speed=0")
        assert answer.status_code == 200, answer.json()
        assert ws.receive_text() == MARK_FRAME
        listed = {c["client_id"]: c for c in own.get("/clients").json()["clients"]}
        assert listed["eager"]["skipped"] == 5
        shares = own.get("/runs").json()["shares"]
        assert shares["trigger"] == {"active": 0, "limit": 2, "refused": 0}
        assert shares["client"]["active"] == runner.max_per_client
        assert shares["client"]["refused"] == 5
        # Triggers still have their cap: it answers 429, naming the share.
        for _ in range(2):
            assert own.post("/trigger/ticker?wait=false").status_code == 202
        refused = own.post("/trigger/ticker?wait=false")
        assert refused.status_code == 429
        assert (refused.json()["limit"], refused.json()["share"]) == (2, "trigger")


@pytest.mark.parametrize("rate", [0, -1.0, float("nan")])
def test_a_byte_rate_that_is_not_positive_is_refused_at_once(tmp_path: Path, rate: float) -> None:
    with pytest.raises(ValueError, match="client_bytes must be more than 0"):
        create_app(Settings(scenarios=tmp_path, isolated=True, client_bytes=rate))


def test_the_folder_is_read_and_plans_made_off_the_event_loop(
    scenarios_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing a 1 MiB file takes seconds, and planning a long scenario a tenth of one:
    # neither may run on the thread of the event loop, whatever the request.
    threads: dict[str, set[str]] = {"read": set(), "plan": set()}
    read, plan = replay.library.ScenarioLibrary.catalog, replay.planning.build_timeline

    def reading(self: replay.library.ScenarioLibrary) -> Any:
        threads["read"].add(threading.current_thread().name)
        return read(self)

    def planning(*args: Any, **kwargs: Any) -> Any:
        threads["plan"].add(threading.current_thread().name)
        return plan(*args, **kwargs)

    monkeypatch.setattr(replay.library.ScenarioLibrary, "catalog", reading)
    monkeypatch.setattr(replay.planning, "build_timeline", planning)
    app = create_app(Settings(scenarios=scenarios_dir, isolated=True))
    with LocalClient(app) as client, client.websocket_connect("/ws") as ws:
        assert client.get("/scenarios").status_code == 200
        assert client.get("/scenarios/agent-run").status_code == 200
        assert client.post("/trigger/messages?speed=0").status_code == 200
        assert json.loads(ws.receive_text())["message_type"] == "CHAT_REQUESTED"
    assert threads["read"]
    assert all(name.startswith("replay-read") for name in threads["read"]), threads
    assert threads["plan"]
    assert all(name.startswith("replay-plan") for name in threads["plan"]), threads


_JSON_TEXT = st.text(alphabet=st.characters(), max_size=8)  # surrogates included
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _JSON_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_JSON_TEXT, inner, max_size=3),
    max_leaves=8,
)


@hypothesis.settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    st.fixed_dictionaries({}, optional={"vars": _JSON, "seed": _JSON, "client": _JSON}) | _JSON
)
def test_property_no_trigger_body_is_a_server_error(client: TestClient, body: Any) -> None:
    # ASCII escapes, so that lone surrogates and NaN reach the server as a client sends them.
    raw = json.dumps(body, ensure_ascii=True).encode()
    answer = client.post(
        "/trigger/chat?speed=0&wait=false",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code in (202, 422), answer.text
    listed = client.get("/runs")
    assert listed.status_code == 200
    for run in listed.json()["runs"]:
        if run["state"] == "running":
            client.delete(f"/runs/{run['run_id']}")


ASK = "steps:\n  - message: CHAT_REQUESTED\n    text: go\n  - wait: CHAT_INPUT\n    timeout: 5m\n"


def test_the_journal_says_what_each_client_was_sent_and_sent_back(
    client: TestClient, scenarios_dir: Path
) -> None:
    (scenarios_dir / "ask.yaml").write_text(ASK + "  - message: EVENT\n    text: thanks\n")
    with (
        client.websocket_connect("/ws?client_id=a") as a,
        client.websocket_connect("/ws?client_id=b") as b,
    ):
        started = client.post("/trigger/ask?client=a&wait=false&speed=0").json()
        assert json.loads(a.receive_text())["message_type"] == "CHAT_REQUESTED"
        a.send_text(json.dumps({"message_type": "CHAT_INPUT", "message": "yes"}))
        assert json.loads(a.receive_text())["message"] == "thanks"
        client.post("/trigger/messages?speed=0")  # to everyone
        for _ in range(4):
            b.receive_text()
        of_a = client.get("/journal", params={"client": "a", "direction": "sent"}).json()
        assert [e["message_type"] for e in of_a["entries"]][:2] == ["CHAT_REQUESTED", "EVENT"]
        answers = client.get("/journal", params={"run": started["run_id"]}).json()["entries"]
        assert [(e["direction"], e["message_type"]) for e in answers] == [
            ("sent", "CHAT_REQUESTED"),
            ("received", "CHAT_INPUT"),
            ("sent", "EVENT"),
        ]
        assert answers[1]["client"] == "a"
        assert answers[1]["runs"] == [started["run_id"]]
        of_b = client.get("/journal", params={"client": "b", "direction": "sent"}).json()
        assert [e["message_type"] for e in of_b["entries"]] == [
            "CHAT_REQUESTED",
            "IS_WAITING",
            "EVENT",
            "PAUSE_STATUS",
        ]  # the four of `messages`, none of a's conversation


def test_reset_cancels_runs_and_forgets_the_journal_and_may_disconnect(
    client: TestClient, scenarios_dir: Path
) -> None:
    (scenarios_dir / "ask.yaml").write_text(ASK)
    with client.websocket_connect("/ws?client_id=a") as a:
        run = client.post("/trigger/ask?client=a&wait=false").json()
        a.receive_text()
        assert client.get("/journal").json()["entries"]
        answer = client.post("/reset")
        assert answer.json() == {"cancelled": 1, "forgotten": 1, "disconnected": 0}
        assert client.get("/runs").json()["runs"] == []
        assert client.get("/journal").json()["entries"] == []
        assert client.get(f"/runs/{run['run_id']}").status_code == 404
        assert client.post("/reset?disconnect=true").json()["disconnected"] == 1
        with pytest.raises(WebSocketDisconnect) as closed:
            a.receive_text()
        assert closed.value.code == 1012


def test_reset_puts_the_declared_state_back(client: TestClient) -> None:
    replay = client.app.state.replay  # type: ignore[attr-defined]
    replay.state.declare({"paused": True})
    assert client.put("/state", json={"paused": False, "extra": 1}).status_code == 200
    client.post("/reset")
    assert client.get("/state").json() == {"paused": True}


# --- run control: pause, resume, step, speed ------------------------------------------------

SLOW = """
steps:
  - message: EVENT
    text: t0
    delay: 60
  - message: EVENT
    text: t1
    delay: 60
  - message: EVENT
    text: t2
"""

ASKING = """
steps:
  - message: CHAT_REQUESTED
    text: Your name?
  - wait: CHAT_INPUT
    timeout: 60
  - message: EVENT
    text: "Hello {{ received.message }}"
"""


def started(client: TestClient, name: str, speed: float = 1.0) -> str:
    answer = client.post(f"/trigger/{name}?wait=false&speed={speed}")
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


def test_a_run_is_paused_stepped_sped_up_and_resumed(
    client: TestClient, scenarios_dir: Path
) -> None:
    (scenarios_dir / "slow.yaml").write_text(SLOW)
    with client.websocket_connect("/ws") as ws:
        run_id = started(client, "slow")
        assert json.loads(ws.receive_text())["message"] == "t0"
        paused = client.post(f"/runs/{run_id}/pause")
        assert paused.status_code == 200
        assert (paused.json()["paused"], paused.json()["run_id"]) == (True, run_id)
        assert client.post(f"/runs/{run_id}/pause").json()["paused"] is True  # no-op
        stepped = client.post(f"/runs/{run_id}/step")
        assert stepped.status_code == 200
        body = stepped.json()
        assert (body["stepped"]["kind"], body["stepped"]["step"]) == ("frame", "1")
        assert body["stepped"]["offset"] == 60.0
        assert body["paused"] is True
        assert body["sent"] == 2
        assert json.loads(ws.receive_text())["message"] == "t1"
        assert client.post(f"/runs/{run_id}/speed?speed=2").json()["speed"] == 2.0
        assert client.post(f"/runs/{run_id}/speed", json={"speed": 4}).json()["speed"] == 4.0
        resumed = client.post(f"/runs/{run_id}/resume")
        assert resumed.status_code == 200
        summary = resumed.json()
        assert summary["paused"] is False
        assert summary["paused_s"] > 0
        assert summary["frames_exact"] is True
        assert summary["expects"] == []
        assert client.delete(f"/runs/{run_id}").json()["state"] == "cancelled"
    for action in ("pause", "resume", "step", "speed?speed=2"):
        refused = client.post(f"/runs/{run_id}/{action}")
        assert refused.status_code == 409, action
        assert "already ended (cancelled)" in refused.json()["detail"]
        assert client.post(f"/runs/nope/{action}").status_code == 404


def test_a_bad_speed_is_422(client: TestClient, scenarios_dir: Path) -> None:
    (scenarios_dir / "slow.yaml").write_text(SLOW)
    run_id = started(client, "slow")
    for query in ("?speed=0", "?speed=1000000", "?speed=-1", "?speed=fast", ""):
        answer = client.post(f"/runs/{run_id}/speed{query}")
        assert answer.status_code == 422, query
    assert "give the new speed" in client.post(f"/runs/{run_id}/speed").json()["detail"]
    assert client.post(f"/runs/{run_id}/speed", json={"pace": 2}).status_code == 422
    assert client.get(f"/runs/{run_id}").json()["speed"] == 1.0
    client.delete(f"/runs/{run_id}")


def test_a_run_at_speed_0_has_no_speed_to_change(client: TestClient, scenarios_dir: Path) -> None:
    (scenarios_dir / "asking.yaml").write_text(ASKING)
    run_id = started(client, "asking", speed=0)
    answer = client.post(f"/runs/{run_id}/speed?speed=2")
    assert answer.status_code == 409
    assert "speed 0" in answer.json()["detail"]
    client.delete(f"/runs/{run_id}")


def test_a_step_cannot_skip_a_wait(client: TestClient, scenarios_dir: Path) -> None:
    (scenarios_dir / "asking.yaml").write_text(ASKING)
    with client.websocket_connect("/ws") as ws:
        run_id = started(client, "asking")
        ws.receive_text()
        deadline = time.monotonic() + 10
        while not client.get(f"/runs/{run_id}").json()["expects"]:
            assert time.monotonic() < deadline, "the run never began its wait"
            time.sleep(0.01)
        expects = client.get(f"/runs/{run_id}").json()["expects"]
        assert expects[0]["message_type"] == "CHAT_INPUT"
        assert expects[0]["example"] == '{"message_type":"CHAT_INPUT","message":""}'
        assert client.get(f"/runs/{run_id}").json()["frames_exact"] is False
        refused = client.post(f"/runs/{run_id}/step")
        assert refused.status_code == 409
        assert "waits for CHAT_INPUT from any client" in refused.json()["detail"]
        assert client.get(f"/runs/{run_id}").json()["paused"] is False
        # paused, the run takes the answer and holds before what follows it
        assert client.post(f"/runs/{run_id}/pause").status_code == 200
        ws.send_text(expects[0]["example"])
        while client.get(f"/runs/{run_id}").json()["expects"]:
            assert time.monotonic() < deadline, "the answer never ended the wait"
            time.sleep(0.01)
        assert client.get(f"/runs/{run_id}").json()["sent"] == 1
        stepped = client.post(f"/runs/{run_id}/step").json()["stepped"]
        assert stepped["kind"] == "frame"
        assert json.loads(ws.receive_text())["message"] == "Hello "
        ended = client.post(f"/runs/{run_id}/step").json()
        assert (ended["stepped"]["kind"], ended["state"]) == ("end", "finished")


def test_control_routes_need_the_token(scenarios_dir: Path) -> None:
    settings = Settings(scenarios=scenarios_dir, isolated=True, token="s3cret")
    with LocalClient(create_app(settings)) as client:
        for action in ("pause", "resume", "step", "speed?speed=2"):
            assert client.post(f"/runs/nope/{action}").status_code == 401
            allowed = client.post(
                f"/runs/nope/{action}", headers={"Authorization": "Bearer s3cret"}
            )
            assert allowed.status_code == 404
