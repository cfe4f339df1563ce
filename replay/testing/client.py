"""A test's WebSocket client: connected to ``/ws`` and ``/ws/stream`` under one client id,
recording every frame, answering, and expecting frames with a deadline.

Each socket has a reader thread that appends what arrives to one list under a condition
variable; :meth:`ReplayClient.expect` waits on that condition until a matching frame is
there, the deadline passes or the connection closes. Nothing sleeps.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from inspect import signature
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from replay.counts import counted
from replay.scenario import CLIENT_ID_PATTERN, CLIENT_ID_RULE
from replay.testing.api import ReplayTestError

MESSAGES = "/ws"
STREAM = "/ws/stream"
#: The endpoints a client connects to, in the order it connects: the stream first, so
#: that an on-connect scenario's stream frames (sent when /ws connects) reach it.
ENDPOINTS = (STREAM, MESSAGES)
#: Frames an expectation's failure lists (the latest ones), and how much of each.
SHOWN_FRAMES = 20
SHOWN_WIDTH = 120

#: websockets 15 and later connect through ``HTTP_PROXY`` and the like unless told not
#: to; a test's server is on this machine. (Older versions have no proxy support.)
_NO_PROXY: dict[str, Any] = {"proxy": None} if "proxy" in signature(connect).parameters else {}

#: What ``expect(match=...)`` takes: a regular expression searched in the frame's message,
#: or a function of the frame that says whether it is the one.
Match = str | re.Pattern[str] | Callable[["Frame"], object]


@dataclass(frozen=True)
class Frame:
    """One frame a client received."""

    #: Its position in :attr:`ReplayClient.frames` (both endpoints, in arrival order).
    index: int
    #: ``/ws`` or ``/ws/stream``.
    endpoint: str
    #: The frame's JSON, parsed; its text if it is not JSON; its bytes if it is binary.
    data: Any
    #: The frame's text as it came (None for a binary frame).
    text: str | None
    #: When it arrived (``time.monotonic()``).
    time: float

    @property
    def message_type(self) -> str | None:
        """``message_type`` of a ``/ws`` frame, ``type`` of a ``/ws/stream`` one
        (``default``, ``tool``, ``close``); None for a frame without one."""
        value = self._field("message_type", "type")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> Any:
        """``message`` of a ``/ws`` frame, ``content`` of a ``/ws/stream`` one; the text
        (or bytes) of a frame that is not a JSON object."""
        if not isinstance(self.data, dict):
            return self.data
        return self._field("message", "content")

    def _field(self, messages: str, stream: str) -> Any:
        if not isinstance(self.data, dict):
            return None
        return self.data.get(messages if self.endpoint == MESSAGES else stream)

    def __getitem__(self, key: str) -> Any:
        """A field of the frame's JSON object: ``frame["message"]``."""
        if not isinstance(self.data, dict):
            raise TypeError(f"frame #{self.index} is not a JSON object: {self.shown()}")
        return self.data[key]

    def shown(self, width: int = SHOWN_WIDTH) -> str:
        """The frame's text, cut to ``width`` characters."""
        if self.text is None:
            raw = bytes(self.data)
            text = f"<{len(raw)} binary bytes: {raw[:32].hex(' ')}>"
        else:
            text = self.text
        return text if len(text) <= width else text[: width - 3] + "..."

    def __str__(self) -> str:
        return f"#{self.index} {self.endpoint} {self.shown()}"


class ReplayClient:
    """A WebSocket client of a replay server, as a frontend is one.

    Connects to ``/ws/stream`` and ``/ws`` (``endpoints``) at ``url`` (``ws://`` or
    ``http://``) with ``?client_id=`` ``client_id`` (a unique ``test-...`` id if None), and
    records every frame received on either in :attr:`frames`, in arrival order. Use it as
    a context manager, or call :meth:`close`. ``timeout`` bounds connecting and closing.
    """

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        *,
        endpoints: Iterable[str] = ENDPOINTS,
        timeout: float = 10.0,
        max_size: int | None = None,
    ) -> None:
        self.id = client_id if client_id is not None else f"test-{uuid.uuid4().hex[:12]}"
        if not CLIENT_ID_PATTERN.match(self.id):
            raise ValueError(f"invalid client id {self.id!r}: expected {CLIENT_ID_RULE}")
        wanted = set(endpoints)
        if not wanted or wanted - set(ENDPOINTS):
            raise ValueError(f"endpoints must be some of {', '.join(ENDPOINTS)}, not {endpoints}")
        self.endpoints = tuple(endpoint for endpoint in ENDPOINTS if endpoint in wanted)
        self.url = _ws_url(url)
        self.timeout = timeout
        self.started = time.monotonic()
        self._lock = threading.Condition()
        self._frames: list[Frame] = []
        #: Per endpoint: the index in _frames where the next expectation starts looking.
        self._cursor = dict.fromkeys(self.endpoints, 0)
        #: Per endpoint, once its connection has ended: how it ended.
        self._ended: dict[str, str] = {}
        self._sockets: dict[str, ClientConnection] = {}
        self._readers: list[threading.Thread] = []
        self._exits = contextlib.ExitStack()
        query = urllib.parse.urlencode({"client_id": self.id})
        try:
            for endpoint in self.endpoints:
                connecting = connect(
                    f"{self.url}{endpoint}?{query}",
                    open_timeout=timeout,
                    close_timeout=timeout,
                    max_size=max_size,
                    **_NO_PROXY,
                )
                # Entered as a context manager, as newer websockets versions ask (it
                # closes the connection on exit, like close()).
                socket = self._exits.enter_context(connecting)
                self._sockets[endpoint] = socket
                reader = threading.Thread(
                    target=self._read,
                    args=(endpoint, socket),
                    name=f"replay-client-{self.id}{endpoint}",
                    daemon=True,
                )
                reader.start()
                self._readers.append(reader)
        except Exception as error:  # refused, timed out, not a WebSocket server, ...
            self.close()
            raise ReplayTestError(
                f"client {self.id} could not connect to {self.url}: {error}"
            ) from error

    # Receiving -----------------------------------------------------------------------

    def _read(self, endpoint: str, socket: ClientConnection) -> None:
        ended = "ended"
        try:
            while True:
                self._add(endpoint, socket.recv())
        except ConnectionClosed as closed:
            frame = closed.rcvd  # the server's close frame, if it sent one
            ended = "closed without a close frame"
            if frame is not None:
                ended = f"closed with {frame.code}" + (f" {frame.reason!r}" if frame.reason else "")
        except Exception as error:  # a reader must end quietly, saying why
            ended = f"could not be read: {error!r}"
        finally:
            with self._lock:
                self._ended[endpoint] = ended
                self._lock.notify_all()

    def _add(self, endpoint: str, message: str | bytes) -> None:
        arrived = time.monotonic()
        data: Any = message
        text = None
        if isinstance(message, str):
            text = message
            try:
                data = json.loads(message)
            except ValueError:
                data = message
        with self._lock:
            self._frames.append(Frame(len(self._frames), endpoint, data, text, arrived))
            self._lock.notify_all()

    @property
    def frames(self) -> list[Frame]:
        """Every frame received so far, on both endpoints, in arrival order."""
        with self._lock:
            return list(self._frames)

    # Expecting -----------------------------------------------------------------------

    def expect(
        self,
        message_type: str | None = None,
        *,
        endpoint: str = MESSAGES,
        text: str | None = None,
        match: Match | None = None,
        timeout: float = 5.0,
    ) -> Frame:
        """Wait for the next frame on ``endpoint`` that matches, and return it.

        Expectations are taken in order: each looks at the frames received on its
        endpoint after the one the previous expectation there returned, and passes over
        the ones that do not match. A frame matches if its :attr:`Frame.message_type` is
        ``message_type``, its :attr:`Frame.message` is ``text`` exactly, and ``match``
        (a regular expression searched in the message, or a function of the frame) says
        so; each is checked only if given. After ``timeout`` seconds, or as soon as the
        connection has closed, raises AssertionError listing what arrived instead.
        """
        __tracebackhide__ = True  # pytest shows the test's line, not this one
        self._endpoint(endpoint)
        wanted = _matcher(message_type, text, match)
        deadline = time.monotonic() + timeout
        with self._lock:
            start = seen = self._cursor[endpoint]
            while True:
                for frame in self._frames[seen:]:
                    if frame.endpoint == endpoint and wanted(frame):
                        self._cursor[endpoint] = frame.index + 1
                        return frame
                seen = len(self._frames)
                remaining = deadline - time.monotonic()
                if endpoint in self._ended or remaining <= 0:
                    break
                self._lock.wait(remaining)
            what = _described(message_type, text, match)
            raise AssertionError(self._missed(what, endpoint, start, timeout, wanted))

    def expect_stream(self, timeout: float = 10.0) -> str:
        """Wait for the end of the stream on ``/ws/stream`` (the ``{"type": "close"}``
        frame) and return the text of the chunks before it (``default`` and ``tool``
        alike), from where the last expectation there left off. Raises AssertionError
        with the text so far if the stream does not close within ``timeout`` seconds."""
        __tracebackhide__ = True
        self._endpoint(STREAM)
        deadline = time.monotonic() + timeout
        chunks: list[str] = []
        with self._lock:
            start = seen = self._cursor[STREAM]
            while True:
                for frame in self._frames[seen:]:
                    if frame.endpoint != STREAM:
                        continue
                    if frame.message_type == "close":
                        self._cursor[STREAM] = frame.index + 1
                        return "".join(chunks)
                    if isinstance(frame.message, str) and isinstance(frame.data, dict):
                        chunks.append(frame.message)
                seen = len(self._frames)
                remaining = deadline - time.monotonic()
                if STREAM in self._ended or remaining <= 0:
                    break
                self._lock.wait(remaining)
            text = "".join(chunks)
            shown = text if len(text) <= 300 else "..." + text[-297:]
            why = self._why(STREAM, timeout)
            count = sum(frame.endpoint == STREAM for frame in self._frames[start:])
            raise AssertionError(
                f'the stream did not close: no {{"type":"close"}} frame on {STREAM} {why}; '
                f"{counted(count, 'frame')} arrived there since the last expectation, "
                f"which say: {shown!r}"
            )

    def _endpoint(self, endpoint: str) -> None:
        if endpoint not in self._cursor:
            raise ValueError(
                f"client {self.id} is not connected to {endpoint!r}; it is connected to "
                + ", ".join(self.endpoints)
            )

    def _why(self, endpoint: str, timeout: float) -> str:
        ended = self._ended.get(endpoint)
        return f"(the connection {ended})" if ended else f"within {timeout:g}s"

    def _missed(
        self,
        what: str,
        endpoint: str,
        start: int,
        timeout: float,
        wanted: Callable[[Frame], object],
    ) -> str:
        """Why an expectation failed, with the frames that came instead."""
        lines = [f"client {self.id}: no {what} on {endpoint} {self._why(endpoint, timeout)}"]
        since = [frame for frame in self._frames[start:] if frame.endpoint == endpoint]
        if since:
            lines.append(
                f"{counted(len(since), 'frame')} arrived on {endpoint} since the last expectation:"
            )
            if len(since) > SHOWN_FRAMES:
                lines.append(f"  ... {len(since) - SHOWN_FRAMES} earlier ones")
            lines += [self._line(frame) for frame in since[-SHOWN_FRAMES:]]
        else:
            lines.append(f"nothing arrived on {endpoint} since the last expectation")
        others = Counter(frame.endpoint for frame in self._frames[start:])
        others.pop(endpoint, None)
        for other, count in others.items():
            lines.append(f"(and {counted(count, 'frame')} on {other})")
        earlier = [
            frame
            for frame in self._frames[:start]
            if frame.endpoint == endpoint and _safely(wanted, frame)
        ]
        if earlier:
            lines.append(
                f"a matching frame came earlier, before the last expectation's: "
                f"{self._line(earlier[-1]).strip()} (expectations are taken in order)"
            )
        return "\n".join(lines)

    def _line(self, frame: Frame) -> str:
        return f"  #{frame.index} +{frame.time - self.started:.3f}s {frame.shown()}"

    # Sending -------------------------------------------------------------------------

    def send(self, message_type: str, message: Any = "") -> None:
        """Send ``{"message_type": ..., "message": ...}`` on ``/ws``, as a Schwarm frontend
        does (a message that is not text is sent as its JSON text)."""
        if not isinstance(message, str):
            message = json.dumps(message, ensure_ascii=False)
        self.send_json({"message_type": message_type, "message": message})

    def send_json(self, value: Any, *, endpoint: str = MESSAGES) -> None:
        """Send ``value`` as a JSON text frame."""
        self.send_text(
            json.dumps(value, ensure_ascii=False, separators=(",", ":")), endpoint=endpoint
        )

    def send_text(self, text: str, *, endpoint: str = MESSAGES) -> None:
        """Send a text frame as it is."""
        self._endpoint(endpoint)
        self._sockets[endpoint].send(text)

    # Closing -------------------------------------------------------------------------

    @property
    def open_endpoints(self) -> tuple[str, ...]:
        """The endpoints whose connection has not ended (as far as this client knows)."""
        with self._lock:
            return tuple(endpoint for endpoint in self._sockets if endpoint not in self._ended)

    @property
    def closed(self) -> bool:
        """Whether every connection of this client has ended."""
        return not self.open_endpoints

    def close(self) -> None:
        """Close the connections (with 1000) and stop reading. Safe to call twice."""
        with contextlib.suppress(Exception):  # already gone: nothing more to do
            self._exits.close()
        deadline = time.monotonic() + self.timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ReplayClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ReplayClient {self.id} at {self.url} ({counted(len(self._frames), 'frame')})>"


def _ws_url(url: str) -> str:
    url = url.rstrip("/")
    for http, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(http):
            return ws + url[len(http) :]
    return url


def _matcher(
    message_type: str | None, text: str | None, match: Match | None
) -> Callable[[Frame], object]:
    pattern = re.compile(match) if isinstance(match, str) else match

    def wanted(frame: Frame) -> object:
        if message_type is not None and frame.message_type != message_type:
            return False
        if text is not None and frame.message != text:
            return False
        if isinstance(pattern, re.Pattern):
            subject = frame.message if isinstance(frame.message, str) else frame.text
            return subject is not None and pattern.search(subject) is not None
        if pattern is not None:
            return pattern(frame)
        return True

    return wanted


def _safely(wanted: Callable[[Frame], object], frame: Frame) -> bool:
    try:
        return bool(wanted(frame))
    except Exception:  # a predicate that fails on an old frame: not worth a second error
        return False


def _described(message_type: str | None, text: str | None, match: Match | None) -> str:
    what = f"{message_type!r} frame" if message_type is not None else "frame"
    if text is not None:
        what += f" with message {text!r}"
    if isinstance(match, re.Pattern):
        what += f" whose message matches {match.pattern!r}"
    elif isinstance(match, str):
        what += f" whose message matches {match!r}"
    elif match is not None:
        what += f" accepted by {getattr(match, '__name__', repr(match))}"
    return what
