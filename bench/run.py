"""The benchmark suite: replay against a bare ``websockets`` server, a Node ``ws`` server and
a seed-style server.

Run from the project root::

    uv run python bench/run.py            # the full suite (about 10 minutes on 2 cores)
    uv run python bench/run.py --quick    # a smoke run (about 3 minutes)
    uv run python bench/run.py --help     # every knob

replay, bare and Node ``ws`` are started (fresh) and put through every benchmark side by
side, their rounds alternating, so that changes in the machine's background load hit all
alike; then seed-style alone (its idle handlers would use CPU during the others'
measurements). ``--servers replay,replay-asyncio,...`` adds replay on asyncio and h11 (uvloop
and httptools hidden), to measure what they bring in the same run:

1. idle cost: clients connected in steps (100, 1000, 5000), the server's CPU and memory;
2. fan-out: M frames with no pause to N clients (5000, 1000, 100, 10: the fleet shrinks);
3. timing accuracy: 1000 frames 10 ms apart to 100 clients, lateness against the schedule;
4. trigger latency: 50 one-frame triggers, POST to the first frame at a client;
5. stalled client: 100 healthy clients plus one that never reads, against the same run
   without it.

Then it prints one table per benchmark (absolute figures and replay/bare, replay/seed
ratios) and a table of targets, and writes ``results.json`` and ``scaling.png`` to
``bench/results/<time>/`` (git-ignored; the plot is also copied to ``bench/scaling.png``).
Everything runs on 127.0.0.1; every wait is bounded; every child process is stopped at the
end, even after an error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients import Fleet, StalledClient, stop_clients
from common import (
    HOST,
    RESULTS,
    ROOT,
    BenchError,
    check_limits,
    cpu_seconds,
    frame,
    host_ticks,
    memory_kib,
    other_load,
    source_version,
)
from report import LABELS, ORDER, print_report, write_plot
from servers import (
    BareServer,
    NodeServer,
    ReplayAsyncioServer,
    ReplayServer,
    SeedServer,
    Server,
    stop_servers,
    wait_count,
    write_scenario,
)

KINDS = ORDER
DEFAULT_KINDS = ("replay", "bare", "node", "seed")


def log(text: str) -> None:
    print(f"[{time.monotonic() - BEGAN:6.1f}s] {text}", file=sys.stderr, flush=True)


BEGAN = time.monotonic()


# --------------------------------------------------------------------------------------
# One round: arm the clients, trigger, collect what each client process saw.


def play(
    server: Server,
    fleet: Fleet,
    frames: int,
    *,
    pause: float = 0.0,
    pad: int = 0,
    repeat: int = 1,
    record: bool = False,
    wait: bool = True,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Play ``frames`` (x ``repeat``) frames to every client and measure it."""
    armed = fleet.arm(frames, repeat, pad, record, timeout)
    cpu0, host0 = server.cpu(), host_ticks()
    start = time.monotonic()
    try:
        status, answer = server.trigger(frames, pause, pad, repeat, wait, timeout)
    except OSError as error:  # urllib's timeouts and refusals
        status, answer = None, f"{type(error).__name__}: {error}"
    answered = time.monotonic()
    if status is not None and not 200 <= status < 300:
        # The server refused: frames will not come. Give stray ones a moment, then stop.
        time.sleep(1.0)
        fleet.cancel()
    reports = fleet.results(timeout + 30)
    end = time.monotonic()
    cpu1, host1 = server.cpu(), host_ticks()
    total = frames * repeat
    lasts = [t for r in reports for t in r["lasts"]]
    firsts = [t for r in reports for t in r["firsts"]]
    result: dict[str, Any] = {
        "clients": armed,
        "frames": total,
        "status": status,
        "answer": answer if status != 200 else None,
        "answer_s": answered - start,
        "complete": sum(r["complete"] for r in reports),
        "lost": sum(r["lost"] for r in reports),
        "disorder": sum(r["disorder"] for r in reports),
        "unfinished": sum(r["unfinished"] for r in reports),
        "dropped": sum(r["closed_early"] for r in reports),
        "close_codes": _merge([r["close_codes"] for r in reports]),
        "got_min": min((g for r in reports for g in r["got"]), default=0),
        "first_s": min(firsts) - start if firsts else None,
        "last_s": max(lasts) - start if lasts and len(lasts) == armed else None,
        "lasts_s": sorted(t - start for t in lasts),
        "server_cpu_s": cpu1 - cpu0,
        "wall_s": end - start,
        "client_cpu_percent": [100 * r["cpu"] / (end - start) for r in reports],
        "host_busy_percent": _busy(host0, host1),
    }
    result["ok"] = (
        status in ((200,) if wait else (200, 202))
        and result["complete"] == armed
        and not (result["lost"] or result["disorder"] or result["dropped"])
    )
    if record:
        result["frame_first"] = [
            min(
                (r["frame_first"][i] for r in reports if not math.isnan(r["frame_first"][i])),
                default=math.nan,
            )
            for i in range(total)
        ]
        result["frame_last"] = [
            max(
                (r["frame_last"][i] for r in reports if not math.isnan(r["frame_last"][i])),
                default=math.nan,
            )
            for i in range(total)
        ]
        result["start"] = start
    return result


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for key, n in count.items():
            merged[key] = merged.get(key, 0) + n
    return merged


def _busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return 100 * (after[0] - before[0]) / total if total else 0.0


def problem(result: dict[str, Any]) -> str | None:
    """What went wrong in a round, in a few words, or None."""
    if result["ok"]:
        return None
    parts = []
    if result["status"] not in (200, 202):
        parts.append(f"trigger answered {result['status']}: {str(result['answer'])[:120]}")
    if result["dropped"]:
        codes = ", ".join(
            f"{'no close frame' if c == 'None' else 'code ' + c}: {n}"
            for c, n in result["close_codes"].items()
        )
        parts.append(f"{result['dropped']} connections ended by the server ({codes})")
    if result["lost"]:
        parts.append(f"{result['lost']} frames lost")
    if result["disorder"]:
        parts.append(f"{result['disorder']} frames out of order or unexpected")
    if result["complete"] < result["clients"]:
        parts.append(
            f"{result['complete']}/{result['clients']} clients got all {result['frames']} frames"
            f" (the slowest got {result['got_min']})"
        )
    return "; ".join(parts)


@dataclass(eq=False)
class Contestant:
    """One server under test, its clients, and what was measured."""

    kind: str
    server: Server
    fleet: Fleet | None = None
    out: dict[str, Any] = field(default_factory=dict)
    failed: bool = False

    @property
    def label(self) -> str:
        return LABELS[self.kind]

    def fail(self, error: Exception) -> None:
        process = self.server.process
        if process is not None and process.poll() is not None:
            message = (
                f"the {self.kind} server died (exit code {process.returncode}); see"
                f" {self.server.log_path}"
            )
        elif isinstance(error, BenchError):
            message = str(error)
        else:
            message = f"{type(error).__name__}: {error}"
        log(f"  {self.label}: STOPPED: {message}")
        self.out.setdefault("errors", []).append(message)
        self.failed = True


def each(group: list[Contestant], what: Callable[[Contestant], None], flip: bool = False) -> None:
    """Do ``what`` for each contestant still in (in reverse order if ``flip``): one that
    fails (its server died, its clients could not connect, ...) drops out, the others go on."""
    for c in reversed(group) if flip else group:
        if c.failed:
            continue
        try:
            if not c.server.alive():
                raise BenchError(f"the {c.kind} server is not running")
            what(c)
        except (BenchError, OSError) as error:
            c.fail(error)


def resize(c: Contestant, clients: int) -> list[str]:
    """Make the contestant's fleet hold ``clients`` connections, and its server know it."""
    assert c.fleet is not None
    problems = []
    if c.fleet.size < clients:
        opened, failures = c.fleet.open(clients)
        if opened < clients:
            problems.append(
                f"only {opened}/{clients} clients connected: "
                + ", ".join(f"{n}x {what}" for what, n in failures.items())
            )
    elif c.fleet.size > clients:
        c.fleet.close_to(clients)
    # One frame to everyone: a warm-up, and the seed-style server only notices clients
    # that have gone when a send to them fails.
    play(c.server, c.fleet, 1, timeout=30)
    have = wait_count(c.server, c.fleet.size)
    if have != c.fleet.size:
        problems.append(f"the server holds {have} clients, the fleet {c.fleet.size}")
    return problems


def fleet_of(c: Contestant) -> Fleet:
    assert c.fleet is not None
    return c.fleet


# --------------------------------------------------------------------------------------
# The benchmarks. Each takes a group of contestants run side by side: their rounds
# alternate, so that a change in the machine's background load hits all of them alike.


def bench_idle(group: list[Contestant], args: argparse.Namespace) -> None:
    time.sleep(1.0)
    base: dict[str, int] = {}

    def fresh(c: Contestant) -> None:
        base[c.kind] = memory_kib(c.server.pid)
        c.out["idle"] = []

    each(group, fresh)
    for n in args.idle_levels:

        def level(c: Contestant, n: int = n) -> None:
            log(f"  idle: {c.label}, {n} clients")
            opened, failures = fleet_of(c).open(n)
            have = wait_count(c.server, opened)
            problems = []
            if opened < n:
                problems.append(
                    f"only {opened}/{n} connected: "
                    + ", ".join(f"{k}x {w}" for w, k in failures.items())
                )
            if have != opened:
                problems.append(f"the server holds {have} of {opened}")
            time.sleep(1.0)  # let the connection set-up settle
            # The most clients: over a whole keepalive period, pings included.
            seconds = args.idle_top_seconds if n == args.idle_levels[-1] else args.idle_seconds
            cpu0, start = cpu_seconds(c.server.pid), time.monotonic()
            time.sleep(seconds)
            cpu1, end = cpu_seconds(c.server.pid), time.monotonic()
            rss = memory_kib(c.server.pid)
            c.out["idle"].append(
                {
                    "clients": opened,
                    "seconds": end - start,
                    "cpu_percent": 100 * (cpu1 - cpu0) / (end - start),
                    "rss_base_kib": base[c.kind],
                    "rss_kib": rss,
                    "per_client_kib": (rss - base[c.kind]) / opened if opened else None,
                    "problems": problems,
                }
            )

        each(group, level)


def bench_fanout(group: list[Contestant], args: argparse.Namespace) -> None:
    each(group, lambda c: c.out.setdefault("fanout", []))
    rounds: dict[str, list[dict[str, Any]]] = {}  # this row's rounds, by server
    problems: dict[str, list[str]] = {}
    # The fleets only shrink: the biggest N first (the idle benchmark left them connected).
    for n, m in sorted(args.fanout_rows, key=lambda nm: (-nm[0], nm[1])):
        wanted = args.rounds + (2 if n * m <= 200_000 else 0)  # short rows: more rounds
        log(f"  fan-out: N={n}, M={m}, {wanted} round(s) each")
        rounds.clear()
        problems.clear()

        def prepare(c: Contestant, n: int = n) -> None:
            rounds[c.kind] = []
            problems[c.kind] = resize(c, n)

        each(group, prepare)
        for r in range(wanted):

            def one(c: Contestant, m: int = m) -> None:
                done = rounds[c.kind]
                if done and not done[-1]["ok"]:
                    return  # this row went wrong for it already
                result = play(c.server, fleet_of(c), m, timeout=args.timeout)
                done.append(result)
                if not result["ok"]:
                    problems[c.kind].append(problem(result) or "")

            each(group, one, flip=r % 2 == 1)

        def summary(c: Contestant, n: int = n, m: int = m) -> None:
            row = fanout_row(n, m, rounds[c.kind], problems[c.kind], args)
            c.out["fanout"].append(row)
            log(f"    {c.label}: {_rate(row)}; {'; '.join(row['problems']) or 'all in order'}")

        each(group, summary)


def fanout_row(
    n: int, m: int, rounds: list[dict[str, Any]], problems: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    good = [r for r in rounds if r["ok"]]
    row: dict[str, Any] = {
        "clients": n,
        "frames": m,
        "main": (n, m) in args.fanout_main,
        "rounds": len(good),
        "problems": problems,
    }
    if good:
        times = [r["last_s"] for r in good]
        median = statistics.median(times)
        cpu = statistics.median(r["server_cpu_s"] for r in good)
        row.update(
            time_s=median,
            times_s=times,
            frames_per_s=n * m / median,
            first_s=statistics.median(r["first_s"] for r in good),
            median_client_s=statistics.median(statistics.median(r["lasts_s"]) for r in good),
            server_cpu_percent=statistics.median(
                100 * r["server_cpu_s"] / r["wall_s"] for r in good
            ),
            # /proc counts 10 ms ticks: below ~50 ms of CPU the figure is noise.
            server_us_per_frame=1e6 * cpu / (n * m) if cpu >= 0.05 else None,
            client_cpu_percent_max=max(max(r["client_cpu_percent"]) for r in good),
            host_busy_percent=statistics.median(r["host_busy_percent"] for r in good),
        )
    return row


def _rate(row: dict[str, Any]) -> str:
    if row.get("frames_per_s") is None:
        return "no complete round"
    return f"{row['frames_per_s']:,.0f} frames/s, last client {row['time_s'] * 1000:,.0f} ms"


def percentiles(values: list[float]) -> dict[str, float | None]:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return {"p50": None, "p99": None, "max": None}

    def at(q: float) -> float:
        return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]

    return {"p50": at(0.50), "p99": at(0.99), "max": values[-1]}


def bench_timing(group: list[Contestant], args: argparse.Namespace) -> None:
    n, steps, interval = args.timing_clients, args.timing_steps, args.timing_interval

    def timing(c: Contestant) -> None:
        log(f"  timing: {c.label}, {steps} frames {interval * 1000:g} ms apart to {n} clients")
        problems = resize(c, n)
        result = play(
            c.server,
            fleet_of(c),
            steps,
            pause=interval,
            record=True,
            timeout=steps * interval * 3 + 30,
        )
        if not result["ok"]:
            problems.append(problem(result) or "")
        first, last = result["frame_first"], result["frame_last"]
        origin = first[0]
        out: dict[str, Any] = {"clients": n, "steps": steps, "interval_s": interval}
        c.out["timing"] = out
        if math.isnan(origin):
            out["problems"] = [*problems, "frame 0 never arrived"]
            return
        late_first = [first[i] - (origin + i * interval) for i in range(steps)]
        late_last = [last[i] - (origin + i * interval) for i in range(steps)]
        out.update(
            trigger_to_first_s=origin - result["start"],
            first=percentiles(late_first),
            last=percentiles(late_last),
            drift_first_s=late_first[-1],
            drift_last_s=late_last[-1],
            missing=sum(math.isnan(v) for v in late_last),
            # Every 10th frame, for the plot.
            lateness_first_s=[None if math.isnan(v) else v for v in late_first[::10]],
            problems=problems,
        )
        log(
            f"    p99 at the first client {_ms(out['first']['p99'])},"
            f" drift {_ms(out['drift_first_s'])}"
        )

    each(group, timing)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def bench_latency(group: list[Contestant], args: argparse.Namespace) -> None:
    n, count = args.latency_clients, args.latency_triggers
    log(f"  trigger latency: {count} one-frame triggers each, {n} clients")
    seen: dict[str, dict[str, list[float]]] = {}
    problems: dict[str, list[str]] = {}

    def prepare(c: Contestant) -> None:
        problems[c.kind] = resize(c, n)
        seen[c.kind] = {"first": [], "last": [], "answer": []}

    each(group, prepare)
    for i in range(count):

        def one(c: Contestant, i: int = i) -> None:
            if len(seen[c.kind]["first"]) < i:
                return  # it went wrong already
            result = play(c.server, fleet_of(c), 1, wait=False, timeout=10)
            if not result["ok"] or result["first_s"] is None:
                problems[c.kind].append(problem(result) or "no frame arrived")
                return
            seen[c.kind]["first"].append(result["first_s"])
            seen[c.kind]["last"].append(result["last_s"])
            seen[c.kind]["answer"].append(result["answer_s"])
            time.sleep(0.01)

        each(group, one, flip=i % 2 == 1)

    def summary(c: Contestant) -> None:
        got = seen[c.kind]
        c.out["latency"] = {
            "clients": n,
            "triggers": len(got["first"]),
            "first": percentiles(got["first"]),
            "last": percentiles(got["last"]),
            "answer": percentiles(got["answer"]),
            "problems": problems[c.kind],
        }
        first = c.out["latency"]["first"]
        log(f"    {c.label}: p50 {_ms(first['p50'])}, p99 {_ms(first['p99'])}")

    each(group, summary)


class RssSampler:
    """The server's resident memory every 50 ms, in a thread (bounded by stop())."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(memory_kib(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def bench_stall(group: list[Contestant], args: argparse.Namespace) -> None:
    n = args.stall_clients
    frames, repeat, pad = args.stall_frames, args.stall_repeat, args.stall_pad
    log(
        f"  stalled client: {n} healthy + 1 that never reads; {frames * repeat} frames of"
        f" ~{pad // 1024 + 1} KiB, with and without it, {args.stall_rounds} round(s) each"
    )
    pairs: dict[str, list[dict[str, Any]]] = {}
    problems: dict[str, list[str]] = {}
    rss_before: dict[str, int] = {}
    stuck: set[str] = set()

    def prepare(c: Contestant) -> None:
        problems[c.kind] = resize(c, n)
        pairs[c.kind] = []
        rss_before[c.kind] = memory_kib(c.server.pid)

    each(group, prepare)
    for r in range(args.stall_rounds):

        def one(c: Contestant) -> None:
            if c.kind in stuck:
                return  # held up last time: the server is stuck, no point repeating
            pair = stall_pair(c, args)
            pair["rss_before_kib"] = rss_before[c.kind]
            pairs[c.kind].append(pair)
            for name in ("baseline", "stalled"):
                if pair[name]["problem"]:
                    which = "without" if name == "baseline" else "with"
                    problems[c.kind].append(f"{which} the stalled client: {pair[name]['problem']}")
                    stuck.add(c.kind)

        each(group, one, flip=r % 2 == 1)

    def summary(c: Contestant) -> None:
        done = pairs[c.kind]
        out: dict[str, Any] = {
            "clients": n,
            "frames": frames * repeat,
            "frame_bytes": len(frame(0, pad).encode()),
            "rounds": done,
            "problems": problems[c.kind],
        }
        base = [p["baseline"]["frames_per_s"] for p in done if p["baseline"]["frames_per_s"]]
        with_it = [p["stalled"]["frames_per_s"] or 0.0 for p in done]
        if base and with_it:
            out["baseline_frames_per_s"] = statistics.median(base)
            out["stalled_frames_per_s"] = statistics.median(with_it)
            out["ratio"] = out["stalled_frames_per_s"] / out["baseline_frames_per_s"]
        c.out["stall"] = out
        log(f"    {c.label}: healthy throughput with/without {out.get('ratio', 0):.2f}x")

    each(group, summary)


def stall_pair(c: Contestant, args: argparse.Namespace) -> dict[str, Any]:
    """The run without the stalled client, then the run with it."""
    server, fleet, n = c.server, fleet_of(c), args.stall_clients
    frames, repeat, pad = args.stall_frames, args.stall_repeat, args.stall_pad
    with RssSampler(server.pid) as sampler:
        baseline = play(server, fleet, frames, pad=pad, repeat=repeat, timeout=args.timeout)
    rss_baseline = max(sampler.samples, default=0)
    pair: dict[str, Any] = {"baseline": _stall_view(baseline)}
    if not baseline["ok"]:
        pair["stalled"] = {**_stall_view(baseline), "problem": "not run"}
        return pair
    drops_before = server.drops() if isinstance(server, ReplayServer) else None
    stalled_client = StalledClient(HOST, server.port, "/ws")
    try:
        stalled_client.open()
        seen = wait_count(server, n + 1)
        bound = max(args.stall_bound, 4 * baseline["last_s"])
        with RssSampler(server.pid) as sampler:
            stalled = play(server, fleet, frames, pad=pad, repeat=repeat, timeout=bound)
            # replay closes a dropped client after a grace period (2 s): look after it.
            time.sleep(3.0)
        state = stalled_client.tcp_state()
        count_after = server.count()
        rss_after = memory_kib(server.pid)
    finally:
        fate = stalled_client.finish()  # reads what reached it, and closes the socket
    time.sleep(1.0)
    pair.update(
        stalled=_stall_view(stalled),
        server_saw=seen,
        bound_s=bound,
        stalled_client={
            "tcp_3s_after": state,
            "server_count_3s_after": count_after,
            "read_after": fate,
        },
        rss_peak_baseline_kib=rss_baseline,
        rss_peak_kib=max(sampler.samples, default=0),
        rss_3s_after_kib=rss_after,
        rss_closed_kib=memory_kib(server.pid),
    )
    if isinstance(server, ReplayServer):
        drops_after = server.drops()
        pair["stalled_client"]["replay_drops"] = (
            drops_after - drops_before
            if drops_after is not None and drops_before is not None
            else None
        )
    return pair


def _stall_view(result: dict[str, Any]) -> dict[str, Any]:
    """The figures the stalled-client table needs, from one round."""
    lasts = result["lasts_s"]
    return {
        "ok": result["ok"],
        "complete": result["complete"],
        "clients": result["clients"],
        "got_min": result["got_min"],
        "time_s": result["last_s"],
        "frames_per_s": result["clients"] * result["frames"] / result["last_s"]
        if result["last_s"]
        else None,
        "completion": percentiles(lasts),
        "status": result["status"],
        "problem": problem(result),
    }


# --------------------------------------------------------------------------------------
# A group of servers through every benchmark.


def make_server(kind: str, scenarios: Path, work: Path, args: argparse.Namespace) -> Server:
    log_path = work / f"{kind}.log"
    if kind == "replay":
        return ReplayServer(scenarios, log_path, args.queue_size)
    if kind == "replay-asyncio":
        return ReplayAsyncioServer(scenarios, log_path, args.queue_size)
    if kind == "bare":
        return BareServer(log_path)
    if kind == "node":
        return NodeServer(log_path)
    return SeedServer(log_path)


def run_group(
    kinds: list[str], scenarios: Path, work: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Start the servers (fresh) and put them through every benchmark, side by side."""
    group = [Contestant(kind, make_server(kind, scenarios, work, args)) for kind in kinds]
    steps = [
        ("idle", bench_idle, args.idle_levels),
        ("fanout", bench_fanout, args.fanout_rows),
        ("timing", bench_timing, args.timing_steps),
        ("latency", bench_latency, args.latency_triggers),
        ("stall", bench_stall, args.stall_rounds),
    ]
    log(f"starting {' and '.join(c.label for c in group)}")

    def start(c: Contestant) -> None:
        c.server.start()
        c.fleet = Fleet(HOST, c.server.port, "/ws", args.client_procs, args.client_nice)

    try:
        for c in group:  # not each(): it skips servers that are not running yet
            try:
                start(c)
            except (BenchError, OSError) as error:
                c.fail(error)
        for name, bench, wanted in steps:
            if wanted and name not in args.skip:
                bench(group, args)
    finally:
        for c in group:
            if c.fleet is not None:
                c.fleet.stop()
            c.server.stop()
    results = []
    for c in group:
        out = {"server": c.kind, "label": c.label, "errors": [], **c.out}
        warnings = c.server.log_problems()
        if warnings:
            out["log_warnings"] = len(warnings)
            out["log_sample"] = sorted(set(_shape(line) for line in warnings))[:5]
        results.append(out)
    return results


def _shape(line: str) -> str:
    """A log line without its variable parts (client ids, counts), for grouping."""
    import re

    return re.sub(r"\b[0-9a-f]{8,12}\b|\b\d+\b", "#", line)[:200]


# --------------------------------------------------------------------------------------
# Main.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="replay against a bare websockets server, a Node ws server and a "
        "seed-style server: fan-out, idle cost, timing, trigger latency, a stalled client."
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run of ~3 minutes (smaller everything)")
    add(
        "--servers",
        default=",".join(DEFAULT_KINDS),
        help=f"which servers, of {','.join(KINDS)} (default {','.join(DEFAULT_KINDS)};"
        " replay-asyncio: replay with uvloop and httptools hidden)",
    )
    add("--skip", default="", help="benchmarks to leave out: idle,fanout,timing,latency,stall")
    add("--client-procs", type=int, default=3, help="client processes (default 3)")
    add(
        "--client-nice",
        type=int,
        default=10,
        help="the client processes' niceness: the server gets the CPU first (default 10)",
    )
    add(
        "--fanout",
        default="10x1000,100x1000,100x5000,1000x200,5000x100",
        help="fan-out rows NxM: M frames to N clients (default 10x1000,100x1000,100x5000,"
        "1000x200,5000x100; the first M given for an N is its main row, on the plot's line)",
    )
    add(
        "--rounds",
        type=int,
        default=3,
        help="fan-out rounds per row, median; rows of at most 200,000 frames get 2 more"
        " (default 3)",
    )
    add("--idle-clients", default="100,1000,5000", help="idle client counts")
    add("--idle-seconds", type=float, default=5.0, help="CPU sampling time (default 5)")
    add(
        "--idle-top-seconds",
        type=float,
        default=21.0,
        help="CPU sampling time with the most idle clients (default 21: a whole keepalive"
        " period of uvicorn and websockets, 20 s, so that pings count)",
    )
    add("--timing-clients", type=int, default=100)
    add("--timing-steps", type=int, default=1000)
    add("--timing-interval", type=float, default=0.010, help="seconds (default 0.010)")
    add("--latency-clients", type=int, default=100)
    add("--latency-triggers", type=int, default=50)
    add("--stall-clients", type=int, default=100, help="healthy clients (default 100)")
    add("--stall-frames", type=int, default=250, help="distinct frames (default 250)")
    add("--stall-repeat", type=int, default=10, help="times over (default 10)")
    add("--stall-pad", type=int, default=4000, help="bytes of padding a frame (default 4000)")
    add("--stall-rounds", type=int, default=3, help="pairs of runs, median (default 3)")
    add(
        "--stall-bound",
        type=float,
        default=10.0,
        help="seconds the healthy clients get with the stalled one (at least 4x the run "
        "without it; default 10)",
    )
    add("--queue-size", type=int, default=None, help="replay's --queue-size (default its own)")
    add("--timeout", type=float, default=90.0, help="seconds a fan-out round may take")
    add("--no-save", action="store_true", help="write nothing to bench/results/")
    args = parser.parse_args(argv)
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])
        quick = {
            "--fanout": ("fanout", "10x500,100x500,100x2000,1000x50"),
            "--rounds": ("rounds", 1),
            "--idle-clients": ("idle_clients", "100,1000"),
            "--idle-seconds": ("idle_seconds", 2.0),
            "--idle-top-seconds": ("idle_top_seconds", 5.0),
            "--timing-steps": ("timing_steps", 300),
            "--latency-triggers": ("latency_triggers", 10),
            "--stall-clients": ("stall_clients", 50),
            "--stall-rounds": ("stall_rounds", 1),
            "--stall-bound": ("stall_bound", 6.0),
        }
        quick_defaults(args, given, quick)
    args.kinds = list(dict.fromkeys(k for k in str(args.servers).split(",") if k))
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"unknown server(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    args.skip = {s for s in str(args.skip).split(",") if s}
    args.fanout_rows = _fanout(parser, args.fanout)
    args.fanout_main = [
        (n, m)
        for i, (n, m) in enumerate(args.fanout_rows)
        if n not in [k for k, _ in args.fanout_rows[:i]]
    ]
    args.idle_levels = sorted(_counts(parser, args.idle_clients, "--idle-clients"))
    if args.client_procs < 1:
        parser.error("--client-procs must be at least 1")
    return args


def quick_defaults(
    args: argparse.Namespace, given: set[str], quick: dict[str, tuple[str, Any]]
) -> None:
    """``--quick``: each ``option -> (attribute, value)`` of ``quick`` sets its smaller
    value, unless the option was given on the command line (``given``)."""
    for option, (name, value) in quick.items():
        if not any(g == option or g.startswith(option + "=") for g in given):
            setattr(args, name, value)


def _counts(parser: argparse.ArgumentParser, text: str, option: str) -> list[int]:
    try:
        counts = [int(n) for n in str(text).split(",") if n.strip()]
    except ValueError:
        parser.error(f"{option}: comma-separated numbers, please")
    if any(n < 1 for n in counts):
        parser.error(f"{option}: counts must be at least 1")
    return counts


def _fanout(parser: argparse.ArgumentParser, text: str) -> list[tuple[int, int]]:
    try:
        rows = [(int(n), int(m)) for n, m in (p.lower().split("x") for p in text.split(",") if p)]
    except ValueError:
        parser.error("--fanout: NxM pairs, comma-separated, such as 100x1000,1000x200")
    if any(n < 1 or m < 1 for n, m in rows):
        parser.error("--fanout: N and M must be at least 1")
    return list(dict.fromkeys(rows))


def write_scenarios(folder: Path, args: argparse.Namespace) -> None:
    """Every scenario replay will be asked to play in this run."""
    wanted = {(1, 0.0, 0, 1)}
    wanted |= {(m, 0.0, 0, 1) for _, m in args.fanout_rows}
    wanted.add((args.timing_steps, args.timing_interval, 0, 1))
    wanted.add((args.stall_frames, 0.0, args.stall_pad, args.stall_repeat))
    for frames, pause, pad, repeat in sorted(wanted):
        write_scenario(folder, frames, pause, pad, repeat)


def software(kinds: list[str]) -> dict[str, str]:
    """The versions that matter to the figures: uvicorn's loop and HTTP parser (replay and
    seed-style pick uvloop and httptools when installed), websockets, Node and ws."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("uvicorn", "websockets", "uvloop", "httptools"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    if "node" in kinds:
        out.update(NodeServer.versions())
    return out


def run(args: argparse.Namespace) -> int:
    most = max([*(n for n, _ in args.fanout_rows), *args.idle_levels, args.stall_clients + 1])
    check_limits(most, args.client_procs)
    notes: list[str] = []
    if "node" in args.kinds:
        reason = NodeServer.prepare()
        if reason:
            log(f"Node ws: skipped: {reason}")
            notes.append(f"Node ws: skipped: {reason}")
            args.kinds.remove("node")
    load_before = os.getloadavg()
    if "replay-asyncio" in args.kinds and not any(
        importlib.util.find_spec(name) for name in ("uvloop", "httptools")
    ):
        notes.append(
            "replay (asyncio, h11) is replay as it is: neither uvloop nor httptools is"
            " installed (to compare: uv run --with uvloop --with httptools python bench/run.py)"
        )
    other = other_load()
    if other > 20:
        notes.append(
            f"the machine was not idle: other processes used {other:.0f}% CPU (of one core)"
            " just before the bench; the figures are less reliable"
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(tempfile.mkdtemp(prefix="replay-bench-")) if args.no_save else RESULTS / stamp
    work.mkdir(parents=True, exist_ok=True)
    scenarios = Path(tempfile.mkdtemp(prefix="replay-bench-scenarios-"))
    sessions = []
    try:
        write_scenarios(scenarios, args)
        # replay, bare and Node side by side (their rounds alternate); seed-style alone, as
        # its idle handlers would use CPU during the others' measurements.
        side_by_side = [k for k in args.kinds if k != "seed"]
        if side_by_side:
            sessions += run_group(side_by_side, scenarios, work, args)
        if "seed" in args.kinds:
            sessions += run_group(["seed"], scenarios, work, args)
    finally:
        stop_clients()
        stop_servers()
        shutil.rmtree(scenarios, ignore_errors=True)
    elapsed = time.monotonic() - BEGAN
    after = other_load()
    if after > 20:
        notes.append(
            f"other processes used {after:.0f}% CPU (of one core) just after the bench: the"
            " machine may not have been quiet during it"
        )
    meta = {
        "time": stamp,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "replay_source": source_version(),
        "other_load_percent": other,
        "other_load_after_percent": after,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "software": software(args.kinds),
        "elapsed_s": elapsed,
        "args": {k: v for k, v in vars(args).items() if k not in ("skip",)},
        "notes": notes,
    }
    meta["args"]["skip"] = sorted(args.skip)
    results = {"meta": meta, "servers": sessions}
    print_report(results)
    if args.no_save:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    plot = write_plot(results, work / "scaling.png")
    print(f"\nresults: {(work / 'results.json').relative_to(ROOT)}")
    if plot and not args.quick:
        shutil.copyfile(work / "scaling.png", ROOT / "bench" / "scaling.png")
        print(f"plot: {(work / 'scaling.png').relative_to(ROOT)} (copied to bench/scaling.png)")
    elif plot:
        print(f"plot: {(work / 'scaling.png').relative_to(ROOT)} (--quick: not copied)")
    else:
        print("plot: not drawn (matplotlib is not installed: uv sync --group dev)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded(lambda: run(args))


def guarded(bench: Callable[[], int]) -> int:
    """Run ``bench`` as a command: its exit status, 1 on a BenchError, 130 on Ctrl-C or
    128 + N on signal N; the clients and servers it started are stopped in every case."""

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C stops the bench even when it was started with SIGINT ignored (in the background).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return bench()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        with contextlib.suppress(Exception):
            stop_clients()
            stop_servers()


if __name__ == "__main__":
    sys.exit(main())
