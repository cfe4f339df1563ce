"""Declared routes served in process (Starlette's TestClient, no sockets): answers, state,
hot reload, the guards, latency, and requests as client events for runs and reactions."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import replay.backend
from replay.clock import ManualClock
from replay.server import Replay, Settings, create_app
from tests.conftest import LocalClient
from tests.hostile import PATIENCE
from tests.protocols import CHAT, SCHWARM, SCHWARM_PROTOCOL, write_protocol

PAUSE_STATUS = """
reacts_to: {message: POST /break}
to: sender
steps:
  - message: PAUSE_STATUS
    text: "paused by {{ received.client }}"
"""


@dataclass
class Served:
    client: LocalClient
    replay: Replay
    folder: Path
    events: list[dict[str, Any]]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["event"] == kind]


@contextlib.contextmanager
def serve(folder: Path, protocol: str = SCHWARM_PROTOCOL, **settings: Any) -> Iterator[Served]:
    """A server in process on ``folder`` with the protocol file ``protocol``, and the
    feed's events as they are published."""
    folder.mkdir(exist_ok=True)
    (folder / "chat-http.yaml").write_text(CHAT)
    (folder / "pause-status.yaml").write_text(PAUSE_STATUS)
    write_protocol(folder, protocol)
    clock = settings.pop("clock", None)
    app = create_app(Settings(scenarios=folder, isolated=True, **settings), clock)
    server: Replay = app.state.replay
    events: list[dict[str, Any]] = []
    server.feed.recorders.append(events.append)
    with LocalClient(app) as client:
        yield Served(client, server, folder, events)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(tmp_path / "scenarios") as served:
        yield served


# --- answers -----------------------------------------------------------------------------


def test_the_pause_routes_read_and_flip_the_state(served: Served) -> None:
    client = served.client
    assert client.get("/break").json() is True
    answer = client.post("/break")
    assert (answer.status_code, answer.json()) == (200, False)
    assert answer.headers["content-type"] == "application/json"
    assert client.get("/break").json() is False
    assert client.get("/state").json()["paused"] is False


def test_chat_answers_the_input_and_keeps_it(served: Served) -> None:
    answer = served.client.post("/chat", params={"user_input": "Hi there"})
    assert answer.json() == "Hi there"
    assert served.client.get("/state").json() == {
        "paused": False,
        "waiting": False,
        "chat_input": "Hi there",
        "turns": 1,
    }


def test_parameters_status_and_the_request_as_templates_see_it(served: Served) -> None:
    assert served.client.get("/spans/1a2b").json() == {"id": "1a2b", "status_code": "OK"}
    answer = served.client.put(
        "/echo/a/b?x=1&x=2&items=3",
        json={"n": [1]},
        headers={"X-Custom": "yes"},
    )
    assert answer.status_code == 201
    echoed = answer.json()
    assert echoed["method"] == "PUT"
    assert echoed["path"] == "/echo/a/b"
    assert echoed["params"] == {"what": "a/b"}
    assert echoed["query"] == {"x": "2", "items": "3"}  # the last of a repeated parameter
    assert echoed["headers"]["x-custom"] == "yes"
    assert json.loads(echoed["body"]) == {"n": [1]}
    assert echoed["json"] == {"n": [1]}


def test_a_template_that_fails_answers_500_saying_why(served: Served) -> None:
    answer = served.client.get("/broken")
    assert answer.status_code == 500
    assert answer.json()["route"] == "GET /broken"
    assert "{{ request.json.missing }}" in answer.json()["detail"]
    assert "has no attribute 'missing'" in answer.json()["detail"]


def test_requests_no_route_takes_get_todays_404(served: Served, tmp_path: Path) -> None:
    plain = create_app(Settings(scenarios=tmp_path / "none", isolated=True))
    with LocalClient(plain) as before:
        for method, path in [("GET", "/nothing"), ("POST", "/break/x"), ("DELETE", "/spans/1")]:
            then = before.request(method, path)
            now = served.client.request(method, path)
            assert (
                (now.status_code, now.content)
                == (then.status_code, then.content)
                == (
                    404,
                    b'{"detail":"Not Found"}',
                )
            )
            assert dict(now.headers) == dict(then.headers)


def test_a_path_of_replays_own_with_another_method(served: Served) -> None:
    client = served.client
    assert client.post("/healthz").json() == "a route of the project's"
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.put("/healthz").status_code == 405  # as before: no route declared for it


def test_a_missing_trailing_slash_redirects_as_for_replays_own_routes(tmp_path: Path) -> None:
    stream = "routes:\n  - {path: /stream/, body: chunks}\n"
    with serve(tmp_path / "scenarios", stream) as served:
        answer = served.client.get("/stream", follow_redirects=False)
        assert answer.status_code == 307
        assert answer.headers["location"].endswith("/stream/")
        assert served.client.get("/stream").json() == "chunks"


def test_routes_are_read_again_on_every_request(served: Served) -> None:
    client = served.client
    assert client.get("/breakpoint/turns").json() == 1
    assert client.post("/break").json() is False  # paused: set by a route
    write_protocol(
        served.folder,
        """
routes:
  - path: /breakpoint
    body: {on_start: "{{ state.on_start }}"}
  - path: /breakpoint/turns
    body: {turn_amount: "{{ state.turns }}"}
state: {paused: true, waiting: false, chat_input: "", turns: 5, on_start: false}
""",
    )
    # The edited route answers at once; a new key, or a changed declared value, takes
    # effect; values set stay.
    assert client.get("/breakpoint/turns").json() == {"turn_amount": 5}
    assert client.get("/breakpoint").json() == {"on_start": False}
    assert client.get("/break").status_code == 404  # no longer declared
    assert client.get("/state").json()["paused"] is False
    assert served.of("state.changed")[-1]["changes"] == {"turns": 5, "on_start": False}
    assert served.of("state.changed")[-1]["by"] == "protocol file"


def test_get_routes_lists_the_declared_routes_in_order(served: Served) -> None:
    routes = served.client.get("/routes").json()["routes"]
    assert [r["key"] for r in routes] == [r.key for r in SCHWARM.routes]
    assert routes[0] == {
        "key": "GET /break",
        "method": "GET",
        "path": "/break",
        "status": 200,
        "description": "Whether the run is paused.",
        "latency": 0.0,
        "sets": [],
    }
    assert routes[-1]["latency"] == 5.0


def test_without_a_protocol_file_there_are_no_routes(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    with LocalClient(create_app(Settings(scenarios=folder, isolated=True))) as client:
        assert client.get("/routes").json() == {"routes": []}
        assert client.get("/state").json() == {}
        assert client.get("/break").status_code == 404


# --- state -------------------------------------------------------------------------------


def test_put_state_sets_keys_and_answers_the_state(served: Served) -> None:
    answer = served.client.put("/state", json={"paused": False, "spans": [{"id": "a"}]})
    assert answer.status_code == 200
    assert answer.json() == {
        "paused": False,
        "waiting": False,
        "chat_input": "",
        "turns": 1,
        "spans": [{"id": "a"}],
    }
    assert served.client.get("/break").json() is False
    [changed] = served.of("state.changed")[-1:]
    assert changed["changes"] == {"paused": False, "spans": [{"id": "a"}]}
    assert changed["by"] == "PUT /state"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"bad-key": 1}', "'bad-key' is not a state key"),
        ('{"x": NaN}', "values must be plain JSON: no NaN or Infinity"),
        ('{"x": "\\ud800"}', "values must be valid Unicode text"),
    ],
)
def test_put_state_refuses_what_templates_could_not_read(
    served: Served, body: str, detail: str
) -> None:
    answer = served.client.put("/state", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(detail)
    assert served.client.get("/state").json() == dict(SCHWARM.state)


def test_put_state_takes_only_an_object(served: Served) -> None:
    assert served.client.put("/state", json=[1, 2]).status_code == 422


def test_the_state_has_a_bounded_number_of_keys(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay.backend, "MAX_STATE_KEYS", 6)
    assert served.client.put("/state", json={"a": 1, "b": 2}).status_code == 200
    answer = served.client.put("/state", json={"c": 3})
    assert answer.status_code == 422
    assert answer.json()["detail"] == "the state would hold 7 keys: it holds at most 6"
    assert served.client.put("/state", json={"a": 5}).status_code == 200  # a key it holds


def test_every_change_is_a_feed_event(served: Served) -> None:
    served.client.post("/break")
    served.client.put("/state", json={"turns": 3})
    served.client.post("/reset")
    changes = [(event["changes"], event["by"]) for event in served.of("state.changed")]
    assert changes[-3:] == [
        ({"paused": False}, "route POST /break"),
        ({"turns": 3}, "PUT /state"),
        (dict(SCHWARM.state), "reset"),
    ]
    assert served.client.get("/state").json() == dict(SCHWARM.state)


# --- requests as events ------------------------------------------------------------------


def test_each_request_is_a_feed_event_and_in_the_journal(served: Served) -> None:
    served.client.post("/chat?user_input=Hi&client_id=tab-1")
    [event] = served.of("http.request")
    assert {
        key: event[key] for key in ("method", "path", "route", "status", "client", "query")
    } == {
        "method": "POST",
        "path": "/chat",
        "route": "/chat",
        "status": 200,
        "client": "tab-1",
        "query": {"user_input": "Hi", "client_id": "tab-1"},
    }
    assert (event["message_type"], event["endpoint"], event["runs"]) == ("POST /chat", "http", [])
    [entry] = served.client.get("/journal", params={"endpoint": "http"}).json()["entries"]
    assert entry["direction"] == "received"
    assert (entry["client"], entry["message_type"], entry["status"]) == ("tab-1", "POST /chat", 200)
    assert json.loads(entry["frame"])["query"]["user_input"] == "Hi"
    typed = served.client.get("/journal", params={"message_type": "POST /chat"}).json()
    assert [e["seq"] for e in typed["entries"]] == [entry["seq"]]


def test_the_client_is_named_by_the_query_or_a_header(served: Served) -> None:
    served.client.get("/break?client_id=tab-1")
    served.client.get("/break", headers={"X-Replay-Client": "tab-2"})
    served.client.get("/break")
    assert [event["client"] for event in served.of("http.request")] == ["tab-1", "tab-2", "http"]


@pytest.mark.parametrize("name", ["bad id", "x" * 65, "é"])
def test_a_client_id_that_is_not_one_is_refused(served: Served, name: str) -> None:
    answer = served.client.post("/break", params={"client_id": name})
    assert answer.status_code == 422
    assert "is not a client id: expected 1 to 64 letters" in answer.json()["detail"]
    assert served.client.get("/state").json()["paused"] is True  # nothing was set
    assert served.of("http.request") == []


def test_a_scenario_waiting_for_a_request_continues_with_it(served: Served) -> None:
    client = served.client
    with client.websocket_connect("/ws?client_id=tab-1") as ws:
        run = client.post("/trigger/chat-http?wait=false").json()
        assert json.loads(ws.receive_text())["message_type"] == "CHAT_REQUESTED"
        assert client.post("/chat", params={"user_input": " "}).json() == " "  # no match
        assert client.get(f"/runs/{run['run_id']}").json()["state"] == "running"
        answer = client.post("/chat", params={"user_input": "Go", "client_id": "tab-1"})
        assert answer.json() == "Go"
        assert json.loads(ws.receive_text()) == {
            "message_type": "CHAT",
            "message": "You said: Go (tab-1)",
        }
    summary = client.get(f"/runs/{run['run_id']}").json()
    assert summary["mailbox"]["taken"] == 1
    assert served.of("http.request")[-1]["runs"] == [run["run_id"]]


def test_a_run_for_one_client_takes_only_its_requests(served: Served) -> None:
    client = served.client
    run = client.post("/trigger/chat-http?wait=false&client=tab-1").json()
    client.post("/chat", params={"user_input": "not mine", "client_id": "tab-2"})
    assert served.of("http.request")[-1]["runs"] == []
    client.post("/chat", params={"user_input": "mine"}, headers={"X-Replay-Client": "tab-1"})
    assert served.of("http.request")[-1]["runs"] == [run["run_id"]]


def test_a_request_no_run_takes_starts_reactions(served: Served) -> None:
    with served.client.websocket_connect("/ws?client_id=tab-1") as ws:
        served.client.post("/break", params={"client_id": "tab-1"})
        assert json.loads(ws.receive_text()) == {
            "message_type": "PAUSE_STATUS",
            "message": "paused by tab-1",
        }
    runs = served.client.get("/runs").json()["runs"]
    assert [(r["scenario"], r["started_by"], r["sender"]) for r in runs] == [
        ("pause-status", "reaction", "tab-1")
    ]


# --- guards and limits -------------------------------------------------------------------


def test_declared_routes_are_behind_the_token(tmp_path: Path) -> None:
    with serve(tmp_path / "scenarios", token="s3cret-token") as served:
        client = served.client
        assert client.get("/break").status_code == 401
        assert client.get("/state").status_code == 401
        assert client.get("/routes").status_code == 401
        bearer = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/break", headers=bearer).json() is True
        echoed = client.put("/echo/x?token=s3cret-token&keep=1", headers=bearer).json()
        assert echoed["query"] == {"keep": "1"}
        assert "authorization" not in echoed["headers"]
        other = {"X-Replay-Token": "s3cret-token", "X-Other": "kept"}
        echoed = client.put("/echo/x", headers=other).json()
        assert echoed["headers"]["x-other"] == "kept"
        assert "x-replay-token" not in echoed["headers"]
        text = json.dumps(served.events)
        assert "s3cret-token" not in text  # nor in the feed, nor in the journal


def test_declared_routes_are_behind_the_host_and_origin_guards(served: Served) -> None:
    client = served.client
    assert client.get("/break", headers={"Host": "evil.example"}).status_code == 403
    assert client.post("/break", headers={"Origin": "http://evil.example"}).status_code == 403
    answer = client.post("/break", headers={"Origin": "http://localhost:5173"})
    assert (answer.status_code, answer.json()) == (200, False)
    assert answer.headers["access-control-allow-origin"] == "http://localhost:5173"
    preflight = client.options(
        "/state",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"},
    )
    assert preflight.status_code == 200
    assert client.get("/state").json()["paused"] is False  # only the allowed page's POST


def test_request_bodies_are_bounded(served: Served) -> None:
    answer = served.client.put("/echo/x", content=b"x" * (1024 * 1024 + 1))
    assert answer.status_code == 413
    assert served.of("http.request") == []


def test_latency_waits_on_the_servers_clock_and_holds_nothing_else(tmp_path: Path) -> None:
    clock = ManualClock()
    with serve(tmp_path / "scenarios", clock=clock) as served:
        answers: list[Any] = []
        slow = threading.Thread(target=lambda: answers.append(served.client.get("/slow")))
        slow.start()
        deadline = time.monotonic() + PATIENCE
        while not clock._sleepers:  # the request waits for its latency
            assert time.monotonic() < deadline, "the slow request never began to wait"
            time.sleep(0.01)
        assert clock._sleepers[0][0] == pytest.approx(5.0)
        assert served.client.get("/break").json() is True  # answered meanwhile
        assert answers == []
        served.client.portal.call(clock.advance, 5.0)  # type: ignore[union-attr]
        slow.join(PATIENCE)
        assert [answer.json() for answer in answers] == ["late"]


SET_AND_READ = """
steps:
  - set: {turns: "{{ state.turns + 1 }}"}
  - message: EVENT
    text: "turn {{ state.turns }}, paused {{ state.paused }}"
"""


def test_runs_and_routes_share_the_servers_state(served: Served) -> None:
    (served.folder / "turn.yaml").write_text(SET_AND_READ)
    with served.client.websocket_connect("/ws") as ws:
        served.client.post("/break")  # a route sets paused
        served.client.post("/trigger/turn")  # a run reads it and sets turns
        assert json.loads(ws.receive_text())["message"] == "turn 2, paused False"
    assert served.client.get("/breakpoint/turns").json() == 2  # a route reads what it set
    by = [event["by"] for event in served.of("state.changed")]
    assert by[-2] == "route POST /break"
    assert by[-1].startswith("run ")
