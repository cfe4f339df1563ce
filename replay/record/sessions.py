"""Sessions as they are recorded: each one's file, written line by line as it goes, and
the counts the command shows.

A :class:`SessionWriter` writes ``<out>/<session>.jsonl`` in the format of
:mod:`replay.record.format`: the header when the session opens, a line per frame (each
written and flushed at once, so a crash loses at most the line being written), the end
line when it ends. It redacts payloads (``--redact`` paths) before writing. A file that
cannot be written is given up with one log line; the session goes on, unrecorded.

An :class:`Observer` hears of sessions opening and closing and of every frame; the
base class keeps the counts (:class:`Counts`), the command's console shows them.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from replay.record.format import (
    SUFFIX,
    End,
    Frame,
    Header,
    Side,
    bytes_frame,
    close_frame,
    line,
    text_line,
)
from replay.record.redact import PayloadPath, redact_headers, redact_payload, redact_query
from replay.record.upstream import split_target

logger = logging.getLogger("replay.record")


def new_session_id() -> str:
    """A fresh session id: 12 hexadecimal digits from :mod:`secrets`."""
    return secrets.token_hex(6)


def body_fields(body: bytes, paths: Sequence[PayloadPath]) -> dict[str, Any]:
    """An HTTP body as a recording line holds it: text (JSON paths redacted) if it is
    UTF-8, else base64 with ``"base64": true``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {"body": base64.b64encode(body).decode("ascii"), "base64": True}
    return {"body": redact_payload(text, paths)}


class SessionWriter:
    """One session's recording file, written line by line as the session goes."""

    def __init__(
        self,
        folder: Path,
        header: Header,
        paths: Sequence[PayloadPath] = (),
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ) -> None:
        self.header = header
        self.paths = tuple(paths)
        self.clock = clock
        #: When the session started, on ``clock``: offset 0 (default: now).
        self.start = clock() if start is None else start
        self.path = folder / f"{header.session}{SUFFIX}"
        self.ended = False
        self._file: IO[bytes] | None = None
        try:
            # Unbuffered: each line is one write to the file, at once.
            self._file = self.path.open("xb", buffering=0)
        except OSError as error:
            self._give_up(error)
        self._write(header)

    def elapsed(self) -> float:
        """Seconds since the session started (offset 0 of its lines)."""
        return self.clock() - self.start

    def text(self, side: Side, text: str) -> None:
        self._write_line(text_line(self.elapsed(), side, redact_payload(text, self.paths)))

    def data(self, side: Side, op: str, data: bytes) -> None:
        """A binary, ping or pong frame."""
        self._write(bytes_frame(self.elapsed(), side, op, data))  # type: ignore[arg-type]

    def close(self, side: Side, code: int | None, reason: str) -> None:
        self._write(close_frame(self.elapsed(), side, code, reason))

    def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """An HTTP session's request (its query and headers redacted)."""
        path, query = split_target(target)
        extra = {
            "method": method,
            "path": path,
            "query": redact_query(query),
            "headers": redact_headers(headers),
            **body_fields(body, self.paths),
        }
        self._write(Frame(self.elapsed(), "client", "request", extra=extra))

    def response(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """An HTTP session's answer (its headers redacted)."""
        extra = {
            "status": status,
            "headers": redact_headers(headers),
            **body_fields(body, self.paths),
        }
        self._write(Frame(self.elapsed(), "server", "response", extra=extra))

    def end(self, code: int | None, reason: str, by: Side | None) -> End:
        """Write the end line (once) and close the file."""
        finished = End(self.elapsed(), code, reason, by)
        if not self.ended:
            self.ended = True
            self._write(finished)
            if self._file is not None:
                self._file.close()
                self._file = None
        return finished

    def _write(self, item: Header | Frame | End) -> None:
        self._write_line(line(item))

    def _write_line(self, text: str) -> None:
        if self._file is None:
            return
        data = text.encode("utf-8", "backslashreplace")  # a lone surrogate: \\udxxx
        try:
            while data:
                written = self._file.write(data)
                data = data[written or len(data) :]
        except (OSError, ValueError) as error:
            self._give_up(error)

    def _give_up(self, error: Exception) -> None:
        logger.error(
            "cannot write %s (%s): session %s goes on unrecorded",
            self.path,
            getattr(error, "strerror", None) or error,
            self.header.session,
        )
        if self._file is not None:
            file, self._file = self._file, None
            with contextlib.suppress(OSError):
                file.close()


@dataclass
class Counts:
    """What the proxy has seen so far."""

    #: WebSocket sessions open now.
    open: int = 0
    #: WebSocket sessions opened, in all.
    sessions: int = 0
    #: Plain HTTP requests proxied.
    requests: int = 0
    #: Handshakes and requests answered 502 (the upstream refused or was down).
    refused: int = 0
    #: Frames and payload bytes by the side that sent them.
    frames: dict[str, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    bytes: dict[str, int] = field(default_factory=lambda: {"client": 0, "server": 0})


@dataclass(frozen=True)
class SessionInfo:
    """A session, as the console names it."""

    session: str
    kind: str
    #: The request target, secrets in its query redacted (``GET /path`` for HTTP).
    target: str
    file: Path
    #: An HTTP session's answer status.
    status: int | None = None


class Observer:
    """Hears what the proxy does; keeps the counts. Subclasses show it."""

    def __init__(self) -> None:
        self.counts = Counts()

    def opened(self, info: SessionInfo) -> None:
        if info.kind == "websocket":
            self.counts.open += 1
            self.counts.sessions += 1
        else:
            self.counts.requests += 1

    def frame(self, side: Side, size: int) -> None:
        self.counts.frames[side] += 1
        self.counts.bytes[side] += size

    def closed(self, info: SessionInfo, end: End, frames: Mapping[str, int]) -> None:
        """A session ended; ``frames``: how many each side sent."""
        if info.kind == "websocket":
            self.counts.open -= 1

    def refused(self, target: str, reason: str) -> None:
        self.counts.refused += 1


@dataclass(frozen=True)
class Recorder:
    """Where and how sessions are recorded: the folder, the JSON paths to redact in
    payloads, and who hears of them."""

    folder: Path
    paths: tuple[PayloadPath, ...] = ()
    observer: Observer = field(default_factory=Observer)

    def writer(self, header: Header, start: float | None = None) -> SessionWriter:
        """A new session's recording, its header written."""
        return SessionWriter(self.folder, header, self.paths, start=start)
