"""The HTTP and WebSocket server: a thin FastAPI edge over the library, runner and managers.

``create_app()`` builds the application; ``replay serve`` runs it with uvicorn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, StreamingResponse

from replay import __version__
from replay.catalog import Catalog
from replay.client import DEFAULT_QUEUE_SIZE, TransportMiddleware
from replay.clock import Clock
from replay.errors import (
    ReplayError,
    RunNotFound,
    ScenarioFolderMissing,
    ScenarioInvalid,
    ScenarioNotFound,
)
from replay.library import ScenarioLibrary
from replay.loader import ScenarioFile
from replay.managers import LocalDelivery, StreamManager, WebsocketManager
from replay.runner import Run, Runner, RunState
from replay.timeline import MAX_SPEED, build_timeline

log = logging.getLogger("replay.server")

#: Seconds between heartbeat lines while a followed run is silent (a long sleep step).
HEARTBEAT = 10.0


@dataclass
class Settings:
    """How a server is set up. Every field has the default ``replay serve`` uses."""

    scenarios: Path = Path("scenarios")
    #: Origins allowed to call the HTTP API from a browser; ["*"] allows any.
    cors_origins: list[str] = field(default_factory=lambda: ["*"])
    #: Frames a client may fall behind by before it is dropped.
    queue_size: int = DEFAULT_QUEUE_SIZE
    #: Use new managers instead of the process-wide WebsocketManager() and StreamManager().
    isolated: bool = False


class Replay:
    """Everything one server holds: its scenarios, its clients and its runs."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.library = ScenarioLibrary(settings.scenarios)
        if settings.isolated:
            self.messages = WebsocketManager.isolated(settings.queue_size)
            self.stream = StreamManager.isolated(settings.queue_size)
        else:
            self.messages, self.stream = WebsocketManager(), StreamManager()
            self.messages.queue_size = self.stream.queue_size = settings.queue_size
        self.delivery = LocalDelivery(self.messages, self.stream)
        self.runner = Runner(self.delivery, clock)

    def start(self, name: str, speed: float) -> Run:
        """Start playing a scenario as it is on disk now."""
        return self.runner.start(build_timeline(name, self.library.catalog()), speed)


def create_app(settings: Settings | None = None, clock: Clock | None = None) -> FastAPI:
    """The replay application. ``clock`` replaces the real clock (tests)."""
    settings = settings or Settings()
    replay = Replay(settings, clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            catalog = replay.library.catalog()
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
        yield
        await replay.runner.shutdown()

    app = FastAPI(
        title="replay",
        version=__version__,
        summary="A scripted scenario replay engine for WebSocket frontends.",
        lifespan=lifespan,
    )
    app.state.replay = replay
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )
    app.add_middleware(TransportMiddleware)
    _add_error_handlers(app)

    @app.websocket("/ws")
    async def messages_endpoint(websocket: WebSocket) -> None:
        """Typed messages: {"message_type": "...", "message": "..."}."""
        await replay.messages.serve(websocket)

    @app.websocket("/ws/stream")
    async def stream_endpoint(websocket: WebSocket) -> None:
        """Streamed chunks: {"type": "default"|"tool", "content": "..."}, then the close signal."""
        await replay.stream.serve(websocket)

    @app.post("/trigger/{scenario}", response_model=None)
    async def trigger(
        scenario: str,
        wait: Annotated[bool, Query(description="Answer when the run has ended.")] = True,
        follow: Annotated[
            bool, Query(description="Stream the run's events as JSON lines as they happen.")
        ] = False,
        speed: Annotated[
            float, Query(ge=0, le=MAX_SPEED, description="2 = twice as fast; 0 = no pauses.")
        ] = 1.0,
    ) -> JSONResponse | StreamingResponse:
        """Play a scenario to every connected client."""
        run = replay.start(scenario, speed)
        if follow:
            # Follow now, before anything awaits: at speed 0 the run could otherwise finish
            # before the response starts streaming.
            lines = _follow(run.summary(), run.follow(heartbeat=HEARTBEAT))
            return StreamingResponse(lines, media_type="application/x-ndjson")
        if not wait:
            return JSONResponse(
                {**_trigger_result(run), "status": "started", "url": f"/runs/{run.id}"}, 202
            )
        await run.wait()
        status = 500 if run.state is RunState.FAILED else 200
        return JSONResponse(_trigger_result(run), status)

    @app.get("/scenarios")
    async def list_scenarios() -> dict[str, Any]:
        """Every scenario file, valid or not, with its description and duration."""
        catalog = replay.library.catalog()
        return {"scenarios": [_scenario_info(f, catalog) for f in catalog]}

    @app.get("/scenarios/{name}")
    async def show_scenario(name: str) -> dict[str, Any]:
        """One scenario: its steps and its timeline, or its problems."""
        catalog = replay.library.catalog()
        loaded = catalog.file(name)
        info = _scenario_info(loaded, catalog)
        if loaded.valid and loaded.scenario is not None:
            info["steps"] = loaded.scenario.model_dump(exclude_none=True)["steps"]
            info["timeline"] = [
                {"offset": round(cue.offset, 6), "endpoint": cue.endpoint.value, "frame": cue.frame}
                for cue in build_timeline(name, catalog)
            ]
        return info

    @app.get("/runs")
    async def list_runs() -> dict[str, Any]:
        """Running runs and the latest finished ones, newest first."""
        return {"runs": [run.summary() for run in replay.runner.runs()]}

    @app.get("/runs/{run_id}")
    async def show_run(run_id: str) -> dict[str, Any]:
        """One run's state and counts."""
        return replay.runner.get(run_id).summary()

    @app.delete("/runs/{run_id}", response_model=None)
    async def cancel_run(run_id: str) -> dict[str, Any] | JSONResponse:
        """Cancel a running run; answers once it has stopped."""
        run = replay.runner.get(run_id)
        if run.done:
            return JSONResponse(
                {"detail": f"run {run_id} has already ended ({run.state})", **run.summary()}, 409
            )
        await replay.runner.cancel(run_id).wait()
        return run.summary()

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness, with the number of connected clients and active runs."""
        return {
            "status": "ok",
            "version": __version__,
            "clients": replay.delivery.client_counts(),
            "active_runs": len(replay.runner.active),
        }

    return app


def _trigger_result(run: Run) -> dict[str, Any]:
    status = "success" if run.state is RunState.FINISHED else run.state.value
    summary = run.summary()
    return {"status": status, **summary}


async def _follow(
    start: dict[str, Any], events: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[str]:
    yield json.dumps({"event": "start", **start}) + "\n"
    async for event in events:
        yield json.dumps(event) + "\n"


def _scenario_info(loaded: ScenarioFile, catalog: Catalog) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": loaded.name,
        "file": loaded.file,
        "valid": loaded.valid,
        "description": loaded.scenario.description if loaded.scenario else "",
        "problems": [problem.to_dict() for problem in loaded.problems],
    }
    if loaded.valid:
        timeline = build_timeline(loaded.name, catalog)
        info["frames"] = len(timeline)
        info["duration_s"] = round(timeline.duration, 6)
    return info


def _add_error_handlers(app: FastAPI) -> None:
    def answer(status: int, error: ReplayError, **extra: Any) -> JSONResponse:
        return JSONResponse({"detail": str(error), **extra}, status)

    async def handle(request: Request, error: Exception) -> JSONResponse:
        match error:
            case ScenarioNotFound():
                return answer(404, error, scenario=error.name, known=list(error.known))
            case ScenarioInvalid():
                problems = [problem.to_dict() for problem in error.problems]
                return answer(422, error, scenario=error.name, problems=problems)
            case RunNotFound():
                return answer(404, error, run_id=error.run_id)
            case ScenarioFolderMissing():
                return answer(503, error)
            case ReplayError():
                return answer(500, error)
        raise error

    app.add_exception_handler(ReplayError, handle)
