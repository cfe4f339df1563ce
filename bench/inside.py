"""A server of the benchmark with instruments inside: heap snapshots and a profiler that
another process switches on and off with signals (``bench/where.py`` drives it).

    BENCH_INSIDE=/tmp/out python bench/inside.py replay serve --port 8123 ...
    BENCH_INSIDE=/tmp/out python bench/inside.py bare 8123

* each SIGUSR1 writes ``heap-<n>.snapshot`` to the folder; the first one starts
  tracemalloc (10 frames a trace), so the snapshots show what was allocated after it (and
  a start-up that tracemalloc would slow down tenfold is not traced);
* each SIGUSR2 starts cProfile (the main thread: the event loop), the next one stops it
  and writes ``profile-<n>.prof``;
* ``BENCH_INSIDE_ASYNCIO=1``: uvloop and httptools hidden (as ``replay_asyncio.py``).
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any

OUT = Path(os.environ.get("BENCH_INSIDE", "."))
BENCH = Path(__file__).resolve().parent
counter = {"heap": 0, "profile": 0}
profiler: list[cProfile.Profile] = []


def snapshot(_signum: int, _frame: Any) -> None:
    if not tracemalloc.is_tracing():
        tracemalloc.start(10)
    counter["heap"] += 1
    tracemalloc.take_snapshot().dump(str(OUT / f"heap-{counter['heap']}.snapshot"))
    (OUT / f"heap-{counter['heap']}.done").touch()  # the snapshot is complete


def toggle_profile(_signum: int, _frame: Any) -> None:
    if profiler:
        profiler.pop().disable()  # the handler itself is not in the profile
        counter["profile"] += 1
        done = OUT / f"profile-{counter['profile']}.prof"
        last[0].dump_stats(str(done))
        (OUT / f"profile-{counter['profile']}.done").touch()
        return
    last[:] = [cProfile.Profile()]
    profiler.append(last[0])
    last[0].enable()


last: list[cProfile.Profile] = []


def main() -> int:
    if os.environ.get("BENCH_INSIDE_ASYNCIO"):
        sys.modules["uvloop"] = None  # type: ignore[assignment]
        sys.modules["httptools"] = None  # type: ignore[assignment]
    signal.signal(signal.SIGUSR1, snapshot)
    signal.signal(signal.SIGUSR2, toggle_profile)
    target, args = sys.argv[1], sys.argv[2:]
    if target == "bare":
        import bare_server

        bare_server.main(int(args[0]))
        return 0
    # This folder's modules must not shadow anything replay imports.
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
    from replay.cli import main as replay_main

    return replay_main(args)


if __name__ == "__main__":
    sys.exit(main())
