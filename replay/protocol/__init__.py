"""What replay speaks: Schwarm's wire format (:mod:`replay.protocol.wire`, the default),
and a project's declared protocol (:mod:`replay.protocol.declaration`): its WebSocket
endpoints, how steps become frames on them, its message types and their payload
schemas, its HTTP routes and shared state.

This package's top level re-exports the wire format only, so that the scenario models
can import it without importing the declaration models (which import them).
"""

from replay.protocol.wire import (
    CLOSE_FRAME,
    MESSAGE_TYPES,
    Endpoint,
    StreamType,
    chunk_frame,
    data_text,
    encode,
    message_frame,
)

__all__ = [
    "CLOSE_FRAME",
    "MESSAGE_TYPES",
    "Endpoint",
    "StreamType",
    "chunk_frame",
    "data_text",
    "encode",
    "message_frame",
]
