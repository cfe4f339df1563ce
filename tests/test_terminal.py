"""The command line's rendering: plain text for pipes, Rich on a terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console

from replay.terminal import (
    KEY_HELP,
    Printer,
    RunStatus,
    RunView,
    counted,
    event_text,
    is_terminal,
    no_clients_hint,
    summary_text,
)

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def rendered(thing: object, width: int = 120) -> str:
    """What a Rich renderable shows, without colours."""
    screen = io.StringIO()
    Console(file=screen, width=width, color_system=None, force_terminal=False).print(thing)
    return screen.getvalue()


def test_counts_are_pluralised() -> None:
    assert counted(0, "frame") == "0 frames"
    assert counted(1, "frame") == "1 frame"
    assert counted(2, "client") == "2 clients"
    assert counted(1, "child", "children") == "1 child"
    assert counted(3, "child", "children") == "3 children"


def test_is_terminal_asks_the_stream_and_survives_ones_that_cannot_say() -> None:
    assert is_terminal(Terminal())
    assert not is_terminal(io.StringIO())
    assert not is_terminal(object())


def test_frame_lines_read_as_before_and_count_clients_in_words() -> None:
    event = {
        "event": "frame",
        "offset": 1.5,
        "endpoint": "/ws",
        "frame": '{"a":1}',
        "clients": 1,
        "to": None,
    }
    text = event_text(event)
    assert text is not None
    assert text.plain == '   1.500s  /ws         {"a":1}  -> 1 client'
    text = event_text({**event, "clients": 3, "to": "ui", "binary": True, "frame": "00ff"})
    assert text is not None
    assert text.plain == "   1.500s  /ws         [binary 00ff]  -> 3 clients to ui"


def test_the_start_and_summary_lines_count_in_words() -> None:
    start = {
        "event": "start",
        "run_id": "r1",
        "scenario": "one",
        "frames": 1,
        "planned_s": 0.5,
        "seed": 7,
    }
    text = event_text(start)
    assert text is not None
    assert text.plain == "run r1: playing 'one' (1 frame, 500ms, seed 7)"
    text = event_text({**start, "frames": 32, "frames_exact": False})
    assert text is not None
    assert (
        text.plain == "run r1: playing 'one' (32 frames planned with empty answers, 500ms, seed 7)"
    )
    end = {"run_id": "r1", "state": "finished", "sent": 1, "clients": 1, "duration_s": 0.5}
    assert summary_text(end).plain == "run r1: finished: 1 frame to 1 client in 0.500s"
    assert summary_text({**end, "sent": 0, "clients": 2}).plain.endswith(
        "0 frames to 2 clients in 0.500s"
    )


def test_frame_text_is_not_read_as_markup() -> None:
    event = {"event": "frame", "offset": 0, "endpoint": "/ws", "frame": "[bold]x[/] :smile:"}
    text = event_text({**event, "clients": 1})
    assert text is not None
    assert "[bold]x[/] :smile:" in rendered(text)


def test_followed_decisions_are_shown() -> None:
    lines = [
        event_text(event)
        for event in [
            {"event": "choose", "text": "branch 1 (when state.paused)"},
            {"event": "let", "text": 'order = "x"'},
            {"event": "state", "changes": {"paused": True, "turn": 2}},
            {"event": "wait_connect", "client": None, "endpoint": "/ws", "new": True},
            {"event": "connected", "client": "ui", "endpoint": "/ws"},
            {"event": "connect_timeout", "client": "ui", "endpoint": None},
            {"event": "disconnect", "code": 1000, "clients": 2, "endpoints": ["/ws"]},
            {"event": "drop", "clients": 1, "endpoints": ["/ws", "/ws/stream"]},
            {"event": "paused", "run": {"paused": True, "speed": 1.0}},
            {"event": "speed", "run": {"paused": True, "speed": 2.5}},
            {"event": "resumed", "run": {"paused": False, "speed": 2.5}},
        ]
    ]
    assert [line.plain.strip() for line in lines if line is not None] == [
        "choose: branch 1 (when state.paused)",
        'let: order = "x"',
        "set paused = true, turn = 2",
        "waiting for a new connection from any client to /ws...",
        "client ui connected to /ws",
        "no connection from client ui came in time",
        "closed with code 1000: 2 connections on /ws",
        "dropped: 1 connection on /ws, /ws/stream",
        "paused",
        "speed 2.5",
        "resumed",
    ]
    assert event_text({"event": "heartbeat"}) is None
    assert event_text({"event": "end"}) is None


def test_the_hint_names_the_viewer_and_the_endpoint_to_connect_to() -> None:
    hint = no_clients_hint("http://127.0.0.1:8123/", "/ws/stream")
    assert "http://127.0.0.1:8123/viewer" in hint
    assert "ws://127.0.0.1:8123/ws/stream" in hint
    assert "wss://example.test/ws" in no_clients_hint("https://example.test", "/ws")


def test_the_progress_counts_frames_and_shows_the_step() -> None:
    status = RunStatus()
    status.update({"event": "start", "frames": 4, "speed": 1})
    assert status.line() == "0/4 frames, speed 1x"
    status.update({"event": "frame", "step": "0"})
    status.update({"event": "frame", "step": "2.steps.1"})
    assert status.line() == "2/4 frames, step 2.steps.1, speed 1x"
    status.update({"event": "wait", "step": "3"})  # not counted
    assert status.line() == "2/4 frames, step 3, speed 1x waiting for a client"
    shown = rendered(status)
    assert "━" in shown  # the bar
    assert "2/4 frames" in shown
    assert KEY_HELP not in shown  # no keys: no footer


def test_the_progress_without_a_plan_counts_only() -> None:
    status = RunStatus(speed=0)
    status.update({"event": "start", "frames": None})
    status.update({"event": "frame", "step": "0"})
    assert status.line() == "1 frame sent, step 0, no pauses"
    assert "━" not in rendered(status)


def test_the_progress_of_a_plan_with_waits_is_no_fraction() -> None:
    status = RunStatus()
    status.update({"event": "start", "frames": 32, "frames_exact": False})
    for _ in range(43):
        status.update({"event": "frame", "step": "1"})
    assert status.line().startswith("43 sent (32 planned with empty answers)")
    assert "43/32" not in rendered(status)


def test_the_progress_never_overflows() -> None:
    status = RunStatus()
    status.update({"event": "start", "frames": 2})
    for _ in range(5):
        status.update({"event": "frame", "step": "0"})
    assert "5/2 frames" in rendered(status)


def test_paused_and_speed_come_from_the_summaries_the_controls_answer() -> None:
    status = RunStatus(keys=True)
    status.update({"event": "start", "frames": 2, "paused": False, "speed": 1.0})
    status.take({"paused": True, "speed": 1.0}, "paused")
    shown = rendered(status)
    assert "PAUSED" in shown
    assert KEY_HELP in shown
    assert "paused" in shown.splitlines()[-1]
    status.take({"paused": False, "speed": 4}, "speed 4x")
    assert "PAUSED" not in rendered(status)
    assert "speed 4x" in status.line()
    status.update({"event": "paused", "run": {"paused": True, "speed": 4}})  # a feed-like event
    assert status.paused


def test_printer_prints_plain_text_off_a_terminal_and_colour_on_one() -> None:
    text = event_text({"event": "timeout", "message_type": "CHAT"})
    assert text is not None
    plain = io.StringIO()
    Printer.to(plain).line(text)
    assert plain.getvalue() == "           no CHAT came in time\n"
    screen = Terminal()
    Printer.to(screen).line(text)
    assert "\x1b[" in screen.getvalue()
    assert ESCAPE.sub("", screen.getvalue()) == "           no CHAT came in time\n"


def test_the_view_hints_once_on_stderr_off_a_terminal() -> None:
    out, err = io.StringIO(), io.StringIO()
    view = RunView(Printer(out), None, err, "http://127.0.0.1:8123")
    frame = {"event": "frame", "offset": 0.0, "endpoint": "/ws", "frame": "x", "clients": 0}
    with view:
        view.event(frame)
        view.event(frame)
    assert out.getvalue().count("-> 0 clients") == 2
    assert err.getvalue().count("replay: note: no client is connected to /ws") == 1


def test_the_view_notes_the_hint_among_the_lines_on_a_terminal() -> None:
    screen, err = Terminal(), io.StringIO()
    view = RunView(Printer.to(screen), None, err, "http://127.0.0.1:8123")
    view.event({"event": "frame", "offset": 0.0, "endpoint": "/ws", "frame": "x", "clients": 0})
    assert err.getvalue() == ""
    assert "note: no client is connected" in ESCAPE.sub("", screen.getvalue())


def test_the_view_does_not_hint_for_json_or_quiet_or_reached_clients() -> None:
    out, err = io.StringIO(), io.StringIO()
    frame = {"event": "frame", "offset": 0.0, "endpoint": "/ws", "frame": "x", "clients": 0}
    RunView(Printer(out), None, err, "http://h", show_lines=False).event(frame)
    RunView(Printer(out), None, err, "http://h").event({**frame, "clients": 2})
    assert err.getvalue() == ""
    assert "0 clients" not in out.getvalue()
