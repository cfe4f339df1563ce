"""The recordings' HTTP API: ``GET /recordings``, ``GET /recordings/{session}`` and
``POST /recordings/{session}/convert`` (see :mod:`replay.record.folder`).

These are replay's own routes (listed in :data:`replay.routes.OWN_ROUTES`), behind the
same guards as the others: the token, and no other site's page may read them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Query

from replay.record.folder import (
    MAX_PAGE,
    PAGE,
    RecordingNotFound,
    RecordingsFolder,
    RecordingUnreadable,
)
from replay.responses import JSONAnswer

#: What ``POST /recordings/{session}/convert`` answers until it is wired to the converter.
NOT_YET = (
    "converting recordings from the dashboard is not available in this version yet "
    "(POST /recordings/{session}/convert answers 501 until it is wired to the converter)"
)


def install(app: FastAPI, folder: RecordingsFolder) -> None:
    """Add the recordings' routes to ``app``, reading ``folder``."""

    @app.get("/recordings")
    async def list_recordings() -> dict[str, Any]:
        """Every recording in the recordings folder, newest first: its session, endpoint,
        client, upstream, start, frames each way, duration and whether it ended cleanly
        (``ended``) or was cut short; a file that cannot be read is listed with its
        ``error``. At most 1000 (the newest); ``truncated`` counts the others."""
        return await folder.list()

    @app.get("/recordings/{session}", response_model=None)
    async def show_recording(
        session: str,
        offset: Annotated[int, Query(ge=0, le=10**9, description="The first frame.")] = 0,
        limit: Annotated[
            int, Query(ge=1, le=MAX_PAGE, description=f"Frames at most (default {PAGE}).")
        ] = PAGE,
    ) -> dict[str, Any] | JSONAnswer:
        """A recording's summary, header and a page of its frames from ``offset``: at
        most ``limit`` frames and 4 MiB of frame data (each frame's data cut at 1 MiB,
        then ``truncated``); ``next`` is the next page's offset, or null at the end."""
        try:
            return await folder.page(session, offset, limit)
        except (RecordingNotFound, RecordingUnreadable) as error:
            return _refusal(error)

    @app.post("/recordings/{session}/convert", response_model=None)
    async def convert_recording(session: str) -> JSONAnswer:
        """Turn a recording into a scenario: not available yet (501)."""
        try:
            file = await folder.find(session)
        except (RecordingNotFound, RecordingUnreadable) as error:
            return _refusal(error)
        detail = NOT_YET.format(session=session)
        return JSONAnswer({"detail": detail, "session": session, "file": file}, 501)


def _refusal(error: RecordingNotFound | RecordingUnreadable) -> JSONAnswer:
    if isinstance(error, RecordingNotFound):
        return JSONAnswer({"detail": str(error), "session": error.session}, 404)
    return JSONAnswer({"detail": str(error), "session": error.session, "error": error.reason}, 422)
