"""Payload schemas: a message type's JSON Schema, checked when the file loads and applied
to each payload a scenario sends.

Schemas are JSON Schema 2020-12, checked with the ``jsonschema`` library. Their
``pattern`` and ``patternProperties`` run on RE2 (:mod:`replay.patterns`), like every
other pattern replay runs, so no payload can make a check backtrack for long; ``format``
is an annotation only, and ``$ref`` reaches only into the schema itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError

from replay.errors import PatternRefused
from replay.patterns import compile_pattern, search

#: At most this many problems are reported per payload.
MAX_REPORTED = 5


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not isinstance(instance, dict):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


_Validator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties},
)


def schema_problems(schema: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with ``schema`` as a payload schema: ``(path in the schema, message)``;
    empty when it is fine."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        return [(tuple(error.absolute_path), f"not a JSON Schema: {error.message}")]
    found = []
    for path, pattern in _patterns(schema, ()):
        try:
            compile_pattern(pattern)
        except PatternRefused as refused:
            found.append((path, f"pattern refused: {refused.reason}"))
    return found


def _patterns(value: Any, at: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "pattern" and isinstance(item, str):
                yield (*at, key), item
            elif key == "patternProperties" and isinstance(item, Mapping):
                yield from (((*at, key, name), name) for name in item)
            yield from _patterns(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _patterns(item, (*at, index))


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> Any:
    return _Validator(json.loads(schema_text))


def payload_problems(
    schema: Mapping[str, Any], payload: Any
) -> list[tuple[tuple[str | int, ...], str]]:
    """Why ``payload`` fails ``schema``: ``(path in the payload, message)``, at most
    :data:`MAX_REPORTED`, shallowest first; empty when it passes."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = sorted(validator.iter_errors(payload), key=lambda e: (len(e.absolute_path), e.message))
    return [(tuple(error.absolute_path), _message(error)) for error in errors[:MAX_REPORTED]]


def _message(error: ValidationError) -> str:
    where = "".join(
        f"[{part!r}]" if isinstance(part, str) else f"[{part}]" for part in error.absolute_path
    )
    return f"payload{where}: {error.message}" if where else f"payload: {error.message}"
