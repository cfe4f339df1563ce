"""Durations as scenario files write them."""

from __future__ import annotations

import math
import random

import pytest

from replay.durations import MAX_SECONDS, format_seconds, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (0, 0.0),
        (0.5, 0.5),
        (2, 2.0),
        ("0.5", 0.5),
        ("2", 2.0),
        ("2s", 2.0),
        ("500ms", 0.5),
        ("1.5m", 90.0),
        ("1m", 60.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("  250 ms  ", 0.25),
        ("0ms", 0.0),
        (MAX_SECONDS, MAX_SECONDS),
        ("60m", 3600.0),
    ],
)
def test_parse_duration_accepts_numbers_and_units(value: object, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (True, "boolean"),
        (False, "boolean"),
        (-1, "zero or more"),
        (-0.001, "zero or more"),
        (math.nan, "zero or more"),
        (math.inf, "zero or more"),
        ("-1s", "not a duration"),
        ("1h", "not a duration"),
        ("soon", "not a duration"),
        ("", "not a duration"),
        ("1e3", "not a duration"),
        ("1 2", "not a duration"),
        ("s", "not a duration"),
        (None, "not a duration"),
        ([1], "not a duration"),
        ({"s": 1}, "not a duration"),
        (MAX_SECONDS + 0.001, "longer than the limit"),
        ("61m", "longer than the limit"),
        ("3600001ms", "longer than the limit"),
    ],
)
def test_parse_duration_refuses_garbage(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_duration(value)


def test_absurd_duration_hints_at_milliseconds() -> None:
    with pytest.raises(ValueError, match="'500ms'"):
        parse_duration(5000)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (0.001, "1ms"), (1, "1s"), (2, "2s"), (1.5, "1.5s"), (90, "90s")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_format_then_parse_round_trips() -> None:
    rng = random.Random(20240501)
    values = [rng.randrange(0, 3_600_000) / 1000 for _ in range(500)] + [0.0, 0.001, 0.999, 1.0]
    for seconds in values:
        assert parse_duration(format_seconds(seconds)) == pytest.approx(seconds, rel=1e-5), seconds


@pytest.mark.parametrize("text", ["1" + " " * 16_000 + "x", " " * 100_000 + "1s", "9" * 70])
def test_long_strings_are_not_durations_and_are_shown_short(text: str) -> None:
    # Once a regex with a run of spaces on both sides took seconds on such strings.
    with pytest.raises(ValueError, match="is not a duration") as refused:
        parse_duration(text)
    assert len(str(refused.value)) < 80


def test_spaces_around_a_duration_are_fine() -> None:
    assert parse_duration("  2 s ") == 2.0
    assert parse_duration("\t500 ms\n") == 0.5
