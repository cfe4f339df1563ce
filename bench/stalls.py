"""``replay serve`` with a watchdog: where was the event loop when it did not run?

Run by ``bench/long_scenario.py --stalls FILE`` (or alone)::

    uv run python bench/stalls.py SCENARIOS PORT stalls.jsonl [THRESHOLD_MS]
    uv run python bench/stalls.py --summary stalls.jsonl

The server runs in this process with a heartbeat task on its event loop (every 1 ms) and
a watchdog thread that looks every 0.5 ms. Whenever the heartbeat is more than the
threshold (5 ms) late, the watchdog samples the stack of the loop's thread and of every
other thread (the planning and reading threads), until the loop runs again; each such
stall is one JSON line: when, how long, and the samples.

How to read a stall: a loop thread sampled in Python code (a route, the runner) is work
done on the loop; a loop thread in ``select`` or a socket ``write`` while another thread
runs Python waits for the interpreter (the GIL) or for a CPU; a loop thread in ``select``
while every other thread is idle waits for a CPU (other processes on the machine). The
watchdog itself needs the interpreter to sample, so a stall with few samples is one in
which no Python thread could run (a garbage collection, a long call into C).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

HEARTBEAT = 0.001
LOOK_EVERY = 0.0005


def _stack(frame: FrameType | None, depth: int = 24) -> list[str]:
    if frame is None:
        return []
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)][
        -depth:
    ]


class Watchdog:
    """Samples the loop thread's stack whenever the loop is late by over ``threshold``;
    and records every garbage collection pass over 1 ms (it holds the interpreter
    throughout, and the watchdog cannot sample meanwhile)."""

    def __init__(self, out: Path, threshold: float) -> None:
        self.out = out
        self.threshold = threshold
        self.beat = time.perf_counter()
        self.loop_thread = threading.get_ident()
        self._collecting = (0.0, 0.0)
        gc.callbacks.append(self._collection)

    def _collection(self, phase: str, info: dict[str, Any]) -> None:
        now = (time.perf_counter(), time.thread_time())
        if phase == "start":
            self._collecting = now
            return
        took = now[0] - self._collecting[0]
        if took > 0.001:
            line = {
                "gc": info["generation"],
                "start": time.time() - took,
                "max": took,
                # The pass's own CPU time: less than ``max`` if the thread was preempted.
                "cpu": now[1] - self._collecting[1],
                "thread": threading.current_thread().name,
                "collected": info["collected"],
            }
            with self.out.open("a") as out:
                out.write(json.dumps(line) + "\n")

    async def heartbeat(self) -> None:
        while True:
            self.beat = time.perf_counter()
            await asyncio.sleep(HEARTBEAT)

    def watch(self) -> None:
        stall: dict[str, Any] | None = None
        me = threading.get_ident()
        while True:
            time.sleep(LOOK_EVERY)
            late = time.perf_counter() - self.beat
            if late > self.threshold:
                frames = sys._current_frames()
                others = {
                    thread.name: _stack(frames.get(thread.ident or 0), 6)
                    for thread in threading.enumerate()
                    if thread.ident not in (self.loop_thread, me)
                }
                if stall is None:
                    stall = {"start": time.time(), "samples": [], "max": 0.0}
                stall["max"] = max(stall["max"], late)
                stall["samples"].append(
                    {"loop": _stack(frames.get(self.loop_thread)), "others": others}
                )
            elif stall is not None:
                with self.out.open("a") as out:
                    out.write(json.dumps(stall) + "\n")
                stall = None


def serve(folder: Path, port: int, out: Path, threshold: float) -> None:
    from replay.server import Server, Settings, create_app, uvicorn_config

    watchdog = Watchdog(out, threshold)

    class Watched(Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            self._heartbeat = asyncio.create_task(watchdog.heartbeat())
            threading.Thread(target=watchdog.watch, name="watchdog", daemon=True).start()

    app = create_app(Settings(scenarios=folder))
    Watched(uvicorn_config(app, "127.0.0.1", port, log_level="warning")).run()


#: The innermost frames of a loop thread that is not running Python: waiting in the
#: selector, or in a system call that let the interpreter go (a socket's write or close).
_WAITING = ("select", "write", "_real_close", "close", "send")
KINDS = {
    "loop": "work on the event loop",
    "interpreter": "the loop waiting for the interpreter (another thread ran Python)",
    "cpu": "the loop waiting for a CPU (no other thread of the server ran)",
}


def kind(stall: dict[str, Any]) -> str:
    """What held the loop up, as most of the stall's samples say (see :data:`KINDS`)."""
    votes: collections.Counter[str] = collections.Counter()
    for sample in stall["samples"]:
        top = sample["loop"][-1].split()[-1] if sample["loop"] else "select"
        busy = any(
            frames and "_worker" not in frames[-1] and name != "watchdog"
            for name, frames in sample["others"].items()
        )
        votes["loop" if top not in _WAITING else "interpreter" if busy else "cpu"] += 1
    return votes.most_common(1)[0][0]


def classes(path: Path) -> dict[str, tuple[int, float]]:
    """Per kind of stall: how many, and the longest (ms)."""
    found: dict[str, tuple[int, float]] = dict.fromkeys(KINDS, (0, 0.0))
    for line in path.read_text().splitlines() if path.exists() else []:
        stall = json.loads(line)
        if "gc" in stall:
            continue
        count, longest = found[kind(stall)]
        found[kind(stall)] = (count + 1, max(longest, stall["max"] * 1000))
    return found


def summary(path: Path, count: int = 10) -> str:
    """The stalls in ``path`` by kind, and the longest, each with its commonest loop
    stack."""
    if not path.exists():
        return "no stalls recorded"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    stalls = [stall for stall in records if "gc" not in stall]
    passes = [stall for stall in records if "gc" in stall]
    stalls.sort(key=lambda stall: -stall["max"])
    over = sum(1 for stall in stalls if stall["max"] > 0.010)
    lines = [f"{len(stalls)} stalls over the threshold, {over} over 10 ms"]
    for name, (number, longest) in classes(path).items():
        lines.append(f"  {number:5} of {KINDS[name]}, the longest {longest:.1f} ms")
    if passes:
        longest = max(passes, key=lambda stall: stall["max"])
        lines.append(
            f"  {len(passes):5} garbage collection passes over 1 ms, the longest "
            f"{longest['max'] * 1000:.1f} ms (generation {longest['gc']}, {longest['thread']}, "
            f"{longest['cpu'] * 1000:.1f} ms of CPU)"
        )
    lines.append("the longest:")
    for stall in stalls[:count]:
        stacks = collections.Counter(tuple(s["loop"][-4:]) for s in stall["samples"])
        stack, _ = stacks.most_common(1)[0]
        busy = {
            name: frames[-2:]
            for sample in stall["samples"]
            for name, frames in sample["others"].items()
            if frames and "_worker" not in frames[-1] and "watch" not in name
        }
        lines.append(
            f"{stall['max'] * 1000:7.1f} ms ({len(stall['samples'])} samples, "
            f"{kind(stall)}) loop: " + " < ".join(reversed(stack))
        )
        for name, frames in busy.items():
            lines.append(f"{'':10}{name}: " + " < ".join(reversed(frames)))
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        print(summary(Path(sys.argv[2])))
    else:
        limit = float(sys.argv[4]) / 1000 if len(sys.argv) > 4 else 0.005
        serve(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), limit)
