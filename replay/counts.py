"""Counts in words, for every line replay prints or logs: ``1 frame``, ``2 frames``."""

from __future__ import annotations


def counted(count: int, word: str, many: str | None = None, grouped: bool = False) -> str:
    """``1 frame``, ``2 frames``, ``0 frames`` (``many`` for irregular plurals;
    ``grouped`` writes thousands as ``12,000``)."""
    number = f"{count:,}" if grouped else str(count)
    return f"{number} {word if count == 1 else (many or word + 's')}"
