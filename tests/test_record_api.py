"""The recordings' HTTP API (replay/record/api.py): GET /recordings, GET
/recordings/{session} (paged), POST /recordings/{session}/convert (501 for now), and names
that never leave the folder, sent exactly as written to a real server."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import replay.record.api
from replay.record.format import text_frame
from replay.server import Settings, create_app
from tests.conftest import LocalClient
from tests.hostile import PATIENCE, serving
from tests.recorded_files import write_recording

SESSION = "3f2a9c0e1b7d"
SECRET = "TOP-SECRET-RECORDING"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A recordings folder: a clean recording, a cut-short one, an unreadable one, and a
    recording outside the folder that must never be served."""
    where = tmp_path / "recordings"
    write_recording(where, SESSION)
    write_recording(where, "0000aa", ended=False, started=1733260100.0, tail='{"t": 9')
    (where / "0000bb.jsonl").write_text("garbage\n")
    write_recording(tmp_path, "0000cc", [text_frame(0.0, "server", SECRET)])
    (where / "0000dd.jsonl").symlink_to(tmp_path / "0000cc.jsonl")
    return where


@pytest.fixture
def client(folder: Path, tmp_path: Path) -> Iterator[TestClient]:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    app = create_app(Settings(scenarios=scenarios, isolated=True, recordings=folder))
    with LocalClient(app) as c:
        yield c


def test_get_recordings_lists_them_with_their_errors(client: TestClient, folder: Path) -> None:
    answer = client.get("/recordings")
    assert answer.status_code == 200
    listing = answer.json()
    assert (listing["folder"], listing["exists"], listing["truncated"]) == (str(folder), True, 0)
    shown = [(r["session"], r.get("ended"), r["error"]) for r in listing["recordings"]]
    # Newest first; the unreadable ones last (newest first too), with their errors.
    assert shown[:2] == [("0000aa", False, None), (SESSION, True, None)]
    assert dict((session, error) for session, _, error in shown[2:]) == {
        "0000bb": "line 1: a line is not JSON",
        "0000dd": "a symbolic link (recordings are regular files in the folder)",
    }
    assert SECRET not in answer.text


def test_get_a_recording_pages_through_its_frames(client: TestClient) -> None:
    first = client.get(f"/recordings/{SESSION}?limit=2").json()
    assert first["header"]["upstream"] == "ws://127.0.0.1:8000"
    assert first["ended"] is True
    assert [(f["index"], f["from"], f["op"]) for f in first["frames"]] == [
        (0, "server", "text"),
        (1, "client", "text"),
    ]
    assert first["next"] == 2
    rest = client.get(f"/recordings/{SESSION}?offset={first['next']}").json()
    assert [f["op"] for f in rest["frames"]] == ["text", "binary", "close"]
    assert rest["next"] is None


@pytest.mark.parametrize(
    ("query", "status"), [("limit=0", 422), ("limit=1001", 422), ("offset=-1", 422)]
)
def test_a_page_is_bounded(client: TestClient, query: str, status: int) -> None:
    assert client.get(f"/recordings/{SESSION}?{query}").status_code == status


def test_an_unreadable_recording_answers_422_with_why(client: TestClient) -> None:
    answer = client.get("/recordings/0000bb")
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": "recording '0000bb' cannot be read: line 1: a line is not JSON",
        "session": "0000bb",
        "error": "line 1: a line is not JSON",
    }


def test_an_unknown_recording_answers_404(client: TestClient, folder: Path) -> None:
    answer = client.get("/recordings/abcdef")
    assert answer.status_code == 404
    assert answer.json() == {
        "detail": f"no recording named 'abcdef' in {str(folder)!r}",
        "session": "abcdef",
    }


def test_convert_converts_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops: list[bool] = []
    real = replay.record.api.convert

    def spy(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            loops.append(True)
        except RuntimeError:
            loops.append(False)
        return real(*args, **kwargs)

    monkeypatch.setattr(replay.record.api, "convert", spy)
    assert client.post(f"/recordings/{SESSION}/convert").status_code == 200
    assert loops == [False]  # an hour of frames takes seconds: not on the loop


def test_convert_writes_a_scenario_into_the_scenarios_folder(
    client: TestClient, tmp_path: Path
) -> None:
    answer = client.post(f"/recordings/{SESSION}/convert")
    assert answer.status_code == 200, answer.text
    converted = answer.json()
    name = f"recorded-{SESSION[:12]}"
    assert converted["scenario"] == name
    assert converted["files"] == [str(tmp_path / "scenarios" / f"{name}.yaml")]
    assert converted["frames"] >= 1
    # The server plays it: it is valid, in the folder it serves.
    listed = {s["name"]: s for s in client.get("/scenarios").json()["scenarios"]}
    assert listed[name]["valid"], listed[name]
    # Again: the file exists (409) unless force; a name of one's own.
    again = client.post(f"/recordings/{SESSION}/convert")
    assert again.status_code == 409
    assert "exists" in again.json()["detail"]
    assert client.post(f"/recordings/{SESSION}/convert?force=true").status_code == 200
    named = client.post(f"/recordings/{SESSION}/convert?name=my-session")
    assert named.json()["scenario"] == "my-session"
    assert client.post(f"/recordings/{SESSION}/convert?name=Bad%20Name").status_code == 422
    assert client.post("/recordings/abcdef/convert").status_code == 404


def test_without_the_folder_the_list_is_empty(tmp_path: Path) -> None:
    settings = Settings(scenarios=tmp_path, isolated=True, recordings=tmp_path / "none")
    with LocalClient(create_app(settings)) as c:
        listing = c.get("/recordings").json()
    assert (listing["exists"], listing["recordings"]) == (False, [])


# --- names that try to leave the folder, sent exactly as written ---------------------------------

ESCAPING_NAMES = [
    "..",
    "../0000cc",
    "..%2F0000cc",
    "..%2f0000cc",
    "%2e%2e%2f0000cc",
    "%2E%2E/0000cc",
    "..%5c0000cc",
    "%252e%252e%252f0000cc",
    "3f2a9c0e1b7d%2F..%2F..%2F0000cc",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "0000cc.jsonl",
    "0000dd",
    f"{SESSION}%00",
    f"{SESSION}.jsonl",
    "%00",
    ".hidden",
    "~",
]


@pytest.fixture
def live(folder: Path, tmp_path: Path) -> Iterator[str]:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    with serving(Settings(scenarios=scenarios, isolated=True, recordings=folder)) as (server, _):
        yield server.url


def raw(url: str, method: str, path: str) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=PATIENCE)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def test_a_recording_name_never_leaves_the_folder(live: str) -> None:
    for name in ESCAPING_NAMES:
        for method, path in (
            ("GET", f"/recordings/{name}"),
            ("POST", f"/recordings/{name}/convert"),
        ):
            status, body = raw(live, method, path)
            assert status in (404, 405, 422), (method, path, status, body[:300])
            assert SECRET.encode() not in body
            assert b"root:" not in body
            if status == 404 and body.startswith(b"{"):
                assert "frames" not in json.loads(body)
