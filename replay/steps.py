"""Steps that put frames on the wire or end connections: ``message``, ``chunk``,
``tool``, ``close``, ``stream``, ``raw``, ``binary``, ``disconnect`` and ``drop``; and the
bases every step model shares."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from replay.fields import (
    MAX_RATE,
    Duration,
    Envelope,
    Target,
    _check_endpoint,
    _check_json,
    _check_message_type,
    _check_rate,
    _check_takes,
    _check_target,
    _protocol,
)


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PausedStep(_Step):
    delay: Duration | None = Field(
        default=None,
        description="Pause after this step; overrides the scenario's delay for this step.",
    )
    jitter: Duration | None = Field(
        default=None,
        description="Vary each pause of this step at random by up to this much either way; "
        "overrides the scenario's jitter.",
    )


class _TargetedStep(_PausedStep):
    to: Target | None = Field(default=None, description="Who gets it (default: the run's target).")

    @field_validator("to")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else _check_target(value)


class _FrameStep(_TargetedStep):
    endpoint: str | None = Field(
        default=None,
        description="The endpoint it goes to (default: the one the protocol gives this kind).",
    )

    _endpoint = field_validator("endpoint")(_check_endpoint)


class _ChunkedStep(_FrameStep):
    @model_validator(mode="after")
    def _takes_chunks(self, info: ValidationInfo) -> _ChunkedStep:
        _check_takes(self, "chunks", _protocol(info).chunk_endpoint(self.endpoint), info)
        return self


class MessageStep(_FrameStep):
    """Send a typed message: ``{"message_type": message, "message": text}`` on ``/ws`` in
    Schwarm's protocol, or the envelope the protocol file declares.

    Give ``text`` for a plain string, or ``data`` (a mapping or list) to send its JSON text
    (or the data itself, where the envelope says ``data: json``).
    """

    message: str = Field(description="The message type, e.g. EVENT or CHAT_REQUESTED.")
    text: str | None = Field(default=None, description="The message, sent as is (a template).")
    data: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description="Sent as its JSON text (Schwarm parses EVENT messages as JSON); its "
        "strings may be templates.",
    )

    envelope: Envelope = None

    _known_type = field_validator("message")(_check_message_type)
    _plain_json = field_validator("data", "envelope")(_check_json)

    @model_validator(mode="after")
    def _text_or_data(self, info: ValidationInfo) -> MessageStep:
        if (self.text is None) == (self.data is None):
            raise ValueError("a message step needs exactly one of 'text' or 'data'")
        endpoint = _protocol(info).message_endpoint(self.message, self.endpoint)
        _check_takes(self, "messages", endpoint, info)
        return self


class ChunkStep(_ChunkedStep):
    """Send ``{"type": "default", "content": chunk}`` to ``/ws/stream`` (or the protocol's
    chunk envelope)."""

    chunk: str = Field(min_length=1, description="The text of the chunk (never empty).")
    envelope: Envelope = None
    _plain_json = field_validator("envelope")(_check_json)


class ToolStep(_ChunkedStep):
    """Send ``{"type": "tool", "content": tool}`` to ``/ws/stream`` (or the protocol's
    chunk envelope)."""

    tool: str = Field(min_length=1, description="The text of the tool chunk (never empty).")
    envelope: Envelope = None
    _plain_json = field_validator("envelope")(_check_json)


class CloseStep(_ChunkedStep):
    """Send the end-of-stream signal ``{"type": "close", "content": null}`` to ``/ws/stream``."""

    close: Literal["stream"] = Field(description="What to close: 'stream'.")


class StreamStep(_ChunkedStep):
    """Stream a whole text to ``/ws/stream`` as token-sized chunks, like an LLM does.

    The text is cut into tokens (words and word pieces of up to 6 letters, each with the
    spaces before it, and punctuation marks), sent ``rate`` per second.
    """

    stream: str = Field(min_length=1, description="The text to stream (a template).")
    rate: float = Field(
        default=30.0, gt=0, le=MAX_RATE, strict=True, description="Tokens per second (default 30)."
    )

    _rate = field_validator("rate", mode="before")(_check_rate)
    type: Literal["default", "tool"] = Field(
        default="default", description="Send the tokens as 'default' or 'tool' chunks."
    )
    close_stream: bool = Field(
        default=False, description="End with the end-of-stream signal, one token later."
    )
    envelope: Envelope = None
    _plain_json = field_validator("envelope")(_check_json)


class RawStep(_FrameStep):
    """Send a text frame exactly as written (for example invalid JSON)."""

    raw: str = Field(description="The frame's text, sent as is (a template).")


class BinaryStep(_FrameStep):
    """Send a binary frame."""

    binary: str = Field(description="The frame's bytes, in base64.")

    @field_validator("binary")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise PydanticCustomError(
                "base64",
                "not base64",
                {
                    "expected": "base64 text, e.g. 'AAEC/w=='",
                    "found": f"{shown!r} ({str(error).rstrip('.').lower()})",
                },
            ) from None
        return value

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.binary)


class DisconnectStep(_TargetedStep):
    """Close clients' connections with a close code and reason, after what was sent before."""

    disconnect: str = Field(description="Which endpoint's clients: a path, or all.")

    _endpoint = field_validator("disconnect")(_check_endpoint)
    code: int = Field(
        default=1000, strict=True, description="The close code (1000 normal, 1011 error, ...)."
    )
    reason: str = Field(default="", description="The close reason (at most 123 bytes).")

    @field_validator("code")
    @classmethod
    def _code(cls, value: int) -> int:
        # What RFC 6455 lets an endpoint send (1005, 1006 and 1015 are never on the wire).
        if not (1000 <= value <= 1003 or 1007 <= value <= 1014 or 3000 <= value <= 4999):
            raise PydanticCustomError(
                "close_code",
                "not a close code a server may send",
                {"expected": "1000-1003, 1007-1014 or 3000-4999", "found": str(value)},
            )
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if len(value.encode()) > 123:
            raise PydanticCustomError(
                "close_reason",
                "close reason too long",
                {"expected": "at most 123 bytes", "found": f"{len(value.encode())} bytes"},
            )
        return value


class DropStep(_TargetedStep):
    """Cut clients' TCP connections without a close frame, as a crashed backend would."""

    drop: str = Field(description="Which endpoint's clients: a path, or all.")

    _endpoint = field_validator("drop")(_check_endpoint)
