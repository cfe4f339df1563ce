"""Hostile requests and hostile clients: whatever is sent, the server answers 4xx (never 5xx),
keeps its files to itself, and keeps serving everyone else on time.

Requests go to a real server where the raw path matters (clients normalise '..'), and to
the app in process otherwise; the API is fuzzed from its OpenAPI document with
schemathesis. Clients are real WebSocket (or raw TCP) connections to real uvicorn.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.python.asgi import shutdown_lifespans
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as connect_sync

from replay.server import Server, Settings, create_app
from tests.conftest import SHIPPED, LiveServer, LocalClient
from tests.hostile import (
    PATIENCE,
    TICKS,
    add_tick,
    connected,
    post,
    serving,
    settled,
    tick_frame,
    ticks_arrive_on_time,
    until_closed,
)

SECRET = "TOP-SECRET-CONTENT"
#: A scenario with a variable it sends back, so a large body has somewhere to go.
ECHO = "vars:\n  text: hello\nsteps:\n  - message: EVENT\n    text: '{{ vars.text }}'\n"


def hostile_folder(root: Path) -> Path:
    """A copy of the shipped scenarios beside a scenario outside it, linked from inside."""
    folder = root / "scenarios"
    shutil.copytree(SHIPPED, folder)
    (folder / "echo.yaml").write_text(ECHO)
    add_tick(folder)
    (root / "secret.yaml").write_text(f"steps:\n  - message: EVENT\n    text: {SECRET}\n")
    (folder / "sneaky.yaml").symlink_to(root / "secret.yaml")
    return folder


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = hostile_folder(tmp_path_factory.mktemp("hostile"))
    with serving(Settings(scenarios=folder, isolated=True)) as (server, _):
        yield server


def raw(
    live: LiveServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, bytes]:
    """A request with the path sent exactly as written; the status and the body."""
    host, port = live.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=PATIENCE)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if body is not None and chunked:
            for start in range(0, len(body), 1 << 16):
                piece = body[start : start + (1 << 16)]
                connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            connection.send(b"0\r\n\r\n")
        elif body is not None:
            connection.send(body)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def run_count(live: LiveServer) -> int:
    return len(live.replay.runner.runs())


# --- scenario names that try to leave the folder ------------------------------------------------

ESCAPING_NAMES = [
    "..",
    "../secret",
    "..%2Fsecret",
    "..%2fsecret",
    "%2e%2e",
    "%2e%2e%2fsecret",
    "%2E%2E/secret",
    "..%5csecret",
    "..\\secret",
    "%252e%252e%252fsecret",
    "messages%2F..%2F..%2Fsecret",
    "....//secret",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "%2F" + "%2F".join(["tmp", "secret"]),
    "secret",
    "secret.yaml",
    "messages.yaml",
    "messages%00",
    "%00",
    ".hidden",
    "_protocol",
]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_a_scenario_name_never_leaves_the_folder(live: LiveServer, name: str) -> None:
    before = run_count(live)
    for method, path in (
        ("POST", f"/trigger/{name}?speed=0"),
        ("GET", f"/scenarios/{name}"),
    ):
        status, body = raw(live, method, path)
        assert status in (404, 405), (method, path, status, body[:300])
        assert SECRET.encode() not in body
        assert b"root:" not in body
    assert run_count(live) == before


def test_a_symlink_out_of_the_folder_is_refused_with_its_problem(live: LiveServer) -> None:
    before = run_count(live)
    status, body = raw(live, "POST", "/trigger/sneaky?speed=0")
    assert status == 422
    answer = json.loads(body)
    [problem] = answer["problems"]
    assert problem["message"] == "the file links outside the scenarios folder"
    assert SECRET not in body.decode()
    status, body = raw(live, "GET", "/scenarios/sneaky")
    assert status == 200
    assert json.loads(body)["valid"] is False
    assert SECRET not in body.decode()
    assert run_count(live) == before


# --- bodies and content types -------------------------------------------------------------------

#: Larger than any body a trigger needs (a few variables), and than a template may render.
HUGE = 16 * 1024 * 1024


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("variable", ["text", "undeclared"])
def test_an_oversized_body_is_refused_with_4xx(
    live: LiveServer, chunked: bool, variable: str
) -> None:
    body = json.dumps({"vars": {variable: "x" * HUGE}}).encode()
    before = run_count(live)
    status, answer = raw(
        live,
        "POST",
        "/trigger/echo?speed=0",
        body,
        {"Content-Type": "application/json"},
        chunked=chunked,
    )
    assert 400 <= status < 500, (status, answer[:300])
    assert run_count(live) == before


def test_a_body_of_a_normal_size_plays(live: LiveServer) -> None:
    body = json.dumps({"vars": {"text": "x" * 10_000}}).encode()
    status, answer = raw(
        live, "POST", "/trigger/echo?speed=0", body, {"Content-Type": "application/json"}
    )
    assert status == 200
    assert json.loads(answer)["status"] == "success"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = hostile_folder(tmp_path_factory.mktemp("in-process"))
    app = create_app(Settings(scenarios=folder, isolated=True))
    # A 500 is an answer to check, not an exception to raise in the test.
    with LocalClient(app, raise_server_exceptions=False) as c:
        yield c


def in_process_runs(client: TestClient) -> int:
    return len(client.app.state.replay.runner.runs())  # type: ignore[attr-defined]


MULTIPART = b'--xx\r\nContent-Disposition: form-data; name="vars"\r\n\r\nx\r\n--xx--\r\n'


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("text/plain", b'{"vars": {}}', 422),
        ("text/plain", b"hello", 422),
        ("application/x-www-form-urlencoded", b"vars=x&seed=1", 422),
        ("multipart/form-data; boundary=xx", MULTIPART, 422),
        ("application/xml", b"<vars/>", 422),
        ("application/json", b"{not json", 422),
        ("application/json", b'{"vars": ', 422),
        ("application/json", b"\xff\xfe\x00", 400),
        ("application/json", b"[]", 422),
        ("application/json", b'"vars"', 422),
        ("application/json", b'{"vars": []}', 422),
        ("application/json", b'{"vars": {}, "extra": 1}', 422),
        ("application/json", b'{"seed": -1}', 422),
        ("application/json", b'{"client": "no spaces allowed"}', 422),
        ("application/json", b"[" * 100_000 + b"]" * 100_000, 400),
        ("application/json", b'{"vars": {"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", 400),
    ],
    ids=lambda value: value if isinstance(value, int) else None,
)
def test_a_body_that_is_not_a_trigger_body_is_4xx(
    client: TestClient, content_type: str, body: bytes, status: int
) -> None:
    before = in_process_runs(client)
    answer = client.post(
        "/trigger/echo?speed=0", content=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == status, answer.text[:300]
    assert in_process_runs(client) == before


@pytest.mark.parametrize(
    "body",
    [b'{"seed": 1e999}', b'{"client": -Infinity}', b"NaN", b'{"vars": {"text": [NaN]}}'],
)
def test_non_finite_numbers_in_a_body_are_422_not_500(client: TestClient, body: bytes) -> None:
    # Python's json reads NaN, Infinity and 1e999 (as inf), which JSON does not have: the
    # trigger must refuse them like any other value that is not plain JSON.
    before = in_process_runs(client)
    answer = client.post(
        "/trigger/echo?speed=0&wait=false",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text[:300]
    assert in_process_runs(client) == before


# --- fuzzing the API ----------------------------------------------------------------------------

#: Every operation of the OpenAPI document, but the streaming ones that never end by
#: themselves (GET /events; POST /trigger's follow=true is fuzzed on short runs below).
FUZZED = [
    ("POST", "/trigger/{scenario}"),
    ("GET", "/clients"),
    ("GET", "/scenarios"),
    ("GET", "/scenarios/{name}"),
    ("GET", "/protocol"),
    ("GET", "/runs"),
    ("GET", "/runs/{run_id}"),
    ("DELETE", "/runs/{run_id}"),
    ("POST", "/runs/{run_id}/pause"),
    ("POST", "/runs/{run_id}/resume"),
    ("POST", "/runs/{run_id}/step"),
    ("POST", "/runs/{run_id}/speed"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("POST", "/reset"),
    ("GET", "/journal"),
    ("DELETE", "/journal"),
    ("GET", "/protocol"),
    ("GET", "/state"),
    ("PUT", "/state"),
    ("GET", "/routes"),
    ("GET", "/recordings"),
    ("GET", "/recordings/{session}"),
    ("POST", "/recordings/{session}/convert"),
]
STREAMING = [("GET", "/events")]
EXAMPLES = 25


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, Any]]:
    folder = hostile_folder(tmp_path_factory.mktemp("fuzzed"))
    app = create_app(Settings(scenarios=folder, isolated=True))
    # Sent to localhost: schemathesis says "testserver", a name replay does not answer to.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers={"Host": "localhost"})
    try:
        yield app, schema
    finally:
        shutdown_lifespans()  # the app's lifespan, started by schemathesis' ASGI client


def fuzz(app: FastAPI, strategy: Any) -> None:
    """Call the app with EXAMPLES cases from ``strategy``; every answer must be below 500."""
    names = set(app.state.replay.library.catalog().names)

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def check(case: Any) -> None:
        # A real scenario at a random speed could play for hours: do not wait for it.
        if (case.path_parameters or {}).get("scenario") in names and "speed" not in (
            case.query or {}
        ):
            case.query = {**(case.query or {}), "wait": "false", "follow": "false"}
        response = case.call(timeout=PATIENCE, base_url="http://localhost")
        assert response.status_code < 500, (
            f"{response.status_code} {response.text[:500]}\n{case.as_curl_command()}"
        )

    check()


def test_the_fuzzed_operations_are_every_one_but_the_event_feed(api: tuple[FastAPI, Any]) -> None:
    _, schema = api
    operations = {(r.ok().method.upper(), r.ok().path) for r in schema.get_all_operations()}
    assert operations == set(FUZZED) | set(STREAMING)


@pytest.mark.parametrize(("method", "path"), FUZZED)
def test_fuzzing_finds_no_server_error(api: tuple[FastAPI, Any], method: str, path: str) -> None:
    app, schema = api
    fuzz(app, schema[path][method].as_strategy(GenerationMode.POSITIVE))


def test_fuzzing_the_trigger_with_invalid_input_finds_no_server_error(
    api: tuple[FastAPI, Any],
) -> None:
    app, schema = api
    fuzz(app, schema["/trigger/{scenario}"]["POST"].as_strategy(GenerationMode.NEGATIVE))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzing_a_real_trigger_finds_no_server_error(
    api: tuple[FastAPI, Any], mode: GenerationMode
) -> None:
    # Random query (wait, follow, seed, client) and bodies on a scenario that exists, at
    # speed 0 so that every run ends at once.
    app, schema = api
    operation = schema["/trigger/{scenario}"]["POST"]
    fuzz(
        app, operation.as_strategy(mode, path_parameters={"scenario": "stream"}, query={"speed": 0})
    )


# --- hostile WebSocket clients ------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return hostile_folder(tmp_path)


async def test_a_frame_over_the_size_limit_closes_that_connection_with_1009(folder: Path) -> None:
    with serving(Settings(scenarios=folder, isolated=True), ws_max_size=1024) as (live, _):
        async with (
            connect(live.ws_url + "/ws") as healthy,
            connect(live.ws_url + "/ws", max_size=None) as rude,
        ):
            await connected(live, 2)
            await rude.send("x" * 1000)  # within the limit: fine
            await rude.send(json.dumps({"message_type": "EVENT", "message": "y" * 2048}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(rude.recv(), PATIENCE)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
            await settled(live, 1)
            await ticks_arrive_on_time(live, healthy)


async def test_binary_frames_and_garbage_are_ignored_without_closing(folder: Path) -> None:
    garbage: list[str | bytes] = [
        b"\x00\x01\x02\xff",
        b"",
        "",
        "{not json",
        "null",
        "[]",
        '"a string"',
        "1e999999",
        '{"message_type": 5}',
        '{"message_type": "PAUSE_REQUEST", "message": {"nested": true}}',
        '{"message_type": "CHAT_INPUT", "message": "' + "\\u0000" * 100 + '"}',
        "\N{GRINNING FACE}" * 1000,
    ]
    with serving(Settings(scenarios=folder, isolated=True, client_rate=10_000)) as (live, _):
        async with (
            connect(live.ws_url + "/ws?client_id=healthy") as healthy,
            connect(live.ws_url + "/ws?client_id=rude") as rude,
            connect(live.ws_url + "/ws/stream?client_id=rude") as rude_stream,
        ):
            await connected(live, 3)
            for frame in garbage:
                await rude.send(frame)
                await rude_stream.send(frame)
            await ticks_arrive_on_time(live, healthy)
            # Both rude connections are still open and still get what is sent to them (and
            # the PAUSE_REQUEST with an odd message got the shipped reaction's answer).
            got = [str(await asyncio.wait_for(rude.recv(), PATIENCE)) for _ in range(6)]
            assert [frame for frame in got if "tick" in frame] == [tick_frame(i) for i in range(5)]
            assert '{"message_type":"PAUSE_STATUS","message":"System paused"}' in got
            await rude_stream.send("still here")
            # The server reads them in its own thread, each connection at its own pace:
            # wait for both counts, with a deadline.
            wanted = {("rude", "/ws"): len(garbage), ("rude", "/ws/stream"): len(garbage) + 1}
            deadline = time.monotonic() + PATIENCE
            while any((counts := received_counts(live))[key] < n for key, n in wanted.items()):
                assert time.monotonic() < deadline, f"the server never read them all: {counts}"
                await asyncio.sleep(0.01)
            assert {key: counts[key] for key in wanted} == wanted


def received_counts(live: LiveServer) -> dict[tuple[str, str], int]:
    """Frames received from each client, by client id and endpoint."""
    return {(c.id, str(c.endpoint)): c.received for c in live.replay.delivery.clients()}


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000,
        '{"message_type": "PAUSE_REQUEST", "x": ' + "[" * 50_000 + "]" * 50_000 + "}",
    ],
    ids=["unclosed", "in-a-message"],
)
async def test_a_frame_of_absurdly_nested_json_does_not_break_the_connection(
    folder: Path, frame: str
) -> None:
    # Parsing such a frame recurses too deep: whatever parses client frames (matching, the
    # debug log line) must treat it as the garbage it is, not crash the handler.
    with serving(Settings(scenarios=folder, isolated=True)) as (live, _):
        async with connect(live.ws_url + "/ws?client_id=rude") as rude:
            await connected(live, 1)
            await rude.send(frame)
            await rude.send("after the nested frame")
            deadline = time.monotonic() + PATIENCE
            while (rude_client := client_named(live, "rude")) is None or rude_client.received < 2:
                assert rude_client is not None, "the server dropped the connection"
                assert time.monotonic() < deadline, "the connection stopped reading"
                await asyncio.sleep(0.01)
            await ticks_arrive_on_time(live, rude)


def flood(connection: Any, frame: str, count: int) -> None:
    """Send ``frame`` ``count`` times as fast as possible, from a thread of its own: a
    flooding client is another program, not a task that starves the test's own loop."""
    for _ in range(count):
        connection.send(frame)


async def test_a_flood_of_frames_is_rate_limited_and_delays_no_one(folder: Path) -> None:
    rate, frames = 50.0, 5000
    settings = Settings(scenarios=folder, isolated=True, client_rate=rate)
    # The flooder never reads the reaction's answers: they pile up on its side, unbounded.
    with (
        serving(settings) as (live, _),
        connect_sync(live.ws_url + "/ws?client_id=flood", max_queue=None) as flooder,
    ):
        async with connect(live.ws_url + "/ws?client_id=healthy") as healthy:
            await connected(live, 2)
            # Each frame would start the shipped 'pause-status' reaction, if it counted.
            request = json.dumps({"message_type": "PAUSE_REQUEST", "message": "pause"})
            started = time.monotonic()
            flooded = asyncio.create_task(asyncio.to_thread(flood, flooder, request, frames))
            await ticks_arrive_on_time(live, healthy)
            await flooded
            deadline = time.monotonic() + PATIENCE
            while (flooding := client_named(live, "flood")).received < frames:
                assert time.monotonic() < deadline, "the server never read every frame"
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            assert flooding.ignored > 0
            acted_on = flooding.received - flooding.ignored
            assert acted_on <= 2 * rate + rate * elapsed + 5  # a burst of 2x, then the rate
            reactions = [r for r in live.replay.runner.runs() if r.started_by == "reaction"]
            assert 0 < len(reactions) <= acted_on
            listed = {c["client_id"]: c for c in (await clients(live))}
            assert listed["flood"]["ignored"] == flooding.ignored
            # The flood was ignored, not punished: its connection is open and served.
            await ticks_arrive_on_time(live, healthy)
        frames_seen = []
        while len([f for f in frames_seen if "tick" in f]) < 2 * TICKS:
            frames_seen.append(str(flooder.recv(timeout=PATIENCE)))


#: Frames of about 1 MiB, as large as `replay serve` takes by default.
BIG_FRAME = 1024 * 1024 - 100


def big_frame(index: int) -> str:
    return json.dumps({"message_type": "NOISE", "message": f"{index:04d} " + "x" * BIG_FRAME})


def flood_big(connection: Any, count: int) -> None:
    """Send ``count`` numbered frames of about 1 MiB as fast as the server lets it (from a
    thread: a flooding client is another program)."""
    for index in range(count):
        connection.send(big_frame(index))


async def test_a_flood_of_big_frames_is_read_no_faster_than_its_byte_rate(folder: Path) -> None:
    rate, count = 4 * 1024 * 1024, 16  # 16 MiB: a burst of 8 MiB, then 4 MiB a second
    settings = Settings(scenarios=folder, isolated=True, client_bytes=rate)
    with (
        serving(settings) as (live, _),
        connect_sync(live.ws_url + "/ws?client_id=flood", max_queue=None) as flooder,
    ):
        async with connect(live.ws_url + "/ws?client_id=healthy") as healthy:
            await connected(live, 2)
            taken: list[tuple[str, str]] = []
            handler = live.replay.messages.on_frame
            assert handler is not None

            def record(client: Any, text: str) -> None:
                taken.append((client.id, json.loads(text)["message"][:4]))
                handler(client, text)

            live.replay.messages.on_frame = record
            started = time.monotonic()
            flooded = asyncio.create_task(asyncio.to_thread(flood_big, flooder, count))
            flooding = client_named(live, "flood")
            # The server stops reading the flooder once it is over its budget: TCP then
            # holds the rest, on the flooder's side.
            deadline = time.monotonic() + PATIENCE
            while flooding.throttled == 0:
                assert time.monotonic() < deadline, "the flooder's reads were never paused"
                await asyncio.sleep(0.01)
            for index in range(20):
                await healthy.send(json.dumps({"message_type": "HELLO", "message": f"{index:04d}"}))
            await trigger_ticks(live, healthy)
            deadline = time.monotonic() + PATIENCE * 3
            while flooding.received < count or len(healthy_frames(taken)) < 20:
                # Never read faster than the budget: a burst, the rate, one frame over. The
                # server reads in another thread: what it had read is taken before the
                # time, so the budget is never one of a moment before the count.
                received = flooding.received_bytes
                allowed = 2 * rate + rate * (time.monotonic() - started) + len(big_frame(0))
                assert received <= allowed
                assert time.monotonic() < deadline, "the server stopped reading"
                await asyncio.sleep(0.01)
            await flooded
            # Slowed down, not punished: every frame was taken, in order, none ignored.
            assert flooding.ignored == 0
            assert [index for who, index in taken if who == "flood"] == [
                f"{index:04d}" for index in range(count)
            ]
            assert healthy_frames(taken) == [f"{index:04d}" for index in range(20)]
            listed = {c["client_id"]: c for c in (await clients(live))}
            assert listed["flood"]["throttled"] == flooding.throttled
            assert listed["flood"]["received_bytes"] == count * len(big_frame(0))


def healthy_frames(taken: list[tuple[str, str]]) -> list[str]:
    return [index for who, index in taken if who == "healthy"]


async def trigger_ticks(live: LiveServer, ws: Any) -> None:
    """Trigger the tick scenario; ``ws`` gets every frame of it, in order."""
    await post(live, "/trigger/tick?wait=false")
    for index in range(TICKS):
        assert await asyncio.wait_for(ws.recv(), PATIENCE) == tick_frame(index)


async def test_text_that_is_not_utf8_closes_with_1007_and_logs_one_warning(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # No logging set up by uvicorn: its records reach the root logger, and caplog.
    with serving(Settings(scenarios=folder, isolated=True), log_config=None) as (live, _):
        async with connect(live.ws_url + "/ws?client_id=healthy") as healthy:
            for attempt in range(2):
                async with connect(live.ws_url + f"/ws?client_id=bad{attempt}") as bad:
                    await connected(live, 2)
                    # One frame: more sent after the server's close would arrive at a
                    # closed socket, whose reset can destroy the close frame in flight.
                    await bad.send(b"\xff\xfe not UTF-8", text=True)
                    closed = await until_closed(bad)
                    assert closed.rcvd is not None
                    assert closed.rcvd.code == 1007  # RFC 6455: inconsistent data
                await settled(live, 1)
            await trigger_ticks(live, healthy)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    warnings = [r for r in caplog.records if "UTF-8" in r.getMessage()]
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    for attempt, warning in enumerate(warnings):
        assert warning.levelno == logging.WARNING
        assert warning.exc_info is None
        assert f"on /ws (client_id bad{attempt})" in warning.getMessage()
        assert "closed with 1007" in warning.getMessage()


def client_named(live: LiveServer, client_id: str) -> Any:
    return next((c for c in live.replay.delivery.clients() if c.id == client_id), None)


async def clients(live: LiveServer) -> list[dict[str, Any]]:
    status, body = await asyncio.to_thread(raw, live, "GET", "/clients")
    assert status == 200
    return json.loads(body)["clients"]  # type: ignore[no-any-return]


async def silent_connection(
    live: LiveServer, first_bytes: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection that sends ``first_bytes`` (maybe nothing) and then nothing more."""
    host, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    if first_bytes:
        writer.write(first_bytes)
        await writer.drain()
    return reader, writer


async def closed_after(reader: asyncio.StreamReader, since: float, limit: float) -> float:
    """Seconds from ``since`` until the server closed the connection."""
    try:
        while await asyncio.wait_for(reader.read(4096), limit):
            pass
    except ConnectionResetError:
        pass
    return time.monotonic() - since


async def test_a_client_that_never_finishes_its_handshake_is_closed(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeout = 0.5
    # Low from the start (set on the class, as the server is made and started at once), so
    # that the server looks often enough for the test to be quick.
    monkeypatch.setattr(Server, "handshake_timeout", timeout)
    with serving(Settings(scenarios=folder, isolated=True)) as (live, server):
        assert server.handshake_timeout == timeout
        async with connect(live.ws_url + "/ws") as healthy:
            await connected(live, 1)
            since = time.monotonic()
            silent = [await silent_connection(live) for _ in range(10)]
            partial = [
                await silent_connection(
                    live, b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                )
                for _ in range(10)
            ]
            try:
                waited = await asyncio.gather(
                    *(closed_after(reader, since, PATIENCE) for reader, _ in silent + partial)
                )
            finally:
                for _, writer in silent + partial:
                    writer.close()
            # Closed by the server once the timeout passed (it looks twice a timeout): never
            # before, and well before the default timeout (10 s) would have closed them,
            # with room for a busy machine (up to 1.03 s seen with two CPU-bound processes
            # beside the suite).
            assert min(waited) >= timeout * 0.9, waited
            assert max(waited) <= timeout * 2 + 2, waited
            # An idle WebSocket client is not a handshake that never ends: it is still here.
            assert healthy.close_code is None
            await ticks_arrive_on_time(live, healthy)


async def test_hostile_clients_all_at_once_delay_no_one(folder: Path) -> None:
    """Every hostile client above at the same time, while a healthy one is served."""
    settings = Settings(
        scenarios=folder,
        isolated=True,
        client_rate=50,
        max_clients=6,
        ws_origins=["http://good.example"],
    )
    # The flooder never reads the reaction's answers: they pile up on its side, unbounded.
    with (
        serving(settings, ws_max_size=4096) as (live, server),
        connect_sync(live.ws_url + "/ws?client_id=flood", max_queue=None) as flooder,
    ):
        server.handshake_timeout = 0.5
        async with connect(live.ws_url + "/ws?client_id=healthy") as healthy:
            await connected(live, 2)
            silent = [await silent_connection(live) for _ in range(5)]

            async def flooding() -> None:
                # From a thread: a flooding client is another program, not a task that
                # holds up the loop the healthy client is read on.
                request = '{"message_type": "PAUSE_REQUEST", "message": "x"}'
                await asyncio.to_thread(flood, flooder, request, 3000)

            async def oversized() -> None:
                async with connect(live.ws_url + "/ws", max_size=None) as rude:
                    await rude.send("z" * 8192)
                    closed = await until_closed(rude)  # it may get a tick or two first
                    assert closed.rcvd is not None
                    assert closed.rcvd.code == 1009

            async def evil_origin() -> None:
                with pytest.raises(InvalidStatus, match="403"):
                    await connect(live.ws_url + "/ws", origin="http://evil.example")  # type: ignore[arg-type]

            async def over_the_limit() -> None:
                extra = [await connect(live.ws_url + "/ws/stream") for _ in range(6)]
                await asyncio.sleep(0.2)
                await asyncio.gather(*(ws.close() for ws in extra))

            async def one_then_the_other() -> None:
                await oversized()
                await over_the_limit()

            chaos = asyncio.gather(
                flooding(), one_then_the_other(), *(evil_origin() for _ in range(5))
            )
            try:
                await ticks_arrive_on_time(live, healthy)
                await chaos
            finally:
                for _, writer in silent:
                    writer.close()
            assert live.replay.refused["origin"] == 5
            assert live.replay.refused["limit"] >= 1
            await ticks_arrive_on_time(live, healthy)
