"""Where replay's bytes and microseconds go, against the bare ``websockets`` server.

    uv run python bench/where.py                    # both servers, 1000 clients (~1 min)
    uv run python bench/where.py --clients 2000 --frames 100 --rounds 3 --top 15

A separate check, not part of ``run.py``. Each server runs under ``bench/inside.py``:

1. **Idle memory** (tracemalloc, 10 frames a trace): a heap snapshot of the fresh server,
   then of the server holding ``--clients`` idle clients; the difference, grouped by the
   allocation site (the innermost frame in replay, uvicorn, websockets, starlette or the
   bench, else the innermost one), in bytes per client. tracemalloc sees Python's
   allocations only: the resident memory (VmRSS) per client is printed beside it.
2. **Fan-out** (cProfile, without tracemalloc): ``--clients`` clients, ``--rounds``
   rounds of ``--frames`` frames with no pause, profiled from the trigger to the last
   frame; the functions with the most own time (tottime), in µs per frame per client.
   cProfile's own overhead inflates every call: read the shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from clients import Fleet, stop_clients
from common import HOST, BenchError, memory_kib, poll
from run import play
from servers import BENCH, BareServer, ReplayServer, Server, stop_servers, write_scenario

#: Frames inside these count as the allocation site (the first one from the innermost).
OURS = ("/replay/", "/uvicorn/", "/websockets/", "/starlette/", "/fastapi/", "/bench/")


class InsideReplay(ReplayServer):
    launcher = [str(BENCH / "inside.py"), "replay"]


class InsideBare(BareServer):
    def __init__(self, log_path: Path) -> None:
        super().__init__(log_path)
        self.argv = [sys.executable, str(BENCH / "inside.py"), "bare", str(self.port)]


def signal_and_wait(server: Server, signum: int, done: Path, timeout: float = 60) -> None:
    """Send ``signum``; wait until the server has written ``done`` (an HTTP request wakes
    an idle event loop, so the handler runs at once)."""
    os.kill(server.pid, signum)
    if not poll(lambda: done.exists() or server.count() < -1, timeout, 0.1) or not done.exists():
        raise BenchError(f"the {server.kind} server did not write {done.name}")


def site(trace: tracemalloc.Traceback) -> str:
    for frame in trace:  # innermost first
        if any(part in frame.filename for part in OURS):
            return f"{short(frame.filename)}:{frame.lineno}"
    return f"{short(trace[0].filename)}:{trace[0].lineno}"


def short(filename: str) -> str:
    for part in ("site-packages/", "/lib/python3.11/", "/bench/", "/wt-nodews/"):
        if part in filename:
            return filename.split(part, 1)[1]
    return filename


def heap(kind: str, make: type[Server], clients: int, top: int, folder: Path) -> None:
    out = folder / f"heap-{kind}"
    out.mkdir()
    os.environ.update(BENCH_INSIDE=str(out), BENCH_INSIDE_HEAP="1")
    try:
        server = make_server(make, folder, kind)
    finally:
        os.environ.pop("BENCH_INSIDE_HEAP")
    fleet = Fleet(HOST, server.port, "/ws", 3, 10)
    try:
        server.start()
        play(server, fleet, 1, timeout=30)  # everything lazily built is built
        time.sleep(1.0)
        rss0 = memory_kib(server.pid)
        signal_and_wait(server, signal.SIGUSR1, out / "heap-1.done")
        opened, _ = fleet.open(clients)
        poll(lambda: server.count() == opened, 60, 0.2)
        play(server, fleet, 1, timeout=30)
        time.sleep(1.0)
        rss1 = memory_kib(server.pid)
        signal_and_wait(server, signal.SIGUSR1, out / "heap-2.done")
    finally:
        fleet.stop()
        server.stop()
    before = tracemalloc.Snapshot.load(str(out / "heap-1.snapshot"))
    after = tracemalloc.Snapshot.load(str(out / "heap-2.snapshot"))
    by_site: dict[str, list[int]] = {}
    for stat in after.compare_to(before, "traceback"):
        entry = by_site.setdefault(site(stat.traceback), [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    total = sum(size for size, _ in by_site.values())
    print(
        f"\n{kind}: {opened} idle clients: tracemalloc {total / opened / 1024:.1f} KiB"
        f" per client (Python's allocations), VmRSS {(rss1 - rss0) / opened:.1f} KiB per"
        " client (tracemalloc's own traces included)"
    )
    print(f"  {'bytes/client':>12}  {'blocks/client':>13}  allocation site")
    for name, (size, count) in sorted(by_site.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"  {size / opened:12.0f}  {count / opened:13.1f}  {name}")


def profile(
    kind: str, make: type[Server], clients: int, frames: int, rounds: int, top: int, folder: Path
) -> None:
    out = folder / f"profile-{kind}"
    out.mkdir()
    os.environ["BENCH_INSIDE"] = str(out)
    server = make_server(make, folder, kind)
    fleet = Fleet(HOST, server.port, "/ws", 3, 10)
    try:
        server.start()
        opened, _ = fleet.open(clients)
        poll(lambda: server.count() == opened, 60, 0.2)
        play(server, fleet, frames, timeout=60)  # a warm-up round, not profiled
        os.kill(server.pid, signal.SIGUSR2)
        time.sleep(0.5)
        for _ in range(rounds):
            result = play(server, fleet, frames, timeout=120)
            if not result["ok"]:
                raise BenchError(f"{kind}: a profiled round went wrong")
        signal_and_wait(server, signal.SIGUSR2, out / "profile-1.done")
    finally:
        fleet.stop()
        server.stop()
    stats = pstats.Stats(str(out / "profile-1.prof"))
    sent = opened * frames * rounds
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    print(
        f"\n{kind}: {rounds} rounds of {frames} frames to {opened} clients, profiled:"
        f" {1e6 * total / sent:.2f} µs of CPU (under cProfile) per frame per client"
    )
    print(f"  {'µs/frame/client':>15}  {'share':>5}  {'calls/frame/client':>18}  function")
    rows = sorted(entries.items(), key=lambda kv: -kv[1][2])[:top]
    for (filename, line, name), (_cc, calls, tottime, _ct, _callers) in rows:
        where = f"{short(filename)}:{line}({name})" if line else name
        print(
            f"  {1e6 * tottime / sent:15.3f}  {100 * tottime / total:4.0f}%"
            f"  {calls / sent:18.3f}  {where}"
        )


def make_server(make: type[Server], folder: Path, kind: str) -> Server:
    if issubclass(make, ReplayServer):
        return make(folder, folder / f"{kind}.log")
    return make(folder / f"{kind}.log")  # type: ignore[call-arg]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=50, help="frames a fan-out round")
    parser.add_argument("--rounds", type=int, default=3, help="profiled fan-out rounds")
    parser.add_argument("--top", type=int, default=12, help="rows a table")
    parser.add_argument("--servers", default="replay,bare")
    parser.add_argument("--skip", default="", help="heap,profile")
    args = parser.parse_args()
    kinds = {"replay": InsideReplay, "bare": InsideBare}
    folder = Path(tempfile.mkdtemp(prefix="replay-where-"))
    for frames in (1, args.frames):
        write_scenario(folder, frames, 0.0, 0)
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        for kind in args.servers.split(","):
            if "heap" not in args.skip:
                heap(kind, kinds[kind], args.clients, args.top, folder)
        for kind in args.servers.split(","):
            if "profile" not in args.skip:
                profile(kind, kinds[kind], args.clients, args.frames, args.rounds, args.top, folder)
    except BenchError as error:
        print(f"where: {error}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            stop_clients()
            stop_servers()
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
