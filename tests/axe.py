"""axe-core (Deque's accessibility engine, from npm) for the browser tests.

It is installed once into a cache folder (``~/.cache/replay-tests/axe-core``, or under
``$XDG_CACHE_HOME``), by the test that needs it or beforehand by ``.ci/run``::

    uv run python -m tests.axe

:func:`serious_violations` injects it into a Playwright page and runs it there.
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

#: The engine's npm package, pinned.
PACKAGE = "axe-core@4.14.1"
OPTIONS = ("--ignore-scripts", "--no-save", PACKAGE)
#: The impacts a page must not have.
SERIOUS = frozenset({"serious", "critical"})


def cache_folder() -> Path:
    """Where axe-core is installed."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "replay-tests" / "axe-core"


def missing_tools() -> str | None:
    """Why axe-core cannot be installed here (no npm), or None."""
    if shutil.which("npm") is None:
        return "npm is not installed (axe-core comes from the npm registry)"
    return None


def install() -> Path:
    """The path of ``axe.min.js``, installing axe-core first if it is not there.
    Raises CalledProcessError if npm fails."""
    folder = cache_folder()
    version = PACKAGE.rpartition("@")[2]
    package = folder / "node_modules" / "axe-core"
    manifest = package / "package.json"
    with locked(folder):
        if not (manifest.is_file() and json.loads(manifest.read_text())["version"] == version):
            subprocess.run(
                [*("npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund"), *OPTIONS],
                check=True,
                capture_output=True,
                timeout=600,
            )
    return package / "axe.min.js"


def serious_violations(page: Any, context: str | None = None) -> list[dict[str, Any]]:
    """Run axe-core on a Playwright ``page`` (its whole document, or the elements the CSS
    selector ``context`` picks) and return the violations of serious or critical impact,
    each as ``{id, impact, help, nodes: [html...]}`` (an empty list is a pass)."""
    page.add_script_tag(path=str(install()))
    found: list[dict[str, Any]] = page.evaluate(
        """async (context) => {
            const result = await axe.run(context ? document.querySelectorAll(context) : document);
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.html),
            }));
        }""",
        context,
    )
    return [violation for violation in found if violation["impact"] in SERIOUS]


if __name__ == "__main__":
    problem = missing_tools()
    if problem:
        sys.exit(f"cannot install {PACKAGE}: {problem}")
    print(f"{PACKAGE} at {install()}")
