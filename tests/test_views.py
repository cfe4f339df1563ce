"""Merging the nodes' answers (no I/O): runs by id, the journal by time, and answers cut
to fit one message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from replay.backplane import views
from replay.backplane.views import fit, merge_journal, merge_run, merge_runs


def copy(run_id: str, origin: str, sent: int, clients: int, **more: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "origin": origin,
        "state": "running",
        "sent": sent,
        "deliveries": sent * clients,
        "clients": clients,
        "started_at": 100.0,
        **more,
    }


def test_a_run_takes_its_origins_fields_and_sums_the_copies() -> None:
    merged = merge_run(
        {
            "b": copy("r", "a", 5, 2, state="finished", speed=1.0),
            "a": copy("r", "a", 5, 1, speed=2.0),
        },
        alive={"a", "b"},
    )
    assert (merged["speed"], merged["state"]) == (2.0, "running")  # a's copy
    assert (merged["sent"], merged["clients"], merged["deliveries"]) == (10, 3, 15)
    assert list(merged["nodes"]) == ["a", "b"]
    assert merged["nodes"]["b"]["state"] == "finished"
    assert (merged["origin"], merged["origin_lost"]) == ("a", False)


def test_a_run_whose_origin_was_lost_is_still_listed_and_flagged() -> None:
    merged = merge_run({"c": copy("r", "a", 4, 1), "b": copy("r", "a", 4, 2)}, alive={"b", "c"})
    assert (merged["origin"], merged["origin_lost"]) == ("a", True)
    assert merged["clients"] == 3
    assert list(merged["nodes"]) == ["b", "c"]


def test_runs_are_listed_once_each_newest_first() -> None:
    runs = merge_runs(
        {
            "a": [copy("new", "a", 1, 1, started_at=200.0), copy("old", "b", 1, 1)],
            "b": [copy("old", "b", 1, 1), copy("mine", "b", 1, 1, started_at=150.0)],
        },
        alive={"a", "b"},
    )
    assert [r["run_id"] for r in runs] == ["new", "mine", "old"]
    assert runs[2]["clients"] == 2


def test_the_journal_is_merged_by_time_and_cut_to_the_newest() -> None:
    lists = {
        "b": [{"time": 2.0, "seq": 1, "node": "b"}, {"time": 4.0, "seq": 2, "node": "b"}],
        "a": [{"time": 1.0, "seq": 1, "node": "a"}, {"time": 3.0, "seq": 2, "node": "a"}],
    }
    assert [e["time"] for e in merge_journal(lists, None)] == [1.0, 2.0, 3.0, 4.0]
    assert [e["node"] for e in merge_journal(lists, 2)] == ["a", "b"]


def test_an_answer_too_large_for_one_message_is_cut_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views, "MAX_ANSWER_BYTES", 1000)
    entries = [{"seq": n, "frame": "x" * 90} for n in range(50)]
    small = fit({"entries": entries[:3], "forgotten": 0}, "entries", keep_tail=True)
    assert (len(small["entries"]), small["truncated"]) == (3, False)
    cut = fit({"entries": entries, "forgotten": 0}, "entries", keep_tail=True)
    assert cut["truncated"] is True
    assert len(json.dumps(cut)) <= 1000
    assert cut["entries"] == entries[-len(cut["entries"]) :]  # the newest kept
    assert len(cut["entries"]) >= 8
    first = fit({"runs": entries}, "runs")
    assert first["runs"] == entries[: len(first["runs"])]
