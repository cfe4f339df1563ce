"""The trigger request (replay.trigger): its query read without FastAPI's solving when no
body comes, with the same answers as with one."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from starlette.requests import Request

from replay.server import Settings, create_app
from replay.trigger import TriggerQuery, has_body, read_query
from tests.conftest import LocalClient

BAD_QUERIES = [
    "speed=fast",
    "speed=-1",
    "speed=1000000",
    "speed=0.00001",
    "speed=nan",
    "speed=",
    "wait=maybe",
    "follow=2",
    "client=not%20an%20id",
    "client=",
    "seed=-1",
    "seed=1.5",
    "seed=99999999999999999999",
    "speed=fast&seed=x&wait=",
]


@pytest.fixture
def client(scenarios_dir: Path) -> Iterator[TestClient]:
    app = create_app(Settings(scenarios=scenarios_dir, isolated=True))
    with LocalClient(app) as test_client:
        yield test_client


def without_body(client: TestClient, query: str) -> Any:
    return client.post(f"/trigger/messages?{query}")


def with_body(client: TestClient, query: str) -> Any:
    """The same trigger through FastAPI's own handling: it has a (JSON) body."""
    return client.post(f"/trigger/messages?{query}", json={})


@pytest.mark.parametrize("query", BAD_QUERIES)
def test_a_bad_query_is_the_same_422_with_a_body_or_without(client: TestClient, query: str) -> None:
    fast, full = without_body(client, query), with_body(client, query)
    assert fast.status_code == full.status_code == 422, (fast.text, full.text)
    assert fast.json() == full.json()
    locations = [error["loc"] for error in fast.json()["detail"]]
    assert all(loc[0] == "query" for loc in locations), locations


@pytest.mark.parametrize("query", ["wait=false&speed=0", "wait=0&speed=0&seed=7", "speed=0"])
def test_a_good_query_plays_the_same_with_a_body_or_without(client: TestClient, query: str) -> None:
    fast, full = without_body(client, query), with_body(client, query)
    assert fast.status_code == full.status_code, (fast.text, full.text)
    assert fast.status_code in (200, 202)
    ignored = {"run_id", "started_at", "ended_at", "duration_s", "max_lateness_s", "seed", "url"}
    if "seed=7" in query:
        ignored.discard("seed")
    shown = [{k: v for k, v in a.json().items() if k not in ignored} for a in (fast, full)]
    assert shown[0] == shown[1]


def test_an_unknown_scenario_is_404_without_a_body(client: TestClient) -> None:
    answer = client.post("/trigger/nope?speed=0")
    assert answer.status_code == 404
    assert answer.json()["scenario"] == "nope"


def test_a_body_still_goes_through_fastapi(client: TestClient) -> None:
    bad = client.post("/trigger/messages?speed=0", json={"vars": [], "extra": 1})
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["detail"]} >= {("body", "vars"), ("body", "extra")}
    garbled = client.post(
        "/trigger/messages?speed=0",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert garbled.status_code == 422
    assert garbled.json()["detail"][0]["type"] == "json_invalid"


def test_read_query_takes_the_last_of_a_repeated_parameter_and_ignores_others() -> None:
    query = read_query({"speed": "2", "other": "x"})
    assert query == TriggerQuery(speed=2)
    with pytest.raises(RequestValidationError) as raised:
        read_query({"speed": "-3"})
    (error,) = raised.value.errors()
    assert error["loc"] == ("query", "speed")
    assert "url" not in error


def request_with(headers: list[tuple[bytes, bytes]]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers})


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ([], False),
        ([(b"content-length", b"0")], False),
        ([(b"content-length", b"2")], True),
        ([(b"transfer-encoding", b"chunked")], True),
        ([(b"content-length", b"00")], True),  # odd: FastAPI reads it, and finds it empty
    ],
)
def test_has_body(headers: list[tuple[bytes, bytes]], body: bool) -> None:
    assert has_body(request_with(headers)) is body


def test_the_docs_still_show_every_query_parameter_and_the_body(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/trigger/{scenario}"]["post"]
    names = {p["name"]: p["in"] for p in operation["parameters"]}
    assert names == {
        "scenario": "path",
        "wait": "query",
        "follow": "query",
        "speed": "query",
        "client": "query",
        "seed": "query",
    }
    speed = next(p for p in operation["parameters"] if p["name"] == "speed")
    assert "no pauses" in speed["description"]
    assert "requestBody" in operation


_KEYS = st.sampled_from(["wait", "follow", "speed", "client", "seed", "other", "Speed"])
_VALUES = st.one_of(
    st.sampled_from(
        ["", "0", "1", "true", "false", "True", "off", "yes", "2", "0.5", "1e3", "-0", "nan"]
    ),
    st.text(max_size=12),
    st.integers(-(2**70), 2**70).map(str),
)


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(st.lists(st.tuples(_KEYS, _VALUES), max_size=6))
def test_property_any_query_is_answered_alike_with_a_body_or_without(
    quick: TestClient, pairs: list[tuple[str, str]]
) -> None:
    query = urllib.parse.urlencode(pairs)
    fast = quick.post(f"/trigger/one?{query}")
    full = quick.post(f"/trigger/one?{query}", json={})
    assert fast.status_code == full.status_code, (query, fast.text, full.text)
    assert fast.status_code in (200, 202, 422), (query, fast.text)
    if fast.status_code == 422:
        assert fast.json() == full.json()
    elif fast.headers["content-type"].startswith("application/x-ndjson"):
        assert [json.loads(line)["event"] for line in fast.text.splitlines()] == [
            json.loads(line)["event"] for line in full.text.splitlines()
        ]
    else:
        assert {k for k in fast.json()} == {k for k in full.json()}
        assert fast.json()["speed"] == full.json()["speed"]
        assert fast.json()["client"] == full.json()["client"]


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[TestClient]:
    """A server with one scenario of one frame and no pause: a run ends at once."""
    folder = tmp_path / "quick"
    folder.mkdir()
    (folder / "one.yaml").write_text("version: 1\nsteps:\n  - message: EVENT\n    text: hi\n")
    app = create_app(Settings(scenarios=folder, isolated=True))
    with LocalClient(app) as test_client:
        yield test_client
