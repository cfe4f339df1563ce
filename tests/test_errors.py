"""The shared did-you-mean: case-insensitive, separator-blind and typo-tolerant."""

from __future__ import annotations

import pytest

from replay.errors import ScenarioNotFound, VariablesInvalid, did_you_mean, nearest

TYPES = ["CHAT_REQUESTED", "IS_WAITING", "CHAT_INPUT", "EVENT", "CHAT", "PAUSE_STATUS"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("chat", "CHAT"),
        ("Chat", "CHAT"),
        ("event", "EVENT"),
        ("chat_input", "CHAT_INPUT"),
        ("chat-input", "CHAT_INPUT"),
        ("is waiting", "IS_WAITING"),
        ("pause_stauts", "PAUSE_STATUS"),
        ("CHAT_REQUESTD", "CHAT_REQUESTED"),
        ("chat_requestd", "CHAT_REQUESTED"),
    ],
)
def test_nearest_ignores_case_and_separators_and_tolerates_typos(word: str, expected: str) -> None:
    assert nearest(word, TYPES) == expected


def test_nearest_prefers_an_exact_match_after_folding_to_a_close_one() -> None:
    # 'chat' is as close to 'CHAT_' spellings as it is to 'CHAT', but only CHAT is it.
    assert nearest("CHAT", ["CHATS", "chat"]) == "chat"
    assert nearest("wait-connect", ["wait", "wait_connect", "wait_connected"]) == "wait_connect"


def test_nearest_suggests_nothing_for_a_word_far_from_every_choice() -> None:
    assert nearest("xylophone", TYPES) is None
    assert nearest("chat", []) is None
    assert did_you_mean("xylophone", TYPES) == ""


def test_did_you_mean_quotes_the_choice_as_spelled() -> None:
    assert did_you_mean("message", ["Message", "chunk"]) == " (did you mean 'Message'?)"
    assert did_you_mean("MESSAGE", ["message", "chunk"]) == " (did you mean 'message'?)"


def test_errors_that_name_things_suggest_case_insensitively() -> None:
    assert "did you mean 'chat'" in str(ScenarioNotFound("CHAT", ["chat", "all"]))
    assert "did you mean 'user'" in str(VariablesInvalid("s", ["USER"], ["user", "count"]))
