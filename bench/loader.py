"""How long replay's loader takes on a long scenario, with libyaml and without.

    uv run python bench/loader.py               # 1 MB and 10 MB
    uv run python bench/loader.py --sizes 0.5 4 --rounds 3

The scenario is what ``replay convert`` writes for a recorded Schwarm session: mostly
``chunk`` steps with their own ``delay`` (about 30 a second), and an ``EVENT`` span as
data every 40 steps. The file size and value limits are lifted for the measurement only
(a scenario file holds at most 1 MiB; convert writes longer sessions as parts), so that
one parse of the whole text is timed: YAML to nodes, nodes to values with their
locations, the models, and the template and payload checks. Each size is timed with
libyaml's parser (the loader's default when PyYAML has it) and with PyYAML's
pure-Python one (what the loader used before).
"""

from __future__ import annotations

import argparse
import json
import random
import time

from replay import loader


def scenario(size: int, seed: int = 1) -> str:
    """A converted-looking scenario of about ``size`` bytes."""
    rng = random.Random(seed)
    words = ["the ", "plan ", "is ", "to ", "read", " code", ", then", " write", " tests."]
    out = ["version: 1", "description: a long recorded session", "steps:"]
    total, number = 0, 0
    while total < size:
        number += 1
        if number % 40 == 0:
            block = _span(rng, number)
        else:
            block = (
                f"  - chunk: {json.dumps(rng.choice(words))}\n    delay: 0.0{rng.randint(20, 45)}"
            )
        out.append(block)
        total += len(block) + 1
    return "\n".join(out) + "\n"


def _span(rng: random.Random, number: int) -> str:
    lines = [
        "  - message: EVENT",
        "    data:",
        f"      id: {rng.getrandbits(64):016x}",
        f"      parent_span_id: {rng.getrandbits(64):016x}",
        "      name: agent-1 - EventType.TOOL_EXECUTION",
        f'      start_time: "{1733260000000000000 + number}"',
        "      status_code: OK",
        "      attributes:",
        f"        run_id: {rng.getrandbits(128):032x}",
        f'        step: "{number}"',
        f"    delay: 0.0{rng.randint(20, 45)}",
    ]
    return "\n".join(lines)


def timed(text: str, fast: bool, rounds: int) -> tuple[float, int]:
    """The best of ``rounds`` parses, in seconds, and the steps read."""
    saved = loader._FastLoader
    if not fast:
        loader._FastLoader = None
    try:
        best, steps = float("inf"), 0
        for _ in range(rounds):
            started = time.perf_counter()
            loaded = loader.parse_scenario(text, "long.yaml")
            best = min(best, time.perf_counter() - started)
            if loaded.scenario is None or loaded.problems:
                raise SystemExit(f"the scenario did not load: {loaded.problems[:3]}")
            steps = len(loaded.scenario.steps)
    finally:
        loader._FastLoader = saved
    return best, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 10.0], help="MB")
    parser.add_argument("--rounds", type=int, default=1, help="parses per size (the best counts)")
    args = parser.parse_args()
    loader.MAX_FILE_BYTES = 1 << 40
    loader.MAX_VALUES = 1 << 40
    print(f"{'size':>8}  {'steps':>8}  {'libyaml':>9}  {'pure Python':>11}")
    for megabytes in args.sizes:
        text = scenario(int(megabytes * 1_000_000))
        fast, steps = timed(text, True, args.rounds)
        slow, _ = timed(text, False, args.rounds)
        print(f"{len(text) / 1e6:>6.1f}MB  {steps:>8}  {fast:>8.2f}s  {slow:>10.2f}s")


if __name__ == "__main__":
    main()
