"""The server's shared state: a small mapping that declared HTTP routes and scenarios share.

A protocol file declares the state's initial values (``state: {paused: false}``); a route
can read and set it (``POST /break`` flips ``paused``), a ``set`` step sets it, and every
template reads it as ``state.NAME``. Values are plain JSON. The state lives in one server
process; :meth:`State.reset` puts the declared values back (``POST /reset`` does).

Nothing here does I/O or waits: listeners are called synchronously with each change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: Called with ``(changes, by)`` after each update: the keys set and their new values,
#: and who set them (``"route POST /break"``, ``"run 3f2a… step 4"``, ``"reset"``).
Listener = Callable[[Mapping[str, Any], str], None]


class State(Mapping[str, Any]):
    """The live state: read it as a mapping; change it only with :meth:`update`."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self._initial: dict[str, Any] = copy.deepcopy(dict(initial or {}))
        self._values: dict[str, Any] = copy.deepcopy(self._initial)
        self.listeners: list[Listener] = []
        #: How many updates so far (a change counter for pollers and tests).
        self.version = 0

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the values now, safe to keep or to change."""
        return copy.deepcopy(self._values)

    def update(self, changes: Mapping[str, Any], by: str) -> None:
        """Set each key in ``changes`` (new keys are added) and tell the listeners."""
        if not changes:
            return
        self._values.update(copy.deepcopy(dict(changes)))
        self.version += 1
        for listener in list(self.listeners):
            listener(changes, by)

    def declare(self, initial: Mapping[str, Any]) -> None:
        """Take a (re)loaded protocol file's declared values: a key it adds, or whose
        declared value it changes, gets that value; a key it no longer declares goes; the
        others keep what routes and runs set (editing a route loses no state)."""
        declared = copy.deepcopy(dict(initial))
        changed = {
            key: value
            for key, value in declared.items()
            if key not in self._initial or self._initial[key] != value
        }
        for key in set(self._initial) - set(declared):
            self._values.pop(key, None)
        self._initial = declared
        if changed:
            self.update(changed, "protocol file")

    def reset(self) -> None:
        """Put the declared initial values back, and drop every other key."""
        self._values = copy.deepcopy(self._initial)
        self.version += 1
        for listener in list(self.listeners):
            listener(self.snapshot(), "reset")
