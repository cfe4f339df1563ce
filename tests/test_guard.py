"""Who may drive replay and who may connect (replay/guard.py): the token on every control
route, the WebSocket origin allow-list and the client limit."""

from __future__ import annotations

import asyncio
import http.client
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from replay.guard import CLOSE_TRY_LATER
from replay.server import Settings, create_app
from tests.conftest import SHIPPED
from tests.hostile import add_tick, connected, serving, settled, ticks_arrive_on_time

TOKEN = "s3cret"
REFUSAL = (
    "this server needs its token: send 'Authorization: Bearer <token>' (or add "
    "?token=<token> to the URL); replay serve was started with --token or REPLAY_TOKEN"
)
#: Every control route, as (method, path); {run} is a run playing when the request is made.
CONTROL = [
    ("POST", "/trigger/messages?speed=0"),
    ("GET", "/runs"),
    ("GET", "/runs/{run}"),
    ("DELETE", "/runs/{run}"),
    ("GET", "/scenarios"),
    ("GET", "/scenarios/messages"),
    ("GET", "/clients"),
    ("GET", "/events"),
    ("GET", "/metrics"),
]
#: Routes anyone may read.
OPEN = ["/healthz", "/", "/viewer", "/ui/dashboard.js", "/openapi.json", "/docs"]


def bearer(path: str, token: str) -> tuple[str, dict[str, Any]]:
    return path, {"headers": {"Authorization": f"Bearer {token}"}}


def replay_header(path: str, token: str) -> tuple[str, dict[str, Any]]:
    return path, {"headers": {"X-Replay-Token": token}}


def query(path: str, token: str) -> tuple[str, dict[str, Any]]:
    return f"{path}{'&' if '?' in path else '?'}{urlencode({'token': token})}", {}


def cookie(path: str, token: str) -> tuple[str, dict[str, Any]]:
    return path, {"headers": {"Cookie": f"replay_token={token}"}}


WAYS = [bearer, replay_header, query, cookie]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A server with a token, in process, shared by the module (tests compare runs before
    and after). Its event feed is closed, so that GET /events answers and ends at once
    (the guard is what is tested, not the feed)."""
    folder = tmp_path_factory.mktemp("guarded-in-process") / "scenarios"
    shutil.copytree(SHIPPED, folder)
    app = create_app(Settings(scenarios=folder, isolated=True, token=TOKEN))
    with TestClient(app) as client:
        app.state.replay.feed.close()
        yield client


def runs_of(client: TestClient) -> list[Any]:
    return client.app.state.replay.runner.runs()  # type: ignore[attr-defined,no-any-return]


def a_playing_run(client: TestClient) -> str:
    answer = client.post(
        "/trigger/messages?speed=0.001&wait=false", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert answer.status_code == 202
    return str(answer.json()["run_id"])


def path_for(client: TestClient, path: str) -> str:
    return path.replace("{run}", a_playing_run(client)) if "{run}" in path else path


@pytest.mark.parametrize(("method", "path"), CONTROL)
def test_control_routes_answer_401_without_the_token(
    guarded: TestClient, method: str, path: str
) -> None:
    target = path_for(guarded, path)
    before = [(run.id, run.state) for run in runs_of(guarded)]
    answer = guarded.request(method, target)
    assert answer.status_code == 401
    assert answer.json() == {"detail": REFUSAL}
    assert answer.headers["www-authenticate"] == 'Bearer realm="replay"'
    # Nothing happened: no run started, none cancelled.
    assert [(run.id, run.state) for run in runs_of(guarded)] == before


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize(("method", "path"), CONTROL)
def test_control_routes_work_with_the_token(
    guarded: TestClient, method: str, path: str, way: Any
) -> None:
    target, options = way(path_for(guarded, path), TOKEN)
    answer = guarded.request(method, target, **options)
    assert answer.status_code == 200, answer.text
    if method == "DELETE":
        assert answer.json()["state"] == "cancelled"
    if path.startswith("/trigger/"):
        assert answer.json()["status"] == "success"


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("wrong", ["s3cre", "s3cret2", "S3CRET", "", "s3cret s3cret"])
def test_a_wrong_token_is_401(guarded: TestClient, way: Any, wrong: str) -> None:
    before = len(runs_of(guarded))
    for method, path in (("GET", "/runs"), ("POST", "/trigger/messages?speed=0")):
        target, options = way(path, wrong)
        answer = guarded.request(method, target, **options)
        assert answer.status_code == 401, (method, path)
        assert answer.json() == {"detail": REFUSAL}
    assert len(runs_of(guarded)) == before


def test_another_scheme_than_bearer_is_not_the_token(guarded: TestClient) -> None:
    for value in (f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"):
        assert guarded.get("/runs", headers={"Authorization": value}).status_code == 401
    assert guarded.get("/runs", headers={"Authorization": f"bearer  {TOKEN} "}).status_code == 200


def test_the_token_cookie_counts_whatever_other_cookies_the_browser_sends(
    guarded: TestClient,
) -> None:
    # Cookies are per host, not per port: a browser sends replay the cookies of every other
    # app on localhost, and some of those hold JSON or spaces. The token must still count.
    for header in (
        f'prefs={{"theme":"dark"}}; replay_token={TOKEN}',
        f"replay_token={TOKEN}; consent=yes please",
        f"_ga=GA1.1.123.456; replay_token={TOKEN}",
    ):
        answer = guarded.get("/runs", headers={"Cookie": header})
        assert answer.status_code == 200, header


@pytest.mark.parametrize("path", OPEN)
def test_open_routes_answer_without_the_token(guarded: TestClient, path: str) -> None:
    assert guarded.get(path).status_code == 200


def test_a_cors_preflight_is_not_blocked(guarded: TestClient) -> None:
    answer = guarded.options(
        "/trigger/messages",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()


def test_options_that_is_not_a_preflight_reaches_nothing(guarded: TestClient) -> None:
    before = len(runs_of(guarded))
    for path in ("/trigger/messages?speed=0", "/runs", "/scenarios"):
        answer = guarded.options(path)
        assert answer.status_code == 405, path
        assert "runs" not in answer.json()
    assert len(runs_of(guarded)) == before


def test_websocket_clients_need_no_token(guarded: TestClient) -> None:
    # The token guards the control routes; the frontend under test connects as it would to
    # the real backend.
    with guarded.websocket_connect("/ws") as ws:
        guarded.post("/trigger/messages?speed=0", headers={"Authorization": f"Bearer {TOKEN}"})
        assert "CHAT_REQUESTED" in ws.receive_text()


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as given (no client-side normalisation of '..')."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def guarded_live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A live server with a token, shared by the raw-path tests."""
    folder = tmp_path_factory.mktemp("guarded") / "scenarios"
    shutil.copytree(SHIPPED, folder)
    with serving(Settings(scenarios=folder, isolated=True, token=TOKEN)) as (live, _):
        yield live


@pytest.mark.parametrize(
    "path",
    [
        "/ui/../runs",
        "/ui/%2e%2e/runs",
        "/ui/..%2fruns",
        "/ui/../../../../etc/passwd",
        "/ui/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/ui/..%2f..%2fserver.py",
        "/healthz/../runs",
        "/docs/../runs",
        "//runs",
        "/runs/",
    ],
)
def test_open_paths_do_not_lead_to_control_routes_or_files(guarded_live: Any, path: str) -> None:
    status, body = raw_get(guarded_live.url, path)
    assert status in (401, 404), (status, body[:200])
    assert b'"runs"' not in body
    assert b"root:" not in body
    assert b"import" not in body


# --- WebSocket origins --------------------------------------------------------------------------


def refused_count(live: Any, reason: str) -> float:
    status, text = raw_get(live.url, "/metrics")
    assert status == 200
    found = re.search(
        rf'^replay_clients_refused_total{{reason="{reason}"}} (\S+)$', text.decode(), re.M
    )
    assert found is not None, text
    return float(found.group(1))


EVIL_ORIGINS = ["http://evil.example", "null", "http://good.example.evil", "https://good.example"]


async def test_a_disallowed_origin_gets_403_at_the_handshake(scenarios_dir: Path) -> None:
    add_tick(scenarios_dir)
    settings = Settings(scenarios=scenarios_dir, isolated=True, ws_origins=["http://good.example"])
    with serving(settings) as (live, _):
        async with (
            connect(live.ws_url + "/ws", origin="http://good.example") as good,  # type: ignore[arg-type]
            connect(live.ws_url + "/ws") as healthy,
        ):
            await connected(live, 2)

            async def evil(origin: str) -> None:
                with pytest.raises(InvalidStatus) as refused:
                    await connect(live.ws_url + "/ws/stream", origin=origin)  # type: ignore[arg-type]
                assert refused.value.response.status_code == 403

            # A stream of refused handshakes while the healthy clients get a scenario.
            attempts = asyncio.gather(*(evil(origin) for origin in EVIL_ORIGINS * 5))
            await ticks_arrive_on_time(live, healthy)
            await attempts
            for index in range(5):  # the allowed origin got the frames too
                assert "tick" in str(await asyncio.wait_for(good.recv(), 5)), index
            assert live.replay.delivery.client_counts() == {"/ws": 2, "/ws/stream": 0}
        assert live.replay.refused == {"origin": 20, "limit": 0}
        assert refused_count(live, "origin") == 20
        assert refused_count(live, "limit") == 0


async def test_without_an_allow_list_any_origin_connects(scenarios_dir: Path) -> None:
    with serving(Settings(scenarios=scenarios_dir, isolated=True)) as (live, _):
        async with connect(live.ws_url + "/ws", origin="http://anywhere.example"):  # type: ignore[arg-type]
            await connected(live, 1)
        assert live.replay.refused["origin"] == 0


# --- the client limit ---------------------------------------------------------------------------


async def test_clients_over_the_limit_are_closed_with_1013(scenarios_dir: Path) -> None:
    add_tick(scenarios_dir)
    with serving(Settings(scenarios=scenarios_dir, isolated=True, max_clients=2)) as (live, _):
        async with (
            connect(live.ws_url + "/ws?client_id=healthy") as healthy,
            connect(live.ws_url + "/ws/stream?client_id=healthy"),
        ):
            await connected(live, 2)

            async def over() -> tuple[int, str]:
                async with connect(live.ws_url + "/ws") as extra:
                    with pytest.raises(ConnectionClosed) as closed:
                        await asyncio.wait_for(extra.recv(), 5)
                assert closed.value.rcvd is not None
                return closed.value.rcvd.code, closed.value.rcvd.reason

            attempts = asyncio.gather(*(over() for _ in range(20)))
            await ticks_arrive_on_time(live, healthy)
            assert set(await attempts) == {(CLOSE_TRY_LATER, "too many clients (limit 2)")}
            assert live.replay.delivery.client_counts() == {"/ws": 1, "/ws/stream": 1}
        assert live.replay.refused == {"origin": 0, "limit": 20}
        assert refused_count(live, "limit") == 20
        # Once a place is free, a client gets in again.
        await settled(live, 0)
        async with connect(live.ws_url + "/ws") as later:
            await connected(live, 1)
            await ticks_arrive_on_time(live, later)


async def test_a_burst_of_handshakes_never_lets_more_than_the_limit_in(
    scenarios_dir: Path,
) -> None:
    with serving(Settings(scenarios=scenarios_dir, isolated=True, max_clients=3)) as (live, _):

        async def attempt() -> Any:
            ws = await connect(live.ws_url + "/ws")
            try:
                await asyncio.wait_for(ws.recv(), 0.5)
            except ConnectionClosed:
                return None
            except TimeoutError:
                return ws  # still open: it got in
            return ws

        results = await asyncio.gather(*(attempt() for _ in range(30)))
        admitted = [ws for ws in results if ws is not None]
        try:
            assert len(admitted) == 3
            assert sum(live.replay.delivery.client_counts().values()) == 3
            assert live.replay.refused["limit"] == 27
        finally:
            await asyncio.gather(*(ws.close() for ws in admitted))
