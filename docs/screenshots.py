"""Screenshots of the dashboard with runs playing, for the README: docs/dashboard-1280.png
and docs/dashboard-1920.png (or into the folder given).

    uv run python docs/screenshots.py [FOLDER]

Each picture is of a server of its own on a copy of the shipped scenarios: two clients
(a browser's two sockets) connect, ``messages`` plays, ``chat`` waits for an answer and
``agent-run`` is half played; Debian's headless Chromium (REPLAY_CHROMIUM for another)
takes it, in the light theme, and at 1920 also in the dark one.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from replay.server import Settings  # noqa: E402
from tests.conftest import start_live_server, wait_until_watched  # noqa: E402
from tests.test_dashboard import CHROMIUM, FLAGS  # noqa: E402

SHOTS = ((1280, 800, "light"), (1920, 1080, "light"), (1920, 1080, "dark"))


def post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10).close()


def photograph(browser: Browser, folder: Path, width: int, height: int, theme: str) -> Path:
    """One picture, of a server of its own: two clients, three runs."""
    with tempfile.TemporaryDirectory() as temporary:
        scenarios = Path(temporary) / "scenarios"
        shutil.copytree(ROOT / "scenarios", scenarios)
        live, server, thread = start_live_server(Settings(scenarios=scenarios, isolated=True))
        stop = threading.Event()
        try:
            wait_until_watched(live)
            with (
                connect(f"{live.ws_url}/ws?client_id=ui") as messages,
                connect(f"{live.ws_url}/ws/stream?client_id=ui") as stream,
            ):
                reader = threading.Thread(target=drain, args=(stop, messages, stream), daemon=True)
                reader.start()
                page = browser.new_page(
                    viewport={"width": width, "height": height}, color_scheme=theme
                )
                page.goto(live.url + "/")
                page.wait_for_selector('#status[data-state="live"]')
                post(live.url + "/trigger/messages?speed=4&wait=false")
                post(live.url + "/trigger/chat?wait=false")
                page.wait_for_selector("#runs [data-run] .waiting")
                post(live.url + "/trigger/agent-run?wait=false")
                # A picture of a run half played: there is no condition to wait for.
                time.sleep(2.5)
                page.locator("#timeline .mark.frame").last.click()
                name = f"dashboard-{width}{'-dark' if theme == 'dark' else ''}.png"
                page.screenshot(path=str(folder / name))
                page.close()
                stop.set()
                reader.join(timeout=5)
                return folder / name
        finally:
            stop.set()
            server.should_exit = True
            thread.join(timeout=10)


def drain(stop: threading.Event, *clients: ClientConnection) -> None:
    """Read what the clients are sent, as a browser would."""
    while not stop.is_set():
        for client in clients:
            with contextlib.suppress(TimeoutError, ConnectionClosed):
                client.recv(timeout=0.05)


def main(folder: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for width, height, theme in SHOTS:
                print(photograph(browser, folder, width, height, theme))
        finally:
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
