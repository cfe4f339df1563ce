"""Runs: a scenario's script driven against a clock and the connected clients.

Every play is a :class:`Run` with an id and a state. Several runs may play at once; each
is an asyncio task that can be cancelled, paused, resumed, stepped and sped up. Deadlines
are offsets in the run's own run time (:class:`~replay.pacing.Pace`, on the runner's
monotonic clock), so neither the time taken to send a frame nor a pause delays the next
one by more than it should.
Client frames reach the runs that wait for them through :meth:`Runner.receive`, and new
connections the runs waiting for one (``wait_connect``) through :meth:`Runner.connected`.
``set`` steps change the runner's shared :class:`~replay.state.State`, which every run
reads as ``state.NAME`` when each step plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from replay import planning
from replay.budget import MAX_STEPS
from replay.catalog import Catalog
from replay.clock import Clock, MonotonicClock
from replay.counts import counted
from replay.direct import burst
from replay.engine import (
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
    awaited,
    check_vars,
    play,
)
from replay.errors import ReplayError, RunControlRefused, RunNotFound, TooManyRuns
from replay.feed import Feed, event_size
from replay.mailbox import Mailbox, Waiter
from replay.matching import ClientFrame, matches
from replay.pacing import Gate, Pace
from replay.protocol.declaration import Protocol as WireProtocol
from replay.routes import is_route_key
from replay.state import State
from replay.timeline import MAX_SPEED, MIN_SPEED, Timeline, build_timeline, check_speed

log = logging.getLogger("replay.run")

#: Finished runs remembered for GET /runs (running ones are always kept).
KEEP_FINISHED = 100
#: Events a follower may fall behind by before it is cut off.
FOLLOWER_BACKLOG = 10_000
#: Bytes of events (see :func:`replay.feed.event_size`) a follower may fall behind by
#: before it is cut off: 10,000 events of 1 MiB frames would be 10 GB for one reader.
FOLLOWER_BACKLOG_BYTES = 8 * 1024 * 1024
#: Runs started by triggers that may play at once: the token holder's share, which
#: nothing a client does can use up.
MAX_ACTIVE_RUNS = 1000
#: Runs started by clients (reactions, on-connect runs) that may play at once, all clients
#: together: a share of their own, apart from the triggers'.
MAX_CLIENT_RUNS = 1000
#: Runs one client (one client id, all its connections) may have started and playing at
#: once: enough for any real conversation, and one client cannot take the clients' share.
MAX_RUNS_PER_CLIENT = 10
#: What starts runs on a client's behalf; every other run is the triggers'.
CLIENT_STARTED = frozenset({"reaction", "connect"})
#: Seconds a run at speed 0 leaves between a frame on one endpoint and a frame on the
#: other, so that a client reading both connections reads them in the scenario's order.
ENDPOINT_SWITCH_GAP = 0.001
#: The most frames a run writes in one burst (one turn of the event loop) when several
#: are due at once (speed 0, ties), and the most copies of them all clients together
#: take: each client then gets them in one write, and the loop still runs its other work
#: (other runs, requests, clients' frames) every so often. See replay.direct.Burst.
BURST_FRAMES = 64
BURST_COPIES = 16384
#: ... and the longest a burst goes on taking more frames, in seconds (on the runner's
#: clock): the first frames of a big burst wait for the last ones, and the loop's other
#: work for all of them.
BURST_SECONDS = 0.005
#: Cues planned for a run's summary (frames, planned_s), in the planning thread: as many
#: as a run may play steps (see replay.budget), so that a long recording is counted whole
#: (100,000 frames take the thread a few seconds; the run plays meanwhile). A scenario
#: that repeats forever is planned for planning.FOREVER_CUES only: it never ends.
PLAN_CUES = MAX_STEPS
#: Cues planned on the event loop when a run starts (about 10 µs each); a longer plan
#: is made in the planning thread and filled in when it is ready.
PLAN_INLINE_CUES = 100


class Connection(Protocol):
    """A connected client, as the runner sees it."""

    @property
    def id(self) -> str: ...

    @property
    def endpoint(self) -> str:
        """The WebSocket path it is connected to ("/ws")."""
        ...


class Delivery(Protocol):
    """Where the runner puts frames: must not block (queue the frame and return)."""

    def clients(self) -> Sequence[Connection]:
        """Every connected client, oldest connection first (for ``wait_connect``)."""
        ...

    def send(self, endpoint: str, frame: str | bytes, to: str | None = None) -> int:
        """Queue ``frame`` for every client of ``endpoint`` (or those with id ``to``);
        return how many clients."""
        ...

    def hangup(self, endpoint: str, to: str | None, code: int, reason: str, abort: bool) -> int:
        """End the connections of ``endpoint``'s clients (or those with id ``to``) after
        what is queued for them; return how many."""
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
    seed: int
    #: The run as planned on paper (None if it could not be planned, e.g. a template
    #: that reads what a client will send); once the run has ended, only its counts.
    plan: Timeline | None = field(repr=False)
    vars: Mapping[str, Any] = field(default_factory=dict)
    #: The trigger's target client, if any.
    client: str | None = None
    #: The client whose frame or connection started the run, if any.
    sender: str | None = None
    #: What started it: "trigger", "reaction" or "connect".
    started_by: str = "trigger"
    state: RunState = RunState.RUNNING
    #: Frames put out so far.
    sent: int = 0
    #: Copies of frames queued for clients (frames x clients).
    deliveries: int = 0
    #: Clients reached: the most clients one frame reached, summed over the endpoints.
    clients: int = 0
    #: What the run waits for now, if it waits for a client (one line per waiting branch).
    waiting: str | None = None
    #: The step being played ("2", or "2.steps.0" inside a repeat), and its scenario
    #: (the run's own, or one it plays).
    step: str | None = None
    step_scenario: str | None = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    elapsed: float = 0.0
    max_lateness: float = 0.0
    error: str | None = None
    #: The most clients one frame reached, per endpoint.
    peaks: dict[str, int] = field(default_factory=dict, repr=False)
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _followers: list[_Follower] = field(default_factory=list, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, repr=False)
    _waits: list[str] = field(default_factory=list, repr=False)
    _planned: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: The endpoint of the last frame the run sent (for the order at speed 0).
    _endpoint: str | None = field(default=None, repr=False)
    #: Whether an action that is due already lets other tasks run first (see _act).
    _yields: bool = field(default=True, repr=False)
    #: When run time 0 is on the runner's clock, if agreed beforehand (see Runner.start).
    _begins_at: float | None = field(default=None, repr=False)
    #: Frames the run wrote in the burst open now, and the copies of them clients took
    #: (see Runner._act and replay.direct.Burst).
    _burst: int = field(default=0, repr=False)
    _burst_copies: int = field(default=0, repr=False)
    #: When the run wrote the burst's first frame (on the runner's clock).
    _burst_at: float = field(default=0.0, repr=False)
    #: The client frames the run may consume, kept from its start (see replay.mailbox).
    mailbox: Mailbox = field(default_factory=lambda: Mailbox(()), repr=False)
    #: The run's own clock: run time, paused and sped up through the Runner.
    pace: Pace = field(default_factory=lambda: Pace(MonotonicClock(), 1.0), repr=False)
    #: What each waiting branch waits for now (``expects`` in the summary).
    _expects: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: Plans the run and publishes run.started, once (see :meth:`announce`).
    _announce: Callable[[], None] | None = field(default=None, repr=False)
    #: The run's feed events made before its run.started, published right after it.
    _held: list[tuple[str, dict[str, Any]]] | None = field(default=None, repr=False)
    #: What the run's scenarios speak (for ``expects[].example``).
    _protocol: WireProtocol | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.state is not RunState.RUNNING

    async def wait(self) -> Run:
        """Wait until the run has finished, failed or been cancelled."""
        await self._done.wait()
        return self

    async def planned(self) -> Run:
        """Wait until the run's plan is known (``plan``: None if it cannot be made).
        A long scenario is planned in a thread: its plan comes a little after the start."""
        await self._planned.wait()
        return self

    def announce(self) -> None:
        """Plan the run (a short scenario at once, a long one in the planning thread) and
        publish ``run.started``, unless done already. :meth:`Runner.start` leaves this
        for right after the run's first turn, so that a trigger's first frame does not
        wait for the plan; call it before reading the plan (:meth:`summary`'s
        ``frames``) in the same turn as the start."""
        announce, self._announce = self._announce, None
        if announce is not None:
            announce()

    def _set_plan(self, plan: Timeline | None) -> None:
        # Only the counts: memory must not grow with the frames a run will send.
        self.plan = plan.counts() if plan is not None else None
        self._planned.set()

    def planned_counts(self) -> dict[str, Any]:
        """The plan's part of :meth:`summary`: ``frames``, ``frames_exact``, ``planned_s``
        (None, False, None until the run is planned, or if it cannot be)."""
        plan = self.plan
        planned = plan.duration if plan is not None else None
        return {
            "frames": plan.frames if plan is not None and planned is not None else None,
            "frames_exact": plan is not None and planned is not None and plan.waits == 0,
            "planned_s": round(planned, 6) if planned is not None else None,
        }

    def summary(self) -> dict[str, Any]:
        """The run as JSON-ready data (what GET /runs/{id} answers)."""
        counts = self.planned_counts()
        return {
            "run_id": self.id,
            "scenario": self.scenario,
            "state": self.state.value,
            "started_by": self.started_by,
            "speed": self.pace.speed,
            "paused": self.pace.paused,
            "paused_s": round(self.pace.paused_s, 6),
            "seed": self.seed,
            "vars": dict(self.vars),
            "client": self.client,
            "sender": self.sender,
            "frames": counts["frames"],
            "frames_exact": counts["frames_exact"],
            "sent": self.sent,
            "deliveries": self.deliveries,
            "clients": self.clients,
            "waiting": self.waiting,
            "expects": [dict(expect) for expect in self._expects],
            "step": self.step,
            "planned_s": counts["planned_s"],
            "duration_s": round(self.elapsed, 6),
            "max_lateness_s": round(self.max_lateness, 6),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "error": self.error,
            "mailbox": self.mailbox.summary(),
        }

    def follow(self, heartbeat: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Events from now on: ``{"event": "frame", ...}`` per frame, then ``"end"``.

        With ``heartbeat``, a ``{"event": "heartbeat"}`` comes whenever that many seconds
        pass without another event, so a reader can tell a long pause from a dead server.

        The follower is registered when this is called, not when iteration starts, so
        call it before yielding to the event loop to miss nothing. A follower that falls
        more than FOLLOWER_BACKLOG events or FOLLOWER_BACKLOG_BYTES bytes behind gets a
        ``"lagged"`` event and no more; it never slows the run down.
        """
        follower = _Follower()
        if self.done:
            follower.end(self._end_event())
        else:
            self._followers.append(follower)
        return self._drain(follower, heartbeat)

    async def _drain(
        self, follower: _Follower, heartbeat: float | None
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(follower.get(), heartbeat)
                except TimeoutError:
                    yield {"event": "heartbeat", "run_id": self.id}
                    continue
                if event is None:
                    return
                yield event
        finally:
            with contextlib.suppress(ValueError):
                self._followers.remove(follower)

    def _publish(self, event: dict[str, Any]) -> None:
        for follower in list(self._followers):
            if not follower.offer(event):
                self._followers.remove(follower)
                follower.end({"event": "lagged", "run_id": self.id})

    def _end_event(self) -> dict[str, Any]:
        return {"event": "end", **self.summary()}

    def _record(self, send: Send, reached: int, lateness: float) -> None:
        self.sent += 1
        self.deliveries += reached
        if reached > self.peaks.get(send.endpoint, 0):
            self.peaks[send.endpoint] = reached
            self.clients = sum(self.peaks.values())
        self.max_lateness = max(self.max_lateness, lateness)
        if self._followers:
            frame = send.frame
            self._publish(
                {
                    "event": "frame",
                    "run_id": self.id,
                    "index": self.sent - 1,
                    "offset": round(send.at, 6),
                    "endpoint": send.endpoint,
                    "to": send.to,
                    "binary": isinstance(frame, bytes),
                    "frame": frame if isinstance(frame, str) else frame.hex(),
                    "clients": reached,
                    "step": send.step,
                }
            )

    def _note(self, event: str, **fields: Any) -> None:
        if self._followers:
            self._publish({"event": event, "run_id": self.id, **fields})

    def _finish(self, state: RunState, elapsed: float, error: str | None = None) -> None:
        self.state = state
        self.elapsed = elapsed
        self.error = error
        self.ended_at = time.time()
        self._done.set()
        end = self._end_event()
        for follower in self._followers:
            follower.end(end)
        self._followers.clear()


class _Follower:
    """One reader of :meth:`Run.follow`: its events, and the bytes they hold."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        #: The bytes (see event_size) of the events queued and not yet read.
        self.held = 0

    def offer(self, event: dict[str, Any]) -> bool:
        """Queue ``event``; False, and nothing queued, if the follower is too far behind
        (one holding nothing takes any event, however large)."""
        size = event_size(event)
        if self.queue.qsize() >= FOLLOWER_BACKLOG or (
            self.held and self.held + size > FOLLOWER_BACKLOG_BYTES
        ):
            return False
        self.held += size
        self.queue.put_nowait(event)
        return True

    def end(self, last: dict[str, Any]) -> None:
        """Queue ``last`` and the end of the events, whatever the bounds (both are small)."""
        self.held += event_size(last)
        self.queue.put_nowait(last)
        self.queue.put_nowait(None)

    async def get(self) -> dict[str, Any] | None:
        """The next event, or None at the end."""
        event = await self.queue.get()
        if event is not None:
            self.held -= event_size(event)
        return event


class Runner:
    """Starts, tracks and cancels runs against one delivery."""

    def __init__(
        self,
        delivery: Delivery,
        clock: Clock | None = None,
        keep_finished: int = KEEP_FINISHED,
        max_active: int = MAX_ACTIVE_RUNS,
        feed: Feed | None = None,
        max_client_runs: int = MAX_CLIENT_RUNS,
        max_per_client: int = MAX_RUNS_PER_CLIENT,
        state: State | None = None,
    ) -> None:
        self.delivery = delivery
        self.clock: Clock = clock or MonotonicClock()
        #: The shares of runs playing at once (see :meth:`start`): triggered runs; runs
        #: started by clients, all together; and those of one client.
        self.max_active = max_active
        self.max_client_runs = max_client_runs
        self.max_per_client = max_per_client
        #: Runs not started because their share was full, by share ("trigger", "clients",
        #: "client").
        self.refused: dict[str, int] = {"trigger": 0, "clients": 0, "client": 0}
        #: Where run and frame events are published.
        self.feed = feed or Feed()
        #: Runs that ended, by state; and each frame's lateness, for metrics.
        self.ended: dict[RunState, int] = dict.fromkeys(
            (RunState.FINISHED, RunState.FAILED, RunState.CANCELLED), 0
        )
        self.on_lateness: Callable[[float], None] | None = None
        self._active: dict[str, Run] = {}
        self._finished: deque[Run] = deque(maxlen=keep_finished)
        self._triggered = 0
        self._client_started = 0
        self._by_client: dict[str, int] = {}
        #: The shared state runs read (``state.NAME``) and ``set`` steps change: the
        #: server's own, or a fresh one.
        self.state = state if state is not None else State()
        #: The ``wait_connect`` steps waiting for a connection now.
        self._connecting: list[_Connecting] = []
        #: Fields every ``frame.sent`` event of a run carries besides its own (under
        #: ``serve --upstream``, ``{"injected": True}``: frames go into live sessions).
        self.marks: dict[str, Any] = {}

    def start(
        self,
        name: str,
        catalog: Catalog,
        *,
        speed: float = 1.0,
        seed: int | None = None,
        vars: Mapping[str, Any] | None = None,
        client: str | None = None,
        sender: str | None = None,
        received: ClientFrame | None = None,
        started_by: str = "trigger",
        run_id: str | None = None,
        eager: bool = False,
        begins_at: float | None = None,
    ) -> Run:
        """Start playing the named scenario of ``catalog`` and return the run.

        ``seed`` makes pauses' jitter and templates' random values repeatable (a random
        one is chosen and recorded otherwise); ``vars`` override the scenario's variables;
        ``client`` sends every frame to that client unless a step says otherwise;
        ``sender`` and ``received`` are the client and frame that started the run;
        ``run_id`` is the run's id (a cluster's nodes play one run under one id), else new.
        ``eager``: the run's first action, if due, is done in its task's first turn
        instead of one loop iteration later (a trigger's first frame, sooner); a
        :meth:`Run.follow` must then begin before the caller next awaits, or it misses it.
        ``begins_at``: the moment on the runner's clock run time 0 is (a cluster's nodes
        agree on one), else when the run's task starts: every action keeps its offset
        from it, so a run whose task starts late catches up rather than staying late.

        Runs have shares of their own, each with its cap: triggered runs (``max_active``),
        and runs ``started_by`` a client ("reaction", "connect"): ``max_client_runs`` all
        clients together and ``max_per_client`` per ``sender``. A full share raises
        TooManyRuns saying which; the other shares are not touched.

        The run is planned, and ``run.started`` published, right after its first turn
        (see :meth:`Run.announce`): call ``run.announce()`` to read its plan at once.

        Raises ScenarioNotFound, ScenarioInvalid, VariablesInvalid, TooManyRuns and
        ValueError (a bad speed) before anything plays. Must be called from a running
        event loop.
        """
        check_speed(speed)
        self._admit(started_by, sender)
        values = dict(vars or {})
        check_vars(name, catalog, values)
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
        run_id = run_id or uuid.uuid4().hex[:12]
        context = Context(
            run_id, seed, speed, time.time(), values, client, sender, received, self.state
        )
        catalog.scenario(name)  # raises now, not in the run's task
        run = Run(run_id, name, speed, seed, None, values, pace=Pace(self.clock, speed))
        run._protocol = catalog.protocol
        run.mailbox = Mailbox(awaited(name, catalog), client)
        # Planned on a copy of the state as it is now (perhaps in another thread).
        run._announce = self._announcer(run, catalog, replace(context, state=self.state.snapshot()))
        run._held = []
        run.client, run.sender, run.started_by = client, sender, started_by
        run._yields = not eager
        run._begins_at = begins_at
        self._active[run.id] = run
        self._count(run, 1)
        run._task = asyncio.create_task(
            self._play(run, name, catalog, context), name=f"replay-run-{run.id}"
        )
        run._task.add_done_callback(lambda _: self._cancelled_early(run))
        # After the run's first turn: an eager run's first frame goes out before the plan.
        asyncio.get_running_loop().call_soon(run.announce)
        log.debug(
            "run %s: playing %r (%s, speed %g, seed %d)",
            run.id,
            run.scenario,
            started_by,
            speed,
            seed,
        )
        return run

    def _announcer(self, run: Run, catalog: Catalog, context: Context) -> Callable[[], None]:
        """What :meth:`Run.announce` does for ``run``: plan it, publish run.started, then
        the events the run made before (a first frame's ``run.step``, ``frame.sent``)."""

        def announce() -> None:
            try:
                _start_plan(run, run.scenario, catalog, context)
            except Exception:
                # A fault in planning (a bug: a scenario that cannot be planned is None)
                # costs the run its summary's counts, not its play or its events.
                log.exception("run %s: could not be planned", run.id)
                run._set_plan(None)
            self.feed.publish(
                "run.started", run_id=run.id, scenario=run.scenario, run=run.summary()
            )
            held, run._held = run._held or [], None
            for kind, fields in held:
                self.feed.publish(kind, **fields)

        return announce

    def _tell(self, subject: Run, kind: str, /, **fields: Any) -> None:
        """Publish one of the ``subject`` run's events, or hold it until the run's
        ``run.started`` (see :meth:`Run.announce`): the feed tells a run's story in order."""
        if subject._held is not None:
            subject._held.append((kind, fields))
        else:
            self.feed.publish(kind, **fields)

    def admit(self, started_by: str = "trigger", sender: str | None = None) -> None:
        """Raise TooManyRuns now (counted as refused) if :meth:`start` would, so that
        a cluster's node refuses a trigger before the other nodes hear it."""
        self._admit(started_by, sender)

    def shares(self) -> dict[str, dict[str, int]]:
        """Each share's runs playing now, its cap, and the runs it refused (GET /runs)."""
        return {
            "trigger": {
                "active": self._triggered,
                "limit": self.max_active,
                "refused": self.refused["trigger"],
            },
            "client": {
                "active": self._client_started,
                "limit": self.max_client_runs,
                "per_client": self.max_per_client,
                "refused": self.refused["clients"] + self.refused["client"],
            },
        }

    def _admit(self, started_by: str, sender: str | None) -> None:
        """Raise TooManyRuns if the share a new run would count in is full."""
        if started_by not in CLIENT_STARTED:
            if self._triggered >= self.max_active:
                self._refuse(TooManyRuns(self.max_active))
        elif self._client_started >= self.max_client_runs:
            self._refuse(TooManyRuns(self.max_client_runs, "clients"))
        elif sender is not None and self._by_client.get(sender, 0) >= self.max_per_client:
            self._refuse(TooManyRuns(self.max_per_client, "client", sender))

    def _refuse(self, error: TooManyRuns) -> None:
        self.refused[error.share] += 1
        raise error

    def _count(self, run: Run, change: int) -> None:
        """Count ``run`` in (``change`` 1) or out (-1) of its share."""
        if run.started_by not in CLIENT_STARTED:
            self._triggered += change
            return
        self._client_started += change
        if run.sender is not None:
            left = self._by_client.get(run.sender, 0) + change
            if left:
                self._by_client[run.sender] = left
            else:
                del self._by_client[run.sender]  # no id stays behind once its runs end

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

    def pause(self, run_id: str) -> Run:
        """Pause a run: it holds before its next action, run time stands still (its wait
        timeouts too) and every later deadline moves by the time paused. A no-op for a
        paused run. Raises RunNotFound, and RunControlRefused if the run has ended."""
        run = self._playing(run_id, "paused")
        if run.pace.pause():
            self._control(run, "run.paused")
        return run

    def resume(self, run_id: str) -> Run:
        """Let a paused run go on where it stopped (a no-op if it is not paused).
        Raises RunNotFound, and RunControlRefused if the run has ended."""
        run = self._playing(run_id, "resumed")
        if run.pace.resume():
            self._control(run, "run.resumed")
        return run

    def set_speed(self, run_id: str, speed: float) -> Run:
        """Play the rest of a run at ``speed``: the deadlines left are rescaled from now.
        Raises ValueError for a speed out of MIN_SPEED..MAX_SPEED (0 included: pause
        instead), RunNotFound, and RunControlRefused if the run has ended or started at
        speed 0 (it has no pauses to scale)."""
        check_speed(speed)
        if speed == 0:
            raise ValueError(
                f"a playing run's speed must be from {MIN_SPEED:g} to {MAX_SPEED:g} "
                "(to stop it, pause it); got 0"
            )
        run = self._playing(run_id, "sped up or slowed down")
        if run.pace.start_speed == 0:
            raise RunControlRefused(
                run_id, "it plays at speed 0 (no pauses), so there is no timing to rescale"
            )
        run.pace.set_speed(speed)
        self._control(run, "run.speed")
        return run

    async def step(self, run_id: str) -> tuple[Run, dict[str, Any]]:
        """Pause a run (if it plays) and let exactly its next action happen at once: a
        frame, a disconnect or drop, a ``set``, a wait beginning, or the run's end (run
        time jumps to that action's offset). Returns once it has happened, with what
        it was (``{"kind": "frame", "step": "2", ...}``); the run stays paused.

        Raises RunNotFound, and RunControlRefused if the run has ended or all it does
        now is wait for clients (answer them, or resume)."""
        run = self._playing(run_id, "stepped")
        if run.pace.waiting_actions == 0 and run._waits:
            raise RunControlRefused(
                run_id,
                f"it waits for {run.waiting}: a step cannot skip a wait; answer it, or "
                "resume the run",
            )
        was_paused = run.pace.paused
        stepped = run.pace.step()
        if not was_paused:
            self._control(run, "run.paused")
        done = await stepped
        self._tell(
            run,
            "run.stepped",
            run_id=run.id,
            scenario=run.scenario,
            run=run.summary(),
            stepped=done,
        )
        return run, done

    def _playing(self, run_id: str, what: str) -> Run:
        run = self.get(run_id)
        if run.done:
            raise RunControlRefused(
                run_id, f"it has already ended ({run.state.value}) and cannot be {what}"
            )
        return run

    def _control(self, run: Run, event: str) -> None:
        log.info("run %s: %s (%s)", run.id, event.removeprefix("run."), _pace_text(run))
        summary = run.summary()
        self._tell(run, event, run_id=run.id, scenario=run.scenario, run=summary)
        # Followers (replay --scenario, ?follow=true) hear it too, whoever paused the run.
        run._note(event.removeprefix("run."), run=summary)

    def forget_finished(self) -> int:
        """Forget the runs that have ended (``POST /reset``); return how many."""
        count = len(self._finished)
        self._finished.clear()
        return count

    async def shutdown(self) -> None:
        """Cancel every active run and wait for them to end."""
        runs = self.active
        for run in runs:
            self.cancel(run.id)
        for run in runs:
            await run.wait()

    def receive(self, frame: ClientFrame) -> bool:
        """Give a client's frame to every playing run that may consume it (to a waiting
        step, or into the run's mailbox for a later one; see :mod:`replay.mailbox`);
        False if no run may, and then it is free to start reactions."""
        return bool(self.keep(frame))

    def keep(self, frame: ClientFrame) -> list[str]:
        """:meth:`receive`, returning the ids of the runs that kept the frame."""
        kept: list[str] = []
        for run in list(self._active.values()):
            dropped = run.mailbox.dropped
            if run.mailbox.offer(frame):
                kept.append(run.id)
            if run.mailbox.dropped == 1 and dropped == 0:
                log.warning(
                    "run %s: its mailbox is full (%d frames unread): client frames are "
                    "dropped until a wait takes some",
                    run.id,
                    run.mailbox.summary()["unread"],
                )
        return kept

    async def _play(self, run: Run, name: str, catalog: Catalog, context: Context) -> None:
        clock = self.clock
        start = clock.now()
        run.pace.begin(run._begins_at)
        # Templates' "now" is when a frame is due: count from when the run starts playing,
        # not from when it was asked for (planning and other tasks came in between).
        began = run._begins_at if run._begins_at is not None else start
        script = play(name, catalog, replace(context, epoch=time.time() - (start - began)))
        try:
            end = await self._drive(run, script)
            await run.pace.due(end.end)  # a step here ends the run: it answers "end"
        except asyncio.CancelledError:
            self._end(run, RunState.CANCELLED, clock.now() - start)
            log.info("%s", _line(run))
            return
        except Exception as error:
            failure = _first(error)
            if isinstance(failure, ReplayError):
                self._end(run, RunState.FAILED, clock.now() - start, str(failure))
                log.warning("%s", _line(run))
            else:
                message = f"{type(failure).__name__}: {failure}"
                self._end(run, RunState.FAILED, clock.now() - start, message)
                log.error("%s", _line(run), exc_info=failure)
            return
        self._end(run, RunState.FINISHED, clock.now() - start)
        log.info("%s", _line(run))

    async def _drive(self, run: Run, script: Script) -> Joined:
        """Do what ``script`` says when it says; return its end offset and action count."""
        reply: Any = None
        actions = 0
        try:
            while True:
                try:
                    action = script.send(reply)
                except StopIteration as stop:
                    return Joined(float(stop.value), actions)
                reply = None
                if not isinstance(action, Send | Due | Note):
                    _end_burst(run)  # what comes may wait, or close a connection
                if isinstance(action, Fork):
                    reply = await self._fork(run, action)
                    actions += reply.actions  # a fork is what its branches do
                    continue
                actions += 1
                if isinstance(action, Wait):
                    reply = await self._wait(run, action)
                elif isinstance(action, WaitConnect):
                    reply = await self._wait_connect(run, action)
                else:
                    await self._act(run, action)
        finally:
            _end_burst(run)
            script.close()

    async def _act(self, run: Run, action: Send | Hangup | SetState | Due | Note) -> None:
        """Do ``action`` when it is due in run time (see :mod:`replay.pacing`)."""
        pace = run.pace
        if not pace.paused and pace.now() >= action.at:
            if run.speed == 0 and _switches(run, action):
                # No pauses, but frames must reach a client in the scenario's order
                # across its two connections: give the one written last a moment to
                # be read before writing to the other (TCP orders each on its own).
                _end_burst(run)
                await self.clock.sleep_until(self.clock.now() + ENDPOINT_SWITCH_GAP)
            elif run._yields and not _bursting(run, action, self.clock.now()):
                # Due already (speed 0, or ties): what the burst holds goes out, then the
                # loop runs its other work (the clients' writers among it).
                _end_burst(run)
                await asyncio.sleep(0)
        else:
            _end_burst(run)  # it waits: what is written goes out now, at its time
        run._yields = True
        # Due and Note only read or tell: a step goes through them to the next action.
        gate = Gate.PASSING if isinstance(action, Due | Note) else Gate.ACTION
        stepped = await pace.due(action.at, gate)
        if isinstance(action, Send):
            run._endpoint = action.endpoint
        # Lateness is when the frame went out, not when a slow send returned.
        lateness = pace.lateness(action.at)
        at = action.at + lateness
        if action.step != run.step or action.scenario != run.step_scenario:
            self._step(run, action.scenario, action.step)
        done: dict[str, Any] = {}
        match action:
            case Send():
                burst.hold()
                if not run._burst:
                    run._burst_at = self.clock.now()
                reached = self._send(run, action, at, lateness)
                run._burst += 1
                run._burst_copies += reached
                done = {"kind": "frame", "endpoint": action.endpoint, "to": action.to}
                done["clients"] = reached
            case Hangup():
                ended = self._hangup(run, action)
                done = {"kind": "drop" if action.abort else "disconnect", "clients": ended}
                done.update(endpoints=list(action.endpoints), to=action.to, code=action.code)
            case SetState():
                self.state.update(action.changes, by=f"run {run.id} step {action.step}")
                run._note("state", changes=dict(action.changes), step=action.step)
                done = {"kind": "set", "changes": dict(action.changes)}
            case Note():
                run._note(action.kind, text=action.text, step=action.step)
        if stepped:
            pace.stepped(_stepped(done, action, at))

    def _send(self, run: Run, send: Send, at: float, lateness: float) -> int:
        reached = self.delivery.send(send.endpoint, send.frame, send.to)
        run._record(send, reached, lateness)
        if self.on_lateness is not None:
            self.on_lateness(lateness)
        if self.feed.listening:
            self._publish_frame(run, send, reached, at, lateness)
        return reached

    def connected(self, client: str, endpoint: str) -> None:
        """A client connected to ``endpoint`` (a WebSocket path): the runs waiting for it
        (``wait_connect`` steps) go on. Call it for every new connection, once the
        delivery's ``clients()`` lists it, from the event loop the runs play on."""
        for waiter in list(self._connecting):
            if waiter.accepts(client, endpoint) and not waiter.future.done():
                waiter.future.set_result(Connected(client, str(endpoint), waiter.pace.now()))

    async def _wait_connect(self, run: Run, wait: WaitConnect) -> Connected | None:
        # The step starts when it is due: a connection is 'new' if it opens after that.
        stepped = await run.pace.due(wait.at)
        self._step(run, wait.scenario, wait.step)
        present = None if wait.new else self._present(wait)
        expect = _expect_connect(wait, run.pace.now())
        if present is not None:
            connected: Connected | None = Connected(present.id, str(present.endpoint), wait.at)
            self._publish_wait(run, expect)
            self._publish_waited(run, wait.step, "connect", present.id, None)
            if stepped:
                run.pace.stepped(
                    _stepped({"kind": "wait", "expects": expect}, wait, expect["since"])
                )
        else:
            connected = await self._await_connection(run, wait, expect, stepped)
        if connected is None:
            run._note("connect_timeout", client=wait.client, endpoint=wait.endpoint, step=wait.step)
            return None
        run._note("connected", client=connected.client, endpoint=connected.endpoint, step=wait.step)
        return connected

    def _present(self, wait: WaitConnect) -> Connection | None:
        """The newest connected client ``wait`` accepts, if any."""
        for client in reversed(self.delivery.clients()):
            if _Connecting.matches(wait, client.id, str(client.endpoint)):
                return client
        return None

    async def _await_connection(
        self, run: Run, wait: WaitConnect, expect: dict[str, Any], stepped: bool
    ) -> Connected | None:
        """The next connection ``wait`` accepts, or None when its timeout passes in run
        time (not scaled by the speed the run started with, as for ``wait``)."""
        waiter = _Connecting(wait, asyncio.get_running_loop().create_future(), run.pace)
        self._connecting.append(waiter)
        what = _connection_text(wait)
        run._note(
            "wait_connect", client=wait.client, endpoint=wait.endpoint, new=wait.new, step=wait.step
        )
        self._begin_wait(run, what, expect)
        if stepped:
            run.pace.stepped(_stepped({"kind": "wait", "expects": expect}, wait, expect["since"]))
        ended_by = "cancelled"
        timer = asyncio.ensure_future(run.pace.due(wait.at + wait.timeout, Gate.TIMER))
        try:
            either: list[asyncio.Future[Any]] = [waiter.future, timer]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            ended_by = "connect" if waiter.future.done() else "timeout"
        finally:
            timer.cancel()
            self._connecting.remove(waiter)
            who = waiter.future.result().client if ended_by == "connect" else None
            self._end_wait(run, what, expect, ended_by, who, None)
        if not waiter.future.done():
            waiter.future.cancel()
            return None
        return waiter.future.result()

    async def _wait(self, run: Run, wait: Wait) -> ClientFrame | None:
        # The run's mailbox has kept what it may consume since it started: an answer
        # that came before the wait (during the pause before it, or at once) is taken now.
        pace = run.pace
        stepped = await pace.due(wait.at)
        future: asyncio.Future[ClientFrame] = asyncio.get_running_loop().create_future()
        waiter = Waiter(wait.match, wait.source, future)
        expect = _expect_message(run, wait, pace.now())
        early = run.mailbox.take(waiter)
        if early is not None:
            self._step(run, wait.scenario, wait.step)
            self._publish_wait(run, expect)
            if stepped:
                pace.stepped(_stepped({"kind": "wait", "expects": expect}, wait, expect["since"]))
            run._note("received", client=early.client, frame=early.text, step=wait.step)
            self._publish_waited(run, wait.step, "frame", early.client, early.text)
            return early.taken_at(pace.now())
        who = f"client {wait.source}" if wait.source else "any client"
        what = f"{wait.match.message} from {who}"
        run._note("wait", message_type=wait.match.message, source=wait.source, step=wait.step)
        self._step(run, wait.scenario, wait.step)
        self._begin_wait(run, what, expect)
        if stepped:
            pace.stepped(_stepped({"kind": "wait", "expects": expect}, wait, expect["since"]))
        ended_by = "cancelled"
        timer = asyncio.ensure_future(pace.due(wait.at + wait.timeout, Gate.TIMER))
        try:
            either: list[asyncio.Future[Any]] = [future, timer]
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            ended_by = "frame" if future.done() else "timeout"
        finally:
            timer.cancel()
            run.mailbox.forget(waiter)
            answer = future.result() if ended_by == "frame" else None
            client, text = (answer.client, answer.text) if answer else (None, None)
            self._end_wait(run, what, expect, ended_by, client, text)
        if not future.done():
            future.cancel()
            run._note("timeout", message_type=wait.match.message, step=wait.step)
            return None
        frame = future.result()
        run._note("received", client=frame.client, frame=frame.text, step=wait.step)
        return frame.taken_at(pace.now())

    def _begin_wait(self, run: Run, what: str, expect: dict[str, Any]) -> None:
        """``run`` waits for a client now: its ``waiting`` and ``expects`` say so."""
        run._waits.append(what)
        run._expects.append(expect)
        run.waiting = "; ".join(run._waits)
        self._publish_wait(run, expect)
        self._tell(run, "run.waiting", run_id=run.id, scenario=run.scenario, waiting=run.waiting)

    def _end_wait(
        self,
        run: Run,
        what: str,
        expect: dict[str, Any],
        ended_by: str,
        client: str | None,
        frame: str | None,
    ) -> None:
        run._waits.remove(what)
        run._expects.remove(expect)
        run.waiting = "; ".join(run._waits) or None
        self._publish_waited(run, expect["step"], ended_by, client, frame)

    def _publish_wait(self, run: Run, expect: dict[str, Any]) -> None:
        self._tell(
            run,
            "run.wait",
            run_id=run.id,
            scenario=run.scenario,
            step=expect["step"],
            offset=expect["since"],
            expects=dict(expect),
        )

    def _publish_waited(
        self, run: Run, step: str, ended_by: str, client: str | None, frame: str | None
    ) -> None:
        self._tell(
            run,
            "run.waited",
            run_id=run.id,
            scenario=run.scenario,
            step=step,
            offset=round(run.pace.now(), 6),
            ended_by=ended_by,
            client=client,
            frame=frame,
        )

    async def _fork(self, run: Run, fork: Fork) -> Joined:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._drive(run, branch)) for branch in fork.branches]
        ends = [task.result() for task in tasks]
        return Joined(max([fork.at, *(end.end for end in ends)]), sum(end.actions for end in ends))

    def _hangup(self, run: Run, hangup: Hangup) -> int:
        ended = sum(
            self.delivery.hangup(endpoint, hangup.to, hangup.code, hangup.reason, hangup.abort)
            for endpoint in hangup.endpoints
        )
        run._note(
            "drop" if hangup.abort else "disconnect",
            endpoints=list(hangup.endpoints),
            to=hangup.to,
            code=hangup.code,
            clients=ended,
            step=hangup.step,
        )
        self._tell(
            run,
            "run.hangup",
            run_id=run.id,
            scenario=run.scenario,
            step=hangup.step,
            offset=round(run.pace.now(), 6),
            endpoints=list(hangup.endpoints),
            to=hangup.to,
            code=hangup.code,
            reason=hangup.reason,
            drop=hangup.abort,
            clients=ended,
        )
        return ended

    def _step(self, run: Run, scenario: str, step: str) -> None:
        run.step, run.step_scenario = step, scenario
        self._tell(
            run, "run.step", run_id=run.id, scenario=run.scenario, step=step, step_scenario=scenario
        )

    def _publish_frame(
        self, run: Run, send: Send, reached: int, at: float, lateness: float
    ) -> None:
        frame = send.frame
        self._tell(
            run,
            "frame.sent",
            run_id=run.id,
            scenario=send.scenario,
            step=send.step,
            endpoint=send.endpoint,
            to=send.to,
            clients=reached,
            binary=isinstance(frame, bytes),
            frame=frame if isinstance(frame, str) else frame.hex(),
            offset=round(send.at, 6),
            at=round(at, 6),
            lateness=round(lateness, 6),
            **self.marks,
        )

    def _cancelled_early(self, run: Run) -> None:
        # A task cancelled before it first ran never enters _play, so nothing ended the run.
        if not run.done:
            self._end(run, RunState.CANCELLED, 0.0)

    def _end(self, run: Run, state: RunState, elapsed: float, error: str | None = None) -> None:
        run.announce()  # a run that ends in its first turn: run.started (and plan) first
        run.mailbox.clear()  # what it did not read goes with it
        if self._active.pop(run.id, None) is not None:
            self._count(run, -1)
        self._finished.append(run)
        run._finish(state, elapsed, error)
        run.pace.end()  # a step waiting for an action gets "end"
        self.ended[state] += 1
        self._tell(
            run, f"run.{state.value}", run_id=run.id, scenario=run.scenario, run=run.summary()
        )


@dataclass(frozen=True)
class _Connecting:
    """A ``wait_connect`` step waiting for a connection."""

    wait: WaitConnect
    future: asyncio.Future[Connected]
    #: The waiting run's clock: when the connection came, in run time.
    pace: Pace

    def accepts(self, client: str, endpoint: str) -> bool:
        return self.matches(self.wait, client, endpoint)

    @staticmethod
    def matches(wait: WaitConnect, client: str, endpoint: str) -> bool:
        """Whether a connection of ``client`` to ``endpoint`` is one ``wait`` waits for."""
        return (wait.client is None or client == wait.client) and (
            wait.endpoint is None or str(endpoint) == wait.endpoint
        )


def _connection_text(wait: WaitConnect) -> str:
    """What a run waits for, for its ``waiting``: "a new connection from any client"."""
    who = f"client {wait.client}" if wait.client else "any client"
    where = f" to {wait.endpoint}" if wait.endpoint else ""
    return f"a {'new ' if wait.new else ''}connection from {who}{where}"


class _Located(Protocol):
    @property
    def step(self) -> str: ...

    @property
    def scenario(self) -> str: ...


def _stepped(done: dict[str, Any], action: _Located, at: float) -> dict[str, Any]:
    """What a step let happen, for its answer and ``run.stepped``."""
    return {"step": action.step, "scenario": action.scenario, "offset": round(at, 6), **done}


def _expect_message(run: Run, wait: Wait, since: float) -> dict[str, Any]:
    """What a ``wait`` accepts, for the run's ``expects`` (see the README's API)."""
    kind = wait.match.message
    protocol = run._protocol
    endpoint = None
    if is_route_key(kind):
        endpoint = "http"
    elif protocol is not None:
        endpoint = protocol.message_endpoint(kind)
    return {
        "kind": "message",
        "step": wait.step,
        "message_type": kind,
        "match": wait.match.match,
        "fields": dict(wait.match.fields or {}),
        "source": wait.source,
        "endpoint": endpoint,
        "example": _example(protocol, wait, endpoint),
        "since": round(since, 6),
        "timeout_s": wait.timeout,
    }


def _example(protocol: WireProtocol | None, wait: Wait, endpoint: str | None) -> str | None:
    """A frame text ``wait`` accepts: its type in the endpoint's envelope with an empty
    payload; None when that is not accepted (a ``match`` or ``fields`` asks for more) or
    cannot be made (an HTTP request, an endpoint without messages)."""
    if protocol is None or endpoint is None or endpoint == "http":
        return None
    declared = protocol.endpoints.get(endpoint)
    if declared is None or declared.messages is None:
        return None
    text = protocol.message_frame(endpoint, wait.match.message, "", {})
    type_field, payload_field = protocol.reader(endpoint)
    frame = ClientFrame(
        wait.source or "",
        text,
        endpoint=endpoint,
        type_field=type_field,
        payload_field=payload_field,
    )
    return text if matches(wait.match, frame) else None


def _expect_connect(wait: WaitConnect, since: float) -> dict[str, Any]:
    """What a ``wait_connect`` accepts, for the run's ``expects``."""
    return {
        "kind": "connect",
        "step": wait.step,
        "client": wait.client,
        "endpoint": wait.endpoint,
        "new": wait.new,
        "since": round(since, 6),
        "timeout_s": wait.timeout,
    }


def _bursting(run: Run, action: object, now: float) -> bool:
    """Whether ``action``, due already at ``now``, goes on in the burst open now (in the
    same turn of the event loop, written to each client with the frames before it):
    frames and what only reads or tells, while the burst is within its bounds (frames,
    copies, time) and no frame went into a client's send queue (whose writer task must
    run to send it). A frame to another endpoint ends the burst: each connection's
    frames are written together, and the order across two connections is the order of
    the writes. A run's first frame is a burst of its own: it goes out as soon as it is
    played (a trigger's first frame, before the trigger's answer)."""
    return (
        run._burst > 0
        and run.sent > 1  # the run's first frame goes out alone, at once
        and isinstance(action, Send | Due | Note)
        and not _switches(run, action)
        and run._burst < BURST_FRAMES
        and run._burst_copies < BURST_COPIES
        and now - run._burst_at < BURST_SECONDS
        and burst.open
        and not burst.queued
    )


def _end_burst(run: Run) -> None:
    """Write what the open burst holds (see replay.direct.Burst): before the run waits
    or lets the event loop run anything else."""
    run._burst = run._burst_copies = 0
    if burst.open:
        burst.flush()


def _switches(run: Run, action: object) -> bool:
    """Whether ``action`` puts a frame on another endpoint than the run's last frame."""
    return isinstance(action, Send) and run._endpoint not in (None, action.endpoint)


def _pace_text(run: Run) -> str:
    pace = run.pace
    return f"run time {pace.now():.3f}s, paused {pace.paused_s:.3f}s, speed {pace.speed:g}"


def _line(run: Run) -> str:
    """The one log line of an ended run."""
    line = (
        f"run {run.id}: {run.scenario!r} {run.state.value}: {counted(run.sent, 'frame')} to "
        f"{counted(run.clients, 'client')} "
        f"in {run.elapsed:.3f}s ({run.started_by}, speed {run.speed:g}, seed {run.seed})"
    )
    return f"{line}: {run.error}" if run.error else line


def _plan(
    name: str,
    catalog: Catalog,
    context: Context,
    limit: int,
    stop: Callable[[], bool] | None = None,
) -> Timeline | None:
    try:
        return build_timeline(name, catalog, context, limit=limit, keep=False, stop=stop)
    except ReplayError:
        # Planning assumes empty answers to waits; the real run may still play.
        return None


def _start_plan(run: Run, name: str, catalog: Catalog, context: Context) -> None:
    """Plan ``run`` for its summary: at once if the plan is short, else in the planning
    thread (planning takes about 10 µs a cue, and the loop must not wait for it). A
    cancelled run's plan is given up where it is, so the thread can go on to others."""
    plan = _plan(name, catalog, context, PLAN_INLINE_CUES)
    if plan is None or not plan.truncated:
        run._set_plan(plan)
        return
    limit = planning.limit_for(name, catalog, PLAN_CUES)

    def cancelled() -> bool:
        return run.state is RunState.CANCELLED

    later = asyncio.ensure_future(
        planning.off_loop(_plan, name, catalog, context, limit, cancelled)
    )

    def planned(future: asyncio.Future[Timeline | None]) -> None:
        failed = future.cancelled() or future.exception() is not None
        run._set_plan(None if failed else future.result())

    later.add_done_callback(planned)


def _first(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups from parallel branches."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
