"""Who may drive replay and who may connect (replay/guard.py): the token on every control
route, the WebSocket origin allow-list and the client limit."""

from __future__ import annotations

import asyncio
import http.client
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from replay.guard import CLOSE_TRY_LATER
from replay.hosts import host_policy
from replay.server import Settings, create_app
from tests.conftest import SHIPPED, LocalClient
from tests.hostile import PATIENCE, add_tick, connected, serving, settled, ticks_arrive_on_time
from tests.recorded_files import write_recording

TOKEN = "s3cret"
REFUSAL = (
    "this server needs its token: send 'Authorization: Bearer <token>' (or add "
    "?token=<token> to the URL); replay serve was started with --token or REPLAY_TOKEN"
)
#: A recording in the guarded servers' recordings folder.
RECORDING = "3f2a9c0e1b7d"
#: Every control route, as (method, path); {run} is a run playing when the request is made.
CONTROL = [
    ("POST", "/trigger/messages?speed=0"),
    ("GET", "/runs"),
    ("GET", "/runs/{run}"),
    ("DELETE", "/runs/{run}"),
    ("GET", "/scenarios"),
    ("GET", "/scenarios/messages"),
    ("GET", "/protocol"),
    ("GET", "/clients"),
    ("GET", "/events"),
    ("GET", "/metrics"),
    ("GET", "/recordings"),
    ("GET", f"/recordings/{RECORDING}"),
    ("POST", f"/recordings/{RECORDING}/convert?force=true"),
]
#: What a control route answers with the token, when not 200.
ANSWERS: dict[tuple[str, str], int] = {}
#: Routes anyone may read.
OPEN = [
    "/healthz",
    "/",
    "/viewer",
    "/ui/dashboard.js",
    "/openapi.json",
    "/docs",
    "/redoc",
    "/docs/assets/swagger-ui.css",
]


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
    root = tmp_path_factory.mktemp("guarded-in-process")
    folder = root / "scenarios"
    shutil.copytree(SHIPPED, folder)
    write_recording(root / "recordings", RECORDING)
    settings = Settings(
        scenarios=folder, isolated=True, token=TOKEN, recordings=root / "recordings"
    )
    app = create_app(settings)
    with LocalClient(app) as client:
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
    assert answer.status_code == ANSWERS.get((method, path), 200), answer.text
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
        "/docs/assets/../../runs",
        "/docs/assets/%2e%2e/%2e%2e/runs",
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
                assert "tick" in str(await asyncio.wait_for(good.recv(), PATIENCE)), index
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
                        await asyncio.wait_for(extra.recv(), PATIENCE)
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
        # Every handshake succeeds: a client over the limit is accepted, then closed with 1013.
        sockets = await asyncio.gather(*(connect(live.ws_url + "/ws") for _ in range(30)))
        try:
            # The server decides as it answers each handshake; it runs in another thread:
            # wait until its figures account for all 30.
            deadline = time.monotonic() + PATIENCE
            while (
                admitted := sum(live.replay.delivery.client_counts().values())
            ) + live.replay.refused["limit"] < 30:
                assert time.monotonic() < deadline, (admitted, live.replay.refused)
                await asyncio.sleep(0.01)
            assert admitted == 3
            assert live.replay.refused["limit"] == 27
            # The refused ones are closed with 1013, however long that takes to arrive;
            # the others stay open.
            while len(closed := [ws for ws in sockets if ws.state is State.CLOSED]) < 27:
                assert time.monotonic() < deadline + PATIENCE, f"{len(closed)} closed"
                await asyncio.sleep(0.01)
            assert {ws.close_code for ws in closed} == {CLOSE_TRY_LATER}
            assert [ws.state for ws in sockets if ws not in closed] == [State.OPEN] * 3
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets))


# --- web pages: the Host allow-list (DNS rebinding) and the Origin allow-list ---------------------

#: Every kind of route: control routes, open pages (GET), and the WebSocket endpoints.
ROUTES = [*CONTROL, *(("GET", path) for path in OPEN)]
LOOPBACK_HOSTS = [
    "localhost",
    "localhost:8123",
    "LOCALHOST:1",
    "localhost.",
    "app.localhost:5173",
    "127.0.0.1",
    "127.0.0.1:8123",
    "127.1.2.3:65535",
    "[::1]",
    "[::1]:8123",
    "[0:0:0:0:0:0:0:1]:80",
]
REBINDING_HOSTS = [
    "evil.example",
    "evil.example:8123",
    "localhost.evil.example",
    "127.0.0.1.nip.io:8123",
    "10.0.0.1:8123",
    "0.0.0.0:8123",
    "[::2]:8123",
    "[::ffff:10.0.0.1]",
    "",
    "localhost:port",
    "localhost:99999",
    "[::1",
    "local host",
    "x" * 5000,
]
LOOPBACK_ORIGINS = [
    "http://localhost:5173",
    "http://localhost",
    "https://localhost:8443",
    "http://127.0.0.1:3000",
    "http://127.0.0.2:3000",
    "http://[::1]:5173",
    "http://app.localhost:5173",
]
FOREIGN_ORIGINS = [
    "http://evil.example",
    "https://evil.example:8123",
    "http://localhost.evil.example",
    "http://10.0.0.1:5173",
    "null",
    "file://",
    "http://localhost:5173/../evil",
    "localhost:5173",
]


def refused_for_host(answer: Any) -> bool:
    return answer.status_code == 403 and "DNS rebinding" in answer.json()["detail"]


def refused_for_origin(answer: Any) -> bool:
    return answer.status_code == 403 and "--cors-origin" in answer.json()["detail"]


@pytest.fixture(scope="module")
def open_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A server with the defaults (no token, bound to loopback), in process. Its event feed
    is closed, so that GET /events answers and ends at once."""
    folder = tmp_path_factory.mktemp("open-in-process") / "scenarios"
    shutil.copytree(SHIPPED, folder)
    app = create_app(Settings(scenarios=folder, isolated=True))
    with LocalClient(app) as client:
        app.state.replay.feed.close()
        yield client


def app_with(folder: Path, **settings: Any) -> LocalClient:
    return LocalClient(create_app(Settings(scenarios=folder, isolated=True, **settings)))


def a_run_id(client: TestClient) -> str:
    answer = client.post("/trigger/messages?speed=0.001&wait=false")
    assert answer.status_code == 202, answer.text
    return str(answer.json()["run_id"])


@pytest.mark.parametrize("host", REBINDING_HOSTS[:6])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_rebinding_host_is_refused_on_every_route(
    open_app: TestClient, method: str, path: str, host: str
) -> None:
    target = path.replace("{run}", a_run_id(open_app)) if "{run}" in path else path
    before = [(run.id, run.state) for run in runs_of(open_app)]
    answer = open_app.request(method, target, headers={"Host": host})
    assert refused_for_host(answer), answer.text[:300]
    assert f"--allow-host {host.split(':')[0]}" in answer.json()["detail"]
    assert [(run.id, run.state) for run in runs_of(open_app)] == before


@pytest.mark.parametrize("host", REBINDING_HOSTS)
def test_no_malformed_or_foreign_host_gets_in(open_app: TestClient, host: str) -> None:
    for method, path in (("POST", "/trigger/messages?speed=0"), ("GET", "/runs"), ("GET", "/")):
        answer = open_app.request(method, path, headers={"Host": host})
        assert refused_for_host(answer), (method, path, answer.text[:300])
        assert len(answer.content) < 1000  # a long Host is not repeated back whole


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_loopback_hosts_with_any_port_pass(open_app: TestClient, host: str) -> None:
    assert open_app.get("/runs", headers={"Host": host}).status_code == 200
    assert open_app.get("/healthz", headers={"Host": host}).status_code == 200


def test_allow_host_adds_names_and_star_turns_the_check_off(scenarios_dir: Path) -> None:
    added = ["devbox.lan", "*.example.test", "[fe80::0001]"]
    with app_with(scenarios_dir, allowed_hosts=added) as client:
        for host in ("devbox.lan", "DEVBOX.LAN:8123", "a.example.test", "[fe80::1]:1", "localhost"):
            assert client.get("/runs", headers={"Host": host}).status_code == 200, host
        for host in ("example.test", "devbox.lan.evil", "evil.example"):
            assert refused_for_host(client.get("/runs", headers={"Host": host})), host
    with app_with(scenarios_dir, allowed_hosts=["*"]) as client:
        for host in ("evil.example:8123", "anything", "localhost"):
            assert client.get("/runs", headers={"Host": host}).status_code == 200, host


def test_bound_elsewhere_with_a_token_any_host_may_ask(scenarios_dir: Path) -> None:
    # The token is what guards such a server: a rebound page does not have it.
    with app_with(scenarios_dir, bind="0.0.0.0", token=TOKEN) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for host in ("evil.example", "devbox.lan:8123", "192.168.1.10:8123"):
            assert client.get("/runs", headers={"Host": host, **auth}).status_code == 200
            assert client.get("/runs", headers={"Host": host}).status_code == 401


def test_bound_elsewhere_without_a_token_ip_addresses_and_machine_names_may_ask(
    scenarios_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("replay.hosts.machine_names", lambda: {"devbox", "devbox.local"})
    with app_with(scenarios_dir, bind="0.0.0.0") as client:
        for host in ("192.168.1.10:8123", "[fe80::1]:8123", "devbox:8123", "devbox.local", "::1"):
            if host == "::1":
                continue  # not a Host header (an IPv6 address is written in brackets)
            assert client.get("/runs", headers={"Host": host}).status_code == 200, host
        answer = client.get("/runs", headers={"Host": "evil.example:8123"})
        assert refused_for_host(answer)
        assert "IP addresses, devbox, devbox.local" in answer.json()["detail"]


def test_host_policy_for_each_way_of_binding() -> None:
    loopback = host_policy("127.0.0.1")
    assert loopback.allows("localhost:1")
    assert not loopback.allows("192.168.1.10")
    for bind in ("localhost", "::1", "[::1]", "127.0.0.2"):
        assert host_policy(bind).described == loopback.described, bind
    named = host_policy("devbox.lan", machine=[])
    assert named.allows("devbox.lan:8123")
    assert named.allows("10.1.1.1")
    assert not named.allows("evil.example")
    assert host_policy("0.0.0.0", token="t").allows("evil.example")
    assert host_policy("127.0.0.1", ["*"]).allows("evil.example")
    assert host_policy("127.0.0.1").allows(None)  # no Host at all: not a browser


# Cross-origin requests.


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_a_no_cors_form_post_from_another_site_plays_nothing(
    open_app: TestClient, origin: str
) -> None:
    before = len(runs_of(open_app))
    # What <form method=post action=http://localhost:8123/trigger/messages> sends.
    answer = open_app.post(
        "/trigger/messages?speed=0",
        content=b"vars=x",
        headers={
            "Origin": origin,
            "Content-Type": "application/x-www-form-urlencoded",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "navigate",
        },
    )
    assert refused_for_origin(answer), answer.text[:300]
    assert "access-control-allow-origin" not in answer.headers
    assert len(runs_of(open_app)) == before


def test_nothing_plays_from_another_site_on_a_fresh_server(scenarios_dir: Path) -> None:
    with app_with(scenarios_dir) as client:
        for path in ("/trigger/messages?speed=0", "/trigger/all?speed=0&wait=false"):
            answer = client.post(path, headers={"Origin": "http://evil.example"})
            assert answer.status_code == 403
        assert client.get("/runs").json()["runs"] == []


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS[:3])
@pytest.mark.parametrize(("method", "path"), CONTROL)
def test_another_sites_page_reaches_no_control_route(
    open_app: TestClient, method: str, path: str, origin: str
) -> None:
    target = path.replace("{run}", a_run_id(open_app)) if "{run}" in path else path
    before = [(run.id, run.state) for run in runs_of(open_app)]
    answer = open_app.request(method, target, headers={"Origin": origin})
    assert refused_for_origin(answer), answer.text[:300]
    assert [(run.id, run.state) for run in runs_of(open_app)] == before


@pytest.mark.parametrize("path", OPEN)
def test_open_pages_load_from_anywhere_but_share_nothing(open_app: TestClient, path: str) -> None:
    answer = open_app.get(path, headers={"Origin": "http://evil.example"})
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_cross_site_requests_without_an_origin_are_refused_but_links_open(
    open_app: TestClient,
) -> None:
    cross = {"Sec-Fetch-Site": "cross-site"}
    for mode, dest in (("no-cors", "script"), ("no-cors", "image"), ("navigate", "iframe")):
        fetch = {**cross, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest}
        answer = open_app.get("/runs", headers=fetch)
        assert answer.status_code == 403
        assert "Sec-Fetch-Site: cross-site" in answer.json()["detail"]
    # A link followed from another site opens (that site cannot read the page it opened).
    link = {**cross, "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert open_app.get("/runs", headers=link).status_code == 200
    for site in ("same-origin", "same-site", "none"):
        assert open_app.get("/runs", headers={"Sec-Fetch-Site": site}).status_code == 200


@pytest.mark.parametrize("origin", LOOPBACK_ORIGINS)
def test_pages_on_loopback_may_call_and_read(open_app: TestClient, origin: str) -> None:
    answer = open_app.post("/trigger/messages?speed=0", headers={"Origin": origin})
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["status"] == "success"
    assert answer.headers["access-control-allow-origin"] == origin
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert open_app.get("/runs", headers={"Origin": origin}).status_code == 200


def test_the_servers_own_pages_may_call(scenarios_dir: Path) -> None:
    with app_with(scenarios_dir, allowed_hosts=["devbox.lan"]) as client:
        for host, origin in (
            ("devbox.lan:8123", "http://devbox.lan:8123"),
            ("devbox.lan:8123", "https://devbox.lan:8123"),  # behind a TLS proxy
            ("devbox.lan", "https://devbox.lan"),
            ("localhost:8123", "http://localhost:8123"),
        ):
            answer = client.get("/runs", headers={"Host": host, "Origin": origin})
            assert answer.status_code == 200, (host, origin)
        # Another port of the same name is another origin.
        answer = client.get(
            "/runs", headers={"Host": "devbox.lan:8123", "Origin": "http://devbox.lan:5173"}
        )
        assert refused_for_origin(answer)


def test_cors_origin_adds_origins(scenarios_dir: Path) -> None:
    with app_with(
        scenarios_dir, cors_origins=["https://app.example/", "HTTP://Other.Example:80"]
    ) as (client):
        for origin in ("https://app.example", "http://other.example", "http://localhost:5173"):
            answer = client.post("/trigger/messages?speed=0", headers={"Origin": origin})
            assert answer.status_code == 200, origin
            assert answer.headers["access-control-allow-origin"] == origin
        assert refused_for_origin(client.get("/runs", headers={"Origin": "https://evil.example"}))


def test_cors_origin_star_restores_the_open_behaviour(scenarios_dir: Path) -> None:
    with app_with(scenarios_dir, cors_origins=["*"]) as client:
        evil = {"Origin": "http://evil.example"}
        answer = client.post("/trigger/messages?speed=0", headers=evil)
        assert answer.status_code == 200
        # Echoed, not "*": a browser refuses "*" on a request with credentials.
        assert answer.headers["access-control-allow-origin"] == "http://evil.example"
        assert answer.headers["access-control-allow-credentials"] == "true"
        answer = client.get("/runs", headers={**evil, "Sec-Fetch-Site": "cross-site"})
        assert answer.status_code == 200
        assert len(answer.json()["runs"]) == 1
        # The Host check is a separate switch.
        assert refused_for_host(client.get("/runs", headers={"Host": "evil.example"}))


def preflight(client: TestClient, origin: str, path: str = "/trigger/messages") -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.mark.parametrize("origin", LOOPBACK_ORIGINS)
def test_a_preflight_from_a_loopback_page_is_allowed(open_app: TestClient, origin: str) -> None:
    answer = preflight(open_app, origin)
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == origin
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    assert "POST" in answer.headers["access-control-allow-methods"]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_a_preflight_from_another_site_is_refused(open_app: TestClient, origin: str) -> None:
    before = len(runs_of(open_app))
    answer = preflight(open_app, origin)
    assert answer.status_code == 400
    assert "access-control-allow-origin" not in answer.headers
    assert len(runs_of(open_app)) == before


def test_a_preflight_with_star_is_allowed_for_any_page(scenarios_dir: Path) -> None:
    with app_with(scenarios_dir, cors_origins=["*"]) as client:
        answer = preflight(client, "http://evil.example")
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == "http://evil.example"


# WebSocket handshakes.


@pytest.mark.parametrize("path", ["/ws", "/ws/stream", "/ws/elsewhere"])
def test_a_websocket_handshake_with_a_rebinding_host_is_refused_in_process(
    open_app: TestClient, path: str
) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        open_app.websocket_connect(path, headers={"Host": "evil.example:8123"}),
    ):
        pass
    assert refused.value.code == 1008  # refused before the handshake: HTTP 403
    with open_app.websocket_connect("/ws", headers={"Host": "[::1]:8123"}) as ws:
        ws.send_text("{}")


async def raw_handshake(live: Any, path: str, host: str) -> bytes:
    address, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(address, int(port))
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example:8123\r\n\r\n".encode()
        )
        return await asyncio.wait_for(reader.read(4096), PATIENCE)
    finally:
        writer.close()


async def test_a_websocket_handshake_with_a_rebinding_host_gets_403(scenarios_dir: Path) -> None:
    with serving(Settings(scenarios=scenarios_dir, isolated=True)) as (live, _):
        async with connect(live.ws_url + "/ws") as healthy:
            await connected(live, 1)
            for path in ("/ws", "/ws/stream"):
                answer = await raw_handshake(live, path, "evil.example:8123")
                assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
            assert live.replay.delivery.client_counts() == {"/ws": 1, "/ws/stream": 0}
            assert live.replay.refused["host"] == 2
            assert refused_count(live, "host") == 2
            answer = await raw_handshake(live, "/ws", "localhost:1")
            assert answer.startswith(b"HTTP/1.1 101"), answer[:200]
            await healthy.send("{}")


# The property: whatever Host and Origin a request carries, no 500, and a value that is
# not allowed never reaches a route.

GOOD_NAMES = ["localhost", "LocalHost", "127.0.0.1", "127.9.8.7", "[::1]", "app.localhost"]
ports = st.one_of(st.just(""), st.integers(0, 65535).map(lambda port: f":{port}"))
good_hosts = st.builds("{}{}".format, st.sampled_from(GOOD_NAMES), ports)
evil_names = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}\.(example|test|com|lan)", fullmatch=True),
    st.sampled_from(["localhost.evil.com", "127.0.0.1.nip.io", "10.0.0.1", "[::2]", "0.0.0.0"]),
)
evil_hosts = st.builds("{}{}".format, evil_names, ports)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
schemes = st.sampled_from(["http://", "https://"])
good_origins = st.builds("{}{}".format, schemes, good_hosts)
evil_origins = st.one_of(
    st.builds("{}{}".format, schemes, evil_hosts), st.sampled_from(["null", "file://"])
)
#: (method, path, whether a page of another site may send it)
PROBES = [
    ("POST", "/trigger/no-such-scenario", False),
    ("DELETE", "/runs/no-such-run", False),
    ("GET", "/runs", False),
    ("GET", "/events?kinds=nothing", False),
    ("GET", "/metrics", False),
    ("GET", "/healthz", True),
    ("GET", "/ui/dashboard.js", True),
    ("POST", "/healthz", False),
]
#: Loopback hosts as a Host header or an origin writes them (an oracle written apart from
#: replay.hosts: what replay answers to must be one of these).
LOOPBACK = (
    r"(localhost|[^/:]+\.localhost|127\.\d+\.\d+\.\d+|\[[0:]*:0*1\]|\[::ffff:127(\.\d+){3}\])"
    r"(:\d+)?"
)


def loopback_host(value: str) -> bool:
    return re.fullmatch(LOOPBACK, value.strip().lower().replace(".:", ":").rstrip(".")) is not None


def loopback_or_own_origin(origin: str, host: str) -> bool:
    scheme, _, authority = origin.strip().lower().partition("://")
    if scheme not in ("http", "https"):
        return False
    authority = authority.rstrip("/")
    default = {"http": ":80", "https": ":443"}[scheme]
    own = host.strip().lower().removesuffix(default) == authority.removesuffix(default)
    return own or loopback_host(authority)


def labelled(strategy: Any, label: str | None) -> Any:
    return strategy.map(lambda value: (value, label))


@hypothesis.given(
    host=st.one_of(
        labelled(good_hosts, "good"), labelled(evil_hosts, "evil"), labelled(header_text, None)
    ),
    origin=st.one_of(
        st.just((None, "good")),
        labelled(good_origins, "good"),
        labelled(evil_origins, "evil"),
        labelled(header_text, None),
    ),
    probe=st.sampled_from(PROBES),
)
@hypothesis.settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
def test_no_host_or_origin_value_gets_past_the_guard_or_breaks_the_server(
    open_app: TestClient,
    host: tuple[str, str | None],
    origin: tuple[str | None, str | None],
    probe: tuple[str, str, bool],
) -> None:
    (host_value, host_label), (origin_value, origin_label) = host, origin
    method, path, open_to_pages = probe
    headers = {"Host": host_value}
    if origin_value is not None:
        headers["Origin"] = origin_value
    before = len(runs_of(open_app))
    answer = open_app.request(method, path, headers=headers)
    assert answer.status_code < 500, answer.text[:300]
    assert len(runs_of(open_app)) == before
    # No route answers 403: a 403 is the guard's, anything else reached a route.
    reached = answer.status_code != 403
    if reached:
        assert loopback_host(host_value), host_value
        if origin_value is not None and not open_to_pages:
            assert loopback_or_own_origin(origin_value, host_value), origin_value
    if host_label == "evil":
        assert not reached
    if host_label == "good" and origin_label == "good":
        assert reached, answer.text[:300]
    if host_label == "good" and origin_label == "evil":
        assert reached == open_to_pages, answer.text[:300]
