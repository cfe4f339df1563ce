"""The server's shared state: a mapping changed only by updates, declarations and resets,
each told to the listeners."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replay.state import State


class Heard(list[tuple[dict[str, Any], str]]):
    def __call__(self, changes: Mapping[str, Any], by: str) -> None:
        self.append((dict(changes), by))


def listened(state: State) -> Heard:
    heard = Heard()
    state.listeners.append(heard)
    return heard


def test_a_state_starts_with_its_declared_values() -> None:
    state = State({"paused": False, "turns": 1})
    assert dict(state) == {"paused": False, "turns": 1}
    assert state["paused"] is False
    assert len(state) == 2
    assert state.version == 0


def test_updates_set_keys_and_tell_the_listeners() -> None:
    state = State({"paused": False})
    heard = listened(state)
    state.update({"paused": True, "input": "Hi"}, "route POST /chat")
    assert dict(state) == {"paused": True, "input": "Hi"}
    assert heard == [({"paused": True, "input": "Hi"}, "route POST /chat")]
    assert state.version == 1
    state.update({}, "nothing")
    assert state.version == 1
    assert len(heard) == 1


def test_values_are_copies() -> None:
    given = {"items": [1]}
    state = State({"items": given["items"]})
    given["items"].append(2)
    snapshot = state.snapshot()
    snapshot["items"].append(3)
    assert state["items"] == [1]


def test_a_reset_puts_the_declared_values_back() -> None:
    state = State({"paused": True})
    state.update({"paused": False, "extra": 1}, "PUT /state")
    heard = listened(state)
    state.reset()
    assert dict(state) == {"paused": True}
    assert heard == [({"paused": True}, "reset")]


def test_a_new_declaration_adds_and_drops_keys_and_keeps_values_set() -> None:
    state = State({"paused": True, "turns": 1})
    state.update({"paused": False}, "route POST /break")
    heard = listened(state)
    state.declare({"paused": True, "chat": False})
    assert dict(state) == {"paused": False, "chat": False}
    assert heard == [({"chat": False}, "protocol file")]
    state.declare({"paused": True, "chat": False})
    assert len(heard) == 1  # nothing new
    state.reset()
    assert dict(state) == {"paused": True, "chat": False}


def test_a_declared_value_that_changes_takes_effect() -> None:
    state = State({"paused": True, "turns": 1})
    state.update({"paused": False, "turns": 5}, "route POST /break")
    heard = listened(state)
    state.declare({"paused": True, "turns": 2})  # the file's turns changed; paused did not
    assert dict(state) == {"paused": False, "turns": 2}
    assert heard == [({"turns": 2}, "protocol file")]
    state.declare({"paused": True, "turns": 2})  # the same declaration again: nothing
    assert heard == [({"turns": 2}, "protocol file")]
