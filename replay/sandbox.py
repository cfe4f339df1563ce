"""The environment templates render in: Jinja2's immutable sandbox, with every way a
template can build a value or spend time guarded.

Jinja's sandbox keeps a template away from Python's internals, but not from asking for a
6 GB string (``{{ 'x' * 1500000000 }}``) or looping for minutes. :class:`Sandbox` routes
every operator, attribute, item, call, filter, test and output through the guards of
:mod:`replay.guards`, and rewrites each template's tree (:class:`Metered`) so that what
Jinja has no hook for is counted too: loop items, loop bodies, macros, comparisons, ``~``.

A render must run inside :func:`replay.limits.rendering`; over a limit it raises
:class:`replay.limits.Refused`.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from jinja2 import nodes
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from replay import filters, guards
from replay.limits import (
    MAX_DEPTH,
    Refused,
    charged,
    compiling,
    current,
    text,
    texts,
    touch,
)

#: Steps charged for a call, and for reading an attribute or item: what the sandbox's
#: checks cost, in loop items (bench/template_budget.py).
CALL_STEPS = 3
ATTRIBUTE_STEPS = 2
#: Nodes of a loop body, macro or block per step charged each time it runs: what Jinja
#: evaluates without any hook (constants, names, conditions, literals) costs little.
NODES_PER_STEP = 8


class Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, with every operator, attribute, item, call, filter,
    test and output guarded; see the module's documentation."""

    intercepted_binops = frozenset(guards.BINOPS)
    intercepted_unops = frozenset({"+", "-"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=_finalize, **options)
        self.filters = {**filters.filters(), **_INTERNAL}
        self.tests = filters.tests()  # type: ignore[assignment]  # typed as FunctionType

    @staticmethod
    def concat(pieces: Iterable[str]) -> str:
        """The output of a macro, a block or a ``{% set %}`` block: checked, then joined."""
        pieces = list(pieces)
        current().make(sum(map(len, pieces)), "the output of a macro or block")
        return "".join(pieces)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        Metered().visit(source)
        with compiling():
            return super()._generate(source, name, filename, defer_init)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return guards.binop(operator, left, right)

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        return guards.unop(operator, arg)

    def getattr(self, obj: Any, attribute: str) -> Any:
        current().charge(ATTRIBUTE_STEPS)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget = current()
        budget.charge(ATTRIBUTE_STEPS)
        if isinstance(argument, slice):
            _check_slice(obj, argument)
        elif isinstance(argument, tuple):
            budget.charge(touch(argument))  # hashed
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        return guards.guarded_format(value, self)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.charge(CALL_STEPS)
        if not __self.is_safe_callable(__obj):
            return super().call(__context, __obj)  # raises SecurityError
        if budget.depth >= MAX_DEPTH:
            raise Refused(
                f"calls nest more than {MAX_DEPTH} deep (a macro that calls itself without "
                "end?); nest fewer calls"
            )
        budget.depth += 1
        try:
            if isinstance(__obj, types.BuiltinMethodType | types.MethodDescriptorType):
                # Jinja passes a loop's or block's variables along, for context functions.
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
                return guards.call_method(__obj, args, kwargs)
            if isinstance(__obj, LoopContext) and args:
                args = (charged(args[0]), *args[1:])  # a recursive loop's next level
            elif getattr(__obj, "__func__", None) is LoopContext.changed:
                budget.charge(sum(map(touch, args)))  # compared with the last ones
            elif __obj is dict:
                args = tuple(_read(arg) for arg in args)
                size = sum(len(arg) for arg in args) + len(kwargs)
                budget.make(0, "dict()", items=size)
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1


def _read(value: Any) -> Any:
    """An argument C code will read in full: a mapping or sequence as it is, any other
    iterable as a list, read (and charged) item by item."""
    if isinstance(value, Mapping | list | tuple | str):
        return value
    return list(charged(value))


def _check_slice(obj: Any, part: slice) -> None:
    """Before ``obj[part]``: a slice of a text or sequence is a copy, counted as built."""
    if isinstance(obj, str | list | tuple):
        size = len(range(*part.indices(len(obj))))
        if isinstance(obj, str):
            current().make(size, "a slice", wide=not obj.isascii())
        else:
            current().make(0, "a slice", items=size)


def _slice(obj: Any, start: Any, stop: Any, step: Any) -> Any:
    """``obj[start:stop:step]`` (Jinja writes a slice as Python, with no hook)."""
    current().charge(ATTRIBUTE_STEPS)
    part = slice(start, stop, step)
    _check_slice(obj, part)
    return obj[part]


def _finalize(value: Any) -> str:
    """What ``{{ value }}`` writes: its text, refused before it is built if too long."""
    current().charge(1)
    return text(value, "the output")


def _iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    return charged(iterable)  # a step an item, whatever a template passes


def _charge(steps: int) -> None:
    current().charge(steps)


def _spread(values: Iterable[Any]) -> tuple[Any, ...]:
    """The values of ``f(*values)``, read (and charged) one by one."""
    return tuple(charged(values))


def _spread_mapping(mapping: Any) -> Any:
    """The mapping of ``f(**mapping)``, charged for Python copying it."""
    current().charge(len(mapping) // 16 if isinstance(mapping, Mapping) else 0)
    return mapping


def _concat(*values: Any) -> str:
    current().charge(1)
    return texts(values, "'~'")


#: The filters :class:`Metered` writes into templates. Templates can call them too (by
#: name, or through map()): none can do more than what it guards, or give steps back.
_INTERNAL: dict[str, Callable[..., Any]] = {
    "_iterate": _iterate,
    "_charge": _charge,
    "_compare": guards.compare,
    "_concat": _concat,
    "_slice": _slice,
    "_spread": _spread,
    "_spread_mapping": _spread_mapping,
}


class Metered(NodeTransformer):
    """Rewrites a template's tree so that its work is counted: a ``for`` goes over its
    items through ``_iterate`` (a step each); every loop body, macro, call block and block
    starts by charging its size; comparisons, ``~``, slices and ``*args`` call guarded
    functions (Jinja's sandbox has no hook for them)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(node.iter, "_iterate")
        _charge_body(node.body)
        return node

    def _visit_body(self, node: nodes.Macro | nodes.CallBlock | nodes.Block) -> nodes.Node:
        self.generic_visit(node)
        _charge_body(node.body)
        return node

    visit_Macro = visit_CallBlock = visit_Block = _visit_body

    def _visit_arguments(self, node: nodes.Call | nodes.Filter | nodes.Test) -> nodes.Node:
        # f(*values) and f(**mapping): Python builds the arguments before any hook runs.
        self.generic_visit(node)
        if node.dyn_args is not None:
            node.dyn_args = _filter(node.dyn_args, "_spread")
        if node.dyn_kwargs is not None:
            node.dyn_kwargs = _filter(node.dyn_kwargs, "_spread_mapping")
        return node

    visit_Call = visit_Filter = visit_Test = _visit_arguments

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        chain: list[nodes.Expr] = []
        for operand in node.ops:
            chain += [nodes.Const(operand.op), operand.expr]
        return _filter(node.expr, "_compare", chain)

    def visit_ScopedEvalContextModifier(self, node: nodes.ScopedEvalContextModifier) -> Any:
        # {% autoescape %} stays off: escaped output, and the Markup values it makes
        # (whose +, % and join escape the other side), would be up to five times longer
        # than predicted. The loader refuses such templates; this is the second lock.
        self.generic_visit(node)
        return node.body

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier) -> Any:
        return None  # removed

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if not isinstance(node.arg, nodes.Slice):
            return node  # environment.getitem sees it
        bounds = (node.arg.start, node.arg.stop, node.arg.step)
        return _filter(node.node, "_slice", [bound or nodes.Const(None) for bound in bounds])

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node.nodes[0], "_concat", node.nodes[1:])


def _filter(node: nodes.Node, name: str, args: Iterable[nodes.Node] = ()) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=node.lineno)


def _charge_body(body: list[nodes.Node]) -> None:
    """Start ``body`` with a statement that charges, each time it runs, a step per
    NODES_PER_STEP nodes in it (a small body is paid for by its loop item or call)."""
    size = sum(1 for node in body for _ in itertools.chain((node,), node.find_all(nodes.Node)))
    if size >= NODES_PER_STEP:
        body.insert(0, nodes.ExprStmt(_filter(nodes.Const(size // NODES_PER_STEP), "_charge")))
