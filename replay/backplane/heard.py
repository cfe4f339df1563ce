"""What one node hears and shares with the others: its clients' frames, and the state
changes its declared routes made.

Each node shares the frames its clients send (those with a message type: only they can
answer a ``wait``) and the requests its declared HTTP routes answered (client events of
the endpoint ``http``), numbered in the order it read them (``seq``), on the channel the
start commands take. Every other node gives each to its runs as if its own client had
sent it, so every node's copy of a run takes the same answer and the same branch.

A route's ``set`` and ``PUT /state`` change the state of the node that took the request:
the change (its resolved values) is shared in the same numbered order
(:class:`HeardState`), and every other node applies it, so a route answers alike on every
node. Changes made by runs' ``set`` steps are not shared: every node plays the same steps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from replay.backplane import messages
from replay.backplane.command import StartCommand, from_data
from replay.backplane.messages import Message
from replay.matching import ClientFrame

#: What marks a shared frame among the backplane's messages.
KIND = "frame"
#: What marks a shared state change.
STATE_KIND = "state"


@dataclass(frozen=True)
class HeardFrame:
    """A frame ``client`` sent on ``endpoint`` of node ``origin``, its ``seq``-th shared."""

    origin: str
    seq: int
    client: str
    text: str
    endpoint: str = "/ws"
    type_field: str = "message_type"
    payload_field: str = "message"
    #: The event's type whatever the text says (a request's ``"METHOD /path"``), if set.
    kind: str | None = None

    @classmethod
    def of(cls, frame: ClientFrame, origin: str, seq: int) -> HeardFrame:
        """``frame`` as node ``origin`` shares it (``frame.text`` must not be None)."""
        return cls(
            origin,
            seq,
            frame.client,
            frame.text or "",
            frame.endpoint,
            frame.type_field,
            frame.payload_field,
            frame.kind,
        )

    def frame(self) -> ClientFrame:
        """The frame as the runs of another node take it."""
        return ClientFrame(
            self.client,
            self.text,
            endpoint=self.endpoint,
            type_field=self.type_field,
            payload_field=self.payload_field,
            kind=self.kind,
        )

    def encode(self) -> bytes:
        # ``kind`` names the message; the frame's own kind travels as ``kind_of``.
        fields = asdict(self)
        fields["kind_of"] = fields.pop("kind")
        return json.dumps({"kind": KIND, **fields}, separators=(",", ":")).encode()


@dataclass(frozen=True)
class HeardState:
    """State values node ``origin`` set (``by`` says how: ``"route POST /break"``,
    ``"PUT /state"``), its ``seq``-th shared message."""

    origin: str
    seq: int
    changes: dict[str, Any]
    by: str

    def encode(self) -> bytes:
        return json.dumps({"kind": STATE_KIND, **asdict(self)}, separators=(",", ":")).encode()


#: Any message a node shares in its numbered order.
Shared = HeardFrame | HeardState


def decode_message(message: bytes | str) -> StartCommand | Shared | Message:
    """The start command, shared frame, state change, beat, question or answer in
    ``message`` (see :mod:`replay.backplane.messages`); raises ValueError for anything else
    (say a message of another version of replay on the same channel)."""
    try:
        data = json.loads(message)
    except ValueError as error:
        raise ValueError(f"not a start command: {error!r}") from None
    if isinstance(data, dict) and data.get("kind") == KIND:
        return _frame(data)
    if isinstance(data, dict) and data.get("kind") == STATE_KIND:
        return _state(data)
    if isinstance(data, dict) and data.get("kind") in messages.KINDS:
        return messages.from_data(data)
    return from_data(data, len(message))


def _frame(data: dict[str, Any]) -> HeardFrame:
    try:
        return HeardFrame(
            origin=str(data["origin"]),
            seq=int(data["seq"]),
            client=str(data["client"]),
            text=str(data["text"]),
            endpoint=str(data["endpoint"]),
            type_field=str(data["type_field"]),
            payload_field=str(data["payload_field"]),
            kind=str(data["kind_of"]) if data.get("kind_of") is not None else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a shared frame: {error!r}") from None


def _state(data: dict[str, Any]) -> HeardState:
    try:
        changes = data["changes"]
        if not isinstance(changes, dict):
            raise TypeError(f"changes is {type(changes).__name__}, not an object")
        return HeardState(str(data["origin"]), int(data["seq"]), changes, str(data["by"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a shared state change: {error!r}") from None
