"""The recordings folder (``serve --recordings DIR``, default ``./recordings``, where
``replay record`` writes), read for ``GET /recordings`` and the dashboard.

- :meth:`RecordingsFolder.list`: a summary of each recording (its session, endpoint,
  client, upstream, start, frames each way, duration, and whether it ended cleanly or
  was cut short), newest first; a file that cannot be read is listed with its error.
- :meth:`RecordingsFolder.page`: a recording's header and a page of its frames, at most
  :data:`MAX_PAGE` frames and :data:`PAGE_BYTES` of frame data, each frame's data cut at
  :data:`FRAME_BYTES`: a 100,000-frame recording is never sent whole.

Files are read in a thread of their own, never on the event loop, and each file version
is parsed once for its summary (a summary is remembered per size, modification time
and inode); the last :data:`CACHED` recordings paged through are kept parsed.

A recording is named by its session id, which must match :data:`SESSION` (6 to 64
lower-case hex digits), and is the file ``<session>.jsonl`` directly in the folder: a
name is checked against the pattern before it is looked up, never used as a path, so
``..``, slashes and absolute paths are just unknown names. Files whose name is not a
session id are not recordings and are left out. A file that is a symbolic link, not a
regular file, larger than :data:`MAX_FILE_BYTES`, not UTF-8, or not a recording
(:func:`replay.record.format.read_recording`) is unreadable, with a sentence saying why.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import os
import re
import stat
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay.errors import ReplayError
from replay.record.format import SUFFIX, Frame, Recording, RecordingInvalid, read_recording

#: What a recording's name (its session id) may be.
SESSION = re.compile(r"[0-9a-f]{6,64}")
SESSION_RULE = "6 to 64 lower-case hex digits (the session id)"
#: The largest recording file read.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Recordings listed at most (the newest files).
MAX_LISTED = 1000
#: Frames a page holds unless asked for fewer, and at most.
PAGE = 200
MAX_PAGE = 1000
#: Bytes of frame data one page holds at most (a page holds at least one frame).
PAGE_BYTES = 4 * 1024 * 1024
#: Bytes of one frame's data a page shows; the rest is cut (``"truncated": true``).
FRAME_BYTES = 1024 * 1024
#: Recordings kept parsed for paging.
CACHED = 2

#: The thread recordings are read in: one, so that the caches need no lock.
_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replay-recordings")

#: A file's version: size, modification time and inode.
Version = tuple[int, int, int]


class RecordingNotFound(ReplayError):
    """No recording of that name in the folder."""

    def __init__(self, session: str, folder: Path) -> None:
        self.session, self.folder = session, folder
        rule = "" if SESSION.fullmatch(session) else f" (a recording's name is {SESSION_RULE})"
        super().__init__(f"no recording named {session!r} in {str(folder)!r}{rule}")


class RecordingUnreadable(ReplayError):
    """A recording file that cannot be read, and why."""

    def __init__(self, session: str, reason: str) -> None:
        self.session, self.reason = session, reason
        super().__init__(f"recording {session!r} cannot be read: {reason}")


@dataclass(frozen=True)
class _Parsed:
    version: Version
    size: int
    recording: Recording
    #: The header as the API shows it.
    header: dict[str, Any]


class RecordingsFolder:
    """The recordings in one folder (see the module's docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._summaries: dict[str, tuple[Version, dict[str, Any]]] = {}
        self._parsed: OrderedDict[str, _Parsed] = OrderedDict()

    async def list(self) -> dict[str, Any]:
        """:meth:`listing`, read in the folder's thread."""
        return await asyncio.get_running_loop().run_in_executor(_READER, self.listing)

    async def page(self, session: str, offset: int = 0, limit: int = PAGE) -> dict[str, Any]:
        """:meth:`read_page`, read in the folder's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_READER, self.read_page, session, offset, limit)

    async def recording(self, session: str) -> Recording:
        """The recording ``session``, read in the folder's thread; raises
        RecordingNotFound and RecordingUnreadable."""
        loop = asyncio.get_running_loop()
        parsed = await loop.run_in_executor(_READER, self._load, session)
        return parsed.recording

    async def find(self, session: str) -> str:
        """The file name of the recording ``session``, read in the folder's thread; raises
        RecordingNotFound and RecordingUnreadable."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_READER, self._load, session)
        return session + SUFFIX

    def listing(self) -> dict[str, Any]:
        """Every recording's summary, newest first: ``folder``, ``exists``,
        ``recordings`` and ``truncated`` (how many older files were left out)."""
        answer: dict[str, Any] = {"folder": str(self.path), "exists": True, "truncated": 0}
        try:
            with os.scandir(self.path) as entries:
                found = [(e.name, e) for e in entries if _session_of(e.name) is not None]
        except FileNotFoundError:
            return {**answer, "exists": False, "recordings": []}
        except OSError as error:
            return {**answer, "exists": False, "recordings": [], "error": _why(error)}
        modified = {name: _modified(entry) for name, entry in found}
        names = sorted(modified, key=lambda name: modified[name], reverse=True)
        answer["truncated"] = max(0, len(names) - MAX_LISTED)
        summaries = [self._summary(str(_session_of(name))) for name in names[:MAX_LISTED]]
        self._forget({s["session"] for s in summaries})
        # Newest first by when the session started; unreadable files last, newest first.
        summaries.sort(key=lambda s: (s["error"] is None, s["started"] or modified[s["file"]]))
        summaries.reverse()
        return {**answer, "recordings": summaries}

    def read_page(self, session: str, offset: int = 0, limit: int = PAGE) -> dict[str, Any]:
        """A recording's header, end and a page of its frames from ``offset`` (at most
        ``limit``, MAX_PAGE and PAGE_BYTES of data); ``next`` is the offset of the next
        page, or None. Raises RecordingNotFound and RecordingUnreadable."""
        parsed = self._load(session)
        recording = parsed.recording
        frames: list[dict[str, Any]] = []
        spent = 0
        for index in range(offset, min(len(recording.frames), offset + min(limit, MAX_PAGE))):
            shown = _frame(index, recording.frames[index])
            spent += len(shown.get("data") or "")
            if frames and spent > PAGE_BYTES:
                break
            frames.append(shown)
        after = offset + len(frames)
        return {
            **_summary(session, parsed),
            "header": parsed.header,
            "offset": offset,
            "next": after if after < len(recording.frames) else None,
            "frames": frames,
        }

    def _summary(self, session: str) -> dict[str, Any]:
        """A recording's summary, or its error; remembered per version of its file."""
        try:
            version = _version(os.lstat(self.path / (session + SUFFIX)))
        except OSError as error:
            return _unreadable(session, _why(error))
        remembered = self._summaries.get(session)
        if remembered is not None and remembered[0] == version:
            return remembered[1]
        try:
            summary = _summary(session, self._load(session))
        except RecordingUnreadable as error:
            summary = _unreadable(session, error.reason)
        except RecordingNotFound:
            summary = _unreadable(session, "the file went away while the folder was read")
        self._summaries[session] = (version, summary)
        return summary

    def _forget(self, present: set[str]) -> None:
        for gone in self._summaries.keys() - present:
            del self._summaries[gone]

    def _file(self, session: str) -> str:
        if not SESSION.fullmatch(session):
            raise RecordingNotFound(session, self.path)
        name = session + SUFFIX
        try:
            os.lstat(self.path / name)
        except OSError:
            raise RecordingNotFound(session, self.path) from None
        return name

    def _load(self, session: str) -> _Parsed:
        """The recording ``session``, parsed (or as parsed before, if its file has not
        changed since)."""
        name = self._file(session)
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
        flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # POSIX only
        try:
            descriptor = os.open(self.path / name, flags)
        except FileNotFoundError:
            raise RecordingNotFound(session, self.path) from None
        except OSError as error:
            raise RecordingUnreadable(session, _why(error)) from None
        with os.fdopen(descriptor, "rb") as file:
            found = os.fstat(file.fileno())
            _check(session, found)
            cached = self._parsed.get(session)
            if cached is not None and cached.version == _version(found):
                self._parsed.move_to_end(session)
                return cached
            data = file.read(MAX_FILE_BYTES + 1)
        recording = _parse(session, name, data)
        try:
            header = recording.header.to_dict()
        except (ValueError, OverflowError, OSError) as error:  # "started" out of range
            raise RecordingUnreadable(session, f"a bad header ({error})") from None
        parsed = _Parsed(_version(found), len(data), recording, header)
        self._parsed[session] = parsed
        while len(self._parsed) > CACHED:
            self._parsed.popitem(last=False)
        return parsed


def _session_of(file_name: str) -> str | None:
    """The session a file of the folder records, or None if it is not a recording."""
    stem = file_name.removesuffix(SUFFIX)
    return stem if stem != file_name and SESSION.fullmatch(stem) else None


def _modified(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _version(found: os.stat_result) -> Version:
    return (found.st_size, found.st_mtime_ns, found.st_ino)


def _check(session: str, found: os.stat_result) -> None:
    if not stat.S_ISREG(found.st_mode):
        raise RecordingUnreadable(session, "not a regular file")
    if found.st_size > MAX_FILE_BYTES:
        raise RecordingUnreadable(
            session,
            f"the file is too large ({found.st_size / 2**20:.0f} MiB; "
            f"at most {MAX_FILE_BYTES // 2**20} MiB are read)",
        )


def _parse(session: str, name: str, data: bytes) -> Recording:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordingUnreadable(session, f"not UTF-8 text (byte {error.start})") from None
    try:
        # Lines end with "\n" only: a frame's text may hold U+2028 and the like, which
        # str.splitlines() would also cut at.
        return read_recording(text.split("\n"), name)
    except RecordingInvalid as error:
        raise RecordingUnreadable(session, f"line {error.line}: {error.reason}") from None
    except (TypeError, ValueError, KeyError) as error:  # a line of the wrong shape
        raise RecordingUnreadable(session, f"not a recording ({error!r})") from None


def _why(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "a symbolic link (recordings are regular files in the folder)"
    return f"cannot read the file: {error.strerror or error}"


def _unreadable(session: str, reason: str) -> dict[str, Any]:
    return {"session": session, "file": session + SUFFIX, "started": None, "error": reason}


def _summary(session: str, parsed: _Parsed) -> dict[str, Any]:
    recording = parsed.recording
    header, end = recording.header, recording.end
    client = sum(1 for frame in recording.frames if frame.side == "client")
    last = end.t if end is not None else (recording.frames[-1].t if recording.frames else 0.0)
    return {
        "session": session,
        "file": session + SUFFIX,
        "kind": header.kind,
        "endpoint": header.endpoint,
        "query": header.query,
        "client": header.client,
        "upstream": header.upstream,
        "started": header.started,
        "started_iso": parsed.header["started_iso"],
        "client_frames": client,
        "server_frames": len(recording.frames) - client,
        "frame_count": len(recording.frames),
        "duration_s": round(max(0.0, last), 6),
        "ended": end is not None,
        "end": end.to_dict() if end is not None else None,
        "size": parsed.size,
        "error": None,
    }


def _frame(index: int, frame: Frame) -> dict[str, Any]:
    """A frame as a page shows it: its index, offset in ms and size, data cut at
    FRAME_BYTES."""
    shown = frame.to_dict()
    shown["index"] = index
    shown["ms"] = round(frame.t * 1000, 3)
    data = frame.data
    shown["size"] = _size(frame)
    if isinstance(data, str) and len(data) > FRAME_BYTES:
        shown["data"] = data[:FRAME_BYTES]
        shown["truncated"] = True
    return shown


def _size(frame: Frame) -> int:
    """The frame's size in bytes: a text's UTF-8, decoded base64 for the others."""
    data = frame.data
    if not isinstance(data, str):
        return len(str(frame.reason).encode()) + 2 if frame.op == "close" else 0
    if frame.op in ("text", "request", "response"):
        return len(data.encode(errors="surrogatepass"))
    try:
        return len(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return len(data)
