"""What ``replay record`` shows while it records.

On a terminal, one status line (Rich's live display) redrawn at most four times a second
(sessions open, frames and bytes each way), with each session's opening and end printed
above it in colour. Else (a pipe, a log file), plain lines, one per event, each with the
time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TextIO

from rich.live import Live
from rich.text import Text

from replay.counts import counted as count_words
from replay.record.format import End
from replay.record.sessions import Observer, SessionInfo
from replay.terminal import terminal_console

#: Seconds between two redraws of the status line, at least.
REDRAW = 0.25


def counted(count: int, word: str) -> str:
    """``1 session``, ``12,000 frames``."""
    return count_words(count, word, grouped=True)


def size(count: int) -> str:
    """Bytes for people: 512 B, 4.1 KiB, 12.0 MiB."""
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


def ending(end: End) -> str:
    """How a session ended, in words: ``1000 "bye", by the client``."""
    if end.code == 1006:
        what = "cut (1006, no close frame)"
    elif end.code is None:
        what = "closed with no status"
    else:
        what = f"{end.code}" + (f" {end.reason!r}" if end.reason else "")
    by = {"client": "by the client", "server": "by the upstream", None: "by replay"}[end.by]
    return f"{what}, {by}"


class Console(Observer):
    """Shows the proxy's sessions and counts on ``out``: a live line if ``live`` (a
    terminal), plain lines otherwise."""

    def __init__(self, out: TextIO, live: bool, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.out = out
        self.live = live
        self.clock = clock
        self._shown = ""
        self._rich = terminal_console(out) if live else None
        self._live: Live | None = None

    def opened(self, info: SessionInfo) -> None:
        super().opened(info)
        if info.kind == "websocket":
            self.say(f"session {info.session} opened: {info.target} -> {info.file}", "green")

    def closed(self, info: SessionInfo, end: End, frames: Mapping[str, int]) -> None:
        super().closed(info, end, frames)
        if info.kind == "http":
            answer = f"{info.status}" if info.status is not None else "answered"
            self.say(f"request {info.session}: {info.target} -> {answer} ({info.file})")
            return
        self.say(
            f"session {info.session} ended: {ending(end)}; "
            f"{counted(frames['client'], 'frame')} from the client, {frames['server']:,} from "
            "the upstream"
        )

    def refused(self, target: str, reason: str) -> None:
        super().refused(target, reason)
        self.say(f"refused {target}: {reason}", "red")

    def status(self) -> str:
        """The live line: sessions, frames and bytes each way."""
        counts = self.counts
        line = (
            f"recording: {counts.open} open, {counted(counts.sessions, 'session')}, "
            f"{counted(counts.requests, 'request')} | client->upstream "
            f"{counted(counts.frames['client'], 'frame')} {size(counts.bytes['client'])} | "
            f"upstream->client {counted(counts.frames['server'], 'frame')} "
            f"{size(counts.bytes['server'])}"
        )
        return line + (f" | {counts.refused} refused" if counts.refused else "")

    def say(self, text: str, style: str = "") -> None:
        """Print one event: above the live line on a terminal, with the time otherwise."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        if self._rich is None:
            self._write(f"{stamp} {text}\n")
            return
        line = Text.assemble((stamp, "dim"), " ", (text, style))
        with contextlib.suppress(OSError, ValueError):  # stdout gone: record all the same
            self._rich.print(line, soft_wrap=True)

    def redraw(self) -> None:
        """Draw the live line again if it changed (on a terminal only)."""
        line = self.status()
        if self._rich is None or line == self._shown:
            return
        self._shown = line
        with contextlib.suppress(OSError, ValueError):
            if self._live is None:
                # Redrawn by run(), in the event loop: no refresh thread of its own.
                self._live = Live(
                    console=self._rich,
                    auto_refresh=False,
                    transient=True,
                    redirect_stdout=False,
                    redirect_stderr=False,
                )
                self._live.start()
            shown = Text.assemble(("● ", "red"), line, no_wrap=True, overflow="ellipsis")
            self._live.update(shown, refresh=True)

    async def run(self) -> None:
        """Redraw the live line every :data:`REDRAW` seconds, until cancelled."""
        while True:
            self.redraw()
            await asyncio.sleep(REDRAW)

    def finish(self, folder: object) -> None:
        """Take the live line off and print what was recorded."""
        if self._live is not None:
            with contextlib.suppress(OSError, ValueError):
                self._live.stop()
            self._live = None
            self._shown = ""
        counts = self.counts
        self.say(
            f"stopped: {counted(counts.sessions, 'session')} and "
            f"{counted(counts.requests, 'request')} recorded in {folder}"
        )

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # stdout gone: record all the same
            self.out.write(text)
            self.out.flush()
