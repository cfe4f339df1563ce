"""A scenario played on paper: its timeline of cues, for ``--dry-run`` and ``GET /scenarios``.

:func:`build_timeline` drives the engine's script without clients or a clock. A
``wait`` is assumed to be answered at once by a frame of the awaited type with an empty
message (so later templates that read ``received`` render), or, for a declared HTTP
route, by a request with no query, headers or body; it is shown as a cue of its own. A
run with no sender gets a stand-in one, :data:`PAPER_CLIENT`, so that reactions and
on-connect scenarios (``to: sender``) can be shown too. A scenario that repeats forever
is cut off after :data:`MAX_CUES` cues.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from replay.answers import stand_in_event
from replay.catalog import Catalog
from replay.durations import format_seconds
from replay.engine import Context, Fork, Hangup, Joined, Script, Send, Wait, play
from replay.matching import ClientFrame
from replay.protocol import message_frame
from replay.protocol.declaration import Protocol
from replay.routes import is_route_key

#: The fastest playback speed accepted (besides 0, which means "no pauses at all").
MAX_SPEED = 1000.0
#: The slowest playback speed accepted: slower, a one-hour pause would last over a month
#: (and a speed near zero would make every deadline infinite).
MIN_SPEED = 0.001
#: A timeline stops after this many cues (a scenario that repeats forever never ends).
MAX_CUES = 10_000
#: The stand-in client of a timeline played on paper: the sender, and who answers waits.
PAPER_CLIENT = "client"


@dataclass(frozen=True)
class Cue:
    """One thing a run does: when (seconds from its start), where, and what.

    ``kind`` is ``frame`` (a text frame), ``binary``, ``wait``, ``disconnect`` or ``drop``;
    ``frame`` is the text sent, or a description for the other kinds. ``to`` is the client
    id the cue is for, or None for every client.
    """

    offset: float
    endpoint: str
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
    off at :data:`MAX_CUES`; ``waits`` counts the cues that wait for a client.
    """

    scenario: str
    cues: tuple[Cue, ...]
    duration: float | None
    truncated: bool = False
    #: Counted from the cues unless given (see :meth:`counts`).
    frames: int = -1
    waits: int = -1

    def __post_init__(self) -> None:
        if self.frames < 0:
            frames = sum(1 for cue in self.cues if cue.kind in ("frame", "binary"))
            object.__setattr__(self, "frames", frames)
        if self.waits < 0:
            waits = sum(1 for cue in self.cues if cue.kind == "wait")
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
) -> Timeline:
    """The timeline of the named scenario, played with ``context`` (seed 0 by default).

    At most ``limit`` cues, and cues holding at most ``max_bytes`` of frame text in all
    (None: no bound); a longer timeline is cut off (``truncated``). With ``keep=False``
    the cues are only counted, so that memory does not grow with the frames (a run's
    plan). Planning takes about 10 µs a cue: call it off the event loop when ``limit``
    is large (see :mod:`replay.planning`).

    Raises ScenarioNotFound, ScenarioInvalid, and StepFailed for a step that cannot be
    played (a template that fails).
    """
    context = context or Context(run_id="dry-run", seed=0)
    check_speed(context.speed)
    if context.sender is None:
        context = replace(context, sender=PAPER_CLIENT)
    paper = _Paper(context.sender or PAPER_CLIENT, limit, keep, max_bytes, catalog.protocol)
    end = paper.drive(play(name, catalog, context))
    if not keep:
        duration = None if paper.truncated else end
        return Timeline(name, (), duration, paper.truncated, paper.frames, paper.waits)
    # Stable, so ties keep the order they were played in; rounded, so 0.1 + 0.2 ties with 0.3.
    ordered = tuple(sorted(paper.cues, key=lambda cue: round(cue.offset, 9)))
    if paper.truncated:
        return Timeline(name, ordered[:limit], None, truncated=True)
    return Timeline(name, ordered, end)


class _Stop(Exception):
    """Internal: the timeline has reached its limit."""


class _Paper:
    """Drives scripts without clients or a clock, writing down what they do."""

    def __init__(
        self,
        answerer: str,
        limit: int,
        keep: bool,
        max_bytes: int | None,
        protocol: Protocol,
    ) -> None:
        self.answerer = answerer
        self.protocol = protocol
        self.limit = limit
        self.keep = keep
        self.max_bytes = max_bytes
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
            reply = None
            # A fork counts as what its branches do, so a silent one counts as nothing.
            actions += 1 if not isinstance(action, Fork) else 0
            match action:
                case Send(frame=str() as text):
                    self._cue(action, action.endpoint, text, "frame")
                case Send(frame=bytes() as data):
                    shown = f"binary {len(data)} bytes: {base64.b64encode(data).decode()[:60]}"
                    self._cue(action, action.endpoint, shown, "binary")
                case Wait():
                    kind = action.match.message
                    where = "http" if is_route_key(kind) else self.protocol.message_endpoint(kind)
                    self._cue(action, where or "*", _wait_text(action), "wait", action.source)
                    reply = _stand_in(kind, action.source or self.answerer).taken_at(action.at)
                case Hangup():
                    kind = "drop" if action.abort else "disconnect"
                    for endpoint in action.endpoints:
                        self._cue(action, endpoint, _hangup_text(action), kind)
                case Fork():
                    joined = []
                    try:
                        for branch in action.branches:
                            joined.append(self._drive(branch))
                    finally:
                        for branch in action.branches:
                            branch.close()
                    reply = Joined(
                        max([action.at, *(j.end for j in joined)]), sum(j.actions for j in joined)
                    )
                    actions += reply.actions

    def _cue(
        self,
        action: Send | Wait | Hangup,
        endpoint: str,
        text: str,
        kind: str,
        to: str | None = None,
    ) -> None:
        self.count += 1
        self.frames += kind in ("frame", "binary")
        self.waits += kind == "wait"
        if not self.keep:
            return
        self.bytes += len(text)
        who = to if isinstance(action, Wait) else action.to
        self.cues.append(Cue(action.at, endpoint, text, action.scenario, action.step, kind, who))


def _wait_text(wait: Wait) -> str:
    who = f"client {wait.source!r}" if wait.source else "any client"
    what = wait.match.message
    if wait.match.match:
        what += f" matching {wait.match.match!r}"
    return f"wait for {what} from {who}, up to {format_seconds(wait.timeout)}"


def _hangup_text(hangup: Hangup) -> str:
    if hangup.abort:
        return "drop the connection (no close frame)"
    return f"close with code {hangup.code}" + (f" ({hangup.reason})" if hangup.reason else "")


def _stand_in(kind: str, client: str) -> ClientFrame:
    """What a dry run assumes answers a wait for ``kind``."""
    if is_route_key(kind):
        return stand_in_event(kind, client)
    return ClientFrame(client, message_frame(kind, ""), kind=kind)
