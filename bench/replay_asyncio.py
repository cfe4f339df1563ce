"""``replay`` on asyncio's own event loop and h11, whatever is installed.

    python bench/replay_asyncio.py serve ...   # as python -m replay serve ...

uvicorn's ``loop="auto"`` and ``http="auto"`` (what ``replay serve`` uses) take uvloop and
httptools when they can import them; hiding both makes it fall back to asyncio and h11,
so that one benchmark run can measure what they bring (``--servers replay,replay-asyncio``).
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # This folder's modules (loader.py, common.py, ...) must not shadow anything replay imports.
    sys.path = [p for p in sys.path if p not in ("", sys.path[0])]
    # None in sys.modules makes ``import uvloop`` raise ImportError, as if not installed.
    sys.modules["uvloop"] = None  # type: ignore[assignment]
    sys.modules["httptools"] = None  # type: ignore[assignment]
    from replay.cli import main

    sys.exit(main())
