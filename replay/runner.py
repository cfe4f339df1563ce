"""Runs: a timeline played against a clock, delivering each cue when its deadline comes.

Every play is a :class:`Run` with an id and a state. Several runs may play at once; each
is an asyncio task that can be cancelled. Deadlines are ``start + offset`` on the clock's
monotonic timeline, so the time taken to send a frame never delays the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from replay.clock import Clock, MonotonicClock
from replay.errors import RunNotFound
from replay.protocol import Endpoint
from replay.timeline import Cue, Timeline

log = logging.getLogger("replay.run")

#: Finished runs remembered for GET /runs (running ones are always kept).
KEEP_FINISHED = 100
#: Events a follower may fall behind by before it is cut off.
FOLLOWER_BACKLOG = 10_000


class Delivery(Protocol):
    """Where the runner puts frames: must not block (queue the frame and return)."""

    def send(self, endpoint: Endpoint, frame: str) -> int:
        """Queue ``frame`` for every client of ``endpoint``; return how many clients."""
        ...


class RunState(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(eq=False)
class Run:
    """One play of one scenario. Read its fields; change it only through the Runner."""

    id: str
    scenario: str
    speed: float
    timeline: Timeline = field(repr=False)
    state: RunState = RunState.RUNNING
    #: Frames put out so far.
    sent: int = 0
    #: Copies of frames queued for clients (frames x clients).
    deliveries: int = 0
    #: Clients reached: the most clients one frame reached, summed over the endpoints.
    clients: int = 0
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    elapsed: float = 0.0
    max_lateness: float = 0.0
    error: str | None = None
    #: The most clients one frame reached, per endpoint.
    peaks: dict[Endpoint, int] = field(default_factory=dict, repr=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _followers: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.state is not RunState.RUNNING

    async def wait(self) -> Run:
        """Wait until the run has finished, failed or been cancelled."""
        await self._done.wait()
        return self

    def summary(self) -> dict[str, Any]:
        """The run as JSON-ready data (what GET /runs/{id} answers)."""
        return {
            "run_id": self.id,
            "scenario": self.scenario,
            "state": self.state.value,
            "speed": self.speed,
            "frames": len(self.timeline),
            "sent": self.sent,
            "deliveries": self.deliveries,
            "clients": self.clients,
            "planned_s": round(self.timeline.duration, 6),
            "duration_s": round(self.elapsed, 6),
            "max_lateness_s": round(self.max_lateness, 6),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "error": self.error,
        }

    def follow(self, heartbeat: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Events from now on: ``{"event": "frame", ...}`` per frame, then ``"end"``.

        With ``heartbeat``, a ``{"event": "heartbeat"}`` comes whenever that many seconds
        pass without another event, so a reader can tell a long pause from a dead server.

        The follower is registered when this is called, not when iteration starts, so
        call it before yielding to the event loop to miss nothing. A follower that falls
        more than FOLLOWER_BACKLOG events behind gets a ``"lagged"`` event and no more;
        it never slows the run down.
        """
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        if self.done:
            queue.put_nowait(self._end_event())
            queue.put_nowait(None)
        else:
            self._followers.append(queue)
        return self._drain(queue, heartbeat)

    async def _drain(
        self, queue: asyncio.Queue[dict[str, Any] | None], heartbeat: float | None
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    yield {"event": "heartbeat", "run_id": self.id}
                    continue
                if event is None:
                    return
                yield event
        finally:
            with contextlib.suppress(ValueError):
                self._followers.remove(queue)

    def _publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._followers):
            if queue.qsize() >= FOLLOWER_BACKLOG:
                self._followers.remove(queue)
                queue.put_nowait({"event": "lagged", "run_id": self.id})
                queue.put_nowait(None)
            else:
                queue.put_nowait(event)

    def _end_event(self) -> dict[str, Any]:
        return {"event": "end", **self.summary()}

    def _record(self, cue: Cue, reached: int, lateness: float) -> None:
        self.sent += 1
        self.deliveries += reached
        if reached > self.peaks.get(cue.endpoint, 0):
            self.peaks[cue.endpoint] = reached
            self.clients = sum(self.peaks.values())
        self.max_lateness = max(self.max_lateness, lateness)
        if self._followers:
            self._publish(
                {
                    "event": "frame",
                    "run_id": self.id,
                    "index": self.sent - 1,
                    "offset": round(cue.offset, 6),
                    "endpoint": cue.endpoint.value,
                    "frame": cue.frame,
                    "clients": reached,
                }
            )

    def _finish(self, state: RunState, elapsed: float, error: str | None = None) -> None:
        self.state = state
        self.elapsed = elapsed
        self.error = error
        self.ended_at = time.time()
        self._done.set()
        end = self._end_event()
        for queue in self._followers:
            queue.put_nowait(end)
            queue.put_nowait(None)
        self._followers.clear()


class Runner:
    """Starts, tracks and cancels runs against one delivery."""

    def __init__(
        self,
        delivery: Delivery,
        clock: Clock | None = None,
        keep_finished: int = KEEP_FINISHED,
    ) -> None:
        self.delivery = delivery
        self.clock: Clock = clock or MonotonicClock()
        self._active: dict[str, Run] = {}
        self._finished: deque[Run] = deque(maxlen=keep_finished)

    def start(self, timeline: Timeline, speed: float = 1.0) -> Run:
        """Start playing ``timeline`` at ``speed`` (see Timeline.at_speed) and return the run.

        Must be called from a running event loop.
        """
        run = Run(uuid.uuid4().hex[:12], timeline.scenario, speed, timeline.at_speed(speed))
        self._active[run.id] = run
        run._task = asyncio.create_task(self._play(run), name=f"replay-run-{run.id}")
        log.info(
            "run %s: playing %r (%d frames, speed %g)", run.id, run.scenario, len(timeline), speed
        )
        return run

    def get(self, run_id: str) -> Run:
        """The run with that id; raises RunNotFound."""
        run = self._active.get(run_id) or next((r for r in self._finished if r.id == run_id), None)
        if run is None:
            raise RunNotFound(run_id)
        return run

    def runs(self) -> list[Run]:
        """Running runs, then finished ones, newest first."""
        return sorted(
            [*self._active.values(), *self._finished], key=lambda r: r.started_at, reverse=True
        )

    @property
    def active(self) -> list[Run]:
        return list(self._active.values())

    def cancel(self, run_id: str) -> Run:
        """Ask a run to stop; it ends in the CANCELLED state (await ``run.wait()``)."""
        run = self.get(run_id)
        if run._task is not None and not run.done:
            run._task.cancel()
        return run

    async def shutdown(self) -> None:
        """Cancel every active run and wait for them to end."""
        runs = self.active
        for run in runs:
            self.cancel(run.id)
        for run in runs:
            await run.wait()

    async def _play(self, run: Run) -> None:
        clock = self.clock
        start = clock.now()
        try:
            for cue in run.timeline:
                deadline = start + cue.offset
                if deadline > clock.now():
                    await clock.sleep_until(deadline)
                else:
                    # Due already (speed 0, or ties): still let the clients' writers run.
                    await asyncio.sleep(0)
                # Lateness is when the frame went out, not when a slow send returned.
                lateness = clock.now() - deadline
                reached = self.delivery.send(cue.endpoint, cue.frame)
                run._record(cue, reached, lateness)
            await clock.sleep_until(start + run.timeline.duration)
        except asyncio.CancelledError:
            self._end(run, RunState.CANCELLED, clock.now() - start)
            log.info("run %s: %r cancelled after %d frames", run.id, run.scenario, run.sent)
            return
        except Exception as error:
            self._end(run, RunState.FAILED, clock.now() - start, f"{type(error).__name__}: {error}")
            log.exception("run %s: %r failed", run.id, run.scenario)
            return
        self._end(run, RunState.FINISHED, clock.now() - start)
        log.info(
            "run %s: %r finished: %d frames to %d clients in %.3fs",
            run.id,
            run.scenario,
            run.sent,
            run.clients,
            run.elapsed,
        )

    def _end(self, run: Run, state: RunState, elapsed: float, error: str | None = None) -> None:
        self._active.pop(run.id, None)
        self._finished.append(run)
        run._finish(state, elapsed, error)
