"""Run-control keys for ``replay --scenario NAME`` on a terminal.

:class:`RunKeys` turns a key into a control call on the followed run (space: pause or
resume, ``s``: step, ``+``/``-``: double or halve the speed, ``q``: cancel) and shows the
answer in the run's :class:`~replay.terminal.RunStatus`. :class:`KeyReader` reads a
terminal's keys one at a time (no Enter needed) in a thread, and puts the terminal back
as it was when done.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Callable
from typing import Any, TextIO

from replay.errors import ReplayError
from replay.terminal import RunStatus
from replay.timeline import MAX_SPEED, MIN_SPEED

#: ``control(run_id, action, speed)``: the control route's answer (a run summary); raises
#: ReplayError when the server refuses or is gone.
Control = Callable[[str, str, float | None], dict[str, Any]]

#: How often the reader looks whether it should stop, in seconds.
POLL = 0.1


class RunKeys:
    """What each key does to the followed run (see the module's docstring).

    ``control`` calls the run's control routes; ``cancel`` cancels it (DELETE, as Ctrl-C
    does). Keys before the run has started (but ``q``), and unknown keys, do nothing.
    ``quit`` is set once ``q`` was pressed. Keys are handled one at a time, in the
    reader's thread: a step answers once its action has happened.
    """

    def __init__(
        self,
        status: RunStatus,
        control: Control,
        cancel: Callable[[str], None],
    ) -> None:
        self.status = status
        self.control = control
        self.cancel = cancel
        #: The run's id, once it has started (see :meth:`begin`).
        self.run_id: str | None = None
        self.quit = False

    def begin(self, run_id: str) -> None:
        """The run has started: keys act on it from now on (a ``q`` pressed before
        cancels it now)."""
        if self.run_id is not None:
            return
        self.run_id = run_id
        if self.quit:
            self.cancel(run_id)

    def press(self, key: str) -> None:
        """Act on one key."""
        if key in ("q", "Q"):
            if not self.quit:
                self.quit = True
                self.status.say("cancelling...")
                if self.run_id is not None:
                    self.cancel(self.run_id)
            return
        if self.run_id is None or self.quit:
            return
        if key == " ":
            self._call("resume" if self.status.paused else "pause")
        elif key in ("s", "S"):
            self._call("step")
        elif key in ("+", "="):
            self._change_speed(2.0)
        elif key in ("-", "_"):
            self._change_speed(0.5)

    def _change_speed(self, factor: float) -> None:
        current = self.status.speed
        if not current:
            self.status.say("a run started at speed 0 has no pauses to speed up or slow down")
            return
        wanted = min(MAX_SPEED, max(MIN_SPEED, current * factor))
        if wanted == current:
            limit = "fastest" if factor > 1 else "slowest"
            self.status.say(f"speed {current:g}x is the {limit} there is")
            return
        self._call("speed", wanted)

    def _call(self, action: str, speed: float | None = None) -> None:
        try:
            summary = self.control(str(self.run_id), action, speed)
        except ReplayError as error:
            self.status.say(f"{action}: {error}")
            return
        self.status.take(summary, _said(action, summary))


def _said(action: str, summary: dict[str, Any]) -> str:
    """What the footer says after a control call went through."""
    if action == "speed":
        return f"speed {summary.get('speed', '?'):g}x" if "speed" in summary else "speed set"
    if action == "step":
        stepped = summary.get("stepped") or {}
        kind = stepped.get("kind", "action")
        step = f" (step {stepped['step']})" if stepped.get("step") else ""
        return f"stepped: {kind}{step}; paused"
    return "paused" if action == "pause" else "resumed"


class KeyReader:
    """Reads keys from ``stream`` (a terminal) in a thread and hands each to ``on_key``,
    until closed. The terminal is put in cbreak mode meanwhile (keys come without Enter
    and are not echoed; Ctrl-C still interrupts) and restored when closed. Off a
    terminal, or in a background job, it reads nothing."""

    def __init__(self, stream: TextIO, on_key: Callable[[str], None]) -> None:
        self.fd = stream.fileno()
        self.on_key = on_key
        self._stop = threading.Event()
        self._saved: Any = None
        self._thread = threading.Thread(target=self._read, name="replay-keys", daemon=True)

    def __enter__(self) -> KeyReader:
        try:
            import termios
            import tty
        except ImportError:  # no POSIX terminal (Windows): no keys
            return self
        if _in_the_background(self.fd):
            return self  # (replay ... &): touching the terminal would stop the process
        try:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        except (termios.error, OSError):
            self._saved = None
            return self  # not a terminal after all: no keys
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            # A control call may still be waiting for its answer: the thread is a daemon.
            self._thread.join(timeout=1.0)
        if self._saved is not None:
            import termios

            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], POLL)
                if not ready:
                    continue
                data = os.read(self.fd, 64)
            except OSError:
                return
            if not data:  # the terminal went away
                return
            for key in data.decode("utf-8", errors="ignore"):
                if self._stop.is_set():
                    return
                self.on_key(key)


def _in_the_background(fd: int) -> bool:
    """Whether ``fd`` is the controlling terminal and another process group has it."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:  # not the controlling terminal: no job control applies
        return False
