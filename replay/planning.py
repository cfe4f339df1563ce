"""Plans made off the event loop, and remembered per version of the files they read.

Playing a scenario on paper (:func:`replay.timeline.build_timeline`) takes about 10 µs a
cue, so planning a long scenario holds the CPU for seconds (a converted recording of
100,000 frames). Done on the event loop, every playing run's frames would be that late
each time the dashboard lists the scenarios or a trigger plans its run. Here plans (and
scenario pages) are made in one worker thread (the loop gets the interpreter back within
``sys.getswitchinterval()``: 0.25 ms while a server runs, see
:data:`replay.server.SWITCH_INTERVAL`; and the large trees a plan leaves behind are
freed a piece at a time, see :mod:`replay.freeing`), and :class:`Summaries` makes each scenario's
summary once per version of its files.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from replay.catalog import Catalog
from replay.errors import ReplayError
from replay.loader import without_cycle_collection
from replay.scenario import Scenario
from replay.timeline import MAX_CUES, Timeline, build_timeline

T = TypeVar("T")

#: One thread: plans queue up rather than multiply, and the loop competes with one.
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-plan")
#: Cues planned for a summary in a listing (enough to count a long recording's frames).
SUMMARY_CUES = MAX_CUES
#: Cues of a scenario that repeats forever planned to see whether it waits.
FOREVER_CUES = 200
#: Frame text a timeline shown in full may hold; a longer one is cut off.
SHOWN_BYTES = 8 * 1024 * 1024


async def off_loop(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``work(*args, **kwargs)`` in the planning thread; the caller's loop goes on."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _WORKER, functools.partial(_uncollected, work, *args, **kwargs)
    )


def _uncollected(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # A plan or a page makes tens of thousands of new objects (cues, a page's steps),
    # none in a cycle, which the cycle collector would walk again and again while they
    # live: passes of up to 5 ms each, the interpreter held throughout. Reference
    # counting frees them as always.
    with without_cycle_collection():
        return work(*args, **kwargs)


def limit_for(name: str, catalog: Catalog, limit: int) -> int:
    """``limit``, or :data:`FOREVER_CUES` if the named scenario repeats forever (planned
    further, it would only go on: enough to see whether it waits)."""
    cost = catalog.costs.get(name)
    return FOREVER_CUES if cost is not None and cost.steps == float("inf") else limit


def summary(name: str, catalog: Catalog) -> Timeline | None:
    """The named scenario's counts (frames, waits, duration), without its cues; None if it
    cannot be planned without a client's answers. Runs in the caller's thread."""
    limit = limit_for(name, catalog, SUMMARY_CUES)
    try:
        return build_timeline(name, catalog, limit=limit, keep=False)
    except ReplayError:
        return None  # it needs what a client will send; the real run may still play


def shown(name: str, catalog: Catalog) -> Timeline | None:
    """The named scenario's timeline with its cues, bounded in cues and bytes, for one
    scenario's page; None if it cannot be planned. Runs in the caller's thread."""
    try:
        return build_timeline(name, catalog, max_bytes=SHOWN_BYTES)
    except ReplayError:
        return None


@dataclass
class _Entry:
    #: The scenario models the summary was made from (kept, so that identity is version).
    versions: tuple[Scenario | None, ...]
    future: asyncio.Future[Timeline | None]


class Summaries:
    """Each scenario's summary, made off the loop once per version of the files it
    reads (itself and the scenarios it plays); concurrent askers share one making."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    async def of(self, name: str, catalog: Catalog) -> Timeline | None:
        versions = _versions(name, catalog)
        entry = self._entries.get(name)
        if entry is None or not _same(entry.versions, versions) or entry.future.cancelled():
            future = asyncio.ensure_future(off_loop(summary, name, catalog))
            entry = self._entries[name] = _Entry(versions, future)
        return await asyncio.shield(entry.future)

    def forget(self, keep: set[str]) -> None:
        """Drop summaries of scenarios not in ``keep`` (files that were removed)."""
        for name in set(self._entries) - keep:
            del self._entries[name]


def _versions(name: str, catalog: Catalog) -> tuple[Scenario | None, ...]:
    """The models a plan of ``name`` reads: a file's model is replaced when it changes."""
    seen: dict[str, Scenario | None] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen or current not in catalog:
            continue
        loaded = catalog.file(current)
        seen[current] = loaded.scenario
        pending.extend(target for _, target in loaded.plays)
    return tuple(seen[key] for key in sorted(seen))


def _same(old: tuple[Scenario | None, ...], new: tuple[Scenario | None, ...]) -> bool:
    return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))
