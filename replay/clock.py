"""Clocks for the runner: the real monotonic one, and a virtual one for tests.

The runner never reads time itself; it asks its clock. Deadlines are absolute values on
the clock's timeline, so time spent sending never shifts later frames.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the runner needs from a clock."""

    def now(self) -> float:
        """Seconds on a monotonic timeline (the origin is arbitrary)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once if it already is)."""
        ...


class MonotonicClock:
    """Real time, on the same monotonic clock asyncio schedules with."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """A clock that jumps to each deadline at once, for tests that must not sleep.

    ``sleeps`` records every deadline waited for, in order.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward, as if ``seconds`` had passed."""
        self._now += seconds

    async def sleep_until(self, deadline: float) -> None:
        self.sleeps.append(deadline)
        self._now = max(self._now, deadline)
        await asyncio.sleep(0)  # still a suspension point, like a real sleep


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`), for tests of runs that
    wait for something besides time, such as a client's answer."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every sleeper whose deadline passed run."""
        self._now += seconds
        for deadline, future in list(self._sleepers):
            if deadline <= self._now and not future.done():
                future.set_result(None)
        for _ in range(10):  # let the woken tasks get on with it
            await asyncio.sleep(0)

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        entry = (deadline, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            self._sleepers.remove(entry)
