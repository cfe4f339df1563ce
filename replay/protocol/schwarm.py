"""Schwarm's protocol as the seed test server spoke it: the default of every folder.

Two sockets: ``/ws`` for typed messages (``{"message_type": ..., "message": ...}``, data
sent as its JSON text) and ``/ws/stream`` for chunks (``{"type": "default"|"tool",
"content": ...}``, ended by ``{"type": "close", "content": null}``), and Schwarm's message
types. A folder with no protocol file, or one that ``extends: schwarm``, speaks this
byte for byte.
"""

from __future__ import annotations

from replay.protocol.declaration import (
    ChunkEnvelope,
    EndpointDeclaration,
    MessageEnvelope,
    MessageTypeDeclaration,
    Protocol,
)
from replay.protocol.wire import MESSAGE_TYPES, Endpoint

#: Who sends each of Schwarm's message types (the others go both ways).
_CLIENT_SENT = {"CHAT_INPUT": "client", "PAUSE_REQUEST": "client"}

SCHWARM = Protocol(
    endpoints={
        Endpoint.MESSAGES.value: EndpointDeclaration(
            description="typed messages: {message_type, message}", messages=MessageEnvelope()
        ),
        Endpoint.STREAM.value: EndpointDeclaration(
            description="streamed chunks: {type: default|tool, content}, then {type: close}",
            chunks=ChunkEnvelope(),
        ),
    },
    message_types={
        name: MessageTypeDeclaration(
            description=description,
            sent_by=_CLIENT_SENT.get(name, "both"),
        )
        for name, description in MESSAGE_TYPES.items()
    },
    extends="schwarm",
    description="Schwarm's dashboard protocol (the seed's two sockets)",
)
