"""The printed tables and the plot of cluster.py's results (as report.py does run.py's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report import LABELS, explain, ms, pct, print_table, pyplot, ratio

COLORS = {
    "replay-1": "tab:blue",
    "replay-2w": "tab:purple",
    "replay-4w": "tab:purple",
    "bare": "tab:green",
    "node": "tab:orange",
    "seed": "tab:red",
}


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def cluster_kind(servers: list[dict[str, Any]]) -> str | None:
    """The replay of several processes in a part's results, if any."""
    return next((s["server"] for s in servers if s.get("processes", 1) > 1), None)


def fanout_table(servers: list[dict[str, Any]]) -> None:
    many = cluster_kind(servers)
    name = LABELS.get(many or "", "replay, N processes")
    print("1. Fan-out: M frames with no pause to N clients; trigger -> the last client has all M")
    rows_by: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for s in servers:
        for row in s.get("fanout", []):
            rows_by.setdefault((row["clients"], row["frames"]), {})[s["server"]] = row
    count = {s["server"]: s.get("processes", 1) for s in servers}
    rows = []
    for (n, m), kinds in sorted(rows_by.items()):
        mine = kinds.get(many or "", {})
        for s in servers:
            r = kinds.get(s["server"])
            if r is None:
                continue
            rows.append(
                [
                    LABELS[s["server"]],
                    str(count[s["server"]]),
                    f"{n}x{m}",
                    f"{r['frames_per_s']:,.0f}" if r.get("frames_per_s") else "failed",
                    ms(r.get("time_s"), 0),
                    ms(r.get("first_s"), 1),
                    pct(r.get("server_cpu_percent")),
                    _us(r.get("server_us_per_frame")),
                    pct(r.get("client_cpu_percent_max")),
                    ratio(mine.get("frames_per_s"), r.get("frames_per_s")),
                    ratio(r.get("server_us_per_frame"), mine.get("server_us_per_frame")),
                ]
            )
    print_table(
        rows,
        [
            "server",
            "procs",
            "NxM",
            "frames/s",
            "last ms",
            "1st ms",
            "srv CPU",
            "srv us/frame",
            "cli CPU max",
            "N-proc/this",
            "by CPU/frame",
        ],
    )
    explain(
        f"N-proc/this: {name}'s frames/s over this row's; by CPU/frame: this row's server",
        "CPU per frame per client over its (above 1: it spends less). srv CPU adds up every",
        "process of the server (the parent and each worker), as % of one core. A cluster's",
        "trigger starts its run 50 ms ahead on every node (the backplane's start delay): it",
        "is in 1st ms and in the time. bare, Node ws and seed-style have no cluster mode.",
    )
    for s in servers:
        for row in s.get("fanout", []):
            for text in row.get("problems", []):
                print(f"   ! {LABELS[s['server']]} {row['clients']}x{row['frames']}: {text}")


def idle_table(servers: list[dict[str, Any]]) -> None:
    print("\n2. Idle clients: the server's memory and CPU, then one frame to every client")
    rows = []
    for s in servers:
        r = s.get("idle")
        if r is None:
            rows.append([LABELS[s["server"]], str(s.get("processes", 1))] + ["failed"] + [""] * 7)
            continue
        t = r["trigger"]
        rows.append(
            [
                LABELS[s["server"]],
                str(s.get("processes", 1)),
                f"{r['opened']:,}",
                f"{r['connect_s']:.0f}",
                f"{r['rss_kib'] / 1024:,.0f}",
                "-" if r["per_client_kib"] is None else f"{r['per_client_kib']:.1f}",
                f"{r['cpu_percent']:.1f}%",
                f"{t['complete']:,}/{t['clients']:,}",
                ms(t["first_s"], 0),
                ms(t["last_s"], 0),
            ]
        )
    print_table(
        rows,
        [
            "server",
            "procs",
            "clients",
            "connect s",
            "RSS MiB",
            "KiB/client",
            "CPU idle",
            "got the frame",
            "1st ms",
            "all ms",
        ],
    )
    seconds = next((s["idle"]["seconds"] for s in servers if s.get("idle")), 0)
    explain(
        "RSS: every process of the server (each worker counts its own copy of the",
        "interpreter and libraries); KiB/client = (RSS with them - RSS fresh) / clients.",
        f"CPU idle: all processes over {seconds:.0f} s, as % of one core (keepalive pings",
        "included: one per client every 20 s). all ms: trigger -> the last client has it.",
    )
    for s in servers:
        for text in (s.get("idle") or {}).get("problems", []) + s.get("errors", []):
            print(f"   ! {LABELS[s['server']]}: {text}")


def timing_table(part: dict[str, Any]) -> None:
    interval = part["interval_s"] * 1000
    print(
        f"\n3. Cross-node timing: {part['frames']} frames {interval:g} ms apart to"
        f" {part['clients']} clients; per frame, its latest arrival minus its earliest"
    )
    rows = []
    for name, label in (
        ("cluster", f"{part['nodes']} nodes, across all clients"),
        ("cluster.within", f"{part['nodes']} nodes, within one node"),
        ("cluster.offset", f"{part['nodes']} nodes, the nodes' first arrivals apart"),
        ("single", "1 process, all clients"),
    ):
        key, _, which = name.partition(".")
        got = part.get(key) or {}
        p = got.get(which or "across")
        if not p:
            rows.append([label, "failed", "", ""])
            continue
        rows.append([label, ms(p["p50"], 2), ms(p["p99"], 2), ms(p["max"], 2)])
    print_table(rows, ["spread", "p50 ms", "p99 ms", "max ms"])
    across = (part.get("cluster") or {}).get("across") or {}
    met = "met" if part.get("met") else "NOT met"
    behind = (part.get("cluster") or {}).get("node_behind_s") or []
    explain(
        f"target: p99 across nodes < {part['target_p99_s'] * 1000:g} ms on one host:"
        f" {met} ({ms(across.get('p99'), 2)} ms).",
        "each node's first arrival behind the earliest node's, median (node 0 took the"
        " trigger): " + ", ".join(f"node {i} {ms(b, 2)} ms" for i, b in enumerate(behind)),
    )
    for key in ("cluster", "single"):
        for text in (part.get(key) or {}).get("problems", []):
            print(f"   ! {key}: {text}")


def long_table(part: dict[str, Any]) -> None:
    print(
        f"\n4. Lateness of a run (a frame every 10 ms) while a {part['frames']:,}-frame"
        " scenario is added, listed, shown and triggered (long_scenario.py), ms"
    )
    rows = []
    for label, got in part.items():
        if not isinstance(got, dict):
            continue
        if "quiet" not in got:
            rows.append([label, "failed"] + [""] * 5)
            continue
        times = got.get("times", {})
        cells = [label]
        for phase in ("quiet", "long"):
            f = got[phase]
            cells.append(
                f"{f['p50']:.1f} / {f['p99']:.1f} / {f['max']:.1f}" if f.get("frames") else "none"
            )
        for key in ("load_s", "start_s", "first_frame_s", "planned_s"):
            cells.append("-" if key not in times else f"{times[key]:.2f}")
        rows.append(cells)
    print_table(
        rows,
        [
            "server",
            "quiet p50/p99/max",
            "long p50/p99/max",
            "load s",
            "start s",
            "1st frame s",
            "planned s",
        ],
    )
    explain(
        f"issue 15's bound: the long scenario adds <= {part['bound_ms']:g} ms to the ticker's"
        " lateness (long minus quiet, p99 and max; as bench/long_scenario.py judges it)."
    )
    for label, got in part.items():
        if isinstance(got, dict):
            for text in got.get("problems", []):
                print(f"   ! {label}: {text}")


def print_report(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print(
        f"\nreplay clusters at {meta['replay_source']} ({meta['mode']}), {meta['cpus']} CPUs,"
        f" {meta['time']}; load average before {meta['load_average_before'][0]:.1f},"
        f" after {meta['load_average_after'][0]:.1f}\n"
    )
    if "fanout" in results:
        fanout_table(results["fanout"])
    if "idle" in results:
        idle_table(results["idle"])
    if "timing" in results:
        timing_table(results["timing"])
    if "long" in results:
        long_table(results["long"])
    if meta["notes"]:
        print("\nnotes:")
        for note in meta["notes"]:
            print(f" - {note}")


# --------------------------------------------------------------------------------------
# The plot.


def write_plot(results: dict[str, Any], path: Path) -> bool:
    """The cluster plot (PNG); False when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return False
    fig, ((rate, cost), (memory, spread)) = plt.subplots(2, 2, figsize=(12, 8.5))
    _fanout_bars(rate, cost, results.get("fanout", []))
    _idle_bars(memory, results.get("idle", []))
    _spread_lines(spread, results.get("timing"))
    meta = results["meta"]
    fig.suptitle(
        f"replay on several processes vs one and the references — {meta['cpus']} CPUs,"
        f" {meta['time']}, replay at {meta['replay_source']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _fanout_bars(rate: Any, cost: Any, servers: list[dict[str, Any]]) -> None:
    rows = sorted({(r["clients"], r["frames"]) for s in servers for r in s.get("fanout", [])})
    width = 0.8 / max(1, len(servers))
    for i, s in enumerate(servers):
        got = {(r["clients"], r["frames"]): r for r in s.get("fanout", [])}
        xs = [j + i * width for j in range(len(rows))]
        color = COLORS.get(s["server"], "grey")
        label = LABELS[s["server"]]
        rate.bar(xs, [got.get(k, {}).get("frames_per_s") or 0 for k in rows], width, color=color)
        cost.bar(
            xs,
            [got.get(k, {}).get("server_us_per_frame") or 0 for k in rows],
            width,
            color=color,
            label=label,
        )
    for ax, title, ylabel in (
        (rate, "Fan-out throughput (M frames, no pause)", "frames delivered per second"),
        (cost, "Server CPU per frame per client (all processes)", "µs"),
    ):
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))])
        ax.set_xticklabels([f"{n} clients x {m}" for n, m in rows])
        ax.set(title=title, ylabel=ylabel)
        ax.grid(True, axis="y", alpha=0.3)
    if servers:
        cost.legend(fontsize=8)


def _idle_bars(ax: Any, servers: list[dict[str, Any]]) -> None:
    done = [s for s in servers if s.get("idle") and s["idle"]["per_client_kib"] is not None]
    xs = range(len(done))
    ax.bar(
        xs,
        [s["idle"]["per_client_kib"] for s in done],
        color=[COLORS.get(s["server"], "grey") for s in done],
    )
    for x, s in zip(xs, done, strict=True):
        r = s["idle"]
        ax.annotate(
            f"{r['opened']:,} clients\nCPU {r['cpu_percent']:.1f}%",
            (x, r["per_client_kib"]),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(list(xs))
    ax.set_xticklabels([LABELS[s["server"]] for s in done], fontsize=7, rotation=15)
    ax.set(title="Idle clients: memory per client (all processes)", ylabel="KiB per client")
    ax.grid(True, axis="y", alpha=0.3)


def _spread_lines(ax: Any, part: dict[str, Any] | None) -> None:
    if part:
        interval = part["interval_s"]
        for key, label, color in (
            ("cluster", f"{part['nodes']} nodes", "tab:purple"),
            ("single", "1 process", "tab:blue"),
        ):
            values = (part.get(key) or {}).get("across_s") or []
            ax.plot(
                [i * interval for i in range(len(values))],
                [v * 1000 for v in values],
                "-",
                color=color,
                linewidth=1,
                label=label,
            )
        ax.axhline(part["target_p99_s"] * 1000, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("symlog", linthresh=10.0)
        ax.set_ylim(bottom=0)
        ax.set(
            title=f"One frame's arrival across {part['clients']} clients (target p99 < 10 ms)",
            xlabel="seconds into the run",
            ylabel="latest minus earliest arrival, ms",
        )
        ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
