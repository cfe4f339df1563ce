"""The printed tables, the targets and the scaling plot, from run.py's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import mib

#: Every server the bench knows, in the order of the tables.
ORDER = ("replay", "replay-asyncio", "bare", "node", "seed")
LABELS = {
    "replay": "replay",
    "replay-asyncio": "replay (asyncio, h11)",
    "bare": "bare websockets",
    "node": "Node ws",
    "seed": "seed-style",
}


# --------------------------------------------------------------------------------------
# Formatting.


def ms(seconds: float | None, digits: int = 1) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0 or a < 0:
        return "-"
    value = a / b
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def print_table(rows: list[list[str]], headers: list[str], left: int = 1) -> None:
    """A plain-text table; the first ``left`` columns are left-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i < left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def explain(*lines: str) -> None:
    for text in lines:
        print(f"   {text}")


def by_server(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["server"]: s for s in results["servers"]}


# --------------------------------------------------------------------------------------
# Tables.


def fanout_table(servers: dict[str, dict[str, Any]], args: dict[str, Any]) -> None:
    print("1. Fan-out: M frames with no pause to N clients; trigger -> the last client has all M")
    rows_by: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for kind, s in servers.items():
        for row in s.get("fanout", []):
            rows_by.setdefault((row["clients"], row["frames"]), {})[kind] = row
    rows = []
    for (n, m), kinds in sorted(rows_by.items()):
        mine = kinds.get("replay", {}).get("frames_per_s")
        for kind in ORDER:
            r = kinds.get(kind)
            if r is None:
                continue
            rows.append(
                [
                    LABELS[kind],
                    f"{n}",
                    f"{m}",
                    ms(r.get("time_s"), 0),
                    ms(r.get("first_s")),
                    "-" if r.get("frames_per_s") is None else f"{r['frames_per_s']:,.0f}",
                    "-" if kind == "replay" else ratio(mine, r.get("frames_per_s")),
                    pct(r.get("server_cpu_percent")),
                    "-"
                    if r.get("server_us_per_frame") is None
                    else f"{r['server_us_per_frame']:.1f}",
                    pct(r.get("client_cpu_percent_max")),
                    pct(r.get("host_busy_percent")),
                    "; ".join(r["problems"]) or "all frames, in order",
                ]
            )
    print_table(
        rows,
        [
            "server",
            "N",
            "M",
            "last ms",
            "1st ms",
            "frames/s",
            "replay/this",
            "srv CPU",
            "srv us/frame",
            "max cli CPU",
            "host busy",
            "delivery",
        ],
    )
    explain(
        "last ms = trigger -> the last client's M-th frame (median of the rounds); 1st ms ="
        " trigger -> the first frame anywhere (in a burst this includes the clients' wait for"
        " a CPU: see 4. for trigger latency); frames/s = N*M / last",
        "replay/this = replay's frames/s / this server's (>1: replay delivers faster)",
        "srv CPU = server CPU / wall time (100% = one core: every server is single-threaded);"
        " srv us/frame = server CPU time per frame per client",
        "max cli CPU = the busiest client process (100% = it was the bottleneck);"
        " host busy = all cores together (100% = the machine was saturated)",
    )


def idle_table(servers: dict[str, dict[str, Any]], args: dict[str, Any]) -> None:
    print("2. Idle cost: clients connected and idle; server CPU and resident memory (VmRSS)")
    levels = sorted({r["clients"] for s in servers.values() for r in s.get("idle", [])})
    rows = []
    for n in levels:
        kinds = {k: r for k, s in servers.items() for r in s.get("idle", []) if r["clients"] == n}
        mine = kinds.get("replay")
        for kind in ORDER:
            r = kinds.get(kind)
            if r is None:
                continue
            rows.append(
                [
                    LABELS[kind],
                    f"{n}",
                    f"{r['seconds']:.0f} s",
                    f"{r['cpu_percent']:.2f}%",
                    mib(r["rss_base_kib"]),
                    mib(r["rss_kib"]),
                    "-" if r["per_client_kib"] is None else f"{r['per_client_kib']:.1f}",
                    "-"
                    if kind == "replay" or mine is None
                    else ratio(mine["per_client_kib"], r["per_client_kib"]),
                    "; ".join(r["problems"]) or "ok",
                ]
            )
    print_table(
        rows,
        [
            "server",
            "clients",
            "over",
            "CPU",
            "RSS empty",
            "RSS idle",
            "KiB/client",
            "replay/this",
            "",
        ],
    )
    explain(
        "CPU = server CPU over the sampling time ('over'; 100% = one core; /proc counts 10 ms"
        " ticks); the most clients are sampled over a whole 20 s keepalive period, so that"
        " the servers' pings count",
        "KiB/client = (RSS idle - RSS empty) / clients",
        "replay/this = replay's memory per client / this server's (<1: replay uses less)",
    )


def timing_table(servers: dict[str, dict[str, Any]], args: dict[str, Any]) -> None:
    if not any(s.get("timing") for s in servers.values()):
        return
    print(
        f"3. Timing: {args['timing_steps']} frames {args['timing_interval'] * 1000:g} ms apart"
        f" to {args['timing_clients']} clients; lateness against the schedule, in ms"
    )
    mine = servers.get("replay", {}).get("timing") or {}
    rows = []
    for kind, s in servers.items():
        t = s.get("timing")
        if not t or "first" not in t:
            continue
        rows.append(
            [
                LABELS[kind],
                ms(t["trigger_to_first_s"]),
                ms(t["first"]["p50"], 2),
                ms(t["first"]["p99"], 2),
                ms(t["first"]["max"], 2),
                ms(t["last"]["p50"], 2),
                ms(t["last"]["p99"], 2),
                ms(t["last"]["max"], 2),
                ms(t["drift_first_s"], 2),
                ms(t["drift_last_s"], 2),
                "-"
                if kind == "replay" or not mine.get("first")
                else ratio(mine["first"]["p99"], t["first"]["p99"]),
                "; ".join(t["problems"]) or "all frames, in order",
            ]
        )
    print_table(
        rows,
        [
            "server",
            "trigger->1st",
            "1st p50",
            "1st p99",
            "1st max",
            "last p50",
            "last p99",
            "last max",
            "drift 1st",
            "drift last",
            "replay/this p99",
            "",
        ],
    )
    explain(
        "schedule: frame i is due at t0 + i*interval, t0 = frame 0's arrival at the first"
        " client (so the HTTP request is not lateness; trigger->1st shows it)",
        "1st = for each frame, the first client to get it; last = the last client to get it"
        " (the fan-out spread); p50/p99/max over the frames",
        "drift = the last frame's lateness (at the first / the last client)",
        "bare and Node ws sleep to absolute deadlines; seed-style sleeps the interval after"
        " each send"
        " loop, as the seed did (so its drift adds up)",
    )


def latency_table(servers: dict[str, dict[str, Any]], args: dict[str, Any]) -> None:
    if not any(s.get("latency") for s in servers.values()):
        return
    print(
        f"4. Trigger latency: {args['latency_triggers']} one-frame triggers to"
        f" {args['latency_clients']} clients; HTTP request sent -> the frame at a client, in ms"
    )
    mine = servers.get("replay", {}).get("latency") or {}
    rows = []
    for kind, s in servers.items():
        t = s.get("latency")
        if not t:
            continue
        rows.append(
            [
                LABELS[kind],
                ms(t["first"]["p50"], 2),
                ms(t["first"]["p99"], 2),
                ms(t["first"]["max"], 2),
                ms(t["last"]["p50"], 2),
                ms(t["answer"]["p50"], 2),
                "-"
                if kind == "replay" or not mine.get("first")
                else ratio(mine["first"]["p50"], t["first"]["p50"]),
                "; ".join(t["problems"]) or "ok",
            ]
        )
    print_table(
        rows,
        [
            "server",
            "1st p50",
            "1st p99",
            "1st max",
            "last p50",
            "answer p50",
            "replay/this p50",
            "",
        ],
    )
    explain(
        "1st = the first client to get the frame; last = the last client; answer = the HTTP"
        " response (replay: ?wait=false; the others answer when sent)",
        "replay: POST /trigger/<1-frame scenario>?speed=0&wait=false; seed-style: POST"
        " /trigger; bare and Node ws: GET /trigger (websockets serves GET only)",
    )


def stall_fate(kind: str, stall: dict[str, Any]) -> str:
    """What happened to the stalled client, in words."""
    if not stall.get("rounds"):
        return "-"
    last = stall["rounds"][-1]
    client = last.get("stalled_client")
    if client is None:
        return "not run (the run without it went wrong)"
    tcp = client["tcp_3s_after"]
    n = stall["clients"]
    parts = []
    drops = client.get("replay_drops")
    if client["server_count_3s_after"] == n:
        parts.append("dropped by the server" + (f" (its drop counter +{drops})" if drops else ""))
    elif client["server_count_3s_after"] == n + 1:
        parts.append("still held by the server")
    if tcp["server"] == "gone":
        parts.append("its server socket is gone")
    elif tcp["server"] == "ESTABLISHED":
        parts.append(f"connection open, {mib(tcp['tx_queue'] / 1024)} unsent in the kernel")
    else:
        parts.append(
            f"server end closed ({tcp['server']}, {mib(tcp['tx_queue'] / 1024)} left to the kernel)"
        )
    read = client["read_after"]
    code = read.get("close_code")
    parts.append(
        f"reading afterwards got {read['frames_read_after']} frames"
        + (f" and close {code}" if code else ", no close frame")
        + (f" ({read['error']})" if read.get("error") else "")
    )
    return "; ".join(parts)


def stall_table(servers: dict[str, dict[str, Any]], args: dict[str, Any]) -> None:
    first = next((s["stall"] for s in servers.values() if s.get("stall")), None)
    if first is None:
        return
    print(
        f"5. Stalled client: {first['clients']} healthy clients + 1 that never reads;"
        f" {first['frames']} frames of {first['frame_bytes']} bytes, no pause; against the"
        " same run without it"
    )
    rows = []
    fates = []
    for kind, s in servers.items():
        t = s.get("stall")
        if not t or not t.get("rounds"):
            continue
        last = t["rounds"][-1]
        base, stalled = last["baseline"], last["stalled"]
        rows.append(
            [
                LABELS[kind],
                "-"
                if t.get("baseline_frames_per_s") is None
                else f"{t['baseline_frames_per_s']:,.0f}",
                "-" if not t.get("stalled_frames_per_s") else f"{t['stalled_frames_per_s']:,.0f}",
                "-" if t.get("ratio") is None else f"{t['ratio']:.2f}x",
                ms(base["completion"]["p50"], 0),
                ms(base["completion"]["max"], 0),
                ms(stalled["completion"]["p50"], 0) if stalled["ok"] else "-",
                ms(stalled["completion"]["max"], 0) if stalled["ok"] else "-",
                f"{stalled['complete']}/{stalled['clients']}"
                + ("" if stalled["ok"] else f" (min {stalled['got_min']} frames)"),
                *(
                    "-" if last.get(key) is None else mib(last[key])
                    for key in (
                        "rss_before_kib",
                        "rss_peak_baseline_kib",
                        "rss_peak_kib",
                        "rss_3s_after_kib",
                        "rss_closed_kib",
                    )
                ),
            ]
        )
        fates.append(f"{LABELS[kind]}: {stall_fate(kind, t)}")
    print_table(
        rows,
        [
            "server",
            "frames/s w/o",
            "frames/s with",
            "with/w/o",
            "done p50 w/o",
            "max w/o",
            "done p50 with",
            "max with",
            "healthy done",
            "RSS before",
            "peak w/o",
            "peak with",
            "RSS +3s",
            "RSS closed",
        ],
    )
    explain(
        "frames/s = healthy clients x frames / time to the last healthy client's last frame"
        " (median of the rounds); with/w/o = the ratio",
        "done = each healthy client's time to its last frame, ms after the trigger (p50 and"
        " max over the clients): the lateness of a burst, with and without the stalled client",
        "healthy done = healthy clients that got every frame within the bound (with the"
        " stalled client; min = the fewest frames one got)",
        "RSS: before the runs, peak during the run without / with the stalled client, 3 s"
        " after the latter and 1 s after the stalled client closed its socket (the last"
        " round; freed memory is not always returned to the system)",
        "The stalled client (SO_RCVBUF 4096: the kernel makes it 8192), 3 s after the run:",
    )
    for fate in fates:
        explain(f"  {fate}")


# --------------------------------------------------------------------------------------
# Targets.


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    servers = by_server(results)
    replay, bare, node, seed = (servers.get(k, {}) for k in ("replay", "bare", "node", "seed"))
    out: list[dict[str, Any]] = []

    def add(
        name: str, measured: float | None, fmt: str, met: bool | None, cpu: float | None = None
    ) -> None:
        out.append(
            {
                "target": name,
                "measured": None if measured is None else fmt.format(measured),
                "value": measured,
                "met": met,
                "cpu_view": cpu,
            }
        )

    def fanout(s: dict[str, Any], n: int, key: str) -> float | None:
        row = next((r for r in s.get("fanout", []) if r["clients"] == n and r["main"]), None)
        return row.get(key) if row else None

    def cpu_ratio(ref: dict[str, Any], n: int) -> float | None:
        """The reference's server CPU per frame / replay's: >1 = replay needs less."""
        mine, theirs = (fanout(s, n, "server_us_per_frame") for s in (replay, ref))
        return theirs / mine if mine and theirs else None

    n = 1000
    r, b, nd, sd = (fanout(s, n, "frames_per_s") for s in (replay, bare, node, seed))
    v = r / b if r and b else None
    add(
        f"fan-out at {n} clients >= 1.0x bare frames/s",
        v,
        "{:.2f}x",
        None if v is None else v >= 1.0,
        cpu_ratio(bare, n),
    )
    if node:
        v = r / nd if r and nd else None
        add(
            f"fan-out at {n} clients >= 1.0x Node ws frames/s",
            v,
            "{:.2f}x",
            None if v is None else v >= 1.0,
            cpu_ratio(node, n),
        )
    v = r / sd if r and sd else None
    add(
        f"fan-out at {n} clients >= 1.5x seed-style",
        v,
        "{:.2f}x",
        None if v is None else v >= 1.5,
        cpu_ratio(seed, n),
    )

    def idle_row(s: dict[str, Any]) -> dict[str, Any] | None:
        rows = s.get("idle") or []
        return max(rows, key=lambda r: r["clients"]) if rows else None

    ri, bi, ni = idle_row(replay), idle_row(bare), idle_row(node)
    if ri:
        add(
            f"idle CPU < 1% with {ri['clients']} clients",
            ri["cpu_percent"],
            "{:.2f}%",
            ri["cpu_percent"] < 1.0,
        )

    def per_client(ref: dict[str, Any] | None) -> float | None:
        if not ri or not ref or not ref["per_client_kib"] or ri["per_client_kib"] is None:
            return None
        return float(ri["per_client_kib"] / ref["per_client_kib"])

    v = per_client(bi)
    add(
        f"idle memory per client <= 1.0x bare ({ri['clients'] if ri else '-'} clients)",
        v,
        "{:.2f}x",
        None if v is None else v <= 1.0,
    )
    if node:
        v = per_client(ni)
        add(
            f"idle memory per client <= 1.5x Node ws ({ri['clients'] if ri else '-'} clients)",
            v,
            "{:.2f}x",
            None if v is None else v <= 1.5,
        )
    t = replay.get("timing") or {}
    p99 = (t.get("first") or {}).get("p99")
    add(
        f"timing p99 lateness at the first client <= 5 ms ({t.get('clients', '-')} clients)",
        None if p99 is None else p99 * 1000,
        "{:.2f} ms",
        None if p99 is None else p99 <= 0.005,
    )
    drift = t.get("drift_first_s")
    add(
        f"drift <= 5 ms over the {t.get('steps', '-')}-step run (first client)",
        None if drift is None else drift * 1000,
        "{:.2f} ms",
        None if drift is None else abs(drift) <= 0.005,
    )
    mine, theirs = (
        ((x.get("latency") or {}).get("first") or {}).get("p50") for x in (replay, bare)
    )
    v = mine / theirs if mine and theirs else None
    add(
        "trigger to first frame, p50 <= 1.5x bare",
        v,
        "{:.2f}x",
        None if v is None else v <= 1.5,
    )
    s = replay.get("stall") or {}
    v = s.get("ratio")
    add(
        "stalled client: healthy throughput >= 0.9x the run without it",
        v,
        "{:.2f}x",
        None if v is None else v >= 0.9,
    )
    return out


def targets_table(results: dict[str, Any]) -> None:
    print("Targets (replay, ratios from this run)")
    rows = [
        [
            t["target"],
            t["measured"] or "-",
            "-" if t["met"] is None else ("yes" if t["met"] else "NO"),
            "" if t["cpu_view"] is None else f"{t['cpu_view']:.2f}x",
        ]
        for t in targets(results)
    ]
    print_table(rows, ["target", "measured", "met", "by CPU/frame"])
    explain(
        "by CPU/frame = the reference's server CPU time per frame per client / replay's: the"
        " same comparison, less sensitive to the machine's background load (seed-style runs"
        " after the others, so a change in that load between the two phases skews"
        " replay/seed frames/s)",
    )


# --------------------------------------------------------------------------------------
# Caveats.


def caveats(results: dict[str, Any]) -> list[str]:
    notes = list(results["meta"]["notes"])
    busy, clients_busy = [], []
    for s in results["servers"]:
        label = LABELS[s["server"]]
        for error in s["errors"]:
            notes.append(f"{label}: STOPPED EARLY: {error}")
        for row in s.get("fanout", []):
            where = f"{label} N={row['clients']} M={row['frames']}"
            cli = row.get("client_cpu_percent_max")
            if cli is not None and cli >= 80:
                clients_busy.append(f"{where} ({cli:.0f}%)")
            host = row.get("host_busy_percent")
            if host is not None and host >= 90:
                busy.append(f"{where} ({host:.0f}%)")
        lines = [line for line in s.get("log_sample", []) if "too slow" not in line]
        expected = len(s.get("log_sample", [])) - len(lines)
        if s.get("log_warnings") and lines:
            notes.append(
                f"{label}: {s['log_warnings']} warning/error lines in its log, such as: "
                + " | ".join(lines[:3])
            )
        elif expected:
            notes.append(f"{label}: its log warns of the stalled client's drop (expected)")
    if clients_busy:
        notes.append(
            "the busiest client process used 80% of a core or more in: "
            + ", ".join(clients_busy)
            + ": there the clients may have held the server back"
        )
    if busy:
        rows = sum(len(s.get("fanout", [])) for s in results["servers"])
        notes.append(
            f"all cores together were 90% busy or more in {len(busy)} of {rows} fan-out rows"
            " (user + system + softirq: the loopback TCP work counts too): server and"
            " clients competed for CPU there; compare the ratios and srv us/frame rather than"
            " the absolute rates. Rows: " + ", ".join(busy)
        )
    return notes


def print_report(results: dict[str, Any]) -> None:
    meta = results["meta"]
    servers = by_server(results)
    args = meta["args"]
    print()
    print(
        f"replay benchmark — {meta['cpus']} CPU(s), Python {meta['python']},"
        f" {args['client_procs']} client processes (raw asyncio WebSocket clients, nice"
        f" {args['client_nice']}), replay at"
        f" {meta['replay_source']}, {meta['elapsed_s']:.0f} s"
    )
    before, after = meta.get("load_average_before"), meta.get("load_average_after")
    if before and after:
        print(
            "load average (1, 5, 15 min) before: "
            + ", ".join(f"{x:.2f}" for x in before)
            + "; after: "
            + ", ".join(f"{x:.2f}" for x in after)
        )
    if meta.get("software"):
        print("software: " + ", ".join(f"{k} {v}" for k, v in meta["software"].items()))
    print(
        f"NOTE: servers and clients share this machine's {meta['cpus']} cores: the ratios"
        " compare the servers under the same conditions; the absolute figures are not the"
        " servers' capacity."
    )
    for table in (fanout_table, idle_table, timing_table, latency_table, stall_table):
        print()
        table(servers, args)
    print()
    targets_table(results)
    notes = caveats(results)
    if notes:
        print()
        print("Notes:")
        for note in notes:
            print(f" - {note}")


# --------------------------------------------------------------------------------------
# The plot.


def pyplot() -> Any:
    """matplotlib's pyplot drawing to files (no display), or None when it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def write_plot(results: dict[str, Any], path: Path) -> bool:
    """Scaling plot (PNG); False when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return False
    servers = by_server(results)
    colors = {
        "replay": "tab:blue",
        "replay-asyncio": "tab:cyan",
        "bare": "tab:green",
        "node": "tab:orange",
        "seed": "tab:red",
    }
    sizes = ""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (rate, memory), (cpu, timing) = axes

    for kind, s in servers.items():
        rows = sorted(
            (r for r in s.get("fanout", []) if r.get("frames_per_s")), key=lambda r: r["clients"]
        )
        main = [r for r in rows if r["main"]]
        if main:
            rate.plot(
                [r["clients"] for r in main],
                [r["frames_per_s"] for r in main],
                "o-",
                color=colors[kind],
                label=LABELS[kind],
            )
            sizes = ", ".join(f"{r['clients']}:{r['frames']}" for r in main)
        for r in rows:
            if not r["main"]:
                rate.plot(r["clients"], r["frames_per_s"], "^", color=colors[kind])
                rate.annotate(
                    f"M={r['frames']}",
                    (r["clients"], r["frames_per_s"]),
                    textcoords="offset points",
                    xytext=(6, -3),
                    fontsize=7,
                    color=colors[kind],
                )
        idle = [r for r in s.get("idle", []) if r.get("per_client_kib") is not None]
        if idle:
            memory.plot(
                [r["clients"] for r in idle],
                [r["per_client_kib"] for r in idle],
                "o-",
                color=colors[kind],
                label=LABELS[kind],
            )
            cpu.plot(
                [r["clients"] for r in idle],
                [r["cpu_percent"] for r in idle],
                "o-",
                color=colors[kind],
                label=LABELS[kind],
            )
        t = s.get("timing") or {}
        late = t.get("lateness_first_s")
        if late:
            xs = [i * 10 * t["interval_s"] for i, v in enumerate(late) if v is not None]
            ys = [v * 1000 for v in late if v is not None]
            timing.plot(xs, ys, "-", color=colors[kind], label=LABELS[kind], linewidth=1)

    rate.set(
        xscale="log",
        xlabel=f"clients N (N:M = {sizes})" if sizes else "clients N",
        ylabel="frames delivered per second (N x M / time)",
        title="Fan-out throughput (M frames, no pause; ^ = other M)",
    )
    rate.set_ylim(bottom=0)
    memory.set(
        xscale="log",
        xlabel="idle clients",
        ylabel="KiB of resident memory per client",
        title="Idle memory per client",
    )
    memory.set_ylim(bottom=0)
    top = max(
        (r for s in servers.values() for r in s.get("idle", [])),
        key=lambda r: (r["clients"], r["seconds"]),
        default=None,
    )
    cpu.set(
        xscale="log",
        xlabel="idle clients (0% = under one 10 ms tick)",
        ylabel="server CPU % (one core = 100)",
        title="Idle CPU"
        + (
            f" (at {top['clients']}: over {top['seconds']:.0f} s, keepalive pings included)"
            if top
            else ""
        ),
    )
    cpu.set_yscale("symlog", linthresh=1.0)
    cpu.set_ylim(bottom=0)
    cpu.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    timing.set(
        xlabel="seconds into the run",
        ylabel="lateness at the first client, ms",
        title="Timing: lateness against the schedule (every 10th frame)",
    )
    timing.set_yscale("symlog", linthresh=1.0)
    timing.axhline(5.0, color="grey", linestyle=":", linewidth=1)
    for ax in (rate, memory, cpu, timing):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(
        f"{' vs '.join(LABELS[s['server']] for s in results['servers'])} —"
        f" {meta['cpus']} CPUs, {meta['time']},"
        f" replay at {meta['replay_source']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
