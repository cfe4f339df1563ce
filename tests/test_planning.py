"""Plans made off the event loop, remembered per version of the files they read."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from pathlib import Path

import pytest

import replay.planning
from replay.catalog import Catalog
from replay.library import ScenarioLibrary
from replay.loader import parse_scenario
from replay.planning import Summaries


def catalog(**sources: str) -> Catalog:
    return Catalog.resolve(parse_scenario(text, f"s/{name}.yaml") for name, text in sources.items())


@pytest.fixture
def planned_in(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The threads plans are made in, one entry per plan."""
    threads: list[str] = []
    real = replay.planning.build_timeline

    def spy(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(replay.planning, "build_timeline", spy)
    return threads


async def test_summaries_are_made_off_the_loop_once_per_version(
    planned_in: list[str], tmp_path: Path
) -> None:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "main.yaml").write_text("steps:\n  - play: part\n  - chunk: end\n")
    (folder / "part.yaml").write_text("steps:\n  - chunk: a\n    delay: 1\n")
    (folder / "other.yaml").write_text("steps:\n  - chunk: b\n")
    library = ScenarioLibrary(folder)
    summaries = Summaries()
    first = await summaries.of("main", library.catalog())
    assert first is not None
    assert (first.frames, first.duration, first.cues) == (2, 1.0, ())
    await asyncio.gather(*(summaries.of("main", library.catalog()) for _ in range(5)))
    assert len(planned_in) == 1
    assert all(name.startswith("replay-plan") for name in planned_in)
    # Another file's edit leaves main's summary alone; an edit of a file main plays does not.
    (folder / "other.yaml").write_text("steps:\n  - chunk: c\n  - chunk: d\n")
    await summaries.of("main", library.catalog())
    assert len(planned_in) == 1
    (folder / "part.yaml").write_text("steps:\n  - chunk: a\n    delay: 3\n")
    again = await summaries.of("main", library.catalog())
    assert again is not None
    assert again.duration == 3.0
    assert len(planned_in) == 2


async def test_a_forever_scenario_is_summarised_briefly() -> None:
    found = catalog(
        tick="steps:\n  - repeat: forever\n    steps:\n      - wait: CHAT_INPUT\n      - chunk: a\n"
    )
    summary = await Summaries().of("tick", found)
    assert summary is not None
    assert summary.duration is None
    assert summary.truncated
    assert summary.waits > 0
    assert summary.frames + summary.waits <= replay.planning.FOREVER_CUES


def test_a_shown_timeline_is_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay.planning, "SHOWN_BYTES", 10_000)
    found = catalog(big="steps:\n  - repeat: 100\n    steps:\n      - chunk: " + "x" * 1000 + "\n")
    shown = replay.planning.shown("big", found)
    assert shown is not None
    assert shown.truncated
    assert sum(len(cue.frame) for cue in shown) <= 10_000 + 1000


def test_a_summary_keeps_no_frames() -> None:
    frame = "x" * 100_000
    found = catalog(big=f"steps:\n  - repeat: 1000\n    steps:\n      - chunk: '{frame}'\n")
    tracemalloc.start()
    try:
        summary = replay.planning.summary("big", found)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary is not None
    assert summary.frames == 1000
    assert held < 2_000_000  # 1000 frames of 100 kB would be 100 MB


async def test_work_off_the_loop_runs_without_cycle_collection() -> None:
    # A plan's tens of thousands of new objects are not walked by the cycle collector
    # while they are made; it is on again afterwards (if it was on before).
    assert gc.isenabled()
    seen = await replay.planning.off_loop(gc.isenabled)
    assert seen is False
    assert gc.isenabled()

    def fails() -> None:
        raise ValueError("no plan")

    with pytest.raises(ValueError, match="no plan"):
        await replay.planning.off_loop(fails)
    assert gc.isenabled()
