"""The recordings' HTTP API: ``GET /recordings``, ``GET /recordings/{session}`` and
``POST /recordings/{session}/convert`` (see :mod:`replay.record.folder`).

These are replay's own routes (listed in :data:`replay.routes.OWN_ROUTES`), behind the
same guards as the others: the token, and no other site's page may read them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query

from replay.fields import NAME_PATTERN
from replay.protocol.declaration import Protocol
from replay.record.convert import Converted, ConvertError, Options, convert
from replay.record.folder import (
    MAX_PAGE,
    PAGE,
    RecordingNotFound,
    RecordingsFolder,
    RecordingUnreadable,
)
from replay.record.format import Recording
from replay.record.scenarios import write_converted
from replay.responses import JSONAnswer

if TYPE_CHECKING:
    from replay.catalog import Catalog


def install(
    app: FastAPI,
    folder: RecordingsFolder,
    scenarios: Path,
    catalogs: Callable[[], Awaitable[Catalog]],
) -> None:
    """Add the recordings' routes to ``app``, reading ``folder``; a converted recording
    is written into ``scenarios``, with the protocol of the catalog ``catalogs()`` gives."""

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
    async def convert_recording(
        session: str,
        name: Annotated[
            str | None,
            Query(pattern=NAME_PATTERN.pattern, description="The scenario's name."),
        ] = None,
        force: Annotated[bool, Query(description="Replace files that exist.")] = False,
    ) -> dict[str, Any] | JSONAnswer:
        """Turn a recording into a scenario in the scenarios folder (``recorded-<session>``
        unless ``name`` says), with the folder's protocol and exact timing, as
        ``replay convert`` does: 409 if a file of that name exists (``force`` replaces
        it), 422 if the recording holds nothing to replay."""
        try:
            recording = await folder.recording(session)
        except (RecordingNotFound, RecordingUnreadable) as error:
            return _refusal(error)
        catalog = await catalogs()
        scenario = name or f"recorded-{session[:12]}"
        try:
            # In a thread: converting an hour of frames takes seconds (and writing files
            # waits for the disk), and playing runs must not wait for either.
            loop = asyncio.get_running_loop()
            converted, written = await loop.run_in_executor(
                None, _convert, recording, catalog.protocol, scenario, scenarios, force
            )
        except ConvertError as error:
            status = 409 if "exists:" in str(error) else 422
            return JSONAnswer({"detail": str(error), "session": session}, status)
        return {
            "session": session,
            "scenario": converted.name,
            "files": [str(path) for path in written],
            "frames": converted.frames,
            "waits": converted.waits,
            "skipped": converted.skipped,
            "duration_s": round(converted.duration, 3),
        }


def _convert(
    recording: Recording, protocol: Protocol, name: str, scenarios: Path, force: bool
) -> tuple[Converted, list[Path]]:
    """The recording converted and written into ``scenarios``; raises ConvertError."""
    converted = convert([recording], protocol, Options(), name)
    return converted, write_converted(scenarios, converted, None, force)


def _refusal(error: RecordingNotFound | RecordingUnreadable) -> JSONAnswer:
    if isinstance(error, RecordingNotFound):
        return JSONAnswer({"detail": str(error), "session": error.session}, 404)
    return JSONAnswer({"detail": str(error), "session": error.session, "error": error.reason}, 422)
