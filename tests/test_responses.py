"""JSON answers: always encodable, and encodable piece by piece."""

from __future__ import annotations

import json
from typing import Any

import pytest

import replay.responses
from replay.responses import JSONAnswer, json_bytes

VALUES: list[Any] = [
    {},
    [],
    {"a": [1, 2, {"b": [3, {"c": []}]}], "c": {}, "d": [], "e": "é", "f": None, "g": 1.5},
    {"timeline": [{"offset": 0.1, "frame": "x" * 100} for _ in range(50)], "steps": [[1], [2]]},
    {True: 1, None: 2, 1.5: 3, 4: [5]},
    [[1, [2, [3]]], "text", False],
    {"frame": "\ud800 half a pair", "cues": [{"frame": "\udfff"}]},
    "just text",
    7,
]


@pytest.mark.parametrize("value", VALUES)
def test_piece_by_piece_is_what_a_json_answer_writes(value: Any) -> None:
    assert json_bytes(value) == JSONAnswer(value).body
    assert json.loads(json_bytes(value)) == json.loads(JSONAnswer(value).body)


def test_each_item_is_encoded_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[Any] = []
    real = replay.responses._dumps

    def spy(value: Any, ascii: bool) -> str:
        encoded.append(value)
        return real(value, ascii)

    monkeypatch.setattr(replay.responses, "_dumps", spy)
    cues = [{"offset": index, "frame": "f"} for index in range(1000)]
    json_bytes({"name": "long", "timeline": cues})
    # The answer's fields and the cues, each one call: none holds the interpreter long.
    assert max(len(json.dumps(value)) for value in encoded) < 100
    assert sum(1 for value in encoded if isinstance(value, dict)) == 1000


def test_what_json_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        json_bytes({"x": [float("nan")]})


def test_a_long_answer_is_joined_and_encoded_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay.responses, "BATCH_CHARS", 1000)
    cues = [{"offset": index, "frame": "é" * 50} for index in range(500)]
    half = {"cues": [*cues, {"frame": "\ud800"}]}
    for value in ({"timeline": cues}, half):
        assert json_bytes(value) == JSONAnswer(value).body
