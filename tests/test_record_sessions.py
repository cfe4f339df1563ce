"""Recording files written line by line, read back with the format's reader."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from replay.record.format import Header, read_recording
from replay.record.redact import PayloadPath
from replay.record.sessions import (
    Observer,
    Recorder,
    SessionInfo,
    SessionWriter,
    body_fields,
    new_session_id,
)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


def header(session: str = "0123456789ab") -> Header:
    return Header(session=session, endpoint="/ws", started=1700000000.0)


def read(path: Path):  # type: ignore[no-untyped-def]
    return read_recording(path.read_text().splitlines(True), str(path))


def test_session_ids_are_twelve_hex_digits() -> None:
    ids = {new_session_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)


def test_a_session_is_written_line_by_line(tmp_path: Path) -> None:
    paths = [PayloadPath.parse("token")]
    writer = SessionWriter(tmp_path, header(), paths, clock=Ticks())
    assert writer.path == tmp_path / "0123456789ab.jsonl"
    writer.text("client", '{"token": "t", "a": 1}')
    assert len(writer.path.read_text().splitlines()) == 2  # flushed at once
    writer.data("server", "binary", b"\x00\x01")
    writer.data("server", "ping", b"p")
    writer.close("server", 4000, "bye")
    end = writer.end(4000, "bye", "server")
    writer.end(1000, "again", None)  # once only
    recording = read(writer.path)
    assert recording.header == header()
    assert [(f.t, f.side, f.op) for f in recording.frames] == [
        (0.5, "client", "text"),
        (1.0, "server", "binary"),
        (1.5, "server", "ping"),
        (2.0, "server", "close"),
    ]
    assert recording.frames[0].data == '{"token": "***", "a": 1}'
    assert recording.frames[1].payload == b"\x00\x01"
    assert recording.end == end
    assert (end.t, end.code, end.by) == (2.5, 4000, "server")


def test_a_recording_cut_short_is_still_readable(tmp_path: Path) -> None:
    writer = SessionWriter(tmp_path, header())
    writer.text("server", "one")
    writer.text("server", "two")
    with writer.path.open("a") as file:  # the proxy died writing the next line
        file.write('{"t": 1.0, "from": "ser')
    recording = read(writer.path)
    assert [f.data for f in recording.frames] == ["one", "two"]
    assert recording.end is None


def test_http_lines(tmp_path: Path) -> None:
    writer = SessionWriter(
        tmp_path, header(), [PayloadPath.parse("password")], clock=Ticks(), start=100.0
    )
    writer.request(
        "POST", "/login?token=x&next=/", [("Cookie", "a"), ("Accept", "*/*")], b'{"password": "p"}'
    )
    writer.response(200, [("Set-Cookie", "sid=1")], b"\xff\xfe")
    request, response = read(writer.path).frames
    assert request.t == 0.5
    assert request.extra == {
        "method": "POST",
        "path": "/login",
        "query": "token=***&next=/",
        "headers": {"cookie": "***", "accept": "*/*"},
        "body": '{"password": "***"}',
    }
    assert response.extra == {
        "status": 200,
        "headers": {"set-cookie": "***"},
        "body": "//4=",
        "base64": True,
    }


def test_bodies() -> None:
    assert body_fields(b"plain", []) == {"body": "plain"}
    assert body_fields(b"\x80", []) == {"body": "gA==", "base64": True}


def test_a_file_that_cannot_be_written_is_given_up_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "not" / "there"
    with caplog.at_level(logging.ERROR, "replay.record"):
        writer = SessionWriter(missing, header())
        writer.text("client", "x")
        writer.end(1000, "", "client")
    assert len(caplog.records) == 1
    assert "goes on unrecorded" in caplog.records[0].getMessage()


def test_a_file_that_fails_midway_is_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = SessionWriter(tmp_path, header())
    assert writer._file is not None
    writer._file.close()  # as a full disk would: writes fail
    with caplog.at_level(logging.ERROR, "replay.record"):
        writer.text("client", "x")
        writer.text("client", "y")
    assert len(caplog.records) == 1


def test_the_observer_counts(tmp_path: Path) -> None:
    observer = Observer()
    ws = SessionInfo("a" * 12, "websocket", "/ws", tmp_path / "a.jsonl")
    web = SessionInfo("b" * 12, "http", "GET /", tmp_path / "b.jsonl", 200)
    observer.opened(ws)
    observer.opened(web)
    observer.frame("client", 10)
    observer.frame("server", 5)
    observer.frame("server", 7)
    assert (observer.counts.open, observer.counts.sessions, observer.counts.requests) == (1, 1, 1)
    assert observer.counts.frames == {"client": 1, "server": 2}
    assert observer.counts.bytes == {"client": 10, "server": 12}
    writer = SessionWriter(tmp_path, header())
    observer.closed(ws, writer.end(1000, "", "client"), {"client": 1, "server": 2})
    observer.refused("/x", "down")
    assert (observer.counts.open, observer.counts.refused) == (0, 1)


def test_a_recorder_makes_writers(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path, (PayloadPath.parse("a"),))
    writer = recorder.writer(header("fedcba987654"), start=5.0)
    assert (writer.path.parent, writer.paths, writer.start) == (tmp_path, recorder.paths, 5.0)
