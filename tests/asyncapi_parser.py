"""The official AsyncAPI parser (``@asyncapi/parser``, from npm) for tests/test_asyncapi.py.

It is installed once into a cache folder (``~/.cache/replay-tests/asyncapi-parser``,
or under ``$XDG_CACHE_HOME``), by the test that needs it or beforehand by ``.ci/run``::

    uv run python -m tests.asyncapi_parser
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.npm_lock import locked

#: The parser's npm package, pinned.
PACKAGE = "@asyncapi/parser@3.6.6"
#: No install scripts (the parser needs none), no package.json written in the cache.
OPTIONS = ("--ignore-scripts", "--no-save", PACKAGE)
SCRIPT = Path(__file__).with_name("asyncapi_parse.cjs")
#: Diagnostic severities (Spectral's): 0 is an error; 1, 2, 3 warn, inform, hint.
ERROR = 0


def cache_folder() -> Path:
    """Where the parser is installed."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "replay-tests" / "asyncapi-parser"


def missing_tools() -> str | None:
    """Why the parser cannot run here (no node or npm), or None."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (the AsyncAPI parser runs on Node.js)"
    return None


def install() -> Path:
    """The folder the parser is installed in, installing it first if it is not there.
    Raises CalledProcessError if npm fails."""
    folder = cache_folder()
    version = PACKAGE.rpartition("@")[2]
    installed = folder / "node_modules" / "@asyncapi" / "parser" / "package.json"
    with locked(folder):
        if installed.is_file() and json.loads(installed.read_text())["version"] == version:
            return folder
        subprocess.run(
            [*("npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund"), *OPTIONS],
            check=True,
            capture_output=True,
            timeout=600,
        )
    return folder


def parse(files: list[Path]) -> list[dict[str, Any]]:
    """Each file's result: ``{file, parsed, diagnostics: [{code, severity, message,
    path}]}``; ``parsed`` is False when the parser found errors."""
    result = subprocess.run(
        ["node", str(SCRIPT), str(install()), *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


if __name__ == "__main__":
    problem = missing_tools()
    if problem:
        sys.exit(f"cannot install {PACKAGE}: {problem}")
    print(f"{PACKAGE} in {install()}")
