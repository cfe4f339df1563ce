"""The servers under test, each run as a child process on 127.0.0.1.

* :class:`ReplayServer`: ``replay serve`` with a folder of generated scenarios (and
  :class:`ReplayAsyncioServer`: the same on asyncio and h11, with uvloop and httptools
  hidden from uvicorn, to measure what they bring in the same run);
* :class:`BareServer`: ``bench/bare_server.py`` (websockets ``broadcast()``);
* :class:`NodeServer`: ``bench/node_ws/server.js`` (Node, npm's ``ws``), the same protocol;
* :class:`SeedServer`: ``bench/seed_style.py`` (FastAPI, the seed's design) on uvicorn.

All take the same kind of trigger: play M frames (optionally padded), S seconds apart
(S=0: no pause), answering when done; ``trigger()`` hides the differences.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import (
    HOST,
    ROOT,
    BenchError,
    frame_text,
    free_port,
    http,
    poll,
    tree_cpu_seconds,
    tree_memory_kib,
)

BENCH = Path(__file__).resolve().parent
#: replay reads no scenario file bigger than this (replay.loader.MAX_FILE_BYTES).
MAX_SCENARIO_BYTES = 1024 * 1024

PROCESSES: list[subprocess.Popen[bytes]] = []  # every server started; run.py stops them all


def scenario_name(frames: int, pause: float, pad: int, repeat: int = 1) -> str:
    return f"bench_{frames}f_{round(pause * 1e6)}us_{pad}p_{repeat}x"


def write_scenario(folder: Path, frames: int, pause: float, pad: int, repeat: int = 1) -> str:
    """A scenario of ``frames`` EVENT messages ``pause`` s apart, played ``repeat`` times
    over (a ``repeat`` block); returns its name."""
    name = scenario_name(frames, pause, pad, repeat)
    delay = f"{pause * 1000:g}ms" if pause else "0"
    lines = [
        "version: 1",
        f"description: Benchmark, {frames} EVENT frames {delay} apart, padded by {pad},"
        f" {repeat} time(s).",
        f"delay: {delay}",
        "steps:",
    ]
    indent = "  "
    if repeat > 1:
        lines += [f"  - repeat: {repeat}", "    steps:"]
        indent = "      "
    for seq in range(frames):
        lines += [f"{indent}- message: EVENT", f'{indent}  text: "{frame_text(seq, pad)}"']
    text = "\n".join(lines) + "\n"
    if len(text) > MAX_SCENARIO_BYTES:
        raise BenchError(
            f"scenario {name} would be {len(text)} bytes, more than replay reads "
            f"({MAX_SCENARIO_BYTES}): use fewer frames or less padding"
        )
    (folder / f"{name}.yaml").write_text(text)
    return name


class Server:
    kind = ""
    #: Seconds to let the server stop by itself (SIGINT) before it is killed.
    grace = 10.0
    #: Seconds the server has to start answering.
    start_timeout = 30.0

    def __init__(self, argv: list[str], log_path: Path, port: int) -> None:
        self.argv = argv
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the bench only; it stops us
                preexec_fn=_die_with_parent,
            )
        PROCESSES.append(self.process)
        if not poll(lambda: self.alive() and self.count() >= 0, self.start_timeout, 0.1):
            self.stop()
            raise BenchError(f"the {self.kind} server did not start; see {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(self.grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        with contextlib.suppress(ValueError):
            PROCESSES.remove(process)

    def count(self) -> int:
        """Clients the server holds on /ws."""
        raise NotImplementedError

    def cpu(self) -> float:
        """CPU seconds (user + system) of the server: its process and every process it
        started (a cluster's workers)."""
        return tree_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        """Resident memory of the server's processes, in KiB."""
        return tree_memory_kib(self.pid)

    def trigger(
        self,
        frames: int,
        pause: float = 0.0,
        pad: int = 0,
        repeat: int = 1,
        wait: bool = True,
        timeout: float = 60,
    ) -> tuple[int, Any]:
        """Play ``frames`` frames ``pause`` s apart to every client, ``repeat`` times over;
        returns (HTTP status, answer). ``wait=False``: answer once started (replay)."""
        raise NotImplementedError

    def log_problems(self) -> list[str]:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        keys = ("WARNING", "ERROR", "CRITICAL", "Traceback", "Exception")
        return [line for line in lines if any(key in line for key in keys)]


class ReplayServer(Server):
    kind = "replay"
    #: How replay is started: ``python -m replay`` (uvicorn's loop="auto", http="auto":
    #: uvloop and httptools when installed).
    launcher = ["-m", "replay"]

    def __init__(
        self,
        scenarios: Path,
        log_path: Path,
        queue_size: int | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        """``options``: more ``replay serve`` options (``--backplane URL``, ...)."""
        port = free_port()
        argv = [sys.executable, *self.launcher, "serve", "--host", HOST, "--port", str(port)]
        argv += ["--scenarios", str(scenarios), "--log-level", "warning", *options]
        if queue_size is not None:
            argv += ["--queue-size", str(queue_size)]
        super().__init__(argv, log_path, port)
        self.scenarios = scenarios

    def count(self) -> int:
        status, answer = http(f"{self.base}/healthz", timeout=5)
        return int(answer["clients"]["/ws"]) if status == 200 else -1

    def trigger(
        self,
        frames: int,
        pause: float = 0.0,
        pad: int = 0,
        repeat: int = 1,
        wait: bool = True,
        timeout: float = 60,
    ) -> tuple[int, Any]:
        name = scenario_name(frames, pause, pad, repeat)
        if not (self.scenarios / f"{name}.yaml").exists():
            raise BenchError(f"no scenario written for {name}")
        # speed 0 plays with no pauses at all; speed 1 keeps the scenario's delay.
        query = f"speed={1 if pause else 0}" + ("" if wait else "&wait=false")
        return http(f"{self.base}/trigger/{name}?{query}", "POST", timeout)

    def drops(self) -> int | None:
        """Clients replay dropped for not reading (its Prometheus counter), if it says."""
        with contextlib.suppress(Exception):
            _, text = http(f"{self.base}/metrics", timeout=5)
            match = re.search(r'replay_send_queue_drops_total\{endpoint="/ws"\} (\S+)', str(text))
            if match:
                return int(float(match.group(1)))
        return None


class ReplayAsyncioServer(ReplayServer):
    """replay on asyncio's own event loop and h11: ``bench/replay_asyncio.py`` hides
    uvloop and httptools, so that uvicorn's "auto" falls back to them."""

    kind = "replay-asyncio"
    launcher = [str(BENCH / "replay_asyncio.py")]


class ReferenceServer(Server):
    """A reference server from bench/: its script, the path that counts its clients, and
    the HTTP method of its trigger (websockets' HTTP parser serves GET only)."""

    script = ""
    count_path = ""
    trigger_method = "GET"

    def __init__(self, log_path: Path) -> None:
        port = free_port()
        super().__init__([sys.executable, str(BENCH / self.script), str(port)], log_path, port)

    def count(self) -> int:
        status, answer = http(f"{self.base}{self.count_path}", timeout=5)
        return int(answer["clients"]) if status == 200 else -1

    def trigger(
        self,
        frames: int,
        pause: float = 0.0,
        pad: int = 0,
        repeat: int = 1,
        wait: bool = True,
        timeout: float = 60,
    ) -> tuple[int, Any]:
        query = f"frames={frames}&pause={pause}&pad={pad}&repeat={repeat}"
        return http(f"{self.base}/trigger?{query}", self.trigger_method, timeout)


class BareServer(ReferenceServer):
    kind = "bare"
    script = "bare_server.py"
    count_path = "/count"


class SeedServer(ReferenceServer):
    kind = "seed"
    script = "seed_style.py"
    count_path = "/healthz"
    trigger_method = "POST"
    # Its handlers sleep-poll forever: uvicorn's graceful shutdown would wait for them.
    grace = 3.0


class NodeServer(ReferenceServer):
    """``bench/node_ws/server.js`` on Node: npm's ``ws``, installed by :meth:`prepare`."""

    kind = "node"
    count_path = "/count"
    folder = BENCH / "node_ws"

    def __init__(self, log_path: Path) -> None:
        port = free_port()
        node = shutil.which("node") or "node"
        Server.__init__(self, [node, str(self.folder / "server.js"), str(port)], log_path, port)

    @classmethod
    def prepare(cls) -> str | None:
        """Install ``ws`` (``npm ci``, from the pinned package-lock.json) if it is not;
        None when the server can run, else why not, in words."""
        if shutil.which("node") is None:
            return "node is not installed (https://nodejs.org, or apt-get install nodejs npm)"
        if (cls.folder / "node_modules" / "ws" / "package.json").exists():
            return None
        npm = shutil.which("npm")
        if npm is None:
            return "npm is not installed, and bench/node_ws needs it once to install ws"
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=cls.folder,
                capture_output=True,
                text=True,
                timeout=300,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"npm ci in bench/node_ws failed: {error}"
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            return f"npm ci in bench/node_ws failed: {' '.join(lines[-3:])[:300]}"
        return None

    @classmethod
    def versions(cls) -> dict[str, str]:
        """Node's version and ws's (as installed)."""
        out = {}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            node = subprocess.run(
                [shutil.which("node") or "node", "--version"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            out["node"] = node.stdout.strip()
        with contextlib.suppress(OSError, ValueError, KeyError):
            package = json.loads((cls.folder / "node_modules/ws/package.json").read_text())
            out["ws"] = str(package["version"])
        return out


def _die_with_parent() -> None:
    """In the child, before exec: be killed if the bench process dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_servers() -> None:
    for process in list(PROCESSES):
        with contextlib.suppress(Exception):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        with contextlib.suppress(ValueError):
            PROCESSES.remove(process)


def wait_count(server: Server, want: int, timeout: float = 20.0) -> int:
    """Wait (bounded) until the server holds ``want`` clients; returns what it holds."""
    poll(lambda: not server.alive() or server.count() == want, timeout, 0.1)
    if not server.alive():
        raise BenchError(f"the {server.kind} server has died; see {server.log_path}")
    return server.count()
