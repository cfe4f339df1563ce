"""Steps that steer a run rather than send: ``sleep``, ``play``, ``parallel``,
``repeat``, ``wait``, ``let``, ``set``, ``choose`` and ``wait_connect``.

``repeat`` and ``choose`` hold steps of any kind: their models are completed by
:mod:`replay.scenario`, where the union of every step is defined.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
)
from pydantic_core import PydanticCustomError

from replay.errors import did_you_mean
from replay.fields import (
    BINDING_PATTERN,
    BINDING_RULE,
    CLIENT_ID_PATTERN,
    CLIENT_ID_RULE,
    MAX_REPEAT,
    Duration,
    Pattern,
    _check_client_event,
    _check_json,
    _check_name,
    _check_pattern,
    check_keyword_case,
)
from replay.steps import _Step, _TargetedStep

if TYPE_CHECKING:
    from replay.scenario import Step  # the union of every step, completed there


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
        hint = did_you_mean(value, ["forever"]) if isinstance(value, str) else ""
        raise PydanticCustomError(
            "repeat_count",
            "not a repeat count" + hint,  # the hint holds no braces: 'forever' or nothing
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
        check_keyword_case(value, ("any", "sender"))
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
