"""How the command line shows things: plain lines for pipes, files and scripts, Rich's
colours, tables and live progress on a terminal.

Every line is built once as a :class:`rich.text.Text`; its ``.plain`` is exactly what is
printed when the output is not a terminal, so scripts and tests read the same text they
always did, and a terminal gets the same words in colour.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from replay.counts import counted
from replay.durations import format_seconds

#: Padding that lines a note up under a frame line's frame.
INDENT = " " * 11
#: The keys ``replay --scenario NAME`` takes while it follows a run, as the footer says them.
KEY_HELP = "space pause/resume · s step · + faster · - slower · q quit"


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (False for anything that cannot say)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def terminal_console(stream: TextIO) -> Console:
    """A Rich console drawing on ``stream``, a terminal."""
    return Console(file=stream, highlight=False, emoji=False, markup=False, force_terminal=True)


class Printer:
    """Prints lines: as Rich text on a terminal console, as their plain text elsewhere."""

    def __init__(self, out: TextIO, console: Console | None = None) -> None:
        self.out = out
        self.console = console

    @classmethod
    def to(cls, out: TextIO) -> Printer:
        """A printer for ``out``: Rich if it is a terminal."""
        return cls(out, terminal_console(out) if is_terminal(out) else None)

    def line(self, text: Text | str) -> None:
        if self.console is not None:
            # soft_wrap: long frames wrap on the terminal, not in the text (copyable).
            self.console.print(text, soft_wrap=True)
        else:
            print(text.plain if isinstance(text, Text) else text, file=self.out, flush=True)

    def table(self, table: Table, plain: Iterable[str]) -> None:
        """A table on a terminal; else the ``plain`` lines."""
        if self.console is not None:
            self.console.print(table)
        else:
            for line in plain:
                print(line, file=self.out)


# --- a followed run's events ---------------------------------------------------------------


def event_text(event: dict[str, Any]) -> Text | None:
    """The line one followed event prints (None for the end, heartbeats and events newer
    than this client)."""
    kind = event.get("event")
    if kind == "start":
        planned = event.get("planned_s")
        frames = counted(event["frames"], "frame") if planned is not None else ""
        if event.get("frames_exact") is False:  # answers can change what follows a wait
            frames += " planned with empty answers"
        about = "" if planned is None else f"{frames}, {format_seconds(planned)}, "
        return Text.assemble(
            f"run {event['run_id']}: playing ",
            (repr(event["scenario"]), "bold"),
            f" ({about}seed {event['seed']})",
        )
    if kind == "frame":
        return _frame_text(event)
    if kind == "wait":
        who = f"client {event['source']}" if event.get("source") else "any client"
        return Text(f"{INDENT}waiting for {event['message_type']} from {who}...", "yellow")
    if kind == "received":
        return Text.assemble(
            (f"{INDENT}received from {event['client']}: ", "green"), str(event["frame"])
        )
    if kind == "timeout":
        return Text(f"{INDENT}no {event['message_type']} came in time", "red")
    if kind in ("disconnect", "drop"):
        how = "dropped" if kind == "drop" else f"closed with code {event['code']}"
        return Text(
            f"{INDENT}{how}: {counted(event['clients'], 'connection')} on "
            + ", ".join(event["endpoints"]),
            "magenta",
        )
    if kind == "lagged":
        return Text("(the server stopped following: frames went out faster than shown)", "dim")
    return _decision_text(event)


def _frame_text(event: dict[str, Any]) -> Text:
    clients = event["clients"]
    to = f" to {event['to']}" if event.get("to") else ""
    frame = f"[binary {event['frame']}]" if event.get("binary") else str(event["frame"])
    return Text.assemble(
        (f"{event['offset']:>8.3f}s", "dim"),
        "  ",
        (f"{event['endpoint']:<11}", "cyan"),
        " ",
        frame,
        "  ",
        (f"-> {counted(clients, 'client')}{to}", "green" if clients else "bold red"),
    )


def _decision_text(event: dict[str, Any]) -> Text | None:
    """The steps that decide rather than send (choose, let, set, wait_connect)."""
    kind = event.get("event")
    who = f"client {event['client']}" if event.get("client") else "any client"
    where = f" to {event['endpoint']}" if event.get("endpoint") else ""
    if kind in ("choose", "let"):
        line = f"{kind}: {event.get('text', '')}"
    elif kind == "state":
        line = "set " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in event["changes"].items())
    elif kind == "wait_connect":
        line = f"waiting for {'a new' if event.get('new') else 'a'} connection from {who}{where}..."
    elif kind == "connected":
        line = f"{who} connected{where}"
    elif kind == "connect_timeout":
        line = f"no connection from {who}{where} came in time"
    elif kind in ("paused", "resumed", "speed") and isinstance(event.get("run"), dict):
        speed = event["run"].get("speed")
        line = f"speed {speed:g}" if kind == "speed" and isinstance(speed, int | float) else kind
    else:
        return None
    return Text(f"{INDENT}{line}", "blue")


def summary_text(end: dict[str, Any]) -> Text:
    """The last line of a followed run: how it ended, frames, clients, time."""
    state = str(end["state"])
    return Text.assemble(
        f"run {end['run_id']}: ",
        (state, "bold green" if state == "finished" else "bold red"),
        f": {counted(end['sent'], 'frame')} to {counted(end['clients'], 'client')} in "
        f"{end['duration_s']:.3f}s",
    )


def no_clients_hint(http_url: str, endpoint: str) -> str:
    """What to do when a frame reached nobody: connect a client first."""
    base = http_url.rstrip("/")
    ws = "wss://" + base[8:] if base.startswith("https://") else "ws://" + base.split("://")[-1]
    return (
        f"no client is connected to {endpoint}, so nobody got that frame: connect one first "
        f"(open {base}/viewer in a browser, or point your frontend at {ws}{endpoint}), then "
        "play the scenario again"
    )


class RunStatus:
    """The live lines under a run's frames on a terminal: a progress bar over the
    planned frames, the step, the speed and whether the run is paused; then, when keys
    control the run, a footer saying them and what the last key did."""

    WIDTH = 24

    def __init__(self, keys: bool = False, speed: float = 1.0) -> None:
        self.keys = keys
        self.planned: int | None = None
        #: False when the plan goes through a wait: ``planned`` is then an estimate.
        self.exact = True
        self.sent = 0
        self.step = ""
        self.speed = speed
        self.paused = False
        self.waiting = False
        #: What the last key did, or why it did nothing.
        self.message = ""
        self._lock = threading.Lock()

    def update(self, event: dict[str, Any]) -> None:
        """Take in one followed event."""
        kind = event.get("event")
        with self._lock:
            if kind == "start":
                self.planned = event.get("frames")
                self.exact = event.get("frames_exact", True) is not False
                self._take_summary(event)
            elif kind == "frame":
                self.sent += 1
                self.step = str(event.get("step", ""))
                self.waiting = False
            elif kind in ("wait", "wait_connect"):
                self.waiting = True
                self.step = str(event.get("step", self.step))
            elif kind in ("received", "timeout", "connected", "connect_timeout"):
                self.waiting = False
            elif isinstance(event.get("run"), dict):  # run.paused and the like, if followed
                self._take_summary(event["run"])

    def take(self, summary: dict[str, Any], message: str = "") -> None:
        """Take in a run summary a control route answered (paused, speed), and say
        ``message`` in the footer."""
        with self._lock:
            self._take_summary(summary)
            self.message = message

    def say(self, message: str) -> None:
        with self._lock:
            self.message = message

    def _take_summary(self, summary: dict[str, Any]) -> None:
        if isinstance(summary.get("paused"), bool):
            self.paused = summary["paused"]
        if isinstance(summary.get("speed"), int | float):
            self.speed = float(summary["speed"])

    def line(self) -> str:
        """The progress line, as plain text."""
        return self._progress().plain

    def _progress(self) -> Text:
        if self.planned and self.exact:
            counts = f"{self.sent}/{counted(self.planned, 'frame')}"
        elif self.planned:
            counts = f"{self.sent} sent ({self.planned} planned with empty answers)"
        else:
            counts = f"{counted(self.sent, 'frame')} sent"
        parts: list[str | tuple[str, str]] = [counts]
        if self.step:
            parts.append(f", step {self.step}")
        parts.append(f", speed {self.speed:g}x" if self.speed else ", no pauses")
        if self.waiting:
            parts.append((" waiting for a client", "yellow"))
        if self.paused:
            parts.append(("  PAUSED", "bold black on yellow"))
        return Text.assemble(*parts)

    def __rich__(self) -> RenderableType:
        with self._lock:
            progress = self._progress()
            bar: RenderableType | None = None
            if self.planned and self.exact:
                bar = ProgressBar(
                    total=self.planned, completed=min(self.sent, self.planned), width=self.WIDTH
                )
            rows: list[RenderableType] = []
            if bar is not None:
                row = Table.grid(padding=(0, 1))
                row.add_row(bar, progress)
                rows.append(row)
            else:
                rows.append(progress)
            if self.keys:
                footer = Text(KEY_HELP, "dim")
                if self.message:
                    footer.append(f"  {self.message}", "italic")
                rows.append(footer)
            return Group(*rows)


class RunView:
    """What ``replay --scenario NAME`` shows while it follows a run.

    ``printer`` prints the run's lines (plain or Rich) unless not ``show_lines`` (--json,
    --quiet); ``status``, a terminal console, draws the live :class:`RunStatus` under
    them (None: no progress). With the lines shown, the first frame that reaches no
    client brings a hint, once per run: a note among the lines on a terminal, else on
    ``err`` (standard output stays what scripts read).
    """

    def __init__(
        self,
        printer: Printer,
        status: Console | None,
        err: TextIO,
        url: str,
        keys: bool = False,
        speed: float = 1.0,
        show_lines: bool = True,
    ) -> None:
        self.printer = printer
        self.err = err
        self.url = url
        self.show_lines = show_lines
        self.status = RunStatus(keys, speed)
        self._hinted = False
        self._live: Live | None = None
        if status is not None:
            self._live = Live(
                self.status,
                console=status,
                transient=True,
                refresh_per_second=8,
                redirect_stdout=False,
                redirect_stderr=False,
            )

    def __enter__(self) -> RunView:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Take the live lines off the terminal (what was printed stays)."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def event(self, event: dict[str, Any]) -> None:
        """Show one followed event: its line, the progress, and the hint on the first
        frame that reached no client."""
        if self.show_lines:
            text = event_text(event)
            if text is not None:
                self.printer.line(text)
        self.status.update(event)
        if (
            self.show_lines
            and event.get("event") == "frame"
            and not event.get("clients")
            and not self._hinted
        ):
            self._hinted = True
            self.note(no_clients_hint(self.url, str(event.get("endpoint") or "/ws")))
        if self._live is not None:
            self._live.refresh()

    def note(self, message: str) -> None:
        """A note for the person watching: on a terminal among the lines, else on ``err``
        (above the progress if that is drawn there; standard output stays what scripts
        read)."""
        if self.printer.console is not None:
            self.printer.line(Text(f"note: {message}", "yellow"))
        elif self._live is not None:  # err is the terminal the progress is drawn on
            self._live.console.print(Text(f"replay: note: {message}", "yellow"), soft_wrap=True)
        else:
            print(f"replay: note: {message}", file=self.err, flush=True)

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def line(self, text: Text | str) -> None:
        self.printer.line(text)


# --- list, validate, the dry run's timeline ---------------------------------------------------


def scenario_table(rows: Sequence[tuple[str, str, str, str, str | None]]) -> Table:
    """``replay list`` on a terminal: name, frames, duration, description or problem
    (rows: name, frames, duration, description, problem or None)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("scenario", style="cyan", no_wrap=True)
    table.add_column("frames", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("description", overflow="fold")
    for name, frames, duration, about, problem in rows:
        if problem is None:
            table.add_row(name, frames, duration, about)
        else:
            table.add_row(name, "", "", Text(f"INVALID: {problem}", "red"))
    return table


def checked_text(valid: bool, file: str, extra: str = "") -> Text:
    """``replay validate``'s line for one file: ``ok       FILE`` or ``INVALID  FILE``."""
    if valid:
        return Text.assemble(("ok", "green"), f"       {file}{extra}")
    return Text.assemble(("INVALID", "bold red"), f"  {file}{extra}")


def problem_text(problem: object) -> Text:
    return Text(f"  {problem}", "red")


def validated_text(valid: int, invalid: int) -> Text:
    """``replay validate``'s last line: ``3 valid, 1 invalid``."""
    return Text.assemble(
        (f"{valid} valid", "green"), ", ", (f"{invalid} invalid", "bold red" if invalid else "")
    )


def timeline_table(cues: Iterable[tuple[float, str, str, bool, str]]) -> Table:
    """``--dry-run``'s timeline on a terminal (cues: offset, endpoint, frame, whether
    it is a frame, to)."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("offset", justify="right", style="dim", no_wrap=True)
    table.add_column("endpoint", style="cyan", no_wrap=True)
    table.add_column("frame", overflow="fold")
    table.add_column("to", style="green")
    for offset, endpoint, frame, is_frame, to in cues:
        table.add_row(f"{offset:.3f}s", endpoint, Text(frame, "" if is_frame else "yellow"), to)
    return table
