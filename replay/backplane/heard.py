"""A client frame heard on one node, shared with the others: a ``wait`` or a run on
another node may be waiting for it.

Each node shares the frames its clients send (those with a message type: only they can
answer a ``wait``), numbered in the order it read them (``seq``), on the channel the
start commands take. Every other node gives each to its runs as if its own client had
sent it, so every node's copy of a run takes the same answer and the same branch.
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
        )

    def frame(self) -> ClientFrame:
        """The frame as the runs of another node take it."""
        return ClientFrame(
            self.client,
            self.text,
            endpoint=self.endpoint,
            type_field=self.type_field,
            payload_field=self.payload_field,
        )

    def encode(self) -> bytes:
        return json.dumps({"kind": KIND, **asdict(self)}, separators=(",", ":")).encode()


def decode_message(message: bytes | str) -> StartCommand | HeardFrame | Message:
    """The start command, shared frame, beat, question or answer in ``message`` (see
    :mod:`replay.backplane.messages`); raises ValueError for anything else (say a message
    of another version of replay on the same channel)."""
    try:
        data = json.loads(message)
    except ValueError as error:
        raise ValueError(f"not a start command: {error!r}") from None
    if isinstance(data, dict) and data.get("kind") == KIND:
        return _frame(data)
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
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a shared frame: {error!r}") from None
