"""One npm install at a time into a test cache folder (tests/axe.py, tests/asyncapi_parser.py):
with ``pytest -n 2`` (pytest-xdist) two test processes may find the package missing at
once; the second waits for the first's install and then finds it there."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a lock file in it) for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield
