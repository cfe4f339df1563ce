"""The Python calls one trigger makes before its first frame, step by step.

    uv run python bench/trigger_path.py                   # this checkout
    uv run python bench/trigger_path.py --top 15          # and the functions of each step

Wall-clock latency moves with the machine's load; the count of Python calls (functions
and builtins, as ``sys.setprofile`` sees them) a trigger makes does not, so it shows what
a change to the trigger's path saves. In process, with no sockets: replay's ASGI
application (``create_app``) gets ``POST /trigger/one?speed=0&wait=false`` (no body) for a
one-frame scenario, 50 times to warm up, then once counted, with checkpoints where the
request meets replay's token guard (the last of its middleware), ``Replay.start``,
``Replay.catalog``, ``Runner.start``, the run's task (``Runner._play``), the frame's
send (``Runner._send``) and the run's plan (``_start_plan``). uvicorn's HTTP parsing and
the event loop's own work are not counted (C, or outside the application).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import replay.guard
import replay.runner
import replay.server
from replay.server import Settings, create_app

SCENARIO = "version: 1\nsteps:\n  - message: EVENT\n    text: hi\n"
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/trigger/one",
    "raw_path": b"/trigger/one",
    "root_path": "",
    "query_string": b"speed=0&wait=false",
    "headers": [(b"host", b"127.0.0.1:8123"), (b"content-length", b"0")],
    "client": ("127.0.0.1", 5555),
    "server": ("127.0.0.1", 8123),
}


#: The checkpoint after the frame's send (the frame is written in it).
FIRST_FRAME = "the frame written and told"


class Counted:
    """Python calls, in total and per function, between named checkpoints."""

    def __init__(self) -> None:
        self.calls = 0
        self.marks: list[tuple[str, int]] = []
        self.step = "request"
        self.functions: dict[str, Counter[str]] = {}

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event not in ("call", "c_call"):
            return
        self.calls += 1
        if event == "call":
            code = frame.f_code
            name = f"{_short(code.co_filename)}:{code.co_qualname}"
        else:
            name = f"(builtin) {getattr(arg, '__qualname__', arg)}"
        self.functions.setdefault(self.step, Counter())[name] += 1

    def mark(self, tag: str) -> None:
        self.marks.append((tag, self.calls))
        self.step = tag


def _short(filename: str) -> str:
    for part in ("site-packages/", "/replay/", "/lib/python"):
        if part in filename:
            return filename.split(part, 1)[1]
    return filename


def checkpoint(counted: Counted, owner: Any, name: str, tag: str, done: str = "") -> None:
    """Mark ``tag`` when ``owner.name`` (a function or coroutine function) is called, and
    ``done`` (if given) when the function (not a coroutine function) returns."""
    original: Callable[..., Any] = getattr(owner, name)
    if asyncio.iscoroutinefunction(original):

        async def marked_async(*args: Any, **kwargs: Any) -> Any:
            counted.mark(tag)
            return await original(*args, **kwargs)

        setattr(owner, name, marked_async)
    else:

        def marked(*args: Any, **kwargs: Any) -> Any:
            counted.mark(tag)
            try:
                return original(*args, **kwargs)
            finally:
                if done:
                    counted.mark(done)

        setattr(owner, name, marked)


async def count(folder: Path) -> Counted:
    counted = Counted()
    checkpoint(counted, replay.guard.TokenGuard, "__call__", "token guard")
    checkpoint(counted, replay.server.Replay, "start", "Replay.start")
    checkpoint(counted, replay.server.Replay, "catalog", "Replay.catalog")
    checkpoint(counted, replay.runner.Runner, "start", "Runner.start")
    checkpoint(counted, replay.runner.Runner, "_play", "the run's task")
    checkpoint(counted, replay.runner.Runner, "_send", "the frame's send", FIRST_FRAME)
    checkpoint(counted, replay.runner, "_start_plan", "the plan")
    app = create_app(Settings(scenarios=folder, isolated=True))
    answers: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answers.append(message["status"])
            counted.mark("the answer")

    async def trigger() -> None:
        await app({**SCOPE, "state": {}}, receive, send)
        for _ in range(3):  # the run's task, its plan, its end
            await asyncio.sleep(0)

    async with app.router.lifespan_context(app):
        for _ in range(50):
            await trigger()
        counted.marks.clear()
        counted.functions.clear()
        counted.calls, counted.step = 0, "request"
        sys.setprofile(counted.profile)
        try:
            await trigger()
        finally:
            sys.setprofile(None)
        counted.mark("end")
    if set(answers) != {202}:
        raise SystemExit(f"the trigger was not answered 202: {sorted(set(answers))}")
    return counted


def report(counted: Counted, top: int) -> None:
    print("calls  (+ since the last)  checkpoint")
    before = 0
    for tag, calls in counted.marks:
        print(f"{calls:5d}  (+{calls - before:4d})  {tag}")
        before = calls
    written = next((calls for tag, calls in counted.marks if tag == FIRST_FRAME), None)
    if written is not None:
        print(f"\nPython calls until the first frame was written (and told): {written}")
    if top:
        for tag, functions in counted.functions.items():
            print(f"\nfrom '{tag}' on, the most called:")
            for name, calls in functions.most_common(top):
                print(f"  {calls:4d}  {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=0, help="functions shown per checkpoint")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "one.yaml").write_text(SCENARIO)
        counted = asyncio.run(count(Path(folder)))
    report(counted, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
