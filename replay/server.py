"""The HTTP and WebSocket server: a thin FastAPI edge over the library, runner and managers.

``create_app()`` builds the application; ``replay serve`` runs it with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import anyio
import uvicorn
from fastapi import Body, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from replay import __version__, planning
from replay.apidocs import add_api_docs
from replay.backend import Backend, made_by_request
from replay.backplane import open_backplane
from replay.backplane.events import ClusterEvents
from replay.backplane.node import Node
from replay.backplane.views import Views
from replay.bodies import BODY_TIMEOUT, BodyDeadline, PendingBodies
from replay.catalog import Catalog
from replay.client import DEFAULT_CLIENT_BYTES, DEFAULT_CLIENT_RATE, DEFAULT_QUEUE_SIZE, Client
from replay.clock import Clock
from replay.connection import WebSocketConnection
from replay.direct import TransportMiddleware
from replay.engine import declared_vars
from replay.errors import (
    BackplaneUnreachable,
    Problem,
    ReplayError,
    RunControlRefused,
    RunNotFound,
    ScenarioFolderMissing,
    ScenarioInvalid,
    ScenarioNotFound,
    StartTooLarge,
    TooManyRuns,
    VariablesInvalid,
)
from replay.feed import Feed, Subscription
from replay.freeing import free
from replay.guard import BrowserGuard, TokenGuard, WebSocketGate
from replay.hosts import host_policy
from replay.journal import MAX_ENTRIES as JOURNAL_ENTRIES
from replay.journal import Journal
from replay.library import ScenarioLibrary
from replay.loader import ScenarioFile
from replay.managers import EndpointManager, LocalDelivery, StreamManager, WebsocketManager
from replay.matching import ClientFrame, matches
from replay.metrics import CONTENT_TYPE, Metrics
from replay.origins import Cors, OriginPolicy
from replay.protocol.declaration import Protocol
from replay.protocol.file import ProtocolFile
from replay.protocol.schwarm import SCHWARM
from replay.record import api as recordings_api
from replay.record.folder import RecordingsFolder
from replay.record.live import Upstream
from replay.responses import JSONAnswer, json_bytes
from replay.runner import Run, Runner, RunState
from replay.scenario import ClientFrameMatch, Scenario
from replay.state import State
from replay.timeline import MAX_SPEED, MIN_SPEED, Timeline
from replay.trigger import TriggerBody, TriggerQuery, TriggerRoute

log = logging.getLogger("replay.server")

#: Seconds between heartbeat lines while a followed run is silent (a long sleep step).
HEARTBEAT = 10.0
#: Seconds a followed run's first line waits for the run's plan (made in a thread).
PLAN_WAIT = 2.0
#: Seconds between looks at the scenarios folder for the event feed.
WATCH_EVERY = 1.0
#: The largest request body accepted (trigger variables); larger ones get 413.
MAX_BODY_BYTES = 1024 * 1024
#: Seconds a list of reacting scenarios is used before the folder is looked at again.
REACTIONS_TTL = 0.5
#: Clients connected at once (both endpoints) unless --max-clients says otherwise.
DEFAULT_MAX_CLIENTS = 10_000

#: ``?local=true`` on the routes that show the whole cluster: this node's view only.
LocalOnly = Annotated[
    bool,
    Query(description="In a cluster (--backplane): this node only, not every node."),
]

#: Seconds a thread holds the interpreter while another waits for it, while a server
#: runs (Python's default is 5 ms). The event loop waits for it after every wait for the
#: network and every write, so while a thread reads or plans a long scenario (seconds of
#: work), a frame due meanwhile would be 5 ms late several times over (and 1 ms late
#: several times over at 1 ms). It only matters while a thread waits for the interpreter:
#: a server alone on it never switches, whatever the interval.
SWITCH_INTERVAL = 0.00025

#: Servers running in this process, and the switch interval from before the first.
_switching: list[float] = []


def _switch_sooner() -> None:
    """A server starts: the interpreter switches threads every SWITCH_INTERVAL at most."""
    if not _switching:
        _switching.append(sys.getswitchinterval())
        sys.setswitchinterval(min(_switching[0], SWITCH_INTERVAL))
    else:
        _switching.append(_switching[0])


def _switch_as_before() -> None:
    """A server stops: the last one to stop puts the switch interval back."""
    before = _switching.pop()
    if not _switching:
        sys.setswitchinterval(before)


#: The thread scenario folders are read in: one, because a library is not thread-safe
#: (and one for every server in the process, which only queues their reads).
_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-read")

#: The dashboard's files, served by replay itself.
DASHBOARD = Path(__file__).parent / "dashboard"


@dataclass
class Settings:
    """How a server is set up. Every field has the default ``replay serve`` uses."""

    scenarios: Path = Path("scenarios")
    #: The address the server listens on (``--host``): bound to a loopback address, it
    #: answers only to loopback Host names (see :mod:`replay.hosts`).
    bind: str = "127.0.0.1"
    #: Host names answered to besides the default ones (``--allow-host``); ["*"]: any.
    allowed_hosts: list[str] = field(default_factory=list)
    #: Page origins allowed to call the HTTP API from a browser besides the server's own
    #: and loopback ones (see :mod:`replay.origins`); ["*"] allows any.
    cors_origins: list[str] = field(default_factory=list)
    #: Frames a client may fall behind by before it is dropped.
    queue_size: int = DEFAULT_QUEUE_SIZE
    #: Use new managers instead of the process-wide WebsocketManager() and StreamManager().
    isolated: bool = False
    #: Scenarios played to each client as it connects to /ws (besides those whose file
    #: says ``on_connect: true``).
    on_connect: list[str] = field(default_factory=list)
    #: The token every control route needs (None: no token, anyone on the network may).
    token: str | None = None
    #: Page origins allowed to open WebSockets (empty: any); clients with no Origin pass.
    ws_origins: list[str] = field(default_factory=list)
    #: Clients connected at once, both endpoints together; more are refused with 1013.
    max_clients: int = DEFAULT_MAX_CLIENTS
    #: Frames per second a client may send; more are ignored (counted, not acted on).
    client_rate: float = DEFAULT_CLIENT_RATE
    #: Bytes per second a client may send (bursts of twice that); over it, its socket is
    #: read more slowly (or, on a server other than uvicorn, the excess is ignored).
    client_bytes: float = DEFAULT_CLIENT_BYTES
    #: Seconds a request may take to send its body; then it is answered 408.
    body_timeout: float = BODY_TIMEOUT
    #: Entries GET /journal keeps (0: no journal).
    journal_entries: int = JOURNAL_ENTRIES
    #: The real backend every WebSocket client is also connected to (``--upstream``: a
    #: ws:// or wss:// URL), scenarios' frames injected into those live sessions; None:
    #: replay is the only backend (see :mod:`replay.record.live`).
    upstream: str | None = None
    #: The folder of recordings ``GET /recordings`` lists (``--recordings``).
    recordings: Path = Path("recordings")
    #: The cluster this server is a node of (``--backplane``): ``redis://HOST:PORT/DB``,
    #: or ``memory://NAME`` (nodes in this process); None: a single process, no cluster.
    #: Triggers then play on every node (see :mod:`replay.backplane.node`).
    backplane: str | None = None
    #: Which worker of ``replay serve --workers N`` this server is (0 to N-1), said by
    #: ``GET /healthz`` and on every metric; None: not one of several workers.
    worker: int | None = None


class SpeedBody(BaseModel):
    """The optional JSON body of ``POST /runs/{id}/speed``: ``{"speed": 2}``."""

    model_config = ConfigDict(extra="forbid")

    speed: float = Field(description="From MIN_SPEED to MAX_SPEED; 1 is real time.")


class Replay:
    """Everything one server holds: its scenarios, its clients and its runs."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        if not settings.client_bytes > 0:
            # Checked here, not when the first client connects and its budget is made.
            raise ValueError(
                f"client_bytes must be more than 0 bytes a second, not {settings.client_bytes}"
            )
        self.settings = settings
        self.library = ScenarioLibrary(settings.scenarios)
        if settings.isolated:
            self.messages = WebsocketManager.isolated(settings.queue_size)
            self.stream = StreamManager.isolated(settings.queue_size)
        else:
            self.messages, self.stream = WebsocketManager(), StreamManager()
            self.messages.queue_size = self.stream.queue_size = settings.queue_size
        self.delivery = LocalDelivery(self.messages, self.stream)
        self.feed = Feed()
        self.messages.feed = self.stream.feed = self.feed
        #: The shared state routes and scenarios read and set (see replay.backend).
        self.state = State()
        self.state.listeners.append(
            lambda changes, by: self.feed.publish("state.changed", changes=dict(changes), by=by)
        )
        self.runner = Runner(self.delivery, clock, feed=self.feed, state=self.state)
        #: This server as a node of a cluster (``settings.backplane``), if it is one.
        self.node: Node | None = None
        #: The node's part of the cluster's event feed (events tagged with ``node``).
        self.cluster_events: ClusterEvents | None = None
        if settings.backplane is not None:
            backplane = open_backplane(settings.backplane)
            self.node = Node(backplane, self.runner, settings.scenarios)
            self.cluster_events = ClusterEvents(backplane, self.feed, self.node.id)
            # A change another node shared comes back with another ``by``: not shared again.
            self.node.on_state = self.state.update
            self.node.unchanged = self.library.current
            self.state.listeners.append(self._share_state)
        #: The whole cluster's runs, clients and journal, and run control on every node.
        self.views = Views(self, self.node) if self.node is not None else None
        #: Where clients are proxied to (``serve --upstream``), if anywhere.
        self.upstream = Upstream(settings.upstream) if settings.upstream else None
        if self.upstream is not None:
            self.runner.marks = {"injected": True}
        #: The recordings folder, read for GET /recordings.
        self.recordings = RecordingsFolder(settings.recordings)
        self.backend = Backend(self, settings.token)
        for manager in (self.messages, self.stream):
            self._configure(manager)
        self.delivery.on_new = self._configure
        #: The protocol the endpoints are served for (see :meth:`catalog`).
        self.protocol = SCHWARM
        self.delivery.serve(SCHWARM.paths(), _listening(SCHWARM))
        #: The protocol file as last read (None: the folder has none), to tell the feed
        #: when it changes.
        self._protocol_file: ProtocolFile | None = None
        #: WebSocket clients refused, by reason ("origin", "limit").
        self.refused: dict[str, int] = {"origin": 0, "limit": 0}
        self._reactions: list[tuple[str, ClientFrameMatch]] = []
        self._reactions_catalog: Catalog | None = None
        self._reactions_at = -REACTIONS_TTL
        self.metrics = Metrics(self)
        #: Each scenario's frames, waits and duration, made off the event loop.
        self.summaries = planning.Summaries()
        #: What each client was sent and sent back (GET /journal).
        self.journal = Journal(settings.journal_entries)
        if settings.journal_entries > 0:
            self.feed.recorders.append(self.journal.record)
        self._seen: dict[str, tuple[str, bool, tuple[Problem, ...], Any]] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    async def reset(self, disconnect: bool = False) -> dict[str, Any]:
        """``POST /reset`` on this server (see the route): how many runs were cancelled
        and forgotten, and clients disconnected."""
        cancelled = len(self.runner.active)
        await self.runner.shutdown()
        forgotten = self.runner.forget_finished()
        disconnected = 0
        if disconnect:
            disconnected = sum(self.delivery.client_counts().values())
            await asyncio.gather(
                self.messages.close_all(1012, "replay was reset"),
                self.stream.close_all(1012, "replay was reset"),
            )
        self.journal.clear()
        self.state.reset()
        return {"cancelled": cancelled, "forgotten": forgotten, "disconnected": disconnected}

    def _configure(self, manager: EndpointManager) -> None:
        """Set up an endpoint's manager: the seed's two, and each declared one."""
        settings = self.settings
        manager.queue_size = settings.queue_size
        manager.feed = self.feed
        manager.on_frame = self.client_frame
        manager.on_connect = self.client_connected
        manager.opener = self.upstream.open if self.upstream is not None else None
        manager.client_rate = settings.client_rate
        manager.client_bytes = settings.client_bytes

    async def catalog(self) -> Catalog:
        """The scenarios as they are on disk now; raises ScenarioFolderMissing.

        The folder is read in a thread of its own: parsing a large file that changed takes
        seconds, and the event loop must not wait for it. When no file changed since the
        last read (one ``stat`` per file, here), the last catalog is the answer, without
        the thread: its hand-over is most of a trigger's cost. A protocol file that changed
        changes the endpoints served from here on, and is published (``protocol.changed``)."""
        catalog = self.library.current()
        if catalog is None:
            loop = asyncio.get_running_loop()
            catalog = await loop.run_in_executor(_READER, self.library.catalog)
        if catalog.protocol is not self.protocol:
            self.protocol = catalog.protocol
            self.delivery.serve(self.protocol.paths(), _listening(self.protocol))
        if catalog.protocol_file is not self._protocol_file:
            self._protocol_file = found = catalog.protocol_file
            self.feed.publish(
                "protocol.changed",
                file=found.file if found else None,
                endpoints=list(self.protocol.endpoints),
                problems=[p.to_dict() for p in found.problems] if found else [],
            )
        self.backend.declare(catalog)
        return catalog

    def last_catalog(self) -> Catalog | None:
        """The catalog as last read (None before the first read), without reading."""
        return self.library.last

    async def refresh(self) -> Catalog | None:
        """:meth:`catalog`, or None if the folder is missing."""
        try:
            return await self.catalog()
        except ScenarioFolderMissing:
            return None

    async def watch_scenarios(self) -> None:
        """Look at the scenarios folder and publish what changed since the last look."""
        catalog = await self.refresh()
        if catalog is None:
            return
        versions = self.library.versions()
        seen = {f.name: (f.file, f.valid, f.problems, versions.get(f.name)) for f in catalog}
        before, self._seen = self._seen, seen
        if before is None or before == seen:
            return
        for name in sorted(seen.keys() | before.keys()):
            now, then = seen.get(name), before.get(name)
            if now == then:
                continue
            if now is None:
                assert then is not None
                self.feed.publish("scenario.removed", scenario=name, file=then[0])
                continue
            file, valid, problems, _ = now
            if not valid:
                found = [problem.to_dict() for problem in problems]
                self.feed.publish("scenario.invalid", scenario=name, file=file, problems=found)
            else:
                kind = "scenario.added" if then is None else "scenario.changed"
                self.feed.publish(kind, scenario=name, file=file)

    async def start(self, name: str, eager: bool = False, **options: Any) -> Run:
        """Start playing a scenario as it is on disk now (options: see Runner.start); in
        a cluster, on every node (see :meth:`replay.backplane.node.Node.trigger`).
        ``eager``: see Runner.start (alone, not in a cluster)."""
        if self.node is not None:
            return await self.node.trigger(name, await self.catalog(), **options)
        return self.runner.start(name, await self.catalog(), eager=eager, **options)

    def refuse(self, reason: str) -> None:
        """Count a WebSocket client refused (see :class:`replay.guard.WebSocketGate`)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        log.warning("a WebSocket client was refused (%s)", reason)

    def client_frame(self, client: Client, text: str) -> None:
        """A client sent a frame on an endpoint that takes messages: the runs that may
        consume it keep it (see :mod:`replay.mailbox`), else reactions play."""
        endpoint = str(client.endpoint)
        type_field, payload_field = self.protocol.reader(endpoint)
        frame = ClientFrame(
            client.id, text, endpoint=endpoint, type_field=type_field, payload_field=payload_field
        )
        runs = self.runner.keep(frame)
        self.journal.received(client.id, endpoint, text, runs)
        self.share(frame)
        if not runs:
            self.react(frame, client)

    def share(self, frame: ClientFrame) -> None:
        """In a cluster, give a client event this node's runs had to the other nodes: the
        same runs play there, waiting for this client (or request) too."""
        if self.node is not None:
            self.node.share(frame)

    def _share_state(self, changes: Mapping[str, Any], by: str) -> None:
        # Runs' ``set`` steps play on every node alike; a request's change (a route's
        # ``set``, PUT /state) happened on this node alone.
        if self.node is not None and made_by_request(by):
            self.node.share_state(changes, by)

    def react(self, frame: ClientFrame, who: Client | None = None) -> None:
        """Play the reactions a client event no run kept matches (a frame from ``who``,
        or a request to a declared route)."""
        if frame.message_type is None:
            return
        catalog = self._reacting()
        for name, match in self._reactions:
            if catalog is not None and matches(match, frame):
                if self.node is not None and self.node.backplane.subscribed:
                    # Once for the cluster: this node holds the client, it alone reacts.
                    # (Backplane down: the reaction plays here, as on a single process.)
                    self._spawn(self._react_in_cluster(who, name, catalog, frame))
                    continue
                options = {"sender": frame.client, "received": frame}
                self._start_for(who, name, catalog, "reaction", **options)

    async def _react_in_cluster(
        self, who: Client | None, name: str, catalog: Catalog, frame: ClientFrame
    ) -> None:
        assert self.node is not None
        try:
            await self.node.react(name, catalog, frame)
        except TooManyRuns as error:
            if who is not None:
                self._skipped(who, name, "reaction", error)
        except ReplayError as error:
            log.warning("client %s: cannot play %r (reaction): %s", frame.client, name, error)

    def _reacting(self) -> Catalog | None:
        # The catalog as last read, looked at again at most every REACTIONS_TTL seconds
        # (in the reading thread, while frames go on using the one known): a client
        # sending a flood of frames must not make the server read the folder each time.
        now = time.monotonic()
        if now - self._reactions_at >= REACTIONS_TTL:
            self._reactions_at = now
            self._spawn(self.refresh())
        catalog = self.library.last
        if catalog is not self._reactions_catalog:
            self._reactions_catalog = catalog
            self._reactions = [
                (f.name, f.scenario.reacts_to)
                for f in catalog or ()
                if f.valid and f.scenario is not None and f.scenario.reacts_to is not None
            ]
        return catalog

    def client_connected(self, client: Client) -> None:
        """A client connected: runs waiting for it (``wait_connect``) go on; and, on an
        endpoint that takes messages (Schwarm's /ws), the on-connect scenarios play to it
        (as soon as the folder has been looked at, in the reading thread)."""
        self.runner.connected(client.id, str(client.endpoint))
        if str(client.endpoint) in _listening(self.protocol):
            self._spawn(self._play_on_connect(client))

    async def _play_on_connect(self, client: Client) -> None:
        catalog = await self.refresh()
        if catalog is None:
            return
        declared = [f.name for f in catalog if f.valid and f.scenario and f.scenario.on_connect]
        for name in dict.fromkeys([*self.settings.on_connect, *declared]):
            self._start_for(client, name, catalog, "connect", sender=client.id, client=client.id)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        # Held until done: the loop keeps only weak references to tasks.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start_for(
        self, who: Client | None, name: str, catalog: Catalog, started_by: str, **options: Any
    ) -> None:
        try:
            self.runner.start(name, catalog, started_by=started_by, **options)
        except TooManyRuns as error:
            if who is not None:
                self._skipped(who, name, started_by, error)
            else:  # a request: no connection to count it on (GET /runs counts it)
                log.debug(
                    "client %s: %r (%s) skipped: %s", options["sender"], name, started_by, error
                )
        except ReplayError as error:
            sender = options["sender"]
            log.warning("client %s: cannot play %r (%s): %s", sender, name, started_by, error)

    @staticmethod
    def _skipped(who: Client, name: str, started_by: str, error: TooManyRuns) -> None:
        # Counted every time, logged once per connection: a client sending frame after
        # frame over its share must not write a line per frame.
        who.skipped += 1
        if who.skipped == 1:
            log.warning(
                "client %s: %r (%s) skipped: %s; more skipped runs are counted in GET "
                "/clients, not logged",
                who.id,
                name,
                started_by,
                error,
            )


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    """The replay application. ``clock`` replaces the real clock (tests)."""
    settings = settings or Settings()
    replay = Replay(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _switch_sooner()
        # anyio imports its asyncio backend when first asked (the first streamed answer,
        # such as the dashboard's event feed): tens of milliseconds, now rather than
        # while a run plays.
        anyio.get_cancelled_exc_class()
        try:
            catalog = await replay.catalog()
            broken = [f.name for f in catalog if not f.valid]
            log.info(
                "replay %s: %d scenarios in %s%s",
                __version__,
                len(catalog),
                settings.scenarios,
                f" ({len(broken)} invalid: {', '.join(broken)})" if broken else "",
            )
        except ScenarioFolderMissing as error:
            log.warning("%s", error)
        watcher = asyncio.create_task(_watch(replay), name="replay-watch-scenarios")
        if replay.node is not None:
            await replay.node.join()
        if replay.cluster_events is not None:
            replay.cluster_events.start()
        try:
            yield
            watcher.cancel()
            if replay.cluster_events is not None:
                await replay.cluster_events.close()
            if replay.views is not None:
                replay.views.asker.close()
            if replay.node is not None:
                await replay.node.close()
            await replay.runner.shutdown()
        finally:
            _switch_as_before()

    app = FastAPI(
        title="replay",
        version=__version__,
        summary="A scripted scenario replay engine for WebSocket frontends.",
        lifespan=lifespan,
        max_body_size=MAX_BODY_BYTES,
        default_response_class=JSONAnswer,
        docs_url=None,  # served offline by add_api_docs
        redoc_url=None,
    )
    add_api_docs(app, token=settings.token is not None)
    app.state.replay = replay
    _add_middleware(app, settings, replay)
    _add_error_handlers(app)

    async def trigger(
        scenario: str,
        query: Annotated[TriggerQuery, Query()],
        body: Annotated[TriggerBody | None, Body()] = None,
    ) -> JSONAnswer | StreamingResponse:
        """Play a scenario to every connected client (or to ``client``).

        The optional JSON body gives variables (``{"vars": {"user": "Ada"}}``), and may
        give ``seed`` and ``client`` instead of the query.
        """
        body = body or TriggerBody()
        run = await replay.start(
            scenario,
            speed=query.speed,
            seed=query.seed if query.seed is not None else body.seed,
            vars=body.vars,
            client=query.client or body.client,
            # The first frame goes out in the run's first turn, before its plan is made
            # (see Run.announce); nothing below misses it: the follower is registered
            # before anything awaits.
            eager=True,
        )
        if query.follow:
            # Follow now, before anything awaits: at speed 0 the run could otherwise finish
            # before the response starts streaming.
            run.announce()
            lines = _follow(run, run.summary(), run.follow(heartbeat=HEARTBEAT))
            return StreamingResponse(lines, media_type="application/x-ndjson")
        if not query.wait:
            started = {**_trigger_result(run), "status": "started", "url": f"/runs/{run.id}"}
            # The run as it started, with its plan, answered once its first frame is out
            # (as the bare websockets server answers after its broadcast): that frame
            # waits neither for the plan nor for the answer.
            await asyncio.sleep(0)
            run.announce()
            return JSONAnswer({**started, **run.planned_counts()}, 202)
        await run.wait()
        status = 500 if run.state is RunState.FAILED else 200
        return JSONAnswer(_trigger_result(run), status)

    app.router.add_api_route(
        "/trigger/{scenario}",
        trigger,
        methods=["POST"],
        response_model=None,
        route_class_override=TriggerRoute,  # a trigger with no body skips the solving
    )
    # Tried first: a trigger's path is no other route's, and it is the request whose
    # time counts (the router tries the routes in order).
    app.router.routes.insert(0, app.router.routes.pop())

    @app.get("/clients")
    async def list_clients(local: LocalOnly = False) -> dict[str, Any]:
        """Connected clients: id, endpoint, since when, frames sent and received (in a
        cluster: of every node, each with its ``node``)."""
        if replay.views is not None and not local:
            return await replay.views.clients()
        return {"clients": [client.info() for client in replay.delivery.clients()]}

    @app.get("/protocol")
    async def show_protocol() -> dict[str, Any]:
        """What the folder speaks: its endpoints (with their envelopes and clients),
        message types (with payload schemas), routes and state; and the protocol file's
        problems, if it has any."""
        catalog = await replay.catalog()
        found = catalog.protocol_file
        counts = replay.delivery.client_counts()
        info = catalog.protocol.to_dict()
        for path, endpoint in info["endpoints"].items():
            endpoint["clients"] = counts.get(path, 0)
        info["file"] = found.file if found else None
        info["problems"] = [p.to_dict() for p in found.problems] if found else []
        return info

    @app.get("/scenarios")
    async def list_scenarios() -> dict[str, Any]:
        """Every scenario file, valid or not, with its description and duration."""
        catalog = await replay.catalog()
        replay.summaries.forget(set(catalog.names))
        plans = await asyncio.gather(*(replay.summaries.of(f.name, catalog) for f in catalog))
        return {
            "scenarios": [
                _scenario_info(f, catalog, plan) for f, plan in zip(catalog, plans, strict=True)
            ]
        }

    @app.get("/scenarios/{name}", response_model=dict[str, Any])
    async def show_scenario(name: str) -> Response:
        """One scenario: its steps and its timeline (cut off after 10,000 cues or 8 MiB
        of frames: see ``truncated``), or its problems."""
        catalog = await replay.catalog()
        loaded = catalog.file(name)
        info = _scenario_info(loaded, catalog, await replay.summaries.of(name, catalog))
        if loaded.valid and loaded.scenario is not None:
            # A converted recording's part has 20,000 steps: its page is made and
            # encoded in the planning thread, as its timeline is.
            body = await planning.off_loop(_scenario_page, info, loaded.scenario, catalog)
        else:
            body = json_bytes(info)
        return Response(body, media_type="application/json")

    @app.get("/runs")
    async def list_runs(local: LocalOnly = False) -> dict[str, Any]:
        """Running runs and the latest finished ones, newest first; and ``shares``: for
        triggered runs and for runs clients started, how many play, the cap, and how many
        were refused (429 for triggers, skipped for clients). In a cluster: every node's
        runs, one entry per run with its copies' counts summed."""
        if replay.views is not None and not local:
            return await replay.views.runs()
        return {
            "runs": [run.summary() for run in replay.runner.runs()],
            "shares": replay.runner.shares(),
        }

    @app.get("/runs/{run_id}", response_model=None)
    async def show_run(run_id: str, local: LocalOnly = False) -> dict[str, Any] | JSONAnswer:
        """One run's state and counts (in a cluster: merged from every node's copy)."""
        if replay.views is not None and not local:
            return _answer(await replay.views.run(run_id))
        return replay.runner.get(run_id).summary()

    @app.delete("/runs/{run_id}", response_model=None)
    async def cancel_run(run_id: str) -> dict[str, Any] | JSONAnswer:
        """Cancel a running run; answers once it has stopped (in a cluster: on every
        node)."""
        if replay.views is not None:
            return _answer(await replay.views.control("cancel", run_id))
        run = replay.runner.get(run_id)
        if run.done:
            return JSONAnswer(
                {"detail": f"run {run_id} has already ended ({run.state})", **run.summary()}, 409
            )
        await replay.runner.cancel(run_id).wait()
        return run.summary()

    @app.post("/runs/{run_id}/pause", response_model=None)
    async def pause_run(run_id: str) -> dict[str, Any] | JSONAnswer:
        """Pause a playing run: it holds before its next action, and every later deadline
        (its waits' timeouts too) moves by the time paused. A paused run: no-op."""
        if replay.views is not None:
            return _answer(await replay.views.control("pause", run_id))
        return replay.runner.pause(run_id).summary()

    @app.post("/runs/{run_id}/resume", response_model=None)
    async def resume_run(run_id: str) -> dict[str, Any] | JSONAnswer:
        """Let a paused run go on where it stopped, as exactly timed as before."""
        if replay.views is not None:
            return _answer(await replay.views.control("resume", run_id))
        return replay.runner.resume(run_id).summary()

    @app.post("/runs/{run_id}/step", response_model=None)
    async def step_run(run_id: str) -> dict[str, Any] | JSONAnswer:
        """Pause the run (if it plays) and let exactly its next action happen now; answers
        once it has, with ``stepped``: what it was. 409 if all the run does now is wait
        for clients (answer, or resume)."""
        if replay.views is not None:
            return _answer(await replay.views.control("step", run_id))
        run, stepped = await replay.runner.step(run_id)
        return {**run.summary(), "stepped": stepped}

    @app.post("/runs/{run_id}/speed", response_model=None)
    async def set_run_speed(
        run_id: str,
        body: Annotated[SpeedBody | None, Body()] = None,
        speed: Annotated[
            float | None,
            Query(description=f"From {MIN_SPEED:g} to {MAX_SPEED:g}; 1 is real time."),
        ] = None,
    ) -> dict[str, Any] | JSONAnswer:
        """Play the rest of the run at another speed (``?speed=2`` or ``{"speed": 2}``):
        the deadlines left are rescaled from now."""
        chosen = speed if speed is not None else body.speed if body is not None else None
        if chosen is None:
            detail = 'give the new speed: POST /runs/{id}/speed?speed=2 or {"speed": 2}'
            return JSONAnswer({"detail": detail}, 422)
        if replay.views is not None:
            return _answer(await replay.views.control("speed", run_id, speed=chosen))
        try:
            run = replay.runner.set_speed(run_id, chosen)
        except ValueError as error:
            return JSONAnswer({"detail": str(error)}, 422)
        return run.summary()

    @app.post("/reset")
    async def reset(
        disconnect: Annotated[
            bool,
            Query(description="Also close every client (1012: they may reconnect)."),
        ] = False,
    ) -> dict[str, Any]:
        """Start afresh between tests: cancel every playing run (their mailboxes go with
        them), forget the finished ones and the journal, put the state's declared values
        back, and with ``disconnect`` close every client. Answers once it is done (in a
        cluster: on every node, the counts summed)."""
        if replay.views is not None:
            _, done = await replay.views.control("reset", disconnect=disconnect)
            return dict(done)
        return await replay.reset(disconnect)

    @app.get("/journal")
    async def journal(
        client: Annotated[
            str | None, Query(description="Only what this client sent, was sent, or was there for.")
        ] = None,
        run: Annotated[str | None, Query(description="Only what this run sent or kept.")] = None,
        direction: Annotated[
            str | None, Query(pattern="^(sent|received|connected|disconnected)$")
        ] = None,
        message_type: Annotated[
            str | None, Query(description="Only frames of this message type (or stream type).")
        ] = None,
        endpoint: Annotated[str | None, Query(pattern="^(/ws(/stream)?|http)$")] = None,
        limit: Annotated[int | None, Query(ge=1, description="Only the newest N.")] = None,
        local: LocalOnly = False,
    ) -> dict[str, Any]:
        """What each client was sent and sent back, oldest first, filtered (all filters
        must hold). ``forgotten`` counts entries dropped to stay within the bound. In a
        cluster: every node's entries by time, each with its ``node``."""
        if replay.views is not None and not local:
            filters = {
                "client": client,
                "run": run,
                "direction": direction,
                "message_type": message_type,
                "endpoint": endpoint,
            }
            return await replay.views.journal(filters, limit)
        entries = replay.journal.entries(
            client=client,
            run=run,
            direction=direction,
            message_type=message_type,
            endpoint=endpoint,
            limit=limit,
        )
        return {"entries": entries, "forgotten": replay.journal.forgotten}

    @app.delete("/journal")
    async def clear_journal() -> dict[str, Any]:
        """Forget the journal."""
        replay.journal.clear()
        return {"entries": []}

    @app.get("/events", response_class=StreamingResponse)
    async def events(
        kinds: Annotated[
            str,
            Query(
                description="Comma-separated event kinds or prefixes ending in '.' "
                "(e.g. 'run.,frame.sent'); empty for all."
            ),
        ] = "",
        local: Annotated[
            bool,
            Query(
                description="In a cluster: only this node's events, not the other nodes' "
                "(such a reader does not make them send theirs)."
            ),
        ] = False,
    ) -> StreamingResponse:
        """The live event feed, as Server-Sent Events (one JSON event per message)."""
        wanted = [kind.strip() for kind in kinds.split(",") if kind.strip()]
        stream = replay.feed.subscribe(wanted, heartbeat=HEARTBEAT, local=local)
        return StreamingResponse(
            _server_sent(stream),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Metrics in the Prometheus text format."""
        await replay.refresh()  # an endpoint just declared is counted from now on
        return Response(replay.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD / "index.html")

    @app.get("/viewer", include_in_schema=False)
    async def viewer() -> FileResponse:
        return FileResponse(DASHBOARD / "viewer.html")

    app.mount("/ui", StaticFiles(directory=DASHBOARD), name="ui")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, with the number of connected clients and active runs (and, on a
        cluster's node, its backplane and whether it hears triggers)."""
        health = {
            "status": "ok",
            "version": __version__,
            "clients": replay.delivery.client_counts(),
            "active_runs": len(replay.runner.active),
        }
        if replay.node is not None:
            backplane = replay.node.backplane
            events = replay.cluster_events
            health["backplane"] = {
                "url": backplane.url,
                "node": replay.node.id,
                "subscribed": backplane.subscribed,
                "frames_unshared": replay.node.unshared,
                "events_dropped": events.dropped if events is not None else 0,
                # Whether it hears the cluster, and the nodes alive (replay.backplane.presence).
                **(replay.views.health() if replay.views is not None else {}),
            }
        if settings.worker is not None:
            health["worker"] = {"index": settings.worker, "pid": os.getpid()}
        return health

    recordings_api.install(app, replay.recordings, settings.scenarios, replay.catalog)
    replay.backend.install(app)  # last: declared routes come after replay's own
    return app


def _listening(protocol: Protocol) -> set[str]:
    """The endpoints whose clients the server hears: those that take messages."""
    return {path for path, endpoint in protocol.endpoints.items() if endpoint.messages}


def _add_middleware(app: FastAPI, settings: Settings, replay: Replay) -> None:
    """The guards around the routes. Starlette runs the last added first: a request meets
    them from the bottom of this function up."""
    hosts = host_policy(settings.bind, settings.allowed_hosts, settings.token)
    origins = OriginPolicy.of(settings.cors_origins)
    pending = app.state.pending_bodies = PendingBodies()  # for Server.shutdown
    app.add_middleware(TokenGuard, token=settings.token)
    app.add_middleware(BrowserGuard, hosts=hosts, origins=origins)
    # Outside the browser guard: a page allowed to call replay can read why it was refused.
    app.add_middleware(Cors, policy=origins)
    app.add_middleware(BodyDeadline, seconds=settings.body_timeout, pending=pending)
    gate: dict[str, Any] = {
        "endpoints": replay.delivery.served,
        "origins": settings.ws_origins,
        "max_clients": settings.max_clients,
        "count": lambda: sum(replay.delivery.client_counts().values()),
        "refused": replay.refuse,
        "hosts": hosts,
    }
    # Before all of the HTTP guards: WebSocket clients go through as few frames as can be.
    app.add_middleware(WebSocketGate, **gate)
    app.add_middleware(TransportMiddleware)
    # Where replay's own WebSocket protocol (replay.connection) sends WebSocket
    # connections: straight to the gate, past FastAPI's and Starlette's layers, each of
    # which would hold a frame for the connection's life; paths the gate does not serve
    # go on to the whole application.
    app.state.websocket_app = WebSocketGate(app, **gate)


def uvicorn_config(
    app: FastAPI, host: str = "127.0.0.1", port: int = 8123, **options: Any
) -> uvicorn.Config:
    """How replay runs under uvicorn: replay's own WebSocket protocol
    (:class:`replay.connection.WebSocketConnection`: uvicorn's sans-I/O one, lighter per
    connection; :mod:`replay.direct` writes to either), and no per-message compression
    unless asked for (``ws_per_message_deflate=True``): compressing each frame once per
    client costs far more than it saves on a developer's machine. ``ws="websockets-sansio"``
    runs uvicorn's own."""
    options.setdefault("ws", WebSocketConnection)
    options.setdefault("ws_per_message_deflate", False)
    return uvicorn.Config(app, host=host, port=port, **options)


class Server(uvicorn.Server):
    """uvicorn's server, ending replay's long responses first when it stops.

    uvicorn waits for open connections to finish before it shuts the application down,
    and a dashboard's event feed or a followed run never finishes by itself: without this
    a server with a browser open would never stop.
    """

    #: Seconds a connection may take to send its request (or WebSocket handshake).
    handshake_timeout = 10.0

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        replay = getattr(getattr(self.config.app, "state", None), "replay", None)
        if isinstance(replay, Replay) and replay.node is not None and self.servers:
            # The address this node's beats give the others (GET /healthz).
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            host = f"[{host}]" if ":" in host else host  # IPv6
            replay.node.presence.url = f"http://{host}:{port}"
        self._reaper = asyncio.create_task(self._reap(), name="replay-reap-handshakes")

    async def _reap(self) -> None:
        """Close connections that never finish their request: uvicorn waits for a
        request's headers without a time limit, so a client could hold a connection (and
        a file descriptor) forever by sending nothing."""
        first_seen: dict[int, float] = {}
        while True:
            await asyncio.sleep(min(1.0, self.handshake_timeout / 2))
            now = time.monotonic()
            waiting = {}
            for connection in list(self.server_state.connections):
                # An HTTP connection with no request in progress ("cycle") is waiting
                # for one; a WebSocket connection is another class, with no "cycle".
                if getattr(connection, "cycle", ...) is None:
                    key = id(connection)
                    waiting[key] = first_seen.get(key, now)
                    if now - waiting[key] >= self.handshake_timeout:
                        connection.transport.close()
            first_seen = waiting

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        reaper = getattr(self, "_reaper", None)
        if reaper is not None:
            reaper.cancel()
        state = getattr(self.config.app, "state", None)
        pending = getattr(state, "pending_bodies", None)
        if isinstance(pending, PendingBodies):
            pending.close()  # requests still sending their body: answered now, not later
        replay = getattr(state, "replay", None)
        if isinstance(replay, Replay):
            replay.backend.close()  # requests waiting out a route's latency: answered now
            replay.feed.close()
            await replay.runner.shutdown()
            # 1001 "going away", as RFC 6455 asks of a server that stops (uvicorn says 1012).
            await asyncio.gather(
                replay.messages.close_all(1001, "server shutting down"),
                replay.stream.close_all(1001, "server shutting down"),
            )
        await super().shutdown(sockets)


async def _watch(replay: Replay) -> None:
    """Publish scenario file changes to the feed, looking once every WATCH_EVERY seconds."""
    failing = ""
    while True:
        try:
            await replay.watch_scenarios()
            if failing:
                log.info("watching the scenarios folder works again")
            failing = ""
        except Exception as error:  # a watcher that dies would silently stop the events
            # Once per kind of failure, not once a second (out of file descriptors, say).
            if repr(error) != failing:
                log.exception("watching the scenarios folder failed")
            failing = repr(error)
        await asyncio.sleep(WATCH_EVERY)


def _answer(answer: tuple[int, dict[str, Any]]) -> JSONAnswer:
    """A cluster-wide answer (see replay.backplane.views) as the route answers it."""
    status, body = answer
    return JSONAnswer(body, status)


def _trigger_result(run: Run) -> dict[str, Any]:
    status = "success" if run.state is RunState.FINISHED else run.state.value
    summary = run.summary()
    return {"status": status, **summary}


async def _server_sent(events: Subscription) -> AsyncIterator[str]:
    try:
        # A browser's EventSource reconnects on its own, one second after a drop.
        yield "retry: 1000\n\n"
        async for event in events:
            if event["event"] == "heartbeat":
                yield ": heartbeat\n\n"  # a comment: keeps proxies from closing a quiet stream
            else:
                yield f"id: {event['seq']}\ndata: {json.dumps(event)}\n\n"
    finally:
        await events.aclose()  # the reader left, maybe before the first event


async def _follow(
    run: Run, start: dict[str, Any], events: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[str]:
    if run.plan is None:
        # A long scenario's plan is made in a thread: give it a moment, so the start
        # line can say how many frames to expect (the CLI draws its progress bar from it).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.planned(), PLAN_WAIT)
        planned = run.summary()
        start = {**start, "frames": planned["frames"], "planned_s": planned["planned_s"]}
    yield json.dumps({"event": "start", **start}) + "\n"
    async for event in events:
        yield json.dumps(event) + "\n"


def _scenario_info(
    loaded: ScenarioFile, catalog: Catalog, timeline: Timeline | None
) -> dict[str, Any]:
    scenario = loaded.scenario
    info: dict[str, Any] = {
        "name": loaded.name,
        "file": loaded.file,
        "valid": loaded.valid,
        "description": scenario.description if scenario else "",
        "problems": [problem.to_dict() for problem in loaded.problems],
    }
    if loaded.valid and scenario is not None:
        info["vars"] = declared_vars(loaded.name, catalog)
        info["reacts_to"] = scenario.reacts_to.model_dump() if scenario.reacts_to else None
        info["on_connect"] = scenario.on_connect
        duration = timeline.duration if timeline is not None else None
        info["frames"] = timeline.frames if timeline is not None and duration is not None else None
        info["waits"] = timeline.waits if timeline is not None else None
        info["duration_s"] = round(duration, 6) if duration is not None else None
    return info


def _scenario_page(info: dict[str, Any], scenario: Scenario, catalog: Catalog) -> bytes:
    """A valid scenario's page as JSON: ``info``, its steps, and its timeline. Runs in
    the planning thread; every piece of the work is small (a step, a cue), so that the
    event loop gets the interpreter between them."""
    steps = [step.model_dump(mode="json", exclude_none=True) for step in scenario.steps]
    timeline = planning.shown(info["name"], catalog)
    truncated = timeline.truncated if timeline is not None else False
    cues = list(timeline.cues) if timeline is not None else []
    del timeline
    shown = [cue.to_dict() for cue in cues]
    body = json_bytes({**info, "steps": steps, "timeline": shown, "truncated": truncated})
    # Tens of thousands of objects each: freed a piece at a time, not at once on return.
    free(steps)
    free(shown)
    free(cues)
    return body


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities written as text, so that it encodes as JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _add_error_handlers(app: FastAPI) -> None:
    def answer(status: int, error: ReplayError, **extra: Any) -> JSONAnswer:
        return JSONAnswer({"detail": str(error), **extra}, status)

    async def handle(request: Request, error: Exception) -> JSONAnswer:
        match error:
            case ScenarioNotFound():
                return answer(404, error, scenario=error.name, known=list(error.known))
            case ScenarioInvalid():
                problems = [problem.to_dict() for problem in error.problems]
                return answer(422, error, scenario=error.name, problems=problems)
            case VariablesInvalid():
                return answer(
                    422,
                    error,
                    scenario=error.scenario,
                    unknown=list(error.unknown),
                    declared=list(error.declared),
                )
            case TooManyRuns():
                return answer(429, error, limit=error.limit, share=error.share)
            case RunNotFound():
                return answer(404, error, run_id=error.run_id)
            case RunControlRefused():
                return answer(409, error, run_id=error.run_id)
            case ScenarioFolderMissing():
                return answer(503, error)
            case BackplaneUnreachable():
                return answer(503, error, backplane=error.url)
            case StartTooLarge():
                return answer(413, error, scenario=error.scenario, limit=error.limit)
            case ReplayError():
                return answer(500, error)
        raise error

    app.add_exception_handler(ReplayError, handle)

    async def invalid_request(request: Request, error: Exception) -> JSONAnswer:
        # FastAPI's own handler echoes the input, which fails to encode if it holds NaN
        # or Infinity (Python's json reads them): a 500 for a bad request.
        assert isinstance(error, RequestValidationError)
        return JSONAnswer({"detail": _finite(jsonable_encoder(error.errors()))}, 422)

    app.add_exception_handler(RequestValidationError, invalid_request)
