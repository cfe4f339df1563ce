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
        return ScenarioFile(scenario_name(file), file, validated(text, self.protocol))


def serve_protocol(replay: Replay, protocol: StandInProtocol) -> StandInLibrary:
    """Make ``replay`` read its scenarios folder with ``protocol`` as its protocol file."""
    library = StandInLibrary(replay.library.folder, protocol)
    replay.library = library
    return library
