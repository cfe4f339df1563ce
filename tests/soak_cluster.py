"""The cluster soak (issue 15): the soak of tests/soak.py against a cluster on a real Redis,
with a node killed (SIGKILL) and restarted in the middle. It checks that every healthy
client receives every frame of every run, in order, on whichever node it is connected to;
that the surviving nodes log no ERROR; and that every process's memory and tasks stay flat.

    uv run python -m tests.soak --cluster nodes --clients 600 --seconds 120
    uv run python -m tests.soak --cluster workers --kill both --clients 600 --seconds 120

``tests/test_soak.py`` runs a short form of it in the suite. Everything tests/soak.py's
docstring says (the scenario, the client processes and their churn, which runs a
connection must have received in full, how memory and tasks are measured) holds here,
per process; this docstring says what differs.

**The cluster.** Debian's ``redis-server`` on a free port (tests/redis_server.py), and
``replay serve --backplane redis://...`` processes (each with the soak's routes, see
:func:`tests.soak.instrument`), each on its own port, started with ``--ready-file``:

- ``--cluster nodes``: three nodes, A, B and C; a third of the clients on each; C is the
  lone node that is killed;
- ``--cluster workers``: A is ``replay serve --workers 2`` (two processes on one port,
  SO_REUSEPORT) and B one more node; A has two thirds of the clients, B one third; B is the
  lone node. ``--kill worker`` kills one of A's workers instead (its parent restarts it),
  ``--kill both`` the lone node, then, once it is back, a worker.

Every second a trigger (``wait=true``) goes to a node chosen at random among those up. A
trigger's answer comes from the node that took it, when that node's copy of the run has
ended; the other nodes play the same run from the same wall-clock start, and may end it
a little later. So each process notes when it ended each run (``time.monotonic()``, one
clock for every process of the machine), the driver collects these notes every second (a
worker's port is asked until each of its processes has answered: the kernel spreads
connections over them), and a run counts as *answered* at the latest of the trigger's
answer and every process's end of it: the rule ``opened < posted and answered <
closing`` then holds for a connection whatever process it is on (a later ``answered``
only requires fewer runs of connections that left within milliseconds of a run's end; it
never excuses a frame).

**The kill.** The soak is played in two halves, the churn and the triggers never
stopping. A sixth of the way into the first half, one more trigger is sent to the node to be
killed and, ``KILL_AFTER`` seconds later (its run is playing), the process is sent SIGKILL
at the moment ``killed`` (noted just before the signal); the lone node is started again on
the same port (a killed worker is restarted by its ``--workers`` parent), its history of
finished runs filled as at the start, and it is chosen for triggers again once it
answers; with ``--kill both`` the worker is killed the same way once the node is back.
Its clients find their connections cut and reconnect to the same port: connecting there
fails while nothing listens (refused) or when the kernel had queued the connection for
the dead process (cut): expected on a killed process's port only. The second half has no
kill.

**Which connections are excused.** A connection is *of the killed process* when it was
opened before ``killed`` and ended after it, and either it was on the lone node's port
(the only process there), or, for a killed worker (two processes on the port, and the
client cannot tell which one took it), it ended with no close frame from the server (code
1006: cut by the server, or a clean close the server never answered) within
``KILL_NOTICE`` seconds of ``killed`` (a live worker answers every close, and never cuts
a connection). An abrupt disconnect on the port at that moment is judged as any abrupt
disconnect: its ``closing`` is already moved back ``ABORT_MARGIN``. Such a connection is judged as
if it had been cut at the moment of the kill: its ``closing`` is moved to ``killed -
ABORT_MARGIN`` (a process killed with data unread in its socket resets the connection,
and whatever it had written that the client had not read yet may be lost, as with an
abrupt disconnect). So the runs *overlapping the node's death*, those that do not satisfy
``answered < killed - ABORT_MARGIN``, are partial for it: what it got must still be
consecutive iterations, in order, starting at 0 if it was there when the run was
triggered. Every other connection is healthy and judged by the ordinary rule, including
those of the restarted process and those of the surviving processes during the death.

**Triggers taken by the killed node.** A trigger sent to the killed node whose answer
had not come when it died fails (expected: counted apart, never an error). Its run was
either published before the death, and then every surviving process plays it in full (its
run id, unknown to the driver, is found in the processes' notes, and it is required of
healthy connections, as posted when the failed trigger was sent), or not, and then no
process plays it. Any other trigger error is a failure.

**Runs on every process.** Besides the clients' view, every run must have been played by
every process alive from before it was triggered until after it ended, to its end (state
``success``, every frame sent).

**Memory and tasks, per process.** The figures of tests/soak.py are taken for every
process: before any client connects, at the start and end of the soak (churn paused,
every client connected, no run playing) and after the clients have left. A process that
replaced a killed one is judged from a sample taken the same way at the end of the first
half (its start) to the end; its figures before clients connected and after they left are
reported, not judged. A worker may hold more clients at the end than at its start (the
kernel spreads the reconnections): each extra client is allowed its task and
``BLOCKS_CONNECTED`` blocks.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.redis_server import RedisServer
from tests.soak import (
    ABORT_MARGIN,
    BLOCKS_PER_CLIENT,
    BLOCKS_TOLERANCE,
    EXAMPLES,
    LOSSES,
    PATIENCE,
    ROOT,
    SCENARIO,
    TASKS_TOLERANCE,
    TROUBLES,
    Check,
    Options,
    Run,
    Soak,
    Workers,
    _die_with_parent,
    _growth,
    checked,
    log_findings,
)

#: Seconds between the trigger sent to the node to be killed and the kill: its run plays.
KILL_AFTER = 0.15
#: Seconds after a kill within which a connection cut by the server is the dead worker's.
KILL_NOTICE = 5.0
#: Memory blocks a connected client holds (about 230, see tests/soak.py), with a margin.
BLOCKS_CONNECTED = 300
#: Workers of ``replay serve --workers`` in the workers cluster.
WORKERS = 2


def request(url: str, method: str, path: str) -> Any:
    """``METHOD url+path``: the JSON answer."""
    with urllib.request.urlopen(
        urllib.request.Request(url + path, method=method), timeout=PATIENCE
    ) as response:
        return json.loads(response.read())


def _state(pid: int) -> str | None:
    """The state letter of process ``pid`` (None if there is none)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def cpu_seconds(pid: int) -> float:
    """CPU time process ``pid`` has used (user and system); 0 if it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Group:
    """One port of the cluster: a ``replay serve --backplane`` process, or one with
    ``--workers N`` (N worker processes on the port, under one parent)."""

    def __init__(
        self, name: str, scenarios: Path, backplane: str, folder: Path, workers: int = 0
    ) -> None:
        self.name = name
        self.scenarios = scenarios
        self.backplane = backplane
        self.folder = folder
        self.workers = workers
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        self.ready = folder / f"{name}.ready"
        #: Chosen for triggers (not while it is being killed and restarted).
        self.up = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it (on its port once it has one); :meth:`wait_ready` waits until it is
        ready. Call it from the main thread: the process is sent SIGTERM when the thread
        that started it ends (PR_SET_PDEATHSIG)."""
        self.ready = self.folder / f"{self.name}-{len(self.logs)}.ready"
        log = self.folder / f"{self.name}-{len(self.logs)}.log"
        self.logs.append(log)
        command = [sys.executable, "-m", "tests.soak", "--serve", str(self.scenarios)]
        command += ["--backplane", self.backplane, "--port", str(self.port)]
        command += ["--ready-file", str(self.ready)]
        if self.workers:
            command += ["--workers", str(self.workers)]
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def wait_ready(self) -> None:
        """Wait (PATIENCE at most) until the process started last is ready."""
        assert self.process is not None
        deadline = time.monotonic() + PATIENCE
        while not self.ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = self.logs[-1].read_text(errors="replace")[-3000:]
                raise RuntimeError(f"node {self.name} did not start:\n{log}")
            time.sleep(0.02)
        self.port = json.loads(self.ready.read_text())["port"]

    def pids(self) -> set[int]:
        """The processes serving the port now."""
        if self.process is None or not _alive(self.process.pid):
            return set()
        if not self.workers:
            return {self.process.pid}
        parent = self.process.pid
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            return set()
        return {int(pid) for pid in children if _alive(int(pid)) and _is_worker(int(pid))}

    async def each(
        self,
        method: str,
        path: str,
        on_answer: Callable[[dict[str, Any]], None] = lambda answer: None,
    ) -> None:
        """``METHOD path`` answered by every process of the port (each answer says its
        ``pid``): asked again and again (the kernel spreads connections over the
        processes of a port) until every process serving it has answered, PATIENCE at
        most. ``on_answer`` is given every answer as it comes (a process may answer
        twice), even if this is cancelled meanwhile: an answer may hand over notes."""
        answered: set[int] = set()
        deadline = time.monotonic() + PATIENCE
        loop = asyncio.get_running_loop()
        while True:
            serving = self.pids()
            if len(serving) == max(1, self.workers) and serving <= answered:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name}: {sorted(serving)} did not all answer")
            asked = loop.run_in_executor(None, request, self.url, method, path)
            asked.add_done_callback(
                lambda done: (
                    None if done.cancelled() or done.exception() else on_answer(done.result())
                )
            )
            try:
                pid = (await asyncio.shield(asked))["pid"]
            except OSError:
                pid = None
            if pid is None or pid in answered:  # not up yet, or the kernel chose another
                await asyncio.sleep(0.1)
            if pid is not None:
                answered.add(pid)

    def kill(self) -> None:
        """SIGKILL, and wait until it has gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(PATIENCE)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _is_worker(pid: int) -> bool:
    """Whether child ``pid`` of a ``--workers`` parent serves (not a helper process)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in command


@dataclass
class Process:
    """One replay process of the cluster, as the driver has seen it."""

    pid: int
    node: str
    #: When it was first seen answering; when it was killed (None: it was not).
    born: float
    killed: float | None = None
    #: When its notes of ended runs were last taken (every run it ended before is in them).
    heard: float = 0.0
    #: Its notes: run id -> (when it ended the run, state, frames sent).
    played: dict[str, tuple[float, str, int]] = field(default_factory=dict)
    #: Its samples by moment: "idle_before", "start", "end", "idle_after".
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Its last answer.
    last: dict[str, Any] = field(default_factory=dict)


@dataclass
class Kill:
    """A process killed in the middle of the soak."""

    what: str  # "node" or "worker"
    node: str
    port: int
    pid: int
    killed: float
    #: When the lone node's new process was ready, and when it (or the new worker) had
    #: answered with its history filled.
    started: float | None = None
    back: float | None = None


class ClusterCheck(Check):
    """Connection records held against the runs on a cluster (see the module's
    docstring): records are kept until the end, when every process's notes are in."""

    def __init__(self, frames: int) -> None:
        super().__init__(frames)
        self.records: list[tuple[Any, ...]] = []
        self.kills: list[Kill] = []
        self.excused = 0
        self.excused_by_node: Counter[str] = Counter()
        #: Runs of triggers whose node died before answering, played elsewhere.
        self.lost_triggers_played = 0
        self.unknown_runs = 0
        self.runs_missing_on_nodes = 0
        self.node_runs_short = 0

    def add(self, records: list[tuple[Any, ...]]) -> None:
        self.records.extend(records)

    def finish(self, processes: list[Process], lost_triggers: list[Run]) -> None:
        """Judge every record, now that every process's notes are in."""
        ends: dict[str, list[float]] = {}
        for process in processes:
            for run_id, (ended, state, sent) in process.played.items():
                ends.setdefault(run_id, []).append(ended)
                if state != "finished" or sent != 2 * self.frames:
                    self.node_runs_short += 1
        for run in self.runs:
            if run.run_id is not None and run.answered is not None:
                run.answered = max([run.answered, *ends.get(run.run_id, [])])
        for run_id in ends.keys() - self.by_id.keys():
            if not lost_triggers:
                self.unknown_runs += 1
                continue
            # Posted when the first of the lost triggers was: required of fewer connections.
            first = min(lost_triggers, key=lambda run: run.posted)
            found = Run(posted=first.posted, answered=max(ends[run_id]), run_id=run_id)
            found.node, found.state = first.node, "success"
            self.lost_triggers_played += 1
            self.runs.append(found)
            self.by_id[run_id] = found
        self.runs.sort(key=lambda run: run.posted)
        self.posted = [run.posted for run in self.runs]
        self._check_nodes(processes)
        for record in self.records:
            self.record(*record)

    def _check_nodes(self, processes: list[Process]) -> None:
        for run in self.runs:
            if run.run_id is None or run.answered is None:
                continue
            for process in processes:
                alive = process.born < run.posted and run.answered < process.heard
                if alive and run.run_id not in process.played:
                    self.runs_missing_on_nodes += 1
                    if len(self.examples) < 3 * EXAMPLES:
                        self.examples.append(
                            {"what": "run not played", "pid": process.pid, "run": asdict(run)}
                        )

    def until(
        self, client: str, path: str, opened: float, closing: float, kind: str, code: int | None
    ) -> float:
        port = urlsplit(path).port
        for kill in self.kills:
            if port != kill.port or not opened < kill.killed <= closing:
                continue
            if kill.what == "worker" and not (
                kind in ("server", "close") and code == 1006 and closing < kill.killed + KILL_NOTICE
            ):
                continue
            self.excused += 1
            self.excused_by_node[kill.node] += 1
            mine = closing - ABORT_MARGIN if kind == "abort" else closing
            return min(mine, kill.killed - ABORT_MARGIN)
        return super().until(client, path, opened, closing, kind, code)


class ClusterSoak(Soak):
    """The soak's driver, for a cluster of ``groups`` (the last one is the lone node)."""

    def __init__(self, options: Options, groups: list[Group], say: Callable[[str], None]):
        super().__init__(options, None, say)  # type: ignore[arg-type]
        self.groups = groups
        self.check: ClusterCheck = ClusterCheck(options.frames)
        self.processes: dict[int, Process] = {}
        self.lost_triggers: list[Run] = []
        self.sample_errors: list[str] = []
        self.rng = random.Random(options.seed)

    # -- where clients go and triggers go -------------------------------------------------

    def base(self, n: int) -> str:
        """The URL client ``n`` connects to: the workers' port gets two thirds of them."""
        if len(self.groups) == 3:
            return self.groups[n % 3].url
        return self.groups[0 if n % 3 < 2 else 1].url

    async def trigger(self, group: Group | None = None) -> None:
        """Trigger the soak on ``group``, or on a node chosen at random among those up."""
        if group is None:
            group = self.rng.choice([group for group in self.groups if group.up])
        run = Run(posted=time.monotonic(), node=group.name)
        self.check.add_run(run)
        try:
            answer = await asyncio.to_thread(request, group.url, "POST", "/trigger/soak")
        except Exception as error:
            if any(k.node == group.name and run.posted < k.killed for k in self.check.kills):
                self.lost_triggers.append(run)
            else:
                self.trigger_errors.append(f"node {group.name}: {error!r}")
            return
        run.answered = time.monotonic()
        run.run_id = answer["run_id"]
        run.state = answer["status"]
        run.sent = answer["sent"]
        run.deliveries = answer["deliveries"]
        run.clients = answer["clients"]
        run.max_lateness_s = answer["max_lateness_s"]
        self.check.answered(run)

    # -- the processes --------------------------------------------------------------------

    async def collect(self, group: Group, moment: str | None = None) -> None:
        """Every process of ``group``'s figures and notes of ended runs (with the
        collector's count of objects when ``moment`` is given: kept under it)."""

        def take(answer: dict[str, Any]) -> None:
            process = self.processes.get(answer["pid"])
            if process is None:
                process = Process(answer["pid"], group.name, born=time.monotonic())
                self.processes[process.pid] = process
            process.heard = max(process.heard, answer.pop("at"))
            for run_id, ended, state, sent in answer.pop("played"):
                process.played[run_id] = (ended, state, sent)
            process.last = answer
            if moment is not None:
                process.figures[moment] = answer

        query = "?played=true" + ("&objects=true" if moment else "")
        await group.each("GET", "/_soak/stats" + query, take)

    async def collect_all(self, moment: str | None = None) -> None:
        for group in self.groups:
            await self.collect(group, moment)

    async def _sampler(self, started: float, phase: str) -> None:
        while True:
            await asyncio.sleep(1.0)
            for group in self.groups:
                if not group.up:
                    continue
                try:
                    await self.collect(group)
                except Exception as error:
                    if group.up:  # not the one being killed
                        self.sample_errors.append(f"node {group.name}: {error!r}")

    def _cpu(self, clients: float) -> dict[str, float]:
        return {"clients": clients, "driver": time.process_time()}

    async def fill(self, group: Group) -> None:
        """Fill the history of finished runs of every process of ``group``."""
        await group.each("POST", "/_soak/fill")

    # -- the kills ------------------------------------------------------------------------

    async def kill(self, what: str) -> None:
        """Kill the lone node ("node") or one worker ("worker"), while a run it took plays;
        start it again (or let its parent do it) and wait until it serves."""
        group = self.groups[-1] if what == "node" else self.groups[0]
        self._spawn(self.trigger(group))  # one more trigger, for it
        await asyncio.sleep(KILL_AFTER)
        if what == "node":
            assert group.process is not None
            pid = group.process.pid
            group.up = False
            kill = Kill(what, group.name, group.port, pid, killed=time.monotonic())
            self.check.kills.append(kill)
            await asyncio.to_thread(group.kill)
            self.say(f"  killed node {group.name} (pid {pid}); starting it again")
            group.start()
            await asyncio.to_thread(group.wait_ready)
            kill.started = time.monotonic()
        else:
            pid = self.rng.choice(sorted(group.pids()))
            kill = Kill(what, group.name, group.port, pid, killed=time.monotonic())
            self.check.kills.append(kill)
            os.kill(pid, signal.SIGKILL)
            self.say(f"  killed worker {pid} of node {group.name}")
        if pid in self.processes:
            self.processes[pid].killed = kill.killed
        await self.fill(group)
        await self.collect(group)
        kill.back = time.monotonic()
        group.up = True
        self.say(f"  node {group.name} back after {kill.back - kill.killed:.1f} s")

    async def half(self, seconds: float, workers: Workers, kills: list[str]) -> float:
        """Play ``seconds`` of soak; a sixth of the way in, kill what ``kills`` says, one
        after the other, each once the one before is back."""

        async def killing() -> None:
            await asyncio.sleep(seconds / 6)
            for what in kills:
                await self.kill(what)

        killer = asyncio.create_task(killing())
        try:
            return await self.play(seconds, workers, "soak")
        finally:
            await killer

    # -- the soak -------------------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        options, say = self.options, self.say
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(64))
        for group in self.groups:
            await self.fill(group)
            group.up = True
        await self.collect_all("idle_before")
        workers = Workers(self.base, options, self.check.add)
        kills = {"node": ["node"], "worker": ["worker"], "both": ["node", "worker"]}[options.kill]
        try:
            say(f"connecting {options.clients} clients ({options.workers} processes)")
            await workers.expect("ready", PATIENCE * 2)
            say(f"warming up for {options.warmup:g} s")
            await self.play(options.warmup, workers, "warmup")
            await self.collect_all("start")
            say(f"soaking for {options.seconds:g} s")
            self.began = time.monotonic()
            await self.half(options.seconds / 2, workers, kills)
            await self.collect_all("middle")
            await self.half(options.seconds / 2, workers, [])
            duration = time.monotonic() - self.began
            await self.collect_all("end")
            workers.send("finish")
            fleets = await workers.expect("done", PATIENCE * 2)
        finally:
            workers.stop()
        await self._settle()
        await self.collect_all("idle_after")
        return self.report_cluster(duration, fleets)

    async def _settle(self) -> None:
        """Until every process is back to its idle count of tasks, a few seconds at most
        (a client the server dropped has a close task for up to 2 s)."""
        settled = time.monotonic() + 5.0
        while time.monotonic() < settled:
            await self.collect_all()
            busy = [
                p
                for p in self.processes.values()
                if p.killed is None
                and "idle_before" in p.figures
                and p.last["tasks"] > p.figures["idle_before"]["tasks"]
            ]
            if not busy:
                return
            await asyncio.sleep(0.2)

    def report_cluster(self, duration: float, fleets: list[dict[str, Any]]) -> dict[str, Any]:
        options, check = self.options, self.check
        answered = [run for run in check.runs if run.answered is not None]
        check.finish(list(self.processes.values()), self.lost_triggers)
        problems: Counter[str] = Counter()
        for fleet in fleets:
            problems.update(fleet["problems"])
        # Connecting to the killed node fails until it is back (refused, or cut at the
        # moment of the kill): expected for that node alone.
        # The same for a killed worker's port, where a connection the kernel had queued
        # for the dead worker is cut.
        killed = {f"http://127.0.0.1:{k.port}" for k in check.kills}
        expected_failures = {
            k: v
            for k, v in problems.items()
            if k.startswith("connect ") and k.split(": ")[1] in killed
        }
        for key in expected_failures:
            del problems[key]
        per_group = Counter(self.base(n) for n in range(options.clients))
        return {
            "options": {
                k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()
            },
            "duration_s": round(duration, 1),
            "clients": options.clients,
            "nodes": {g.name: {"port": g.port, "workers": g.workers} for g in self.groups},
            "clients_per_node": {g.name: per_group[g.url] for g in self.groups},
            "connections": check.connections,
            "connections_ended": dict(check.ended),
            "closed_by_server": dict(check.close_codes),
            "excused_connections": check.excused,
            "excused_by_node": dict(check.excused_by_node),
            "kills": [
                {
                    "what": k.what,
                    "node": k.node,
                    "pid": k.pid,
                    "at_s": round(k.killed - self.began, 1),
                    "started_after_s": round(k.started - k.killed, 2) if k.started else None,
                    "back_after_s": round(k.back - k.killed, 2) if k.back else None,
                }
                for k in check.kills
            ],
            "runs": len(answered),
            "runs_by_node": dict(Counter(run.node for run in answered if run.node)),
            "runs_not_finished": sum(1 for run in answered if run.state != "success"),
            "runs_short": sum(1 for run in answered if run.sent != 2 * options.frames),
            "trigger_errors": self.trigger_errors,
            "triggers_lost_with_the_killed_node": len(self.lost_triggers),
            "lost_triggers_played_elsewhere": check.lost_triggers_played,
            "unknown_runs": check.unknown_runs,
            "runs_missing_on_nodes": check.runs_missing_on_nodes,
            "node_runs_short": check.node_runs_short,
            "max_lateness_s": max((run.max_lateness_s for run in answered), default=0.0),
            "frames_delivered": check.delivered,
            "healthy_clients": len(check.clients),
            "runs_required": check.required,
            "frames_expected": check.expected,
            "frames_delivered_required": check.delivered_required,
            "frames_lost": check.lost,
            "out_of_order": check.out_of_order,
            "repeated": check.repeated,
            "runs_missing": check.runs_missing,
            "partial_runs": check.partial,
            "partial_runs_with_holes": check.partial_with_holes,
            "client_problems": dict(problems),
            "connects_failed_to_killed_nodes": sum(expected_failures.values()),
            "sample_errors": self.sample_errors,
            "client_max_lag_s": round(max(fleet["max_lag_s"] for fleet in fleets), 3),
            "processes": [self._process_report(p) for p in self.processes.values()],
            "examples": check.examples,
        }

    def _process_report(self, process: Process) -> dict[str, Any]:
        figures = {
            moment: {k: v for k, v in sample.items() if k != "types"}
            for moment, sample in process.figures.items()
        }
        reference = "start" if "start" in figures else "middle"
        growth = {}
        if reference in process.figures and "end" in process.figures:
            growth = _growth(
                process.figures[reference].get("types", {}),
                process.figures["end"].get("types", {}),
            )
        return {
            "pid": process.pid,
            "node": process.node,
            "killed": process.killed is not None,
            "born_s": round(process.born - self.began, 1),
            "runs_played": len(process.played),
            "reference": reference,
            "cpu_s": round(cpu_seconds(process.pid), 1),
            "figures": figures,
            "object_growth": growth,
        }


def process_failures(process: dict[str, Any]) -> list[str]:
    """What went wrong with one process's tasks and live memory (see tests/soak.py)."""
    if process["killed"]:
        return []
    found = []
    figures = process["figures"]
    who = f"node {process['node']} (pid {process['pid']})"
    first, last = figures.get(process["reference"]), figures.get("end")
    if first is None or last is None:
        return [f"{who}: no start or end figures"]
    # The kernel spreads a port's connections over its workers: a worker may hold more
    # clients at the end than at the start, each with a task and its blocks.
    more = max(0, last["clients"] - first["clients"])
    if last["tasks"] > first["tasks"] + TASKS_TOLERANCE + more:
        found.append(
            f"{who}: tasks grew from {first['tasks']} to {last['tasks']} "
            f"({first['clients']} to {last['clients']} clients)"
        )
    allowed = BLOCKS_TOLERANCE + BLOCKS_PER_CLIENT * last["clients"] + BLOCKS_CONNECTED * more
    if last["blocks"] > first["blocks"] + allowed:
        found.append(f"{who}: live blocks grew from {first['blocks']:,} to {last['blocks']:,}")
    before, after = figures.get("idle_before"), figures.get("idle_after")
    if before is not None and after is not None and process["reference"] == "start":
        if after["tasks"] > before["tasks"]:
            found.append(f"{who}: idle tasks grew from {before['tasks']} to {after['tasks']}")
        if after["blocks"] > before["blocks"] + BLOCKS_TOLERANCE:
            found.append(
                f"{who}: idle live blocks grew from {before['blocks']:,} to {after['blocks']:,}"
            )
    return found


def cluster_failures(report: dict[str, Any]) -> list[str]:
    """What the cluster soak's report says went wrong (empty when it passed)."""
    found = []
    for process in report["processes"]:
        found.extend(process_failures(process))
    counts = (*LOSSES, "unknown_runs", "runs_missing_on_nodes", "node_runs_short", "error_lines")
    found += checked(report, counts, (*TROUBLES, "sample_errors"))
    if not report["kills"] or any(kill["back_after_s"] is None for kill in report["kills"]):
        found.append(f"the kills did not all happen and recover: {report['kills']}")
    return found


def run_cluster_soak(options: Options, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the cluster soak; its report (also written to ``options.json``, and the
    nodes' logs next to it)."""
    with tempfile.TemporaryDirectory(prefix="replay-soak-cluster-") as name:
        folder = Path(name)
        scenarios = folder / "scenarios"
        scenarios.mkdir()
        scenario = SCENARIO.format(frames=options.frames, delay=options.delay)
        (scenarios / "soak.yaml").write_text(scenario)
        redis = RedisServer(folder)
        redis.start()
        if options.kill != "node" and options.cluster != "workers":
            raise ValueError("only --cluster workers has a worker to kill")
        if options.cluster == "workers":
            layout = [("A", WORKERS), ("B", 0)]
        else:
            layout = [("A", 0), ("B", 0), ("C", 0)]
        groups = [Group(n, scenarios, redis.url, folder, workers) for n, workers in layout]
        try:
            for group in groups:  # side by side: each takes seconds
                group.start()
            for group in groups:
                group.wait_ready()
            report = asyncio.run(ClusterSoak(options, groups, say).main())
        finally:
            for group in groups:
                group.stop()
            redis.stop()
        report.update(_log_findings(groups))
        if options.json is not None:
            options.json.write_text(json.dumps(report, indent=2) + "\n")
            for group in groups:
                for log in group.logs:
                    target = options.json.with_suffix(f".{log.stem}.log")
                    target.write_bytes(log.read_bytes())
    return report


def _log_findings(groups: list[Group]) -> dict[str, Any]:
    """ERROR and WARNING lines in every log (a killed process's included: it logged them
    before it died)."""
    errors: list[str] = []
    warnings: Counter[str] = Counter()
    for group in groups:
        for log in group.logs:
            found = log_findings(log.read_text(errors="replace").splitlines())
            errors += [f"{log.stem}: {line}" for line in found["errors"]]
            warnings.update({f"{log.stem}: {k}": v for k, v in found["warnings"].items()})
    return {"error_lines": len(errors), "errors": errors[:20], "warnings": dict(warnings)}


def format_cluster_report(report: dict[str, Any]) -> str:
    """The cluster soak's report as a table."""
    mib = 1024
    rows: list[tuple[str, Any]] = [
        ("duration", f"{report['duration_s']} s (after warm-up)"),
        ("nodes", ", ".join(f"{n} {v}" for n, v in report["nodes"].items())),
        ("clients", f"{report['clients']} ({report['clients_per_node']})"),
        ("connections made in all", report["connections"]),
        ("connections ended", _counts(report["connections_ended"])),
        ("closed by the server (not excused)", _counts(report["closed_by_server"]) or 0),
        ("kills", "; ".join(json.dumps(kill) for kill in report["kills"])),
        ("excused connections", f"{report['excused_connections']} {report['excused_by_node']}"),
        (
            "runs",
            f"{report['runs']} {report['runs_by_node']} ({report['runs_not_finished']} not "
            f"finished, {report['runs_short']} short; max lateness "
            f"{report['max_lateness_s'] * 1000:.0f} ms)",
        ),
        (
            "triggers lost with the killed node",
            f"{report['triggers_lost_with_the_killed_node']} (played elsewhere: "
            f"{report['lost_triggers_played_elsewhere']})",
        ),
        ("runs not played by a live process", report["runs_missing_on_nodes"]),
        ("frames delivered (all)", f"{report['frames_delivered']:,}"),
        ("healthy clients", report["healthy_clients"]),
        ("(connection, run) pairs checked", f"{report['runs_required']:,}"),
        ("frames expected by them", f"{report['frames_expected']:,}"),
        ("frames lost", report["frames_lost"]),
        ("out of order / repeated", f"{report['out_of_order']} / {report['repeated']}"),
        (
            "partial runs (connect/leave mid-run, kills)",
            f"{report['partial_runs']:,} ({report['partial_runs_with_holes']} with holes)",
        ),
        ("ERROR lines", report["error_lines"]),
        ("WARNING lines", sum(report["warnings"].values())),
        ("connects failed to killed nodes' ports", report["connects_failed_to_killed_nodes"]),
        ("client processes' worst loop lag", f"{report['client_max_lag_s'] * 1000:.0f} ms"),
        ("client problems", _counts(report["client_problems"]) or 0),
    ]
    for process in report["processes"]:
        figures = process["figures"]
        name = f"node {process['node']} pid {process['pid']}" + (
            " (killed)" if process["killed"] else ""
        )
        parts = []
        for moment in ("idle_before", "start", "middle", "end", "idle_after"):
            if moment in figures:
                sample = figures[moment]
                parts.append(
                    f"{moment} {sample['rss_kib'] / mib:.1f} MiB/"
                    f"{sample['tasks']}t/{sample['blocks']:,}b"
                )
        rows.append((name, f"{process['runs_played']} runs played; " + ", ".join(parts)))
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    for line, count in sorted(report["warnings"].items(), key=lambda item: -item[1]):
        lines.append(f"  {count:6d} x {line[:160]}")
    for line in report["errors"]:
        lines.append(f"  {line[:200]}")
    for example in report["examples"][:EXAMPLES]:
        lines.append(f"  {json.dumps(example)[:300]}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
