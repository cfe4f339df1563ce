"""Cutting a text into LLM-like tokens for ``stream`` steps.

A token is a word or a piece of a long word (at most :data:`PIECE` letters or digits),
or one punctuation mark, each with the whitespace before it; trailing whitespace is a
token of its own. Joining the tokens gives the text back exactly.
"""

from __future__ import annotations

import re

#: The most letters or digits in one token; LLM tokens average about four characters.
PIECE = 6

_TOKEN = re.compile(rf"\s*(?:\w{{1,{PIECE}}}|[^\w\s])|\s+")


def split_tokens(text: str) -> list[str]:
    """The tokens of ``text``; ``"".join(split_tokens(text)) == text``."""
    return _TOKEN.findall(text)
