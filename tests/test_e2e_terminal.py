"""``replay --scenario NAME`` in a pseudo-terminal against a real server: the colours,
the live progress and its footer, the note when no client is connected, and the
run-control keys pressed as a person would (polling the screen with deadlines)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replay.server import Settings
from tests.conftest import LiveServer, start_live_server

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
DEADLINE = 20.0

SLOW = """
description: Five events a second apart, to pause, step and speed up.
delay: 1s
steps:
  - message: EVENT
    text: one
  - message: EVENT
    text: two
  - message: EVENT
    text: three
  - message: EVENT
    text: four
  - message: EVENT
    text: five
"""


def _take_the_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Screen:
    """A program in a pseudo-terminal: what it has shown so far, and a keyboard."""

    def __init__(self, args: list[str], columns: int = 120) -> None:
        self.keyboard, terminal = os.openpty()
        # Kept open here too, to look at the terminal's mode after the program ended.
        self.terminal = terminal
        self.mode = termios.tcgetattr(terminal)
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
        env.pop("NO_COLOR", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "replay", *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=env,
            # Its own session, with the pseudo-terminal as its controlling terminal, as
            # in a terminal window: ^C typed there interrupts it, and only it.
            preexec_fn=_take_the_terminal,
        )
        self._shown = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.keyboard], [], [], 0.1)
                if not ready:
                    if self.process.poll() is not None:
                        return
                    continue
                data = os.read(self.keyboard, 65536)
            except OSError:  # the program's side closed: it has ended
                return
            if not data:
                return
            with self._lock:
                self._shown += data

    @property
    def raw(self) -> str:
        with self._lock:
            return self._shown.decode(errors="replace")

    @property
    def text(self) -> str:
        """What was shown, without the escape codes."""
        return ESCAPE.sub("", self.raw)

    def press(self, keys: str) -> None:
        os.write(self.keyboard, keys.encode())

    def wait_for(self, wanted: str, after: int = 0) -> int:
        """Wait (DEADLINE s at most) until ``wanted`` is shown after position ``after`` of
        the text; return where it ends."""
        deadline = time.monotonic() + DEADLINE
        while True:
            text = self.text
            found = text.find(wanted, after)
            if found >= 0:
                return found + len(wanted)
            assert self.process.poll() is None or time.monotonic() < deadline, (
                f"{wanted!r} never shown; the program ended ({self.process.returncode}):\n"
                + text[-2000:]
            )
            assert time.monotonic() < deadline, f"{wanted!r} never shown:\n{text[-2000:]}"
            time.sleep(0.02)

    def exit_code(self) -> int:
        code = self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(DEADLINE)
        self._reader.join(DEADLINE)
        os.close(self.keyboard)
        os.close(self.terminal)


@pytest.fixture
def served(scenarios_dir: Path) -> Iterator[LiveServer]:
    (scenarios_dir / "slow.yaml").write_text(SLOW)
    live, server, thread = start_live_server(Settings(scenarios=scenarios_dir, isolated=True))
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def screens() -> Iterator[list[Screen]]:
    opened: list[Screen] = []
    try:
        yield opened
    finally:
        for screen in opened:
            screen.close()


def test_a_run_on_a_terminal_in_colour_with_progress_and_the_no_client_note(
    served: LiveServer, screens: list[Screen]
) -> None:
    screen = Screen(["--scenario", "stream", "--url", served.url, "--speed", "0"])
    screens.append(screen)
    assert screen.exit_code() == 0
    text = screen.text
    assert "\x1b[" in screen.raw  # colours and the live display
    assert "playing 'stream' (4 frames" in text
    assert text.count("-> 0 clients") == 4
    assert text.count("note: no client is connected to /ws/stream") == 1
    assert f"{served.url}/viewer" in text
    assert "space pause/resume · s step · + faster · - slower · q quit" in text
    assert re.search(r"run \w+: finished: 4 frames to 0 clients in", text)


def test_q_cancels_the_run_and_puts_the_terminal_back(
    served: LiveServer, screens: list[Screen]
) -> None:
    screen = Screen(["--scenario", "slow", "--url", served.url])
    screens.append(screen)
    screen.wait_for("one")  # the first frame went out, the run plays on
    screen.press("q")
    assert screen.exit_code() == 130
    assert re.search(r"run \w+: cancelled: 1 frame to 0 clients in", screen.text)
    assert screen.raw.endswith("\r\n")  # the live lines were taken off, the summary stays
    assert "\x1b[?25h" in screen.raw  # the cursor is shown again
    assert termios.tcgetattr(screen.terminal) == screen.mode  # echo and lines are back


def test_ctrl_c_typed_on_the_terminal_cancels_the_run_as_before(
    served: LiveServer, screens: list[Screen]
) -> None:
    screen = Screen(["--scenario", "slow", "--url", served.url])
    screens.append(screen)
    screen.wait_for("one")
    screen.press("\x03")  # the terminal turns it into SIGINT: keys mode keeps that
    assert screen.exit_code() == 130
    assert re.search(r"run \w+: cancelled", screen.text)
    assert termios.tcgetattr(screen.terminal) == screen.mode
    runs = [run.summary() for run in served.replay.runner.runs()]
    assert [run["state"] for run in runs] == ["cancelled"]
