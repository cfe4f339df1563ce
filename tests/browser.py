"""Headless Chromium (Debian's) for the browser tests, driven by Playwright.

`.ci/run` installs chromium; set REPLAY_CHROMIUM to use another binary. A test module
makes its own fixture from :func:`launch`::

    @pytest.fixture(scope="module")
    def browser() -> Iterator[Browser]:
        with launch() as launched:
            yield launched
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

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


@contextlib.contextmanager
def launch() -> Iterator[Browser]:
    """Chromium, launched headless and closed afterwards; the test fails if it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (bash .ci/run does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()
