"""The scenario file format, as pydantic models.

A scenario is a list of steps. Each step is a mapping with exactly one *kind* key
(``message``, ``chunk``, ``tool``, ``close``, ``sleep``, ``play`` or ``parallel``) plus that
kind's own fields. These models are the single truth for the format: the loader validates
files with them and ``Scenario.model_json_schema()`` describes them to editors.

Message types are checked against the set in the validation context
(``{"message_types": ...}``), :data:`replay.protocol.MESSAGE_TYPES` by default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
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
from replay.errors import did_you_mean
from replay.protocol import MESSAGE_TYPES

#: A scenario's name is its file's stem, and must match this.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
NAME_RULE = "lower-case letters, digits, '-' and '_', starting with a letter or digit"

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda seconds: seconds, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)\s*(ms|s|m)?\s*$"},
            ],
            "description": 'Seconds (0.5) or a string with a unit ("500ms", "2s", "1m").',
        }
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


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PausedStep(_Step):
    delay: Duration | None = Field(
        default=None,
        description="Pause after this step; overrides the scenario's delay for this step.",
    )


class MessageStep(_PausedStep):
    """Send ``{"message_type": message, "message": text}`` to ``/ws``.

    Give ``text`` for a plain string, or ``data`` (a mapping or list) to send its JSON text.
    """

    message: str = Field(description="The message type, e.g. EVENT or CHAT_REQUESTED.")
    text: str | None = Field(default=None, description="The message, sent as is.")
    data: dict[str, Any] | list[Any] | None = Field(
        default=None, description="Sent as its JSON text (Schwarm parses EVENT messages as JSON)."
    )

    @field_validator("message")
    @classmethod
    def _known_type(cls, value: str, info: ValidationInfo) -> str:
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

    @field_validator("data")
    @classmethod
    def _plain_json(cls, value: Any) -> Any:
        # YAML can give dates, bytes (!!binary) or .nan, which have no JSON text.
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise PydanticCustomError(
                "json_data",
                "data must be plain JSON (quote dates and the like)",
                {
                    "expected": "strings, finite numbers, booleans, null, lists and mappings",
                    "found": str(error),
                },
            ) from None
        return value

    @model_validator(mode="after")
    def _text_or_data(self) -> MessageStep:
        if (self.text is None) == (self.data is None):
            raise ValueError("a message step needs exactly one of 'text' or 'data'")
        return self


class ChunkStep(_PausedStep):
    """Send ``{"type": "default", "content": chunk}`` to ``/ws/stream``."""

    chunk: str = Field(min_length=1, description="The text of the chunk (never empty).")


class ToolStep(_PausedStep):
    """Send ``{"type": "tool", "content": tool}`` to ``/ws/stream``."""

    tool: str = Field(min_length=1, description="The text of the tool chunk (never empty).")


class CloseStep(_PausedStep):
    """Send the end-of-stream signal ``{"type": "close", "content": null}`` to ``/ws/stream``."""

    close: Literal["stream"] = Field(description="What to close: 'stream'.")


class SleepStep(_Step):
    """Pause for a while before the next step."""

    sleep: Duration


class PlayStep(_PausedStep):
    """Play another scenario here, inline, then go on."""

    play: str = Field(description="The name of the scenario to play.")

    @field_validator("play")
    @classmethod
    def _name(cls, name: str) -> str:
        return _check_name(name)


class ParallelStep(_PausedStep):
    """Play several scenarios at once; the step lasts as long as the longest of them."""

    parallel: list[str] = Field(min_length=1, description="Names of the scenarios to play.")

    @field_validator("parallel")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        return [_check_name(name) for name in names]


STEP_KINDS: dict[str, type[_Step]] = {
    "message": MessageStep,
    "chunk": ChunkStep,
    "tool": ToolStep,
    "close": CloseStep,
    "sleep": SleepStep,
    "play": PlayStep,
    "parallel": ParallelStep,
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
    | Annotated[SleepStep, Tag("sleep")]
    | Annotated[PlayStep, Tag("play")]
    | Annotated[ParallelStep, Tag("parallel")],
    Discriminator(
        step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step needs exactly one kind key: " + ", ".join(STEP_KINDS),
    ),
]

FRAME_STEPS = (MessageStep, ChunkStep, ToolStep, CloseStep)


class Scenario(BaseModel):
    """One scenario file: what to send, in what order, with what pauses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = Field(default=1, description="The file format's version.")
    description: str = Field(default="", description="What this scenario shows, for humans.")
    delay: Duration = Field(
        default=0.0,
        description="Pause after each message, chunk, tool or close step that sets no delay.",
    )
    steps: list[Step] = Field(min_length=1, description="What to do, in order.")

    def pause_after(self, step: _Step) -> float:
        """The pause after ``step``: its own delay, else the scenario's for frame steps."""
        if isinstance(step, SleepStep):
            return step.sleep
        assert isinstance(step, _PausedStep)
        if step.delay is not None:
            return step.delay
        return self.delay if isinstance(step, FRAME_STEPS) else 0.0


__all__ = [
    "FRAME_STEPS",
    "NAME_PATTERN",
    "STEP_KINDS",
    "ChunkStep",
    "CloseStep",
    "Duration",
    "MessageStep",
    "ParallelStep",
    "PlayStep",
    "Scenario",
    "SleepStep",
    "Step",
    "ToolStep",
    "step_kind",
]
