"""The journal: what each client was sent and sent back, to assert on after a test.

In the spirit of WireMock's request journal: a UI test drives the frontend, then asks
replay what really went over the wire (``GET /journal``), filtered by client, run,
direction, message type or endpoint. Entries are kept in the order they happened:

- ``sent``: a frame a run put on an endpoint: ``run_id``, ``scenario``, ``step``, ``to``
  (the client id it was addressed to, or null for every client of the endpoint) and
  ``clients`` (how many took it); under ``serve --upstream``, with ``injected: true``,
  and the real backend's frames to a client are ``sent`` entries too, with
  ``upstream: true`` (and no run);
- ``received``: a frame a client sent: ``client`` and, on ``/ws``, ``runs`` (the runs
  that kept it as an answer, see :mod:`replay.mailbox`); a request to a declared HTTP
  route is one too, on the endpoint ``http``, its frame the request as JSON text, its
  message type the route's ``METHOD /path``, with ``method``, ``path``, ``route``,
  ``status``, ``query`` and ``params``;
- ``connected`` / ``disconnected``: a client's connection to an endpoint, so that a
  frame sent to every client can be told apart from one a client was not there for.

Each entry has ``seq``, ``time`` (seconds since 1970), ``direction``, ``endpoint``,
``frame`` (text; a binary frame in hex) and ``message_type`` (the frame's
``message_type``, or a stream frame's ``type``; null if it has none). The journal keeps
at most :data:`MAX_ENTRIES` entries and :data:`MAX_BYTES` of frames; older entries make
room for new ones and are counted as ``forgotten``.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

#: Entries the journal keeps.
MAX_ENTRIES = 10_000
#: Frame text the journal keeps, all entries together.
MAX_BYTES = 8 * 1024 * 1024
#: Feed events the journal records, and the direction each becomes.
DIRECTIONS = {
    "frame.sent": "sent",
    "frame.received": "received",
    "client.connected": "connected",
    "client.disconnected": "disconnected",
    "http.request": "received",
}


class Journal:
    """A bounded record of frames and connections (see the module's docstring)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.forgotten = 0
        self._entries: deque[dict[str, Any]] = deque()
        self._bytes = 0
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def record(self, event: dict[str, Any]) -> None:
        """Record a feed event, if it is of a kind the journal keeps (a feed recorder).
        Frames received on ``/ws`` are recorded by :meth:`received` instead, with the
        runs that kept them."""
        direction = DIRECTIONS.get(event["event"])
        if direction is None or (direction == "received" and event.get("endpoint") == "/ws"):
            return
        entry = {key: value for key, value in event.items() if key not in ("event", "seq")}
        self._add(direction, entry)

    def received(self, client: str, endpoint: str, frame: str, runs: Iterable[str]) -> None:
        """Record a frame ``client`` sent, and the runs that kept it."""
        self._add(
            "received",
            {"time": time.time(), "client": client, "endpoint": endpoint, "frame": frame},
            runs=list(runs),
        )

    def entries(
        self,
        *,
        client: str | None = None,
        run: str | None = None,
        direction: str | None = None,
        message_type: str | None = None,
        endpoint: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The entries that match every filter given, oldest first (the newest ``limit``).

        ``client`` keeps what that client sent, what was addressed to it, and what was
        sent to every client of an endpoint while it was connected there; ``run`` keeps
        what the run sent and the frames it kept.
        """
        found = [
            entry
            for entry in self._for_client(client)
            if (run is None or entry.get("run_id") == run or run in entry.get("runs", ()))
            and (direction is None or entry["direction"] == direction)
            and (endpoint is None or entry.get("endpoint") == endpoint)
            and (message_type is None or _typed(entry)["message_type"] == message_type)
        ]
        return [_typed(entry) for entry in (found[-limit:] if limit else found)]

    def clear(self) -> None:
        """Forget everything (``POST /reset``, ``DELETE /journal``)."""
        self._entries.clear()
        self._bytes = 0
        self.forgotten = 0

    def _add(self, direction: str, entry: dict[str, Any], **extra: Any) -> None:
        if self.max_entries <= 0:
            return
        self._seq += 1
        frame = entry.get("frame")
        size = len(frame) if isinstance(frame, str) else 0
        entry = {"seq": self._seq, "direction": direction, **entry, **extra}
        self._entries.append(entry)
        self._bytes += size
        while len(self._entries) > self.max_entries or (
            self._bytes > self.max_bytes and len(self._entries) > 1
        ):
            old = self._entries.popleft()
            old_frame = old.get("frame")
            self._bytes -= len(old_frame) if isinstance(old_frame, str) else 0
            self.forgotten += 1

    def _for_client(self, client: str | None) -> Iterator[dict[str, Any]]:
        if client is None:
            yield from self._entries
            return
        connected: dict[str, int] = {}  # endpoint -> open connections of the client
        for entry in self._entries:
            endpoint = entry.get("endpoint", "")
            direction = entry["direction"]
            if entry.get("client") == client:
                if direction == "connected":
                    connected[endpoint] = connected.get(endpoint, 0) + 1
                elif direction == "disconnected":
                    connected[endpoint] = max(0, connected.get(endpoint, 0) - 1)
                yield entry
            elif direction == "sent" and (
                entry.get("to") == client or (entry.get("to") is None and connected.get(endpoint))
            ):
                yield entry


def _typed(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with its ``message_type`` (read from the frame when first asked for: a
    test asks a few times, while a fan-out records thousands of frames)."""
    if "message_type" not in entry:
        entry["message_type"] = _message_type(entry.get("frame"))
    return entry


def _message_type(frame: Any) -> str | None:
    """A frame's ``message_type`` (``/ws``) or ``type`` (``/ws/stream``), if it has one."""
    if not isinstance(frame, str) or not frame.startswith("{") or len(frame) > 1024 * 1024:
        return None
    try:
        data = json.loads(frame)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("message_type", data.get("type"))
    return kind if isinstance(kind, str) else None
