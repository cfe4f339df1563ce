"""A scenario played on paper: its timeline of cues, for ``--dry-run`` and ``GET /scenarios``.

:func:`build_timeline` drives the engine's script without clients or a clock. A
``wait`` is answered at once: by the oldest of the given answers it accepts, else by a
frame of the awaited type with an empty message (so later templates that read
``received`` render), or, for a declared HTTP route, by a request with no query, headers
or body; it is shown as a cue of its own. A ``wait_connect`` is taken as a client
connecting at once. ``set`` steps change a copy of the state the timeline starts with. A
run with no sender gets a stand-in one, :data:`PAPER_CLIENT`, so that reactions and
on-connect scenarios (``to: sender``) can be shown too. A scenario that repeats forever
is cut off after :data:`MAX_CUES` cues.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from replay.answers import ENDPOINT, request_event, stand_in_event
from replay.catalog import Catalog
from replay.durations import format_seconds
from replay.engine import (
    Action,
    Connected,
    Context,
    Due,
    Fork,
    Hangup,
    Joined,
    Note,
    Script,
    Send,
    SetState,
    Wait,
    WaitConnect,
    assignments,
    play,
)
from replay.matching import ClientFrame, matches
from replay.protocol.declaration import Protocol
from replay.protocol.schwarm import SCHWARM
from replay.protocol.wire import encode
from replay.routes import is_route_key
from replay.state import State

#: The fastest playback speed accepted (besides 0, which means "no pauses at all").
MAX_SPEED = 1000.0
#: The slowest playback speed accepted: slower, a one-hour pause would last over a month
#: (and a speed near zero would make every deadline infinite).
MIN_SPEED = 0.001
#: A timeline stops after this many cues (a scenario that repeats forever never ends).
MAX_CUES = 10_000
#: The stand-in client of a timeline played on paper: the sender, and who answers waits.
PAPER_CLIENT = "client"
#: The kinds of cues that wait for a client.
WAIT_KINDS = ("wait", "connect")


@dataclass(frozen=True)
class Cue:
    """One thing a run does: when (seconds from its start), where, and what.

    ``kind`` is ``frame`` (a text frame), ``binary``, ``wait``, ``disconnect``, ``drop``,
    ``connect`` (a ``wait_connect``), ``set`` (the shared state changed), ``choose`` (the
    branch taken) or ``let`` (the values bound); ``frame`` is the text sent, or a
    description for the other kinds. ``endpoint`` is None for a cue that concerns no one
    endpoint (``set``, ``choose``, ``let``, a ``connect`` to any endpoint). ``to`` is the
    client id the cue is for, or None for every client.
    """

    offset: float
    endpoint: str | None
    frame: str
    scenario: str
    step: str
    kind: str = "frame"
    to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "offset": round(self.offset, 6),
            "kind": self.kind,
            "endpoint": self.endpoint,
            "to": self.to,
            "frame": self.frame,
            "scenario": self.scenario,
            "step": self.step,
        }


@dataclass(frozen=True)
class Timeline:
    """A scenario's cues in the order they happen, and how long it lasts.

    ``duration`` is None when the scenario never ends (``repeat: forever``) or was cut
    off at :data:`MAX_CUES`; ``waits`` counts the cues that wait for a client (to send
    a frame, or to connect).
    """

    scenario: str
    cues: tuple[Cue, ...]
    duration: float | None
    truncated: bool = False
    #: Counted from the cues unless given (see :meth:`counts`).
    frames: int = -1
    waits: int = -1
    #: The answers given to :func:`build_timeline` that no wait took.
    unused: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.frames < 0:
            frames = sum(1 for cue in self.cues if cue.kind in ("frame", "binary"))
            object.__setattr__(self, "frames", frames)
        if self.waits < 0:
            waits = sum(1 for cue in self.cues if cue.kind in WAIT_KINDS)
            object.__setattr__(self, "waits", waits)

    def counts(self) -> Timeline:
        """The same timeline without its cues: what a finished run keeps (a run's frames
        can be megabytes, and the server remembers a hundred finished runs)."""
        return Timeline(self.scenario, (), self.duration, self.truncated, self.frames, self.waits)

    def __iter__(self) -> Iterator[Cue]:
        return iter(self.cues)

    def __len__(self) -> int:
        return len(self.cues)


def check_speed(speed: float) -> float:
    """``speed`` if it is a playback speed replay accepts; raises ValueError otherwise."""
    if not math.isfinite(speed) or speed < 0 or speed > MAX_SPEED or 0 < speed < MIN_SPEED:
        raise ValueError(
            f"speed must be 0 (no pauses) or from {MIN_SPEED:g} to {MAX_SPEED:g}, where 1 is "
            f"real time; got {speed:g}"
        )
    return speed


def build_timeline(
    name: str,
    catalog: Catalog,
    context: Context | None = None,
    limit: int = MAX_CUES,
    *,
    keep: bool = True,
    max_bytes: int | None = None,
    state: Mapping[str, Any] | None = None,
    answers: Sequence[str] = (),
    stop: Callable[[], bool] | None = None,
) -> Timeline:
    """The timeline of the named scenario, played with ``context`` (seed 0 by default).

    At most ``limit`` cues, and cues holding at most ``max_bytes`` of frame text in all
    (None: no bound); a longer timeline is cut off (``truncated``). With ``keep=False``
    the cues are only counted, so that memory does not grow with the frames (a run's
    plan). Planning takes about 10 µs a cue: call it off the event loop when ``limit``
    is large (see :mod:`replay.planning`). ``stop`` is asked before every cue: once it
    says True, the timeline is cut off there (a plan nobody needs any more).

    ``state`` is the shared state the run starts with, over ``context.state``, over the
    protocol's declared state; ``set`` steps change a copy of it, never it. ``answers``
    are the texts of client frames the waits take, each wait the oldest one it accepts (as a run's
    mailbox would); a wait that accepts none gets an empty message of its type.

    Raises ScenarioNotFound, ScenarioInvalid, and StepFailed for a step that cannot be
    played (a template that fails).
    """
    context = context or Context(run_id="dry-run", seed=0)
    check_speed(context.speed)
    if context.sender is None:
        context = replace(context, sender=PAPER_CLIENT)
    # The protocol file's declared state, what the run was given, then what the caller gives.
    paper_state = State({**catalog.protocol.state, **context.state, **(state or {})})
    context = replace(context, state=paper_state)
    paper = _Paper(
        context.sender or PAPER_CLIENT,
        limit,
        keep,
        max_bytes,
        paper_state,
        answers,
        catalog.protocol,
        stop,
    )
    end = paper.drive(play(name, catalog, context))
    if not keep:
        duration = None if paper.truncated else end
        return Timeline(name, (), duration, paper.truncated, paper.frames, paper.waits)
    # Stable, so ties keep the order they were played in; rounded, so 0.1 + 0.2 ties with 0.3.
    ordered = tuple(sorted(paper.cues, key=lambda cue: round(cue.offset, 9)))
    unused = tuple(answer for answer in paper.answers if answer is not None)
    if paper.truncated:
        return Timeline(name, ordered[:limit], None, truncated=True, unused=unused)
    return Timeline(name, ordered, end, unused=unused)


class _Stop(Exception):
    """Internal: the timeline has reached its limit."""


class _Paper:
    """Drives scripts without clients or a clock, writing down what they do."""

    def __init__(
        self,
        answerer: str,
        limit: int,
        keep: bool = True,
        max_bytes: int | None = None,
        state: State | None = None,
        answers: Sequence[str] = (),
        protocol: Protocol = SCHWARM,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self.answerer = answerer
        #: What the scenarios speak: where waits listen, how answers are read.
        self.protocol = protocol
        self.limit = limit
        self.keep = keep
        self.max_bytes = max_bytes
        self.stop = stop
        self.state = state if state is not None else State()
        #: The client frames given for waits, not taken yet (None once taken).
        self.answers: list[str | None] = list(answers)
        self.cues: list[Cue] = []
        self.count = 0
        self.bytes = 0
        self.frames = 0
        self.waits = 0
        self.actions = 0
        self.truncated = False

    def drive(self, script: Script) -> float:
        try:
            return self._drive(script).end
        except _Stop:
            self.truncated = True
            return math.inf
        finally:
            script.close()

    def _drive(self, script: Script) -> Joined:
        reply: Any = None
        actions = 0
        while True:
            try:
                action = script.send(reply)
            except StopIteration as stop:
                return Joined(float(stop.value), actions)
            self.actions += 1
            # Actions, not only cues: a fork of silent branches repeated forever makes none.
            if self.count >= self.limit or self.actions > 10 * self.limit:
                raise _Stop
            if self.max_bytes is not None and self.bytes > self.max_bytes:
                raise _Stop
            if self.stop is not None and self.stop():
                raise _Stop
            reply = self._handle(action)
            # A fork counts as what its branches do, so a silent one counts as nothing.
            actions += reply.actions if isinstance(action, Fork) else 1

    def _handle(self, action: Action) -> Any:
        """Write ``action`` down; what the script gets back for it."""
        match action:
            case Send(frame=str() as text):
                self._cue(action, action.endpoint, text, "frame")
            case Send(frame=bytes() as data):
                shown = f"binary {len(data)} bytes: {base64.b64encode(data).decode()[:60]}"
                self._cue(action, action.endpoint, shown, "binary")
            case Wait():
                return self._wait(action)
            case Hangup():
                kind = "drop" if action.abort else "disconnect"
                for endpoint in action.endpoints:
                    self._cue(action, endpoint, _hangup_text(action), kind)
            case Fork():
                return self._fork(action)
            case WaitConnect():
                client = action.client or self.answerer
                self._cue(action, action.endpoint, _connect_text(action), "connect", client)
                where = action.endpoint or self.protocol.first_endpoint() or "/"
                return Connected(client, where, action.at)
            case SetState():
                self.state.update(action.changes, by=f"dry run step {action.step}")
                self._cue(action, None, "set " + assignments(action.changes), "set")
            case Note():
                self._cue(action, None, f"{action.kind}: {action.text}", action.kind)
            case Due():
                pass
        return None

    def _wait(self, wait: Wait) -> ClientFrame:
        """The answer to ``wait``: the oldest given answer it accepts, else an empty one
        (for a declared route: a request with no query, headers or body)."""
        client = wait.source or self.answerer
        kind = wait.match.message
        if is_route_key(kind):  # a request to a declared route
            return self._request(wait, client)
        where = self.protocol.message_endpoint(kind)
        fields = self.protocol.reader(where) if where else ("message_type", "message")
        for index, text in enumerate(self.answers):
            answer = ClientFrame(client, text, wait.at, where or "", *fields) if text else None
            if answer is not None and matches(wait.match, answer):
                self.answers[index] = None
                self._cue(wait, where, f"{_wait_text(wait)}: answered {text}", "wait", wait.source)
                return answer
        self._cue(wait, where, _wait_text(wait), "wait", wait.source)
        # An empty message in the endpoint's own envelope, so that received.<its type
        # field> reads as it would from a real answer.
        empty = encode({fields[0]: kind, fields[1]: ""})
        return ClientFrame(client, empty, wait.at, where or "", *fields, kind=kind)

    def _request(self, wait: Wait, client: str) -> ClientFrame:
        """The answer to a wait for a request: the oldest given ``METHOD /path?query``
        its route answers and it accepts, else a request with no query or body."""
        for index, text in enumerate(self.answers):
            event = request_event(text, self.protocol.routes, client) if text else None
            if event is not None and event.kind == wait.match.message:
                event = event.taken_at(wait.at)
                if matches(wait.match, event):
                    self.answers[index] = None
                    shown = f"{_wait_text(wait)}: answered {text}"
                    self._cue(wait, ENDPOINT, shown, "wait", wait.source)
                    return event
        self._cue(wait, ENDPOINT, _wait_text(wait), "wait", wait.source)
        return stand_in_event(wait.match.message, client).taken_at(wait.at)

    def _fork(self, fork: Fork) -> Joined:
        joined = []
        try:
            for branch in fork.branches:
                joined.append(self._drive(branch))
        finally:
            for branch in fork.branches:
                branch.close()
        return Joined(max([fork.at, *(j.end for j in joined)]), sum(j.actions for j in joined))

    def _cue(
        self,
        action: Send | Wait | Hangup | WaitConnect | SetState | Note,
        endpoint: str | None,
        text: str,
        kind: str,
        to: str | None = None,
    ) -> None:
        self.count += 1
        self.frames += kind in ("frame", "binary")
        self.waits += kind in WAIT_KINDS
        if not self.keep:
            return
        self.bytes += len(text)
        who = action.to if isinstance(action, Send | Hangup) else to
        self.cues.append(Cue(action.at, endpoint, text, action.scenario, action.step, kind, who))


def _wait_text(wait: Wait) -> str:
    who = f"client {wait.source!r}" if wait.source else "any client"
    what = wait.match.message
    if wait.match.match:
        what += f" matching {wait.match.match!r}"
    return f"wait for {what} from {who}, up to {format_seconds(wait.timeout)}"


def _connect_text(wait: WaitConnect) -> str:
    who = f"client {wait.client!r}" if wait.client else "any client"
    where = f" to {wait.endpoint}" if wait.endpoint else ""
    new = "a new connection" if wait.new else "a connection"
    return f"wait for {new} from {who}{where}, up to {format_seconds(wait.timeout)}"


def _hangup_text(hangup: Hangup) -> str:
    if hangup.abort:
        return "drop the connection (no close frame)"
    return f"close with code {hangup.code}" + (f" ({hangup.reason})" if hangup.reason else "")
