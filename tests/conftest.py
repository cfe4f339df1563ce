"""Shared fixtures: a copy of the shipped scenarios, and a real uvicorn server on port 0."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
import uvicorn
from fastapi.testclient import TestClient

from replay.server import Replay, Server, Settings, create_app, uvicorn_config

SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"


class LocalClient(TestClient):
    """Starlette's TestClient, sending its requests and WebSocket handshakes to
    ``localhost``: unless told, it says ``Host: testserver``, a name a server bound to
    loopback does not answer to (see replay.hosts)."""

    def __init__(self, app: Any, **options: Any) -> None:
        options.setdefault("base_url", "http://localhost")
        super().__init__(app, **options)

    def websocket_connect(self, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().websocket_connect(urljoin("ws://localhost", url), *args, **kwargs)


@pytest.fixture
def scenarios_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped scenarios folder, free to edit."""
    folder = tmp_path / "scenarios"
    shutil.copytree(SHIPPED, folder)
    return folder


@dataclass
class LiveServer:
    url: str
    ws_url: str
    replay: Replay


def start_live_server(
    settings: Settings, port: int = 0, **options: Any
) -> tuple[LiveServer, uvicorn.Server, threading.Thread]:
    """uvicorn on 127.0.0.1 (port 0: a free one), in a thread with its own event loop;
    ``options`` go to uvicorn's config."""
    app = create_app(settings)
    config = uvicorn_config(app, "127.0.0.1", port, log_level="warning", lifespan="on", **options)
    server = Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    live = LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app.state.replay)
    return live, server, thread


@pytest.fixture
def live_server(scenarios_dir: Path) -> Iterator[LiveServer]:
    """A real replay server on a free port, serving a copy of the shipped scenarios."""
    live, server, thread = start_live_server(Settings(scenarios=scenarios_dir, isolated=True))
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)
