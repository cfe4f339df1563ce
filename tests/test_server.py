"""Every route, in process (Starlette's TestClient; no sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from replay.server import Settings, create_app

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
    with TestClient(app) as test_client:
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


def test_edits_take_effect_on_the_next_trigger(client: TestClient, scenarios_dir: Path) -> None:
    path = scenarios_dir / "hello.yaml"
    path.write_text("steps:\n  - message: EVENT\n    text: first\n")
    with client.websocket_connect("/ws") as ws:
        client.post("/trigger/hello?speed=0")
        assert json.loads(ws.receive_text())["message"] == "first"
        path.write_text("steps:\n  - message: EVENT\n    text: second version\n")
        client.post("/trigger/hello?speed=0")
        assert json.loads(ws.receive_text())["message"] == "second version"


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


def test_trigger_follow_streams_json_lines(client: TestClient) -> None:
    answer = client.post("/trigger/stream?follow=true&speed=0")
    assert answer.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in answer.text.splitlines()]
    assert [e["event"] for e in events] == ["start", "frame", "frame", "frame", "frame", "end"]
    assert [e["frame"] for e in events[1:5]] == STREAM
    assert events[-1]["state"] == "finished"


@pytest.mark.parametrize("speed", ["-1", "1001", "fast"])
def test_trigger_refuses_bad_speeds(client: TestClient, speed: str) -> None:
    assert client.post(f"/trigger/messages?speed={speed}").status_code == 422


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
    with TestClient(create_app(settings)) as restricted:
        denied = restricted.options(
            "/trigger/all",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in denied.headers


def test_missing_scenarios_folder_is_503(tmp_path: Path) -> None:
    settings = Settings(scenarios=tmp_path / "absent", isolated=True)
    with TestClient(create_app(settings)) as missing:
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
