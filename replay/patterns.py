r"""Client-frame patterns: the regular expressions of ``match`` and ``fields``, run by RE2.

These patterns are searched in text that clients send, so they run on RE2 (the
``google-re2`` package), whose time grows linearly with the text: no text can make a
search backtrack exponentially, as Python's ``re`` does with ``^(\w+\s?)+$``. This module
is the only one that knows about RE2.

What a pattern means, for whoever writes one:

- It is searched like ``re.search``: anywhere in the text unless anchored.
- ``$`` (without ``(?m)``) matches at the end of the text or before a newline that ends
  it, as in Python; ``\z`` matches only at the very end.
- ``\w``, ``\d``, ``\s`` and ``\b`` are ASCII-only, as with Python's ``re.ASCII``
  (and ``\s`` does not match the vertical tab ``\v``). ``\pL`` is any letter, ``\pN``
  any number, ``[\pL\pN_]`` what Python's ``\w`` matches in other scripts.
- RE2 refuses what needs backtracking (backreferences, lookaround, atomic groups,
  possessive quantifiers, conditional groups), and replay refuses ``{,n}``, which RE2
  would read as text where Python reads ``{0,n}``.

Bounds: a compiled pattern uses at most :data:`MAX_MEMORY`, is at most
:data:`MAX_PROGRAM` RE2 instructions, and is searched in at most
``MAX_WORK // size`` bytes of text (see :attr:`ClientPattern.longest_text`).
"""

from __future__ import annotations

import functools
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import re2

from replay.errors import PatternRefused

log = logging.getLogger("replay.match")

#: Memory RE2 may use for one pattern: its program and the caches of its DFAs.
MAX_MEMORY = 2 * 1024 * 1024
#: The most RE2 instructions a pattern may compile to. Ordinary patterns are 5 to 50;
#: a Unicode class such as ``\pL`` is about 1,200.
MAX_PROGRAM = 5_000
#: Instructions times bytes of text one search may cost. When RE2's fast automaton
#: gives up (patterns like ``(a|b)*a(a|b){30}c`` on adversarial text), each byte costs
#: about 5 ns per instruction: this bounds a search to about 45 ms even then (the event
#: loop's bound is 50 ms), while an ordinary pattern (about 10 instructions) is searched
#: in frames up to about 800 KB.
MAX_WORK = 1 << 23

#: What a pattern must be (for problems).
EXPECTED = "a regular expression (RE2 syntax)"
NO_BACKTRACKING = (
    "a regular expression without backreferences, lookaround, atomic groups or "
    "possessive quantifiers (RE2 syntax)"
)


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.log_errors = False  # refusals are reported as problems, not on stderr
    options.never_capture = True  # only whether it matches is asked: no groups to track
    return options


_OPTIONS = _options()


@dataclass(eq=False)
class ClientPattern:
    """A pattern compiled by :func:`compile_pattern`; :meth:`search` it in client text."""

    pattern: str
    size: int  # RE2 instructions
    _regexp: Any
    #: Python's $ also matches before a final newline, RE2's only at the very end: a text
    #: ending in a newline is searched again without it (not when the pattern says \z,
    #: which must not match there).
    _dollar: bool
    _warned: bool = False

    @property
    def longest_text(self) -> int:
        """The longest text, in UTF-8 bytes, this pattern is searched in; a longer text
        does not match (and a warning is logged, once per pattern)."""
        return MAX_WORK // max(self.size, 1)

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in ``text``."""
        # A client's JSON may hold lone surrogates ("\ud800"): passed through as bytes,
        # where . and [^a] match them as Python's re would.
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > self.longest_text:
            self._too_long(len(data))
            return False
        if self._regexp.search(data) is not None:
            return True
        return self._dollar and data.endswith(b"\n") and self._regexp.search(data[:-1]) is not None

    def _too_long(self, size: int) -> None:
        if not self._warned:
            self._warned = True
            log.warning(
                "pattern %r (%d RE2 instructions) is searched in at most %d bytes of text; "
                "a text of %d bytes did not match (a smaller pattern is searched in more)",
                self.pattern,
                self.size,
                self.longest_text,
                size,
            )


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str) -> ClientPattern:
    """The pattern, compiled once (later calls with the same text return the same object).

    Raises :class:`~replay.errors.PatternRefused`, whose ``reason`` says what to write
    instead, for what RE2 cannot run and for patterns over the bounds.
    """
    _refuse_empty_minimum(pattern)
    try:
        regexp = re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        raise _refusal(pattern, error) from None
    except UnicodeEncodeError as error:
        half = error.object[error.start]
        reason = f"not a regular expression: it holds {half!r}, half of a surrogate pair"
        raise PatternRefused(pattern, reason, EXPECTED) from None
    size = regexp.programsize
    if size > MAX_PROGRAM:
        raise _too_large(pattern, f"{size} instructions")
    tokens = {token for _, token in _tokens(pattern)}
    return ClientPattern(pattern, size, regexp, "$" in tokens and "\\z" not in tokens)


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text`` (see the module's notes)."""
    return compile_pattern(pattern).search(text)


def _tokens(pattern: str) -> Iterator[tuple[int, str]]:
    """``(index, token)``: each escape (``\\x``) as one token, each other character alone."""
    index = 0
    while index < len(pattern):
        size = 2 if pattern[index] == "\\" else 1
        yield index, pattern[index : index + size]
        index += size


_EMPTY_MINIMUM = re.compile(r"\{,\d*\}")


def _refuse_empty_minimum(pattern: str) -> None:
    # RE2 reads a{,3} as the text "a{,3}"; Python reads it as a{0,3}. Either reading
    # would surprise someone, so neither is taken.
    for index, token in _tokens(pattern):
        found = _EMPTY_MINIMUM.match(pattern, index) if token == "{" else None
        if found:
            written = found.group()
            raise PatternRefused(
                pattern,
                f"RE2 reads {written} as the text {written!r}, not as a repetition: write "
                f"{{0,{written[2:]} to repeat, or \\{written} for the text",
                EXPECTED,
            )


#: Groups RE2 refuses because running them needs backtracking.
_BACKTRACKING_GROUPS = {
    "(?=": "lookahead",
    "(?!": "negative lookahead",
    "(?<=": "lookbehind",
    "(?<!": "negative lookbehind",
    "(?>": "atomic group",
    "(?(": "conditional group",
    "(?P": "named backreference",
}

_NOT_IN_RE2 = {
    "\\Z": "RE2 has no \\Z: write \\z for the very end of the text, or $, which also "
    "matches before a final newline",
    "\\u": "RE2 has no \\u escapes: write \\x{00e9} (any number of hex digits) or the "
    "character itself",
    "\\U": "RE2 has no \\U escapes: write \\x{1F600} (any number of hex digits) or the "
    "character itself",
    "\\N": "RE2 has no \\N{...} escapes: write \\x{...} with the code point, or the "
    "character itself",
    "\\b": "RE2 has no \\b (backspace) inside [...]: write \\x08",
    "(?#": "RE2 has no (?#...) comments: remove them",
}

_FLAGS = {
    "x": "RE2 has no verbose mode (?x): remove it, with the spaces and comments it allowed",
    "a": "RE2 has no (?a) flag: remove it; \\w, \\d, \\s and \\b are ASCII-only already",
    "u": "RE2 has no (?u) flag: remove it; \\w, \\d, \\s and \\b are ASCII-only, "
    "and \\pL matches a letter of any script",
    "L": "RE2 has no (?L) flag: remove it",
}


def _refusal(pattern: str, error: Exception) -> PatternRefused:
    """The problem with a pattern RE2 refused, told from RE2's message ("kind: text")."""
    message = error.args[0] if error.args else ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    kind, _, what = str(message).partition(": ")
    feature = _backtracking(kind, what)
    if feature:
        shown = "(?P=" if what == "(?P" else what  # (?P<name> is fine: what is left is (?P=
        return PatternRefused(
            pattern,
            f"this pattern needs backtracking ({feature} '{shown}'), which replay refuses "
            "because client text could make it run for minutes",
            NO_BACKTRACKING,
        )
    if kind == "invalid repetition size" and not _backwards(what):
        return PatternRefused(
            pattern,
            f"this pattern repeats too much ({what}): RE2 allows at most 1000 repetitions, "
            "nested ones multiplied",
            "repetition counts up to 1000, e.g. a{1000} or (a{10}){100}",
        )
    if kind.startswith("pattern too large"):
        return _too_large(pattern, f"more than fits in {MAX_MEMORY // 1024} KiB")
    hint = _NOT_IN_RE2.get(what)
    if hint is None and kind == "invalid perl operator" and what.startswith("(?"):
        hint = _FLAGS.get(what[-1:])
    if hint:
        return PatternRefused(pattern, hint, EXPECTED)
    reason = _syntax_error(pattern, kind, what)
    return PatternRefused(pattern, f"not a regular expression: {reason}", EXPECTED)


def _syntax_error(pattern: str, kind: str, what: str) -> str:
    """Python's reason when Python refuses the pattern too (it says where), else RE2's."""
    if kind != "invalid character class range":  # as for \pX: Python has no \p at all
        try:
            with warnings.catch_warnings():  # such as "possible nested set"
                warnings.simplefilter("ignore")
                re.compile(pattern)
        except re.error as error:
            return str(error)
        except (RecursionError, OverflowError):  # nested too deeply, or counts too large
            pass
    shown = what if len(what) <= 40 else what[:37] + "..."
    return f"{kind} ('{shown}')" if shown else kind


def _backtracking(kind: str, what: str) -> str | None:
    """The backtracking feature RE2's message names, or None when it names none."""
    if kind == "invalid escape sequence" and (what[1:2].isdigit() or what == "\\k"):
        return "backreference"
    if kind == "invalid perl operator":
        return _BACKTRACKING_GROUPS.get(what)
    if kind == "bad repetition operator" and len(what) >= 2 and what.endswith("+"):
        return "possessive quantifier"
    return None


_REPETITION = re.compile(r"\{(\d+),(\d+)\}")


def _backwards(repetition: str) -> bool:
    """Whether a repetition such as {2,1} asks for more at least than at most (RE2 names
    that, too, an invalid repetition size)."""
    found = _REPETITION.fullmatch(repetition)
    return found is not None and int(found.group(1)) > int(found.group(2))


def _too_large(pattern: str, found: str) -> PatternRefused:
    return PatternRefused(
        pattern,
        "this pattern is too large to search client text quickly",
        f"at most {MAX_PROGRAM} RE2 instructions (a Unicode class such as \\pL is about "
        "1,200: use fewer of them, or repeat them less)",
        found,
    )
