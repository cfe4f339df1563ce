"""Opening a connection to the upstream, and a WebSocket session's handshake through it.

The client's handshake is checked first (by the ``websockets`` library, as any server
would); then the proxy connects to the upstream with the same path, query, offered
subprotocols and headers (less hop-by-hop ones: :func:`replay.record.upstream.forwarded`)
and waits for its answer. Only once the upstream has accepted does the client get its
``101``, with the subprotocol the upstream chose and the upstream's other headers
(``Set-Cookie``...). If the upstream cannot be reached or refuses, the client gets
``502`` with a one-line reason (:class:`UpstreamFailed`).
"""

from __future__ import annotations

import asyncio
import ssl

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from replay.errors import ReplayError
from replay.record.bridge import MAX_MESSAGE, READ_SIZE, Peer, wire_logger
from replay.record.http1 import MAX_HEAD, RequestHead
from replay.record.upstream import Upstream, forwarded, offered_subprotocols

#: Seconds the upstream has to accept a connection and answer a handshake.
OPEN_TIMEOUT = 10.0


class UpstreamFailed(ReplayError):
    """The upstream could not be reached, or refused: the client is told 502 and why."""

    def __init__(self, upstream: str, reason: str, status: int = 502) -> None:
        self.upstream, self.reason, self.status = upstream, reason, status
        super().__init__(f"upstream {upstream}: {reason}")


async def dial(
    upstream: Upstream, patience: float = OPEN_TIMEOUT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (TLS for wss) connection to the upstream; raises :class:`UpstreamFailed`."""
    context = ssl.create_default_context() if upstream.secure else None
    try:
        return await asyncio.wait_for(
            asyncio.open_connection(upstream.host, upstream.port, ssl=context, limit=MAX_HEAD),
            patience,
        )
    except TimeoutError:
        raise UpstreamFailed(upstream.url, f"no connection within {patience:g} s") from None
    except (OSError, ssl.SSLError) as error:
        reason = (getattr(error, "strerror", None) or str(error) or type(error).__name__).lower()
        raise UpstreamFailed(upstream.url, f"cannot connect ({reason})") from None


def client_protocol(head: RequestHead) -> tuple[ServerProtocol, Response | None]:
    """The protocol facing the client, fed its handshake, and the answer the library
    would give it: 101, or the error status of a handshake that is not valid. None when
    the library could not read the request at all (it has queued its own answer)."""
    protocol = ServerProtocol(max_size=MAX_MESSAGE, logger=wire_logger)
    protocol.receive_data(head.raw)
    requests = [e for e in protocol.events_received() if isinstance(e, Request)]
    if not requests:
        return protocol, None
    return protocol, protocol.accept(requests[0])


async def connect_upstream(
    upstream: Upstream, head: RequestHead, patience: float = OPEN_TIMEOUT
) -> tuple[Peer, Response]:
    """The upstream side of a session, open: the client's handshake passed on, and the
    upstream's answer. Raises :class:`UpstreamFailed`."""
    reader, writer = await dial(upstream, patience)
    try:
        offered = offered_subprotocols(head.headers)
        protocol = ClientProtocol(
            parse_uri(upstream.url + "/"),
            subprotocols=offered or None,  # type: ignore[arg-type]
            max_size=MAX_MESSAGE,
            logger=wire_logger,
        )
        request = protocol.connect()
        request.path = upstream.target(head.target)
        for name, value in forwarded(head.headers):
            request.headers[name] = value
        protocol.send_request(request)
        peer = Peer("server", protocol, reader, writer)
        peer.flush()
        response = await asyncio.wait_for(_answer(peer, upstream), patience)
    except TimeoutError:
        writer.transport.abort()
        raise UpstreamFailed(upstream.url, f"no handshake answer within {patience:g} s") from None
    except BaseException:
        writer.transport.abort()
        raise
    return peer, response


async def _answer(peer: Peer, upstream: Upstream) -> Response:
    """Read the upstream's handshake answer; frames that came with it are kept in
    ``peer.early``."""
    protocol = peer.protocol
    assert isinstance(protocol, ClientProtocol)
    while True:
        try:
            data = await peer.reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            data = b""
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        events = protocol.events_received()
        responses = [event for event in events if isinstance(event, Response)]
        if responses:
            _check(protocol, upstream)
            peer.early = [event for event in events if isinstance(event, Frame)]
            return responses[0]
        if not data:
            raise UpstreamFailed(upstream.url, "it closed the connection during the handshake")


def _check(protocol: ClientProtocol, upstream: Upstream) -> None:
    problem = protocol.handshake_exc
    if problem is None:
        return
    if isinstance(problem, InvalidStatus):
        answer = problem.response
        raise UpstreamFailed(
            upstream.url,
            f"it refused the WebSocket handshake: HTTP {answer.status_code} "
            f"{answer.reason_phrase}".rstrip(),
        )
    raise UpstreamFailed(upstream.url, f"its handshake answer is not valid ({problem})")


def accepted(response: Response, upstream_answer: Response, subprotocol: str | None) -> Response:
    """The client's 101: the library's, with the subprotocol the upstream chose and the
    upstream's other headers (cookies it sets...)."""
    headers = response.headers
    if subprotocol is not None:
        headers["Sec-WebSocket-Protocol"] = subprotocol
    present = {name.lower() for name, _ in headers.raw_items()}
    for name, value in forwarded(upstream_answer.headers.raw_items()):
        if name.lower() not in present:
            headers[name] = value
    return response
