"""Recorded sessions for tests, built with the recording format as the proxy writes them:
a Schwarm dashboard session (P5: /ws, /ws/stream and the HTTP break routes), and an
hour of streamed chunks."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from replay.protocol.wire import encode
from replay.record.format import (
    End,
    Frame,
    Header,
    Recording,
    close_frame,
    line,
    read_recording,
    text_frame,
)

#: When the sessions started (2024-12-03 21:06:40 UTC), as the proxy's headers say.
STARTED = 1733260000.0
UPSTREAM = "ws://127.0.0.1:8000"


@dataclass
class Session:
    """A session being recorded: its header, then frames and an end, as lines."""

    header: Header
    items: list[Frame | End] = field(default_factory=list)

    def server(self, t: float, value: Any) -> Session:
        """A text frame from the server: a mapping is sent as its JSON text."""
        self.items.append(
            text_frame(t, "server", value if isinstance(value, str) else encode(value))
        )
        return self

    def client(self, t: float, value: Any) -> Session:
        self.items.append(
            text_frame(t, "client", value if isinstance(value, str) else encode(value))
        )
        return self

    def message(self, t: float, kind: str, message: Any, side: str = "server") -> Session:
        text = message if isinstance(message, str) else encode(message)
        frame = encode({"message_type": kind, "message": text})
        return self.server(t, frame) if side == "server" else self.client(t, frame)

    def add(self, item: Frame | End) -> Session:
        self.items.append(item)
        return self

    def lines(self) -> list[str]:
        return [line(self.header), *(line(item) for item in self.items)]

    def recording(self, file: str | None = None) -> Recording:
        return read_recording(self.lines(), file or f"{self.header.session}.jsonl")


def session(
    endpoint: str, name: str, offset: float = 0.0, kind: str = "websocket", client: str = "ui"
) -> Session:
    header = Header(
        name,
        endpoint,
        kind=kind,  # type: ignore[arg-type]
        query=f"client_id={client}",
        upstream=UPSTREAM,
        client=client,
        started=STARTED + offset,
    )
    return Session(header)


def span(name: str, span_id: str, parent: str | None, at: int, **attributes: str) -> dict[str, Any]:
    """A span as Schwarm's backend sends it in an EVENT's message (as JSON text)."""
    return {
        "id": span_id,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "start_time": str(1733260000_000_000_000 + at),
        "end_time": str(1733260000_002_000_000 + at),
        "status_code": "OK",
        "status_description": "",
        "attributes": {"run_id": "0af7651916cd43dd8448eb211c80319c", **attributes},
    }


TURN = "a3ce929d0e0e4736"


def schwarm_ws() -> Session:
    """The dashboard's /ws: the agent asks, the user answers, spans, a pause and a resume."""
    turn = span(
        "planner - EventType.START_TURN",
        TURN,
        None,
        1,
        agent_id="planner",
        current_turn="1",
        task="Plan the release notes",
    )
    instruct = span(
        "planner - EventType.INSTRUCT",
        "00f067aa0ba902b7",
        TURN,
        2,
        agent_id="planner",
        instruction="You plan releases.",
    )
    tool = span(
        "planner - EventType.TOOL_EXECUTION",
        "53995c3f42cd8ad8",
        TURN,
        3,
        query="Plan the release notes",
    )
    handoff = span(
        "planner - EventType.HANDOFF",
        "c9f1a4e2b3d40617",
        TURN,
        4,
        **{"from": "planner", "to": "coder"},
    )
    ws = session("/ws", "3f2a9c0e1b7d")
    ws.message(0.120, "CHAT_REQUESTED", "What should I do next?")
    ws.message(0.121, "IS_WAITING", "Waiting for user input")
    ws.message(4.250, "CHAT_INPUT", "Plan the release notes", side="client")
    ws.message(4.262, "EVENT", turn)
    ws.message(4.400, "EVENT", instruct)
    ws.message(4.703, "EVENT", tool)
    pause = {"action": "pause", "request_id": "req-7f3a9b21"}
    ws.message(6.010, "PAUSE_REQUEST", pause, side="client")
    ws.message(6.031, "PAUSE_STATUS", "System paused")
    resume = {"action": "resume", "request_id": "req-c41d0e55"}
    ws.message(9.500, "PAUSE_REQUEST", resume, side="client")
    ws.message(9.512, "PAUSE_STATUS", "System resumed")
    ws.message(9.900, "EVENT", handoff)
    ws.add(close_frame(12.000, "client", 1000, ""))
    ws.add(End(12.002, 1000, "", "client"))
    return ws


def schwarm_stream() -> Session:
    """The dashboard's /ws/stream: a tool's output and an answer, each closed."""
    stream = session("/ws/stream", "9a8b7c6d5e4f", offset=0.010)
    t = 4.800
    for chunk in ["search_changelog(", "query='Plan the release notes')", " -> 12 entries"]:
        stream.server(t, {"type": "tool", "content": chunk})
        t += 0.025
    for chunk in ["I found ", "twelve changes ", "since the last release", "."]:
        stream.server(t, {"type": "default", "content": chunk})
        t += 0.033
    stream.server(t, {"type": "close", "content": None})
    stream.add(close_frame(12.001, "client", 1000, ""))
    stream.add(End(12.003, 1000, "", "client"))
    return stream


def http(name: str, offset: float, method: str, path: str, body: Any, status: int = 200) -> Session:
    """One HTTP exchange through the proxy: the request, then the answer (JSON)."""
    exchange = session(path, name, offset, kind="http")
    request = {"method": method, "path": path, "query": "", "headers": {}, "body": ""}
    exchange.add(Frame(0.0, "client", "request", extra=request))
    answer = {"status": status, "headers": {"content-type": "application/json"}}
    exchange.add(Frame(0.004, "server", "response", extra={**answer, "body": json.dumps(body)}))
    return exchange


def schwarm_session() -> list[Recording]:
    """A recorded Schwarm (P5) dashboard session: /ws, /ws/stream, and the break routes
    the dashboard polls and posts (GET /break, POST /break twice)."""
    return [
        schwarm_ws().recording(),
        schwarm_stream().recording(),
        http("h1", 1.0, "GET", "/break", False).recording(),
        http("h2", 6.0, "POST", "/break", True).recording(),
        http("h3", 9.49, "POST", "/break", False).recording(),
    ]


def hour_of_chunks(seconds: float = 3600.0, rate: float = 30.0, seed: int = 7) -> list[Recording]:
    """An hour of a Schwarm backend streaming about ``rate`` chunks a second on
    /ws/stream, with an EVENT span on /ws every few seconds (about 110,000 frames)."""
    rng = random.Random(seed)
    words = ["The ", "plan ", "is ", "to ", "read", " the", " code", ", then", " write", " tests."]
    ws, stream = session("/ws", "hour-ws"), session("/ws/stream", "hour-stream")
    t, number = 0.5, 0
    while t < seconds:
        number += 1
        if number % 100 == 0:
            event = span("agent - TOOL_EXECUTION", f"{number:016x}", TURN, number, step=str(number))
            ws.message(t, "EVENT", event)
        elif number % 500 == 1:
            stream.server(t, {"type": "close", "content": None})
        else:
            stream.server(t, {"type": "default", "content": rng.choice(words)})
        t += rng.uniform(0.6, 1.4) / rate
    return [ws.recording(), stream.recording()]


def frames_of(recordings: Iterable[Recording]) -> int:
    return sum(len(recording.frames) for recording in recordings)
