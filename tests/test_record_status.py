"""What ``replay record`` shows: plain lines off a terminal, a live line on one."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import pytest

import replay.record.status
from replay.record.format import End
from replay.record.sessions import SessionInfo
from replay.record.status import Console, ending, size
from tests.recording import eventually

WS = SessionInfo("3f2a9c0e1b7d", "websocket", "/ws?token=***", Path("rec/3f2a9c0e1b7d.jsonl"))
WEB = SessionInfo("0a0a0a0a0a0a", "http", "GET /api", Path("rec/0a0a0a0a0a0a.jsonl"), 200)


def test_sizes() -> None:
    assert [size(n) for n in (0, 1023, 4200, 12 * 1024 * 1024)] == [
        "0 B",
        "1023 B",
        "4.1 KiB",
        "12.0 MiB",
    ]


def test_endings() -> None:
    assert ending(End(1, 1000, "bye", "client")) == "1000 'bye', by the client"
    assert ending(End(1, 1006, "", "server")) == "cut (1006, no close frame), by the upstream"
    assert ending(End(1, None, "", "client")) == "closed with no status, by the client"
    assert ending(End(1, 1001, "", None)) == "1001, by replay"


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    console = Console(out, live=False, clock=lambda: 0.0)
    console.opened(WS)
    console.frame("client", 10)
    console.closed(WS, End(1.0, 1000, "", "client"), {"client": 1, "server": 0})
    console.opened(WEB)
    console.closed(WEB, End(0.1, None, "", "server"), {"client": 1, "server": 1})
    console.refused("/ws", "upstream ws://h: cannot connect (connection refused)")
    console.redraw()  # nothing to redraw off a terminal
    console.finish("rec")
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [
        "session 3f2a9c0e1b7d opened: /ws?token=*** -> rec/3f2a9c0e1b7d.jsonl",
        "session 3f2a9c0e1b7d ended: 1000, by the client; 1 frame from the client, 0 from "
        "the upstream",
        "request 0a0a0a0a0a0a: GET /api -> 200 (rec/0a0a0a0a0a0a.jsonl)",
        "refused /ws: upstream ws://h: cannot connect (connection refused)",
        "stopped: 1 session and 1 request recorded in rec",
    ]
    assert "\r" not in out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_live_line_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the line is cut to the terminal's width
    out = Terminal()
    console = Console(out, live=True, clock=lambda: 0.0)
    console.redraw()
    console.frame("server", 2048)
    console.redraw()
    drawn = out.getvalue()
    console.redraw()  # unchanged: not drawn again
    assert out.getvalue() == drawn
    assert ESCAPE.sub("", drawn).endswith(
        "● recording: 0 open, 0 sessions, 0 requests | client->upstream 0 frames 0 B | "
        "upstream->client 1 frame 2.0 KiB"
    )
    console.opened(WS)  # printed above the line, which is drawn again below
    shown = ESCAPE.sub("", out.getvalue()[len(drawn) :])
    assert f"session {WS.session} opened: {WS.target} -> {WS.file}" in shown
    assert shown.rstrip().endswith("upstream->client 1 frame 2.0 KiB")
    assert "\x1b[32m" in out.getvalue()  # in green
    console.refused("/x", "down")
    assert console.status().endswith("| 1 refused")
    written = len(out.getvalue())
    console.finish("rec")
    finished = out.getvalue()[written:]
    assert "\x1b[2K" in finished  # the live line is erased
    assert "stopped: 1 session and 0 requests" in ESCAPE.sub("", finished)
    assert not ESCAPE.sub("", finished).rstrip().endswith("2.0 KiB")


def test_the_live_line_is_cut_to_a_narrow_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    out = Terminal()
    console = Console(out, live=True)
    console.redraw()
    shown = ESCAPE.sub("", out.getvalue()).strip()
    assert shown.startswith("● recording: 0 open")
    assert shown.endswith("…")
    assert len(shown) == 40


async def test_the_live_line_is_redrawn_a_few_times_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replay.record.status, "REDRAW", 0.001)
    out = Terminal()
    console = Console(out, live=True)
    task = asyncio.create_task(console.run())
    await eventually(lambda: "recording:" in out.getvalue())
    console.frame("client", 1)
    await eventually(lambda: "client->upstream 1 frame " in out.getvalue())
    task.cancel()


def test_a_closed_stdout_does_not_stop_anything() -> None:
    out = io.StringIO()
    out.close()
    Console(out, live=False).say("nobody reads this")
