"""The dashboard and the viewer in real headless Chromium (Debian's), driven by Playwright.

The tests assert on the page's content, never on screenshots. `.ci/run` installs
chromium; set REPLAY_CHROMIUM to use another binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as serve_websockets

from replay.library import PROTOCOL_FILE
from replay.record.format import text_frame
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server, wait_until_watched
from tests.protocols import SCHWARM, SCHWARM_PROTOCOL, write_protocol
from tests.recorded_files import CHAT_INPUT, STARTED, write_recording

CHROMIUM = os.environ.get("REPLAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The flags keep Chromium off the network (this machine's is closed) and quiet as root.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT = 10_000  # ms, for anything the page must show
expect.set_options(timeout=TIMEOUT)

LONG = """
description: A long run, to cancel.
steps:
  - message: EVENT
    text: started
  - sleep: 60s
  - message: EVENT
    text: never
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (bash .ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def served(scenarios_dir: Path) -> Iterator[LiveServer]:
    (scenarios_dir / "long.yaml").write_text(LONG)
    live, server, thread = start_live_server(Settings(scenarios=scenarios_dir, isolated=True))
    try:
        wait_until_watched(live)  # files the tests add later are changes the page is told of
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser, served: LiveServer) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT)
    opened.goto(served.url + "/")
    expect(opened.locator("#status")).to_have_text("Live")
    yield opened
    context.close()


def scenario(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'li.scenario[data-name="{name}"]')


def test_play_all_shows_the_four_messages_and_the_assembled_stream(page: Page) -> None:
    expect(scenario(page, "all")).to_contain_text("8 frames")
    page.get_by_role("button", name="Play all").click()
    log = page.locator("#log")
    for text in (
        "Test chat request",
        "Waiting for user input",
        "Test event message",
        "System paused",
    ):
        expect(log).to_contain_text(text)
    streams = page.locator("#streams li")
    expect(streams.last).to_have_text("This is a streaming message sent in chunks.")
    expect(streams.last).to_have_attribute("data-open", "false")  # the close signal came
    run = page.locator("#runs tr").first
    expect(run).to_have_attribute("data-state", "finished")
    expect(run).to_contain_text("all")


def test_the_client_count_changes_when_a_websocket_client_connects(
    page: Page, served: LiveServer
) -> None:
    count = page.locator('[data-count="/ws"]')
    expect(count).to_have_text("0")
    with connect(served.ws_url + "/ws?client_id=from-test"):
        expect(count).to_have_text("1")
        expect(page.locator("#clients")).to_contain_text("from-test")
    expect(count).to_have_text("0")


def test_a_long_run_can_be_cancelled(page: Page) -> None:
    page.get_by_role("button", name="Play long").click()
    expect(page.locator("#log")).to_contain_text("started")
    row = page.locator("#runs tr").first
    expect(row).to_have_attribute("data-state", "running")
    row.get_by_role("button", name="Cancel").click()
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(page.locator("#log")).not_to_contain_text("never")


def test_a_broken_scenario_shows_its_error_in_place(page: Page, served: LiveServer) -> None:
    folder = served.replay.settings.scenarios
    (folder / "broken.yaml").write_text("steps:\n  - message: EVNT\n    text: hi\n")
    broken = scenario(page, "broken")  # the watcher tells the page within a second or so
    expect(broken).to_have_attribute("data-valid", "false")
    expect(broken.locator(".problems")).to_contain_text(
        "broken.yaml:2:5: steps.0.message: unknown message type 'EVNT' (did you mean 'EVENT'?)"
    )
    expect(broken.get_by_role("button", name="Play broken")).to_be_disabled()
    (folder / "broken.yaml").write_text("steps:\n  - message: EVENT\n    text: hi\n")
    expect(broken).to_have_attribute("data-valid", "true")


def test_play_sends_the_variables_and_speed_from_the_form(page: Page) -> None:
    agent = scenario(page, "agent-run")
    agent.locator('input[data-var="agent"]').fill("triage")
    page.locator("#speed").fill("20")
    agent.get_by_role("button", name="Play agent-run").click()
    expect(page.locator("#log")).to_contain_text("triage - EventType.START_TURN")


def test_the_log_filters_by_endpoint_and_message_type(page: Page) -> None:
    page.locator("#speed").fill("0")
    page.get_by_role("button", name="Play all").click()
    expect(page.locator('#log li[data-endpoint="/ws/stream"]')).to_have_count(4)
    page.locator("#filter-endpoint").select_option("/ws")
    expect(page.locator("#log li:not([hidden])")).to_have_count(4)
    page.locator("#filter-type").fill("EVENT")
    visible = page.locator("#log li:not([hidden])")
    expect(visible).to_have_count(1)
    expect(visible).to_contain_text("Test event message")


def test_the_dashboard_reconnects_after_the_feed_drops(page: Page, served: LiveServer) -> None:
    # Closing every feed connection from the page's side is what a server restart looks
    # like to it; it must come back on its own and show what happened meanwhile.
    page.evaluate("feed.close(); feed.dispatchEvent(new Event('error'))")
    expect(page.locator("#status")).not_to_have_text("Live")
    page.evaluate("connect()")
    expect(page.locator("#status")).to_have_text("Live")
    request = urllib.request.Request(served.url + "/trigger/messages?speed=0", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read())["state"] == "finished"
    expect(page.locator("#log")).to_contain_text("System paused")


def test_the_viewer_shows_what_a_scenario_sends(browser: Browser, served: LiveServer) -> None:
    context = browser.new_context()
    viewer = context.new_page()
    viewer.set_default_timeout(TIMEOUT)
    try:
        viewer.goto(served.url + "/viewer")
        expect(viewer.locator("#status")).to_have_text("Connected")
        request = urllib.request.Request(served.url + "/trigger/all?speed=0", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["clients"] == 2
        expect(viewer.locator("#messages")).to_contain_text("PAUSE_STATUS: System paused")
        expect(viewer.locator("#streams li").last).to_have_text(
            "This is a streaming message sent in chunks."
        )
    finally:
        context.close()


def test_the_dashboard_reconnects_by_itself_when_the_server_restarts(
    browser: Browser, scenarios_dir: Path
) -> None:
    first, server, thread = start_live_server(Settings(scenarios=scenarios_dir, isolated=True))
    port = int(first.url.rsplit(":", 1)[1])
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    again = None
    try:
        page.goto(first.url + "/")
        expect(page.locator("#status")).to_have_text("Live")
        server.should_exit = True
        thread.join(timeout=10)
        expect(page.locator("#status")).not_to_have_text("Live")
        again = start_live_server(Settings(scenarios=scenarios_dir, isolated=True), port=port)
        expect(page.locator("#status")).to_have_text("Live")
        with connect(first.ws_url + "/ws"):
            expect(page.locator('[data-count="/ws"]')).to_have_text("1")
    finally:
        context.close()
        if again is not None:
            again[1].should_exit = True
            again[2].join(timeout=10)


def test_a_server_with_a_token_asks_for_it_and_then_works(
    browser: Browser, scenarios_dir: Path
) -> None:
    settings = Settings(scenarios=scenarios_dir, isolated=True, token="s3cret")
    live, server, thread = start_live_server(settings)
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(live.url + "/")
        expect(page.locator("#token-form")).to_be_visible()
        expect(page.locator("#status")).to_have_text("This server needs its token")
        expect(page.locator("li.scenario")).to_have_count(0)  # nothing leaks without it
        page.get_by_role("textbox", name="Token").fill("s3cret")
        page.get_by_role("button", name="Use").click()
        expect(page.locator("#status")).to_have_text("Live")
        expect(scenario(page, "all")).to_contain_text("8 frames")
        page.get_by_role("button", name="Play messages").click()
        expect(page.locator("#log")).to_contain_text("System paused")
        # Given once in the address, the token is kept for the tab and taken out of it.
        fresh = context.new_page()
        fresh.goto(live.url + "/?token=s3cret")
        expect(fresh.locator("#status")).to_have_text("Live")
        assert "token" not in fresh.url
    finally:
        context.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_the_routes_panel_lists_the_routes_and_edits_the_live_state(
    page: Page, served: LiveServer
) -> None:
    write_protocol(served.replay.settings.scenarios, SCHWARM_PROTOCOL)
    page.reload()
    routes = page.locator("#routes tr")
    expect(routes).to_have_count(len(SCHWARM.routes))
    expect(page.locator('#routes tr[data-route="GET /break"]')).to_contain_text(
        "Whether the run is paused."
    )
    expect(page.locator('#routes tr[data-route="GET /slow"]')).to_contain_text("5.00 s")
    paused = page.get_by_label("Value of paused")
    expect(paused).to_have_value("true")
    # Set from the page: PUT /state.
    paused.fill("false")
    page.get_by_role("button", name="Set paused").click()
    expect(paused).to_have_value("false")
    assert get_json(served, "/state")["paused"] is False
    # Set by a request to a declared route: the page follows, and logs the request.
    request = urllib.request.Request(served.url + "/break?client_id=tab-1", method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.loads(answer.read()) is True
    expect(paused).to_have_value("true")
    expect(page.locator('#log li[data-endpoint="http"]')).to_contain_text(
        "POST /break?client_id=tab-1 → 200"
    )
    # A new key.
    page.get_by_role("textbox", name="Key", exact=True).fill("turn_amount")
    page.get_by_role("textbox", name="Value", exact=True).fill("3")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_label("Value of turn_amount")).to_have_value("3")
    assert get_json(served, "/state")["turn_amount"] == 3


def test_a_state_the_server_refuses_says_why(page: Page, served: LiveServer) -> None:
    page.get_by_role("textbox", name="Key", exact=True).fill("ok_key")
    page.get_by_role("textbox", name="Value", exact=True).fill('"x"')
    page.get_by_role("button", name="Add", exact=True).click()
    value = page.get_by_label("Value of ok_key")
    expect(value).to_have_value('"x"')
    page.get_by_role("textbox", name="Key", exact=True).fill("bad-key")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#state-error")).to_contain_text(
        "Could not set bad-key: 'bad-key' is not a state key"
    )


def get_json(served: LiveServer, path: str) -> Any:
    with urllib.request.urlopen(served.url + path, timeout=10) as answer:
        return json.loads(answer.read())


def test_the_token_form_stays_hidden_when_no_token_is_needed(page: Page) -> None:
    # Its "filters" class lays it out as a flex box, which must not override "hidden".
    expect(page.locator("#token-form")).to_be_hidden()
    # The shipped folder declares Schwarm P5's control routes.
    expect(page.locator('#routes tr[data-route="POST /break"]')).to_be_visible()
    expect(page.locator("#no-routes")).to_be_hidden()


# --- the protocol panel --------------------------------------------------------------------

PRICE_FEED = Path(__file__).resolve().parent.parent / "examples" / "price-feed"


@contextlib.contextmanager
def dashboard_of(
    browser: Browser, folder: Path, **settings: Any
) -> Iterator[tuple[Page, LiveServer]]:
    """The dashboard of a server of its own on ``folder`` (``settings``: more), live."""
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True, **settings))
    context = browser.new_context()
    try:
        wait_until_watched(live)
        opened = context.new_page()
        opened.set_default_timeout(TIMEOUT)
        opened.goto(live.url + "/")
        expect(opened.locator("#status")).to_have_text("Live")
        yield opened, live
    finally:
        context.close()
        server.should_exit = True
        thread.join(timeout=10)


def endpoint_row(page: Page, path: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#endpoints tr[data-endpoint="{path}"]')


def message_type_row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#message-types tr[data-message-type="{name}"]')


def test_the_protocol_panel_shows_what_the_shipped_folder_speaks(
    page: Page, served: LiveServer
) -> None:
    folder = served.replay.settings.scenarios
    expect(page.locator("#protocol-description")).to_have_text(
        "Schwarm's dashboard protocol (the seed's two sockets)"
    )
    expect(page.locator("#protocol-source")).to_contain_text(
        f"Declared in {folder / '_protocol.yaml'} on top of Schwarm's · 2 endpoints · "
        "10 message types · 8 HTTP routes"
    )
    expect(page.locator("#protocol-problems")).to_be_hidden()
    expect(page.locator("#endpoints tr")).to_have_count(2)
    messages = endpoint_row(page, "/ws")
    expect(messages).to_contain_text("messages {message_type: type, message: payload}")
    expect(messages).to_contain_text("data as text")
    expect(messages.locator("td").nth(0)).not_to_contain_text("chunks")
    stream = endpoint_row(page, "/ws/stream")
    expect(stream).to_contain_text("chunks {type: kind, content: text} · kinds default / tool")
    expect(stream).to_contain_text('closed by {"type":"close","content":null}')
    expect(page.locator("#message-types tr[data-message-type]")).to_have_count(10)
    event = message_type_row(page, "EVENT")
    expect(event).to_contain_text("an agent event; the message is a JSON span")
    expect(event.locator("td").nth(0)).to_have_text("/ws")  # the first that takes messages
    expect(message_type_row(page, "CHAT_INPUT").locator("td").nth(1)).to_have_text("client")
    expect(event.locator("td").last).to_have_text("none")  # no payload schema
    # The clients column follows connections, as the Clients panel does.
    clients = stream.locator('[data-clients="/ws/stream"]')
    expect(clients).to_have_text("0")
    with connect(served.ws_url + "/ws/stream"):
        expect(clients).to_have_text("1")
    expect(clients).to_have_text("0")


def test_the_protocol_panel_of_the_price_feed_shows_its_schemas(
    browser: Browser, tmp_path: Path
) -> None:
    folder = tmp_path / "price-feed"
    shutil.copytree(PRICE_FEED, folder)
    with dashboard_of(browser, folder) as (page, live):
        expect(page.locator("#protocol-source")).to_contain_text(
            "(extends: none) · 1 endpoint · 4 message types · 0 HTTP routes"
        )
        expect(page.locator("#endpoints tr")).to_have_count(1)
        prices = endpoint_row(page, "/prices")
        expect(prices).to_contain_text("messages {event: type, data: payload} · data as JSON")
        expect(prices).to_contain_text("subscriptions in, prices out")
        update = message_type_row(page, "price_update")
        expect(update).to_contain_text("one symbol's new price")
        expect(update.locator("td").nth(0)).to_have_text("/prices")
        expect(update.locator("td").nth(1)).to_have_text("server")
        # The schema is there to read, pretty-printed, on a click.
        schema = page.locator('#message-types tr[data-schema-of="price_update"]')
        expect(schema).to_be_hidden()
        show = page.get_by_role("button", name="JSON Schema of price_update")
        expect(show).to_have_attribute("aria-expanded", "false")
        show.click()
        expect(show).to_have_attribute("aria-expanded", "true")
        expect(schema).to_be_visible()
        expect(schema).to_contain_text('"required": [\n    "symbol",\n    "price"\n  ]')
        expect(schema).to_contain_text('"additionalProperties": false')
        expect(message_type_row(page, "market_closed").locator("td").last).to_have_text("none")
        show.click()
        expect(schema).to_be_hidden()
        # The other panels speak it too: its endpoint's clients, its type field in the log.
        expect(page.locator("#client-counts")).to_have_text("/prices: 0")
        with connect(live.ws_url + "/prices"):
            expect(page.locator('[data-count="/prices"]')).to_have_text("1")
            page.locator("#speed").fill("0")
            page.get_by_role("button", name="Play ticks").click()
            expect(page.locator('#log li[data-type="price_update"]')).to_have_count(2)
        page.locator("#filter-endpoint").select_option("/prices")
        page.locator("#filter-type").fill("market_closed")
        expect(page.locator("#log li:not([hidden])")).to_have_count(1)


BROKEN_PROTOCOL = """\
extends: schwarm
message_types:
  PRICE:
    description: a price
    sent_by: nobody
  QUOTE: a quote
"""


def test_a_broken_protocol_file_shows_its_located_problems(page: Page, served: LiveServer) -> None:
    folder = served.replay.settings.scenarios
    shipped = (folder / PROTOCOL_FILE).read_text()
    write_protocol(folder, BROKEN_PROTOCOL)  # the page is told: no reload
    problems = page.locator("#protocol-problems")
    expect(problems).to_be_visible()
    expect(problems.get_by_role("listitem")).to_have_text(
        [
            f"{folder / PROTOCOL_FILE}:5:5: message_types.PRICE.sent_by: not an allowed "
            "value; expected 'server', 'client' or 'both', found 'nobody'"
        ]
    )
    # The rest is served: the type without a problem is there, the broken one is not.
    expect(message_type_row(page, "QUOTE")).to_contain_text("a quote")
    expect(message_type_row(page, "PRICE")).to_have_count(0)
    write_protocol(folder, shipped)
    expect(problems).to_be_hidden()
    expect(message_type_row(page, "QUOTE")).to_have_count(0)


def test_editing_the_protocol_file_updates_the_panel_without_a_reload(
    page: Page, served: LiveServer
) -> None:
    folder = served.replay.settings.scenarios
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#endpoints tr")).to_have_count(2)
    shipped = (folder / PROTOCOL_FILE).read_text()
    more = shipped.replace(
        "message_types: {}",
        "message_types:\n  PING: {description: are you there, endpoint: /more, sent_by: client}",
    )
    assert more != shipped
    write_protocol(folder, more + MORE_ENDPOINT)
    added = endpoint_row(page, "/more")
    expect(added).to_contain_text("also /more/too")
    expect(added).to_contain_text("messages {kind: type, body: payload}")
    expect(added).to_contain_text("a socket of our own")
    expect(page.locator("#endpoints tr")).to_have_count(3)
    ping = message_type_row(page, "PING")
    expect(ping.locator("td").nth(0)).to_have_text("/more")
    expect(ping.locator("td").nth(1)).to_have_text("client")
    # Its clients, through the alias too, are counted here and in the Clients panel.
    with connect(served.ws_url + "/more/too"):
        expect(added.locator('[data-clients="/more"]')).to_have_text("1")
        expect(page.locator('[data-count="/more"]')).to_have_text("1")
    expect(page.locator("#filter-endpoint option")).to_have_text(
        ["all", "/ws", "/ws/stream", "/more", "http"]
    )
    assert page.evaluate("window.notReloaded") is True


MORE_ENDPOINT = """
endpoints:
  /more:
    description: a socket of our own
    aliases: [/more/too]
    messages: {type: kind, payload: body}
"""


# --- recordings, and live sessions (serve --upstream) ---------------------------------------------


def test_the_recordings_panel_lists_recordings_and_shows_their_frames(
    browser: Browser, scenarios_dir: Path, tmp_path: Path
) -> None:
    recordings = tmp_path / "recordings"
    write_recording(recordings, "3f2a9c0e1b7d")
    write_recording(recordings, "0000aa", ended=False, started=STARTED + 60, tail='{"t": 9')
    (recordings / "0000bb.jsonl").write_text("garbage\n")
    many = [text_frame(i / 100, "server", json.dumps({"n": i})) for i in range(250)]
    write_recording(recordings, "abcdef", many, started=STARTED - 60)
    with dashboard_of(browser, scenarios_dir, recordings=recordings) as (page, _):
        expect(page.locator("#recordings tr")).to_have_count(4)
        clean = page.locator('#recordings tr[data-recording="3f2a9c0e1b7d"]')
        for text in (
            "/ws",
            "ui",
            "ws://127.0.0.1:8000",
            "2 / 3",
            "1.50 s",
            "closed 1000 by the client",
        ):
            expect(clean).to_contain_text(text)
        expect(page.locator('#recordings tr[data-recording="0000aa"] td.end')).to_have_text(
            "cut short"
        )
        expect(page.locator('#recordings tr[data-recording="0000bb"]')).to_contain_text(
            "Cannot be read: line 1: a line is not JSON"
        )
        clean.get_by_role("button", name="View recording 3f2a9c0e1b7d").click()
        expect(page.locator("#recording-title")).to_have_text("Recording 3f2a9c0e1b7d")
        frames = page.locator("#recording-frames tr[data-frame]")
        expect(frames).to_have_count(5)
        size = f"{len(CHAT_INPUT)} B"
        expect(frames.nth(1).locator("td")).to_have_text(
            ["1", "250.0 ms", "client →", "text", size, CHAT_INPUT]
        )
        expect(frames.nth(3).locator("td")).to_have_text(
            ["3", "750.0 ms", "← server", "binary", "4 B", "base64 AAEC/w=="]
        )
        expect(frames.nth(4).locator("td").last).to_have_text("1000 bye")
        # A click shows the frame whole, its JSON pretty-printed.
        opener = frames.nth(1).get_by_role("button")
        opener.click()
        expect(opener).to_have_attribute("aria-expanded", "true")
        pretty = json.dumps(json.loads(CHAT_INPUT), indent=2)
        expect(page.locator("#frame-1 pre")).to_have_text(pretty)
        # A long recording comes a page at a time.
        page.get_by_role("button", name="View recording abcdef").click()
        expect(frames).to_have_count(200)
        expect(page.locator("#recording-count")).to_have_text("200 of 250 frames shown")
        page.get_by_role("button", name="Load more frames").click()
        expect(frames).to_have_count(250)
        expect(frames.last.locator("td").last).to_have_text('{"n": 249}')
        expect(page.get_by_role("button", name="Load more frames")).to_be_hidden()
        # Convert: a scenario in the folder, said in the panel, listed with the others.
        clean.get_by_role("button", name="Convert recording 3f2a9c0e1b7d into a scenario").click()
        expect(page.locator("#recordings-message")).to_contain_text(
            "Recording 3f2a9c0e1b7d is now the scenario recorded-3f2a9c0e1b7d"
        )
        expect(scenario(page, "recorded-3f2a9c0e1b7d")).to_be_visible()


@contextlib.contextmanager
def backend() -> Iterator[tuple[str, queue.Queue[ServerConnection]]]:
    """A real upstream: a websockets server on a free port, its connections in a queue."""
    connections: queue.Queue[ServerConnection] = queue.Queue()

    def handle(connection: ServerConnection) -> None:
        connections.put(connection)
        for _ in connection:
            pass

    with serve_websockets(handle, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}", connections
        finally:
            server.shutdown()
            thread.join(timeout=10)


def test_the_log_marks_the_upstream_s_frames_and_the_injected_ones(
    browser: Browser, scenarios_dir: Path
) -> None:
    with (
        backend() as (url, connections),
        dashboard_of(browser, scenarios_dir, upstream=url) as (page, live),
        connect(live.ws_url + "/ws?client_id=ui") as client,
    ):
        real = connections.get(timeout=TIMEOUT / 1000)
        real.send('{"message_type":"EVENT","message":"from the backend"}')
        client.recv(timeout=TIMEOUT / 1000)
        post = urllib.request.Request(live.url + "/trigger/messages?speed=0", method="POST")
        urllib.request.urlopen(post, timeout=10).close()
        log = page.locator("#log li")
        upstream = log.filter(has_text="from the backend")
        expect(upstream).to_have_attribute("data-source", "upstream")
        expect(upstream.locator(".badge")).to_have_text("upstream")
        injected = log.filter(has_text="Test chat request")
        expect(injected).to_have_attribute("data-source", "injected")
        expect(injected.locator(".badge")).to_have_text("injected")


def test_the_log_says_when_a_client_s_upstream_cannot_be_reached(
    browser: Browser, scenarios_dir: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"ws://127.0.0.1:{probe.getsockname()[1]}"
    with dashboard_of(browser, scenarios_dir, upstream=closed) as (page, live):
        with connect(live.ws_url + "/ws?client_id=ui") as client, pytest.raises(ConnectionClosed):
            client.recv(timeout=TIMEOUT / 1000)
        assert client.close_code == 1011
        failed = page.locator('#log li[data-direction="error"]')
        expect(failed.locator(".badge")).to_have_text("upstream unreachable")
        expect(failed).to_contain_text("/ws from ui")
        expect(failed).to_contain_text("(closed with 1011)")
