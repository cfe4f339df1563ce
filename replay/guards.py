"""Guarded versions of everything a template can call or apply: operators, comparisons,
``str.format`` and the methods of the values templates see (Jinja's filters and tests:
:mod:`replay.filters`).

Each predicts the size of what it builds and the work it does from its arguments *before*
doing it (:mod:`replay.limits`), charges the render's budget, and then does what Jinja
would. Whatever is not listed here is refused: a method that is not in :data:`METHODS`,
a filter or test Jinja adds in a later version.
"""

from __future__ import annotations

import math
import operator
import types
from collections.abc import Callable, Mapping
from functools import partial, update_wrapper
from typing import Any

from jinja2.sandbox import SandboxedFormatter

from replay.limits import (
    MAX_INT_BITS,
    MAX_OUTPUT,
    MAX_STEPS,
    REPR,
    SIZED,
    Refused,
    charged,
    current,
    field_size,
    line_count,
    printf_size,
    text_size,
    touch,
)

#: Steps for a sort, per item: a key per item in Python, comparisons at C speed.
SORT_STEPS = 2
#: Steps per item pprint writes, and per word urlize looks at (both are Python).
SLOW_STEPS = 4
#: Steps per KiB a regular expression reads (a character class: 20 microseconds a KiB).
REGEX_STEPS = 24

# --- operators --------------------------------------------------------------------------------

BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


def check_number(bits: int, what: str) -> None:
    if bits > MAX_INT_BITS:
        raise Refused(
            f"{what} would make a number of more than {MAX_INT_BITS} bits; "
            "templates compute with smaller numbers"
        )


def binop(symbol: str, left: Any, right: Any) -> Any:
    """``left symbol right``, refused before it is computed if the result would be too
    large: a text, a list, a number."""
    budget = current()
    budget.charge(1)
    what = repr(symbol)
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length(), right.bit_length()
        if symbol in "+-":
            check_number(max(bits) + 1, what)
        elif symbol == "*":
            check_number(sum(bits), what)
        elif symbol == "**" and right >= 0 and abs(left) >= 2:
            # exponent * log2(base) bits; a huge exponent would overflow the float.
            check_number(
                MAX_INT_BITS + 1
                if right > MAX_INT_BITS
                else math.ceil(right * math.log2(abs(left))),
                what,
            )
        # Multiplying and dividing big numbers costs the product of their sizes.
        budget.charge(bits[0] * bits[1] >> 19)
    elif symbol == "*":
        _check_repeat(left, right, what)
    elif symbol == "+":
        _check_add(left, right, what)
    elif symbol == "%" and isinstance(left, str):
        budget.make(printf_size(left, right), what, wide=not left.isascii())
    return BINOPS[symbol](left, right)


def _check_repeat(left: Any, right: Any, what: str) -> None:
    sequence, count = (left, right) if isinstance(right, int) else (right, left)
    if not isinstance(count, int) or not isinstance(sequence, str | list | tuple):
        return  # numbers, or a TypeError to come
    times = max(int(count), 0)
    if isinstance(sequence, str):
        current().make(len(sequence) * times, what, wide=not sequence.isascii(), exact=True)
    elif sequence:
        once = text_size(sequence) - 16  # the brackets are written once, not per copy
        current().make(once * times + 16, what, items=len(sequence) * times)


def _check_add(left: Any, right: Any, what: str) -> None:
    if isinstance(left, str) and isinstance(right, str):
        wide = not (left.isascii() and right.isascii())
        current().make(len(left) + len(right), what, wide=wide, exact=True)
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        size = text_size(left) + text_size(right)
        current().make(size, what, items=len(left) + len(right))


def unop(symbol: str, value: Any) -> Any:
    """``-value`` or ``+value``."""
    current().charge(1)
    return operator.neg(value) if symbol == "-" else operator.pos(value)


COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


def compare(left: Any, *chain: Any) -> bool:
    """``left op1 right1 op2 right2 ...`` (Jinja's names for the operators), charging the
    reading of the operands: comparing or searching big values costs their size."""
    budget = current()
    for index in range(0, len(chain), 2):
        name, right = chain[index], chain[index + 1]
        budget.charge(1 + compare_cost(name, left, right))
        if not COMPARISONS[name](left, right):
            return False
        left = right
    return True


#: Containers that find an item by its hash, not by reading them all.
_HASHED: tuple[type[Any], ...] = (Mapping, set, frozenset, type({}.keys()), type({}.items()))


def compare_cost(name: str, left: Any, right: Any) -> int:
    """Steps for comparing ``left`` with ``right``, or looking for ``left`` in ``right``."""
    if name in ("in", "notin"):
        if isinstance(right, _HASHED):
            return touch(left)
        if isinstance(right, range):  # computed for a number, else read item by item
            return 0 if type(left) in (int, bool) else len(right) // 16
        return touch(left) + touch(right)
    # Comparing stops at the end of the shorter one.
    return touch(min(left, right, key=lambda value: len(value) if isinstance(value, SIZED) else 0))


# --- str.format ---------------------------------------------------------------------------------


class _Formatter(SandboxedFormatter):
    """Jinja's sandboxed ``str.format``, refusing a result that would be too long before
    building it, field by field."""

    total = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        budget = current()
        budget.charge(1 + format_string.count("{") + touch(format_string))
        budget.make(len(format_string), "str.format()", wide=not format_string.isascii())
        self.total = len(format_string)  # its text, copied; then the fields
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion in ("r", "a"):
            size = text_size(value, MAX_OUTPUT, REPR) * (10 if conversion == "a" else 1)
            current().make(size, f"'!{conversion}'")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        size = field_size(value, format_spec)
        self.total += size
        current().fits(self.total, "str.format()")
        current().make(size, "str.format()")
        return super().format_field(value, format_spec)


def guarded_format(method: Any, environment: Any) -> Callable[..., str] | None:
    """For a text's ``format`` or ``format_map`` method, the function templates call
    instead (see ``SandboxedEnvironment.wrap_str_format``); else None."""
    name = getattr(method, "__name__", None)
    receiver = getattr(method, "__self__", None)
    if name not in ("format", "format_map") or not isinstance(receiver, str):
        return None

    def wrapper(*args: Any, **kwargs: Any) -> str:
        if name == "format_map":
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            return str(_Formatter(environment).vformat(receiver, (), args[0]))
        return str(_Formatter(environment).vformat(receiver, args, kwargs))

    return update_wrapper(wrapper, method)


# --- methods ------------------------------------------------------------------------------------

#: A method's guard: given the method (bound), its receiver and its arguments, it checks
#: and charges what the call will build and do, then calls it.
Guard = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


def call_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call a built-in method (``'ab'.upper``, or ``dict.items`` given its receiver)
    through its guard in :data:`METHODS`; a method without one is refused."""
    if isinstance(method, types.MethodDescriptorType):  # unbound: dict.items(x)
        if not args or not isinstance(args[0], method.__objclass__):
            raise TypeError(f"{method.__qualname__}() needs a {method.__objclass__.__name__}")
        receiver, args = args[0], args[1:]
        method = partial(method, receiver)
        name = method.func.__name__
    else:
        receiver, name = getattr(method, "__self__", None), method.__name__
    if receiver is None or isinstance(receiver, types.ModuleType):
        raise Refused(f"{name}() is not available in templates")
    kind = receiver if isinstance(receiver, type) else type(receiver)
    for family, guards in METHODS.items():
        if issubclass(kind, family) and name in guards:
            return guards[name](method, receiver, args, kwargs)
    raise Refused(f"{kind.__name__}.{name}() is not available in templates")


def _scan(method: Callable[..., Any], receiver: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
    """A method that reads its receiver and arguments, and makes something small."""
    current().charge(touch(receiver) + sum(map(touch, args)))
    return method(*args, **kwargs)


def _lookup(method: Callable[..., Any], receiver: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
    """A method that hashes its arguments (dict.get)."""
    current().charge(sum(map(touch, args)))
    return method(*args, **kwargs)


def _one(method: Callable[..., Any], receiver: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
    """A method that takes about as long whatever its receiver."""
    return method(*args, **kwargs)


def _range_scan(
    method: Callable[..., Any], receiver: range, args: tuple[Any, ...], kwargs: Any
) -> Any:
    # Looking for anything but a number goes over the whole range.
    if not all(isinstance(arg, int) for arg in args):
        current().charge(len(receiver) // 16)
    return method(*args, **kwargs)


def _shrink(method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    """A text method whose result is no longer than the text (strip, partition)."""
    current().charge(strip_steps(receiver, *args) + sum(map(touch, args)))
    current().make(len(receiver), f"str.{method.__name__}()", wide=not receiver.isascii())
    return method(*args, **kwargs)


def strip_steps(text: str, chars: Any = None, *rest: Any) -> int:
    """Steps for stripping ``chars`` from ``text``: each character stripped is looked up
    among ``chars``, in time growing with their number."""
    lookup = 1 + len(chars) // 64 if isinstance(chars, str) else 1
    return touch(text) * lookup


def _recase(method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    # Title case looks at each character twice: about 9 microseconds a KiB.
    current().charge(touch(receiver) * (3 if method.__name__ == "title" else 1))
    recase(receiver, method.__name__, f"str.{method.__name__}()")
    return method(*args, **kwargs)


def recased(source: str) -> int:
    # Some characters change case into up to three ('ß'.upper() is 'SS').
    return len(source) * (1 if source.isascii() else 3)


def recase(source: str, name: str, what: str) -> None:
    """Before changing the case of ``source`` (``name``: upper, title, ...; ``what``
    does it, for a refusal): the result, and CPython's buffer of three 4-byte characters
    for each one (only ASCII upper() and lower() go without)."""
    current().fits(recased(source), what)
    fast = name in ("upper", "lower") and source.isascii()
    current().hold(0 if fast else 12 * len(source))
    current().make(recased(source), what, wide=not source.isascii())


def _pad(method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    width = args[0] if args else kwargs.get("width", 0)
    if isinstance(width, int):
        what = f"str.{method.__name__}({width})"
        current().make(max(len(receiver), width), what, wide=not receiver.isascii(), exact=True)
    return method(*args, **kwargs)


def _expandtabs(
    method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any
) -> Any:
    size = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(size, int):
        grown = len(receiver) + receiver.count("\t") * max(size, 0)
        current().make(grown, f"str.expandtabs({size})", wide=not receiver.isascii())
    return method(*args, **kwargs)


def _str_join(method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    items = list(charged(args[0])) if args else []
    if all(isinstance(item, str) for item in items):  # else join raises TypeError
        size = sum(map(len, items)) + len(receiver) * max(len(items) - 1, 0)
        current().make(size, "str.join()", exact=True)
    return method(items, *args[1:], **kwargs)


def _str_replace(
    method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any
) -> Any:
    old = args[0] if args else None
    new = args[1] if len(args) > 1 else None
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    if isinstance(old, str) and isinstance(new, str) and isinstance(count, int):
        size = replaced_size(receiver, old, new, count)
        wide = not (receiver + new[:1]).isascii()
        current().make(size, "str.replace()", wide=wide, exact=True)
    return method(*args, **kwargs)


def replaced_size(text: str, old: str, new: str, count: int) -> int:
    """How long ``text.replace(old, new, count)`` is (counting scans the text)."""
    current().charge(2 * touch(text))  # counting, then replacing
    found = text.count(old) if old else len(text) + 1
    if count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


def _split(method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any) -> Any:
    separator = args[0] if args else kwargs.get("sep")
    most = args[1] if len(args) > 1 else kwargs.get("maxsplit", -1)
    if not isinstance(most, int) or not (separator is None or isinstance(separator, str)):
        return method(*args, **kwargs)  # a TypeError
    if separator:
        found = receiver.count(separator) + 1
        _hold_parts(found if most < 0 else min(found, most + 1), receiver)
        return method(*args, **kwargs)
    if separator == "":
        return method(*args, **kwargs)  # a ValueError
    # At whitespace: no more parts than the budget can pay for (then one more, which
    # is refused), so that a text of a million words never becomes a million texts.
    room = MAX_STEPS - current().steps
    parts: list[str] = method(None, room if most < 0 else min(most, room))
    _hold_parts(len(parts), receiver)
    return parts


def _splitlines(
    method: Callable[..., Any], receiver: str, args: tuple[Any, ...], kwargs: Any
) -> Any:
    _hold_parts(line_count(receiver), receiver)
    return method(*args, **kwargs)


def _hold_parts(parts: int, receiver: str) -> None:
    """Before ``receiver`` is split in ``parts`` texts: a step and a text object each."""
    budget = current()
    budget.charge(parts + touch(receiver))
    budget.hold(parts * 64 + len(receiver))


def _copy(method: Callable[..., Any], receiver: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
    current().make(0, f"{type(receiver).__name__}.copy()", items=len(receiver))
    return method(*args, **kwargs)


def _fromkeys(method: Callable[..., Any], receiver: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
    keys = list(charged(args[0])) if args else []
    current().make(0, "dict.fromkeys()", items=len(keys))
    return method(keys, *args[1:], **kwargs)


_STR_SCANS = (
    "count endswith find index isalnum isalpha isascii isdecimal isdigit isidentifier "
    "islower isnumeric isprintable isspace istitle isupper rfind rindex startswith"
)

#: Per family of receivers, the methods templates may call, and their guards. Others
#: (str.encode, str.translate, int.to_bytes, ...) are refused.
METHODS: dict[type, dict[str, Guard]] = {
    str: {
        **dict.fromkeys(_STR_SCANS.split(), _scan),
        **dict.fromkeys(
            [
                "lstrip",
                "rstrip",
                "strip",
                "removeprefix",
                "removesuffix",
                "partition",
                "rpartition",
            ],
            _shrink,
        ),
        **dict.fromkeys(["capitalize", "casefold", "lower", "swapcase", "title", "upper"], _recase),
        **dict.fromkeys(["center", "ljust", "rjust", "zfill"], _pad),
        "expandtabs": _expandtabs,
        "join": _str_join,
        "replace": _str_replace,
        "split": _split,
        "rsplit": _split,
        "splitlines": _splitlines,
    },
    dict: {
        "get": _lookup,
        "keys": _one,
        "values": _one,
        "items": _one,
        "copy": _copy,
        "fromkeys": _fromkeys,
    },
    list: {"count": _scan, "index": _scan, "copy": _copy},
    tuple: {"count": _scan, "index": _scan},
    range: {"count": _range_scan, "index": _range_scan},
    int: dict.fromkeys(
        ["bit_length", "bit_count", "conjugate", "as_integer_ratio", "is_integer"], _one
    ),
    float: dict.fromkeys(["as_integer_ratio", "conjugate", "hex", "is_integer", "fromhex"], _scan),
    complex: {"conjugate": _one},
    type({}.keys()): {"isdisjoint": _scan},
    type({}.items()): {"isdisjoint": _scan},
}
