"""The engine: a scenario played step by step as a stream of actions, without I/O or a clock.

:func:`play` returns a *script*: a generator of actions, each with the offset (seconds
from the start of the run) at which it is due. Whoever drives the script does the
I/O and the waiting, and sends back what came of it:

- :class:`Send` (put a frame on an endpoint) and :class:`Hangup` (close or cut clients'
  connections): send back None;
- :class:`Wait` (for a client frame): send back the :class:`~replay.matching.ClientFrame`
  taken, with its offset, or None when the timeout passed;
- :class:`Fork` (``parallel``): drive every branch, a script of its own, from the fork's
  offset, and send back :class:`Joined`: when the last one ended, and how many actions
  the branches yielded in all;
- :class:`SetState` (a ``set`` step): apply its changes to the shared state the context's
  ``state`` reads (``State.update``), once it is due; send back None;
- :class:`WaitConnect` (a ``wait_connect`` step): from its offset on, wait for a client to
  connect (or take one already connected, unless ``new``); send back
  :class:`Connected`, or None when the timeout passed;
- :class:`Due` (before a step that reads the shared state: a ``choose``, ``let`` or
  ``set``, or templates that read ``state``): send back None once the offset has come,
  so that the step reads the state as it is then (changes made meanwhile, by a route
  or another run, count);
- :class:`Note` (what a ``choose`` or ``let`` decided): nothing to do but show it;
  send back None.

The script returns the offset at which the run ends. :class:`~replay.runner.Runner`
drives scripts against a clock and real clients; :func:`replay.timeline.build_timeline`
drives them on paper for ``--dry-run``. Pauses are already scaled to the run's speed and
jittered with the run's seeded generator, so the same seed gives the same run.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from replay import frames, templates
from replay.catalog import Catalog
from replay.errors import Problem, ScenarioInvalid, StepFailed, TemplateFailed, VariablesInvalid
from replay.matching import ClientFrame
from replay.protocol.declaration import Protocol
from replay.protocol.wire import encode
from replay.scenario import (
    BinaryStep,
    ChooseStep,
    ChunkStep,
    ClientFrameMatch,
    CloseStep,
    DisconnectStep,
    DropStep,
    LetStep,
    MessageStep,
    ParallelStep,
    PlayStep,
    RawStep,
    RepeatStep,
    Scenario,
    SetStep,
    SleepStep,
    StreamStep,
    ToolStep,
    WaitConnectStep,
    WaitStep,
    own_texts,
)
from replay.tokens import split_tokens

#: Close code and reason clients see when a ``drop`` step falls back to a close frame
#: (the server cannot cut the TCP connection itself).
DROP_FALLBACK = (1011, "connection dropped")


@dataclass(frozen=True)
class Send:
    """Put ``frame`` (text, or bytes for a binary frame) on ``endpoint``.

    ``to`` is a client id, or None for every client of the endpoint.
    """

    at: float
    endpoint: str
    frame: str | bytes
    to: str | None
    scenario: str
    step: str


@dataclass(frozen=True)
class Wait:
    """Wait for a client frame on ``/ws`` that ``match`` accepts, from client ``source``
    (None: any client), until ``at + timeout``."""

    at: float
    match: ClientFrameMatch
    timeout: float
    source: str | None
    scenario: str
    step: str


@dataclass(frozen=True)
class Hangup:
    """End clients' connections on ``endpoints``, after the frames queued before it:
    with a close frame (``code``, ``reason``), or by cutting TCP when ``abort``."""

    at: float
    endpoints: tuple[str, ...]
    to: str | None
    code: int
    reason: str
    abort: bool
    scenario: str
    step: str


@dataclass(frozen=True)
class Fork:
    """Drive each branch from ``at``, all at once; send back when the last one ended."""

    at: float
    branches: tuple[Script, ...]
    scenario: str
    step: str


@dataclass(frozen=True)
class Joined:
    """What came of a :class:`Fork`: when its last branch ended, and how many actions its
    branches yielded (nested forks' included)."""

    end: float
    actions: int


@dataclass(frozen=True)
class SetState:
    """Set each key of ``changes`` in the shared state, once ``at`` has come (a ``set``
    step): ``state.update(changes, by=f"run {run_id} step {step}")``."""

    at: float
    changes: Mapping[str, Any]
    scenario: str
    step: str


@dataclass(frozen=True)
class WaitConnect:
    """From ``at`` on, wait until ``at + timeout`` for a client to connect: client
    ``client`` (None: any client), to ``endpoint`` (None: any endpoint). Unless ``new``, a
    client already connected at ``at`` counts at once."""

    at: float
    client: str | None
    endpoint: str | None
    new: bool
    timeout: float
    scenario: str
    step: str


@dataclass(frozen=True)
class Connected:
    """What came of a :class:`WaitConnect`: who connected, where, and when (seconds from
    the start of the run; the step's own offset for a client already connected)."""

    client: str
    endpoint: str
    at: float


@dataclass(frozen=True)
class Due:
    """Nothing to do but wait until ``at``: the next step reads the shared state, and
    must read it as it is when the step plays."""

    at: float
    scenario: str
    step: str


@dataclass(frozen=True)
class Note:
    """What a step decided, for the record (nothing to do): ``kind`` is ``choose`` (which
    branch played) or ``let`` (the values bound); ``text`` says it for a person."""

    at: float
    kind: str
    text: str
    scenario: str
    step: str


Action = Send | Wait | Hangup | Fork | SetState | WaitConnect | Due | Note
#: A scenario being played: yields actions, takes replies, returns the end offset.
Script = Generator[Action, Any, float]


@dataclass(frozen=True)
class Context:
    """What a run knows when it starts.

    ``client`` is the trigger's target (``?client=``), which overrides the scenario's own
    ``to``; ``sender`` and ``received`` are the client and frame that started the run
    (a reaction or a connection), if any. ``epoch`` is the wall-clock time (seconds since
    1970) of offset 0, for templates' ``now``. ``state`` is the shared state templates
    read as ``state.NAME``: read (never changed) each time a step plays, so pass the live
    mapping; the driver applies :class:`SetState` actions to it.
    """

    run_id: str
    seed: int
    speed: float = 1.0
    epoch: float = 0.0
    vars: Mapping[str, Any] = field(default_factory=dict)
    client: str | None = None
    sender: str | None = None
    received: ClientFrame | None = None
    state: Mapping[str, Any] = field(default_factory=dict)


def play(name: str, catalog: Catalog, context: Context) -> Script:
    """The script of the named scenario.

    Raises ScenarioNotFound or ScenarioInvalid at once; a step that cannot be played
    (a template that fails, a wait that times out with ``on_timeout: fail``) raises
    :class:`~replay.errors.StepFailed` from the script.
    """
    catalog.scenario(name)
    return _Player(catalog, context, random.Random(context.seed)).scenario(
        name, 0.0, context.client, ()
    )


def declared_vars(name: str, catalog: Catalog) -> dict[str, Any]:
    """Every variable the named scenario and those it plays declare, with defaults."""
    declared: dict[str, Any] = {}
    for scenario in _reachable(name, catalog):
        for key, value in scenario.vars.items():
            declared.setdefault(key, value)
    return declared


def check_vars(name: str, catalog: Catalog, values: Mapping[str, Any]) -> None:
    """Raise :class:`VariablesInvalid` unless every variable is declared where it is used."""
    declared = declared_vars(name, catalog)
    unknown = [key for key in values if key not in declared]
    if unknown:
        raise VariablesInvalid(name, unknown, declared)


def awaited(name: str, catalog: Catalog) -> tuple[ClientFrameMatch, ...]:
    """What a run of the named scenario may ``wait`` for (in it, in the scenarios it
    plays, at any depth): the frames its mailbox keeps are those one of these accepts.

    Each file's own are worked out once per version of it (``Scenario.awaits``), so this
    takes time in the number of files and distinct waits, not of steps."""
    found: dict[str, ClientFrameMatch] = {}
    for scenario in _reachable(name, catalog):
        for key, matcher in scenario.awaits.items():
            found.setdefault(key, matcher)
    return tuple(found.values())


def _reachable(name: str, catalog: Catalog) -> list[Scenario]:
    seen: dict[str, Scenario] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        scenario = catalog.scenario(current)
        seen[current] = scenario
        pending.extend(target for _, target in catalog.file(current).plays)
    return list(seen.values())


class _Player:
    """Plays scenarios for one branch of a run; ``parallel`` branches get their own."""

    def __init__(self, catalog: Catalog, context: Context, rng: random.Random) -> None:
        self.catalog = catalog
        self.context = context
        self.rng = rng
        # A run triggered for one client answers that client, as one it started would.
        self.sender = context.sender or context.client
        self.received = context.received
        self.iteration = 0
        #: What ``let`` steps bound so far in this branch of the run (vars.NAME).
        self.bound: dict[str, Any] = {}

    def scenario(self, name: str, at: float, target: str | None, chain: tuple[str, ...]) -> Script:
        if name in chain:
            # A Catalog rejects cycles; this guard keeps a hand-built one from looping.
            cycle = " -> ".join((*chain, name))
            raise ScenarioInvalid(name, [Problem(name, 0, 0, "", f"plays itself: {cycle}")])
        scenario = self.catalog.scenario(name)
        values = {key: self.context.vars.get(key, value) for key, value in scenario.vars.items()}
        bindable = frozenset(scenario.vars) | scenario.bound_names()
        scope = _Scope(name, scenario, target or scenario.to, values, (*chain, name), bindable)
        return (yield from self.steps(scope, scenario.steps, at, ""))

    def steps(self, scope: _Scope, steps: list[Any], at: float, prefix: str) -> Script:
        for index, step in enumerate(steps):
            where = f"{prefix}{index}"
            if _reads_state(step):
                yield Due(at, scope.name, where)
            at = yield from self.step(scope, step, at, index, where)
            at += self.pause(scope.scenario.pause_after(step), scope.scenario.jitter_of(step))
        return at

    def step(self, scope: _Scope, step: Any, at: float, index: int, where: str) -> Script:
        name = scope.name
        try:
            match step:
                case MessageStep():
                    yield self.message(scope, step, at, index, where)
                case ChunkStep(chunk=text) | ToolStep(tool=text):
                    endpoint = frames.chunk_endpoint(self.protocol, step.endpoint)
                    content = self.text(scope, text, index, at)
                    frame = self.chunk(scope, step, endpoint, content, index, at)
                    yield Send(at, endpoint, frame, self.to(scope, step, where), name, where)
                case CloseStep():
                    endpoint = frames.chunk_endpoint(self.protocol, step.endpoint)
                    to = self.to(scope, step, where)
                    for frame in self.protocol.close_frames(endpoint):
                        yield Send(at, endpoint, frame, to, name, where)
                case StreamStep():
                    at = yield from self.stream(scope, step, at, index, where)
                case RawStep():
                    text = self.text(scope, step.raw, index, at)
                    endpoint = step.endpoint or self.first_endpoint
                    yield Send(at, endpoint, text, self.to(scope, step, where), name, where)
                case BinaryStep():
                    endpoint = step.endpoint or self.first_endpoint
                    yield Send(at, endpoint, step.payload, self.to(scope, step, where), name, where)
                case DisconnectStep() | DropStep():
                    yield self.hangup(scope, step, at, where)
                case WaitStep():
                    at = yield from self.wait(scope, step, at, where)
                case SleepStep():
                    pass
                case PlayStep():
                    target = step.to or scope.target
                    at = yield from self.scenario(step.play, at, target, scope.chain)
                case ParallelStep():
                    target = step.to or scope.target
                    branches = tuple(
                        self.fork().scenario(other, at, target, scope.chain)
                        for other in step.parallel
                    )
                    joined: Joined = yield Fork(at, branches, name, where)
                    at = max(at, joined.end)
                case RepeatStep():
                    at = yield from self.repeat(scope, step, at, where)
                case ChooseStep() | LetStep() | SetStep() | WaitConnectStep():
                    at = yield from self.decide(scope, step, at, index, where)
        except TemplateFailed as error:
            raise StepFailed(name, where, str(error)) from None
        return at

    def stream(self, scope: _Scope, step: StreamStep, at: float, index: int, where: str) -> Script:
        to = self.to(scope, step, where)
        endpoint = frames.chunk_endpoint(self.protocol, step.endpoint)
        jitter = scope.scenario.jitter_of(step)
        interval = 1.0 / step.rate
        for number, token in enumerate(split_tokens(self.text(scope, step.stream, index, at))):
            if number:
                at += self.pause(interval, jitter)
            frame = self.chunk(scope, step, endpoint, token, index, at)
            yield Send(at, endpoint, frame, to, scope.name, where)
        if step.close_stream:
            at += self.pause(interval, jitter)
            for frame in self.protocol.close_frames(endpoint):
                yield Send(at, endpoint, frame, to, scope.name, where)
        return at

    def message(self, scope: _Scope, step: MessageStep, at: float, index: int, where: str) -> Send:
        protocol = self.protocol
        endpoint = frames.message_endpoint(protocol, step)
        if step.text is not None:
            value: Any = self.text(scope, step.text, index, at)
        else:
            value = step.data
            if templates.has_templates(value):
                value = templates.render_data(value, self.names(scope, index, at))
        if _templated(step):  # a payload written out was checked when the file loaded
            frames.check_payload(protocol, step.message, value)
        payload = frames.payload(protocol, endpoint, step, value)
        if isinstance(payload, str):
            payload = _unicode(payload, json.dumps(step.data, default=str))
        envelope = protocol.endpoints[endpoint].messages
        extra = self.extra(scope, envelope.fields if envelope else {}, step.envelope, index, at)
        frame = protocol.message_frame(endpoint, step.message, payload, extra)
        return Send(at, endpoint, frame, self.to(scope, step, where), scope.name, where)

    def chunk(
        self,
        scope: _Scope,
        step: ChunkStep | ToolStep | StreamStep,
        endpoint: str,
        content: str,
        index: int,
        at: float,
    ) -> str:
        envelope = self.protocol.endpoints[endpoint].chunks
        extra = self.extra(scope, envelope.fields if envelope else {}, step.envelope, index, at)
        tool = isinstance(step, ToolStep) or getattr(step, "type", None) == "tool"
        return self.protocol.chunk_frame(endpoint, tool, content, extra)

    def extra(
        self,
        scope: _Scope,
        own: Mapping[str, Any],
        step: Mapping[str, Any] | None,
        index: int,
        at: float,
    ) -> dict[str, Any]:
        fields = frames.envelope_fields(own, step)
        if fields and templates.has_templates(fields):
            return dict(templates.render_data(fields, self.names(scope, index, at)))
        return fields

    @property
    def protocol(self) -> Protocol:
        return self.catalog.protocol

    @property
    def first_endpoint(self) -> str:
        endpoint = self.protocol.first_endpoint()
        assert endpoint is not None, "validated: a protocol has an endpoint"
        return endpoint

    def wait(self, scope: _Scope, step: WaitStep, at: float, where: str) -> Script:
        source = self.resolve(scope, scope.target, where)
        taken = yield Wait(at, step.matcher, step.timeout, source, scope.name, where)
        if taken is None:
            if step.on_timeout == "fail":
                who = f"client {source!r}" if source else "any client"
                raise StepFailed(
                    scope.name,
                    where,
                    f"no {step.wait} frame from {who} within {step.timeout:g}s "
                    "(set 'on_timeout: continue' to go on without one)",
                )
            return at + step.timeout
        self.received = taken
        self.sender = taken.client
        return max(at, float(taken.at))

    def repeat(self, scope: _Scope, step: RepeatStep, at: float, where: str) -> Script:
        inner = replace(scope, target=step.to or scope.target)
        outer = self.iteration
        count = 0
        try:
            while step.repeat == "forever" or count < step.repeat:
                self.iteration = count
                actions = _Counter(self.steps(inner, step.steps, at, f"{where}.steps."))
                at = yield from actions
                if actions.count == 0 and step.repeat == "forever":
                    # Nothing is ever handed to the driver, so looping would hang it.
                    raise StepFailed(
                        scope.name,
                        where,
                        "the repeated steps do nothing, so repeating them forever would "
                        "hang; add a step that sends a frame or waits",
                    )
                count += 1
        finally:
            self.iteration = outer
        return at

    def decide(
        self,
        scope: _Scope,
        step: ChooseStep | LetStep | SetStep | WaitConnectStep,
        at: float,
        index: int,
        where: str,
    ) -> Script:
        """The steps that decide rather than send: choose, let, set, wait_connect."""
        match step:
            case ChooseStep():
                at = yield from self.choose(scope, step, at, index, where)
            case LetStep():
                yield self.let(scope, step, at, index, where)
            case SetStep():
                yield self.set_state(scope, step, at, index, where)
            case WaitConnectStep():
                at = yield from self.wait_connect(scope, step, at, where)
        return at

    def choose(self, scope: _Scope, step: ChooseStep, at: float, index: int, where: str) -> Script:
        names = self.names(scope, index, at)
        for number, (path, condition, steps) in enumerate(step.branches()):
            if condition is not None and not _holds(scope, condition, names, where, number):
                continue
            chosen = f"branch {number} (when {condition})" if condition else "otherwise"
            yield Note(at, "choose", chosen, scope.name, where)
            inner = replace(scope, target=step.to or scope.target)
            prefix = ".".join(str(part) for part in path)
            return (yield from self.steps(inner, steps, at, f"{where}.{prefix}."))
        yield Note(at, "choose", "no branch: no condition is true", scope.name, where)
        return at

    def let(self, scope: _Scope, step: LetStep, at: float, index: int, where: str) -> Note:
        values = templates.render_data(step.let, self.names(scope, index, at))
        self.bound.update(values)
        return Note(at, "let", assignments(values), scope.name, where)

    def set_state(
        self, scope: _Scope, step: SetStep, at: float, index: int, where: str
    ) -> SetState:
        changes = templates.render_data(step.set, self.names(scope, index, at))
        try:
            encode(changes).encode("utf-8")
        except (ValueError, UnicodeEncodeError) as error:
            raise TemplateFailed(json.dumps(step.set, default=str), str(error)) from None
        return SetState(at, changes, scope.name, where)

    def wait_connect(self, scope: _Scope, step: WaitConnectStep, at: float, where: str) -> Script:
        who = step.wait_connect
        if who == "sender" and self.sender is None:
            raise StepFailed(
                scope.name,
                where,
                "'wait_connect: sender' needs a client that started the run or answered a "
                "wait; this run has none (wait for 'any' or a client id)",
            )
        client = None if who == "any" else self.sender if who == "sender" else who
        action = WaitConnect(at, client, step.endpoint, step.new, step.timeout, scope.name, where)
        connected: Connected | None = yield action
        if connected is None:
            if step.on_timeout == "fail":
                whom = f"client {client!r}" if client else "any client"
                to = f" to {step.endpoint}" if step.endpoint else ""
                raise StepFailed(
                    scope.name,
                    where,
                    f"no connection from {whom}{to} within {step.timeout:g}s "
                    "(set 'on_timeout: continue' to go on without one)",
                )
            return at + step.timeout
        if who == "any":
            self.sender = connected.client
        return max(at, float(connected.at))

    def hangup(
        self, scope: _Scope, step: DisconnectStep | DropStep, at: float, where: str
    ) -> Hangup:
        choice = step.disconnect if isinstance(step, DisconnectStep) else step.drop
        endpoints = tuple(self.protocol.endpoints) if choice == "all" else (choice,)
        to = self.to(scope, step, where)
        if isinstance(step, DropStep):
            code, reason = DROP_FALLBACK
            return Hangup(at, endpoints, to, code, reason, True, scope.name, where)
        return Hangup(at, endpoints, to, step.code, step.reason, False, scope.name, where)

    def fork(self) -> _Player:
        # Each branch draws from its own generator, seeded from this one, so a branch's
        # values do not depend on how the branches interleave.
        branch = _Player(self.catalog, self.context, random.Random(self.rng.getrandbits(64)))
        branch.sender, branch.received, branch.iteration = (
            self.sender,
            self.received,
            self.iteration,
        )
        branch.bound = dict(self.bound)
        return branch

    def pause(self, seconds: float, jitter: float) -> float:
        # No pause stays no pause (after a play, or an explicit delay: 0).
        if jitter and seconds > 0:
            seconds = max(0.0, seconds + self.rng.uniform(-jitter, jitter))
        speed = self.context.speed
        return 0.0 if speed == 0 else seconds / speed

    def to(self, scope: _Scope, step: Any, where: str) -> str | None:
        return self.resolve(scope, step.to or scope.target, where)

    def resolve(self, scope: _Scope, target: str | None, where: str) -> str | None:
        if target in (None, "all"):
            return None
        if target == "sender":
            if self.sender is None:
                raise StepFailed(
                    scope.name,
                    where,
                    "'to: sender' needs a client that started the run or answered a wait; "
                    "this run has none (trigger it with ?client=ID, or target 'all')",
                )
            return self.sender
        return target

    def text(self, scope: _Scope, text: str, index: int, at: float) -> str:
        if not templates.is_template(text):
            return text
        return _unicode(templates.render_text(text, self.names(scope, index, at)), text)

    def names(self, scope: _Scope, index: int, at: float) -> dict[str, Any]:
        """What a template can read (see :data:`replay.templates.NAMES`)."""
        rng = self.rng
        context = self.context
        return {
            "run": {"id": context.run_id, "scenario": scope.chain[0], "seed": context.seed},
            "scenario": scope.name,
            "step": index,
            "iteration": self.iteration,
            "now": templates.Now(context.epoch + at),
            "uuid": lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "hex": lambda digits: templates.random_hex(rng, digits),
            "random": lambda: rng.random(),
            "randint": lambda low, high: rng.randint(low, high),
            "choice": lambda items: rng.choice(items),
            "vars": templates.Variables(self.variables(scope)),
            "received": self.received.for_template() if self.received else None,
            "sender": self.sender,
            "state": templates.Variables(context.state),
        }

    def variables(self, scope: _Scope) -> Mapping[str, Any]:
        """``vars`` in ``scope``: its declared variables, and what ``let`` steps bound
        (those the scenario declares or binds itself)."""
        bound = {key: value for key, value in self.bound.items() if key in scope.bindable}
        return {**scope.vars, **bound} if bound else scope.vars


def _templated(step: MessageStep) -> bool:
    if step.text is not None:
        return templates.is_template(step.text)
    return templates.has_templates(step.data)


def _unicode(text: str, source: str) -> str:
    """``text`` if a text frame can carry it; raises TemplateFailed for a lone surrogate
    (a client's or a variable's ``"\\ud800"`` escape, rendered into the frame)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end]
        raise TemplateFailed(
            source, f"the text holds {bad!r}, half of a surrogate pair, which UTF-8 cannot carry"
        ) from None
    return text


def _reads_state(step: Any) -> bool:
    """Whether ``step`` reads the shared state when it plays (so it must wait until it is
    due before it renders anything: see :class:`Due`)."""
    if isinstance(step, ChooseStep | LetStep | SetStep):
        return True
    return any(templates.reads(text, "state") for _, text in own_texts(step))


def _holds(
    scope: _Scope, condition: str, names: Mapping[str, Any], where: str, number: int
) -> bool:
    """Whether a ``choose`` condition is true; raises StepFailed, located at it."""
    try:
        return templates.is_true(condition, names)
    except TemplateFailed as error:
        reason = f"condition {condition!r} failed: {error.reason}"
        raise StepFailed(scope.name, f"{where}.choose.{number}.when", reason) from None


def assignments(values: Mapping[str, Any]) -> str:
    """``name = value, ...`` for a person: each value's JSON text, long ones cut short."""
    shown = []
    for name, value in values.items():
        text = json.dumps(value, ensure_ascii=False, default=str)
        shown.append(f"{name} = {text if len(text) <= 60 else text[:57] + '...'}")
    return ", ".join(shown)


@dataclass(frozen=True)
class _Scope:
    """The scenario being played in a branch, and what its steps inherit: ``bindable``
    are the names of ``vars`` that ``let`` steps may give it (those it declares or binds)."""

    name: str
    scenario: Scenario
    target: str | None
    vars: Mapping[str, Any]
    chain: tuple[str, ...]
    bindable: frozenset[str] = frozenset()


class _Counter:
    """Wraps a script and counts the actions it and its forks' branches yield
    (``yield from`` passes replies)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.count = 0

    def __iter__(self) -> Script:
        reply: Any = None
        while True:
            try:
                action = self.script.send(reply)
            except StopIteration as stop:
                return float(stop.value)
            reply = yield action
            self.count += reply.actions if isinstance(action, Fork) else 1
