"""Guarded versions of everything a template can call or apply: operators, comparisons,
``str.format``, the methods of the values templates see, Jinja's filters and tests.

Each predicts the size of what it builds and the work it does from its arguments *before*
doing it (:mod:`replay.limits`), charges the render's budget, and then does what Jinja
would. Whatever is not listed here is refused: a method that is not in :data:`METHODS`,
a filter or test Jinja adds in a later version.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
import types
from collections.abc import Callable, Iterable, Mapping
from functools import partial, update_wrapper, wraps
from typing import Any, cast

from jinja2.filters import FILTERS, make_attrgetter, sync_do_slice
from jinja2.nodes import EvalContext
from jinja2.sandbox import SandboxedFormatter
from jinja2.tests import TESTS
from jinja2.utils import pass_environment, pass_eval_context
from markupsafe import Markup, escape

from replay.limits import (
    JSON,
    KIB,
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
    text,
    text_size,
    texts,
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


def _number(bits: int, what: str) -> None:
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
            _number(max(bits) + 1, what)
        elif symbol == "*":
            _number(sum(bits), what)
        elif symbol == "**" and right >= 0 and abs(left) >= 2:
            # exponent * log2(base) bits; a huge exponent would overflow the float.
            _number(
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


def recase(source: str, name: str, what: str) -> None:
    """Before changing the case of ``source`` (``name``: upper, title, ...; ``what``
    does it, for a refusal): the result, and CPython's buffer of three 4-byte characters
    for each one (only ASCII upper() and lower() go without)."""
    current().fits(_recased(source), what)
    fast = name in ("upper", "lower") and source.isascii()
    current().hold(0 if fast else 12 * len(source))
    current().make(_recased(source), what, wide=not source.isascii())


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


# --- filters ------------------------------------------------------------------------------------


def _plain(result: Any) -> Any:
    """Filters give plain text, never Markup: with autoescape off, Markup would only
    change what ``+``, ``%`` and ``join`` do to other texts (escape them: five times longer)."""
    return str.__str__(result) if isinstance(result, Markup) else result


def _simple(name: str) -> Callable[..., Any]:
    """Jinja's filter ``name``, for one that takes about as long whatever its input: a
    step, and a step per KiB of text it reads."""
    original = FILTERS[name]

    @wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current().charge(1 + sum(len(arg) // KIB for arg in args if isinstance(arg, str)))
        return _plain(original(*args, **kwargs))

    return guarded


def _over_items(name: str, steps: int = 1) -> Callable[..., Any]:
    """Jinja's filter ``name``, for one that goes over the items of its input in Python
    (the input comes after the environment or context, if the filter takes one):
    ``steps`` per item."""
    original = FILTERS[name]
    at = 1 if hasattr(original, "jinja_pass_arg") else 0

    @wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        current().charge(1)
        args = (*args[:at], charged(args[at], steps), *args[at + 1 :])
        result = original(*args, **kwargs)
        if isinstance(result, list):
            current().make(0, f"the {name} filter", items=len(result))
        return result

    return guarded


def _on_text(
    name: str, size: Callable[[str], int], work: Callable[[str], int]
) -> Callable[..., Any]:
    """Jinja's filter ``name``, for one that turns the text of its input into a text of
    at most ``size(text)`` characters, with ``work(text)`` steps."""
    original = FILTERS[name]

    @wraps(original)
    def guarded(value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        source = text(value, f"the {name} filter")
        budget.charge(1 + work(source))
        budget.make(size(source), f"the {name} filter", wide=not source.isascii())
        return _plain(original(source, *args, **kwargs))

    return guarded


def _recasing(name: str) -> Callable[[Any], str]:
    """Jinja's filter ``name``, one that changes the case of a text (see :func:`recase`)."""
    original = FILTERS[name]

    @wraps(original)
    def guarded(s: Any) -> str:
        source = text(s, f"the {name} filter")
        current().charge(1 + touch(source))
        recase(source, name, f"the {name} filter")
        return str(original(source))

    return guarded


def _recased(source: str) -> int:
    # Some characters change case into up to three ('ß'.upper() is 'SS').
    return len(source) * (1 if source.isascii() else 3)


_WORD_BREAKS = re.compile(r"[-\s({\[<]+")
_WORDS = re.compile(r"\w+")


def _words(source: str) -> int:
    """How many words ``source`` has, for filters that handle each word in Python."""
    return 1 + count_matches(_WORD_BREAKS, source)


def count_matches(pattern: re.Pattern[str], source: str) -> int:
    """How many times ``pattern`` matches in ``source``, counted (and charged, a step
    each) only as far as the budget can pay for: a refusal, not minutes of counting."""
    budget = current()
    budget.charge(REGEX_STEPS * (len(source) // KIB))
    room = MAX_STEPS - budget.steps + 1
    found = sum(1 for _ in itertools.islice(pattern.finditer(source), room))
    budget.charge(found)
    return found


def _title_steps(source: str) -> int:
    return 3 * touch(source) + _words(source)


def _trim(value: Any, chars: str | None = None) -> str:
    source = text(value, "the trim filter")
    current().charge(1 + strip_steps(source, chars))
    current().make(len(source), "the trim filter", wide=not source.isascii())
    return source.strip(chars)


def _escape(value: Any) -> str:
    source = text(value, "the escape filter")
    current().charge(1 + 3 * touch(source))  # counting, then escaping
    grown = 3 * (source.count("<") + source.count(">")) + 4 * sum(map(source.count, "&\"'"))
    current().make(len(source) + grown, "the escape filter", wide=not source.isascii())
    return str(escape(source))


def _string(value: Any) -> str:
    current().charge(1)
    return text(value, "the string filter")


def _wordcount(s: Any) -> int:
    source = text(s, "the wordcount filter")
    current().charge(1)
    return count_matches(_WORDS, source)  # without a list of every word


def _striptags(value: Any) -> str:
    source = text(value, "the striptags filter")
    # markupsafe goes over every tag, word and entity in Python: count them first.
    current().charge(1 + 2 * touch(source))
    current().charge(source.count("<") + source.count("&") + _words(source))
    current().make(len(source), "the striptags filter", wide=not source.isascii())
    return str(Markup(source).striptags())


def _center(value: Any, width: int = 80) -> str:
    source = text(value, "the center filter")
    current().charge(1)
    if isinstance(width, int):
        size = max(len(source), width)
        current().make(size, f"center({width})", wide=not source.isascii(), exact=True)
    return source.center(width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    source = text(s, "the indent filter")
    prefix = len(width) if isinstance(width, str) else max(int(width), 0)
    lines = line_count(source) + 1
    current().charge(1 + lines // 8 + len(source) // KIB)
    current().hold(64 * lines)  # the list of lines, one text each
    current().make(len(source) + 1 + lines * prefix, "the indent filter")
    return str(FILTERS["indent"](source, width, first, blank))


@pass_environment
def _wordwrap(
    environment: Any,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    source = text(s, "the wordwrap filter")
    joint = environment.newline_sequence if wrapstring is None else text(wrapstring, "wrapstring")
    # textwrap is Python: about half a microsecond a character. At worst every character
    # becomes a line of its own.
    current().charge(1 + len(source) // 2)
    current().make(len(source) + (len(source) + 1) * len(joint), "the wordwrap filter")
    wrap = FILTERS["wordwrap"]
    return str(wrap(environment, source, width, break_long_words, joint, break_on_hyphens))


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    source, old, new = (text(value, "the replace filter") for value in (s, old, new))
    times = -1 if count is None else count
    size = replaced_size(source, old, new, times)
    wide = not (source + new[:1]).isascii()
    current().make(size, "the replace filter", wide=wide, exact=True)
    return source.replace(old, new, times)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    form = text(value, "the format filter")
    size = printf_size(form, kwargs or args)
    current().make(size, "the format filter", wide=not form.isascii())
    return str(FILTERS["format"](form, *args, **kwargs))


@pass_environment
def _truncate(
    env: Any,
    s: Any,
    length: int = 255,
    killwords: bool = False,
    end: str = "...",
    leeway: int | None = None,
) -> str:
    source, end = text(s, "the truncate filter"), text(end, "the truncate filter")
    current().make(len(source) + len(end), "the truncate filter", wide=not source.isascii())
    return str(FILTERS["truncate"](env, source, length, killwords, end, leeway))


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Any, d: Any = "", attribute: Any = None) -> str:
    items = charged(value)
    if attribute is not None:
        items = map(make_attrgetter(eval_ctx.environment, attribute), items)
    return texts(items, "the join filter", text(d, "the join filter"))


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    items = charged(iterable)
    if attribute is not None:
        items = map(make_attrgetter(environment, attribute), items)
    total = start
    for item in items:
        total = binop("+", total, item)  # so sum([[x] * 1000] * 1000, []) is refused
    return total


def _list(value: Any) -> list[Any]:
    items = list(charged(value))
    current().make(0, "the list filter", items=len(items))
    return items


def _reverse(value: Any) -> Any:
    current().charge(1)
    if isinstance(value, str):
        current().make(len(value), "the reverse filter", wide=not value.isascii())
        return value[::-1]
    try:
        return charged(reversed(value))
    except TypeError:
        items = _list(value)
        items.reverse()
        return items


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    current().charge(1)
    if fill_with is not None and isinstance(linecount, int):
        filled = max(linecount, 0)
        current().make((text_size(fill_with) + 2) * filled, "the batch filter", items=filled)
    return FILTERS["batch"](charged(value), linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    current().charge(1)
    if isinstance(slices, int):
        current().charge(slices)  # a Python loop per slice
        if fill_with is not None:
            size = (text_size(fill_with) + 2) * slices
            current().make(size, "the slice filter", items=slices)
    items: Any = charged(value)  # sync_do_slice reads it into a list first
    return charged(sync_do_slice(items, slices, fill_with))


def _round(value: Any, precision: int = 0, method: str = "common") -> Any:
    current().charge(1)
    if not isinstance(precision, int) or abs(precision) > 400:
        raise Refused("the round filter takes a precision between -400 and 400")
    return FILTERS["round"](value, precision, method)


def _int(value: Any, default: int = 0, base: int = 10) -> Any:
    current().charge(1)
    if isinstance(value, str) and len(value) > 256 and isinstance(base, int):
        current().charge(touch(value))
        if is_numeral(value, base):
            # Every digit of base b is log2(b) bits; reading decimal takes time quadratic
            # in the number of digits.
            _number(int(len(value.strip()) * math.log2(base or 16)), "the int filter")
            current().charge((len(value) // 256) ** 2)
    return FILTERS["int"](value, default, base)


_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def is_numeral(text: str, base: int) -> bool:
    """Whether ``int(text, base)`` could read ``text`` (else the int filter gives its
    default, or reads it as a float)."""
    if base == 1 or not 0 <= base <= 36:
        return False
    body = text.strip().lstrip("+-").lower()
    if base in (0, 2, 8, 16) and body[:2] in ("0x", "0o", "0b"):
        body = body[2:]
    return bool(body) and not body.strip(_ALPHABET[: base or 16] + "_")


@pass_eval_context
def _tojson(eval_ctx: EvalContext, value: Any, indent: int | str | None = None) -> str:
    current().charge(1)
    step = len(indent) if isinstance(indent, str) else max(int(indent or 0), 0)
    # json builds ' ' * indent first, whatever the value.
    current().make(step, f"tojson({step})", exact=True)
    default = eval_ctx.environment.policies["json.dumps_kwargs"].get("default")
    size = text_size(value, MAX_OUTPUT, JSON, indent=(1, step), default=default)
    if indent is not None:
        current().charge(size // 64)  # json indents in Python, not in C
    current().make(size, "the tojson filter")
    return str(FILTERS["tojson"](eval_ctx, value, indent))


def _pprint(value: Any) -> str:
    # pformat writes an item per line, indented by its depth, and cuts long texts in parts.
    size = 2 * text_size(value, MAX_OUTPUT, REPR, indent=(4, 1))
    current().make(size, "the pprint filter")
    current().charge(SLOW_STEPS * (size // 16))
    return str(FILTERS["pprint"](value))


@pass_eval_context
def _urlize(
    eval_ctx: EvalContext,
    value: Any,
    trim_url_limit: int | None = None,
    nofollow: bool = False,
    target: str | None = None,
    rel: str | None = None,
    extra_schemes: Iterable[str] | None = None,
) -> str:
    source = text(value, "the urlize filter")
    words = _words(source)
    current().charge(1 + SLOW_STEPS * words)
    # Every word may become <a href="https://WORD" rel="..." target="...">WORD</a>,
    # escaped (up to five times longer).
    per_link = 64 + len(str(target or "")) + len(str(rel or ""))
    current().make(10 * len(source) + per_link * words, "the urlize filter")
    urlize = FILTERS["urlize"]
    return str(urlize(eval_ctx, source, trim_url_limit, nofollow, target, rel, extra_schemes))


def _urlencode(value: Any) -> str:
    current().charge(1)
    if isinstance(value, str) or not isinstance(value, Iterable):
        source = text(value, "the urlencode filter")
        # %XX per byte, up to 4 bytes a character.
        current().make(len(source) * (3 if source.isascii() else 12), "the urlencode filter")
        return str(FILTERS["urlencode"](source))
    items = value if isinstance(value, Mapping) else list(charged(value))
    current().make(12 * text_size(items), "the urlencode filter")
    return str(FILTERS["urlencode"](items))


@pass_eval_context
def _xmlattr(eval_ctx: EvalContext, d: Any, autospace: bool = True) -> str:
    current().charge(1 + len(d))
    current().make(5 * text_size(d) + 8 * len(d), "the xmlattr filter")
    return str(FILTERS["xmlattr"](eval_ctx, d, autospace))


def _dictsort(value: Any, *args: Any, **kwargs: Any) -> Any:
    current().charge(1 + SORT_STEPS * len(value))
    current().make(0, "the dictsort filter", items=len(value))
    return FILTERS["dictsort"](value, *args, **kwargs)


_SIMPLE = "abs attr count d default filesizeformat first float items last length random"


def filters() -> dict[str, Callable[..., Any]]:
    """Jinja's filters, each guarded. A filter a later Jinja adds is left out until
    someone looks at what it can build."""
    guarded: dict[str, Callable[..., Any]] = {
        **{name: _simple(name) for name in _SIMPLE.split()},
        **{
            name: _over_items(name)
            for name in ["map", "select", "reject", "selectattr", "rejectattr"]
        },
        **{
            name: _over_items(name, SORT_STEPS)
            for name in ["sort", "unique", "min", "max", "groupby"]
        },
        **{name: _recasing(name) for name in ["capitalize", "lower", "upper"]},
        "title": _on_text("title", _recased, _title_steps),
        "trim": _trim,
        **dict.fromkeys(("e", "escape", "forceescape"), _escape),
        **dict.fromkeys(("safe", "string"), _string),
        "wordcount": _wordcount,
        "striptags": _striptags,
        "center": _center,
        "indent": _indent,
        "wordwrap": _wordwrap,
        "replace": _replace,
        "format": _format,
        "truncate": _truncate,
        "join": _join,
        "sum": _sum,
        "list": _list,
        "reverse": _reverse,
        "batch": _batch,
        "slice": _slice,
        "round": _round,
        "int": _int,
        "tojson": _tojson,
        "pprint": _pprint,
        "urlize": _urlize,
        "urlencode": _urlencode,
        "xmlattr": _xmlattr,
        "dictsort": _dictsort,
    }
    return {name: guarded[name] for name in FILTERS if name in guarded}


# --- tests --------------------------------------------------------------------------------------

#: Jinja's tests that compare their two arguments, by the name compare() knows them by.
_COMPARING = {
    **dict.fromkeys(("==", "eq", "equalto"), "eq"),
    **dict.fromkeys(("!=", "ne"), "ne"),
    **dict.fromkeys((">", "gt", "greaterthan"), "gt"),
    **dict.fromkeys((">=", "ge"), "gteq"),
    **dict.fromkeys(("<", "lt", "lessthan"), "lt"),
    **dict.fromkeys(("<=", "le"), "lteq"),
    "in": "in",
}


def _test(name: str) -> Callable[..., bool]:
    """Jinja's test ``name``: a step, plus the reading of what it compares."""
    original = cast(Callable[..., Any], TESTS[name])
    comparison = _COMPARING.get(name)

    @wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> bool:
        budget = current()
        budget.charge(1)
        if comparison is not None and len(args) == 2:
            budget.charge(compare_cost(comparison, *args))
        elif name in ("lower", "upper") and args:
            args = (text(args[0], f"the {name} test"), *args[1:])
            budget.charge(len(args[0]) // KIB)
        elif name in ("odd", "even", "divisibleby"):
            budget.charge(sum(map(touch, args)))
        return bool(original(*args, **kwargs))

    return guarded


def tests() -> dict[str, Callable[..., Any]]:
    """Jinja's tests, each guarded."""
    return {name: _test(name) for name in TESTS}
