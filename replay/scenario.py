"""The scenario file format, as pydantic models.

A scenario is a list of steps. Each step is a mapping with exactly one *kind* key (see
:data:`STEP_KINDS`) plus that kind's own fields. These models are the single truth for the
format: the loader validates files with them and :mod:`replay.schema` describes them to
editors. The steps live in :mod:`replay.steps` (frames) and :mod:`replay.control` (the
rest), the field types they share in :mod:`replay.fields`; this module puts them together
and re-exports them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from replay.control import (
    BRANCH_TAGS,
    ChooseStep,
    ClientFrameMatch,
    LetStep,
    OtherwiseBranch,
    ParallelStep,
    PlayStep,
    RepeatStep,
    SetStep,
    SleepStep,
    WaitConnectStep,
    WaitStep,
    WhenBranch,
)
from replay.fields import (
    CLIENT_ID_PATTERN,
    CLIENT_ID_RULE,
    MAX_RATE,
    MAX_REPEAT,
    NAME_PATTERN,
    NAME_RULE,
    Duration,
    Target,
    _check_json,
    _check_target,
)
from replay.steps import (
    BinaryStep,
    ChunkStep,
    CloseStep,
    DisconnectStep,
    DropStep,
    MessageStep,
    RawStep,
    StreamStep,
    ToolStep,
    _PausedStep,
    _Step,
)

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
        return self._bound_names

    @cached_property
    def awaits(self) -> Mapping[str, ClientFrameMatch]:
        """What this file's own ``wait`` steps accept (nested ones included, not those of
        the scenarios it plays), each once, by its JSON text."""
        found: dict[str, ClientFrameMatch] = {}
        for _, step in _walk(self.steps, ("steps",)):
            if isinstance(step, WaitStep):
                found.setdefault(step.matcher.model_dump_json(), step.matcher)
        return found

    # Worked out once per model (a file's version), in whichever thread asks first: a
    # converted recording has tens of thousands of steps, and a run asks as it starts
    # and each time it plays the file; see replay.catalog, which asks off the event loop.
    @cached_property
    def _bound_names(self) -> frozenset[str]:
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
    # Only the fields the step's model has: asking a pydantic model for one it lacks is slow.
    fields = getattr(type(step), "model_fields", ())
    for name in _TEMPLATE_FIELDS:
        value = getattr(step, name) if name in fields else None
        if isinstance(value, str):
            yield (name,), value
    if isinstance(step, MessageStep) and step.data is not None:
        yield from _data_texts(step.data, ("data",))
    elif isinstance(step, LetStep):
        yield from _data_texts(step.let, ("let",))
    elif isinstance(step, SetStep):
        yield from _data_texts(step.set, ("set",))
    envelope = step.envelope if "envelope" in fields else None
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
    "CLIENT_ID_RULE",
    "FRAME_STEPS",
    "MAX_RATE",
    "MAX_REPEAT",
    "NAME_PATTERN",
    "NAME_RULE",
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
