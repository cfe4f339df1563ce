"""Logging filters ``replay serve`` installs: no flood of asyncio's repeated errors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


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
