"""Recording files for the tests, written with the recording format's own lines
(replay.record.format), as ``replay record`` writes them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from replay.record.format import (
    SUFFIX,
    End,
    Frame,
    Header,
    bytes_frame,
    close_frame,
    line,
    text_frame,
)

#: When the sample sessions started (2024-12-03T21:06:40Z).
STARTED = 1733260000.0
CHAT_INPUT = '{"message_type":"CHAT_INPUT","message":"hello"}'
EVENT = '{"message_type":"EVENT","message":"{\\"name\\":\\"agent\\",\\"ok\\":true}"}'


def sample_frames() -> list[Frame]:
    """A short conversation: both directions, text, binary and a close."""
    return [
        text_frame(0.0, "server", '{"message_type":"CHAT_REQUESTED","message":"What next?"}'),
        text_frame(0.25, "client", CHAT_INPUT),
        text_frame(0.5, "server", EVENT),
        bytes_frame(0.75, "server", "binary", b"\x00\x01\x02\xff"),
        close_frame(1.5, "client", 1000, "bye"),
    ]


def write_recording(
    folder: Path,
    session: str,
    frames: Sequence[Frame] | None = None,
    *,
    ended: bool = True,
    started: float = STARTED,
    client: str | None = "ui",
    endpoint: str = "/ws",
    tail: str = "",
) -> Path:
    """``folder/<session>.jsonl``: a header, ``frames`` (the sample's by default), the end
    line if ``ended``, then ``tail`` as written (half a line, say)."""
    folder.mkdir(parents=True, exist_ok=True)
    header = Header(
        session=session,
        endpoint=endpoint,
        query=f"client_id={client}" if client else "",
        headers={"user-agent": "test", "cookie": "***"},
        upstream="ws://127.0.0.1:8000",
        client=client,
        started=started,
    )
    frames = sample_frames() if frames is None else frames
    lines = [line(header), *(line(frame) for frame in frames)]
    if ended:
        last = frames[-1].t if frames else 0.0
        lines.append(line(End(last, 1000, "bye", "client")))
    path = folder / f"{session}{SUFFIX}"
    path.write_text("".join(lines) + tail, encoding="utf-8")
    return path
