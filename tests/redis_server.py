"""A real Redis for the backplane's tests: Debian's ``redis-server``, started on a free port
in a temporary folder, with nothing saved to disk, and stopped afterwards.

``.ci/run`` installs it; without it the tests that need it fail, saying how to install it
(as the browser tests do without Chromium): a real component missing is not a pass.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Seconds a starting redis-server has to answer PING.
START_TIMEOUT = 20.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pings(port: int) -> bool:
    """Whether a Redis answers PING on ``port`` now (inline command, RESP answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server child process on a fixed port: :meth:`stop` and :meth:`start`
    again (the same port, so clients' URLs stay valid) for fault tests."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait (START_TIMEOUT at most) until it answers PING."""
        assert self.process is None, "already running"
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.folder)]
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not _pings(self.port):
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"redis-server exited: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING: {self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait until it has exited."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _log_tail(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server of the test's own (``.url``), stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.fail(
            "redis-server is not installed: install Debian's (apt-get install redis-server; "
            "bash .ci/run does)"
        )
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
