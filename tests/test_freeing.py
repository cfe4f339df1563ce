"""Freeing large trees a piece at a time: everything goes, nothing still in use is touched."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import yaml

from replay import freeing
from replay.freeing import PIECE, Other, free


class Leaf:
    """A leaf that can be watched (a weak reference says when it is freed)."""


def tree(leaves: list[Leaf], width: int = 3 * PIECE, depth: int = 3) -> Any:
    """Nested dicts and lists of ``width`` items, ``depth`` deep, with watched leaves."""
    if depth == 0:
        leaf = Leaf()
        leaves.append(leaf)
        return leaf
    if depth % 2:
        return {f"k{i}": tree(leaves, width // 4 or 1, depth - 1) for i in range(width)}
    return [tree(leaves, width // 4 or 1, depth - 1) for _ in range(width)] + [("t", 1)]


def test_every_part_is_freed_and_the_tree_is_emptied() -> None:
    leaves: list[Leaf] = []
    root = {"steps": tree(leaves), "small": [1, 2, {"a": [3]}]}
    watched = [weakref.ref(leaf) for leaf in leaves]
    del leaves
    gc.disable()  # freed by reference counting alone, as a loading file is
    try:
        free(root)
        assert root == {}
        assert watched
        assert all(ref() is None for ref in watched)
    finally:
        gc.enable()


def test_parts_used_elsewhere_are_left_whole() -> None:
    kept = {"data": [{"x": i} for i in range(PIECE * 2)]}
    also = [Leaf() for _ in range(PIECE * 2)]
    root = [kept, [also], {"other": also}, *[{"n": i} for i in range(PIECE * 3)]]
    free(root)
    assert root == []
    assert kept == {"data": [{"x": i} for i in range(PIECE * 2)]}
    assert len(also) == PIECE * 2


def test_other_kinds_of_container_are_taken_apart() -> None:
    node = yaml.compose("steps:\n" + "".join(f"  - chunk: '{i}'\n" for i in range(300)))
    assert isinstance(node, yaml.MappingNode)
    steps = node.value[0][1]
    items = [weakref.ref(item) for item in steps.value]

    def parts(value: yaml.CollectionNode) -> list[Any]:
        found, value.value = value.value, []
        if isinstance(value, yaml.MappingNode):
            return [part for pair in found for part in pair]
        return list(found)

    def heavy(value: yaml.CollectionNode) -> bool:
        return len(value.value) > PIECE

    del steps
    free(node, Other(yaml.CollectionNode, parts, heavy))
    assert node.value == []
    assert all(ref() is None for ref in items)


def test_a_leaf_or_empty_tree_is_fine() -> None:
    free({})
    free([])
    free("text")
    free(None)


def test_a_long_list_is_freed_a_piece_at_a_time() -> None:
    removed: list[int] = []

    class Watched(list[Any]):
        def __delitem__(self, index: Any) -> None:
            before = len(self)
            super().__delitem__(index)
            removed.append(before - len(self))

    items = Watched(str(i) for i in range(PIECE * 10 + 3))
    freeing._take(items, (list, dict), None)
    assert items == []
    assert sum(removed) == PIECE * 10 + 3
    assert max(removed) <= PIECE
