"""A real replay server for a test: uvicorn on a free port, in a thread with its own event
loop, set up as ``replay serve`` sets it up (``create_app``, ``Settings``,
``uvicorn_config``, ``Server``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from replay.server import Server, Settings, create_app, uvicorn_config
from replay.testing.api import REQUEST_TIMEOUT, ReplayApi, ReplayTestError
from replay.testing.client import ENDPOINTS, ReplayClient

#: What uvicorn is told unless ``uvicorn_options`` says otherwise: warnings only, the
#: test process's logging left as it is (replay's records reach pytest's log capture),
#: and a bounded wait for open connections when it stops.
UVICORN_DEFAULTS: dict[str, Any] = {
    "log_level": "warning",
    "log_config": None,
    "timeout_graceful_shutdown": 5,
}


class ReplayServer(ReplayApi):
    """A replay server playing the scenarios in ``scenarios``, for as long as the ``with``
    block lasts (or from :meth:`start` to :meth:`stop`)::

        with ReplayServer("scenarios") as server, server.client("ui-1") as client:
            server.trigger("chat", client="ui-1", speed=0, wait=False)
            client.expect("CHAT_REQUESTED")

    It listens on 127.0.0.1 and a free port (``port=0``): :attr:`url` and
    :attr:`ws_url` say where. ``token`` and ``on_connect`` are as ``replay serve``'s
    ``--token`` and ``--on-connect``, and any other field of :class:`replay.Settings`
    may be given by name (``queue_size=16``, ``bind="::1"``); ``isolated`` is true
    unless given, so that several servers can run in one process. ``uvicorn_options``
    go to uvicorn's config. ``timeout`` bounds starting, stopping and each request.

    The HTTP API's methods (:meth:`trigger`, :meth:`runs`, :meth:`cancel`, ...) come from
    :class:`ReplayApi`.
    """

    def __init__(
        self,
        scenarios: str | os.PathLike[str] = "scenarios",
        *,
        token: str | None = None,
        on_connect: Iterable[str] = (),
        port: int = 0,
        timeout: float = REQUEST_TIMEOUT,
        uvicorn_options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        known = {field.name for field in dataclasses.fields(Settings)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(
                f"ReplayServer got unknown settings {', '.join(unknown)}; replay.Settings has: "
                + ", ".join(sorted(known - {"scenarios", "token", "on_connect"}))
            )
        super().__init__("", token=token, timeout=timeout)
        self.settings = Settings(
            **{
                "isolated": True,
                **settings,
                "scenarios": Path(scenarios),
                "token": token,
                "on_connect": list(on_connect),
            }
        )
        self.port = port
        self.uvicorn_options = {**UVICORN_DEFAULTS, **(uvicorn_options or {})}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._clients: list[ReplayClient] = []
        self._lock = threading.Lock()

    # Starting and stopping -------------------------------------------------------------

    def start(self) -> ReplayServer:
        """Start serving; returns once the server accepts connections."""
        if self._thread is not None:
            raise ReplayTestError(f"the replay server at {self._url} is already started")
        folder = self.settings.scenarios
        if not folder.is_dir():
            raise ReplayTestError(f"the scenarios folder {str(folder)!r} does not exist")
        config = uvicorn_config(
            create_app(self.settings), self.settings.bind, self.port, **self.uvicorn_options
        )
        self._ready.clear()
        self._failure = None
        self._server = _Server(config, self._ready)
        self._thread = threading.Thread(target=self._serve, name="replay-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(self.timeout) or not self._server.started:
            timed_out, failure = not self._ready.is_set(), self._failure
            self.stop()
            if timed_out:
                raise ReplayTestError(f"the replay server did not start within {self.timeout:g}s")
            why = f" ({failure!r})" if failure is not None else ""
            raise ReplayTestError(f"the replay server could not start{why}: its log says why")
        bound = self._server.servers[0].sockets[0].getsockname()
        self._url = f"http://{_url_host(self.settings.bind)}:{bound[1]}"
        return self

    def _serve(self) -> None:
        assert self._server is not None
        try:
            asyncio.run(self._server.serve())
        except BaseException as failure:  # uvicorn exits (SystemExit) when it cannot bind
            self._failure = failure
        finally:
            self._ready.set()

    def stop(self) -> None:
        """Close the clients made with :meth:`client` and stop the server (it cancels its
        runs and closes its connections with 1001). Waits at most twice ``timeout``;
        warns if the server's thread is still alive then."""
        self._close_clients()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self._url = ""
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(self.timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(self.timeout)
        if thread.is_alive():
            warnings.warn(
                f"the replay server's thread did not end within {2 * self.timeout:g}s",
                RuntimeWarning,
                stacklevel=2,
            )

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if not self._url:
            raise ReplayTestError(
                "the replay server is not started: use it in a with block, or call start()"
            )
        return self._url

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT``: a frontend connects to ``ws_url + "/ws"`` and
        ``ws_url + "/ws/stream"``."""
        return "ws://" + self.url.removeprefix("http://")

    # Clients and resetting -------------------------------------------------------------

    def client(
        self,
        client_id: str | None = None,
        *,
        endpoints: Iterable[str] = ENDPOINTS,
        **options: Any,
    ) -> ReplayClient:
        """A :class:`ReplayClient` connected to this server, returned once the server
        lists it (so a trigger sent next reaches it); closed by :meth:`reset` and
        :meth:`stop`. ``options`` go to :class:`ReplayClient`."""
        options.setdefault("timeout", self.timeout)
        client = ReplayClient(self.ws_url, client_id, endpoints=endpoints, **options)
        with self._lock:
            self._clients.append(client)

        def listed(have: Counter[tuple[str, str]]) -> bool:
            # As many connections with this id as this server's open clients have (an
            # older client with the same id counts; one the server has let go does not).
            with self._lock:
                mine = Counter(
                    (endpoint, made.id)
                    for made in self._clients
                    if made.id == client.id
                    for endpoint in made.open_endpoints
                )
            return all(have[key] >= count for key, count in mine.items())

        if not self._until(listed):
            client.close()
            raise ReplayTestError(
                f"the server did not list client {client.id} within {self.timeout:g}s"
            )
        return client

    def reset(self) -> list[dict[str, Any]]:
        """Make the server as a new test expects it: close the clients made with
        :meth:`client` (and wait until the server has let them go, so that a client of
        the next test with the same id is not mistaken for them), then cancel every run
        still playing. Returns the runs it cancelled."""
        with self._lock:
            clients, self._clients = self._clients, []
        if clients:
            closing = Counter(
                (endpoint, client.id) for client in clients for endpoint in client.open_endpoints
            )
            before = self._connections()
            for client in clients:
                client.close()
            left = {key: max(0, before[key] - count) for key, count in closing.items()}
            # Best effort: if the server is slow to notice, the next test's client waits.
            self._until(lambda have: all(have[key] <= count for key, count in left.items()))
        return self.cancel_all()

    def _close_clients(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def _connections(self) -> Counter[tuple[str, str]]:
        """How many connections the server lists per (endpoint, client id)."""
        return Counter((c["endpoint"], c["client_id"]) for c in self.clients())

    def _until(self, done: Callable[[Counter[tuple[str, str]]], bool]) -> bool:
        """Ask the server for its clients until ``done`` says they are as wanted; whether
        they were within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        pause = 0.002
        while not done(self._connections()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.05)
        return True

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"<ReplayServer {self.settings.scenarios} at {where}>"


class _Server(Server):
    """replay's uvicorn server, saying when it has started (or failed to)."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._started_event = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self._started_event.set()


def _url_host(bind: str) -> str:
    """The host part of a URL that reaches a server bound to ``bind``."""
    if bind in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind == "::":
        return "[::1]"
    return f"[{bind}]" if ":" in bind else bind
