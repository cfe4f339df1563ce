"""The journal: what each client was sent and sent back (no I/O)."""

from __future__ import annotations

import json
from typing import Any

from replay.journal import Journal


def sent(
    frame: str, to: str | None = None, endpoint: str = "/ws", run: str = "r1"
) -> dict[str, Any]:
    return {
        "event": "frame.sent",
        "seq": 1,
        "time": 1.0,
        "run_id": run,
        "scenario": "s",
        "step": "0",
        "endpoint": endpoint,
        "to": to,
        "clients": 1,
        "frame": frame,
    }


def connection(kind: str, client: str, endpoint: str = "/ws") -> dict[str, Any]:
    return {
        "event": f"client.{kind}",
        "seq": 1,
        "time": 1.0,
        "client": client,
        "endpoint": endpoint,
    }


def message(kind: str, text: str) -> str:
    return json.dumps({"message_type": kind, "message": text})


def test_a_client_sees_what_it_sent_what_was_addressed_to_it_and_broadcasts_while_there() -> None:
    journal = Journal()
    journal.record(sent(message("EVENT", "before anyone")))
    journal.record(connection("connected", "a"))
    journal.record(sent(message("EVENT", "to all")))
    journal.record(sent(message("EVENT", "to b"), to="b"))
    journal.record(sent(message("EVENT", "to a"), to="a"))
    journal.record(sent('{"type":"default","content":"x"}', endpoint="/ws/stream"))
    journal.received("a", "/ws", message("CHAT_INPUT", "hi"), ["r1"])
    journal.record(connection("disconnected", "a"))
    journal.record(sent(message("EVENT", "after a left")))
    seen = [entry.get("frame") for entry in journal.entries(client="a")]
    assert seen == [
        None,  # connected
        message("EVENT", "to all"),
        message("EVENT", "to a"),
        message("CHAT_INPUT", "hi"),
        None,  # disconnected
    ]


def test_filters_combine() -> None:
    journal = Journal()
    journal.record(sent(message("CHAT_REQUESTED", "go"), to="a", run="r1"))
    journal.record(sent(message("EVENT", "other"), to="a", run="r2"))
    journal.received("a", "/ws", message("CHAT_INPUT", "yes"), ["r1"])
    journal.record(
        {"event": "frame.received", "seq": 9, "time": 2.0, "client": "a", "endpoint": "/ws"}
    )  # /ws frames come through received(), with their runs: not twice
    assert [e["message_type"] for e in journal.entries(run="r1")] == [
        "CHAT_REQUESTED",
        "CHAT_INPUT",
    ]
    assert [e["direction"] for e in journal.entries(client="a", direction="received")] == [
        "received"
    ]
    assert journal.entries(message_type="EVENT")[0]["run_id"] == "r2"
    assert len(journal.entries(limit=1)) == 1
    assert journal.entries(limit=1)[0]["direction"] == "received"


def test_it_is_bounded_and_counts_what_it_forgot() -> None:
    journal = Journal(max_entries=3, max_bytes=1000)
    for index in range(5):
        journal.record(sent(message("EVENT", str(index))))
    assert len(journal) == 3
    assert journal.forgotten == 2
    journal.record(sent("x" * 900))
    journal.record(sent("y" * 900))  # over the bytes: older entries go
    assert [len(e["frame"]) for e in journal.entries()] == [900]
    journal.clear()
    assert (len(journal), journal.forgotten) == (0, 0)


def test_a_journal_of_no_entries_keeps_nothing() -> None:
    journal = Journal(max_entries=0)
    journal.record(sent("x"))
    journal.received("a", "/ws", "y", [])
    assert journal.entries() == []


def test_requests_to_declared_routes_are_received_on_http() -> None:
    journal = Journal()
    frame = json.dumps({"method": "POST", "path": "/chat", "query": {"user_input": "Hi"}})
    journal.record(
        {
            "event": "http.request",
            "seq": 3,
            "time": 1.0,
            "method": "POST",
            "path": "/chat",
            "route": "/chat",
            "message_type": "POST /chat",
            "status": 200,
            "client": "tab-1",
            "query": {"user_input": "Hi"},
            "params": {},
            "endpoint": "http",
            "frame": frame,
            "runs": ["r1"],
        }
    )
    [entry] = journal.entries(client="tab-1", direction="received", endpoint="http")
    assert (entry["message_type"], entry["status"], entry["frame"]) == ("POST /chat", 200, frame)
    assert journal.entries(run="r1") == [entry]
    assert journal.entries(message_type="POST /chat") == [entry]
