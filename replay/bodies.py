"""A time limit on receiving a request's body.

uvicorn waits for a body as long as the client likes: a request whose headers announce
100 bytes that never come would hold its connection (and a file descriptor) forever, and
keep ``replay serve`` from stopping, since uvicorn waits for open requests to end.
:class:`BodyDeadline` gives the whole body the time a request has for its headers
(``Server.handshake_timeout`` in :mod:`replay.server`), then answers 408 and closes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Seconds a request may take to send its whole body.
BODY_TIMEOUT = 10.0


class PendingBodies:
    """The request bodies being waited for, so that a server that stops ends them at once
    (answered 503) instead of waiting for their time limit."""

    def __init__(self) -> None:
        self._timers: set[asyncio.Timeout] = set()
        #: Set by :meth:`close`: every wait, now or later, ends at once.
        self.closed = False

    def close(self) -> None:
        """End every wait for a body now, and every one that starts from now on."""
        self.closed = True
        for timer in list(self._timers):
            timer.reschedule(asyncio.get_running_loop().time())

    def __len__(self) -> int:
        """How many bodies are being waited for now."""
        return len(self._timers)

    def add(self, timer: asyncio.Timeout) -> None:
        self._timers.add(timer)

    def discard(self, timer: asyncio.Timeout) -> None:
        self._timers.discard(timer)


@dataclass
class _Progress:
    """How far one request's body and answer have come."""

    received: int = 0
    whole: bool = False  # the whole body came (or the client left)
    started: bool = False  # the app started its answer: the limit no longer applies
    answered: bool = False  # the limit answered: the app's own answer is dropped


class BodyDeadline:
    """ASGI middleware: an HTTP request has ``seconds`` from its start to send its whole
    body, else it is answered 408 (503 when the server is stopping, see
    :class:`PendingBodies`) with ``Connection: close``.

    The app is then told the client left (``http.disconnect``), and whatever it answers
    is dropped. Once the app has started its own answer (a route that does not read the
    body), the limit no longer applies.
    """

    def __init__(
        self, app: ASGIApp, seconds: float = BODY_TIMEOUT, pending: PendingBodies | None = None
    ) -> None:
        self.app = app
        self.seconds = seconds
        self.pending = pending if pending is not None else PendingBodies()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        progress = _Progress()

        async def receive_in_time() -> Message:
            if progress.answered:
                return {"type": "http.disconnect"}
            if progress.whole or progress.started:
                return await receive()  # after the body: only the client leaving comes
            when = asyncio.get_running_loop().time() if self.pending.closed else deadline
            try:
                async with asyncio.timeout_at(when) as timer:
                    self.pending.add(timer)
                    try:
                        message = await receive()
                    finally:
                        self.pending.discard(timer)
            except TimeoutError:
                if not timer.expired():
                    raise
                await self._answer(scope, receive, send, progress)
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                progress.received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                progress.whole = True
            return message

        async def send_unless_answered(message: Message) -> None:
            if progress.answered:
                return
            if message["type"] == "http.response.start":
                progress.started = True
            await send(message)

        await self.app(scope, receive_in_time, send_unless_answered)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, progress: _Progress
    ) -> None:
        progress.answered = True
        if progress.started:
            return
        if self.pending.closed:
            status, detail = 503, "the server is shutting down: send the request again later"
        else:
            announced = Headers(scope=scope).get("content-length")
            said = f" of the {announced} bytes announced" if announced else ""
            status, detail = (
                408,
                f"the request body did not arrive in time: {progress.received} bytes{said} "
                f"came in {self.seconds:g} s. Send the whole body with the request",
            )
        answer = JSONResponse({"detail": detail}, status, headers={"Connection": "close"})
        await answer(scope, receive, send)
