"""Reading a protocol file (``_protocol.yaml``) into a :class:`Protocol`, with located problems.

Like the scenario loader, this does no I/O and never raises for bad content: a file with
problems still gives the protocol of its valid parts (a broken message type is left out,
the others count), and every problem says file:line:column, the field, what was expected
and what was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from replay import templates
from replay.errors import Problem, in_file_order
from replay.loader import (
    ScenarioFile,
    describe,
    explain,
    read_document,
    received_fields,
    unexpected,
)
from replay.protocol.declaration import (
    ChunkEnvelope,
    EndpointDeclaration,
    MessageEnvelope,
    MessageTypeDeclaration,
    Protocol,
    ProtocolDeclaration,
    check_path,
    resolve,
)
from replay.protocol.payloads import schema_problems
from replay.protocol.schwarm import SCHWARM
from replay.routes import Route

Path = tuple[str | int, ...]

EXPECTED = "a mapping with endpoints, message_types, routes or state"


@dataclass(frozen=True)
class ProtocolFile:
    """A protocol file after loading: the protocol it declares (its valid parts, on top
    of what it extends) and the problems found."""

    file: str
    protocol: Protocol
    problems: tuple[Problem, ...] = ()

    @property
    def declared(self) -> int:
        """How many message types the file declares (for ``replay validate``)."""
        return len(self.protocol.message_types) - (
            len(SCHWARM.message_types) if self.protocol.extends == "schwarm" else 0
        )


def parse_protocol(source: bytes | str, file: str, base: Protocol = SCHWARM) -> ProtocolFile:
    """Load a protocol file's content; never raises for bad content (see ``problems``)."""
    try:
        return _parse(source, file, base)
    except Exception as error:
        return ProtocolFile(file, base, (unexpected(file, error),))


def _parse(source: bytes | str, file: str, base: Protocol) -> ProtocolFile:
    data, here = read_document(source, file)
    problems = list(here.problems)
    if data is None:
        if problems:
            return ProtocolFile(file, base, tuple(problems))
        data = {}
    if not isinstance(data, Mapping):
        problems.append(here.problem((), "wrong type", EXPECTED, describe(data)))
        return ProtocolFile(file, base, tuple(problems))
    data = {key: value for key, value in data.items() if not str(key).startswith("x-")}
    data = _checked_paths(data, here, problems)
    declaration = _validate(data, here, problems)
    protocol, findings = resolve(declaration, base)
    for path, message, expected, found in findings:
        problems.append(here.problem(path, message, expected, found))
    problems.extend(_schema_problems(declaration, here))
    problems.extend(_template_problems(declaration, here))
    return ProtocolFile(file, protocol, in_file_order(problems))


def _validate(
    data: dict[str, Any], here: ScenarioFile, problems: list[Problem]
) -> ProtocolDeclaration:
    """The declaration of ``data``'s valid parts: entries with problems are reported and
    dropped until what is left validates."""
    for _ in range(100):
        try:
            return ProtocolDeclaration.model_validate(data)
        except ValidationError as error:
            problems.extend(explain(here, error, data, _allowed_fields))
            data = _without_errors(data, error)
    return ProtocolDeclaration()


def _without_errors(data: dict[str, Any], error: ValidationError) -> dict[str, Any]:
    """``data`` without the entries (a route, a message type, an endpoint, a top-level
    field) where ``error`` found problems."""
    result = dict(data)
    for detail in error.errors(include_url=False):
        loc = detail["loc"]
        top = loc[0] if loc else None
        if top in ("endpoints", "message_types") and len(loc) >= 2:
            entries = dict(result.get(str(top)) or {})
            entries.pop(str(loc[1]), None)
            result[str(top)] = entries
        elif top == "routes" and len(loc) >= 2 and isinstance(loc[1], int):
            routes = list(result.get("routes") or [])
            if loc[1] < len(routes):
                routes[loc[1]] = None
            result["routes"] = routes
        elif top is not None:
            result.pop(str(top), None)
        else:
            return {}
    if isinstance(result.get("routes"), list):
        result["routes"] = [route for route in result["routes"] if route is not None]
    return result


_FIELDS: dict[tuple[str, ...], list[str]] = {
    (): list(ProtocolDeclaration.model_fields),
    ("endpoints",): list(EndpointDeclaration.model_fields),
    ("endpoints", "messages"): list(MessageEnvelope.model_fields),
    ("endpoints", "chunks"): list(ChunkEnvelope.model_fields),
    ("message_types",): [
        "schema" if n == "schema_" else n for n in MessageTypeDeclaration.model_fields
    ],
    ("routes",): list(Route.model_fields),
}


def _allowed_fields(path: Path, data: Any) -> list[str]:
    # The shape of the path without its keys: endpoints./ws.messages.x -> endpoints.messages.
    shape = tuple(str(part) for index, part in enumerate(path[:-1]) if index != 1)
    return _FIELDS.get(shape, [])


def _checked_paths(
    data: dict[str, Any], here: ScenarioFile, problems: list[Problem]
) -> dict[str, Any]:
    """``data`` without the endpoints whose path is not one (each reported)."""
    endpoints = data.get("endpoints")
    if not isinstance(endpoints, Mapping):
        return data
    kept = {}
    for path, endpoint in endpoints.items():
        try:
            check_path(path)
        except PydanticCustomError as error:
            context = error.context or {}
            problems.append(
                here.problem(
                    ("endpoints", path),
                    error.message(),
                    str(context.get("expected", "")),
                    str(context.get("found", "")),
                )
            )
        else:
            kept[path] = endpoint
    return {**data, "endpoints": kept}


def _schema_problems(declaration: ProtocolDeclaration, here: ScenarioFile) -> list[Problem]:
    problems = []
    for name, kind in declaration.message_types.items():
        if kind.schema_ is not None:
            for path, message in schema_problems(kind.schema_):
                problems.append(here.problem(("message_types", name, "schema", *path), message))
    return problems


def _template_problems(declaration: ProtocolDeclaration, here: ScenarioFile) -> list[Problem]:
    """Envelope fields may be templates: check them as a scenario's are (any variable
    may be named: which ones a run has depends on the scenario, and a run without it
    fails saying so)."""
    problems = []
    received = {"received": received_fields(declaration.endpoints)}
    for path, endpoint in declaration.endpoints.items():
        for kind, envelope in (("messages", endpoint.messages), ("chunks", endpoint.chunks)):
            for name, value in (envelope.fields if envelope else {}).items():
                if isinstance(value, str) and templates.is_template(value):
                    for message in templates.check(
                        value, None, fields=received, state=declaration.state
                    ):
                        at = ("endpoints", path, kind, "fields", name)
                        problems.append(here.problem(at, message))
    return problems
