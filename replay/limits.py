"""What one template render may build and do: the limits, the render's :class:`Budget`,
and the sizes of values predicted before they are built.

A render opens a budget with :func:`rendering`; the guarded operations of
:mod:`replay.guards` and :mod:`replay.sandbox` charge it through :func:`current`, and raise
:class:`Refused` at a limit, with a sentence for the user saying which and what to change.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: The longest text a template may render, and the longest value it may build (a list or
#: a mapping counts as its text): anything longer is refused before it is built.
MAX_OUTPUT = 1024 * 1024
#: About how many bytes of values one render may build in all, so that many values just
#: under MAX_OUTPUT cannot add up to gigabytes.
MAX_BUILT = 4 * MAX_OUTPUT
#: The work one render may do, in steps of about a microsecond: a loop item is one, a
#: call three, a KiB of text copied or scanned one (measured: ``bench/template_budget.py``).
MAX_STEPS = 10_000
#: The largest number a template may compute, in bits (2 ** 4096 has 1234 digits).
MAX_INT_BITS = 4096
#: How deep calls may nest: a macro calling a macro, a recursive loop.
MAX_DEPTH = 40

#: Characters of text copied per step.
KIB = 1024
#: Steps per KiB of text searched, compared or converted (find, in, replace, upper):
#: about 3 microseconds a KiB.
SCAN_STEPS = 4
#: Bytes counted per item of a list, tuple or mapping a template builds.
ITEM_BYTES = 16
#: Steps for an object writing itself as text (now.iso takes about 4 microseconds).
OBJECT_STEPS = 4

#: How a value is written, for :func:`text_size`: str(), repr() or json.dumps().
STR, REPR, JSON = 0, 1, 2

_VIEWS: tuple[type[Any], ...] = (type({}.keys()), type({}.values()), type({}.items()))
#: Containers whose text lists their items (mappings aside).
CONTAINERS: tuple[type[Any], ...] = (list, tuple, set, frozenset, *_VIEWS)
#: Values whose reading costs their size: texts, containers, mappings.
SIZED: tuple[type[Any], ...] = (str, Mapping, *CONTAINERS)


class Refused(Exception):
    """A render asked for more than the sandbox allows; ``reason`` is the sentence for
    the user, naming the limit and what to change."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Outside(Exception):
    """A guarded operation ran outside a render. Jinja does, folding constants while it
    compiles: it catches this and leaves the expression to run, and be counted, in renders."""


class Budget:
    """What one render has spent: ``steps`` of work, bytes ``built``, calls nested
    (``depth``). The methods raise :class:`Refused` at a limit."""

    __slots__ = ("built", "depth", "steps")

    def __init__(self) -> None:
        self.steps = 0
        self.built = 0
        self.depth = 0

    def charge(self, steps: int) -> None:
        """Count ``steps`` of work (never fewer: a template can call the filters that
        charge, through map('_charge'))."""
        self.steps += max(steps, 0)
        if self.steps > MAX_STEPS:
            raise Refused(
                f"the template does too much work: more than {MAX_STEPS} loop iterations "
                "or calls (an item of a list read, or a KiB of text, counts as one); loop "
                "over fewer or smaller values"
            )

    def hold(self, size: int) -> None:
        """Count ``size`` bytes of values built (never fewer)."""
        self.built += max(size, 0)
        if self.built > MAX_BUILT:
            raise Refused(
                f"the template builds more than {MAX_BUILT} bytes of values in all; "
                "build fewer or smaller values"
            )

    def make(
        self, chars: int, what: str, *, items: int = 0, wide: bool = False, exact: bool = False
    ) -> None:
        """Before building a value whose text has ``chars`` characters (``exact``: else
        at most that many; ``items`` if it is a container, ``wide`` if it is a text that
        is not ASCII): refuse it if it is too long, else count it."""
        self.fits(chars, what, exact=exact)
        self.hold(items * ITEM_BYTES if items else chars * (4 if wide else 1))
        self.charge(chars // KIB + items // 64)

    def fits(self, chars: int, what: str, *, exact: bool = False) -> None:
        """Refuse a value whose text would have ``chars`` characters (``exact``: else at
        most that many) if that is too long."""
        if chars > MAX_OUTPUT:
            made = f"would make {amount(chars)}" if exact else "could make more than that"
            raise Refused(
                f"it renders more than {MAX_OUTPUT} characters: {what} {made}; "
                "make the text shorter"
            )


_current: ContextVar[Budget | None] = ContextVar("replay_template_budget", default=None)


@contextmanager
def rendering() -> Iterator[Budget]:
    """The budget of the render in progress. A render that starts here gets a new one;
    one nested in another (the templates of one step's ``data``) shares it."""
    budget = _current.get()
    if budget is not None:
        yield budget
        return
    budget = Budget()
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


@contextmanager
def compiling() -> Iterator[None]:
    """No budget while a template compiles, even inside a render: Jinja folds constant
    expressions then, and a guarded one must not fold (``_charge(8)`` would become
    ``None``, charged once instead of each time the loop body runs)."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Budget:
    """The budget of the render in progress; raises :class:`Outside` if there is none."""
    budget = _current.get()
    if budget is None:
        raise Outside("no template render in progress")
    return budget


def amount(number: int) -> str:
    """A count for a message (a huge one would itself be too long to write)."""
    return f"{number:,}" if number < 10**18 else "more than 10^18"


def charged(iterable: Iterable[Any], steps: int = 1) -> Iterator[Any]:
    """``iterable``, charging ``steps`` to the render's budget for each item."""
    budget = current()
    for item in iterable:
        budget.charge(steps)
        yield item


# --- sizes ----------------------------------------------------------------------------------


def text_size(
    value: Any,
    limit: int = MAX_OUTPUT,
    mode: int = STR,
    *,
    indent: tuple[int, int] = (0, 0),
    default: Callable[[Any], Any] | None = None,
) -> int:
    """About how long ``value`` is as text, never less: written by str() (the items of a
    container by repr()), repr() or JSON (``mode``; ``default`` converts what JSON has no
    type for). Counting stops just past ``limit``. ``indent`` adds, per item, a width plus
    one per level of nesting (pretty printers). Charges a step per item looked at."""
    budget = current()
    per_item, per_level = indent
    inner = JSON if mode == JSON else REPR
    total = looked = 0
    # Iterators on the stack, not items: a long list is read only as far as needed.
    stack: list[tuple[Iterator[Any], int]] = [(iter((value,)), 0)]
    while stack and total <= limit:
        children, depth = stack[-1]
        item = next(children, _END)
        if item is _END:
            stack.pop()
            continue
        looked += 1
        if looked % 64 == 0:
            budget.charge(64)
        if depth:
            total += per_item + per_level * depth
        size, content = _size_of(item, inner if depth else mode, limit - total, default)
        if isinstance(item, int) and size > 150:
            budget.charge(int_text_steps(item))
        total += size
        if content is not None:
            stack.append((content, depth + 1))
    budget.charge(looked % 64)
    return total


_END = object()


def _size_of(
    item: Any, how: int, room: int, default: Callable[[Any], Any] | None
) -> tuple[int, Iterator[Any] | None]:
    """An item's own size as text, and an iterator over what it contains, if anything."""
    if isinstance(item, str):
        return (len(item) if how == STR else quoted_size(item, how, room)), None
    if item is None or isinstance(item, bool):
        return 5, None
    if isinstance(item, int):
        return digits(item), None
    if isinstance(item, float | complex):
        return 50, None
    if isinstance(item, Mapping):
        return 2 + 4 * len(item), itertools.chain.from_iterable(item.items())
    if isinstance(item, CONTAINERS):
        # 16: the brackets, and a type name (a named tuple's, dict_values(...)).
        return 16 + 2 * len(item), iter(item)
    if how == JSON and default is not None:
        return 0, iter((default(item),))
    # An object that writes itself (now, a macro, a loop): short, but not free.
    current().charge(OBJECT_STEPS)
    return len(str(item) if how == STR else repr(item)), None


def quoted_size(text: str, how: int, room: int) -> int:
    """How long ``text`` is inside repr() or JSON (``how``), never less: a quick bound, or
    an exact count when the bound does not fit in ``room`` (counting scans the text)."""
    length = len(text)
    wide = not text.isascii()
    # JSON: \uXXXX, surrogate pairs, \u003c for <; repr: \U0001XXXX, \x00.
    per_char = (12 if wide else 6) if how == JSON else (10 if wide else 4)
    rough = per_char * length + 2
    if rough <= room or length < 256:
        return rough
    current().charge(SCAN_STEPS * (length // KIB))
    if not text.isprintable() or (how == JSON and wide):
        return rough
    if how == REPR:
        return length + 2 + text.count("\\") + text.count("'")
    escaped = sum(text.count(char) for char in "<>&'")
    return length + 2 + text.count('"') + text.count("\\") + 5 * escaped


def int_text_steps(number: int) -> int:
    """Steps for writing a big number in decimal (Python takes time quadratic in its size:
    20 microseconds for 4096 bits)."""
    return (number.bit_length() // 512) ** 2


def digits(number: int) -> int:
    """How many characters ``number`` has in decimal, sign included, never less."""
    return abs(number).bit_length() * 30103 // 100000 + 2


def text(value: Any, what: str) -> str:
    """``str(value)``, refused before it is built if it would be too long."""
    if type(value) is str:
        return value
    if value is None or isinstance(value, bool | float) or type(value) is int:
        current().charge(int_text_steps(value) if type(value) is int else 0)
        return str(value)  # short: a float, or a number Python agrees to write
    if isinstance(value, SIZED):
        size = text_size(value)
        current().make(size, what)
        return str(value)
    # An object that writes itself (now, a macro, a loop): written once, then checked.
    current().charge(OBJECT_STEPS)
    written = str(value)
    current().make(len(written), what)
    return written


def texts(values: Iterable[Any], what: str, separator: str = "") -> str:
    """``separator.join(str(value) for value in values)``, refused before anything is
    built if the result would be too long."""
    values = list(values)
    total = len(separator) * max(len(values) - 1, 0)
    exact = all(type(value) is str for value in values)
    if exact:
        total += sum(map(len, values))
    for value in () if exact else values:
        total += text_size(value, MAX_OUTPUT - total)
        if total > MAX_OUTPUT:
            break
    current().make(total, what, exact=exact)
    return separator.join(value if type(value) is str else str(value) for value in values)


def touch(value: Any) -> int:
    """Steps for reading all of ``value`` at C speed: comparing, hashing, searching it."""
    if isinstance(value, str):
        return SCAN_STEPS * (len(value) // KIB)
    if isinstance(value, int):
        return value.bit_length() // 4096
    if isinstance(value, (Mapping, *CONTAINERS)):
        return SCAN_STEPS * (text_size(value, 64 * MAX_OUTPUT, REPR) // KIB)
    return 0


def line_count(text: str) -> int:
    """How many lines str.splitlines() makes of ``text``, never less."""
    return 1 + sum(text.count(end) for end in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


# --- formatting ---------------------------------------------------------------------------------

_ASCII_DIGITS = re.compile(r"[0-9]*")
_NO_VALUE = object()


def printf_size(form: str, values: Any) -> int:
    """How long ``form % values`` is, never less, reading ``form`` the way Python does.
    Stops where Python would refuse the form (it refuses before building more)."""
    current().charge(form.count("%") + len(form) // KIB)
    # Python's rule: %(key)s reads any mapping but a tuple or a text.
    mapping = hasattr(values, "__getitem__") and not isinstance(values, tuple | str)
    keyed = values if mapping else None
    positional = iter(values if isinstance(values, tuple) else (values,))
    total = end = len(form)
    at = form.find("%")
    while 0 <= at < end - 1:
        value, at = _printf_key(form, at + 1, keyed)
        if at < 0:
            return total
        while at < end and form[at] in "-+ #0":
            at += 1
        width, at = _printf_number(form, at, positional)
        precision = None
        if at < end and form[at] == ".":
            precision, at = _printf_number(form, at + 1, positional)
        if at < end and form[at] in "hlL":
            at += 1
        if at >= end:
            return total
        if form[at] != "%":
            if value is _NO_VALUE:
                value = next(positional, _NO_VALUE)
            if value is _NO_VALUE:
                return total
            total += max(abs(width), _converted_size(form[at], value, precision)) + 2
        at = form.find("%", at + 1)
    return total


def _printf_key(form: str, at: int, keyed: Any) -> tuple[Any, int]:
    """The value a ``%(key)`` at ``at`` names, and where its spec goes on (-1: Python
    refuses it)."""
    if form[at] != "(":
        return _NO_VALUE, at
    if keyed is None:
        return _NO_VALUE, -1
    depth, close = 1, at + 1
    while close < len(form) and depth:
        depth += {"(": 1, ")": -1}.get(form[close], 0)
        close += 1
    if depth:
        return _NO_VALUE, -1
    return keyed[form[at + 1 : close - 1]], close


def _printf_number(form: str, at: int, positional: Iterator[Any]) -> tuple[int, int]:
    if at < len(form) and form[at] == "*":
        value = next(positional, None)
        if not isinstance(value, int):
            raise TypeError("* wants int")
        return int(value), at + 1
    match = _ASCII_DIGITS.match(form, at)
    assert match is not None  # [0-9]* always matches
    return int(match.group() or 0), match.end()


def _converted_size(conversion: str, value: Any, precision: int | None) -> int:
    if conversion in "sra":
        size = text_size(value, MAX_OUTPUT, STR if conversion == "s" else REPR)
        if conversion == "a":
            size *= 10  # ascii() may write a character as \U0001XXXX
        return size if precision is None else min(size, max(precision, 0))
    if conversion == "c":
        return 1
    if conversion in "eEfFgG":
        return 320 + (6 if precision is None else max(precision, 0))
    number = abs(value).bit_length() // 3 + 4 if isinstance(value, int) else 320
    return max(number, precision or 0) + 4


_FORMAT_SPEC = re.compile(
    r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>[0-9]*)[,_]?(?:\.(?P<precision>[0-9]+))?"
    r"(?P<type>[bcdeEfFgGnosxX%])?",
    re.DOTALL,
)


def field_size(value: Any, spec: str) -> int:
    """How long ``format(value, spec)`` is (a ``str.format`` field), never less."""
    if not spec:
        return text_size(value)
    match = _FORMAT_SPEC.fullmatch(spec)
    if match is None:
        raise Refused(f"the format {spec!r} is not one templates can use")
    width = int(match["width"] or 0)
    precision = None if match["precision"] is None else int(match["precision"])
    if isinstance(value, str):
        content = len(value) if precision is None else min(len(value), precision)
    elif isinstance(value, int) and (match["type"] or "d") not in "eEfFgG%":
        content = 2 * value.bit_length() + 8  # binary, a separator every 4 digits
    elif isinstance(value, int | float | complex):
        content = 2 * (440 + (precision or 6))  # 308 digits, separators; twice if complex
    else:
        content = text_size(value)
    # Zero-padding with separators may pass the width: format(0, '08_') is '0_000_000'.
    return max(width, content) + width // 3 + 1
