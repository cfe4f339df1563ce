"""The cluster benchmarks (issue 15): replay on several processes against one, and against
bare ``websockets``, Node ``ws`` and seed-style (single processes: they have no cluster
mode).

Run from the project root::

    uv run python bench/cluster.py            # everything (about 10 minutes on 2 cores)
    uv run python bench/cluster.py --quick    # a smoke run (about 4 minutes)
    uv run python bench/cluster.py --help     # every knob

It starts a real Redis (Debian's ``redis-server``, on a free port, nothing saved) for the
clusters' backplane, and measures, in one run:

1. fan-out: M frames with no pause to N clients, replay in one process and replay
   ``serve --workers 2 --backplane redis://...``, beside bare, Node ws and seed-style:
   frames/s and the server's CPU per frame per client (every process of the server);
2. idle: 20,000 clients connected to ``serve --workers 4`` (the one-process servers hold
   ``--idle-single`` each: one process may not hold 20,000 here), the server's memory and
   CPU, then one frame to all of them;
3. cross-node timing: 3 nodes (3 processes, 3 ports), clients spread evenly, a paced
   scenario; for each frame the spread of its arrival across all clients (and within
   one node), p50/p99/max, against the target p99 < 10 ms;
4. lateness of a playing run while a 100,000-frame scenario is triggered
   (``long_scenario.py``'s measurement), one process and 2 workers.

It prints the tables, writes ``results.json``, the servers' logs and ``cluster.png`` to
``bench/results/cluster-<time>/`` (git-ignored), and for a full run copies the plot to
``bench/cluster.png``. Every wait is bounded; every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from clients import Fleet, stop_clients
from common import (
    HOST,
    RESULTS,
    ROOT,
    BenchError,
    check_limits,
    free_port,
    http,
    local_port_count,
    other_load,
    poll,
    source_version,
)
from report import LABELS
from run import (
    Contestant,
    bench_fanout,
    guarded,
    log,
    percentiles,
    play,
    problem,
    quick_defaults,
    software,
)
from servers import (
    BareServer,
    NodeServer,
    ReplayServer,
    SeedServer,
    Server,
    stop_servers,
    wait_count,
    write_scenario,
)

sys.path.insert(0, str(ROOT))
import long_scenario

from tests.redis_server import RedisServer

REFERENCES = ("bare", "node", "seed")
LABELS.update(
    {
        "replay-1": "replay, 1 process",
        "replay-2w": "replay, 2 workers",
        "replay-4w": "replay, 4 workers",
    }
)


# --------------------------------------------------------------------------------------
# Servers of several processes.


class Workers(ReplayServer):
    """``replay serve --workers N --backplane URL``: N worker processes on one port
    (SO_REUSEPORT: the kernel spreads the connections)."""

    start_timeout = 90.0  # N interpreters starting on 2 cores

    def __init__(
        self, scenarios: Path, log_path: Path, workers: int, backplane: str, max_clients: int
    ) -> None:
        options = ("--workers", str(workers), "--backplane", backplane)
        super().__init__(scenarios, log_path, options=(*options, "--max-clients", str(max_clients)))
        self.workers = workers
        self.kind = f"replay-{workers}w"

    def health(self, tries: int = 200) -> dict[int, dict[str, Any]]:
        """Each worker's ``/healthz`` (by worker index): every request is a new connection,
        which the kernel gives to any worker; asked until all have answered (bounded)."""
        seen: dict[int, dict[str, Any]] = {}
        for _ in range(tries):
            status, answer = http(f"{self.base}/healthz", timeout=5)
            if status == 200 and isinstance(answer, dict) and "worker" in answer:
                seen[int(answer["worker"]["index"])] = answer
            if len(seen) >= self.workers:
                break
        return seen

    def count(self) -> int:
        """Clients on /ws over all workers; -1 until every worker answers and hears the
        backplane."""
        seen = self.health()
        if len(seen) < self.workers:
            return -1
        if not all(a.get("backplane", {}).get("subscribed") for a in seen.values()):
            return -1
        return sum(int(a["clients"]["/ws"]) for a in seen.values())


class Nodes(Server):
    """N ``replay serve --backplane URL`` processes, each on a port of its own: a cluster
    of N nodes on one host. Triggers go to the first node; figures add up all of them."""

    def __init__(
        self,
        scenarios: Path,
        work: Path,
        count: int,
        backplane: str,
        kind: str,
        max_clients: int = 10000,
    ) -> None:
        options = ("--backplane", backplane, "--max-clients", str(max_clients))
        self.nodes = [
            ReplayServer(scenarios, work / f"{kind}-node{i}.log", options=options)
            for i in range(count)
        ]
        super().__init__([], self.nodes[0].log_path, self.nodes[0].port)
        self.kind = kind

    @property
    def pid(self) -> int:
        return self.nodes[0].pid

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        if not poll(self._subscribed, 30, 0.1):
            raise BenchError(f"the {self.kind} nodes did not all join the backplane")

    def _subscribed(self) -> bool:
        for node in self.nodes:
            status, answer = http(f"{node.base}/healthz", timeout=5)
            if status != 200 or not answer.get("backplane", {}).get("subscribed"):
                return False
        return True

    def alive(self) -> bool:
        return all(n.alive() for n in self.nodes)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def count(self) -> int:
        counts = [n.count() for n in self.nodes]
        return -1 if min(counts) < 0 else sum(counts)

    def trigger(self, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        return self.nodes[0].trigger(*args, **kwargs)

    def cpu(self) -> float:
        return sum(n.cpu() for n in self.nodes)

    def rss_kib(self) -> int:
        return sum(n.rss_kib() for n in self.nodes)

    def log_problems(self) -> list[str]:
        return [line for n in self.nodes for line in n.log_problems()]


class Fleets(Fleet):
    """One fleet per node (each connected to its node's port), driven as one fleet, with
    the clients spread evenly; ``last`` keeps each node's reports of the last round."""

    def __init__(self, ports: list[int], path: str, processes: int, nice: int) -> None:
        # No Fleet.__init__: the processes are the fleets'.
        each_ = max(1, math.ceil(processes / len(ports)))
        self.fleets = [Fleet(HOST, port, path, each_, nice) for port in ports]
        self.pids = [pid for f in self.fleets for pid in f.pids]
        self.last: list[list[dict[str, Any]]] = []

    @property
    def size(self) -> int:
        return sum(f.size for f in self.fleets)

    def _shares(self, total: int) -> list[int]:
        k = len(self.fleets)
        return [total // k + (i < total % k) for i in range(k)]

    def open(self, total: int, timeout: float = 120.0) -> tuple[int, dict[str, int]]:
        failures: dict[str, int] = {}
        for fleet, share in zip(self.fleets, self._shares(total), strict=True):
            for what, n in fleet.open(share, timeout)[1].items():
                failures[what] = failures.get(what, 0) + n
        return self.size, failures

    def close_to(self, total: int, timeout: float = 30.0) -> int:
        for fleet, share in zip(self.fleets, self._shares(total), strict=True):
            fleet.close_to(share, timeout)
        return self.size

    def arm(
        self,
        frames: int,
        repeat: int = 1,
        pad: int = 0,
        record: bool = False,
        timeout: float = 60.0,
    ) -> int:
        return sum(f.arm(frames, repeat, pad, record, timeout) for f in self.fleets)

    def cancel(self) -> None:
        for fleet in self.fleets:
            fleet.cancel()

    def results(self, timeout: float) -> list[dict[str, Any]]:
        self.last = [f.results(timeout) for f in self.fleets]
        return [r for reports in self.last for r in reports]

    def stop(self) -> None:
        for fleet in self.fleets:
            fleet.stop()


def workers_supported() -> bool:
    """Whether this checkout's ``replay serve`` has ``--workers``."""
    done = subprocess.run(
        [sys.executable, "-m", "replay", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return "--workers" in done.stdout


class Bench:
    """What every part needs: the arguments, the folders, the Redis and the notes."""

    def __init__(self, args: argparse.Namespace, work: Path, scenarios: Path, redis: str):
        self.args = args
        self.work = work
        self.scenarios = scenarios
        self.redis = redis
        self.notes: list[str] = []
        self.clusters = 0
        self.workers = not args.two_ports and workers_supported()
        if not self.workers and not {"fanout", "idle"} <= args.skip:
            self.notes.append(
                "replay's N-process figures are N `replay serve --backplane` nodes on N ports"
                " with the clients split evenly"
                + (" (--two-ports)" if args.two_ports else ": this checkout has no --workers")
            )

    def backplane(self) -> str:
        """A backplane URL of a cluster of its own (clusters of this run never meet)."""
        self.clusters += 1
        return f"{self.redis}?cluster=bench{self.clusters}"

    def replay(self, processes: int, kind: str, max_clients: int = 10000) -> Server:
        """replay in ``processes`` processes: one plain ``serve``, or a cluster."""
        if processes == 1:
            options = ("--max-clients", str(max_clients))
            return ReplayServer(self.scenarios, self.work / f"{kind}.log", options=options)
        if self.workers:
            log_path = self.work / f"{kind}.log"
            return Workers(self.scenarios, log_path, processes, self.backplane(), max_clients)
        return Nodes(self.scenarios, self.work, processes, self.backplane(), kind, max_clients)

    def reference(self, kind: str) -> Server:
        log_path = self.work / f"{kind}.log"
        return {"bare": BareServer, "node": NodeServer, "seed": SeedServer}[kind](log_path)

    def fleet(self, server: Server, processes: int) -> Fleet:
        if isinstance(server, Nodes):
            return Fleets(server.ports, "/ws", processes, self.args.client_nice)
        return Fleet(HOST, server.port, "/ws", processes, self.args.client_nice)


# --------------------------------------------------------------------------------------
# 1. Fan-out: 1 process against 2, and the references.


def fanout(bench: Bench) -> list[dict[str, Any]]:
    args = bench.args
    workers = args.fanout_workers
    # Side by side, rounds alternating (as run.py); seed-style alone after them: its
    # idle handlers use CPU all the time.
    first = [
        Contestant("replay-1", bench.replay(1, "replay-1")),
        Contestant(f"replay-{workers}w", bench.replay(workers, f"replay-{workers}w")),
        *(Contestant(k, bench.reference(k)) for k in args.references if k != "seed"),
    ]
    groups = [first]
    if "seed" in args.references:
        groups.append([Contestant("seed", bench.reference("seed"))])
    out = []
    for group in groups:
        log(f"fan-out: {', '.join(c.label for c in group)}")
        try:
            for c in group:
                try:
                    c.server.start()
                    c.fleet = bench.fleet(c.server, args.client_procs)
                except (BenchError, OSError) as error:
                    c.fail(error)
            bench_fanout(group, args)
        finally:
            for c in group:
                if c.fleet is not None:
                    c.fleet.stop()
                c.server.stop()
        out += [entry(c, processes(c)) for c in group]
    return out


def processes(c: Contestant) -> int:
    server = c.server
    if isinstance(server, Workers):
        return server.workers
    if isinstance(server, Nodes):
        return len(server.nodes)
    return 1


def entry(c: Contestant, count: int) -> dict[str, Any]:
    out = {"server": c.kind, "label": c.label, "processes": count, "errors": [], **c.out}
    warnings = c.server.log_problems()
    if warnings:
        out["log_warnings"] = len(warnings)
        out["log_sample"] = warnings[:5]
    return out


# --------------------------------------------------------------------------------------
# 2. Idle clients: 20,000 on 4 processes; the one-process servers hold fewer.


def idle(bench: Bench) -> list[dict[str, Any]]:
    args = bench.args
    plan = [
        (f"replay-{args.idle_workers}w", args.idle_clients, args.idle_workers),
        ("replay-1", args.idle_single, 1),
        *((k, args.idle_single, 1) for k in args.references),
    ]
    out = []
    for kind, clients, count in plan:
        if kind.startswith("replay"):
            # replay keeps a tenth of its open files back from clients: room for them all.
            server = bench.replay(count, kind, max_clients=clients + clients // 4 + 100)
        else:
            server = bench.reference(kind)
        c = Contestant(kind, server)
        log(f"idle: {c.label}, {clients:,} clients")
        try:
            c.out["idle"] = idle_one(bench, server, clients)
        except (BenchError, OSError) as error:
            c.fail(error)
        finally:
            stop_clients()
            server.stop()
        out.append(entry(c, count))
        if "idle" in c.out:
            r = c.out["idle"]
            log(
                f"  {r['opened']:,} open, {r['per_client_kib'] or 0:.1f} KiB/client,"
                f" CPU {r['cpu_percent']:.1f}%, trigger: {r['trigger']['complete']:,} complete"
            )
    return out


def idle_one(bench: Bench, server: Server, clients: int) -> dict[str, Any]:
    args = bench.args
    server.start()
    time.sleep(1.0)
    base = server.rss_kib()
    fleet = bench.fleet(server, args.idle_client_procs)
    try:
        began = time.monotonic()
        opened, failures = fleet.open(clients, timeout=args.connect_timeout)
        connect_s = time.monotonic() - began
        have = wait_count(server, opened, timeout=60)
        time.sleep(2.0)  # the connections' set-up settles
        cpu0, start = server.cpu(), time.monotonic()
        time.sleep(args.idle_seconds)
        cpu1, end = server.cpu(), time.monotonic()
        rss = server.rss_kib()
        # Then one frame to every one of them.
        result = play(server, fleet, 1, timeout=args.timeout)
    finally:
        fleet.stop()
    problems = []
    if opened < clients:
        problems.append(
            f"only {opened}/{clients} connected: "
            + ", ".join(f"{n}x {what}" for what, n in failures.items())
        )
    if have != opened:
        problems.append(f"the server holds {have} of {opened}")
    if not result["ok"]:
        problems.append(f"the trigger: {problem(result)}")
    return {
        "clients": clients,
        "opened": opened,
        "connect_s": connect_s,
        "seconds": end - start,
        "cpu_percent": 100 * (cpu1 - cpu0) / (end - start),
        "rss_base_kib": base,
        "rss_kib": rss,
        "per_client_kib": (rss - base) / opened if opened else None,
        "trigger": {
            "complete": result["complete"],
            "clients": result["clients"],
            "first_s": result["first_s"],
            "last_s": result["last_s"],
            "ok": result["ok"],
        },
        "problems": problems,
    }


# --------------------------------------------------------------------------------------
# 3. Cross-node timing: one frame's arrival across clients on different nodes.


def timing(bench: Bench) -> dict[str, Any]:
    args = bench.args
    nodes = args.timing_nodes
    out: dict[str, Any] = {
        "nodes": nodes,
        "clients": args.timing_clients,
        "frames": args.timing_frames,
        "interval_s": args.timing_interval,
        "target_p99_s": args.timing_target,
    }
    # Nodes on ports of their own, whatever --workers can do: the bench must know which
    # node each client is on (with one shared port, the kernel picks).
    cluster = Nodes(bench.scenarios, bench.work, nodes, bench.backplane(), "timing")
    single = ReplayServer(bench.scenarios, bench.work / "timing-single.log")
    for name, server in (("cluster", cluster), ("single", single)):
        label = f"{nodes} nodes" if name == "cluster" else "1 process"
        log(f"timing: {label}, {args.timing_clients} clients, {args.timing_frames} frames")
        fleet = None
        try:
            server.start()
            fleet = bench.fleet(server, nodes)
            out[name] = spread_round(server, fleet, args)
        except (BenchError, OSError) as error:
            out[name] = {"problems": [f"{type(error).__name__}: {error}"]}
        finally:
            if fleet is not None:
                fleet.stop()
            server.stop()
        got = out[name].get("across") or {}
        log(f"  spread p50 {ms(got.get('p50'))}, p99 {ms(got.get('p99'))}")
    across = (out.get("cluster") or {}).get("across") or {}
    out["met"] = across.get("p99") is not None and across["p99"] < args.timing_target
    return out


def spread_round(server: Server, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    opened, failures = fleet.open(args.timing_clients)
    wait_count(server, opened)
    frames, interval = args.timing_frames, args.timing_interval
    play(server, fleet, 1, timeout=30)  # a warm-up
    result = play(
        server, fleet, frames, pause=interval, record=True, timeout=frames * interval * 3 + 30
    )
    if isinstance(fleet, Fleets):
        by_node = fleet.last
    else:  # one process: one node
        by_node = [[{"frame_first": result["frame_first"], "frame_last": result["frame_last"]}]]
    out = spreads(by_node, frames)
    out["opened"] = opened
    out["problems"] = [] if result["ok"] else [problem(result)]
    if opened < args.timing_clients:
        out["problems"].append(f"only {opened}/{args.timing_clients} connected: {failures}")
    out["trigger_to_first_s"] = result["first_s"]
    return out


def spreads(by_node: list[list[dict[str, Any]]], frames: int) -> dict[str, Any]:
    """Per frame: its latest arrival minus its earliest over all clients (``across``),
    the same within each node (``within``, pooled), and the nodes' earliest arrivals apart
    (``offset``: how far the nodes' starts agree)."""
    across: list[float] = []
    within: list[float] = []
    offset: list[float] = []
    behind: list[list[float]] = [[] for _ in by_node]  # each node's first behind the first
    for i in range(frames):
        firsts, lasts = [], []
        for reports in by_node:
            f = [r["frame_first"][i] for r in reports if not math.isnan(r["frame_first"][i])]
            la = [r["frame_last"][i] for r in reports if not math.isnan(r["frame_last"][i])]
            if not f or not la:
                break
            firsts.append(min(f))
            lasts.append(max(la))
        else:
            across.append(max(lasts) - min(firsts))
            within += [last - first for first, last in zip(firsts, lasts, strict=True)]
            offset.append(max(firsts) - min(firsts))
            for node, first in enumerate(firsts):
                behind[node].append(first - min(firsts))
    return {
        "measured_frames": len(across),
        "across": percentiles(across),
        "within": percentiles(within),
        "offset": percentiles(offset),
        # Which node is late, by how much (median): the trigger goes to node 0.
        "node_behind_s": [statistics.median(b) if b else None for b in behind],
        "across_s": across,
    }


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


# --------------------------------------------------------------------------------------
# 4. Lateness while a 100,000-frame scenario is triggered: long_scenario.py's measurement.


def long_run(bench: Bench) -> dict[str, Any]:
    args = bench.args
    work = bench.work / "long"
    work.mkdir(exist_ok=True)
    setups: list[tuple[str, tuple[str, ...]]] = [("1 process", ())]
    if bench.workers:
        setups.append(("2 workers", ("--workers", "2", "--backplane", bench.backplane())))
    else:
        bench.notes.append("the long scenario on 2 workers needs --workers: not measured")
    out: dict[str, Any] = {"frames": args.long_frames, "bound_ms": 5.0}
    for label, options in setups:
        log(f"long scenario: {label}, {args.long_frames:,} frames")
        try:
            out[label] = long_scenario.bench(
                label.replace(" ", "-"), ROOT, work, free_port(), args.long_frames, None, options
            )
        except (RuntimeError, OSError) as error:
            out[label] = {"problems": [f"{type(error).__name__}: {error}"]}
        got = out[label].get("long") or {}
        log(f"  ticker beside it: p99 {got.get('p99', 0):.1f} ms, max {got.get('max', 0):.1f} ms")
    return out


# --------------------------------------------------------------------------------------
# Main.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="replay on several processes (serve --workers, a Redis backplane) against"
        " one, bare websockets, Node ws and seed-style: fan-out, idle clients, cross-node"
        " timing, lateness beside a long scenario."
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="a smoke run (smaller everything)")
    add("--servers", default=",".join(REFERENCES), help="references: bare,node,seed (or fewer)")
    add("--skip", default="", help="parts to leave out: fanout,idle,timing,long")
    add("--two-ports", action="store_true", help="N nodes on N ports instead of --workers N")
    add("--client-procs", type=int, default=3, help="client processes per server (fan-out)")
    add("--client-nice", type=int, default=10, help="the client processes' niceness")
    add("--fanout", default="1000x500,4000x100", help="rows NxM (default 1000x500,4000x100)")
    add("--fanout-workers", type=int, default=2, help="replay's processes (default 2)")
    add("--rounds", type=int, default=3, help="fan-out rounds per row, median (default 3)")
    add("--timeout", type=float, default=90.0, help="seconds a round may take")
    add("--idle-clients", type=int, default=20000, help="clients on the cluster (20000)")
    add("--idle-workers", type=int, default=4, help="the cluster's processes (default 4)")
    add(
        "--idle-single",
        type=int,
        default=10000,
        help="clients on each one-process server (default 10000: one process may hold at"
        " most the open-files limit, 20000 here, and replay keeps a tenth back)",
    )
    add("--idle-client-procs", type=int, default=4, help="client processes (default 4)")
    add("--idle-seconds", type=float, default=10.0, help="idle CPU sampling (default 10 s)")
    add("--connect-timeout", type=float, default=300.0, help="seconds to connect them all")
    add("--timing-nodes", type=int, default=3)
    add("--timing-clients", type=int, default=300, help="over all nodes (default 300)")
    add("--timing-frames", type=int, default=250)
    add("--timing-interval", type=float, default=0.020, help="seconds (default 0.020)")
    add("--timing-target", type=float, default=0.010, help="p99 spread, s (default 0.010)")
    add("--long-frames", type=int, default=100_000, help="the long scenario's frames")
    add("--no-save", action="store_true", help="write nothing to bench/results/")
    args = parser.parse_args(argv)
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])
        quick = {
            "--fanout": ("fanout", "500x100,2000x20"),
            "--rounds": ("rounds", 1),
            "--idle-clients": ("idle_clients", 4000),
            "--idle-single": ("idle_single", 2000),
            "--idle-seconds": ("idle_seconds", 3.0),
            "--timing-clients": ("timing_clients", 150),
            "--timing-frames": ("timing_frames", 50),
            "--long-frames": ("long_frames", 20_000),
        }
        quick_defaults(args, given, quick)
    args.references = [k for k in str(args.servers).split(",") if k]
    if unknown := set(args.references) - set(REFERENCES):
        parser.error(f"unknown server(s) {', '.join(sorted(unknown))}; known: bare,node,seed")
    args.skip = {s for s in str(args.skip).split(",") if s}
    if unknown := args.skip - {"fanout", "idle", "timing", "long"}:
        parser.error(f"--skip: unknown part(s) {', '.join(sorted(unknown))}")
    try:
        args.fanout_rows = [
            (int(n), int(m)) for n, m in (p.lower().split("x") for p in args.fanout.split(",") if p)
        ]
    except ValueError:
        parser.error("--fanout: NxM pairs, comma-separated, such as 1000x500,4000x100")
    args.fanout_main = [
        (n, m)
        for i, (n, m) in enumerate(args.fanout_rows)
        if n not in [k for k, _ in args.fanout_rows[:i]]
    ]
    for name in ("fanout_workers", "idle_workers", "timing_nodes", "client_procs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run(args: argparse.Namespace) -> int:
    from cluster_report import print_report, write_plot

    if shutil.which("redis-server") is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    # Open files: the most any one process holds (a server, or a client process).
    per_process = max(
        *(n for n, _ in args.fanout_rows),
        args.idle_single,
        math.ceil(args.idle_clients / min(args.idle_workers, args.idle_client_procs)),
    )
    check_limits(per_process, args.client_procs)
    if "idle" not in args.skip and local_port_count() < args.idle_clients + 1000:
        raise BenchError(
            f"only {local_port_count()} local ports (net.ipv4.ip_local_port_range) for"
            f" {args.idle_clients} idle clients: widen the range or use --idle-clients"
        )
    notes: list[str] = []
    if "node" in args.references and (reason := NodeServer.prepare()):
        notes.append(f"Node ws: skipped: {reason}")
        args.references.remove("node")
    other = other_load()
    load_before = os.getloadavg()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = (
        Path(tempfile.mkdtemp(prefix="replay-cluster-"))
        if args.no_save
        else RESULTS / f"cluster-{stamp}"
    )
    work.mkdir(parents=True, exist_ok=True)
    scenarios = Path(tempfile.mkdtemp(prefix="replay-cluster-scenarios-"))
    redis = RedisServer(work)
    parts: dict[str, Any] = {}
    try:
        write_scenario(scenarios, 1, 0.0, 0)
        for _, m in args.fanout_rows:
            write_scenario(scenarios, m, 0.0, 0)
        write_scenario(scenarios, args.timing_frames, args.timing_interval, 0)
        try:
            redis.start()
        except RuntimeError as error:
            raise BenchError(f"the backplane's Redis: {error}") from None
        bench = Bench(args, work, scenarios, redis.url)
        for name, part in (("fanout", fanout), ("idle", idle), ("timing", timing)):
            if name not in args.skip:
                parts[name] = part(bench)
        if "long" not in args.skip:
            parts["long"] = long_run(bench)
        notes += bench.notes
    finally:
        stop_clients()
        stop_servers()
        redis.stop()
        shutil.rmtree(scenarios, ignore_errors=True)
    after = other_load()
    for when, load in (("just before", other), ("just after", after)):
        if load > 20:
            notes.append(
                f"other processes used {load:.0f}% CPU (of one core) {when} the bench: the"
                " figures are less reliable"
            )
    results = {
        "meta": {
            "time": stamp,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "replay_source": source_version(),
            "mode": "--workers" if bench.workers else "nodes on ports",
            "other_load_percent": other,
            "other_load_after_percent": after,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "software": software(["node", "replay"]),
            "elapsed_s": time.monotonic() - STARTED,
            "args": {k: v for k, v in vars(args).items() if k != "skip"},
            "notes": notes,
        },
        **parts,
    }
    if not args.no_save:  # first: a report that fails loses nothing
        (work / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print_report(results)
    if args.no_save:
        shutil.rmtree(work, ignore_errors=True)
        return 0
    print(f"\nresults: {(work / 'results.json').relative_to(ROOT)}")
    if write_plot(results, work / "cluster.png"):
        if not args.quick:
            shutil.copyfile(work / "cluster.png", ROOT / "bench" / "cluster.png")
        where = "copied to bench/cluster.png" if not args.quick else "--quick: not copied"
        print(f"plot: {(work / 'cluster.png').relative_to(ROOT)} ({where})")
    else:
        print("plot: not drawn (matplotlib is not installed: uv sync --group dev)")
    return 0


STARTED = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return guarded(lambda: run(args))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
