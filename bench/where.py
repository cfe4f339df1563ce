"""Where replay's bytes and microseconds go, against the bare ``websockets`` server.

    uv run python bench/where.py                    # both servers, 1000 clients (~1 min)
    uv run python bench/where.py --clients 2000 --frames 100 --rounds 3 --top 15

A separate check, not part of ``run.py``. Each server runs under ``bench/inside.py``:

1. **Idle memory** (tracemalloc, 10 frames a trace, started on the fresh server): a heap
   snapshot of the fresh server, then of the server holding ``--clients`` idle clients
   (connected, one frame played to them, then idle 1 s); the difference, grouped by the
   allocation site (the innermost frame in replay, uvicorn, websockets, starlette, fastapi
   or the bench, "> the innermost frame" when that is in another library), in bytes per
   client. tracemalloc sees Python's
   allocations only: the resident memory (VmRSS) per client is printed beside it.
2. **Fan-out** (cProfile, without tracemalloc): ``--clients`` clients, ``--rounds``
   rounds of ``--frames`` frames with no pause, profiled from the trigger to the last
   frame; the functions with the most own time (tottime), in µs per frame per client.
   cProfile's own overhead inflates every call: read the shares, not the absolute times.
   Its timer is the wall clock (cheap to read; on a busy machine it counts waits for a
   core too): a CPU-time timer costs a system call per call and distorts the shares more.
3. **Trigger** (cProfile): ``--triggers`` one-frame triggers to ``--latency-clients``
   clients (replay: ``?wait=false``), 10 ms apart: the functions with the most own time
   per trigger, and the server's own functions by cumulative time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import shutil
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

    def written() -> bool:
        server.count()  # the wake-up
        return done.exists()

    if not poll(written, timeout, 0.1):
        raise BenchError(f"the {server.kind} server did not write {done.name}")


def site(trace: tracemalloc.Traceback) -> tuple[str, str]:
    """The allocation's module and line: the innermost frame in OURS (a Traceback runs
    from the oldest frame to the newest), with the innermost frame after ">" when that is
    in another library (asyncio, h11, json, ...)."""
    frames = list(trace)
    innermost = frames[-1]
    for frame in reversed(frames):
        if any(part in frame.filename for part in OURS):
            line = f"{short(frame.filename)}:{frame.lineno}"
            if frame != innermost:
                line += f" > {short(innermost.filename)}:{innermost.lineno}"
            return short(frame.filename), line
    return short(innermost.filename), f"{short(innermost.filename)}:{innermost.lineno}"


def short(filename: str) -> str:
    for part in ("site-packages/", "/lib/python3.11/", "/bench/", "/wt-nodews/"):
        if part in filename:
            return filename.split(part, 1)[1]
    return filename


def heap(kind: str, make: type[Server], clients: int, top: int, folder: Path) -> None:
    out = folder / f"heap-{kind}"
    out.mkdir()
    server = make_server(make, folder, kind)
    fleet = Fleet(HOST, server.port, "/ws", 3, 10)
    try:
        os.environ["BENCH_INSIDE"] = str(out)
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
    by_module: dict[str, list[int]] = {}
    by_line: dict[str, list[int]] = {}
    for stat in after.compare_to(before, "traceback"):
        module, line = site(stat.traceback)
        for table, key in ((by_module, module), (by_line, line)):
            entry = table.setdefault(key, [0, 0])
            entry[0] += stat.size_diff
            entry[1] += stat.count_diff
    total = sum(size for size, _ in by_module.values())
    print(
        f"\n{kind}: {opened} idle clients: tracemalloc {total / opened / 1024:.1f} KiB"
        f" per client (Python's allocations), VmRSS {(rss1 - rss0) / opened:.1f} KiB per"
        " client (tracemalloc's own traces included)"
    )
    for title, table in (("module", by_module), ("line", by_line)):
        print(f"  {'bytes/client':>12}  {'blocks/client':>13}  allocation site ({title})")
        for name, (size, count) in sorted(table.items(), key=lambda kv: -kv[1][0])[:top]:
            print(f"  {size / opened:12.0f}  {count / opened:13.1f}  {name}")


def profile(
    kind: str, make: type[Server], args: argparse.Namespace, folder: Path, what: str
) -> None:
    """cProfile inside the server over a fan-out (``what`` = "fanout") or over one-frame
    triggers ("trigger"); prints the functions with the most own time."""
    out = folder / f"{what}-{kind}"
    out.mkdir()
    server = make_server(make, folder, kind)
    fleet = Fleet(HOST, server.port, "/ws", 3, 10)
    clients = args.clients if what == "fanout" else args.latency_clients
    frames = args.frames if what == "fanout" else 1
    times = args.rounds if what == "fanout" else args.triggers
    try:
        os.environ["BENCH_INSIDE"] = str(out)
        server.start()
        opened, _ = fleet.open(clients)
        poll(lambda: server.count() == opened, 60, 0.2)
        for _ in range(3):  # warm-up rounds, not profiled
            play(server, fleet, frames, wait=what == "fanout", timeout=60)
        os.kill(server.pid, signal.SIGUSR2)
        time.sleep(0.5)
        for _ in range(times):
            result = play(server, fleet, frames, wait=what == "fanout", timeout=120)
            if not result["ok"]:
                raise BenchError(f"{kind}: a profiled round went wrong")
            time.sleep(0.01)
        time.sleep(0.2)
        signal_and_wait(server, signal.SIGUSR2, out / "profile-1.done")
    finally:
        fleet.stop()
        server.stop()
    stats = pstats.Stats(str(out / "profile-1.prof"))
    entries = {
        key: value
        for key, value in stats.stats.items()  # type: ignore[attr-defined]
        if key[2] != "<method 'poll' of 'select.epoll' objects>"  # waiting, not working
    }
    total = sum(tt for _, _, tt, _, _ in entries.values())
    if what == "fanout":
        unit, per = opened * frames * times, "frame/client"
        print(
            f"\n{kind}: {times} rounds of {frames} frames to {opened} clients, profiled:"
            f" {1e6 * total / unit:.2f} µs (wall clock under cProfile, waiting in epoll"
            " left out) per frame per client"
        )
    else:
        unit, per = times, "trigger"
        print(
            f"\n{kind}: {times} one-frame triggers to {opened} clients, profiled:"
            f" {1e6 * total / unit:.0f} µs (wall clock under cProfile, waiting in epoll"
            " left out) per trigger, from reading the request to the last write"
        )
    print(f"  {'µs/' + per:>17}  {'share':>5}  {'calls/' + per:>19}  function (own time)")
    rows = sorted(entries.items(), key=lambda kv: -kv[1][2])[: args.top]
    for (filename, line, name), (_cc, calls, tottime, _ct, _callers) in rows:
        where = f"{short(filename)}:{line}({name})" if line else name
        print(
            f"  {1e6 * tottime / unit:17.3f}  {100 * tottime / total:4.0f}%"
            f"  {calls / unit:19.3f}  {where}"
        )
    if what == "trigger":
        mine = [(k, v) for k, v in entries.items() if "/replay/" in k[0] or "bare" in k[0]]
        print(f"  {'µs/trigger':>17}  {'':>5}  {'':>19}  {kind}'s functions (cumulative time)")
        for (filename, line, name), (_cc, _calls, _tt, cumtime, _callers) in sorted(
            mine, key=lambda kv: -kv[1][3]
        )[: args.top]:
            where = f"{short(filename)}:{line}({name})"
            print(f"  {1e6 * cumtime / unit:17.0f}  {'':>5}  {'':>19}  {where}")


def make_server(make: type[Server], folder: Path, kind: str) -> Server:
    if issubclass(make, ReplayServer):
        return make(folder, folder / f"{kind}.log")
    return make(folder / f"{kind}.log")  # type: ignore[call-arg]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=50, help="frames a fan-out round")
    parser.add_argument("--rounds", type=int, default=3, help="profiled fan-out rounds")
    parser.add_argument("--latency-clients", type=int, default=100)
    parser.add_argument("--triggers", type=int, default=30, help="profiled one-frame triggers")
    parser.add_argument("--top", type=int, default=12, help="rows a table")
    parser.add_argument("--servers", default="replay,bare")
    parser.add_argument("--skip", default="", help="heap,fanout,trigger")
    parser.add_argument(
        "--keep", action="store_true", help="keep the snapshots and profiles (a temp folder)"
    )
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
        for what in ("fanout", "trigger"):
            for kind in args.servers.split(","):
                if what not in args.skip:
                    profile(kind, kinds[kind], args, folder, what)
    except BenchError as error:
        print(f"where: {error}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(Exception):
            stop_clients()
            stop_servers()
        if args.keep:
            print(f"snapshots and profiles: {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nload average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
