"""A run's own clock: run time, which stops while the run is paused and goes at the run's
speed.

Run time is what a run's offsets are measured in: seconds since the run started, not
counting paused time, at the speed the run started with (the engine has already scaled
every offset to that speed). It maps to the runner's clock as::

    run_now = base_run + (clock_now - base_clock) * rate      (frozen while paused)

where ``rate`` is the current speed over the start speed. Pausing freezes run time,
resuming rebases it on the clock's now, and a speed change rebases it with a new rate,
so every later deadline moves with it and none is lost or fired twice: timing after a
resume is as exact as before it.

:meth:`Pace.due` is where a run waits for a deadline in run time. A step (:meth:`Pace.step`)
is a one-shot permit: the next gate that an action waits at (the earliest one, when a run
has parallel branches) opens at once, run time jumps to its deadline, and the run stays
paused after it. Pure: all time comes from the :class:`~replay.clock.Clock` given.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from replay.clock import Clock


class Gate(Enum):
    """What waits at a gate, which decides what a step does to it."""

    #: An action (a frame, a hangup, a ``set``, a wait beginning, the run's end): a step
    #: opens the earliest such gate and is used up by it.
    ACTION = "action"
    #: Bookkeeping between actions (a ``choose`` or ``let`` reading the state): a step
    #: lets it through on the way to the next action, and is not used up.
    PASSING = "passing"
    #: A wait's timeout: steps never open it; it only runs down while the run plays.
    TIMER = "timer"


@dataclass(eq=False)
class _Sleeper:
    deadline: float
    gate: Gate
    order: int
    opened: asyncio.Future[None] = field(repr=False)


class Pace:
    """Run time for one run (see the module's docstring).

    ``speed`` is the speed the run started with; 0 (no pauses) keeps run time at the
    clock's pace and refuses speed changes. Call :meth:`begin` when the run starts playing.
    """

    def __init__(self, clock: Clock, speed: float) -> None:
        self.clock = clock
        self.start_speed = speed
        self.speed = speed
        self.paused = False
        self._rate = 1.0
        self._base_run = 0.0
        self._base_clock = clock.now()
        self._paused_at = 0.0
        self._paused_total = 0.0
        self._changed: asyncio.Future[None] | None = None
        self._sleepers: list[_Sleeper] = []
        self._order = itertools.count()
        #: Steps asked for and not yet used up by an action.
        self._permits = 0
        #: One future per step asked for, resolved in order as steps are used up.
        self._steps: deque[asyncio.Future[dict[str, Any]]] = deque()

    def begin(self, at: float | None = None) -> None:
        """Start run time at 0 now, or at ``at`` on the clock (a moment agreed with other
        nodes: a run that begins a little after it is that late from its first action,
        not for its whole length). A run paused before it began stays paused."""
        now = self.clock.now()
        self._base_run, self._base_clock = 0.0, now if at is None else at
        if self.paused:
            self._paused_at = now

    def now(self) -> float:
        """Run time now."""
        if self.paused:
            return self._base_run
        return self._base_run + (self.clock.now() - self._base_clock) * self._rate

    def lateness(self, deadline: float) -> float:
        """Run seconds since ``deadline`` (0 if it has not come): measured on the clock
        against the deadline's own moment there, so an action on time is exactly 0 late."""
        if self.paused:
            return max(0.0, self._base_run - deadline)
        return max(0.0, (self.clock.now() - self._on_clock(deadline)) * self._rate)

    @property
    def paused_s(self) -> float:
        """Seconds (on the clock) spent paused so far, the current pause included."""
        if self.paused:
            return self._paused_total + self.clock.now() - self._paused_at
        return self._paused_total

    def pause(self) -> bool:
        """Freeze run time; False if it was already paused."""
        if self.paused:
            return False
        self._base_run = self.now()
        self.paused = True
        self._paused_at = self.clock.now()
        self._change()
        return True

    def resume(self) -> bool:
        """Let run time go on from where it stopped; False if it was not paused. A step
        asked for and not yet used up is used up by the next action, in its own time."""
        if not self.paused:
            return False
        now = self.clock.now()
        self._paused_total += now - self._paused_at
        self._base_clock = now
        self.paused = False
        self._change()
        return True

    def set_speed(self, speed: float) -> None:
        """Go at ``speed`` from now on: every later deadline is rescaled from now.
        Raises ValueError for a run that started at speed 0 (it has no pauses to scale)
        or a speed of 0 (that would stop run time: pause instead)."""
        if self.start_speed == 0:
            raise ValueError("the run plays at speed 0 (no pauses): its speed cannot change")
        if speed <= 0:
            raise ValueError("a running run's speed must be more than 0 (pause it instead)")
        if not self.paused:
            now = self.clock.now()
            self._base_run = self._base_run + (now - self._base_clock) * self._rate
            self._base_clock = now
        self.speed = speed
        self._rate = speed / self.start_speed
        self._change()

    def step(self) -> asyncio.Future[dict[str, Any]]:
        """Pause (if playing) and let exactly the next action happen at once; the future
        gets what the runner reports of it (:meth:`stepped`), or ``{"kind": "end"}``."""
        self.pause()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._steps.append(future)
        self._permits += 1
        self._open()
        return future

    def stepped(self, what: dict[str, Any]) -> None:
        """The action a step let through has happened: answer the step that asked."""
        while self._steps:
            future = self._steps.popleft()
            if not future.done():
                future.set_result(what)
                return

    def end(self) -> None:
        """The run has ended: it is paused no more (``paused_s`` stops growing), and
        steps still waiting get ``{"kind": "end", ...}``."""
        self._permits = 0
        ended = {"kind": "end", "step": None, "offset": round(self.now(), 6)}
        self.resume()
        while self._steps:
            future = self._steps.popleft()
            if not future.done():
                future.set_result(dict(ended))

    @property
    def waiting_actions(self) -> int:
        """Gates of actions (not timers) waiting now: 0 means no step can be used now
        (the run waits for clients, or is between actions)."""
        return sum(1 for sleeper in self._sleepers if sleeper.gate is not Gate.TIMER)

    async def due(self, deadline: float, gate: Gate = Gate.ACTION) -> bool:
        """Return once run time reaches ``deadline`` (run seconds) and the run is not
        paused, or at once when a step opens this gate (then run time jumps to
        ``deadline`` if it is later, and True is returned: the caller must report the
        action with :meth:`stepped`). A paused run holds here even when the deadline has
        passed."""
        if not self.paused and not self._permits and self._due(deadline):
            return False  # the common case at speed 0 and for ties: nothing to set up
        sleeper = _Sleeper(
            deadline, gate, next(self._order), asyncio.get_running_loop().create_future()
        )
        self._sleepers.append(sleeper)
        try:
            self._open()
            while True:
                if sleeper.opened.done():
                    if self.paused and deadline > self._base_run:
                        self._base_run = deadline  # run time jumps to it
                    if gate is Gate.PASSING:
                        # The step goes on to the next action: this branch's, which it
                        # is about to reach; or, if the branch ends here, another's.
                        asyncio.get_running_loop().call_soon(self._open)
                    return gate is Gate.ACTION
                if not self.paused and self._due(deadline):
                    if gate is Gate.ACTION and self._permits:
                        self._permits -= 1  # a step asked for before a resume
                        return True
                    return False
                await self._sleep(sleeper)
        finally:
            self._sleepers.remove(sleeper)

    async def _sleep(self, sleeper: _Sleeper) -> None:
        """Sleep until the deadline, a change (pause, resume, speed) or the gate opens."""
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        waits: list[asyncio.Future[Any]] = [self._changed, sleeper.opened]
        timer = None
        if not self.paused:
            timer = asyncio.ensure_future(self.clock.sleep_until(self._on_clock(sleeper.deadline)))
            waits.append(timer)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if timer is not None and not timer.done():
                timer.cancel()

    def _due(self, deadline: float) -> bool:
        return self.clock.now() >= self._on_clock(deadline)

    def _on_clock(self, deadline: float) -> float:
        """When run time reaches ``deadline`` on the clock, at the current rate (playing)."""
        return self._base_clock + (deadline - self._base_run) / self._rate

    def _change(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def _open(self) -> None:
        """Give a pending step to the earliest gate that takes it."""
        if not self._permits or not self.paused:
            return
        takers = [s for s in self._sleepers if s.gate is not Gate.TIMER and not s.opened.done()]
        if not takers:
            return
        first = min(takers, key=lambda s: (s.deadline, s.order))
        if first.gate is Gate.ACTION:
            self._permits -= 1
        first.opened.set_result(None)
