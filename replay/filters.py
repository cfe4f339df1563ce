"""Guarded versions of Jinja's filters and tests, for templates.

Each predicts the size of what it builds and the work it does from its arguments before
doing it (:mod:`replay.limits`), charges the render's budget, and then does what Jinja
would; a filter or test that a later Jinja adds is left out, not passed through.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from functools import wraps
from typing import Any, cast

from jinja2.filters import FILTERS, make_attrgetter, sync_do_slice
from jinja2.nodes import EvalContext
from jinja2.tests import TESTS
from jinja2.utils import pass_environment, pass_eval_context
from markupsafe import Markup, escape

from replay.guards import (
    REGEX_STEPS,
    SLOW_STEPS,
    SORT_STEPS,
    binop,
    check_number,
    compare_cost,
    recase,
    recased,
    replaced_size,
    strip_steps,
)
from replay.limits import (
    JSON,
    KIB,
    MAX_OUTPUT,
    MAX_STEPS,
    REPR,
    Refused,
    charged,
    current,
    line_count,
    printf_size,
    text,
    text_size,
    texts,
    touch,
)

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
            check_number(int(len(value.strip()) * math.log2(base or 16)), "the int filter")
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
        "title": _on_text("title", recased, _title_steps),
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
