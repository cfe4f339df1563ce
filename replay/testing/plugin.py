"""The pytest plugin: fixtures that play scenarios against the code under test.

pytest loads it by itself once replay is installed (the ``pytest11`` entry point
``replay``; ``-p no:replay`` turns it off). It starts nothing until a test asks for one
of its fixtures:

- ``replay_scenarios`` (session): the scenarios folder: ``--replay-scenarios DIR``, else
  the ini option ``replay_scenarios`` (relative to the ini file), else ``scenarios`` in
  pytest's rootdir. Override it in a conftest.py (session scope) to choose another.
- ``replay_server_options`` (session): more arguments for :class:`ReplayServer`
  (``token``, ``on_connect``, Settings fields), ``{}`` by default; override to change.
- ``replay_session_server`` (session): one server for the whole session, started when a
  test first needs it.
- ``replay_server`` (function): that server, reset after each test: the test's clients
  closed, every run still playing cancelled, so a test that fails mid-conversation
  leaves nothing behind for the next one.
- ``replay_client`` (function): ``replay_client(client_id=None, **options)`` connects a
  :class:`ReplayClient` (a unique id if None), closed after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from replay.testing.client import ReplayClient
from replay.testing.server import ReplayServer

INI = "replay_scenarios"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replay", "replay (scenario replay server for frontend tests)")
    group.addoption(
        "--replay-scenarios",
        dest=INI,
        metavar="DIR",
        default=None,
        help="the scenarios folder replay_server plays (default: the ini option "
        "replay_scenarios, else 'scenarios' in the rootdir)",
    )
    parser.addini(
        INI, "the scenarios folder replay_server plays, relative to the ini file", default=""
    )


@pytest.fixture(scope="session")
def replay_scenarios(pytestconfig: pytest.Config) -> Path:
    """The scenarios folder the session's replay server plays."""
    option = pytestconfig.getoption(INI)
    if option:
        return (pytestconfig.invocation_params.dir / str(option)).resolve()
    ini = pytestconfig.getini(INI)
    if ini:
        base = pytestconfig.inipath.parent if pytestconfig.inipath else pytestconfig.rootpath
        return (base / str(ini)).resolve()
    return pytestconfig.rootpath / "scenarios"


@pytest.fixture(scope="session")
def replay_server_options() -> dict[str, Any]:
    """More keyword arguments for the session's :class:`ReplayServer`."""
    return {}


@pytest.fixture(scope="session")
def replay_session_server(
    replay_scenarios: Path, replay_server_options: dict[str, Any]
) -> Iterator[ReplayServer]:
    """One replay server for the whole session (not reset between tests)."""
    if not Path(replay_scenarios).is_dir():
        pytest.fail(
            f"replay: the scenarios folder {str(replay_scenarios)!r} does not exist: create "
            "it, pass --replay-scenarios DIR, set replay_scenarios in the ini file, or "
            "override the replay_scenarios fixture",
            pytrace=False,
        )
    with ReplayServer(replay_scenarios, **replay_server_options) as server:
        yield server


@pytest.fixture
def replay_server(replay_session_server: ReplayServer) -> Iterator[ReplayServer]:
    """The session's replay server; after the test, its clients are closed and every run
    still playing is cancelled."""
    yield replay_session_server
    replay_session_server.reset()


@pytest.fixture
def replay_client(replay_server: ReplayServer) -> Iterator[Callable[..., ReplayClient]]:
    """``replay_client(client_id=None, **options)``: a client connected to ``/ws`` and
    ``/ws/stream`` of ``replay_server``, closed after the test."""
    made: list[ReplayClient] = []

    def connect(client_id: str | None = None, **options: Any) -> ReplayClient:
        client = replay_server.client(client_id, **options)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()
