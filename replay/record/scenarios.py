"""Converted scenarios written into a scenarios folder (``replay convert --scenarios``,
and the dashboard's Convert button): every file or none, nothing replaced unless asked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from replay.library import PROTOCOL_FILE
from replay.record.convert import Converted, ConvertError


def write_converted(
    folder: Path, converted: Converted, protocol: str | None = None, force: bool = False
) -> list[Path]:
    """Write ``converted``'s files (and ``protocol``, a ``_protocol.yaml`` text, if
    given) into ``folder``; the paths written, the scenario to play first. Raises
    ConvertError, naming the file, when one exists and ``force`` is false, or when
    the folder cannot be written."""
    files: dict[Path, str] = {
        folder / f"{name}.yaml": text for name, text in converted.files.items()
    }
    if protocol is not None:
        files[folder / PROTOCOL_FILE] = protocol
    _refuse_taken(files, force)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConvertError(f"cannot write into {folder}: {error.strerror or error}") from None
    return list(files)


def _refuse_taken(files: Mapping[Path, str], force: bool) -> None:
    taken = next((path for path in files if path.exists()), None)
    if taken is not None and not force:
        protocol = taken.name == PROTOCOL_FILE
        instead = "convert without --protocol to use it" if protocol else "choose another name"
        raise ConvertError(f"{taken} exists: {instead}, or --force to replace it")
