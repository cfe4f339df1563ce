"""The logging filters replay serve installs (replay/logs.py): asyncio's repeated errors held
back."""

from __future__ import annotations

import logging

from replay.logs import Throttle


def test_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    throttle = Throttle(every=10, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    accept = "socket.accept() out of system resource\nsocket: <fd=6>"
    assert throttle.filter(record(accept))
    assert not any(throttle.filter(record(accept)) for _ in range(2047))
    assert throttle.filter(record("another error"))  # another message is not held back
    now[0] = 9.9
    assert not throttle.filter(record(accept))
    now[0] = 10.0
    again = record(accept)
    assert throttle.filter(again)
    assert again.getMessage().endswith(
        "(2048 more like this in the last 10 s, not shown: at most one every 10 s)"
    )
    now[0] = 30.0
    third = record(accept)
    assert throttle.filter(third)
    assert third.getMessage() == accept  # nothing was held back since
