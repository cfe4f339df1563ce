"""The engine: a scenario becomes a timeline of cues, without I/O and without a clock.

A cue is one frame for one endpoint at an offset (seconds from the start of the run).
``play`` steps are expanded inline; ``parallel`` groups start their scenarios at the same
offset and last as long as the longest one. Frames are encoded here, once per cue, so the
runner hands the same string to every client.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from replay.catalog import Catalog
from replay.errors import Problem, ScenarioInvalid
from replay.protocol import CLOSE_FRAME, Endpoint, StreamType, chunk_frame, data_text, message_frame
from replay.scenario import (
    ChunkStep,
    CloseStep,
    MessageStep,
    ParallelStep,
    PlayStep,
    SleepStep,
    ToolStep,
)

#: The fastest playback speed accepted (besides 0, which means "no pauses at all").
MAX_SPEED = 1000.0


@dataclass(frozen=True)
class Cue:
    """One frame to send: when (seconds from the run's start), where, and what."""

    offset: float
    endpoint: Endpoint
    frame: str
    scenario: str
    step: int


@dataclass(frozen=True)
class Timeline:
    """A scenario's cues in the order they go out, and the run's total duration."""

    scenario: str
    cues: tuple[Cue, ...]
    duration: float

    def __iter__(self) -> Iterator[Cue]:
        return iter(self.cues)

    def __len__(self) -> int:
        return len(self.cues)

    def at_speed(self, speed: float) -> Timeline:
        """The same timeline played ``speed`` times as fast; 0 means no pauses at all."""
        check_speed(speed)
        if speed == 1:
            return self
        cues = tuple(
            Cue(scaled(c.offset, speed), c.endpoint, c.frame, c.scenario, c.step) for c in self
        )
        return Timeline(self.scenario, cues, scaled(self.duration, speed))


def check_speed(speed: float) -> float:
    """``speed`` if it is a playback speed replay accepts; raises ValueError otherwise."""
    if not math.isfinite(speed) or speed < 0 or speed > MAX_SPEED:
        raise ValueError(
            f"speed must be between 0 (no pauses) and {MAX_SPEED:g}, where 1 is real time; "
            f"got {speed}"
        )
    return speed


def scaled(offset: float, speed: float) -> float:
    """An offset at a playback speed (2 = twice as fast, 0 = no pauses)."""
    return 0.0 if speed == 0 else offset / speed


def build_timeline(name: str, catalog: Catalog) -> Timeline:
    """The timeline of the named scenario.

    Raises :class:`~replay.errors.ScenarioNotFound` or :class:`~replay.errors.ScenarioInvalid`
    (also for a scenario that plays an invalid one).
    """
    cues, end = _expand(name, catalog, 0.0, (name,))
    # Stable, so ties keep listing order; rounded, so 0.1 + 0.2 ties with 0.3.
    ordered = sorted(cues, key=lambda cue: round(cue.offset, 9))
    return Timeline(name, tuple(ordered), end)


def _expand(
    name: str, catalog: Catalog, start: float, chain: tuple[str, ...]
) -> tuple[list[Cue], float]:
    scenario = catalog.scenario(name)
    cues: list[Cue] = []
    now = start
    for index, step in enumerate(scenario.steps):
        match step:
            case MessageStep(message=kind, text=text, data=data):
                body = text if text is not None else data_text(data)
                cues.append(Cue(now, Endpoint.MESSAGES, message_frame(kind, body), name, index))
            case ChunkStep(chunk=text):
                cues.append(Cue(now, Endpoint.STREAM, chunk_frame(text), name, index))
            case ToolStep(tool=text):
                frame = chunk_frame(text, StreamType.TOOL)
                cues.append(Cue(now, Endpoint.STREAM, frame, name, index))
            case CloseStep():
                cues.append(Cue(now, Endpoint.STREAM, CLOSE_FRAME, name, index))
            case PlayStep(play=target):
                played, now = _expand(target, catalog, now, _deeper(chain, target, name))
                cues.extend(played)
            case ParallelStep(parallel=targets):
                ends = [now]
                for target in targets:
                    played, end = _expand(target, catalog, now, _deeper(chain, target, name))
                    cues.extend(played)
                    ends.append(end)
                now = max(ends)
            case SleepStep():
                pass
        now += scenario.pause_after(step)
    return cues, now


def _deeper(chain: tuple[str, ...], target: str, name: str) -> tuple[str, ...]:
    # A Catalog already rejects cycles; this guard keeps a hand-built one from recursing forever.
    if target in chain:
        cycle = " -> ".join((*chain, target))
        raise ScenarioInvalid(name, [Problem(name, 0, 0, "", f"plays itself: {cycle}")])
    return (*chain, target)
