"""The field types and checks scenario steps share: durations, targets, endpoints,
message types, patterns and plain JSON, each refused with what was expected and found.

Message types and endpoints are checked against the protocol in the validation context
(``{"protocol": ..., "message_types": ...}``), Schwarm's by default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
)
from pydantic.functional_serializers import PlainSerializer
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from replay.durations import EXPECTED as DURATION_EXPECTED
from replay.durations import MAX_BARE_SECONDS, MAX_SECONDS, parse_duration
from replay.errors import PatternRefused, did_you_mean
from replay.patterns import compile_pattern
from replay.protocol import MESSAGE_TYPES

#: A scenario's name is its file's stem, and must match this.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
NAME_RULE = "lower-case letters, digits, '-' and '_', starting with a letter or digit"
#: A client id, chosen by the server or by the client with ``?client_id=``.
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
CLIENT_ID_RULE = "1 to 64 letters, digits, '.', '_', ':' or '-'"
#: The most tokens per second a ``stream`` step may ask for.
MAX_RATE = 10_000.0
#: The most times a ``repeat`` step may repeat (besides ``forever``).
MAX_REPEAT = 1_000_000
#: A name a ``let`` binds (read as ``vars.NAME``) or a ``set`` sets (``state.NAME``).
BINDING_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
BINDING_RULE = "a letter, then letters, digits and '_' (so that templates can write vars.NAME)"


def _check_duration(value: object) -> float:
    """Seconds from a duration field's value, or a problem saying what to write (for
    ``delay: 500``: ``500ms`` or ``500s``)."""
    try:
        return parse_duration(value)
    except ValueError as error:
        # The reason is passed as a value, not as the template: it may hold braces.
        raise PydanticCustomError(
            "duration", "{reason}", {"reason": str(error), "expected": DURATION_EXPECTED}
        ) from None


#: A duration as text, for editors: a number with a unit, or one of at most 60 without.
_DURATION_TEXT = r"^\s*((\d+(\.\d*)?|\.\d+)\s*(ms|s|m)|([0-5]?\d(\.\d*)?|60(\.0*)?|\.\d+))\s*$"


#: A pause (``delay``, ``jitter``, ``sleep``, ``timeout``, a route's ``latency``): seconds
#: as a number up to MAX_BARE_SECONDS, or a string with a unit (see replay.durations).
Duration = Annotated[
    float,
    BeforeValidator(_check_duration),
    PlainSerializer(lambda seconds: seconds, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": MAX_BARE_SECONDS},
                {"type": "string", "pattern": _DURATION_TEXT},
            ],
            "description": f"Seconds (0.5; a number without a unit is at most "
            f'{MAX_BARE_SECONDS:g}) or a string with a unit ("500ms", "90s", "2m"); '
            f"at most {MAX_SECONDS:g} s.",
        }
    ),
]

#: Who a step's frames go to: every client, the client that started the run (or answered
#: its last ``wait``), or the clients with this id.
Target = Annotated[
    str,
    Field(
        description="'all' (every client), 'sender' (the client whose frame or connection "
        "started the run, or that answered the last wait), or a client id.",
        json_schema_extra={"examples": ["all", "sender", "browser-1"]},
    ),
]


def _protocol(info: ValidationInfo) -> Any:
    """The protocol the file is validated against (Schwarm's when none is given)."""
    context = info.context if isinstance(info.context, Mapping) else {}
    protocol = context.get("protocol")
    if protocol is None:
        from replay.protocol.schwarm import SCHWARM  # the declarations import this module

        protocol = SCHWARM
    return protocol


def _check_endpoint(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or (value == "all" and info.field_name in ("disconnect", "drop")):
        return value
    served = _protocol(info).paths()
    if value not in served:
        choices = list(served) + (["all"] if info.field_name in ("disconnect", "drop") else [])
        raise PydanticCustomError(
            "endpoint",
            "unknown endpoint {found}{hint}",
            {
                "found": repr(value),
                "hint": did_you_mean(str(value), choices),
                "expected": "one of " + ", ".join(choices),
            },
        )
    return str(served[value])


def _check_takes(step: Any, kind: str, endpoint: str | None, info: ValidationInfo) -> None:
    """Raise unless ``endpoint`` (None: none was found) takes ``kind`` frames."""
    protocol = _protocol(info)
    takes = [path for path, e in protocol.endpoints.items() if getattr(e, kind)]
    if endpoint is not None and endpoint in takes:
        return
    message = f"{endpoint} takes no {kind}" if endpoint else f"no endpoint takes {kind}"
    raise PydanticCustomError(
        "endpoint_kind",
        "{message}",
        {
            "message": message,
            "expected": ("an endpoint with '" + kind + "': " + ", ".join(takes))
            if takes
            else f"a protocol file that declares '{kind}' on an endpoint",
            "found": repr(endpoint),
        },
    )


Envelope = Annotated[
    dict[str, Any] | None,
    Field(
        description="More fields for this frame's envelope, over the endpoint's own 'fields' "
        "(values may be templates).",
    ),
]


def _check_rate(value: object) -> object:
    """A ``rate`` written as a pause (``rate: 30ms``, meant as one token every 30 ms) is
    refused with the rate that means it; anything else is left to the number check."""
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError:
            return value
        if any(unit in value for unit in ("ms", "s", "m")) and seconds > 0:
            per_second = f"{1 / seconds:.4g}"
            raise PydanticCustomError(
                "rate",
                "{reason}",
                {
                    "reason": f"rate is tokens per second, not a pause: one token every "
                    f"{value.strip()} is rate: {per_second}",
                    "expected": f"tokens per second as a number (30; at most {MAX_RATE:g})",
                    "found": repr(value),
                },
            )
    return value


def _check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise PydanticCustomError(
            "scenario_name",
            "not a scenario name",
            {"expected": NAME_RULE, "found": repr(value)},
        )
    return value


def check_keyword_case(value: str, keywords: tuple[str, ...]) -> None:
    """Refuse ``All`` where ``all`` is meant: a word that is one of ``keywords`` but for
    its case would otherwise be read as a client id, and reach no one."""
    for keyword in keywords:
        if value != keyword and value.casefold() == keyword:
            raise PydanticCustomError(
                "keyword_case",
                "{found} would be a client id, not {keyword} (did you mean {keyword}?): "
                "write {keyword} in lower case",
                {
                    "found": repr(value),
                    "keyword": repr(keyword),
                    "expected": ", ".join(repr(word) for word in keywords) + " or a client id",
                },
            )


def _check_target(value: str) -> str:
    check_keyword_case(value, ("all", "sender"))
    if value not in ("all", "sender") and not CLIENT_ID_PATTERN.match(value):
        raise PydanticCustomError(
            "target",
            "not a target",
            {
                "expected": f"'all', 'sender' or a client id ({CLIENT_ID_RULE})",
                "found": repr(value),
            },
        )
    return value


def _check_message_type(value: str, info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, Mapping) else {}
    known: Mapping[str, str] = context.get("message_types", MESSAGE_TYPES)
    if value not in known:
        raise PydanticCustomError(
            "message_type",
            "unknown message type {found}{hint}",
            {
                "found": repr(value),
                "hint": did_you_mean(value, known),
                "expected": "one of " + ", ".join(known),
            },
        )
    return value


def _check_client_event(value: str, info: ValidationInfo) -> str:
    """What a ``wait`` or ``reacts_to`` names: a message type, or a declared HTTP route's
    ``METHOD /path`` (its requests are client events too)."""
    method, _, path = value.partition(" ")
    if not (method.upper() in _ROUTE_METHODS and path.startswith("/")):
        return _check_message_type(value, info)
    context = info.context if isinstance(info.context, Mapping) else {}
    routes = getattr(context.get("protocol"), "routes", None) or ()
    keys = [f"{route.method} {route.path}" for route in routes]
    key = f"{method.upper()} {path}"
    if key not in keys:
        raise PydanticCustomError(
            "route_key",
            "no route {found} is declared{hint}",
            {
                "found": repr(key),
                "hint": did_you_mean(key, keys),
                "expected": (
                    "a route declared under 'routes:' in _protocol.yaml: " + ", ".join(keys)
                    if keys
                    else "a route declared under 'routes:' in _protocol.yaml (none are)"
                ),
            },
        )
    return key


#: The methods of declared routes (see :mod:`replay.routes`).
_ROUTE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _check_pattern(value: str | None) -> str | None:
    # Compiled here, when the file loads, so a pattern RE2 refuses is a located problem
    # and matching finds it compiled (replay.patterns caches it).
    if value is not None:
        try:
            compile_pattern(value)
        except PatternRefused as refused:
            # The reason is passed as a value, not as the template: it may hold braces.
            context = {"reason": refused.reason, "expected": refused.expected}
            if refused.found:
                context["found"] = refused.found
            raise PydanticCustomError("regex", "{reason}", context) from None
    return value


def _check_json(value: Any) -> Any:
    # YAML can give dates, bytes (!!binary) or .nan, which have no JSON text.
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise PydanticCustomError(
            "json_data",
            "must be plain JSON (quote dates and the like)",
            {
                "expected": "strings, finite numbers, booleans, null, lists and mappings",
                "found": str(error),
            },
        ) from None
    return value


#: A regular expression searched in client text, compiled by RE2 when the file loads.
Pattern = Annotated[str, AfterValidator(lambda value: _check_pattern(value))]
