"""The wire protocol Schwarm's dashboard speaks, byte for byte.

Frames are JSON text encoded the way Starlette's ``send_json`` and pydantic's
``model_dump_json`` encode them (no spaces after separators, UTF-8 kept as is), which is
what the original test server put on the wire. Each frame is encoded once, here, and the
same string is handed to every client.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any


class Endpoint(StrEnum):
    """The two WebSocket endpoints a Schwarm frontend listens on."""

    MESSAGES = "/ws"
    STREAM = "/ws/stream"


class StreamType(StrEnum):
    """The ``type`` of a frame on ``/ws/stream``."""

    DEFAULT = "default"
    TOOL = "tool"
    CLOSE = "close"


#: Message types known out of the box, with what they mean to a Schwarm frontend.
MESSAGE_TYPES: dict[str, str] = {
    "CHAT_REQUESTED": "the backend asks the user for chat input",
    "IS_WAITING": "the backend waits for the user",
    "CHAT_INPUT": "chat input from the user (usually sent by the client)",
    "EVENT": "an agent event; the message is a JSON span",
    "PAUSE_STATUS": "the backend's pause state changed",
    "PAUSE_REQUEST": "the user asks to pause (usually sent by the client)",
    "CHAT": "a chat message (Schwarm's later protocol)",
    "BREAK": "the agent stopped at a breakpoint (Schwarm's later protocol)",
    "ERROR": "an error report (Schwarm's later protocol)",
    "STREAM": "a streamed message (Schwarm's later protocol)",
}


def encode(payload: Any) -> str:
    """JSON text exactly as Starlette's ``send_json`` writes it; raises ValueError for
    NaN and infinities."""
    # allow_nan=False: NaN and Infinity are not JSON, and a browser's JSON.parse rejects them.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def message_frame(message_type: str, message: str) -> str:
    """A ``/ws`` frame: ``{"message_type":"EVENT","message":"..."}``."""
    return encode({"message_type": message_type, "message": message})


def data_text(data: Any) -> str:
    """The ``message`` string for a mapping or list given as data: its JSON text."""
    return encode(data)


def chunk_frame(content: str, kind: StreamType = StreamType.DEFAULT) -> str:
    """A ``/ws/stream`` chunk: ``{"type":"default","content":"..."}`` (or ``"tool"``)."""
    return encode({"type": kind.value, "content": content})


#: The end-of-stream signal on ``/ws/stream``.
CLOSE_FRAME = encode({"type": StreamType.CLOSE.value, "content": None})
