"""What every part of the benchmark shares: the frames, /proc readings, bounded waits.

Every server (replay, bare, seed-style) puts the same bytes on the wire for frame ``i``, so
the clients can check each frame exactly and cheaply.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: How long any child process may live, whatever happens (a last-resort bound).
CHILD_LIFETIME = 1800.0


class BenchError(Exception):
    """The benchmark cannot go on (a server or client process failed, limits too low)."""


# --------------------------------------------------------------------------------------
# Frames.


def frame_text(seq: int, pad: int = 0) -> str:
    """The ``message`` of frame ``seq``; ``pad`` characters make it bigger."""
    return f"seq {seq}" + (" " + "x" * pad if pad else "")


def frame(seq: int, pad: int = 0) -> str:
    """The frame replay puts on the wire for ``message: EVENT`` / ``text: <frame_text>``."""
    return json.dumps(
        {"message_type": "EVENT", "message": frame_text(seq, pad)},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def frame_seq(payload: bytes) -> int | None:
    """The sequence number of a frame, or None if it is not one of ours."""
    try:
        return int(json.loads(payload)["message"].split()[1])
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


# --------------------------------------------------------------------------------------
# Limits.


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard one; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def local_port_count() -> int:
    """How many ephemeral ports a client may use (net.ipv4.ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 28232  # Linux's default range
    return high - low + 1


def check_limits(connections: int, client_procs: int) -> None:
    """Fail early, and clearly, when the machine cannot hold ``connections`` at once."""
    limit = raise_open_files_limit()
    # A server holds every connection; a client process holds its share.
    need = connections + 200
    if limit < need:
        raise BenchError(
            f"the open-files limit is {limit} but a server needs about {need} for "
            f"{connections} connections: raise it (ulimit -n {need + 1000}) or use fewer "
            "clients (--fanout, --idle-clients, --stall-clients)"
        )
    ports = local_port_count()
    if ports < connections + 1000:
        raise BenchError(
            f"only {ports} local ports (net.ipv4.ip_local_port_range) for {connections} "
            "connections: widen the range or use fewer clients"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------
# /proc.


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (10 ms resolution)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc's parent
    links (the kernel here has no /proc/<pid>/task/*/children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = (entry / "stat").read_text()
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and every process below it (a server's workers)."""
    total = 0.0
    for each in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += cpu_seconds(each)
    return total


def host_ticks() -> tuple[int, int]:
    """Busy and total CPU ticks of the whole machine, all cores (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def other_load(seconds: float = 1.0) -> float:
    """CPU % (of one core) used by other processes while this one sleeps."""
    busy0, _ = host_ticks()
    time.sleep(seconds)
    busy1, _ = host_ticks()
    return 100 * (busy1 - busy0) / CLOCK_TICKS / seconds


def memory_kib(pid: int, key: str = "VmRSS") -> int:
    """A line of /proc/<pid>/status in KiB (VmRSS: resident memory now)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def tree_memory_kib(pid: int) -> int:
    """VmRSS of ``pid`` and every process below it, in KiB (pages shared between them,
    such as a forked worker's, count once per process: an upper bound)."""
    return sum(memory_kib(each) for each in [pid, *descendants(pid)])


# --------------------------------------------------------------------------------------
# Waits and HTTP.


def poll(check: Callable[[], Any], timeout: float, interval: float = 0.05) -> bool:
    """Call ``check()`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def http(url: str, method: str = "GET", timeout: float = 10.0) -> tuple[int, Any]:
    """Status and JSON answer of an HTTP request (bounded by ``timeout``)."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    try:
        return status, json.loads(body or b"null")
    except ValueError:
        return status, body.decode(errors="replace")


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def source_version() -> str:
    """The commit replay was measured at, and whether replay/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "replay"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown commit"
    return f"{head or 'unknown commit'}{' + uncommitted changes' if dirty else ''}"
