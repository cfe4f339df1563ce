"""Client frames, and whether one matches what a ``wait`` step or a reaction asks for.

A frame is matched on ``/ws`` by its message type, then optionally by a regular
expression searched for in its message text, then by patterns on dotted paths into the
frame. A path looks into strings that hold JSON, so ``message.action`` reaches into
``{"message_type": "PAUSE_REQUEST", "message": "{\\"action\\": \\"pause\\"}"}``.
Patterns run on RE2, in time linear in the text (see :mod:`replay.patterns`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from replay.patterns import search
from replay.scenario import ClientFrameMatch

#: Frames longer than this are never parsed as JSON for matching (they still count).
MAX_PARSED = 1024 * 1024


@dataclass(frozen=True)
class ClientFrame:
    """A client event: a frame a client sent on a WebSocket endpoint, or a request it
    made to a declared HTTP route.

    ``client`` is who sent it, ``text`` its text (None for a binary frame), ``at`` when
    (seconds from the start of the run that took it; set by the runner). ``endpoint`` is
    where it came: a WebSocket path, or ``"http"`` for a request. ``type_field`` and
    ``payload_field`` name the fields of the endpoint's envelope that hold the message
    type and the payload (Schwarm's ``message_type`` and ``message`` by default);
    ``kind``, when given, is the event's type whatever the text says (a request's is
    ``"METHOD /path"``, as its route is declared).
    """

    client: str
    text: str | None
    at: float = 0.0
    endpoint: str = "/ws"
    type_field: str = "message_type"
    payload_field: str = "message"
    kind: str | None = None

    @cached_property
    def frame(self) -> Any:
        """The frame parsed as JSON, or None when it is not JSON."""
        return _json(self.text)

    @property
    def message_type(self) -> str | None:
        if self.kind is not None:
            return self.kind
        frame = self.frame
        kind = frame.get(self.type_field) if isinstance(frame, dict) else None
        return kind if isinstance(kind, str) else None

    @cached_property
    def payload(self) -> Any:
        """The payload field's value as sent (any JSON value), or None."""
        frame = self.frame
        return frame.get(self.payload_field) if isinstance(frame, dict) else None

    @cached_property
    def message(self) -> str | None:
        """The payload as text: a string as is, any other JSON value as its compact JSON
        (what ``match`` searches in); None when there is none."""
        payload = self.payload
        if payload is None or isinstance(payload, str):
            return payload
        return _as_text(payload)

    @cached_property
    def data(self) -> Any:
        """The payload as data: a string holding JSON parsed, any other value as is."""
        payload = self.payload
        return _json(payload) if isinstance(payload, str) else payload

    def taken_at(self, at: float) -> ClientFrame:
        """The same frame, taken by a run ``at`` seconds after its start."""
        return replace(self, at=at)

    def for_template(self) -> dict[str, Any]:
        """What templates see as ``received``: the same fields whatever the protocol, and
        also the type and the payload under the names the endpoint's envelope gives them
        (``received.event`` where a price feed's frames are ``{"event": ..., "data": ...}``;
        a name that is one of the fixed fields keeps the fixed field's meaning)."""
        view = {
            self.type_field: self.message_type,
            self.payload_field: self.payload,
        }
        view.update(
            {
                "client": self.client,
                "endpoint": self.endpoint,
                "text": self.text,
                "message_type": self.message_type,
                "message": self.message,
                "data": self.data,
                "frame": self.frame,
            }
        )
        return view


def matches(match: ClientFrameMatch, frame: ClientFrame) -> bool:
    """Whether ``frame`` is what ``match`` asks for."""
    if frame.message_type != match.message:
        return False
    if match.match is not None and not search(match.match, frame.message or ""):
        return False
    for path, pattern in (match.fields or {}).items():
        found, value = lookup(frame.frame, path)
        text = _as_text(value) if found else None
        if text is None or not search(pattern, text):
            return False
    return True


def lookup(value: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` at a dotted path; strings holding JSON are looked into."""
    for part in path.split("."):
        if isinstance(value, str):
            value = _json(value)
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


def _as_text(value: Any) -> str | None:
    """The text a field's pattern is searched in: a string as is, anything else as its
    compact JSON; None (no match) when that is longer than MAX_PARSED characters."""
    # A value comes from a frame of at most MAX_PARSED characters, but its JSON can be a
    # few times longer than it was in the frame (1e15 is written 1000000000000000.0).
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= MAX_PARSED else None


def _json(text: str | None) -> Any:
    if text is None or len(text) > MAX_PARSED:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # a client's frame may nest absurdly deep
        return None
