"""Stand-ins for a parsed protocol file with routes and state, for tests.

The protocol file's parser (``_protocol.yaml`` -> ``catalog.protocol``) is being rewritten
to read ``routes:`` and ``state:``; until it does, tests give a server its routes and
state through :class:`StandInLibrary`, which reads a scenarios folder as the real library
does but reports :class:`StandInProtocol` as its protocol, and validates scenarios with
it in their validation context (``{"protocol": ..., "message_types": ...}``), as the
rewritten loader will.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from replay.library import ScenarioLibrary, read_source, shown
from replay.loader import ProtocolFile, ScenarioFile, parse_scenario, scenario_name
from replay.protocol import MESSAGE_TYPES
from replay.routes import Route
from replay.scenario import Scenario
from replay.server import Replay


@dataclass(frozen=True)
class StandInProtocol:
    """What ``catalog.protocol`` will be: routes, the declared state, message types."""

    routes: tuple[Route, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    message_types: Mapping[str, str] = field(default_factory=lambda: dict(MESSAGE_TYPES))


def route(**fields: Any) -> Route:
    """A route from the fields a protocol file gives (``set`` included)."""
    return Route.model_validate(fields)


def validated(text: str, protocol: Any) -> Scenario:
    """A scenario validated with ``protocol`` in its context, as the loader will."""
    context = {"protocol": protocol, "message_types": getattr(protocol, "message_types", {})}
    return Scenario.model_validate(yaml.safe_load(text), context=context)


class StandInLibrary(ScenarioLibrary):
    """A scenarios folder whose protocol is :attr:`protocol` (set it to change it: the
    next read takes the new one, as an edited protocol file would be)."""

    def __init__(self, folder: Path, protocol: StandInProtocol) -> None:
        super().__init__(folder)
        self.protocol = protocol
        self._taken: StandInProtocol | None = None

    def _read_protocol(self) -> tuple[ProtocolFile | None, bool]:
        changed = self.protocol is not self._taken
        self._taken = self.protocol
        return self.protocol, changed  # type: ignore[return-value]

    def _load(self, path: Path) -> ScenarioFile:
        source = read_source(path, self.folder)
        if isinstance(source, ScenarioFile):
            return source
        file = shown(path)
        loaded = parse_scenario(source, file, self.protocol.message_types)
        if loaded.valid:
            return loaded
        # Only what waits for or reacts to a declared route needs the protocol: files
        # that do are validated here with it (their problems are not located).
        text = source.decode() if isinstance(source, bytes) else source
        try:
            return ScenarioFile(scenario_name(file), file, validated(text, self.protocol))
        except ValidationError:
            return loaded


def serve_protocol(replay: Replay, protocol: StandInProtocol) -> StandInLibrary:
    """Make ``replay`` read its scenarios folder with ``protocol`` as its protocol file."""
    library = StandInLibrary(replay.library.folder, protocol)
    replay.library = library
    return library


#: Schwarm's HTTP control routes (P1-P3), as a project would declare them.
SCHWARM = StandInProtocol(
    routes=(
        route(path="/break", body="{{ state.paused }}", description="Whether the run is paused."),
        route(
            method="POST",
            path="/break",
            set={"paused": "{{ not state.paused }}"},
            body="{{ state.paused }}",
        ),
        route(path="/chat", body="{{ state.paused and state.waiting }}"),
        route(
            method="POST",
            path="/chat",
            set={
                "paused": "{{ not state.paused }}",
                "chat_input": "{{ request.query.user_input }}",
            },
            body="{{ request.query.user_input }}",
        ),
        route(path="/breakpoint/turns", body="{{ state.turns }}"),
        route(path="/spans/{id}", body={"id": "{{ request.params.id }}", "status_code": "OK"}),
        route(method="PUT", path="/echo/{what:path}", status=201, body="{{ request }}"),
        route(path="/broken", body="{{ request.json.missing }}"),
        route(method="POST", path="/healthz", body="a route of the project's"),
        route(path="/slow", latency="5s", body="late"),
    ),
    state={"paused": True, "waiting": False, "chat_input": "", "turns": 1},
)

CHAT = """
description: Asks for chat input over HTTP, and answers it.
steps:
  - message: CHAT_REQUESTED
    text: What should I do?
  - wait: POST /chat
    fields: {query.user_input: "\\\\S"}
    timeout: 30s
  - message: CHAT
    text: "You said: {{ received.frame.query.user_input }} ({{ received.client }})"
"""
