"""The dashboard and the viewer in real headless Chromium (Debian's), driven by Playwright.

The tests assert on the page's content, never on screenshots. `.ci/run` installs
chromium; set REPLAY_CHROMIUM to use another binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection
from websockets.sync.server import serve as serve_websockets

from replay.library import PROTOCOL_FILE
from replay.record.format import text_frame
from replay.server import Settings
from tests.browser import TIMEOUT, launch
from tests.conftest import LiveServer, serving, start_live_server, wait_until_watched
from tests.protocols import SCHWARM, SCHWARM_PROTOCOL, write_protocol
from tests.recorded_files import CHAT_INPUT, STARTED, write_recording

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
    with launch() as launched:
        yield launched


@pytest.fixture
def served(scenarios_dir: Path) -> Iterator[LiveServer]:
    (scenarios_dir / "long.yaml").write_text(LONG)
    with serving(Settings(scenarios=scenarios_dir, isolated=True)) as live:
        wait_until_watched(live)  # files the tests add later are changes the page is told of
        yield live


@pytest.fixture
def page(browser: Browser, served: LiveServer) -> Iterator[Page]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT)
    errors: list[str] = []  # the page's uncaught JavaScript errors: a test passes with none
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(served.url + "/")
    expect(opened.locator("#status")).to_have_text("Live")
    yield opened
    context.close()
    assert errors == []


def scenario(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'li.scenario[data-name="{name}"]')


def open_tab(page: Page, name: str) -> None:
    """Show the protocol, routes or recordings: tabs under the live log."""
    tab = page.get_by_role("tab", name=name)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


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
    run = page.locator("#runs [data-run]").first
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
    row = page.locator("#runs [data-run]").first
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


def test_the_side_bar_finds_scenarios_by_name_description_or_message(page: Page) -> None:
    search = page.get_by_role("searchbox", name="Search")
    shown = page.locator("li.scenario:not([hidden])")
    expect(shown).to_have_count(11)  # the shipped ten and the long one
    search.fill("stream")
    expect(shown.locator("h3")).to_have_text(["agent-run", "all", "chat", "stream"])
    search.fill("chat_input")  # what a scenario waits for, any case
    expect(shown).to_have_count(1)
    expect(shown).to_have_attribute("data-name", "chat")
    search.fill("no such thing")
    expect(shown).to_have_count(0)
    expect(page.locator("#no-scenarios")).to_be_visible()


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
    open_tab(page, "HTTP routes and state")
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


def test_a_state_value_being_typed_keeps_its_selection_when_the_state_changes(
    page: Page, served: LiveServer
) -> None:
    # A change of the state (here another key's, from a request) draws the panel again
    # while a value is being edited: its text, caret and selection must stay, or what is
    # typed next lands elsewhere ("falsetrue" for "false" typed over a selected "true").
    write_protocol(served.replay.settings.scenarios, SCHWARM_PROTOCOL)
    page.reload()
    open_tab(page, "HTTP routes and state")
    paused = page.get_by_label("Value of paused")
    expect(paused).to_have_value("true")
    # Found and selected in one step: a draw still pending from the new protocol file
    # would otherwise replace the input between finding it and selecting its text.
    page.evaluate("""() => {
        const input = document.querySelector('#state input[data-key="paused"]');
        input.focus();
        input.select();
    }""")
    drawn = paused.element_handle()
    request = urllib.request.Request(
        served.url + "/state",
        json.dumps({"turn_amount": 3}).encode(),
        {"Content-Type": "application/json"},
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
    expect(page.get_by_label("Value of turn_amount")).to_have_value("3")
    assert drawn.evaluate("input => !input.isConnected")  # the panel was drawn again
    expect(paused).to_be_focused()
    page.keyboard.insert_text("false")
    expect(paused).to_have_value("false")


def test_a_state_the_server_refuses_says_why(page: Page, served: LiveServer) -> None:
    open_tab(page, "HTTP routes and state")
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
        ["all endpoints", "/ws", "/ws/stream", "/more", "http"]
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
        open_tab(page, "Recordings")
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


# --- the layout, at the widths people use ----------------------------------------------------

WIDTHS = (1024, 1280, 1400, 1920, 2560)

FAILS = """
description: A run that fails at once, with a long error to lay out.
steps:
  - message: EVENT
    text: about to fail
  - wait: CHAT_INPUT
    timeout: 10ms
    on_timeout: fail
"""

# Measures taken in the page (JavaScript): layoutProblems() and widthUse().
CHECKS = (Path(__file__).parent / "dashboard_checks.js").read_text()


def post(served: LiveServer, path: str) -> Any:
    request = urllib.request.Request(served.url + path, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def test_every_panel_holds_its_content_at_every_width(
    page: Page, served: LiveServer, tmp_path: Path
) -> None:
    folder = served.replay.settings.scenarios
    (folder / "fails.yaml").write_text(FAILS)
    # Many scenarios (a side bar far taller than the screen), as a real folder has.
    for number in range(30):
        (folder / f"extra-{number:02}.yaml").write_text(
            f"description: Scenario number {number}, one of many to scroll past.\n"
            "steps:\n  - message: EVENT\n    text: hi\n"
        )
    expect(scenario(page, "extra-29")).to_be_visible()
    with (
        connect(served.ws_url + "/ws?client_id=a-rather-long-client-identifier-0123456789"),
        connect(served.ws_url + "/ws/stream?client_id=ui"),
    ):
        post(served, "/trigger/fails?speed=0&wait=false")
        post(served, "/trigger/long?wait=false")
        post(served, "/trigger/chat?wait=false")  # waits for an answer
        expect(page.locator("#runs .run-error")).to_contain_text("CHAT_INPUT")
        expect(page.locator("#runs .waiting")).to_contain_text("Answer in the viewer")
        expect(page.locator("#clients tr")).to_have_count(2)
        expect(page.locator("#timeline .mark").first).to_be_visible()
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 800})
            page.evaluate("() => new Promise((done) => requestAnimationFrame(done))")
            # To look at (REPLAY_DASHBOARD_SHOTS=folder keeps them): tests cannot see ugliness.
            shots = Path(os.environ.get("REPLAY_DASHBOARD_SHOTS") or tmp_path)
            page.screenshot(path=str(shots / f"dashboard-test-{width}.png"))
            assert page.evaluate(f"() => (\n{CHECKS}\n).layoutProblems()") == [], width
            use = page.evaluate(f"() => (\n{CHECKS}\n).widthUse()")
            # The panels reach from one side of the main area to the other (no empty quarter).
            assert use["panelsLeft"] - use["mainLeft"] < 20, (width, use)
            assert use["mainRight"] - use["panelsRight"] < 20, (width, use)
            assert use["mainRight"] >= use["page"] - 1, (width, use)
            assert use["log"] > 0.9 * (use["mainRight"] - use["mainLeft"] - 40), (width, use)
            # A run's error reads across its panel, not down a narrow column.
            assert use["error"] > 0.6 * use["runs"], (width, use)
            # The live log is on the first screen, whatever the side bar holds.
            assert use["logTop"] < 800 - 100, (width, use)


def test_nothing_hidden_is_shown(page: Page, served: LiveServer) -> None:
    # A class that lays an element out (the token form's flex box) must not undo `hidden`:
    # a server started without a token said it was started with one.
    expect(page.locator("#token-form")).to_be_hidden()
    expect(page.get_by_text("The server was started with --token")).to_be_hidden()
    # The shipped folder declares Schwarm P5's control routes.
    open_tab(page, "HTTP routes and state")
    expect(page.locator('#routes tr[data-route="POST /break"]')).to_be_visible()
    expect(page.locator("#no-routes")).to_be_hidden()
    post(served, "/trigger/messages?speed=0")
    expect(page.locator("#log")).to_contain_text("System paused")
    shown = page.evaluate(
        """() => [...document.querySelectorAll("[hidden]")]
          .filter((node) => node.getClientRects().length > 0)
          .map((node) => node.id || node.outerHTML.slice(0, 80))"""
    )
    assert shown == []
    assert page.locator("[hidden]").count() > 5  # there was something to check


# --- the clients' counts --------------------------------------------------------------------


def test_the_clients_table_follows_the_frames_both_ways(page: Page, served: LiveServer) -> None:
    # The table was loaded only when a client came or went, so its counts stayed at what
    # they were then (1/0 while GET /clients said 5/2).
    with connect(served.ws_url + "/ws?client_id=counted") as client:
        row = page.locator('#clients tr[data-client="counted"]')
        expect(row.locator(".sent")).to_have_text("0")
        for number in range(3):
            client.send(json.dumps({"message_type": "CHAT_INPUT", "message": f"hi {number}"}))
        post(served, "/trigger/messages?speed=0")
        for _ in range(4):
            client.recv(timeout=TIMEOUT / 1000)
        counts = get_json(served, "/clients")["clients"][0]
        deadline = threading.Event()
        for _ in range(100):  # the server counts a frame once it has read it: poll for it
            counts = get_json(served, "/clients")["clients"][0]
            if counts["received"] == 3:
                break
            deadline.wait(0.05)
        assert (counts["sent"], counts["received"]) == (4, 3)
        expect(row.locator(".sent")).to_have_text("4")
        expect(row.locator(".received")).to_have_text("3")


# --- the live log ---------------------------------------------------------------------------


def test_the_log_shows_milliseconds_sizes_and_connections(page: Page, served: LiveServer) -> None:
    hello = '{"message_type": "CHAT_INPUT", "message": "hello"}'
    with connect(served.ws_url + "/ws?client_id=tab-7") as client:
        client.send(hello)
        received = page.locator('#log li[data-direction="received"]')
        expect(received).to_contain_text("hello")
        expect(received.locator(".when")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
        expect(received.locator(".size")).to_have_text(f"{len(hello)} B")
        expect(received.locator(".dir")).to_have_text("← received")
        connected = page.locator('#log li[data-event="connect"]')
        expect(connected).to_contain_text("/ws tab-7")
    closed = page.locator('#log li[data-event="disconnect"]')
    expect(closed).to_contain_text("/ws tab-7")
    expect(closed.locator(".frame")).to_contain_text("0 clients left on /ws")
    # A click shows a frame whole, its JSON pretty-printed.
    received.locator("button.frame").click()
    expect(received.locator("pre")).to_have_text(
        '{\n  "message_type": "CHAT_INPUT",\n  "message": "hello"\n}'
    )
    # A field holding JSON in a string (Schwarm's EVENT spans) is shown parsed as well.
    span = json.dumps({"message_type": "EVENT", "message": json.dumps({"id": "1f"})})
    assert page.evaluate("(text) => pretty(text)", span) == (
        '{\n  "message_type": "EVENT",\n  "message": "{\\"id\\": \\"1f\\"}"\n}'
        '\n\nmessage (JSON in a string), parsed:\n{\n  "id": "1f"\n}'
    )
    # The direction filter keeps connections apart.
    page.locator("#filter-direction").select_option("connection")
    expect(page.locator("#log li:not([hidden])")).to_have_count(2)
    page.locator("#filter-direction").select_option("")
    page.locator("#filter-text").fill("/HEL+O/")
    expect(page.locator("#log li:not([hidden])")).to_have_count(1)


CUT_STREAM = """
description: A stream cut by a disconnect, then another.
steps:
  - chunk: "first part "
  - chunk: "never finished"
  - disconnect: /ws/stream
    code: 1001
  - wait_connect: any
    endpoint: /ws/stream
  - chunk: "second stream"
  - close: stream
"""

OPEN_STREAM = """
description: A stream left open by a run that goes on.
steps:
  - chunk: "left open"
  - sleep: 60s
"""


def test_a_stream_cut_by_a_disconnect_or_another_run_ends_its_block(
    page: Page, served: LiveServer
) -> None:
    folder = served.replay.settings.scenarios
    (folder / "cut.yaml").write_text(CUT_STREAM)
    (folder / "open.yaml").write_text(OPEN_STREAM)
    expect(scenario(page, "open")).to_be_visible()
    blocks = page.locator("#streams li")
    with connect(served.ws_url + "/ws/stream?client_id=s"):
        post(served, "/trigger/cut?speed=0&wait=false")
        expect(blocks.first).to_have_attribute("data-cut", "true")
    expect(blocks.first).to_contain_text("first part never finished")
    expect(blocks.first.locator(".cut")).to_contain_text("cut")
    with connect(served.ws_url + "/ws/stream?client_id=s"):  # the run waits for it
        expect(blocks).to_have_count(2)
        expect(blocks.nth(1)).to_have_text("second stream")
        expect(blocks.nth(1)).to_have_attribute("data-open", "false")
        post(served, "/trigger/open?wait=false")
        expect(blocks.nth(2)).to_have_text("left open")
        expect(blocks.nth(2)).to_have_attribute("data-open", "true")
        post(served, "/trigger/stream?speed=0")  # another run's stream
        expect(blocks.nth(2)).to_have_attribute("data-cut", "true")
        expect(blocks.nth(3)).to_have_text("This is a streaming message sent in chunks.")
        expect(blocks).to_have_count(4)


# --- runs: counts, control, the timeline ----------------------------------------------------


def test_a_run_that_waits_never_shows_sent_over_planned(page: Page, served: LiveServer) -> None:
    with connect(served.ws_url + "/ws?client_id=ui") as client:
        post(served, "/trigger/chat?speed=0&wait=false")
        waiting = page.locator("#runs [data-run] .waiting")
        expect(waiting).to_contain_text("waiting for")
        link = waiting.get_by_role("link", name="Answer in the viewer")
        expect(link).to_have_attribute("href", re.compile(r"^/viewer"))
        client.send(
            '{"message_type": "CHAT_INPUT", "message": "a much longer answer than planned"}'
        )
        run = page.locator('#runs [data-run][data-state="finished"]')
        expect(run.locator(".frames")).to_have_text(
            re.compile(r"^\d+ sent \(37 planned with empty answers\)$")
        )
    post(served, "/trigger/messages?speed=0")
    expect(page.locator("#runs [data-run]").first.locator(".frames")).to_have_text("4/4 frames")
    # The contract's frames_exact decides; a count past the plan is never "43/32".
    shown = page.evaluate(
        """() => [framesText({sent: 43, frames: 32, frames_exact: false, scenario: "x"}),
                  framesText({sent: 43, frames: 32, frames_exact: true, scenario: "x"}),
                  framesText({sent: 3, frames: 32, frames_exact: true, scenario: "x"}),
                  framesText({sent: 5, frames: null, scenario: "x"})]"""
    )
    assert shown == [
        "43 sent (32 planned with empty answers)",
        "43 sent (32 planned)",
        "3/32 frames",
        "5 sent",
    ]


def test_a_running_run_can_be_paused_stepped_sped_up_and_resumed(
    page: Page, served: LiveServer
) -> None:
    run_id = post(served, "/trigger/long?wait=false")["run_id"]
    run = page.locator(f'#runs [data-run="{run_id}"]')
    expect(run.locator(".frames")).to_have_text("1/2 frames")
    expect(run).to_have_attribute("data-paused", "false")
    run.get_by_role("button", name=f"Pause run {run_id}").click()
    expect(run).to_have_attribute("data-paused", "true")
    expect(run.locator(".state")).to_have_text("paused")
    # The keyboard stays where it was: on the same button, now Resume.
    expect(run.get_by_role("button", name=f"Resume run {run_id}")).to_be_focused()
    assert get_json(served, f"/runs/{run_id}")["paused"] is True
    expect(page.locator("#summary")).to_contain_text("1 running · 1 paused")
    # Step: the frame after the 60 s sleep goes out now, and the run stays paused.
    run.get_by_role("button", name=f"Step run {run_id}").click()
    expect(run.locator(".stepped")).to_have_text(
        "Stepped: a frame went out (step 2); paused again."
    )
    expect(page.locator("#log")).to_contain_text("never")
    expect(run.locator(".frames")).to_have_text("2/2 frames")
    expect(run).to_have_attribute("data-paused", "true")
    run.locator('select[data-control="speed"]').select_option("2")
    expect(run.locator(".by")).to_contain_text("speed 2")
    assert get_json(served, f"/runs/{run_id}")["speed"] == 2
    run.get_by_role("button", name=f"Resume run {run_id}").click()
    expect(run).to_have_attribute("data-state", "finished")  # nothing was left to play


def test_a_control_the_server_refuses_says_why(page: Page, served: LiveServer) -> None:
    with connect(served.ws_url + "/ws?client_id=ui"):
        run_id = post(served, "/trigger/chat?speed=0&wait=false")["run_id"]
        run = page.locator(f'#runs [data-run="{run_id}"]')
        expect(run.locator(".waiting")).to_contain_text("CHAT_INPUT")
        run.get_by_role("button", name=f"Step run {run_id}").click()
        expect(page.locator("#run-message")).to_contain_text(
            f"Could not step run {run_id}: run {run_id}: it waits for CHAT_INPUT from any "
            "client: a step cannot skip a wait"
        )
        run.get_by_role("button", name=f"Cancel run {run_id}").click()
        expect(run).to_have_attribute("data-state", "cancelled")


def test_the_timeline_shows_a_run_s_frames_in_lanes_and_one_whole_on_a_click(
    page: Page, served: LiveServer
) -> None:
    with connect(served.ws_url + "/ws?client_id=ui"), connect(served.ws_url + "/ws/stream"):
        page.locator("#speed").fill("5")  # marks apart, each to click on
        page.get_by_role("button", name="Play all").click()
        frames = page.locator("#timeline .mark.frame")
        expect(frames).to_have_count(8)
        expect(page.locator("#timeline text.lane-name")).to_have_text(["/ws", "/ws/stream"])
        expect(page.locator("#timeline-run")).to_contain_text("all · finished")
        event = page.locator('#timeline .mark.frame[aria-label*="/ws to all"]').nth(2)
        event.click()
        expect(page.locator("#timeline-detail-text")).to_have_text(
            '{\n  "message_type": "EVENT",\n  "message": "Test event message"\n}'
        )
        expect(page.locator("#timeline-detail-title")).to_contain_text("Frame · step")
        # By keyboard too.
        frames.first.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#timeline-detail-text")).to_contain_text("Test chat request")


def test_the_timeline_of_a_run_shows_its_planned_times_its_wait_and_its_drop(
    page: Page, served: LiveServer
) -> None:
    with connect(served.ws_url + "/ws?client_id=ui") as client:
        post(served, "/trigger/chat?speed=10&wait=false")
        wait = page.locator("#timeline .wait-mark")
        expect(wait).to_have_attribute("aria-label", re.compile(r"for CHAT_INPUT, .*still waiting"))
        # Each frame sent against its planned time; what comes next, from the plan.
        expect(page.locator('#timeline .mark.frame[aria-label*=", planned "]')).to_have_count(2)
        expect(page.locator("#timeline-stats")).to_contain_text("2 frames sent · ")
        expect(page.locator("#timeline circle.ghost").first).to_be_attached()
        client.send('{"message_type": "CHAT_INPUT", "message": "go"}')
        expect(wait).to_have_attribute("aria-label", re.compile(r"answered by ui at \d"))
        # Clicked once the run has ended: while it plays, each frame redraws the timeline,
        # and on a loaded machine a redraw between Playwright's check of what is under
        # the pointer and its click let the click land on a frame's mark instead.
        expect(page.locator("#runs [data-run]").first).to_have_attribute("data-state", "finished")
        wait.click()
        expect(page.locator("#timeline-detail-text")).to_contain_text('"message": "go"')
        post(served, "/trigger/crash?speed=10&wait=false")  # the newest run is shown
        drop = page.locator("#timeline .hangup-mark")
        expect(drop).to_have_attribute(
            "aria-label", re.compile(r"^drop \(no close frame\) of /ws, /ws/stream at")
        )
        expect(page.locator('#log li[data-event="drop"]')).to_contain_text(
            "dropped by the server (dropped on purpose): no close frame"
        )
        expect(page.locator('#log li[data-event="hangup"]')).to_contain_text("step 1: drop")


def test_the_timeline_and_log_show_lateness_waits_hangups_drops_and_close_codes(page: Page) -> None:
    # The feed's events, as a run of a scenario the server does not have (no plan to draw)
    # would send them: frame.sent's offset, at and lateness; run.wait and run.waited;
    # run.hangup.
    page.evaluate(
        """() => {
          const time = Date.now() / 1000;
          const run = {run_id: "feed0001", scenario: "on-paper", state: "running", speed: 1,
                       started_at: time - 3, sent: 2, frames: 5, paused: false, paused_s: 0};
          const sent = (step, offset, at, to) => handleEvent({event: "frame.sent", time,
            run_id: "feed0001", scenario: "on-paper", step, endpoint: "/ws", to, clients: 1,
            binary: false, frame: '{"message_type": "EVENT", "message": "x"}', offset, at,
            lateness: at - offset});
          handleEvent({event: "run.started", time: time - 3, run_id: "feed0001",
                       scenario: "on-paper", run});
          sent("1", 0, 0.001, null);
          sent("2", 0.3, 0.45, "ui");
          handleEvent({event: "run.wait", time, run_id: "feed0001", scenario: "on-paper",
                       step: "3",
                       offset: 0.45, expects: {kind: "message", step: "3",
                       message_type: "CHAT_INPUT", source: null, endpoint: "/ws",
                       timeout_s: 300}});
          handleEvent({event: "run.waited", time, run_id: "feed0001", scenario: "on-paper",
                       step: "3",
                       offset: 1.2, ended_by: "frame", client: "ui",
                       frame: '{"message_type": "CHAT_INPUT", "message": "go"}'});
          handleEvent({event: "run.hangup", time, run_id: "feed0001", scenario: "on-paper",
                       step: "4",
                       offset: 1.5, endpoints: ["/ws"], to: null, code: 1001, reason: "bye",
                       drop: false, clients: 1});
          showRun("feed0001", true);
        }"""
    )
    expect(page.locator("#timeline text.lane-name")).to_have_text(["/ws", "/ws → ui", "waits"])
    late = page.locator("#timeline .mark.frame.late")
    expect(late).to_have_count(1)
    expect(late).to_have_attribute("aria-label", re.compile(r"planned 0\.300 s, 150 ms late"))
    expect(late.locator(".late-line")).to_have_count(1)
    expect(page.locator("#timeline .mark.frame:not(.late)")).to_have_count(1)
    wait = page.locator("#timeline .wait-mark")
    expect(wait).to_have_attribute(
        "aria-label",
        "Wait step 3 for CHAT_INPUT, from 0.450 s: answered by ui at 1.200 s",
    )
    wait.click()
    expect(page.locator("#timeline-detail-text")).to_contain_text('"message": "go"')
    hangup = page.locator("#timeline .hangup-mark")
    expect(hangup).to_have_attribute(
        "aria-label", re.compile(r"^disconnect 1001 \(bye\) of /ws at 1\.500 s")
    )
    # client.disconnected's code (null when the TCP connection was lost) and dropped;
    # run.hangup for a run's disconnect or drop step, in the log.
    page.evaluate(
        """() => {
          const time = Date.now() / 1000;
          handleEvent({event: "client.disconnected", time, client: "c1", endpoint: "/ws",
                       clients: 1, reason: null, code: 4001, dropped: false});
          handleEvent({event: "client.disconnected", time, client: "c2", endpoint: "/ws",
                       clients: 0, reason: "send queue full", code: null, dropped: true});
          handleEvent({event: "run.hangup", time, run_id: "r1", scenario: "crash", step: "2",
                       offset: 1.5, endpoints: ["/ws", "/ws/stream"], to: null, code: 1006,
                       reason: "", drop: true, clients: 2});
        }"""
    )
    expect(page.locator('#log li[data-event="disconnect"] .frame')).to_have_text(
        "closed 4001 · 1 client left on /ws"
    )
    expect(page.locator('#log li[data-event="drop"] .frame')).to_have_text(
        "dropped by the server (send queue full): no close frame · 0 clients left on /ws"
    )
    hangups = page.locator('#log li[data-event="hangup"] .frame')
    expect(hangups).to_have_text(
        ["run feed0001 step 4: disconnect 1001 (bye) · 1 client", "run r1 step 2: drop · 2 clients"]
    )
    page.locator("#filter-endpoint").select_option("/ws/stream")
    expect(page.locator("#log li:not([hidden])")).to_have_count(1)  # the hangup's endpoints


def test_the_dashboard_has_no_serious_accessibility_problem(page: Page, served: LiveServer) -> None:
    from tests.axe import missing_tools, serious_violations

    problem = missing_tools()
    if problem:
        pytest.fail(problem)
    with connect(served.ws_url + "/ws?client_id=ui"):
        long = post(served, "/trigger/long?wait=false")
        post(served, "/trigger/messages?speed=0")
        expect(page.locator("#clients tr")).to_have_count(1)
        expect(page.locator('#runs [data-state="running"]')).to_have_count(1)
        expect(page.locator("#timeline .mark.frame").first).to_be_visible()
        page.locator("#log li button.frame").first.click()
        for theme in ("light", "dark"):
            page.emulate_media(color_scheme=theme)
            assert serious_violations(page) == [], theme
        # The run chosen (its row tinted) while it runs, then while it is paused: its state
        # badge keeps its contrast on the tint.
        run_id = long["run_id"]
        running = page.locator(f'#runs [data-run="{run_id}"]')
        running.locator(".pick").click()
        expect(running).to_have_attribute("aria-current", "true")
        for paused in (False, True):
            if paused:
                post(served, f"/runs/{run_id}/pause")
                expect(running).to_have_attribute("data-paused", "true")
            for theme in ("light", "dark"):
                page.emulate_media(color_scheme=theme)
                assert serious_violations(page) == [], (theme, paused)


# --- a cluster (serve --backplane) ----------------------------------------------------------


def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT / 1000
    while not condition():
        assert time.monotonic() < deadline, what
        threading.Event().wait(0.02)


@contextlib.contextmanager
def two_nodes(folder: Path) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two nodes of one cluster (memory://: in this process), each a live server."""
    settings = Settings(scenarios=folder, isolated=True, backplane=f"memory://{folder}")
    with serving(settings) as a, serving(settings) as b:
        wait_until_watched(a)
        wait_until_watched(b)
        yield a, b


def test_a_cluster_s_dashboard_shows_both_nodes_clients_and_each_frame_once(
    browser: Browser, scenarios_dir: Path
) -> None:
    from tests.axe import missing_tools, serious_violations

    (scenarios_dir / "thrice.yaml").write_text(
        "steps:\n  - repeat: 3\n    steps:\n      - message: EVENT\n        text: again\n"
        "        delay: 0\n"
    )
    with two_nodes(scenarios_dir) as (a, b):
        assert a.replay.node is not None
        assert b.replay.node is not None
        ids = a.replay.node.id, b.replay.node.id
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(a.url + "/")
        expect(page.locator("#status")).to_have_text("Live")
        # The page follows a's feed: b publishes its events from its next look at who follows.
        events_b = b.replay.cluster_events
        assert events_b is not None
        _until(lambda: events_b.publishing, "b never publishes its events")
        with (
            connect(a.ws_url + "/ws?client_id=on-a"),
            connect(b.ws_url + "/ws?client_id=on-b"),
        ):
            rows = page.locator("#clients tr")
            expect(rows).to_have_count(2)
            expect(page.get_by_role("columnheader", name="Node")).to_be_visible()
            expect(page.locator('#clients tr[data-client="on-a"] td.node')).to_have_text(ids[0])
            expect(page.locator('#clients tr[data-client="on-b"] td.node')).to_have_text(ids[1])
            expect(page.locator('[data-count="/ws"]')).to_have_text("2")
            expect(page.locator("#cluster")).to_contain_text("2 nodes")
            expect(page.locator("#cluster")).to_contain_text(f"this page: node {ids[0]}")
            post(b, "/trigger/messages?speed=0")  # taken by b, played by both
            sent = page.locator('#log li[data-event="sent"]')
            expect(sent).to_have_count(4)  # not 8: one line a frame, whatever the nodes
            for line in sent.all():
                expect(line.locator(".where")).to_have_text("/ws to all (2)")
                expect(line).to_have_attribute("data-nodes", "2")
            assert ids[1] in (sent.first.locator(".where").get_attribute("title") or "")
            run = page.locator("#runs [data-run]").first
            expect(run).to_have_attribute("data-state", "finished")
            expect(run.locator(".nodes")).to_have_text("on 2 nodes")
            expect(page.locator("#timeline .mark.frame")).to_have_count(4)
            # A step sent again with no pause is a frame of its own, on every node alike.
            post(a, "/trigger/thrice?speed=0")
            again = page.locator('#log li[data-event="sent"]', has_text="again")
            expect(again).to_have_count(3)
            for line in again.all():
                expect(line.locator(".where")).to_have_text("/ws to all (2)")
            problem = missing_tools()
            if problem:
                pytest.fail(problem)
            assert serious_violations(page) == []
        expect(rows).to_have_count(0)
        context.close()
    assert errors == []


def test_a_single_process_dashboard_shows_no_node(page: Page) -> None:
    expect(page.locator("#cluster")).to_be_hidden()
    expect(page.get_by_role("columnheader", name="Node")).to_have_count(0)
