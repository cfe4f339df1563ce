"""The dashboard and the viewer in real headless Chromium (Debian's), driven by Playwright.

The tests assert on the page's content, never on screenshots. `.ci/run` installs
chromium; set REPLAY_CHROMIUM to use another binary.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from websockets.sync.client import connect

from replay.server import Settings
from tests.conftest import LiveServer, start_live_server, wait_until_watched
from tests.protocols import SCHWARM, SCHWARM_PROTOCOL, write_protocol

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
