"""The scenario file format, as pydantic models.

A scenario is a list of steps. Each step is a mapping with exactly one *kind* key (see
:data:`STEP_KINDS`) plus that kind's own fields. These models are the single truth for the
format: the loader validates files with them and :mod:`replay.schema` describes them to
editors.

Message types are checked against the set in the validation context
(``{"message_types": ...}``), :data:`replay.protocol.MESSAGE_TYPES` by default.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.functional_serializers import PlainSerializer
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from replay.durations import parse_duration
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

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda seconds: seconds, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": 3600},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$"},
            ],
            "description": 'Seconds (0.5) or a string with a unit ("500ms", "2s", "1m").',
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


def _check_name(value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise PydanticCustomError(
            "scenario_name",
            "not a scenario name",
            {"expected": NAME_RULE, "found": repr(value)},
        )
    return value


def _check_target(value: str) -> str:
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


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PausedStep(_Step):
    delay: Duration | None = Field(
        default=None,
        description="Pause after this step; overrides the scenario's delay for this step.",
    )
    jitter: Duration | None = Field(
        default=None,
        description="Vary each pause of this step at random by up to this much either way; "
        "overrides the scenario's jitter.",
    )


class _TargetedStep(_PausedStep):
    to: Target | None = Field(default=None, description="Who gets it (default: the run's target).")

    @field_validator("to")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else _check_target(value)


class _FrameStep(_TargetedStep):
    endpoint: str | None = Field(
        default=None,
        description="The endpoint it goes to (default: the one the protocol gives this kind).",
    )

    _endpoint = field_validator("endpoint")(_check_endpoint)


class _ChunkedStep(_FrameStep):
    @model_validator(mode="after")
    def _takes_chunks(self, info: ValidationInfo) -> _ChunkedStep:
        _check_takes(self, "chunks", _protocol(info).chunk_endpoint(self.endpoint), info)
        return self


class MessageStep(_FrameStep):
    """Send a typed message: ``{"message_type": message, "message": text}`` on ``/ws`` in
    Schwarm's protocol, or the envelope the protocol file declares.

    Give ``text`` for a plain string, or ``data`` (a mapping or list) to send its JSON text
    (or the data itself, where the envelope says ``data: json``).
    """

    message: str = Field(description="The message type, e.g. EVENT or CHAT_REQUESTED.")
    text: str | None = Field(default=None, description="The message, sent as is (a template).")
    data: dict[str, Any] | list[Any] | None = Field(
        default=None,
        description="Sent as its JSON text (Schwarm parses EVENT messages as JSON); its "
        "strings may be templates.",
    )

    envelope: Envelope = None

    _known_type = field_validator("message")(_check_message_type)
    _plain_json = field_validator("data", "envelope")(_check_json)

    @model_validator(mode="after")
    def _text_or_data(self, info: ValidationInfo) -> MessageStep:
        if (self.text is None) == (self.data is None):
            raise ValueError("a message step needs exactly one of 'text' or 'data'")
        endpoint = _protocol(info).message_endpoint(self.message, self.endpoint)
        _check_takes(self, "messages", endpoint, info)
        return self


class ChunkStep(_ChunkedStep):
    """Send ``{"type": "default", "content": chunk}`` to ``/ws/stream`` (or the protocol's
    chunk envelope)."""

    chunk: str = Field(min_length=1, description="The text of the chunk (never empty).")
    envelope: Envelope = None
    _plain_json = field_validator("envelope")(_check_json)


class ToolStep(_ChunkedStep):
    """Send ``{"type": "tool", "content": tool}`` to ``/ws/stream`` (or the protocol's
    chunk envelope)."""

    tool: str = Field(min_length=1, description="The text of the tool chunk (never empty).")
    envelope: Envelope = None
    _plain_json = field_validator("envelope")(_check_json)


class CloseStep(_ChunkedStep):
    """Send the end-of-stream signal ``{"type": "close", "content": null}`` to ``/ws/stream``."""

    close: Literal["stream"] = Field(description="What to close: 'stream'.")


class StreamStep(_ChunkedStep):
    """Stream a whole text to ``/ws/stream`` as token-sized chunks, like an LLM does.

    The text is cut into tokens (words and word pieces of up to 6 letters, each with the
    spaces before it, and punctuation marks), sent ``rate`` per second.
    """

    stream: str = Field(min_length=1, description="The text to stream (a template).")
    rate: float = Field(
        default=30.0, gt=0, le=MAX_RATE, strict=True, description="Tokens per second (default 30)."
    )
    type: Literal["default", "tool"] = Field(
        default="default", description="Send the tokens as 'default' or 'tool' chunks."
    )
    close_stream: bool = Field(
        default=False, description="End with the end-of-stream signal, one token later."
    )
    envelope: Envelope = None
    _plain_json = field_validator("envelope")(_check_json)


class SleepStep(_Step):
    """Pause for a while before the next step."""

    sleep: Duration
    jitter: Duration | None = Field(
        default=None, description="Vary the pause at random by up to this much either way."
    )


class PlayStep(_TargetedStep):
    """Play another scenario here, inline, then go on (``to`` sets its target)."""

    play: str = Field(description="The name of the scenario to play.")

    @field_validator("play")
    @classmethod
    def _name(cls, name: str) -> str:
        return _check_name(name)


class ParallelStep(_TargetedStep):
    """Play several scenarios at once; the step lasts as long as the longest of them."""

    parallel: list[str] = Field(min_length=1, description="Names of the scenarios to play.")

    @field_validator("parallel")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        return [_check_name(name) for name in names]


class RepeatStep(_TargetedStep):
    """Play a block of steps several times, or until the run is cancelled."""

    repeat: int | Literal["forever"] = Field(
        description="How many times (1 or more), or 'forever' (until the run is cancelled)."
    )
    steps: list[Step] = Field(min_length=1, description="The steps to repeat.")

    @field_validator("repeat", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        # Before pydantic's own checks, so a bad count is one error, not one per type.
        if value == "forever" or (
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_REPEAT
        ):
            return value
        raise PydanticCustomError(
            "repeat_count",
            "not a repeat count",
            {"expected": f"1 to {MAX_REPEAT} or 'forever'", "found": repr(value)},
        )


class ClientFrameMatch(_Step):
    """Which client frames on ``/ws`` match: a message type, and optionally patterns."""

    message: str = Field(
        description="The message type the client sends, e.g. CHAT_INPUT, or a declared "
        "HTTP route, e.g. 'POST /chat'."
    )
    match: str | None = Field(
        default=None,
        description="A regular expression searched for in the frame's message text (RE2 "
        "syntax: no backreferences or lookaround; \\w, \\d, \\s are ASCII-only).",
    )
    fields: dict[str, Pattern] | None = Field(
        default=None,
        description="Dotted paths into the frame (a message holding JSON is looked into) "
        "and regular expressions their values must contain, e.g. {'message.action': '^pause$'}.",
    )

    _known_type = field_validator("message")(_check_client_event)
    _pattern = field_validator("match")(_check_pattern)


class WaitStep(_Step):
    """Wait until a client sends a matching frame on ``/ws``, or until the timeout.

    The frame is then ``received`` in later templates. Only frames from the run's target
    are taken (any client when the target is 'all').
    """

    wait: str = Field(
        description="The message type to wait for, e.g. CHAT_INPUT, or a declared HTTP "
        "route whose request to wait for, e.g. 'POST /chat'."
    )
    match: str | None = Field(
        default=None,
        description="A regular expression searched for in the message text (RE2 syntax: no "
        "backreferences or lookaround; \\w, \\d, \\s are ASCII-only).",
    )
    fields: dict[str, Pattern] | None = Field(
        default=None, description="Dotted paths into the frame and patterns for their values."
    )
    timeout: Duration = Field(default=60.0, description="How long to wait (default 60s).")
    on_timeout: Literal["fail", "continue"] = Field(
        default="fail", description="'fail' ends the run as failed; 'continue' goes on."
    )

    _known_type = field_validator("wait")(_check_client_event)
    _pattern = field_validator("match")(_check_pattern)

    @property
    def matcher(self) -> ClientFrameMatch:
        # Not validated again: the step was, against the project's message types and
        # routes, which are not known here.
        return ClientFrameMatch.model_construct(
            message=self.wait, match=self.match, fields=self.fields
        )


class RawStep(_FrameStep):
    """Send a text frame exactly as written (for example invalid JSON)."""

    raw: str = Field(description="The frame's text, sent as is (a template).")


class BinaryStep(_FrameStep):
    """Send a binary frame."""

    binary: str = Field(description="The frame's bytes, in base64.")

    @field_validator("binary")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise PydanticCustomError(
                "base64",
                "not base64",
                {
                    "expected": "base64 text, e.g. 'AAEC/w=='",
                    "found": f"{shown!r} ({str(error).rstrip('.').lower()})",
                },
            ) from None
        return value

    @property
    def payload(self) -> bytes:
        return base64.b64decode(self.binary)


class DisconnectStep(_TargetedStep):
    """Close clients' connections with a close code and reason, after what was sent before."""

    disconnect: str = Field(description="Which endpoint's clients: a path, or all.")

    _endpoint = field_validator("disconnect")(_check_endpoint)
    code: int = Field(
        default=1000, strict=True, description="The close code (1000 normal, 1011 error, ...)."
    )
    reason: str = Field(default="", description="The close reason (at most 123 bytes).")

    @field_validator("code")
    @classmethod
    def _code(cls, value: int) -> int:
        # What RFC 6455 lets an endpoint send (1005, 1006 and 1015 are never on the wire).
        if not (1000 <= value <= 1003 or 1007 <= value <= 1014 or 3000 <= value <= 4999):
            raise PydanticCustomError(
                "close_code",
                "not a close code a server may send",
                {"expected": "1000-1003, 1007-1014 or 3000-4999", "found": str(value)},
            )
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if len(value.encode()) > 123:
            raise PydanticCustomError(
                "close_reason",
                "close reason too long",
                {"expected": "at most 123 bytes", "found": f"{len(value.encode())} bytes"},
            )
        return value


class DropStep(_TargetedStep):
    """Cut clients' TCP connections without a close frame, as a crashed backend would."""

    drop: str = Field(description="Which endpoint's clients: a path, or all.")

    _endpoint = field_validator("drop")(_check_endpoint)


def _check_bindings(values: dict[str, Any]) -> dict[str, Any]:
    for name in values:
        if not BINDING_PATTERN.match(name):
            # "at": where under the field the problem is (the loader locates it there).
            raise PydanticCustomError(
                "binding_name",
                "not a name templates can read",
                {"expected": BINDING_RULE, "found": repr(name), "at": (name,)},
            )
    _check_json(values)
    return values


class LetStep(_Step):
    """Bind values once, as ``vars.NAME`` for every later step of the run.

    Each value is rendered when the step plays (a lone ``{{ expression }}`` keeps its
    JSON type); the scenarios the run plays later see the names they declare, and the
    branches of a later ``parallel`` get copies.
    """

    let: dict[str, Any] = Field(
        min_length=1,
        description="Names and their values (templates, rendered once), read later as vars.NAME.",
        json_schema_extra={"propertyNames": {"pattern": BINDING_PATTERN.pattern}},
    )

    _names = field_validator("let")(_check_bindings)


class SetStep(_Step):
    """Change the server's shared state (``state.NAME`` in templates): each value is
    rendered when the step plays, then every key is set at once."""

    set: dict[str, Any] = Field(
        min_length=1,
        description="Keys of the shared state and their new values (templates).",
        json_schema_extra={"propertyNames": {"pattern": BINDING_PATTERN.pattern}},
    )

    _names = field_validator("set")(_check_bindings)


class WhenBranch(_Step):
    """A branch of a ``choose``: its steps play if ``when`` is true."""

    when: str = Field(
        min_length=1,
        description="A Jinja2 expression (no braces), e.g. \"received.data.answer == 'yes'\"; "
        "it reads the same names as templates.",
    )
    steps: list[Step] = Field(min_length=1, description="What to play if it is true.")


class OtherwiseBranch(_Step):
    """The last branch of a ``choose``: its steps play if no condition was true."""

    otherwise: list[Step] = Field(min_length=1, description="What to play if nothing was true.")


def _branch_kind(value: Any) -> str | None:
    if isinstance(value, Mapping):
        kinds = [key for key in ("when", "otherwise") if key in value]
        return f"{kinds[0]}-branch" if len(kinds) == 1 else None
    if isinstance(value, WhenBranch | OtherwiseBranch):
        return "when-branch" if isinstance(value, WhenBranch) else "otherwise-branch"
    return None


#: The union tags pydantic puts in the location of a branch's errors (the loader drops them).
BRANCH_TAGS = ("when-branch", "otherwise-branch")

Branch = Annotated[
    Annotated[WhenBranch, Tag("when-branch")] | Annotated[OtherwiseBranch, Tag("otherwise-branch")],
    Discriminator(
        _branch_kind,
        custom_error_type="branch_kind",
        custom_error_message="a branch needs 'when' (with 'steps') or 'otherwise', not both",
    ),
]


class ChooseStep(_TargetedStep):
    """Play the steps of the first branch whose condition is true, inline (``to`` sets
    their target, as for ``repeat``); nothing if none is and there is no ``otherwise``."""

    choose: list[Branch] = Field(
        min_length=1,
        description="Branches tried in order: {when: EXPRESSION, steps: [...]}, and last, "
        "optionally, {otherwise: [...]}.",
    )

    @field_validator("choose")
    @classmethod
    def _otherwise_last(cls, branches: list[Any]) -> list[Any]:
        for index, branch in enumerate(branches[:-1]):
            if isinstance(branch, OtherwiseBranch):
                raise PydanticCustomError(
                    "otherwise_last",
                    "'otherwise' must be the last branch of a choose (branch {index} of {count})",
                    {
                        "index": index,
                        "count": len(branches),
                        "expected": "'otherwise' as the last branch, at most once",
                        "found": f"'otherwise' as branch {index}",
                        "at": (index,),
                    },
                )
        return branches

    def branches(self) -> Iterator[tuple[tuple[str | int, ...], str | None, list[Any]]]:
        """``(path, condition, steps)`` of each branch, in order: the path of its steps
        inside the step (``("choose", 0, "steps")``, ``("choose", 2, "otherwise")``), and
        its condition (None for ``otherwise``)."""
        for index, branch in enumerate(self.choose):
            if isinstance(branch, WhenBranch):
                yield ("choose", index, "steps"), branch.when, branch.steps
            else:
                yield ("choose", index, "otherwise"), None, branch.otherwise


class WaitConnectStep(_Step):
    """Wait until a client connects (or reconnects), or until the timeout.

    With ``new: false`` (the default) a client already connected counts at once. After
    it, the client that connected is the run's ``sender`` when the step waited for 'any'.
    """

    wait_connect: str = Field(
        description="Who: 'any' (any client), 'sender' (the run's sender) or a client id.",
        json_schema_extra={"examples": ["any", "sender", "browser-1"]},
    )
    endpoint: str | None = Field(
        default=None,
        description="Only a connection to this endpoint, e.g. /ws (default: any endpoint).",
        json_schema_extra={"pattern": "^/"},
    )
    new: bool = Field(
        default=False,
        description="Only a connection opened after the step starts (a reconnect); false: "
        "a client already connected counts at once.",
    )
    timeout: Duration = Field(default=60.0, description="How long to wait (default 60s).")
    on_timeout: Literal["fail", "continue"] = Field(
        default="fail", description="'fail' ends the run as failed; 'continue' goes on."
    )

    @field_validator("wait_connect")
    @classmethod
    def _who(cls, value: str) -> str:
        if value not in ("any", "sender") and not CLIENT_ID_PATTERN.match(value):
            raise PydanticCustomError(
                "connect_target",
                "not a client to wait for",
                {
                    "expected": f"'any', 'sender' or a client id ({CLIENT_ID_RULE})",
                    "found": repr(value),
                },
            )
        return value

    @field_validator("endpoint")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise PydanticCustomError(
                "endpoint",
                "not an endpoint",
                {"expected": "a WebSocket path such as /ws or /ws/stream", "found": repr(value)},
            )
        return value


STEP_KINDS: dict[str, type[_Step]] = {
    "message": MessageStep,
    "chunk": ChunkStep,
    "tool": ToolStep,
    "close": CloseStep,
    "stream": StreamStep,
    "sleep": SleepStep,
    "play": PlayStep,
    "parallel": ParallelStep,
    "repeat": RepeatStep,
    "wait": WaitStep,
    "raw": RawStep,
    "binary": BinaryStep,
    "disconnect": DisconnectStep,
    "drop": DropStep,
    "choose": ChooseStep,
    "let": LetStep,
    "set": SetStep,
    "wait_connect": WaitConnectStep,
}


def step_kind(value: Any) -> str | None:
    """The kind of a step: the one kind key it has, or None (none, several, not a mapping)."""
    if isinstance(value, Mapping):
        kinds = [key for key in STEP_KINDS if key in value]
        return kinds[0] if len(kinds) == 1 else None
    for kind, model in STEP_KINDS.items():
        if isinstance(value, model):
            return kind
    return None


Step = Annotated[
    Annotated[MessageStep, Tag("message")]
    | Annotated[ChunkStep, Tag("chunk")]
    | Annotated[ToolStep, Tag("tool")]
    | Annotated[CloseStep, Tag("close")]
    | Annotated[StreamStep, Tag("stream")]
    | Annotated[SleepStep, Tag("sleep")]
    | Annotated[PlayStep, Tag("play")]
    | Annotated[ParallelStep, Tag("parallel")]
    | Annotated[RepeatStep, Tag("repeat")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[RawStep, Tag("raw")]
    | Annotated[BinaryStep, Tag("binary")]
    | Annotated[DisconnectStep, Tag("disconnect")]
    | Annotated[DropStep, Tag("drop")]
    | Annotated[ChooseStep, Tag("choose")]
    | Annotated[LetStep, Tag("let")]
    | Annotated[SetStep, Tag("set")]
    | Annotated[WaitConnectStep, Tag("wait_connect")],
    Discriminator(
        step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one kind key: " + ", ".join(STEP_KINDS),
    ),
]

RepeatStep.model_rebuild()
WhenBranch.model_rebuild()
OtherwiseBranch.model_rebuild()
ChooseStep.model_rebuild()

#: Steps that put a frame on the wire; the scenario's ``delay`` follows each of them.
FRAME_STEPS = (MessageStep, ChunkStep, ToolStep, CloseStep, StreamStep, RawStep, BinaryStep)


class Scenario(BaseModel):
    """One scenario file: what to send, in what order, with what pauses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(default=1, description="The file format's version.")
    description: str = Field(default="", description="What this scenario shows, for humans.")
    delay: Duration = Field(
        default=0.0,
        description="Pause after each step that sends a frame and sets no delay of its own.",
    )
    jitter: Duration = Field(
        default=0.0,
        description="Vary every pause at random by up to this much either way (seeded: "
        "a run with the same seed pauses the same).",
    )
    to: Target | None = Field(
        default=None, description="Who the frames go to unless a step or trigger says (all)."
    )
    vars: dict[str, Any] = Field(
        default_factory=dict,
        description="Variables templates read as vars.NAME, with their defaults; a trigger "
        "may override them.",
    )
    reacts_to: ClientFrameMatch | None = Field(
        default=None,
        description="Play this scenario whenever a client sends a matching frame on /ws.",
    )
    on_connect: bool = Field(
        default=False,
        description="Play this scenario to each client as it connects to /ws.",
    )
    steps: list[Step] = Field(min_length=1, description="What to do, in order.")

    _plain_vars = field_validator("vars")(_check_json)

    @field_validator("to")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else _check_target(value)

    def pause_after(self, step: _Step) -> float:
        """The pause after ``step``, before jitter: its own delay, else the scenario's delay
        for steps that send a frame."""
        if isinstance(step, SleepStep):
            return step.sleep
        if isinstance(step, WaitStep | WaitConnectStep | LetStep | SetStep):
            return 0.0
        assert isinstance(step, _PausedStep)
        if step.delay is not None:
            return step.delay
        return self.delay if isinstance(step, FRAME_STEPS) else 0.0

    def jitter_of(self, step: _Step) -> float:
        """How much ``step``'s pauses may vary either way."""
        own = getattr(step, "jitter", None)
        return self.jitter if own is None else float(own)

    def frame_steps(self) -> Iterator[tuple[tuple[str | int, ...], Any]]:
        """``(path, step)`` of every step, nested ones included, in file order."""
        yield from _walk(self.steps, ("steps",))

    def texts(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """``(path, text)`` of every string that may be a template, nested steps included
        (a ``let``'s or ``set``'s values too)."""
        yield from _texts(self.steps, ("steps",))

    def conditions(self) -> Iterator[tuple[tuple[str | int, ...], str]]:
        """``(path, expression)`` of every ``choose`` condition, nested steps included."""
        for path, step in _walk(self.steps, ("steps",)):
            if isinstance(step, ChooseStep):
                for index, branch in enumerate(step.choose):
                    if isinstance(branch, WhenBranch):
                        yield (*path, "choose", index, "when"), branch.when

    def bound_names(self) -> frozenset[str]:
        """Every name a ``let`` in this file binds (templates may read them as vars.NAME)."""
        return frozenset(
            name
            for _, step in _walk(self.steps, ("steps",))
            if isinstance(step, LetStep)
            for name in step.let
        )


_TEMPLATE_FIELDS = ("text", "chunk", "tool", "stream", "raw")


def _walk(
    steps: list[Any], prefix: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """``(path, step)`` of every step, those inside ``repeat`` and ``choose`` included."""
    for index, step in enumerate(steps):
        at = (*prefix, index)
        yield at, step
        if isinstance(step, RepeatStep):
            yield from _walk(step.steps, (*at, "steps"))
        elif isinstance(step, ChooseStep):
            for path, _, inner in step.branches():
                yield from _walk(inner, (*at, *path))


def own_texts(step: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """``(path, text)`` of the strings of ``step`` itself that may be templates (not those
    of the steps it holds), paths relative to the step."""
    for name in _TEMPLATE_FIELDS:
        value = getattr(step, name, None)
        if isinstance(value, str):
            yield (name,), value
    if isinstance(step, MessageStep) and step.data is not None:
        yield from _data_texts(step.data, ("data",))
    elif isinstance(step, LetStep):
        yield from _data_texts(step.let, ("let",))
    elif isinstance(step, SetStep):
        yield from _data_texts(step.set, ("set",))
    envelope = getattr(step, "envelope", None)
    if envelope:
        yield from _data_texts(envelope, ("envelope",))


def _texts(
    steps: list[Any], prefix: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    for at, step in _walk(steps, prefix):
        for path, text in own_texts(step):
            yield (*at, *path), text


def _data_texts(
    value: Any, at: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _data_texts(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _data_texts(item, (*at, index))


__all__ = [
    "BRANCH_TAGS",
    "CLIENT_ID_PATTERN",
    "FRAME_STEPS",
    "NAME_PATTERN",
    "STEP_KINDS",
    "BinaryStep",
    "ChooseStep",
    "ChunkStep",
    "ClientFrameMatch",
    "CloseStep",
    "DisconnectStep",
    "DropStep",
    "Duration",
    "LetStep",
    "MessageStep",
    "OtherwiseBranch",
    "ParallelStep",
    "PlayStep",
    "RawStep",
    "RepeatStep",
    "Scenario",
    "SetStep",
    "SleepStep",
    "Step",
    "StreamStep",
    "ToolStep",
    "WaitConnectStep",
    "WaitStep",
    "WhenBranch",
    "own_texts",
    "step_kind",
]
