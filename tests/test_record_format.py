"""The recording format: lines written, and read back (replay.record.format)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replay.record.format import (
    End,
    Header,
    RecordingInvalid,
    bytes_frame,
    close_frame,
    line,
    read_recording,
    text_frame,
    text_line,
)


def lines() -> list[str]:
    header = Header("abc", "/ws", query="client_id=ui", client="ui", started=1733260000.5)
    return [
        line(header),
        line(text_frame(0.25, "server", '{"message_type":"EVENT","message":"é"}')),
        line(bytes_frame(0.5, "client", "binary", b"\x00\x01\xff")),
        line(bytes_frame(0.6, "client", "ping", b"hi")),
        line(close_frame(1.0, "client", 4001, "bye")),
        line(End(1.0, 4001, "bye", "client")),
    ]


def test_a_recording_reads_back_as_written() -> None:
    recording = read_recording(lines(), "s.jsonl")
    assert recording.header.endpoint == "/ws"
    assert recording.header.client == "ui"
    assert [(f.t, f.side, f.op) for f in recording.frames] == [
        (0.25, "server", "text"),
        (0.5, "client", "binary"),
        (0.6, "client", "ping"),
        (1.0, "client", "close"),
    ]
    assert recording.frames[0].payload == '{"message_type":"EVENT","message":"é"}'
    assert recording.frames[1].payload == b"\x00\x01\xff"
    assert (recording.frames[3].code, recording.frames[3].reason) == (4001, "bye")
    assert recording.end == End(1.0, 4001, "bye", "client")
    first = json.loads(lines()[0])
    assert (first["format"], first["version"]) == ("replay-recording", 1)
    assert first["started_iso"] == "2024-12-03T21:06:40.500Z"


def test_a_recording_cut_short_is_still_read() -> None:
    cut = lines()[:3]
    cut[-1] = cut[-1][: len(cut[-1]) // 2]  # the proxy died while writing the line
    recording = read_recording(cut)
    assert len(recording.frames) == 1
    assert recording.end is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "the file is empty"),
        ('{"format": "other"}\n', 'no "format": "replay-recording"'),
        ('{"format": "replay-recording", "version": 2}\n', "this replay reads version 1"),
        ("[1]\n" + "{}\n", "not a JSON object"),
    ],
)
def test_what_is_not_a_recording_says_why(text: str, reason: str) -> None:
    with pytest.raises(RecordingInvalid, match=reason):
        read_recording(text.splitlines(keepends=True), "x.jsonl")


def test_a_bad_frame_in_the_middle_is_located() -> None:
    bad = [*lines()[:2], '{"t": 1, "from": "nobody", "op": "text"}\n', *lines()[2:]]
    with pytest.raises(RecordingInvalid, match=r"x.jsonl:3: not a replay recording: a bad frame"):
        read_recording(bad, "x.jsonl")


@given(
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
    st.sampled_from(["client", "server"]),
    st.text(),
)
def test_the_fast_text_line_is_the_same_line(t: float, side: str, text: str) -> None:
    assert text_line(t, side, text) == line(text_frame(t, side, text))  # type: ignore[arg-type]
