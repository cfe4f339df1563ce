"""The limits of one render: its budget, and the sizes of values predicted before they are
built (never less than what Python then builds)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from replay import limits
from replay.limits import (
    JSON,
    KIB,
    MAX_BUILT,
    MAX_OUTPUT,
    MAX_STEPS,
    REPR,
    Budget,
    Outside,
    Refused,
    amount,
    charged,
    compiling,
    current,
    digits,
    field_size,
    line_count,
    printf_size,
    quoted_size,
    rendering,
    text,
    text_size,
    texts,
    touch,
)


@pytest.fixture
def budget() -> Iterator[Budget]:
    """An open render, as the functions here need one."""
    with rendering() as opened:
        yield opened


# --- the budget ---------------------------------------------------------------------------------


def test_charge_refuses_past_the_steps() -> None:
    budget = Budget()
    budget.charge(MAX_STEPS)
    with pytest.raises(Refused) as caught:
        budget.charge(1)
    assert caught.value.reason == (
        f"the template does too much work: more than {MAX_STEPS} loop iterations or calls "
        "(an item of a list read, or a KiB of text, counts as one); loop over fewer or "
        "smaller values"
    )
    with pytest.raises(Refused):  # and stays refused
        budget.charge(0)


def test_hold_refuses_past_the_memory() -> None:
    budget = Budget()
    budget.hold(MAX_BUILT)
    with pytest.raises(Refused) as caught:
        budget.hold(1)
    assert caught.value.reason == (
        f"the template builds more than {MAX_BUILT} bytes of values in all; "
        "build fewer or smaller values"
    )


def test_make_counts_a_value_or_refuses_it_saying_what() -> None:
    budget = Budget()
    budget.make(2 * KIB, "'*'")
    assert (budget.built, budget.steps) == (2 * KIB, 2)
    budget.make(10, "'*'", wide=True)
    assert budget.built == 2 * KIB + 40  # up to 4 bytes a character
    budget.make(0, "list()", items=128)
    assert (budget.built, budget.steps) == (2 * KIB + 40 + 128 * limits.ITEM_BYTES, 4)
    with pytest.raises(Refused) as exact:
        budget.make(MAX_OUTPUT + 1, "'*'", exact=True)
    assert exact.value.reason == (
        f"it renders more than {MAX_OUTPUT} characters: '*' would make 1,048,577; "
        "make the text shorter"
    )
    with pytest.raises(Refused) as bound:
        budget.make(10**30, "the pprint filter")
    assert "the pprint filter could make more than that" in bound.value.reason


def test_amount_never_writes_a_huge_number() -> None:
    assert amount(1234) == "1,234"
    assert amount(10**4000) == "more than 10^18"


def test_rendering_opens_a_budget_and_nested_renders_share_it() -> None:
    with pytest.raises(Outside):
        current()
    with rendering() as outer:
        assert current() is outer
        with rendering() as inner:
            assert inner is outer
        assert current() is outer
    with pytest.raises(Outside):
        current()
    with rendering() as again:
        assert again is not outer
        assert again.steps == 0


def test_no_budget_while_compiling(budget: Budget) -> None:
    with compiling(), pytest.raises(Outside):
        current()
    assert current() is budget


def test_charged_counts_each_item(budget: Budget) -> None:
    assert list(charged(range(5), 3)) == [0, 1, 2, 3, 4]
    assert budget.steps == 15
    endless = charged(iter(int, 1))  # never ends, but the budget does
    with pytest.raises(Refused):
        for _ in endless:
            pass


# --- sizes ----------------------------------------------------------------------------------

#: Values of every kind templates see, for size predictions.
VALUES: list[Any] = [
    "",
    "plain",
    "quote ' and \" and \\",
    "tab\tnew\nline\x00",
    "é ü ß",
    "😀 emoji",
    "<b>&'</b>",
    0,
    -(2**100),
    3.25,
    float("-inf"),
    None,
    True,
    [],
    [1, "a", None, [2.5, ("x",)]],
    (1,),
    {"a": 1, 2: ["b"], "c": {"d": None}},
    {"a": "x"}.keys(),
    {"a": "x"}.values(),
    {"a": "x"}.items(),
    range(3),
    "x" * 1000,
    ["é" * 300] * 3,
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_text_size_is_never_less_than_the_text(value: Any, budget: Budget) -> None:
    assert text_size(value) >= len(str(value))
    assert text_size(value, mode=REPR) >= len(repr(value))
    if not isinstance(value, float | range | type({}.keys()) | type({}.values())):
        written = json.dumps(value if not isinstance(value, type({}.items())) else list(value))
        written = written.replace("<", "\\u003c")  # as Jinja's tojson writes them
        assert text_size(value, mode=JSON, default=str) >= len(written)


def test_text_size_of_a_text_is_its_length(budget: Budget) -> None:
    assert text_size("x" * 5000) == 5000
    assert budget.steps == 1


def test_text_size_stops_past_the_limit(budget: Budget) -> None:
    # A list of a million references to one big text: counted only as far as needed.
    many = ["x" * KIB] * 2_000
    assert MAX_OUTPUT < text_size(many) < MAX_OUTPUT + 8 * KIB
    assert budget.steps < 300
    assert text_size(["x"] * 1_000_000) > MAX_OUTPUT  # its commas alone


def test_text_size_charges_a_step_per_item(budget: Budget) -> None:
    text_size(list(range(1000)))
    assert 1000 <= budget.steps <= 1010


def test_text_size_counts_indentation(budget: Budget) -> None:
    flat = text_size([[1, 2], [3]], mode=JSON)
    indented = text_size([[1, 2], [3]], mode=JSON, indent=(1, 4))
    assert indented >= len(json.dumps([[1, 2], [3]], indent=4))
    assert indented > flat


def test_text_size_converts_what_json_has_no_type_for(budget: Budget) -> None:
    class Box:
        def __init__(self) -> None:
            self.inside = {"a": "x" * 100}

    size = text_size(Box(), mode=JSON, default=lambda box: box.inside)
    assert size >= len(json.dumps({"a": "x" * 100}))


def test_quoted_size_counts_exactly_when_the_bound_does_not_fit(budget: Budget) -> None:
    text_ = "a'b\\c" * 1000
    assert quoted_size(text_, REPR, room=10**9) == 4 * len(text_) + 2  # quick bound
    counted = quoted_size(text_, REPR, room=0)
    assert len(repr(text_)) <= counted <= len(repr(text_)) + text_.count("'")
    assert budget.steps > 0  # counting scans the text


@pytest.mark.parametrize("number", [0, 1, -1, 9, 10, 99, 2**64, -(10**300), 2**4096])
def test_digits_are_never_fewer(number: int) -> None:
    assert digits(number) >= len(str(number))


def test_text_refuses_before_building(budget: Budget) -> None:
    assert text("x", "the output") == "x"
    assert text([1, "a"], "the output") == "[1, 'a']"
    with pytest.raises(Refused) as caught:
        text(["x" * KIB] * 2000, "the output")
    assert "the output could make more than that" in caught.value.reason


def test_texts_joins_or_refuses(budget: Budget) -> None:
    assert texts(["a", 1, None], "join", "-") == "a-1-None"
    with pytest.raises(Refused) as caught:
        texts(["x" * MAX_OUTPUT, "y"], "join")
    assert "join would make 1,048,577" in caught.value.reason


def test_touch_is_the_size_in_steps(budget: Budget) -> None:
    assert touch("x" * (10 * KIB)) == 10 * limits.SCAN_STEPS
    assert touch(5) == 0
    assert touch(object()) == 0
    assert touch(["x" * KIB] * 8) >= 8 * limits.SCAN_STEPS


def test_line_count_is_never_less_than_splitlines() -> None:
    for text_ in ["", "a", "a\nb", "a\r\nb\rc\x0bd\x0ce\x1cf\x85g\u2028h", "\n\n"]:
        assert line_count(text_) >= len(text_.splitlines())


# --- formatting -----------------------------------------------------------------------------

PRINTF = [
    ("%s", "abc"),
    ("%5s|%-5s|%.2s", ("a", "b", "cde")),
    ("%d %i %u %x %X %o %c %%", (42, -7, 3, 255, 255, 8, 65)),
    ("%e %E %f %F %g %G", (1.5, 1e300, 1e308, -2.5, 1e-300, 123456789.0)),
    ("%.300f", 1e308),
    ("%*d|%-*d|%.*f", (5, 1, 6, 2, 3, 3.14159)),
    ("%(a)s %(b)r %(a)5d", {"a": 3, "b": "x"}),
    ("%(a(b))s", {"a(b)": "nested"}),
    ("%r %a", ("q'", "é")),
    ("%s", ([1, "a"],)),
    ("%#x %+d % d %05d", (255, 3, 3, 42)),
    ("%ld %hd %Lf", (1, 2, 1.5)),
    ("no specs", ()),
    ("%d", 2**4000),
]


@pytest.mark.parametrize(("form", "values"), PRINTF, ids=[form for form, _ in PRINTF])
def test_printf_size_is_never_less(form: str, values: Any, budget: Budget) -> None:
    assert printf_size(form, values) >= len(form % values)


@pytest.mark.parametrize(
    ("form", "values"),
    [("%500000000d", 1), ("%.500000000f", 1.0), ("%*s", (500000000, "x")), ("%.*d", (10**9, 1))],
)
def test_printf_size_sees_widths_and_precisions(form: str, values: Any, budget: Budget) -> None:
    assert printf_size(form, values) > 500_000_000


def test_printf_size_stops_where_python_refuses(budget: Budget) -> None:
    for form, values in [("%", ()), ("%(a)s", 1), ("%s %s", ("a",)), ("%(a", {"a": 1})]:
        assert printf_size(form, values) >= 0
        with pytest.raises((TypeError, ValueError)):
            form % values
    with pytest.raises(TypeError):
        printf_size("%*d", ("x", 1))  # as Python: * wants int


FIELDS = [
    ("abc", ""),
    ("abc", ">10"),
    ("abc", "*^11.2"),
    (42, ",d"),
    (2**4000, "_b"),
    (255, "#x"),
    (3.14159, "012.3f"),
    (1e308, ",.2f"),
    (0.5, "%"),
    (1 + 2j, ".3"),
    (True, "d"),
    ([1, 2], ""),
    (None, ""),
]


@pytest.mark.parametrize(("value", "spec"), FIELDS, ids=repr)
def test_field_size_is_never_less(value: Any, spec: str, budget: Budget) -> None:
    assert field_size(value, spec) >= len(format(value, spec))


def test_field_size_refuses_a_spec_it_cannot_read(budget: Budget) -> None:
    with pytest.raises(Refused) as caught:
        field_size(1, "%Y")
    assert caught.value.reason == "the format '%Y' is not one templates can use"


_PRINTABLE = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_ARGUMENTS = st.one_of(
    st.integers(-(10**30), 10**30), st.floats(allow_nan=False), _PRINTABLE, st.booleans()
)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    flags=st.text("-+ #0", max_size=3),
    width=st.integers(0, 40) | st.none(),
    precision=st.integers(0, 40) | st.none(),
    conversion=st.sampled_from("sradiuoxXeEfFgGc"),
    value=_ARGUMENTS,
)
def test_property_printf_size_is_never_less(
    flags: str, width: int | None, precision: int | None, conversion: str, value: Any
) -> None:
    form = "<%" + flags + ("" if width is None else str(width))
    form += ("" if precision is None else f".{precision}") + conversion + ">"
    try:
        written = form % (value,)
    except (TypeError, ValueError, OverflowError):
        return
    with rendering():
        assert printf_size(form, (value,)) >= len(written)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(
    spec=st.from_regex(
        r"(.?[<>=^])?[-+ ]?#?0?[0-9]{0,2}[,_]?(\.[0-9]{1,2})?[bcdeEfFgGnosxX%]?", fullmatch=True
    ),
    value=_ARGUMENTS,
)
def test_property_field_size_is_never_less(spec: str, value: Any) -> None:
    try:
        written = format(value, spec)
    except (TypeError, ValueError, OverflowError):
        return
    with rendering():
        assert field_size(value, spec) >= len(written)
