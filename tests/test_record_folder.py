"""The recordings folder (replay/record/folder.py): summaries, pages of frames, names
that never leave the folder, unreadable files listed with their error. Files are written
with the recording format's own lines (tests/recordings.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from replay.record import folder as folder_module
from replay.record.folder import (
    FRAME_BYTES,
    MAX_PAGE,
    PAGE,
    PAGE_BYTES,
    RecordingNotFound,
    RecordingsFolder,
    RecordingUnreadable,
)
from replay.record.format import text_frame
from tests.recorded_files import CHAT_INPUT, STARTED, write_recording

SESSION = "3f2a9c0e1b7d"


@pytest.fixture
def where(tmp_path: Path) -> Path:
    return tmp_path / "recordings"


def test_a_recording_s_summary(where: Path) -> None:
    write_recording(where, SESSION)
    [summary] = RecordingsFolder(where).listing()["recordings"]
    assert summary == {
        "session": SESSION,
        "file": f"{SESSION}.jsonl",
        "kind": "websocket",
        "endpoint": "/ws",
        "query": "client_id=ui",
        "client": "ui",
        "upstream": "ws://127.0.0.1:8000",
        "started": STARTED,
        "started_iso": "2024-12-03T21:06:40.000Z",
        "client_frames": 2,
        "server_frames": 3,
        "frame_count": 5,
        "duration_s": 1.5,
        "ended": True,
        "end": {"t": 1.5, "end": True, "code": 1000, "reason": "bye", "by": "client"},
        "size": (where / f"{SESSION}.jsonl").stat().st_size,
        "error": None,
    }


def test_a_recording_cut_short_is_listed_as_such(where: Path) -> None:
    # The proxy stopped while writing a line: the half line and the missing end.
    write_recording(where, SESSION, ended=False, tail='{"t": 2.0, "from": "serv')
    [summary] = RecordingsFolder(where).listing()["recordings"]
    assert summary["ended"] is False
    assert summary["end"] is None
    assert summary["frame_count"] == 5
    assert summary["duration_s"] == 1.5  # up to its last whole frame
    assert summary["error"] is None


def test_the_listing_is_newest_first_with_unreadable_files_and_their_errors(where: Path) -> None:
    write_recording(where, "aaaaaa", started=STARTED)
    write_recording(where, "bbbbbb", started=STARTED + 60)
    (where / "cccccc.jsonl").write_text("this is not JSON\nnor this\n")
    (where / "dddddd.jsonl").write_text('{"format": "replay-recording", "version": 9}\n')
    (where / "eeeeee.jsonl").write_bytes(b'{"format": "\xff\xfe"}\n')
    (where / "notes.jsonl").write_text("not a session id: left out\n")
    (where / "ffffff.txt").write_text("not a recording: left out\n")
    listing = RecordingsFolder(where).listing()
    assert listing["folder"] == str(where)
    assert listing["exists"] is True
    errors = {r["session"]: r["error"] for r in listing["recordings"]}
    assert errors == {
        "bbbbbb": None,
        "aaaaaa": None,
        "cccccc": "line 1: a line is not JSON",
        "dddddd": "line 1: version 9; this replay reads version 1",
        "eeeeee": "not UTF-8 text (byte 12)",
    }
    readable = [r["session"] for r in listing["recordings"] if r["error"] is None]
    assert readable == ["bbbbbb", "aaaaaa"]


def test_links_and_files_that_are_not_regular_are_unreadable(where: Path, tmp_path: Path) -> None:
    secret = write_recording(tmp_path / "elsewhere", "123456")
    where.mkdir()
    (where / "123456.jsonl").symlink_to(secret)
    os.mkfifo(where / "abcdef.jsonl")  # never opened for reading whole: not regular
    errors = {r["session"]: r["error"] for r in RecordingsFolder(where).listing()["recordings"]}
    assert errors == {
        "123456": "a symbolic link (recordings are regular files in the folder)",
        "abcdef": "not a regular file",
    }
    with pytest.raises(RecordingUnreadable) as raised:
        RecordingsFolder(where).read_page("123456")
    assert str(raised.value) == (
        "recording '123456' cannot be read: a symbolic link (recordings are regular files "
        "in the folder)"
    )


def test_a_file_over_the_size_limit_is_not_read(
    where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_recording(where, SESSION)
    monkeypatch.setattr(folder_module, "MAX_FILE_BYTES", 100)
    [summary] = RecordingsFolder(where).listing()["recordings"]
    assert summary["error"].startswith("the file is too large (0 MiB; at most 0 MiB are read)")


def test_a_missing_folder_lists_nothing(where: Path) -> None:
    assert RecordingsFolder(where).listing() == {
        "folder": str(where),
        "exists": False,
        "truncated": 0,
        "recordings": [],
    }


def test_each_version_of_a_file_is_parsed_once_for_the_listing(
    where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    real = folder_module.read_recording

    def counting(lines: Any, file: str) -> Any:
        parsed.append(file)
        return real(lines, file)

    monkeypatch.setattr(folder_module, "read_recording", counting)
    write_recording(where, SESSION)
    recordings = RecordingsFolder(where)
    recordings.listing()
    recordings.listing()
    assert parsed == [f"{SESSION}.jsonl"]
    write_recording(where, SESSION, ended=False)  # a new version
    assert recordings.listing()["recordings"][0]["ended"] is False
    assert parsed == [f"{SESSION}.jsonl"] * 2


def test_a_page_of_frames(where: Path) -> None:
    write_recording(where, SESSION)
    page = RecordingsFolder(where).read_page(SESSION, offset=1, limit=3)
    assert page["header"]["session"] == SESSION
    assert page["header"]["started_iso"] == "2024-12-03T21:06:40.000Z"
    assert (page["offset"], page["next"], page["frame_count"]) == (1, 4, 5)
    assert page["frames"] == [
        {"t": 0.25, "from": "client", "op": "text", "data": CHAT_INPUT, "index": 1, "ms": 250.0,
         "size": len(CHAT_INPUT)},
        {"t": 0.5, "from": "server", "op": "text", "data": page["frames"][1]["data"],
         "index": 2, "ms": 500.0, "size": len(page["frames"][1]["data"])},
        {"t": 0.75, "from": "server", "op": "binary", "data": "AAEC/w==", "index": 3,
         "ms": 750.0, "size": 4},
    ]  # fmt: skip
    last = RecordingsFolder(where).read_page(SESSION, offset=4)
    assert last["next"] is None
    assert last["frames"] == [
        {"t": 1.5, "from": "client", "op": "close", "code": 1000, "reason": "bye", "index": 4,
         "ms": 1500.0, "size": 5},
    ]  # fmt: skip
    assert RecordingsFolder(where).read_page(SESSION, offset=99)["frames"] == []


def test_a_large_recording_is_never_sent_whole(where: Path) -> None:
    frames = [text_frame(i / 1000, "server", f'{{"n":{i}}}') for i in range(100_000)]
    write_recording(where, SESSION, frames)
    recordings = RecordingsFolder(where)
    [summary] = recordings.listing()["recordings"]
    assert summary["server_frames"] == 100_000
    first = recordings.read_page(SESSION)
    assert len(first["frames"]) == PAGE
    assert first["next"] == PAGE
    most = recordings.read_page(SESSION, offset=99_500, limit=10_000)
    assert len(most["frames"]) == 500  # the rest, fewer than MAX_PAGE
    assert most["frames"][-1]["data"] == '{"n":99999}'
    assert len(recordings.read_page(SESSION, limit=10_000)["frames"]) == MAX_PAGE


def test_a_page_holds_at_most_page_bytes_and_cuts_huge_frames(where: Path) -> None:
    big = "x" * FRAME_BYTES
    frames = [text_frame(0.1, "server", big + "y" * FRAME_BYTES)]  # cut at FRAME_BYTES
    frames += [text_frame(0.2 + i / 10, "server", big) for i in range(8)]
    write_recording(where, SESSION, frames)
    page = RecordingsFolder(where).read_page(SESSION, limit=MAX_PAGE)
    assert [len(f["data"]) for f in page["frames"]] == [FRAME_BYTES] * (PAGE_BYTES // FRAME_BYTES)
    assert page["frames"][0]["truncated"] is True
    assert page["frames"][0]["size"] == 2 * FRAME_BYTES
    assert "truncated" not in page["frames"][1]
    assert page["next"] == PAGE_BYTES // FRAME_BYTES


def test_text_with_line_separators_stays_one_frame(where: Path) -> None:
    text = "a\u2028b\u2029c\x85d\x1ce"
    write_recording(where, SESSION, [text_frame(0.0, "server", text)])
    [frame] = RecordingsFolder(where).read_page(SESSION)["frames"]
    assert frame["data"] == text


@pytest.mark.parametrize(
    "name",
    ["..", "../x", "/etc/passwd", "3F2A9C0E1B7D", "3f2a9", "3f2a9c0e1b7d.jsonl", "", "g" * 6],
)
def test_a_name_that_is_not_a_session_id_is_no_recording(where: Path, name: str) -> None:
    write_recording(where, SESSION)
    with pytest.raises(RecordingNotFound) as raised:
        RecordingsFolder(where).read_page(name)
    assert str(raised.value) == (
        f"no recording named {name!r} in {str(where)!r} (a recording's name is 6 to 64 "
        "lower-case hex digits (the session id))"
    )


def test_an_unknown_session_is_no_recording(where: Path) -> None:
    with pytest.raises(RecordingNotFound) as raised:
        RecordingsFolder(where).read_page("abcdef123456")
    assert str(raised.value) == f"no recording named 'abcdef123456' in {str(where)!r}"


async def test_reads_happen_in_the_folder_s_thread(
    where: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_recording(where, SESSION)
    threads: list[str] = []
    real = folder_module._parse

    def noting(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(folder_module, "_parse", noting)
    recordings = RecordingsFolder(where)
    assert (await recordings.list())["recordings"][0]["session"] == SESSION
    assert (await recordings.page(SESSION))["frame_count"] == 5
    assert await recordings.find(SESSION) == f"{SESSION}.jsonl"
    assert threads
    assert all(name.startswith("replay-recordings") for name in threads)
