"""The start command: everything a node needs to play a triggered run as the node that
took the trigger would, encoded as one JSON message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: The most bytes of scenario and protocol source one start command may carry; a trigger
#: whose scenario (with the scenarios it plays) is larger is refused (413).
MAX_START_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class SourceFile:
    """A file a run plays, as read when it was triggered: the path shown in errors, and
    its bytes (as text: undecodable bytes are kept as surrogates, see :func:`text_of`)."""

    file: str
    text: str


@dataclass(frozen=True)
class StartCommand:
    """Play ``scenario`` from ``start_at`` (wall-clock epoch seconds) with these options.

    ``files`` are the sources of the scenario and of every scenario it plays, by name;
    ``protocol`` the protocol file's, if the folder has one. Every node plays these, not
    its own folder's, so all play the same version."""

    run_id: str
    scenario: str
    files: Mapping[str, SourceFile]
    protocol: SourceFile | None
    vars: Mapping[str, Any]
    seed: int
    speed: float
    client: str | None
    started_by: str
    start_at: float
    #: The node that took the trigger.
    origin: str
    #: For a reaction: the client whose frame started it, and that frame (its fields as
    #: :class:`replay.matching.ClientFrame` has them), for ``to: sender`` and templates.
    sender: str | None = None
    received: Mapping[str, Any] | None = None
    size: int = field(default=0, compare=False)

    def encode(self) -> bytes:
        data = asdict(self)
        data.pop("size")
        return json.dumps(data, separators=(",", ":")).encode()


def text_of(source: bytes) -> str:
    """A file's bytes as JSON-safe text, kept exactly (see :func:`bytes_of`)."""
    return source.decode("utf-8", "surrogateescape")


def bytes_of(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def decode(message: bytes | str) -> StartCommand:
    """The command in ``message``; raises ValueError for anything else (say a message of
    another version of replay on the same channel)."""
    try:
        data = json.loads(message)
    except ValueError as error:
        raise ValueError(f"not a start command: {error!r}") from None
    return from_data(data, len(message))


def from_data(data: Any, size: int) -> StartCommand:
    """The command in a decoded message (see :func:`decode`)."""
    try:
        files = {str(k): _source(v) for k, v in data["files"].items()}
        protocol = _source(data["protocol"]) if data["protocol"] is not None else None
        client = data["client"]
        command = StartCommand(
            run_id=str(data["run_id"]),
            scenario=str(data["scenario"]),
            files=files,
            protocol=protocol,
            vars=dict(data["vars"]),
            seed=int(data["seed"]),
            speed=float(data["speed"]),
            client=str(client) if client is not None else None,
            started_by=str(data["started_by"]),
            start_at=float(data["start_at"]),
            origin=str(data["origin"]),
            sender=_optional(data.get("sender")),
            received=_received(data.get("received")),
            size=size,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise ValueError(f"not a start command: {error!r}") from None
    if command.scenario not in command.files:
        raise ValueError(f"not a start command: no source for {command.scenario!r}")
    return command


def _source(value: Any) -> SourceFile:
    return SourceFile(str(value["file"]), str(value["text"]))


def _optional(value: Any) -> str | None:
    return str(value) if value is not None else None


def _received(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return {
        "client": str(value["client"]),
        "text": _optional(value["text"]),
        "endpoint": str(value["endpoint"]),
        "type_field": str(value["type_field"]),
        "payload_field": str(value["payload_field"]),
        "kind": _optional(value["kind"]),
    }
