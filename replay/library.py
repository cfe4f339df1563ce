"""The scenarios folder on disk, re-read on demand so edits take effect on the next trigger.

Each call to :meth:`ScenarioLibrary.catalog` looks at the folder again (one ``stat`` per
file) and re-parses only the files whose size, modification time or inode changed;
:meth:`ScenarioLibrary.current` makes the same check without parsing anything, so that a
caller can skip the reading (and a thread's hand-over) when nothing changed.

Files whose name starts with ``_`` are not scenarios: ``_protocol.yaml`` declares the
project's protocol (see :mod:`replay.protocol.file`); when it changes, every scenario is
checked again.
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from replay.catalog import Catalog
from replay.errors import Problem, ScenarioFolderMissing
from replay.loader import (
    MAX_FILE_BYTES,
    ScenarioFile,
    parse_scenario,
    scenario_name,
    too_large,
    unexpected,
    without_cycle_collection,
)
from replay.protocol.declaration import Protocol
from replay.protocol.file import ProtocolFile, parse_protocol
from replay.protocol.schwarm import SCHWARM

#: Scenario files are the folder's ``*.yaml`` files.
SUFFIX = ".yaml"
#: The project's protocol declaration, beside the scenarios.
PROTOCOL_FILE = "_protocol.yaml"

#: Bytes of scenario files read at once from which what is alive afterwards is frozen out
#: of the cycle collector (``gc.freeze``): see :meth:`ScenarioLibrary.catalog`.
FREEZE_BYTES = 256 * 1024

_Stamp = tuple[int, int, int]


class ScenarioLibrary:
    """The scenario files of one folder."""

    def __init__(self, folder: str | os.PathLike[str], base: Protocol = SCHWARM):
        self.folder = Path(folder)
        #: What a protocol file that extends schwarm builds on, and what a folder without
        #: one speaks.
        self.base = base
        self._files: dict[Path, tuple[_Stamp, ScenarioFile]] = {}
        self._catalog: Catalog | None = None
        self._protocol: tuple[_Stamp, ProtocolFile | None] = ((0, 0, 0), None)
        # The folder as last read and its catalog, replaced as one (see :meth:`current`).
        self._read: tuple[_Stamp, dict[str, _Stamp], Catalog] | None = None

    def catalog(self) -> Catalog:
        """Every scenario in the folder as it is now; raises ScenarioFolderMissing.

        Not thread-safe, and parsing a large changed file takes seconds: a server calls
        it from one worker thread only (see :meth:`replay.server.Replay.catalog`)."""
        if not self.folder.is_dir():
            raise ScenarioFolderMissing(str(self.folder))
        protocol, changed = self._read_protocol()
        try:
            paths = sorted(p for p in self.folder.iterdir() if is_scenario_file(p.name))
        except OSError as error:
            raise ScenarioFolderMissing(str(self.folder), error.strerror or str(error)) from None
        if changed:
            self._files = {}
        changed = changed or set(self._files) != set(paths)
        files: dict[Path, tuple[_Stamp, ScenarioFile]] = {}
        read = 0
        # No cyclic collection while the files are read: a pass would only walk the new
        # models as they grow, and before a freeze, would walk them all once more.
        with without_cycle_collection():
            for path in paths:
                stamp = _stamp(path)
                cached = self._files.get(path)
                if cached is not None and cached[0] == stamp:
                    files[path] = cached
                    continue
                files[path] = (stamp, self._load(path))
                read += stamp[1]
                changed = True
            if read >= FREEZE_BYTES:
                # Long-lived and free of cycles (reference counting frees a file's models
                # when it changes): out of the cycle collector's sight, whose full passes
                # would otherwise walk them all (100 ms for a converted recording, the
                # interpreter held throughout, the event loop too).
                gc.freeze()
        self._files = files
        if changed or self._catalog is None:
            self._catalog = Catalog.resolve((loaded for _, loaded in files.values()), protocol)
        stamps = {path.name: stamp for path, (stamp, _) in files.items()}
        self._read = (self._protocol[0], stamps, self._catalog)
        return self._catalog

    def current(self) -> Catalog | None:
        """The catalog as last read if the folder is exactly as it was then (the same
        scenario files, each with the same modification time, size and inode, and the
        same protocol file), else None: then :meth:`catalog` must read it.

        Parses nothing (one ``stat`` per file), so it may run on the event loop, and it
        is safe beside a :meth:`catalog` running in another thread: what it compares with
        is replaced as one when a read ends."""
        read = self._read
        if read is None:
            return None
        protocol, stamps, catalog = read
        if _stamp(self.folder / PROTOCOL_FILE) != protocol:
            return None
        try:
            with os.scandir(self.folder) as entries:
                now = {e.name: _entry_stamp(e) for e in entries if is_scenario_file(e.name)}
        except OSError:
            return None
        return catalog if now == stamps else None

    @property
    def last(self) -> Catalog | None:
        """The catalog as last read (None before the first read), without reading."""
        return self._catalog

    def versions(self) -> dict[str, tuple[int, int, int]]:
        """Each scenario file's version as last read (modification time, size, inode), by
        name: a change means the file changed on disk."""
        return {scenario_name(shown(path)): stamp for path, (stamp, _) in self._files.items()}

    @property
    def protocol(self) -> Protocol:
        """What the scenarios speak, as last read: the protocol file's, else the base."""
        found = self._protocol[1]
        return found.protocol if found else self.base

    @property
    def protocol_file(self) -> ProtocolFile | None:
        """The protocol file as last read, if the folder has one."""
        return self._protocol[1]

    @property
    def message_types(self) -> Mapping[str, str]:
        """The message types scenarios may use, with their descriptions."""
        return self.protocol.descriptions

    def _read_protocol(self) -> tuple[ProtocolFile | None, bool]:
        """The protocol file as it is now, and whether it changed since last time."""
        path = self.folder / PROTOCOL_FILE
        stamp = _stamp(path)
        if stamp == self._protocol[0]:
            return self._protocol[1], False
        protocol = None
        if stamp != (0, 0, 0):
            source = read_source(path, self.folder)
            if isinstance(source, ScenarioFile):
                protocol = ProtocolFile(str(path), self.base, source.problems)
            else:
                protocol = parse_protocol(source, str(path), self.base)
        self._protocol = (stamp, protocol)
        return protocol, True

    def _load(self, path: Path) -> ScenarioFile:
        source = read_source(path, self.folder)
        if isinstance(source, ScenarioFile):
            return source
        return parse_scenario(source, shown(path), self.protocol)


def shown(path: Path) -> str:
    """``path`` as text that can be printed and sent as JSON: bytes of a file name that
    are not UTF-8 are written as ``\\xNN``."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_source(path: Path, folder: Path | None = None) -> bytes | ScenarioFile:
    """A scenario file's bytes, or a broken ScenarioFile saying why they cannot be had.

    Only regular files are read (a FIFO, a device or a folder named ``x.yaml`` would
    block or mean nothing), at most :data:`MAX_FILE_BYTES`; with ``folder``, a file that
    links outside it is refused. Never raises.
    """
    file = shown(path)
    name = scenario_name(file)
    if file != str(path):
        return _broken(name, file, "the file name is not valid UTF-8: rename the file")
    try:
        if folder is not None:
            # Not strict: a symbolic link loop is reported by open() below, as ELOOP.
            real = Path(os.path.realpath(path))
            if not real.is_relative_to(os.path.realpath(folder)):
                return _broken(name, file, "the file links outside the scenarios folder")
        # Non-blocking, so that opening a FIFO with no writer returns at once.
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            info = os.fstat(handle)
            if not stat.S_ISREG(info.st_mode):
                return _broken(name, file, f"not a regular file ({_kind(info.st_mode)})")
            if info.st_size > MAX_FILE_BYTES:
                return ScenarioFile(name, file, None, (too_large(file, info.st_size),))
            # Never more than the limit plus one byte, even if the file grew since fstat.
            return _read_at_most(handle, MAX_FILE_BYTES + 1)
        finally:
            os.close(handle)
    except OSError as error:
        return unreadable(file, error)
    except Exception as error:
        return ScenarioFile(name, file, None, (unexpected(file, error),))


def _read_at_most(handle: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(handle, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def is_scenario_file(name: str) -> bool:
    """Whether a file of the folder is a scenario: ``*.yaml``, except hidden files
    (editors' lock and swap files) and ``_*`` files (the protocol file)."""
    return name.endswith(SUFFIX) and not name.startswith((".", "_"))


def _entry_stamp(entry: os.DirEntry[str]) -> _Stamp:
    # What _stamp says of the same path: the file a link points to, (0, 0, 0) if none.
    try:
        info = entry.stat()
    except OSError:
        return (0, 0, 0)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def _stamp(path: Path) -> _Stamp:
    try:
        info = path.stat()
    except OSError:
        return (0, 0, 0)
    return (info.st_mtime_ns, info.st_size, info.st_ino)


def unreadable(file: str, error: OSError) -> ScenarioFile:
    """The loaded form of a file that cannot be read."""
    return _broken(scenario_name(file), file, f"cannot read the file: {error.strerror or error}")


def _broken(name: str, file: str, message: str) -> ScenarioFile:
    return ScenarioFile(name, file, None, (Problem(file, 0, 0, "", message),))
