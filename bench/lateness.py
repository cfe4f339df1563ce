"""Lateness of a playing run while requests, files and clients try to hold the server up.

Run from the project root::

    uv run python bench/lateness.py                      # this checkout
    uv run python bench/lateness.py --compare 790edd6    # and another commit, same run

A run plays a frame every 10 ms to one reading client; each frame carries the time it is
due (``{{ now.ms }}``), so the client measures each frame's lateness directly. The run is
played once per phase, each phase with its own load running beside it (each load in a
process of its own, so that it never shares an interpreter with the measuring client):

1. quiet: nothing else;
2. dashboard: ``GET /scenarios`` in a loop over a folder of 100 scenarios (20 of them
   ``repeat: forever``), one file edited between loads, as a dashboard left open while
   someone works on the files;
3. flood: a client sending 1 MiB text frames as fast as the server takes them;
4. regex: a client sending 26-character frames that make a backtracking regex engine
   take about a second each, to a reaction whose ``match`` is ``^(\\w+\\s?)+$``.

It prints p50, p99 and the maximum lateness per phase and server, and exits non-zero if
a phase of this checkout is later than ``--bound`` ms at its maximum (50 ms: the bound
issue 10 sets for how long any request, file or client may hold the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.sync.client import connect as connect_sync

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TICKS = 300  # frames 10 ms apart: 3 s a phase
PHASES = ["quiet", "dashboard", "flood", "regex"]


def scenarios(folder: Path) -> None:
    """The folder every server serves: the measured ticker, 100 others, a reaction."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ticker.yaml").write_text(
        f"steps:\n  - repeat: {TICKS}\n    steps:\n"
        "      - message: EVENT\n        text: '{{ now.ms }}'\n        delay: 10ms\n"
    )
    for index in range(80):
        steps = "".join(f"  - message: EVENT\n    text: 'frame {i}'\n" for i in range(10))
        (folder / f"plain-{index:02d}.yaml").write_text(f"steps:\n{steps}")
    for index in range(20):
        (folder / f"forever-{index:02d}.yaml").write_text(
            "steps:\n  - repeat: forever\n    steps:\n      - chunk: tick\n        delay: 10ms\n"
        )
    (folder / "echo.yaml").write_text(
        "reacts_to:\n  message: CHAT_INPUT\n  match: '^(\\w+\\s?)+$'\n"
        "steps:\n  - message: EVENT\n    text: echo\n    to: sender\n"
    )


def serve(source: Path, folder: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = ["uv", "run", "--project", str(source), "replay", "serve"]
    command += ["--port", str(port), "--scenarios", str(folder)]
    return start_server(command, source, port, log)


def start_server(command: list[str], source: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Run ``command`` (a server of the checkout in ``source``) and wait until it answers
    ``/healthz`` on ``port``; its output goes to ``log``."""
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=source, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2).read()
            return server
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"the server in {source} did not start: see {log}")


# --- loads: each runs in a process of its own until stopped ----------------------------------


def dashboard(url: str, folder: str, stop: Any) -> None:
    edited = Path(folder) / "plain-00.yaml"
    count = 0
    while not stop.is_set():
        count += 1
        edited.write_text(f"steps:\n  - message: EVENT\n    text: 'edit {count}'\n")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/scenarios", timeout=30).read()


def flood(ws_url: str, folder: str, stop: Any) -> None:
    frame = json.dumps({"message_type": "CHAT", "message": "x" * (1024 * 1024 - 64)})
    with contextlib.suppress(Exception), connect_sync(ws_url + "/ws", max_size=None) as ws:
        while not stop.is_set():
            ws.send(frame)


def regex(ws_url: str, folder: str, stop: Any) -> None:
    evil = json.dumps({"message_type": "CHAT_INPUT", "message": "a" * 25 + "!"})
    with contextlib.suppress(Exception), connect_sync(ws_url + "/ws") as ws:
        while not stop.is_set():
            ws.send(evil)
            time.sleep(0.05)


LOADS = {"dashboard": dashboard, "flood": flood, "regex": regex}


# --- one phase: the ticker played while the load runs ---------------------------------------


async def measure(url: str, ws_url: str) -> list[float]:
    """Play the ticker to one client; each frame's lateness in ms."""
    lateness: list[float] = []
    async with connect(ws_url + "/ws") as ws:
        started = await asyncio.to_thread(trigger, url)
        deadline = time.monotonic() + 60
        while len(lateness) < TICKS and time.monotonic() < deadline:
            try:
                text = await asyncio.wait_for(
                    ws.recv(), timeout=max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                break
            frame = json.loads(text)
            if frame.get("message_type") == "EVENT" and str(frame.get("message")).isdigit():
                lateness.append(time.time() * 1000 - int(frame["message"]))
        if not started:
            return []
    return lateness


def trigger(url: str) -> bool:
    request = urllib.request.Request(f"{url}/trigger/ticker?wait=false", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return bool(answer.status == 202)
    except OSError:
        return False


def phase(name: str, url: str, ws_url: str, folder: Path) -> dict[str, Any]:
    stop = multiprocessing.Event()
    load = None
    if name in LOADS:
        target = url if name == "dashboard" else ws_url
        load = multiprocessing.Process(target=LOADS[name], args=(target, str(folder), stop))
        load.start()
        time.sleep(1.0)  # let the load get going before the run starts
    try:
        lateness = asyncio.run(measure(url, ws_url))
    except (OSError, TimeoutError) as error:  # the server was held up: no frames at all
        print(f"  {name}: {type(error).__name__}: {error}", file=sys.stderr)
        lateness = []
    finally:
        stop.set()
        if load is not None:
            load.join(timeout=10)
            if load.is_alive():
                load.kill()
    if not lateness:
        return {"frames": 0}
    ordered = sorted(lateness)
    return {
        "frames": len(lateness),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


def bench(label: str, source: Path, work: Path, port: int) -> dict[str, Any]:
    folder = work / label / "scenarios"
    scenarios(folder)
    server = serve(source, folder, port, work / f"{label}.log")
    url, ws_url = f"http://{HOST}:{port}", f"ws://{HOST}:{port}"
    try:
        return {name: phase(name, url, ws_url, folder) for name in PHASES}
    finally:
        stop_server(server)


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()


def checkout(ref: str, work: Path) -> Path:
    target = work / f"src-{ref}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", str(target), ref],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return target


def report(results: dict[str, dict[str, Any]], bound: float) -> bool:
    labels = list(results)
    print(f"\nlateness of a run playing a frame every 10 ms ({TICKS} frames), in ms")
    print(f"{'phase':<10}" + "".join(f"{label:>32}" for label in labels))
    print(f"{'':<10}" + "".join(f"{'p50':>10}{'p99':>11}{'max':>11}" for _ in labels))
    within = True
    for name in PHASES:
        row = f"{name:<10}"
        for label in labels:
            figures = results[label][name]
            if not figures.get("frames"):
                row += f"{'(no frames: server held up)':>32}"
                within = within and label != labels[0]
                continue
            row += f"{figures['p50']:>10.1f}{figures['p99']:>11.1f}{figures['max']:>11.1f}"
            if label == labels[0] and figures["max"] > bound:
                within = False
            if figures["frames"] < TICKS:
                row += f" ({figures['frames']} frames)"
        print(row)
    print(f"\nbound for this checkout: max <= {bound:g} ms: {'met' if within else 'NOT met'}")
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", metavar="REF", help="also measure this git ref")
    parser.add_argument("--bound", type=float, default=50.0, help="max lateness in ms")
    parser.add_argument("--port", type=int, default=18765)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-lateness-") as temp:
        work = Path(temp)
        sources = {"this checkout": ROOT}
        if args.compare:
            sources[args.compare] = checkout(args.compare, work)
        results: dict[str, dict[str, Any]] = {}
        try:
            for offset, (label, source) in enumerate(sources.items()):
                print(f"measuring {label} ...", file=sys.stderr)
                results[label] = bench(label.replace(" ", "-"), source, work, args.port + offset)
        finally:
            for source in sources.values():
                if source != ROOT:
                    subprocess.run(
                        ["git", "worktree", "remove", "--force", str(source)],
                        cwd=ROOT,
                        capture_output=True,
                    )
        print(json.dumps(results, indent=1), file=sys.stderr)
        return 0 if report(results, args.bound) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
