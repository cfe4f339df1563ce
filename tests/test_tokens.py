"""Cutting text into LLM-like tokens for stream steps."""

from __future__ import annotations

import random
import re

import pytest

from replay.tokens import PIECE, split_tokens

TEXTS = [
    "",
    " ",
    "   ",
    "\n",
    "\r\n",
    "\t\t",
    "a",
    "Hello, world!",
    "Hello,   world!  ",
    "  leading spaces",
    "trailing spaces   ",
    "line one\nline two\n\nline four\n",
    "windows\r\nline\r\n",
    "tab\tseparated\tvalues",
    "supercalifragilisticexpialidocious",
    "a" * 1000,
    "1234567890123",
    "snake_case_identifier_name",
    "don't stop-believing",
    "...!!!???",
    "(parentheses) [brackets] {braces}",
    'print("hi") -> 12 entries found',
    "https://example.com/path?q=1&r=2",
    "Ünïcödé wörds, naïve café",
    "école: e\u0301cole",  # a combining accent
    "日本語のテキストです。とても長い文章になります。",
    "中文文本\uff0c没有空格也可以切分。",  # with a fullwidth comma
    "한국어 텍스트입니다",
    "مرحبا بالعالم",
    "שלום עולם",
    "Привет, мир! Длинноесловобезпробелов",
    "emoji 👋 wave 🎉🎉 party",
    "skin tone 👋🏽 and family 👨\u200d👩\u200d👧",
    "flags 🇩🇪🇫🇷",
    "zero\u200bwidth\u200bspace",
    "non\u00a0breaking\u00a0space",
    "\u3000ideographic space\u3000",
    "math: ∑ x² ≤ ∞",
    "mixed123numbers456and789letters",
    "x" * 6 + " " + "y" * 7 + " " + "z" * 13,
]


@pytest.mark.parametrize("text", TEXTS)
def test_joining_the_tokens_gives_the_text_back(text: str) -> None:
    assert "".join(split_tokens(text)) == text


@pytest.mark.parametrize("text", TEXTS)
def test_no_token_has_more_than_a_piece_of_word_characters(text: str) -> None:
    for token in split_tokens(text):
        assert token  # never an empty token
        assert len(re.findall(r"\w", token)) <= PIECE, token


@pytest.mark.parametrize("text", TEXTS)
def test_a_token_is_leading_whitespace_then_a_word_piece_or_one_mark(text: str) -> None:
    shape = re.compile(rf"\s*(\w{{1,{PIECE}}}|[^\w\s])|\s+")
    for token in split_tokens(text):
        assert shape.fullmatch(token), token


def test_random_texts_round_trip() -> None:
    rng = random.Random(2024)
    alphabet = "ab cdé\n\t.,!?日本👋\u200d_-'0 9"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        tokens = split_tokens(text)
        assert "".join(tokens) == text
        assert all(len(re.findall(r"\w", token)) <= PIECE for token in tokens)


def test_words_carry_the_whitespace_before_them() -> None:
    assert split_tokens("Hello big world") == ["Hello", " big", " world"]
    assert split_tokens("a\nb") == ["a", "\nb"]


def test_punctuation_is_separate() -> None:
    assert split_tokens("Hello, world!") == ["Hello", ",", " world", "!"]
    assert split_tokens("don't") == ["don", "'", "t"]
    assert split_tokens("...") == [".", ".", "."]
    assert split_tokens("a -> b") == ["a", " -", ">", " b"]


def test_long_words_are_cut_into_pieces() -> None:
    assert split_tokens("supercalifragilistic") == ["superc", "alifra", "gilist", "ic"]
    assert split_tokens("123456789") == ["123456", "789"]
    assert split_tokens(" abcdefgh") == [" abcdef", "gh"]


def test_trailing_and_only_whitespace() -> None:
    assert split_tokens("x  ") == ["x", "  "]
    assert split_tokens("   ") == ["   "]
    assert split_tokens("") == []
    assert split_tokens("a\n\n") == ["a", "\n\n"]


def test_text_without_spaces_is_cut_too() -> None:
    tokens = split_tokens("日本語のテキストです")
    assert len(tokens) > 1
    assert "".join(tokens) == "日本語のテキストです"


def test_a_typical_sentence_has_a_plausible_number_of_tokens() -> None:
    text = "I found twelve changes since the last release. Handing over to coder."
    tokens = split_tokens(text)
    assert 12 <= len(tokens) <= 20
