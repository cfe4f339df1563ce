"""The cluster's small messages besides start commands and shared frames: a node's beat
(presence), a question to every node, and a node's answer.

Each is one JSON object with ``kind`` and ``v`` (its version: a node ignores, with a
warning, a kind or version it does not know, say from a newer replay on the same
channel). All are small: an answer's ``body`` is cut to :data:`MAX_ANSWER_BYTES` by the
node answering (see :mod:`replay.backplane.views`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: The version of these messages' fields.
VERSION = 1
#: The most bytes of JSON one answer's body may take on the channel.
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class Beat:
    """Node ``node`` is alive (``bye``: it is shutting down cleanly)."""

    KIND = "beat"

    node: str
    pid: int
    host: str
    #: The address it serves (``http://HOST:PORT``), if it knows it.
    url: str | None
    #: When it started (seconds since 1970).
    started: float
    clients: int
    runs: int
    bye: bool = False

    def encode(self) -> bytes:
        return _encode(self.KIND, asdict(self))

    def data(self) -> dict[str, Any]:
        """What ``GET /healthz`` shows of it."""
        data = asdict(self)
        data.pop("bye")
        return data


@dataclass(frozen=True)
class Ask:
    """Node ``origin`` asks every node ``what`` (``clients``, ``runs``, ``run``,
    ``journal``, ``control``) with ``params``; answers name ``id``."""

    KIND = "ask"

    id: str
    origin: str
    what: str
    params: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return _encode(self.KIND, asdict(self))


@dataclass(frozen=True)
class Answer:
    """Node ``node``'s answer to question ``id`` of node ``to``: an HTTP-like ``status``
    and a JSON ``body``."""

    KIND = "answer"

    id: str
    to: str
    node: str
    status: int
    body: dict[str, Any]

    def encode(self) -> bytes:
        return _encode(self.KIND, asdict(self))


Message = Beat | Ask | Answer
KINDS = {Beat.KIND, Ask.KIND, Answer.KIND}


def _encode(kind: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"kind": kind, "v": VERSION, **data}, separators=(",", ":")).encode()


def from_data(data: dict[str, Any]) -> Message:
    """The message in ``data`` (a decoded JSON object whose ``kind`` is in KINDS); raises
    ValueError for a version or fields this replay does not know."""
    kind = data.get("kind")
    if data.get("v") != VERSION:
        raise ValueError(f"a {kind} message of version {data.get('v')!r}, not {VERSION}")
    try:
        if kind == Beat.KIND:
            url = data["url"]
            return Beat(
                node=str(data["node"]),
                pid=int(data["pid"]),
                host=str(data["host"]),
                url=str(url) if url is not None else None,
                started=float(data["started"]),
                clients=int(data["clients"]),
                runs=int(data["runs"]),
                bye=bool(data["bye"]),
            )
        if kind == Ask.KIND:
            params = data["params"]
            if not isinstance(params, dict):
                raise TypeError("params is not an object")
            return Ask(str(data["id"]), str(data["origin"]), str(data["what"]), params)
        body = data["body"]
        if not isinstance(body, dict):
            raise TypeError("body is not an object")
        return Answer(
            str(data["id"]), str(data["to"]), str(data["node"]), int(data["status"]), body
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a {kind} message: {error!r}") from None
