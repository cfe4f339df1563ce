"""Durations as scenario files write them: ``0.5``, ``"500ms"``, ``"2s"``, ``"1.5m"``."""

from __future__ import annotations

import math
import re

#: The longest single pause a scenario may ask for. A longer one is almost always a typo
#: (``500`` meant as milliseconds) and would make a run look hung.
MAX_SECONDS = 3600.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
# Matched on the stripped text: "\s*" at both ends made long runs of spaces quadratic.
_PATTERN = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m)?$")
#: Longer strings are not durations (and are never searched).
_LONGEST = 64

EXPECTED = 'seconds as a number (0.5) or a string with a unit ("500ms", "2s", "1m")'


def parse_duration(value: object) -> float:
    """Seconds from a number or a string with a unit.

    Raises ``ValueError`` for anything else: booleans, negative or non-finite numbers,
    unknown units, and pauses over :data:`MAX_SECONDS`.
    """
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value.strip()) if len(value) <= _LONGEST else None
        if not match:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise ValueError(f"{shown!r} is not a duration")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError("not a duration")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be zero or more seconds")
    if seconds > MAX_SECONDS:
        raise ValueError(
            f"{value!r} is longer than the limit of {MAX_SECONDS:g} s for one pause "
            "(write milliseconds with a unit: '500ms')"
        )
    return seconds


def format_seconds(seconds: float) -> str:
    """``2`` -> ``"2s"``, ``0.25`` -> ``"250ms"``: under a second in milliseconds."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
