"""``replay serve`` in a subprocess, for the tests that need a whole process: its
open-file limit, its log."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.hostile import PATIENCE

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a new ``replay serve`` process may take to start listening: a Python process
#: importing FastAPI and pydantic takes about 1 s on a quiet machine, 2.5 s with two
#: CPU-bound processes beside the suite, and more on a machine busier still.
STARTUP = 60.0


class Served:
    """``replay serve`` in a subprocess, logging to a file (a pipe left unread could block
    it); with at most ``files`` open files if given."""

    def __init__(self, scenarios: Path, log: Path, *options: str, files: int | None = None) -> None:
        self.log = log

        def limited() -> None:
            if files is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

        with log.open("wb") as sink:
            command = [sys.executable, "-m", "replay", "serve", "--port", "0"]
            self.process = subprocess.Popen(
                [*command, "--scenarios", str(scenarios), *options],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                preexec_fn=limited,
            )
        found = self.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", STARTUP)
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, patience: float = PATIENCE) -> re.Match[str]:
        """Wait (``patience`` seconds at most) until the log has a line matching
        ``pattern``; the match."""
        deadline = time.monotonic() + patience
        while not (found := re.search(pattern, self.text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"no {pattern!r} in the log:\n{self.text()[-3000:]}")
            time.sleep(0.02)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(PATIENCE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def healthz(served: Served) -> dict[str, Any]:
    """GET /healthz, retried until it answers (PATIENCE at most)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            with urllib.request.urlopen(served.url + "/healthz", timeout=PATIENCE) as answer:
                return dict(json.loads(answer.read()))
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
