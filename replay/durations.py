"""Durations as scenario files write them: ``0.5``, ``"500ms"``, ``"2s"``, ``"1.5m"``.

A number without a unit is seconds, but only up to :data:`MAX_BARE_SECONDS`: the usual
slip is ``delay: 500`` meant as milliseconds, which would pause for 8 min 20 s. Above that
a duration needs its unit (``500ms``, ``500s``, ``2m``), so a slip is an error that says
both readings instead of a run that looks hung.
"""

from __future__ import annotations

import math
import re

#: The longest single pause a scenario may ask for. A longer one is almost always a typo
#: and would make a run look hung.
MAX_SECONDS = 3600.0
#: The largest duration that may be written without a unit. ``delay: 500`` is almost
#: always 500 ms: a bare number above this is refused, and the error says how to write
#: either reading (``500ms``, ``500s``).
MAX_BARE_SECONDS = 60.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
# Matched on the stripped text: "\s*" at both ends made long runs of spaces quadratic.
_PATTERN = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?$")
#: Longer strings are not durations (and are never searched).
_LONGEST = 64

EXPECTED = (
    f"seconds as a number up to {MAX_BARE_SECONDS:g} (0.5, 30) or a string with a unit "
    '("500ms", "90s", "2m")'
)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string with a unit.

    Raises ``ValueError`` for anything else: booleans, negative or non-finite numbers,
    unknown units, a number without a unit over :data:`MAX_BARE_SECONDS` (the message says
    how to write it as milliseconds or as seconds), and pauses over :data:`MAX_SECONDS`.
    """
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    unit: str | None = None
    if isinstance(value, int | float):
        seconds = float(value)
        written = _number_text(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value.strip()) if len(value) <= _LONGEST else None
        if not match:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise ValueError(f"{shown!r} is not a duration")
        unit = match.group(2)
        written = match.group(1)
        seconds = float(written) * _UNITS[unit or "s"]
    else:
        raise ValueError("not a duration")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be zero or more seconds")
    if unit is None and MAX_BARE_SECONDS < seconds <= MAX_SECONDS * 1000:
        raise ValueError(_bare(written, seconds))
    if seconds > MAX_SECONDS:
        raise ValueError(
            f"{value!r} is longer than the limit of {MAX_SECONDS:g} s ({spoken(MAX_SECONDS)}) "
            "for one pause"
        )
    return seconds


def _bare(written: str, seconds: float) -> str:
    """Why a number without a unit over MAX_BARE_SECONDS is refused, and what to write."""
    if seconds > MAX_SECONDS:
        return (
            f"{written} is read as seconds ({spoken(seconds)}), over the limit of "
            f"{spoken(MAX_SECONDS)} for one pause; write {written}ms for milliseconds"
        )
    return (
        f"{written} is read as seconds ({spoken(seconds)}); write {written}ms for "
        f"milliseconds or {written}s to mean seconds"
    )


def _number_text(value: int | float) -> str:
    """A number as a user wrote it: ``500``, ``1.5`` (never ``500.0``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def spoken(seconds: float) -> str:
    """``500`` -> ``"8 min 20 s"``, ``3600`` -> ``"1 h"``, ``0.25`` -> ``"250 ms"``."""
    if 0 < seconds < 1:
        return f"{seconds * 1000:g} ms"
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    parts = [f"{hours:g} h"] if hours else []
    parts += [f"{minutes:g} min"] if minutes else []
    parts += [f"{round(rest, 3):g} s"] if round(rest, 3) else []
    return " ".join(parts) or "0 s"


def format_seconds(seconds: float) -> str:
    """``2`` -> ``"2s"``, ``0.25`` -> ``"250ms"``: under a second in milliseconds."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
