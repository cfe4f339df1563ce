"""Large trees of objects freed a piece at a time.

When the last reference to a tree of objects goes, CPython frees the whole tree in one
call into C, and the thread holds the interpreter (the GIL) throughout, whatever
``sys.getswitchinterval()`` says: freeing the YAML nodes of a 1 MB scenario file takes
25 ms, the positions of its values 10 ms, its document 8 ms. A thread that reads a long
scenario beside the event loop would make every frame due meanwhile that late.
:func:`free` takes such a tree apart in a Python loop instead, freeing a few pieces at a
time, so that the interpreter can switch threads between them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

#: Parts freed at once, at most (each a leaf, a tuple, or a container of at most this
#: many leaves): some microseconds.
PIECE = 64

#: References to a part popped off the pending list when nothing else holds it: the
#: local name and :func:`sys.getrefcount`'s argument.
_OWNED = 2


class Other:
    """How :func:`free` takes apart another kind of container: ``parts(value)`` returns
    the parts of a ``kind`` and detaches them from it; ``heavy(value)`` says whether it
    is worth taking apart (more than a piece of parts, or containers among them), else
    it is freed whole."""

    def __init__(
        self, kind: type, parts: Callable[[Any], list[Any]], heavy: Callable[[Any], bool]
    ) -> None:
        self.kind = kind
        self.parts = parts
        self.heavy = heavy


def free(tree: Any, other: Other | None = None) -> None:
    """Take ``tree`` (dicts and lists, nested) apart and free it a piece at a time. The
    caller promises that nothing else uses ``tree``: it is emptied. A part something
    else still references is left whole (dropping it frees nothing); tuples, strings
    and other objects are freed whole; ``other`` takes apart one more kind of container.
    """
    kinds: tuple[type, ...] = (list, dict) if other is None else (list, dict, other.kind)
    pending = [tree]
    del tree
    owned = True  # the tree itself: the caller said so
    while pending:
        part = pending.pop()
        if owned or sys.getrefcount(part) <= _OWNED:
            if type(part) is dict:
                pending.extend(_take_dict(part, kinds, other))
            elif type(part) is list:
                pending.extend(_take(part, kinds, other))
            elif other is not None and isinstance(part, other.kind):
                pending.extend(_take(other.parts(part), kinds, other))
        owned = False
        # Dropping the part frees it if nothing else holds it: it is empty by now.
        del part


def _take(items: list[Any], kinds: tuple[type, ...], other: Other | None) -> list[Any]:
    """Empty ``items`` a piece at a time, but for the heavy containers among them (more
    than a piece of parts, or a container among them): those are returned, to be taken
    apart in turn."""
    heavy = [item for item in items if isinstance(item, kinds) and _heavy(item, kinds, other)]
    while items:
        del items[-PIECE:]
    return heavy


def _take_dict(mapping: dict[Any, Any], kinds: tuple[type, ...], other: Other | None) -> list[Any]:
    """:func:`_take` for a dict: an item at a time (listing or clearing a dict of 100,000
    items is a millisecond or more in one call)."""
    heavy = []
    pop = mapping.popitem
    while mapping:
        value = pop()[1]
        if isinstance(value, kinds) and _heavy(value, kinds, other):
            heavy.append(value)
        del value
    return heavy


def _heavy(value: Any, kinds: tuple[type, ...], other: Other | None) -> bool:
    if type(value) is dict:
        value = value.values()
    elif type(value) is not list:
        return other is None or other.heavy(value)
    if len(value) > PIECE:
        return True
    return any(isinstance(item, kinds) for item in value)
