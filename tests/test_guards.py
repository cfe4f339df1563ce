"""The guards: operators, methods, ``str.format``, filters and tests behave as Jinja's on
everyday values, and refuse, before building it, what would be too big."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jinja2
import pytest
from jinja2.filters import FILTERS
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import TESTS

from replay import filters, guards
from replay.limits import KIB, MAX_INT_BITS, MAX_STEPS, Budget, Refused, rendering
from replay.sandbox import Sandbox

#: Jinja as replay used it before the guards: what everyday templates must still give.
PLAIN = ImmutableSandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)
GUARDED = Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
NAMES = {"x": {"a": 1, "b": 2}, "words": ["b", "a", "c"], "n": 7}


@pytest.fixture
def budget() -> Iterator[Budget]:
    with rendering() as opened:
        yield opened


def guarded(text: str, **names: Any) -> str:
    with rendering():
        return "".join(GUARDED.from_string(text).generate({**NAMES, **names}))


#: Everyday templates, using every operator, filter and test and many methods.
EVERYDAY = [
    "{{ 'ab' * 3 }}{{ [1, 2] * 2 }}{{ (1,) * 3 }}{{ 3 * 'x' }}{{ 'x' * 0 }}{{ [1] * -1 }}",
    "{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2.5 ** 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 7 - 9 }}",
    "{{ 'a' + 'b' }}{{ [1] + [2] }}{{ (1,) + (2,) }}{{ -n }}{{ +n }}{{ not n }}",
    "{{ '%s-%d-%5.2f-%x-%o-%e-%r-%c-%%' % ('a', 3, 3.14159, 255, 8, 12345.678, 'q', 65) }}",
    "{{ '%(a)s %(b)05d' % {'a': 'x', 'b': 42} }} {{ '%-6s|' % 'ab' }} {{ '%*d' % (5, 42) }}",
    "{{ '{} {:>5} {:<5}| {:^7} {:08.3f} {:,} {:x} {!r}'.format('a', 'b', 'c', 'd', 3.14, "
    "1234567, 255, 'q') }}",
    "{{ '{a} {b[0]} {c.a}'.format_map({'a': 1, 'b': [2], 'c': x}) }}{{ '{0}{0}'.format(n) }}",
    "{{ 'abc'.center(9, '*') }}{{ 'abc'.ljust(5) }}|{{ 'abc'.rjust(5) }}{{ '42'.zfill(5) }}",
    "{{ 'a\tb'.expandtabs(4) }}{{ ','.join(['a', 'b']) }}{{ ''.join(x) }}",
    "{{ 'aXbXc'.replace('X', '--') }}{{ 'aaa'.replace('a', 'b', 2) }}{{ 'ab'.replace('', '.') }}",
    "{{ 'a b  c'.split() }}{{ 'a,b'.split(',') }}{{ 'a b c'.split(None, 1) }}"
    "{{ 'a b c'.rsplit(None, 1) }}{{ 'a\nb'.splitlines() }}{{ 'a,b,c'.rsplit(',', 1) }}",
    "{{ ' x '.strip() }}{{ 'xxaxx'.strip('x') }}{{ 'Hello'.upper() }}{{ 'Hello'.lower() }}"
    "{{ 'hello world'.title() }}{{ 'ß'.upper() }}{{ 'aB'.swapcase() }}",
    "{{ 'abc'.find('c') }}{{ 'abc'.startswith('a') }}{{ 'a-b'.partition('-') }}"
    "{{ 'ab'.isalpha() }}{{ 'abc'.removeprefix('a') }}",
    "{{ [1, 2, 1].count(1) }}{{ [1, 2].index(2) }}{{ (1, 2).count(1) }}{{ x.get('a') }}"
    "{{ x.items() | list }}{{ x.keys() | list }}{{ dict.fromkeys(['a'], 0) }}",
    "{{ dict(a=1, b=2) }}{{ dict([('a', 1)]) }}{{ dict(x) }}{{ dict.items(x) | list }}",
    "{{ range(10).count(3) }}{{ (255).bit_length() }}{{ (0.5).as_integer_ratio() }}",
    "{{ -3 | abs }}{{ 'abc' | capitalize }}{{ 'ab' | center(6) }}{{ [1,2] | count }}"
    "{{ none | default('d') }}{{ nope | d('e') }}{{ x | attr('items') is callable }}",
    "{{ {'b': 1, 'a': 2} | dictsort }}{{ '<a>' | e }}{{ 12345678 | filesizeformat }}"
    "{{ [3, 1] | first }}{{ '3.5' | float }}",
    "{{ '<a>' | forceescape }}{{ '%s=%d' | format('a', 1) }}"
    "{{ [{'a': 1}, {'a': 2}, {'a': 1}] | groupby('a') }}",
    "{{ 'a\nb' | indent(2, true) }}{{ 'a\n\nb' | indent('> ', blank=true) }}{{ '42' | int }}"
    "{{ '0x1f' | int(base=16) }}{{ 'x' | int(3) }}",
    "{{ [1, 2] | join('-') }}{{ [x, x] | join(',', attribute='a') }}{{ [1, 2] | last }}"
    "{{ 'ab' | length }}",
    "{{ 'ab' | list }}{{ 'AB' | lower }}{{ x | items | list }}{{ words | map('upper') | list }}"
    "{{ [x] | map(attribute='a') | list }}{{ [3, 1, 2] | min }}{{ words | max }}",
    "{{ {'a': [1, 2]} | pprint }}{{ [1, 2, 3, 4] | reject('odd') | list }}"
    "{{ [{'a': 0}, {'a': 1}] | rejectattr('a') | list }}",
    "{{ 'aXb' | replace('X', 'yy') }}{{ [1, 2, 3] | reverse | list }}{{ 'abc' | reverse }}"
    "{{ x | reverse | list }}{{ 3.14159 | round(2) }}{{ 3.1 | round(0, 'ceil') }}",
    "{{ 'a' | safe }}{{ [1, 2, 3] | select('odd') | list }}"
    "{{ [{'a': 0}, {'a': 1}] | selectattr('a') | list }}{{ [1, 2, 3, 4, 5] | slice(2) | list }}"
    "{{ [1, 2, 3] | slice(2, 0) | list }}",
    "{{ [3, 1, 2] | sort }}{{ ['b', 'A'] | sort(case_sensitive=true) }}{{ 42 | string }}"
    "{{ '<b>a</b>  b &amp; c' | striptags }}{{ [1, 2] | sum }}{{ [[1], [2]] | sum(start=[]) }}"
    "{{ [x] | sum(attribute='b') }}",
    "{{ 'hello wORLD-x' | title }}{{ '  x ' | trim }}{{ 'xax' | trim('x') }}"
    "{{ 'hello world foo' | truncate(9) }}{{ [1, 1, 2] | unique | list }}{{ 'ab' | upper }}",
    "{{ 'a b&c' | urlencode }}{{ {'a': 'b c'} | urlencode }}{{ [('a', 1)] | urlencode }}"
    "{{ 'see http://a.com or b@c.org' | urlize }}{{ 'a b c' | wordcount }}",
    "{{ 'aaa bbb ccc' | wordwrap(4) }}{{ 'abcdefgh' | wordwrap(3, wrapstring='|') }}",
    "{{ {'class': 'x', 'id': 1} | xmlattr }}{{ {'a': [1, 'x<']} | tojson }}{{ [1, 2] | tojson(2) }}"
    "{{ range(5) | batch(2, 0) | list }}{{ 'é' | urlencode }}",
    "{{ 3 is odd }}{{ 4 is even }}{{ 4 is divisibleby 2 }}{{ x is defined }}{{ nope is undefined }}"
    "{{ 'a' is string }}{{ 'ab' is lower }}{{ 'AB' is upper }}{{ 1 is in [1] }}{{ 1 is eq 1 }}"
    "{{ 2 is gt 1 }}{{ [] is sequence }}{{ none is none }}{{ x is mapping }}{{ 1 is number }}",
    "{{ 1 is ne 2 }}{{ 1 is lt 2 }}{{ 1 is le 1 }}{{ 2 is ge 1 }}{{ 1 is sameas 1 }}"
    "{{ x is iterable }}{{ 'upper' is filter }}{{ 'odd' is test }}{{ true is boolean }}"
    "{{ false is false }}{{ true is true }}{{ 1 is integer }}{{ 1.5 is float }}{{ x is escaped }}"
    "{{ 1 is equalto 1 }}{{ 2 is greaterthan 1 }}{{ 1 is lessthan 2 }}"
    "{{ [1, 2] | select('==', 1) | list }}{{ [1, 2] | reject('>', 1) | list }}",
    "{% for a, b in x.items() %}{{ a }}{{ b }}{{ loop.index }}{{ loop.length }}{{ loop.last }}"
    "{{ loop.cycle('o', 'e') }}{% endfor %}{% for y in [3, 1, 2] if y > 1 %}{{ y }}{% else %}"
    "none{% endfor %}",
    "{% macro m(a, b=2) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, b=3) }}"
    "{% macro c(a) %}[{{ caller(a) }}]{% endmacro %}{% call(v) c(3) %}c{{ v }}{% endcall %}",
    "{% for y in [[1, [2]], [3]] recursive %}[{{ loop(y) if y is iterable else y }}]{% endfor %}",
    "{% set s %}a{{ 1 }}b{% endset %}{{ s }}{% filter upper %}up{% endfilter %}"
    "{% with y = 2 %}{{ y }}{% endwith %}",
    "{{ 1 < 2 < 3 }}{{ 3 > 2 > 5 }}{{ 'a' in 'abc' }}{{ 'z' not in 'abc' }}{{ 1 == 1.0 }}"
    "{{ [1] != [2] }}{{ 'a' ~ 1 ~ none }}{{ 2 >= 2 }}{{ 1 <= 0 }}{{ 'a' in x }}",
    "{{ 'abc'[1:] }}{{ 'abc'[::-1] }}{{ [1, 2, 3][1:] }}{{ (1, 2, 3)[:2] }}{{ x['a'] }}{{ x.b }}"
    "{{ x[('a')] }}",
    "{% for i in range(4) %}{{ loop.changed(i // 2) }}{% endfor %}{{ range(3) | list }}",
]


@pytest.mark.parametrize("text", EVERYDAY)
def test_everyday_templates_render_as_in_jinja(text: str) -> None:
    assert guarded(text) == PLAIN.from_string(text).render(NAMES)


def test_every_jinja_filter_and_test_is_guarded() -> None:
    # A filter or test a later Jinja adds is left out until someone looks at it.
    assert set(filters.filters()) == set(FILTERS)
    assert set(filters.tests()) == set(TESTS)
    assert all(guarded is not FILTERS[name] for name, guarded in filters.filters().items())


# --- operators ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "left", "right"),
    [
        ("*", "ab", 10**9),
        ("*", 10**9, "ab"),
        ("*", [1], 10**9),
        ("*", (["x" * KIB],), 2000),
        ("+", "x" * 700_000, "y" * 700_000),
        ("+", ["x" * 700_000], ["y" * 700_000]),
        ("%", "%900000000s", "x"),
    ],
)
def test_binop_refuses_a_value_too_long(symbol: str, left: Any, right: Any, budget: Budget) -> None:
    with pytest.raises(Refused) as caught:
        guards.binop(symbol, left, right)
    assert caught.value.reason.startswith(f"it renders more than 1048576 characters: {symbol!r}")
    assert budget.built == 0


@pytest.mark.parametrize(
    ("symbol", "left", "right"),
    [("**", 2, 4097), ("**", 3, 2600), ("**", 10, 10**100), ("*", 2**4000, 2**200)],
)
def test_binop_refuses_a_number_too_big(symbol: str, left: int, right: int, budget: Budget) -> None:
    with pytest.raises(Refused) as caught:
        guards.binop(symbol, left, right)
    assert caught.value.reason == (
        f"{symbol!r} would make a number of more than {MAX_INT_BITS} bits; "
        "templates compute with smaller numbers"
    )


@pytest.mark.parametrize(
    ("symbol", "left", "right", "result"),
    [
        ("**", 2, 4095, 2**4095),
        ("**", 1, 10**100, 1),
        ("**", -1, 10**100 + 1, -1),
        ("**", 0, 10**100, 0),
        ("**", 2, -2, 0.25),
        ("*", "ab", -5, ""),
        ("*", [], 10**15, []),
        ("+", 1.5, 2, 3.5),
    ],
)
def test_binop_computes_what_fits(
    symbol: str, left: Any, right: Any, result: Any, budget: Budget
) -> None:
    assert guards.binop(symbol, left, right) == result


def test_big_numbers_cost_the_product_of_their_sizes(budget: Budget) -> None:
    guards.binop("//", 2**4000, 2**2000 + 1)
    assert budget.steps > 10


def test_compare_charges_the_reading_of_big_values(budget: Budget) -> None:
    big = "x" * (100 * KIB)
    assert guards.compare(big, "eq", "".join(big))
    assert guards.compare("yz", "notin", big)
    assert guards.compare(1, "lt", 2, "lt", 3)
    assert not guards.compare(1, "lt", 2, "gt", 3)
    assert budget.steps > 400
    steps = budget.steps
    assert guards.compare("a", "in", {"a": big})  # hashed: the mapping is not read
    assert budget.steps == steps + 1


def test_compare_cost_is_the_smaller_side(budget: Budget) -> None:
    assert guards.compare_cost("eq", "x" * (100 * KIB), None) == 0
    assert guards.compare_cost("eq", list(range(10)), list(range(100_000))) == 0


# --- str.format ---------------------------------------------------------------------------------


def test_format_refuses_a_field_too_wide(budget: Budget) -> None:
    with pytest.raises(Refused):
        guarded("{{ '{:>2000000}'.format('x') }}")
    with pytest.raises(Refused):
        guarded("{{ '{!r}'.format(x) }}", x=["x" * KIB] * 1100)


def test_format_refuses_fields_adding_up_too_long() -> None:
    with pytest.raises(Refused) as caught:
        guarded("{{ '{0}{0}{0}'.format(x) }}", x="x" * 400_000)
    assert "str.format() could make more than that" in caught.value.reason


def test_format_map_takes_one_mapping() -> None:
    with pytest.raises(TypeError):
        guarded("{{ '{a}'.format_map({'a': 1}, {'b': 2}) }}")


def test_format_is_still_sandboxed() -> None:
    with pytest.raises(jinja2.exceptions.SecurityError):
        guarded("{{ '{0.__class__}'.format(1) }}")


def test_other_methods_are_not_wrapped() -> None:
    assert guards.guarded_format("x".upper, GUARDED) is None
    assert guards.guarded_format(len, GUARDED) is None


# --- methods ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("x".encode, ()),
        ("x".translate, ({},)),
        ("x".maketrans, ("a", "b")),
        ((1).to_bytes, (10**9, "big")),
        (int.from_bytes, (b"",)),
        ([].append, (1,)),
        ({}.update, ()),
        (dict.pop, ({}, "a")),
        (len, ("x",)),
        (iter(()).__length_hint__, ()),
    ],
)
def test_methods_without_a_guard_are_refused(
    method: Any, args: tuple[Any, ...], budget: Budget
) -> None:
    with pytest.raises(Refused) as caught:
        guards.call_method(method, args, {})
    assert caught.value.reason.endswith("() is not available in templates")


def test_an_unbound_method_needs_its_receiver(budget: Budget) -> None:
    assert guards.call_method(dict.keys, ({"a": 1},), {}) == {"a": 1}.keys()
    with pytest.raises(TypeError):
        guards.call_method(dict.keys, ("not a dict",), {})


def test_splitting_at_whitespace_never_makes_more_parts_than_the_budget(budget: Budget) -> None:
    words = "a " * 500_000
    with pytest.raises(Refused):
        guards.call_method(words.split, (), {})
    # The parts were never all made: at most the steps there were room for.
    assert budget.built < 64 * (MAX_STEPS + 2) + len(words)


def test_splitting_counts_the_parts_first(budget: Budget) -> None:
    with pytest.raises(Refused):
        guards.call_method(("a," * 500_000).split, (",",), {})
    assert budget.built == 0


def test_splitting_what_fits(budget: Budget) -> None:
    assert guards.call_method("a b c".split, (None, 1), {}) == ["a", "b c"]
    assert guards.call_method("a b c".split, (), {}) == ["a", "b", "c"]
    assert guards.call_method("a,b".split, (), {"sep": ","}) == ["a", "b"]
    assert budget.steps >= 7


def test_joining_refuses_before_joining(budget: Budget) -> None:
    with pytest.raises(Refused):
        guards.call_method("-".join, (["x" * 600_000, "y" * 600_000],), {})
    assert budget.built == 0


def test_stripping_many_characters_costs_their_number(budget: Budget) -> None:
    with pytest.raises(Refused):
        guards.call_method(("a" * (100 * KIB)).strip, ("b" * 100_000,), {})


def test_searching_charges_the_text(budget: Budget) -> None:
    text = "x" * (100 * KIB)
    assert guards.call_method(text.count, ("yz",), {}) == 0
    assert budget.steps >= 400


# --- filters ------------------------------------------------------------------------------------


def test_filters_give_plain_text_never_markup() -> None:
    # With autoescape off, Markup would only escape what is added to it: '<' + '<' * n
    # would be five times as long as it looks.
    assert guarded("{{ ('<' | e) ~ '<' }} {{ ('<' | e) + '<' }}") == "&lt;< &lt;<"
    assert guarded("{{ ('a' | safe) + '<' }}{{ ({'a': '<'} | tojson) + '<' }}") == (
        'a<{"a": "\\u003c"}<'
    )


def test_filters_over_items_charge_each_item(budget: Budget) -> None:
    guarded("{{ range(1000) | map('string') | list | length }}")
    with pytest.raises(Refused):
        guarded("{{ range(100000) | select('odd') | list | length }}")


def test_sum_adds_with_the_guarded_plus() -> None:
    with pytest.raises(Refused) as caught:
        guarded("{{ [x, x, x] | sum(start='') }}", x="x" * 400_000)
    assert "'+' would make 1,200,000" in caught.value.reason


def test_round_and_int_refuse_huge_work() -> None:
    with pytest.raises(Refused):
        guarded("{{ 5 | round(-1000000) }}")
    with pytest.raises(Refused):
        guarded("{{ x | int(base=2) }}", x="1" * 5000)
    assert guarded("{{ x | int }}", x="not a number " * 100) == "0"
    assert guarded("{{ x | int }}", x="x" * 1_000_000) == "0"
    assert guarded("{{ x | int }}", x="7" * 1000) == "7" * 1000


@pytest.mark.parametrize(
    ("text", "base", "numeral"),
    [
        ("123", 10, True),
        (" -1_000 ", 10, True),
        ("12a", 10, False),
        ("ff", 16, True),
        ("0xff", 16, True),
        ("0xff", 0, True),
        ("0b101", 2, True),
        ("102", 2, False),
        ("zz", 36, True),
        ("", 10, False),
        ("12", 1, False),
        ("12", 37, False),
    ],
)
def test_is_numeral_as_int_reads(text: str, base: int, numeral: bool) -> None:
    assert filters.is_numeral(text, base) is numeral
    if 2 <= base <= 36 or base == 0:
        try:
            int(text, base)
            readable = True
        except ValueError:
            readable = False
        assert readable == numeral


def test_slice_and_batch_refuse_huge_fills() -> None:
    with pytest.raises(Refused):
        guarded("{{ [1] | slice(100000000) | list }}")
    with pytest.raises(Refused):
        guarded("{{ [1] | batch(100000000, 'x') | list }}")


def test_word_filters_count_words_within_the_budget() -> None:
    assert guarded("{{ 'a b c' | wordcount }}") == "3"
    with pytest.raises(Refused):
        guarded("{{ x | wordcount }}", x="a " * 200_000)
