"""Logging filters ``replay serve`` installs: secrets out of uvicorn's request lines, and
no flood of asyncio's repeated errors.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

#: Query parameters whose value is a secret (matched in lower case: ``token``,
#: ``access_token``, ``api_key``, ``password``, ``auth``, ``sig`` ...).
SECRET_NAMES = re.compile(
    r"token|secret|passw|pwd|api[-_]?key|apikey|authori[sz]ation|credential|session"
    r"|signature|^(auth|key|sig)$"
)
#: What a secret is replaced with.
REDACTED = "***"
#: A query string in a log line: from "?" to the first space, quote or "#".
_QUERY = re.compile(r"\?[^\s\"'#]*")


def redact(text: str) -> str:
    """``text`` with the value of every secret-looking query parameter replaced by
    ``***`` (``/events?token=s3cret&kinds=run.`` gives ``/events?token=***&kinds=run.``)."""
    return _QUERY.sub(_redact_query, text)


def _redact_query(found: re.Match[str]) -> str:
    pairs = found.group(0)[1:].split("&")
    for index, pair in enumerate(pairs):
        name, equals, _ = pair.partition("=")
        # Encoded or not: the server decodes the name before it reads the token.
        if equals and SECRET_NAMES.search(unquote_plus(name).lower()):
            pairs[index] = f"{name}={REDACTED}"
    return "?" + "&".join(pairs)


class Redact(logging.Filter):
    """Takes secrets out of log lines: see :func:`redact`. For uvicorn's access and error
    loggers, whose lines hold each request's path and query (the dashboard's event feed
    carries ``?token=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact(arg) if isinstance(arg, str) and "?" in arg else arg for arg in record.args
            )
        elif record.args is None and isinstance(record.msg, str) and "?" in record.msg:
            record.msg = redact(record.msg)
        return True


class Throttle(logging.Filter):
    """Lets the same message through at most once every ``every`` seconds, and says how
    many were held back when it next lets it through.

    For asyncio's logger: out of file descriptors, its accept loop reports
    ``socket.accept() out of system resource`` (with a traceback) up to 2048 times per
    attempt, attempts again a second later for each report, and filled a log with
    hundreds of megabytes a minute. Messages are told apart by their first line.
    """

    #: Messages remembered at once; the oldest is forgotten past that.
    REMEMBERED = 256

    def __init__(self, every: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        #: First line of a message: (when it was last let through, how many held back since).
        self.seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = record.getMessage().partition("\n")[0][:200]
        now = self.clock()
        last = self.seen.get(key)
        if last is not None and now - last[0] < self.every:
            self.seen[key] = (last[0], last[1] + 1)
            return False
        self.seen.pop(key, None)
        self.seen[key] = (now, 0)
        if len(self.seen) > self.REMEMBERED:
            del self.seen[next(iter(self.seen))]
        if last is not None and last[1]:
            record.msg = (
                f"{record.getMessage()}\n({last[1]} more like this in the last "
                f"{now - last[0]:.0f} s, not shown: at most one every {self.every:g} s)"
            )
            record.args = None
        return True
