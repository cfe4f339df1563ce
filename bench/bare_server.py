"""The "bare" reference: a minimal server on the ``websockets`` library, fanning out with
its ``broadcast()``.

    python bench/bare_server.py PORT

* ``/ws``: clients connect and are kept in a set until they go;
* ``/echo``: every message sent back at once (not kept in the set: ``bench/proxy.py``'s
  round trips);
* ``GET /trigger?frames=M&pause=S&pad=P&repeat=K``: plays M frames (K times over) to every
  client, ``broadcast()`` once per frame, S seconds apart (on an absolute schedule: frame i
  is due at start + i*S, so time spent sending never delays later frames; S=0: all in a
  row, no pause), and answers when done;
* ``GET /count``: ``{"clients": n}``.

websockets' HTTP parser takes only GET, so the trigger is a GET answered from
``process_request`` (before any WebSocket handshake). Everything else is the library's
defaults: no per-client queue, no backpressure (``broadcast()`` writes to every
connection's buffer, however full), keepalive pings every 20 s with a 20 s timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

from common import CHILD_LIFETIME, HOST, frame, raise_open_files_limit


def main(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(name)s: %(message)s")
    raise_open_files_limit()
    clients: set[Any] = set()

    async def play(frames: int, pause: float, pad: int, repeat: int) -> None:
        loop = asyncio.get_running_loop()
        encoded = [frame(i, pad).encode() for i in range(frames)] * repeat
        start = loop.time()
        for i, data in enumerate(encoded):
            if pause:
                delay = start + i * pause - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            broadcast(clients, data, text=True)

    async def process_request(connection: Any, request: Any) -> Any:
        url = urlsplit(request.path)
        if url.path in ("/ws", "/echo"):
            return None  # the WebSocket handshake goes on
        if url.path == "/count":
            return connection.respond(200, json.dumps({"clients": len(clients)}) + "\n")
        if url.path == "/trigger":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            frames = int(query.get("frames", 1))
            pause, pad = float(query.get("pause", 0)), int(query.get("pad", 0))
            await play(frames, pause, pad, int(query.get("repeat", 1)))
            answer = {"status": "success", "frames": frames, "clients": len(clients)}
            return connection.respond(200, json.dumps(answer) + "\n")
        return connection.respond(404, "not found\n")

    async def handler(connection: Any) -> None:
        if connection.request.path == "/echo":
            async for message in connection:
                await connection.send(message)
            return
        clients.add(connection)
        try:
            await connection.wait_closed()
        finally:
            clients.discard(connection)

    async def run() -> None:
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.cancel)
        async with serve(handler, HOST, port, process_request=process_request, backlog=2048):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(stop, CHILD_LIFETIME)

    with contextlib.suppress(TimeoutError):
        asyncio.run(run())


if __name__ == "__main__":
    main(int(sys.argv[1]))
