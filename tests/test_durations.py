"""Durations as scenario files write them."""

from __future__ import annotations

import math
import random

import pytest

from replay.durations import (
    MAX_BARE_SECONDS,
    MAX_SECONDS,
    format_seconds,
    parse_duration,
    spoken,
)


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
        (MAX_BARE_SECONDS, MAX_BARE_SECONDS),
        (30, 30.0),
        ("60", 60.0),
        ("3600s", MAX_SECONDS),
        ("60m", 3600.0),
        ("500s", 500.0),
        ("1500ms", 1.5),
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
        (MAX_SECONDS * 1000 + 1, "longer than the limit"),
        ("3600.001s", "longer than the limit"),
        ("61m", "longer than the limit"),
        ("3600001ms", "longer than the limit"),
    ],
)
def test_parse_duration_refuses_garbage(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "written", "reading"),
    [
        (500, "500", "8 min 20 s"),
        ("500", "500", "8 min 20 s"),
        (500.0, "500", "8 min 20 s"),
        (250, "250", "4 min 10 s"),
        (61, "61", "1 min 1 s"),
        (90.5, "90.5", "1 min 30.5 s"),
        (1500, "1500", "25 min"),
        (3600, "3600", "1 h"),
        (" 100 ", "100", "1 min 40 s"),
    ],
)
def test_a_bare_number_over_a_minute_is_refused_as_a_likely_slip(
    value: object, written: str, reading: str
) -> None:
    # delay: 500 almost always means 500 ms; the error names both readings.
    with pytest.raises(ValueError, match="is read as seconds") as refused:
        parse_duration(value)
    assert str(refused.value) == (
        f"{written} is read as seconds ({reading}); write {written}ms for milliseconds "
        f"or {written}s to mean seconds"
    )


def test_each_reading_the_error_offers_is_a_valid_duration() -> None:
    for value in (61, 500, 1500, 3600, 90.5):
        with pytest.raises(ValueError, match="ms for milliseconds") as refused:
            parse_duration(value)
        for advice in str(refused.value).split("write ")[1].split(" for ")[0:1]:
            assert parse_duration(advice) == pytest.approx(float(value) / 1000)
        assert parse_duration(f"{value}s") == pytest.approx(float(value))


def test_a_bare_number_too_long_as_seconds_offers_only_milliseconds() -> None:
    with pytest.raises(ValueError, match="over the limit") as refused:
        parse_duration(5000)
    assert str(refused.value) == (
        "5000 is read as seconds (1 h 23 min 20 s), over the limit of 1 h for one pause; "
        "write 5000ms for milliseconds"
    )
    assert parse_duration("5000ms") == 5.0


def test_a_number_with_a_unit_is_never_read_as_a_slip() -> None:
    assert parse_duration("61s") == 61.0
    assert parse_duration("2m") == 120.0
    assert parse_duration("59999ms") == pytest.approx(59.999)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (0.25, "250 ms"),
        (1, "1 s"),
        (60, "1 min"),
        (500, "8 min 20 s"),
        (3661, "1 h 1 min 1 s"),
    ],
)
def test_spoken(seconds: float, text: str) -> None:
    assert spoken(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (0.001, "1ms"), (1, "1s"), (2, "2s"), (1.5, "1.5s"), (90, "90s")],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_format_then_parse_round_trips() -> None:
    rng = random.Random(20240501)
    values = [rng.randrange(0, 3_600_000) / 1000 for _ in range(500)] + [0.0, 0.001, 0.999, 1.0]
    values += [60.0, 60.001, 3600.0]
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
