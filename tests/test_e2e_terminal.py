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
from typing import Any

import pytest

from replay.server import Settings
from tests.conftest import LiveServer, serving

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


WAITING = """
description: Waits for a client that never answers.
steps:
  - message: EVENT
    text: hello
  - wait: CHAT_INPUT
    timeout: 60s
"""


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
    (scenarios_dir / "waiting.yaml").write_text(WAITING)
    with serving(Settings(scenarios=scenarios_dir, isolated=True)) as live:
        yield live


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


def only_run(live: LiveServer) -> Any:
    """The one run the server plays (waiting, with a deadline, for it to start)."""
    deadline = time.monotonic() + DEADLINE
    while not live.replay.runner.runs():
        assert time.monotonic() < deadline, "no run started"
        time.sleep(0.02)
    (run,) = live.replay.runner.runs()
    return run


def eventually(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_keys_pause_step_speed_up_and_resume_a_real_run(
    served: LiveServer, screens: list[Screen]
) -> None:
    screen = Screen(["--scenario", "slow", "--url", served.url])
    screens.append(screen)
    after = screen.wait_for("one")
    run = only_run(served)
    screen.press(" ")
    after = screen.wait_for("PAUSED", after)
    assert run.summary()["paused"] is True
    sent = run.summary()["sent"]
    screen.press("s")  # exactly the next frame goes out, and the run stays paused
    after = screen.wait_for("stepped: frame", after)
    assert run.summary()["sent"] == sent + 1
    assert run.summary()["paused"] is True
    assert ["one", "two", "three", "four", "five"][sent] in screen.text
    screen.press("+")
    after = screen.wait_for("speed 2x", after)
    assert run.summary()["speed"] == 2
    screen.press(" ")
    screen.wait_for("resumed", after)
    assert screen.exit_code() == 0
    assert re.search(r"run \w+: finished: 5 frames to 0 clients in", screen.text)
    summary = run.summary()
    assert summary["paused"] is False
    assert summary["paused_s"] > 0
    assert termios.tcgetattr(screen.terminal) == screen.mode


def test_a_refused_key_is_said_in_the_footer(served: LiveServer, screens: list[Screen]) -> None:
    screen = Screen(["--scenario", "waiting", "--url", served.url])
    screens.append(screen)
    screen.wait_for("waiting for CHAT_INPUT")
    # What follows a wait depends on the answer: the plan is no exact count.
    assert "(1 frame planned with empty answers, " in screen.text
    screen.wait_for("1 sent (1 planned with empty answers)")
    screen.press("s")  # all the run does now is wait: a step cannot skip that
    screen.wait_for("cannot skip a wait")
    screen.press("q")
    assert screen.exit_code() == 130
    assert re.search(r"run \w+: cancelled: 1 frame to 0 clients", screen.text)
