"""Scenario YAML written for people, fast: block style, plain words where YAML reads
them back as the same string, JSON-style double quotes everywhere else.

PyYAML's own emitter is exact but slow (an hour of recorded frames is a hundred thousand
steps) and cannot write comments; this writer knows the few shapes a converted scenario
has (mappings, lists, strings, numbers, booleans, null) and writes each so that PyYAML's
safe loader reads back exactly the value given:

- a string is written bare only when it is made of ordinary characters and YAML would
  not read it as something else (``null``, ``yes``, ``1.5``, ``2024-12-03``);
- every other string is JSON text (a valid YAML double-quoted scalar), with the few
  characters YAML would not keep as they are (line separators, C1 controls) escaped;
- a float is written so that YAML 1.1 reads it as a float (``1.0e+16``, not ``1e+16``).

:func:`literal` makes a recorded text safe from templates: a string holding ``{{``,
``{%`` or ``{#`` would be rendered by Jinja, so it is wrapped to render as itself.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import yaml

from replay import templates

_PLAIN = re.compile(r"^[A-Za-z0-9_/(][A-Za-z0-9_ ./()\-,'=+@;!?$%^*<>~]*$")
#: Characters JSON leaves as they are but a YAML double-quoted scalar would not keep:
#: C1 controls and DEL, line and paragraph separators (YAML 1.1 line breaks), the BOM
#: and the two non-characters.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()


def literal(text: str) -> str:
    """``text`` written so that a scenario sends it as it is: a template (holding ``{{``,
    ``{%`` or ``{#``) is wrapped in ``{% raw %}``, or, if it holds ``endraw`` itself,
    each ``{`` becomes an expression that renders it."""
    if not templates.is_template(text):
        return text
    if "endraw" not in text:
        return "{% raw %}" + text + "{% endraw %}"
    return "".join("{{ '{' }}" if char == "{" else char for char in text)


def scalar(value: Any) -> str:
    """One value (a string, number, boolean or null) as YAML that reads back equal."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return value if _plain(value) else quoted(value)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def quoted(text: str) -> str:
    """``text`` as a double-quoted YAML scalar."""
    written = json.dumps(text, ensure_ascii=False)
    return _UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", written)


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a number JSON can carry")
    text = repr(value)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text


@lru_cache(maxsize=8192)
def _plain(text: str) -> bool:
    if not _PLAIN.match(text) or text.endswith(" "):
        return False
    tag = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(tag == _STR_TAG)


def lines(value: Any, indent: int) -> list[str]:
    """A mapping or list in block style, each line indented by ``indent`` spaces."""
    pad = " " * indent
    written: list[str] = []
    if isinstance(value, Mapping):
        for name, item in value.items():
            written.extend(_entry(f"{pad}{scalar(str(name))}:", item, indent + 2))
        return written
    for item in value:
        if isinstance(item, Mapping) and item:
            inner = lines(item, indent + 2)
            written.append(f"{pad}- {inner[0][indent + 2 :]}")
            written.extend(inner[1:])
        else:
            written.extend(_entry(f"{pad}-", item, indent + 2))
    return written


def _entry(head: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, Mapping | list) and item:
        return [head, *lines(item, indent)]
    if isinstance(item, Mapping):
        return [f"{head} {{}}"]
    if isinstance(item, list):
        return [f"{head} []"]
    return [f"{head} {scalar(item)}"]


def step_lines(step: Mapping[str, Any], comment: str = "") -> list[str]:
    """One step of a scenario's ``steps:``, with an optional comment line above it."""
    written = [f"  # {line}" for line in comment.splitlines()] if comment else []
    return [*written, *lines([step], 2)]


def count_values(value: Any) -> int:
    """How many values the loader builds for ``value`` (a mapping or list, and each value
    in it; keys are not counted), as its limit on values counts them."""
    if isinstance(value, Mapping):
        return 1 + sum(count_values(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(count_values(item) for item in value)
    return 1
