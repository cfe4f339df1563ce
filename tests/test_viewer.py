"""The viewer (GET /viewer) in real headless Chromium: a client a person drives, which
connects with an id, shows what the playing runs wait for and answers them.

The tests assert on the page's content and the server's answers, never on screenshots.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from replay.server import Settings
from tests.axe import serious_violations
from tests.browser import TIMEOUT, launch
from tests.conftest import LiveServer, serving, start_live_server, wait_until_watched

# Waits for CHAT_INPUT from the run's client, then quotes it.
ASK = """
description: Asks, waits for any CHAT_INPUT, answers.
steps:
  - message: CHAT_REQUESTED
    text: Your turn
  - wait: CHAT_INPUT
    timeout: 60s
  - message: CHAT
    text: "You said [{{ received.message }}] as {{ received.client }}"
"""
# Waits for a CHAT_INPUT whose message starts with "yes".
CONFIRM = """
description: Waits for a yes.
steps:
  - message: CHAT_REQUESTED
    text: Shall I go on?
  - wait: CHAT_INPUT
    match: "^yes\\\\b"
    timeout: 60s
  - message: CHAT
    text: "Confirmed: {{ received.message }}"
"""
# Half a stream, then the stream socket is closed under it.
CUT = """
description: Half a stream, then /ws/stream closes.
steps:
  - chunk: "half a "
  - chunk: "sentence"
  - disconnect: /ws/stream
    code: 1011
    reason: backend crashed
"""
# A stream that never closes: the next run's stream is another one.
UNCLOSED = """
description: A stream with no close signal.
steps:
  - chunk: "never closed"
"""
# Waits for client ui-9 to connect.
KNOCK = """
description: Waits for ui-9.
steps:
  - wait_connect: ui-9
    endpoint: /ws
    timeout: 60s
  - message: CHAT
    text: "Hello {{ run.scenario }}"
    to: ui-9
"""
# Waits for a request to the shipped protocol's POST /chat route, with some input.
OVER_HTTP = """
description: Waits for POST /chat?user_input=...
steps:
  - wait: POST /chat
    fields: {query.user_input: "\\\\S"}
    timeout: 60s
  - message: CHAT
    text: "Over HTTP: {{ received.frame.query.user_input }}"
"""
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as launched:
        yield launched


@pytest.fixture
def served(scenarios_dir: Path) -> Iterator[LiveServer]:
    for name, text in {
        "ask": ASK,
        "confirm": CONFIRM,
        "cut": CUT,
        "unclosed": UNCLOSED,
        "knock": KNOCK,
        "over-http": OVER_HTTP,
    }.items():
        (scenarios_dir / f"{name}.yaml").write_text(text)
    with serving(Settings(scenarios=scenarios_dir, isolated=True)) as live:
        wait_until_watched(live)
        yield live


def open_viewer(browser: Browser, served: LiveServer, client_id: str, **context: Any) -> Page:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{served.url}/viewer?client_id={client_id}")
    expect(page.locator("#status")).to_have_text("Connected")
    return page


@pytest.fixture
def viewer(browser: Browser, served: LiveServer) -> Iterator[Page]:
    page = open_viewer(browser, served, "ui-1")
    yield page
    page.context.close()


def call(served: LiveServer, method: str, path: str) -> Any:
    request = urllib.request.Request(served.url + path, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def until(served: LiveServer, path: str, check: Any) -> Any:
    """GET path until check(answer) holds (10 s at most); the last answer."""
    deadline = time.monotonic() + 10
    while True:
        answer = call(served, "GET", path)
        if check(answer):
            return answer
        assert time.monotonic() < deadline, f"GET {path} never passed the check: {answer}"
        time.sleep(0.05)


def clients(served: LiveServer) -> set[tuple[str, str]]:
    return {(c["client_id"], c["endpoint"]) for c in call(served, "GET", "/clients")["clients"]}


def trigger(served: LiveServer, name: str, query: str = "") -> str:
    answer = call(served, "POST", f"/trigger/{name}?wait=false{query}")
    run_id: str = answer["run_id"]
    return run_id


def finished(served: LiveServer, run_id: str) -> None:
    until(served, f"/runs/{run_id}", lambda run: run["state"] == "finished")


def test_the_viewer_connects_with_the_id_its_address_gives(
    viewer: Page, served: LiveServer
) -> None:
    expect(viewer.locator("#client-id")).to_have_value("ui-1")
    expect(viewer.locator("#whoami")).to_have_text("as client ui-1")
    until(
        served, "/clients", lambda _: {("ui-1", "/ws"), ("ui-1", "/ws/stream")} <= clients(served)
    )
    viewer.get_by_role("button", name="Disconnect").click()
    expect(viewer.locator("#status")).to_have_text("Disconnected")
    row = viewer.locator('#sockets tr[data-endpoint="/ws"]')
    expect(row).to_contain_text("not connected")
    expect(row).to_contain_text("1000 (normal): disconnected by the viewer")
    until(served, "/clients", lambda answer: not answer["clients"])
    viewer.locator("#client-id").fill("ui-2")
    viewer.get_by_role("button", name="Connect", exact=True).click()
    expect(viewer.locator("#status")).to_have_text("Connected")
    until(
        served, "/clients", lambda _: clients(served) == {("ui-2", "/ws"), ("ui-2", "/ws/stream")}
    )
    assert viewer.url.endswith("client_id=ui-2")  # a reload keeps the id


def test_an_id_the_server_would_refuse_is_refused_in_the_page(viewer: Page) -> None:
    viewer.locator("#client-id").fill("no spaces")
    viewer.get_by_role("button", name="Reconnect").click()
    expect(viewer.locator("#client-id-error")).to_contain_text('"no spaces" is not a client id')
    expect(viewer.locator("#client-id")).to_have_attribute("aria-invalid", "true")
    expect(viewer.locator("#status")).to_have_text("Connected")  # still as ui-1
    # Past the page's own check (as an older page might be), the server refuses it with
    # 1008; the page shows why and does not try again.
    viewer.evaluate("() => { disconnect(); me = 'no spaces'; wanted = true; syncSockets(); }")
    expect(viewer.locator("#status")).to_have_text("Refused: see the close reason")
    row = viewer.locator('#sockets tr[data-endpoint="/ws"]')
    expect(row).to_contain_text("1008 (policy): invalid client_id")
    expect(row).to_contain_text("not connected")


def test_one_click_answers_a_run_that_waits_for_this_client(
    viewer: Page, served: LiveServer
) -> None:
    run_id = trigger(served, "ask", "&client=ui-1")
    wait = viewer.locator(f'#waits li[data-run="{run_id}"]')
    expect(wait).to_have_attribute("data-for", "me")
    expect(wait).to_contain_text("CHAT_INPUT")
    expect(wait).to_contain_text("waits for you")
    expect(wait.locator("[data-deadline]")).to_have_text(re.compile(r"^[01]:\d\d$"))
    expect(viewer.locator("#messages")).to_contain_text("CHAT_REQUESTED: Your turn")
    wait.get_by_role("button", name="Send CHAT_INPUT").click()
    expect(viewer.locator("#messages")).to_contain_text("CHAT: You said [] as ui-1")
    finished(served, run_id)
    expect(viewer.locator("#waits li")).to_have_count(0)
    sent = viewer.locator('#messages li[data-direction="out"]')
    expect(sent).to_have_count(1)
    expect(sent).to_contain_text('CHAT_INPUT: ""')


def test_the_editor_sends_a_frame_that_a_wait_with_match_accepts(
    viewer: Page, served: LiveServer
) -> None:
    run_id = trigger(served, "confirm")
    wait = viewer.locator(f'#waits li[data-run="{run_id}"]')
    expect(wait).to_have_attribute("data-for", "any")
    expect(wait).to_contain_text("/^yes\\b/")
    # A wait with a pattern is not answered blindly: its button opens the editor.
    expect(wait.get_by_role("button", name="Send CHAT_INPUT")).to_have_count(0)
    wait.get_by_role("button", name="Edit CHAT_INPUT answer…").click()
    editor = viewer.locator("#editor-text")
    expect(editor).to_be_focused()
    expect(editor).to_have_value(re.compile("CHAT_INPUT"))
    expect(viewer.locator("#editor-constraints")).to_contain_text("message matches /^yes\\b/")
    editor.fill('{"message_type": "CHAT_INPUT", "message": "yes, go on"}')
    expect(viewer.locator('#editor-constraints li[data-ok="false"]')).to_have_count(0)
    viewer.get_by_role("button", name="Send", exact=True).click()
    expect(viewer.locator("#messages")).to_contain_text("CHAT: Confirmed: yes, go on")
    finished(served, run_id)


def test_a_wait_for_another_client_offers_to_connect_as_it(
    viewer: Page, served: LiveServer
) -> None:
    run_id = trigger(served, "knock")
    wait = viewer.locator(f'#waits li[data-run="{run_id}"]')
    expect(wait).to_have_attribute("data-for", "other")
    expect(wait).to_contain_text("from client ui-9")
    wait.get_by_role("button", name="Connect as ui-9").click()
    expect(viewer.locator("#whoami")).to_have_text("as client ui-9")
    expect(viewer.locator("#messages")).to_contain_text("CHAT: Hello knock")
    finished(served, run_id)


def test_a_paused_run_s_time_left_stands_still(viewer: Page, served: LiveServer) -> None:
    run_id = trigger(served, "ask", "&client=ui-1")
    left = viewer.locator(f'#waits li[data-run="{run_id}"] [data-deadline]')
    expect(left).to_have_text(re.compile(r"^[01]:\d\d$"))
    call(served, "POST", f"/runs/{run_id}/pause")
    expect(left).to_contain_text("(run paused)")
    frozen = left.inner_text()
    call(served, "POST", f"/runs/{run_id}/resume")
    expect(left).not_to_contain_text("paused")
    assert frozen.startswith(left.inner_text()[:2])  # resumed from where it stood
    call(served, "DELETE", f"/runs/{run_id}")
    expect(viewer.locator("#waits li")).to_have_count(0)


def test_the_viewer_connects_to_the_endpoints_the_protocol_declares(
    browser: Browser, tmp_path: Path
) -> None:
    folder = tmp_path / "price-feed"
    shutil.copytree(EXAMPLES / "price-feed", folder)
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    page = open_viewer(browser, live, "trader")
    try:
        expect(page.locator("#sockets tr")).to_have_count(1)
        expect(page.locator('#sockets tr[data-endpoint="/prices"]')).to_contain_text("connected")
        expect(page.locator("#editor-endpoint")).to_have_value("/prices")
        page.locator("#editor-text").fill('{"event": "subscribe", "data": {"symbols": ["ACME"]}}')
        page.get_by_role("button", name="Send", exact=True).click()
        expect(page.locator("#messages")).to_contain_text('snapshot: {"prices":{"ACME":100}}')
    finally:
        page.context.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_a_wait_for_a_declared_route_is_answered_with_a_request(
    viewer: Page, served: LiveServer
) -> None:
    run_id = trigger(served, "over-http", "&client=ui-1")
    wait = viewer.locator(f'#waits li[data-run="{run_id}"]')
    expect(wait).to_contain_text("HTTP (a declared route)")
    wait.get_by_role("button", name="Edit POST /chat answer…").click()
    expect(viewer.locator("#editor-endpoint")).to_have_value("http")
    editor = viewer.locator("#editor-text")
    expect(editor).to_have_value("POST /chat")
    editor.fill("POST /chat?user_input=hello there")
    expect(viewer.locator("#editor-check")).to_contain_text("✓ POST /chat?user_input=hello")
    viewer.get_by_role("button", name="Send", exact=True).click()
    expect(viewer.locator("#messages")).to_contain_text("CHAT: Over HTTP: hello there")
    expect(
        viewer.locator('#messages li[data-endpoint="http"][data-direction="in"]')
    ).to_contain_text("200")
    finished(served, run_id)
    editor.fill("not a request line")
    expect(viewer.locator("#editor-check")).to_contain_text("The first line must be METHOD /path")
    expect(viewer.get_by_role("button", name="Send", exact=True)).to_be_disabled()


def test_text_that_is_not_json_gets_an_inline_error_and_can_still_be_sent(
    viewer: Page, served: LiveServer
) -> None:
    editor = viewer.locator("#editor-text")
    editor.fill('{"message_type": "CHAT_INPUT",')
    check = viewer.locator("#editor-check")
    expect(check).to_contain_text("Not JSON")
    expect(check).to_contain_text("line 1")
    expect(check).to_contain_text("sent as plain text")
    expect(editor).to_have_attribute("aria-invalid", "true")
    send = viewer.get_by_role("button", name="Send", exact=True)
    expect(send).to_be_enabled()
    send.click()
    sent = viewer.locator('#messages li[data-direction="out"]')
    expect(sent).to_have_count(1)
    expect(sent).to_contain_text('{"message_type": "CHAT_INPUT",')
    text = '{"message_type": "CHAT_INPUT",'
    until(served, "/journal", lambda answer: text in [e.get("frame") for e in answer["entries"]])
    editor.fill('{"message_type": "PAUSE_REQUEST", "message": ""}')
    expect(check).to_contain_text("valid JSON")
    expect(editor).not_to_have_attribute("aria-invalid", "true")
    # What was sent is kept; a click sends it again.
    viewer.locator("#history button.resend").first.click()
    expect(sent).to_have_count(2)
    sent.nth(1).locator("summary, .line").first.click()  # JSON expands; text does not


def test_the_stream_ends_when_its_connection_is_cut_or_another_starts(
    viewer: Page, served: LiveServer
) -> None:
    call(served, "POST", "/trigger/cut?speed=0")
    cut = viewer.locator("#streams li").first
    expect(cut).to_have_attribute("data-open", "false")
    expect(cut).to_contain_text("half a sentence")
    expect(cut).to_contain_text("cut: the connection closed (1011)")
    row = viewer.locator('#sockets tr[data-endpoint="/ws/stream"]')
    expect(row).to_contain_text("1011 (server error): backend crashed")
    expect(viewer.locator("#status")).to_have_text("Connected")  # reconnected by itself
    call(served, "POST", "/trigger/unclosed?speed=0")
    expect(viewer.locator("#streams li").nth(1)).to_have_text("never closed")
    call(served, "POST", "/trigger/stream?speed=0")
    streams = viewer.locator("#streams li")
    expect(streams).to_have_count(3)
    expect(streams.nth(1)).to_have_attribute("data-ended", "a new stream started")
    expect(streams.nth(2)).to_have_text("This is a streaming message sent in chunks.")


def test_a_server_with_no_expects_shows_the_waiting_text_and_offers_the_editor(
    viewer: Page,
) -> None:
    summary = {
        "run_id": "old1",
        "scenario": "chat",
        "state": "running",
        "client": None,
        "waiting": "CHAT_INPUT from any client",
        "step": "2",
        "duration_s": 1.0,
    }
    body = json.dumps({"runs": [summary]})
    viewer.route("**/runs", lambda route: route.fulfill(body=body, content_type="application/json"))
    viewer.reload()
    wait = viewer.locator('#waits li[data-run="old1"]')
    expect(wait).to_contain_text("CHAT_INPUT from any client")
    wait.get_by_role("button", name="Edit CHAT_INPUT answer…").click()
    expect(viewer.locator("#editor-text")).to_have_value(
        '{"message_type":"CHAT_INPUT","message":""}'
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_viewer_has_no_serious_accessibility_problems(
    viewer: Page, served: LiveServer, scheme: str
) -> None:
    viewer.emulate_media(color_scheme=scheme)
    run_id = trigger(served, "confirm")
    wait = viewer.locator(f'#waits li[data-run="{run_id}"]')
    wait.get_by_role("button", name="Edit CHAT_INPUT answer…").click()
    viewer.locator("#editor-text").fill("not json")
    viewer.get_by_role("button", name="Send", exact=True).click()
    expect(viewer.locator('#messages li[data-direction="out"]')).to_have_count(1)
    assert serious_violations(viewer) == []
    call(served, "DELETE", f"/runs/{run_id}")


@pytest.mark.skipif(not os.environ.get("REPLAY_SCREENSHOTS"), reason="set REPLAY_SCREENSHOTS=1")
@pytest.mark.parametrize("width", [1280, 1920])
def test_screenshots_of_the_viewer_answering_a_run(
    browser: Browser, served: LiveServer, width: int
) -> None:
    """docs/viewer-<width>.png: the viewer with a waiting run, an answer in the editor and
    frames in the log (REPLAY_SCREENSHOTS=1 uv run pytest tests/test_viewer.py -k shots)."""
    page = open_viewer(browser, served, "ui-1", viewport={"width": width, "height": 900})
    try:
        call(served, "POST", "/trigger/all?speed=0")
        done = trigger(served, "ask", "&client=ui-1")
        page.locator(f'#waits li[data-run="{done}"]').get_by_role(
            "button", name="Send CHAT_INPUT"
        ).click()
        expect(page.locator("#messages")).to_contain_text("You said")
        run_id = trigger(served, "confirm")
        page.locator(f'#waits li[data-run="{run_id}"]').get_by_role(
            "button", name="Edit CHAT_INPUT answer…"
        ).click()
        page.locator("#editor-text").fill('{"message_type": "CHAT_INPUT", "message": "yes"}')
        page.locator('#messages li[data-direction="out"] summary').first.click()
        DOCS.mkdir(exist_ok=True)
        path = DOCS / f"viewer-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        call(served, "DELETE", f"/runs/{run_id}")
    finally:
        page.context.close()
