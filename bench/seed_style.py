"""The "seed-style" reference: the design of the original test server, on FastAPI.

    python bench/seed_style.py PORT

As in the seed (see /work/shared/original-test-server-README.md): a manager keeps a list of
connections and sends a message to one client after another, awaiting each send
(``for ws in connections: await ws.send_text(...)``); the WebSocket handler accepts and then
idles in a ``sleep(0.1)`` loop, never reading. The seed's fixed pauses (0.5 s between
messages) are replaced by the benchmark's: ``POST /trigger?frames=M&pause=S&pad=P&repeat=K``
sends M frames (K times over) with ``await asyncio.sleep(S)`` after each (S=0: no pause),
and answers when done. ``GET /healthz`` gives ``{"clients": n}``.

It runs on uvicorn with the same defaults as ``replay serve`` (h11, websockets-sansio,
asyncio loop, keepalive pings every 20 s).
"""

from __future__ import annotations

import asyncio
import sys

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
app = FastAPI(title="seed-style test server")


@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    await manager.connect(websocket)
    try:
        while True:  # the seed's idle loop, on purpose  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    except WebSocketDisconnect:
        manager.disconnect(websocket)


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
    return {"status": "ok", "clients": len(manager.active_connections)}


if __name__ == "__main__":
    raise_open_files_limit()
    uvicorn.run(app, host=HOST, port=int(sys.argv[1]), log_level="warning")
