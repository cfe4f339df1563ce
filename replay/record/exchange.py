"""Plain HTTP requests through the recording proxy: one request per connection, passed
on to the upstream's http(s) origin and answered with what it answers, recorded as an
``http`` session (a request line and a response line).

The request goes on with its method, path, query, headers (less hop-by-hop ones, with
the upstream's ``Host``) and body; ``Connection: close`` on both hops keeps it one
request per connection. Bodies are read whole, up to :data:`~replay.record.http1.MAX_BODY`
each way (chunked ones decoded), and passed on with a ``Content-Length``. A client that
sends ``Expect: 100-continue`` is told to go on by the proxy itself.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from replay.record.format import Header
from replay.record.http1 import (
    HttpMessageInvalid,
    RequestHead,
    ResponseHead,
    header,
    no_body,
    parse_response_head,
    plain_response,
    read_body,
    read_head,
    request_bytes,
    response_bytes,
)
from replay.record.opening import UpstreamFailed, dial
from replay.record.redact import redact_headers, redact_query, shown_target
from replay.record.sessions import Recorder, SessionInfo, new_session_id
from replay.record.upstream import Upstream, forwarded, query_value, split_target

#: Seconds the upstream has to answer a plain request, body and all.
ANSWER_TIMEOUT = 60.0
#: Seconds a client has to send a request's body.
BODY_TIMEOUT = 30.0
_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
}
_GATEWAY = {502: "Bad Gateway", 504: "Gateway Timeout"}


@dataclass(frozen=True)
class Answer:
    """The upstream's response, its body read whole."""

    head: ResponseHead
    body: bytes


async def exchange(
    upstream: Upstream,
    head: RequestHead,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    recorder: Recorder,
) -> None:
    """Pass one plain request on, answer the client, and record both."""
    started, wall = time.monotonic(), time.time()
    if (header(head.headers, "expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body: bytes | HttpMessageInvalid
    try:
        body = await asyncio.wait_for(read_body(reader, head.headers, to_eof=False), BODY_TIMEOUT)
    except TimeoutError:
        body = HttpMessageInvalid(f"the body did not come within {BODY_TIMEOUT:g} s", 408)
    except HttpMessageInvalid as error:
        body = error
    if isinstance(body, HttpMessageInvalid):
        writer.write(plain_response(body.status, _REASONS.get(body.status, ""), body.reason))
        return
    answer = await _ask_in_time(upstream, head, body)
    if isinstance(answer, UpstreamFailed):
        writer.write(plain_response(answer.status, _GATEWAY[answer.status], str(answer)))
        recorder.observer.refused(f"{head.method} {shown_target(head.target)}", str(answer))
        return
    writer.write(_answer_bytes(head.method, answer))
    _record(recorder, upstream, head, (body, answer), started, wall)


async def _ask_in_time(
    upstream: Upstream, head: RequestHead, body: bytes
) -> Answer | UpstreamFailed:
    """The upstream's answer, or why there is none (504 past :data:`ANSWER_TIMEOUT`)."""
    try:
        return await asyncio.wait_for(_ask(upstream, head, body), ANSWER_TIMEOUT)
    except TimeoutError:
        return UpstreamFailed(upstream.http_url, f"no answer within {ANSWER_TIMEOUT:g} s", 504)
    except UpstreamFailed as error:
        return error


def _answer_bytes(method: str, answer: Answer) -> bytes:
    status, headers = answer.head.status, forwarded(answer.head.headers)
    if no_body(method, status):
        length = header(answer.head.headers, "content-length")
        if length is not None and status not in (204,) and not 100 <= status < 200:
            headers.append(("Content-Length", length))  # what a GET would get
        return response_bytes(status, answer.head.reason, headers, b"", length=False)
    return response_bytes(status, answer.head.reason, headers, answer.body)


async def _ask(upstream: Upstream, head: RequestHead, body: bytes) -> Answer:
    """Send the request to the upstream and read its whole answer."""
    reader, writer = await dial(upstream)
    try:
        headers = [("Host", upstream.netloc), *forwarded(head.headers)]
        writer.write(request_bytes(head.method, upstream.target(head.target), headers, body))
        while True:  # interim answers (103 Early Hints...) are not passed on
            raw = await read_head(reader, status=502)
            if not raw:
                raise UpstreamFailed(upstream.http_url, "it closed the connection unanswered")
            answer = parse_response_head(raw)
            if not 100 <= answer.status < 200:
                break
        if no_body(head.method, answer.status):
            return Answer(answer, b"")
        return Answer(answer, await read_body(reader, answer.headers, to_eof=True, status=502))
    except HttpMessageInvalid as error:
        raise UpstreamFailed(upstream.http_url, f"its answer is not valid: {error}") from None
    except (ConnectionError, OSError) as error:
        raise UpstreamFailed(upstream.http_url, f"the connection failed ({error})") from None
    finally:
        writer.transport.abort()


def _record(
    recorder: Recorder,
    upstream: Upstream,
    head: RequestHead,
    exchanged: tuple[bytes, Answer],
    started: float,
    wall: float,
) -> None:
    """Write the exchange down as an ``http`` session: header, request, response, end."""
    body, answer = exchanged
    path, query = split_target(head.target)
    header_line = Header(
        session=new_session_id(),
        endpoint=path,
        kind="http",
        query=redact_query(query),
        headers=redact_headers(head.headers),
        upstream=upstream.http_url,
        client=query_value(query, "client_id"),
        started=wall,
    )
    recording = recorder.writer(header_line, start=started)
    target = f"{head.method} {shown_target(head.target)}"
    info = SessionInfo(header_line.session, "http", target, recording.path, answer.head.status)
    recorder.observer.opened(info)
    recording.request(head.method, head.target, head.headers, body)
    recording.response(answer.head.status, answer.head.headers, answer.body)
    end = recording.end(None, "", "server")
    recorder.observer.closed(info, end, {"client": 1, "server": 1})
