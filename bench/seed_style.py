"""The "seed-style" reference: the design of the original test server, on FastAPI.

    python bench/seed_style.py PORT

As in the seed (see /work/shared/original-test-server-README.md): a manager keeps a list of
connections and sends a message to one client after another, awaiting each send
(``for ws in connections: await ws.send_text(...)``); the WebSocket handler accepts and then
idles in a ``sleep(0.1)`` loop, never reading. The seed's fixed pauses (0.5 s between
messages) are replaced by the benchmark's: ``POST /trigger?frames=M&pause=S&pad=P&repeat=K``
sends M frames (K times over) with ``await asyncio.sleep(S)`` after each (S=0: no pause),
and answers when done. ``GET /healthz`` gives ``{"clients": n}``.

The original's own endpoints are kept as well (the round-trip test records them,
tests/test_e2e_record.py): ``/ws/stream``, served by a second manager of the same kind, and
``POST /trigger/messages`` (CHAT_REQUESTED, IS_WAITING, EVENT and PAUSE_STATUS on ``/ws``,
0.5 s after each), ``POST /trigger/stream`` (three chunks on ``/ws/stream``, 0.2 s after
each, then the end-of-stream frame) and ``POST /trigger/all`` (both, in turn), each
answering once done; frames as Starlette's ``send_json`` writes them, as the original's.

It runs on uvicorn with the same defaults as ``replay serve`` (h11, websockets-sansio,
asyncio loop, keepalive pings every 20 s).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvicorn
from common import HOST, frame, raise_open_files_limit
from fastapi import FastAPI, WebSocket, WebSocketDisconnect


class WebsocketManager:
    """The seed's manager: a list of connections, sent to one at a time."""

    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        if websocket in self.active_connections:
            self.active_connections.remove(websocket)

    async def send_message(self, text: str) -> None:
        for connection in list(self.active_connections):
            try:
                await connection.send_text(text)
            except Exception:  # the client has gone
                self.disconnect(connection)


manager = WebsocketManager()
stream_manager = WebsocketManager()  # the seed's StreamManager: the same design, for /ws/stream
app = FastAPI(title="seed-style test server")

#: The original's /trigger/messages: (message_type, message), 0.5 s after each.
MESSAGES = (
    ("CHAT_REQUESTED", "Test chat request"),
    ("IS_WAITING", "Waiting for user input"),
    ("EVENT", "Test event message"),
    ("PAUSE_STATUS", "System paused"),
)
#: The original's /trigger/stream: chunks 0.2 s after each, then the end of the stream.
CHUNKS = ("This is a ", "streaming message ", "sent in chunks.")


def as_json(value: Any) -> str:
    """``value`` as Starlette's ``send_json`` writes it."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def idle(websocket: WebSocket, connections: WebsocketManager) -> None:
    await connections.connect(websocket)
    try:
        while True:  # the seed's idle loop, on purpose  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    except WebSocketDisconnect:
        connections.disconnect(websocket)


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await idle(websocket, manager)


@app.websocket("/ws/stream")
async def stream_endpoint(websocket: WebSocket) -> None:
    await idle(websocket, stream_manager)


async def send_messages() -> None:
    for message_type, message in MESSAGES:
        await manager.send_message(as_json({"message_type": message_type, "message": message}))
        await asyncio.sleep(0.5)


async def send_stream() -> None:
    for chunk in CHUNKS:
        await stream_manager.send_message(as_json({"type": "default", "content": chunk}))
        await asyncio.sleep(0.2)
    await stream_manager.send_message(as_json({"type": "close", "content": None}))


@app.post("/trigger/messages")
async def trigger_messages() -> dict[str, str]:
    await send_messages()
    return {"status": "success", "message": "Messages sent"}


@app.post("/trigger/stream")
async def trigger_stream() -> dict[str, str]:
    await send_stream()
    return {"status": "success", "message": "Stream sent"}


@app.post("/trigger/all")
async def trigger_all() -> dict[str, str]:
    await send_messages()
    await send_stream()
    return {"status": "success", "message": "All messages sent"}


@app.post("/trigger")
async def trigger(
    frames: int = 1, pause: float = 0.0, pad: int = 0, repeat: int = 1
) -> dict[str, object]:
    for _ in range(repeat):
        for i in range(frames):
            await manager.send_message(frame(i, pad))
            if pause:
                await asyncio.sleep(pause)
    return {"status": "success", "frames": frames, "clients": len(manager.active_connections)}


@app.get("/healthz")
async def healthz() -> dict[str, object]:
    return {
        "status": "ok",
        "clients": len(manager.active_connections),
        "stream_clients": len(stream_manager.active_connections),
    }


if __name__ == "__main__":
    raise_open_files_limit()
    uvicorn.run(app, host=HOST, port=int(sys.argv[1]), log_level="warning")
