"""The recording format: one client connection (a session) as JSON Lines, version 1.

A recording is a text file, ``<session>.jsonl``, written as the session goes (each line
flushed as it happens, so a crash loses at most the line being written). Every line is
one JSON object:

1. The first line is the **header**::

     {"format": "replay-recording", "version": 1, "session": "3f2a9c0e1b7d",
      "kind": "websocket", "endpoint": "/ws", "query": "client_id=ui",
      "subprotocol": null, "headers": {"user-agent": "...", "cookie": "***"},
      "upstream": "ws://127.0.0.1:8000", "client": "ui",
      "started": 1733260000.123, "started_iso": "2024-12-03T21:06:40.123Z"}

   ``kind`` is ``websocket`` or ``http``; ``query`` and ``headers`` are as the client sent
   them, secrets redacted (``***``); ``client`` is the ``client_id`` query parameter or
   None; ``started`` is the wall-clock time (seconds since 1970) of offset 0.

2. Then one line per **frame**, in the order they passed through the proxy::

     {"t": 0.5123, "from": "server", "op": "text", "data": "{\\"message_type\\": ...}"}
     {"t": 0.7, "from": "client", "op": "binary", "data": "AAEC/w=="}
     {"t": 1.2, "from": "server", "op": "close", "code": 1000, "reason": "bye"}

   ``t`` is seconds since the session started, on a monotonic clock; ``from`` is
   ``client`` (client to server) or ``server``; ``op`` is ``text``, ``binary``, ``ping``,
   ``pong`` or ``close``; ``data`` is the text of a text frame and base64 for the other
   opcodes (absent for a close); a close has ``code`` (None: no status) and ``reason``.
   For an ``http`` session, the request is ``{"t", "from": "client", "op": "request",
   "method", "path", "query", "headers", "body"}`` and the answer ``{"t", "from":
   "server", "op": "response", "status", "headers", "body"}`` (bodies as text, or base64
   with ``"base64": true``).

3. The last line, when the session ended cleanly, is the **end**::

     {"t": 12.5, "end": true, "code": 1000, "reason": "", "by": "client"}

   A recording without it was cut short (the proxy crashed); it is still readable.

Payload secrets named by the user (JSON paths) are redacted in ``data`` before the line
is written. Nothing here does I/O: :func:`line` makes lines (and :func:`text_line` a text
frame's, faster); :func:`read_recording` reads them back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, Literal

from replay.errors import ReplayError

FORMAT = "replay-recording"
VERSION = 1
#: What a recording file is called: the session id and this suffix.
SUFFIX = ".jsonl"

Op = Literal["text", "binary", "ping", "pong", "close", "request", "response"]
Side = Literal["client", "server"]


class RecordingInvalid(ReplayError):
    """A file that is not a recording this version of replay reads."""

    def __init__(self, file: str, line: int, reason: str) -> None:
        self.file, self.line, self.reason = file, line, reason
        super().__init__(f"{file}:{line}: not a replay recording: {reason}")


@dataclass(frozen=True)
class Header:
    """What a session was: where it connected, how, and when."""

    session: str
    endpoint: str
    kind: Literal["websocket", "http"] = "websocket"
    query: str = ""
    subprotocol: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    upstream: str = ""
    client: str | None = None
    started: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        moment = datetime.fromtimestamp(self.started, UTC)
        return {
            "format": FORMAT,
            "version": VERSION,
            "session": self.session,
            "kind": self.kind,
            "endpoint": self.endpoint,
            "query": self.query,
            "subprotocol": self.subprotocol,
            "headers": dict(self.headers),
            "upstream": self.upstream,
            "client": self.client,
            "started": self.started,
            "started_iso": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }


@dataclass(frozen=True)
class Frame:
    """One frame (or HTTP request or response) of a session, ``t`` seconds after its start."""

    t: float
    side: Side
    op: Op
    data: str | None = None
    code: int | None = None
    reason: str = ""
    #: For ``request`` and ``response``: method, path, query, status, headers, body...
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def payload(self) -> bytes | str | None:
        """A text frame's text; the bytes of a binary, ping or pong frame."""
        if self.data is None or self.op in ("text", "request", "response"):
            return self.data
        return base64.b64decode(self.data)

    def to_dict(self) -> dict[str, Any]:
        line: dict[str, Any] = {"t": round(self.t, 6), "from": self.side, "op": self.op}
        if self.op == "close":
            line.update(code=self.code, reason=self.reason)
        elif self.data is not None:
            line["data"] = self.data
        line.update(self.extra)
        return line


@dataclass(frozen=True)
class End:
    """How a session ended."""

    t: float
    code: int | None = None
    reason: str = ""
    by: Side | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 6),
            "end": True,
            "code": self.code,
            "reason": self.reason,
            "by": self.by,
        }


@dataclass(frozen=True)
class Recording:
    """A session read back: its header, its frames, and its end (None if cut short)."""

    file: str
    header: Header
    frames: tuple[Frame, ...]
    end: End | None = None


def text_frame(t: float, side: Side, text: str) -> Frame:
    return Frame(t, side, "text", text)


def bytes_frame(t: float, side: Side, op: Op, data: bytes) -> Frame:
    """A binary, ping or pong frame, its bytes kept as base64."""
    return Frame(t, side, op, base64.b64encode(data).decode("ascii"))


def close_frame(t: float, side: Side, code: int | None, reason: str) -> Frame:
    return Frame(t, side, "close", None, code, reason)


#: Encodes lines: one encoder for all, rather than one made per line by ``json.dumps``.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
#: A string as that encoder writes it (quoted, escaped, not ASCII-only).
_string = encode_basestring


def line(item: Header | Frame | End) -> str:
    """One line of a recording file, with its newline."""
    return _ENCODER.encode(item.to_dict()) + "\n"


def text_line(t: float, side: Side, text: str) -> str:
    """``line(text_frame(t, side, text))``, made about five times faster (the proxy writes
    one per text frame)."""
    return f'{{"t":{round(t, 6)!r},"from":"{side}","op":"text","data":{_string(text)}}}\n'


def read_recording(lines: Iterable[str], file: str = "<recording>") -> Recording:
    """Read a recording's lines; raises RecordingInvalid. A last line that is not whole
    (the proxy stopped while writing it) is left out, as is a missing end."""
    rows = list(lines)
    header: Header | None = None
    frames: list[Frame] = []
    end: End | None = None
    for number, text in enumerate(rows, 1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError:
            if number == len(rows):  # cut short while writing
                break
            raise RecordingInvalid(file, number, "a line is not JSON") from None
        if not isinstance(item, dict):
            raise RecordingInvalid(file, number, "a line is not a JSON object")
        if header is None:
            header = _header(item, file, number)
        elif item.get("end") is True:
            end = End(float(item["t"]), item.get("code"), item.get("reason", ""), item.get("by"))
        else:
            frames.append(_frame(item, file, number))
    if header is None:
        raise RecordingInvalid(file, 1, "the file is empty")
    return Recording(file, header, tuple(frames), end)


def _header(item: Mapping[str, Any], file: str, number: int) -> Header:
    if item.get("format") != FORMAT:
        raise RecordingInvalid(file, number, f'the first line has no "format": "{FORMAT}"')
    if item.get("version") != VERSION:
        raise RecordingInvalid(
            file, number, f"version {item.get('version')!r}; this replay reads version {VERSION}"
        )
    try:
        return Header(
            session=str(item["session"]),
            endpoint=str(item["endpoint"]),
            kind=item.get("kind", "websocket"),
            query=str(item.get("query", "")),
            subprotocol=item.get("subprotocol"),
            headers=dict(item.get("headers") or {}),
            upstream=str(item.get("upstream", "")),
            client=item.get("client"),
            started=float(item.get("started", 0.0)),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RecordingInvalid(file, number, f"a bad header ({error})") from None


_KNOWN = {"t", "from", "op", "data", "code", "reason"}


def _frame(item: Mapping[str, Any], file: str, number: int) -> Frame:
    try:
        side, op = item["from"], item["op"]
        if side not in ("client", "server") or op not in _OPS:
            raise ValueError(f"from {side!r}, op {op!r}")
        extra = {key: value for key, value in item.items() if key not in _KNOWN}
        return Frame(
            float(item["t"]),
            side,
            op,
            item.get("data"),
            item.get("code"),
            item.get("reason", ""),
            extra,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RecordingInvalid(file, number, f"a bad frame ({error})") from None


_OPS = ("text", "binary", "ping", "pong", "close", "request", "response")
