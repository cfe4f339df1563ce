"""Lateness of a playing run while a 100,000-frame scenario is added, listed, shown and
triggered beside it.

Run from the project root::

    uv run python bench/long_scenario.py                     # this checkout
    uv run python bench/long_scenario.py --compare 0b2d249   # and another commit, same run
    uv run python bench/long_scenario.py --frames 20000      # a smaller long scenario

A long recording becomes a scenario the way ``replay convert`` writes it: a synthetic hour
of a Schwarm backend streaming about 30 chunks a second (100,000 frames), converted into
``long.yaml``, which plays its parts ``long-part-01.yaml``... in order. The bench starts
``replay serve`` on a folder with a ticker (a frame every 10 ms to one reading client,
each carrying the time it is due as ``{{ now.ms }}``), plays the ticker, and while it
plays does what a person with the dashboard open does:

1. moves the long scenario's files into the folder (the server's folder watch reads and
   checks them), and lists ``GET /scenarios`` until ``long`` is there and valid
   (``load``: from the move to that answer);
2. ``GET /scenarios/long`` and ``GET /scenarios/long-part-01`` (a scenario's page: its
   steps and timeline);
3. ``POST /trigger/long?wait=false`` (``start``: the answer) to every client; a second
   client on ``/ws/stream`` reads its frames (``first frame``: from the trigger), and the
   bench polls ``GET /runs/{id}`` until its summary has ``frames`` (``planned``), while a
   third client follows the event feed (``GET /events``, as the dashboard does).

It prints p50, p99 and the maximum lateness of the ticker's frames, quiet (nothing else)
and long (the above), and the times of the steps; and exits non-zero if the long
scenario delayed the ticker by more than ``--bound`` ms (5 ms: issue 15's bound) on this
checkout: the long phase's maximum (and p99) more than that over the quiet phase's, the
ticker's own lateness on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The lateness bench's way of checking out, starting and stopping a server.
from lateness import checkout, start_server, stop_server  # noqa: E402

from replay.protocol.wire import encode  # noqa: E402
from replay.record.convert import convert  # noqa: E402
from replay.record.format import Frame, Header, Recording, text_frame  # noqa: E402
from replay.record.scenarios import write_converted  # noqa: E402

HOST = "127.0.0.1"
STALLS = ROOT / "bench" / "stalls.py"
#: The ticker's frames, 10 ms apart: long enough for the long scenario to be read (a few
#: seconds for 4 MB of YAML), listed, shown and started while it plays.
TICKS = 1500
PHASES = ["quiet", "long"]
NAME = "long"


def long_recording(frames: int, rate: float = 30.0, seed: int = 7) -> list[Recording]:
    """A Schwarm backend streaming about ``rate`` chunks a second on /ws/stream (a close
    every 500), with an EVENT on /ws every 100 frames: ``frames`` frames in all."""
    rng = random.Random(seed)
    words = ["The ", "plan ", "is ", "to ", "read", " the", " code", ", then", " write", " tests."]
    ws: list[Frame] = []
    stream: list[Frame] = []
    t = 0.5
    for number in range(1, frames + 1):
        if number % 100 == 0:
            event = encode({"name": "agent - TOOL_EXECUTION", "step": number})
            ws.append(text_frame(t, "server", encode({"message_type": "EVENT", "message": event})))
        elif number % 500 == 1:
            stream.append(text_frame(t, "server", encode({"type": "close", "content": None})))
        else:
            chunk = {"type": "default", "content": rng.choice(words)}
            stream.append(text_frame(t, "server", encode(chunk)))
        t += rng.uniform(0.6, 1.4) / rate

    def header(session: str, endpoint: str) -> Header:
        return Header(session, endpoint, query="client_id=ui", client="ui", started=1.7e9)

    return [
        Recording("long-ws.jsonl", header("long-ws", "/ws"), tuple(ws)),
        Recording("long-stream.jsonl", header("long-stream", "/ws/stream"), tuple(stream)),
    ]


def write_long(folder: Path, frames: int) -> list[Path]:
    """The long scenario's files, as ``replay convert --scenarios`` writes them."""
    return write_converted(folder, convert(long_recording(frames), name=NAME))


def write_ticker(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ticker.yaml").write_text(
        f"steps:\n  - repeat: {TICKS}\n    steps:\n"
        "      - message: EVENT\n        text: '{{ now.ms }}'\n        delay: 10ms\n"
    )


def serve(
    source: Path,
    folder: Path,
    port: int,
    log: Path,
    stalls: Path | None = None,
    options: tuple[str, ...] = (),
) -> subprocess.Popen[bytes]:
    """``options``: more ``replay serve`` options (``--workers 2 --backplane URL``)."""
    command = ["uv", "run", "--project", str(source)]
    if stalls is None:
        command += ["replay", "serve", "--port", str(port), "--scenarios", str(folder), *options]
    else:
        command += ["python", str(STALLS), str(folder), str(port), str(stalls)]
    return start_server(command, source, port, log)


#: Seconds a 404 is asked again: on ``serve --workers`` each request may reach another
#: worker, which may not have read the new files (or started the run) yet.
MISSING_FOR = 10.0


def request(url: str, method: str = "GET", parse: bool = True) -> Any:
    """The answer's JSON (with ``parse=False``: its size, read and dropped)."""
    deadline = time.monotonic() + MISSING_FOR
    while True:
        try:
            with urllib.request.urlopen(
                urllib.request.Request(url, method=method), timeout=60
            ) as answer:
                if parse:
                    return json.loads(answer.read())
                # A scenario page is megabytes: parsed here, json.loads would hold this
                # process's interpreter for tens of ms, and the ticker's frames would
                # be read that late (the server's lateness is what is measured).
                return sum(len(chunk) for chunk in iter(lambda: answer.read(65536), b""))
        except urllib.error.HTTPError as error:
            if error.code != 404 or time.monotonic() > deadline:
                raise
            if time.monotonic() + MISSING_FOR - 0.1 < deadline:  # once per request
                print(f"404 from {method} {url}: asking again", file=sys.stderr)
            time.sleep(0.1)


# --- the long phase: what a dashboard user does while the ticker plays ----------------------


def feed_reader(url: str, stop: threading.Event) -> None:
    """Follow the event feed, as an open dashboard does, until stopped."""
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/events", timeout=60) as feed:
        while not stop.is_set() and feed.readline():
            pass


def long_load(url: str, staged: Path, folder: Path, times: dict[str, float]) -> str | None:
    """Add, list, show and trigger the long scenario; the run id, the steps' times."""
    time.sleep(0.5)
    started = time.monotonic()
    for path in sorted(staged.iterdir()):  # the parts first: long.yaml plays them
        os.replace(path, folder / path.name)
    deadline = started + 120
    while time.monotonic() < deadline:
        listed = request(f"{url}/scenarios")["scenarios"]
        found = next((s for s in listed if s["name"] == NAME), None)
        if found is not None and found["valid"]:
            break
        time.sleep(0.1)
    times["load_s"] = time.monotonic() - started
    mark = time.monotonic()
    request(f"{url}/scenarios/{NAME}", parse=False)
    if (folder / f"{NAME}-part-01.yaml").exists():  # a small --frames makes no parts
        request(f"{url}/scenarios/{NAME}-part-01", parse=False)
    times["show_s"] = time.monotonic() - mark
    mark = time.monotonic()
    run = request(f"{url}/trigger/{NAME}?wait=false", "POST")
    times["trigger_at"] = mark
    times["start_s"] = time.monotonic() - mark
    return str(run["run_id"])


def await_plan(url: str, run_id: str, times: dict[str, float]) -> None:
    deadline = time.monotonic() + 20  # a server that counts no long plan gives null
    while time.monotonic() < deadline:
        if request(f"{url}/runs/{run_id}")["frames"] is not None:
            times["planned_s"] = time.monotonic() - times["trigger_at"]
            return
        time.sleep(0.05)


async def read_long(ws_url: str, times: dict[str, float], stop: asyncio.Event) -> None:
    """A client of /ws/stream: when the long run's first frame arrived, and how many."""
    async with connect(ws_url + "/ws/stream") as ws:
        times["frames"] = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(ws.recv(), timeout=0.2)
            except TimeoutError:
                continue
            if "first_frame_at" not in times:
                times["first_frame_at"] = time.monotonic()
            times["frames"] += 1


async def measure(url: str, ws_url: str, load: Any) -> list[float]:
    """Play the ticker to one client while ``load`` runs in a thread; each frame's
    lateness in ms."""
    lateness: list[float] = []
    async with connect(ws_url + "/ws") as ws:
        await asyncio.to_thread(request, f"{url}/trigger/ticker?wait=false", "POST")
        running = asyncio.ensure_future(asyncio.to_thread(load)) if load else None
        deadline = time.monotonic() + TICKS / 100 + 60
        while len(lateness) < TICKS and time.monotonic() < deadline:
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            frame = json.loads(text)
            if frame.get("message_type") == "EVENT" and str(frame.get("message")).isdigit():
                lateness.append(time.time() * 1000 - int(frame["message"]))
        if running is not None:
            await running
    return lateness


def figures(lateness: list[float]) -> dict[str, Any]:
    if not lateness:
        return {"frames": 0}
    ordered = sorted(lateness)
    return {
        "frames": len(ordered),
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


def bench(
    label: str,
    source: Path,
    work: Path,
    port: int,
    frames: int,
    stalls: Path | None = None,
    options: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The quiet and the long phase on one server (``options``: more ``replay serve``
    options); the ticker's lateness in each and the long scenario's times."""
    folder, staged = work / label / "scenarios", work / label / "staged"
    write_ticker(folder)
    write_long(staged, frames)
    server = serve(source, folder, port, work / f"{label}.log", stalls, options)
    url, ws_url = f"http://{HOST}:{port}", f"ws://{HOST}:{port}"
    results: dict[str, Any] = {}
    try:
        results["quiet"] = figures(asyncio.run(measure(url, ws_url, None)))
        times: dict[str, float] = {}

        async def long_phase() -> list[float]:
            stop, feed_stop = asyncio.Event(), threading.Event()
            feed = threading.Thread(target=feed_reader, args=(url, feed_stop), daemon=True)
            feed.start()
            reader = asyncio.ensure_future(read_long(ws_url, times, stop))
            run_id: list[str | None] = [None]

            def load() -> None:
                run_id[0] = long_load(url, staged, folder, times)
                if run_id[0] is not None:
                    await_plan(url, run_id[0], times)

            try:
                return await measure(url, ws_url, load)
            finally:
                stop.set()
                feed_stop.set()
                await reader
                if run_id[0] is not None:
                    with contextlib.suppress(OSError):
                        request(f"{url}/runs/{run_id[0]}/cancel", "POST")

        results["long"] = figures(asyncio.run(long_phase()))
        if "first_frame_at" in times:
            times["first_frame_s"] = times["first_frame_at"] - times["trigger_at"]
        results["times"] = {key: value for key, value in times.items() if not key.endswith("_at")}
        return results
    finally:
        stop_server(server)


def report(results: dict[str, dict[str, Any]], bound: float, frames: int) -> bool:
    print(f"\nlateness of a run playing a frame every 10 ms ({TICKS} frames), in ms,")
    print(f"while a {frames:,}-frame scenario is added, listed, shown and triggered")
    within = True
    first = next(iter(results))
    for label, result in results.items():
        print(f"\n{label}")
        print(f"{'phase':<8}{'p50':>9}{'p99':>9}{'max':>9}")
        for name in PHASES:
            got = result[name]
            if not got.get("frames"):
                print(f"{name:<8}  (no frames: server held up)")
                within = within and label != first
                continue
            print(f"{name:<8}{got['p50']:>9.1f}{got['p99']:>9.1f}{got['max']:>9.1f}")
            quiet = result[PHASES[0]]
            if label == first and name == "long" and quiet.get("frames"):
                added = {q: got[q] - quiet[q] for q in ("p99", "max")}
                print(f"{'added':<8}{'':>9}{added['p99']:>+9.1f}{added['max']:>+9.1f}")
                within = within and max(added.values()) <= bound
        times = result.get("times", {})
        shown = ", ".join(
            f"{key.removesuffix('_s')} {value:.2f} s"
            for key, value in times.items()
            if key.endswith("_s")
        )
        print(f"long scenario: {shown}; {times.get('frames', 0):.0f} of its frames read")
    verdict = "met" if within else "NOT met"
    print(f"\nbound for this checkout: the long scenario adds <= {bound:g} ms: {verdict}")
    return within


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", metavar="REF", help="also measure this git ref")
    parser.add_argument("--bound", type=float, default=5.0, help="max lateness in ms")
    parser.add_argument("--frames", type=int, default=100_000, help="the long scenario's")
    parser.add_argument("--port", type=int, default=18865)
    parser.add_argument("--stalls", type=Path, help="record where the loop was held here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay-long-") as temp:
        work = Path(temp)
        sources = {"this checkout": ROOT}
        if args.compare:
            sources[args.compare] = checkout(args.compare, work)
        results: dict[str, dict[str, Any]] = {}
        try:
            for offset, (label, source) in enumerate(sources.items()):
                print(f"measuring {label} ...", file=sys.stderr)
                key = label.replace(" ", "-")
                stalls = _stalls_file(args.stalls, key)
                if stalls is not None:
                    stalls.unlink(missing_ok=True)
                results[label] = bench(key, source, work, args.port + offset, args.frames, stalls)
        finally:
            for source in sources.values():
                if source != ROOT:
                    subprocess.run(
                        ["git", "worktree", "remove", "--force", str(source)],
                        cwd=ROOT,
                        capture_output=True,
                    )
                    shutil.rmtree(source, ignore_errors=True)
        print(json.dumps(results, indent=1), file=sys.stderr)
        within = report(results, args.bound, args.frames)
        if args.stalls is not None:
            sys.path.insert(0, str(ROOT / "bench"))
            from stalls import summary

            for label in sources:
                path = _stalls_file(args.stalls, label.replace(" ", "-"))
                assert path is not None
                print(f"\n{label}: where the loop was held ({path}):\n{summary(path)}")
        return 0 if within else 1


def _stalls_file(path: Path | None, label: str) -> Path | None:
    """Each server's own stalls file: FILE-LABEL.jsonl."""
    if path is None:
        return None
    return path.with_name(f"{path.stem}-{label}{path.suffix or '.jsonl'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
