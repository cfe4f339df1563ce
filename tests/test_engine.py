"""The engine: scenarios played as scripts of actions, driven here by hand (no I/O, no clock)."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from replay.catalog import Catalog
from replay.engine import (
    DROP_FALLBACK,
    Action,
    Connected,
    Context,
    Due,
    Fork,
    Hangup,
    Joined,
    Note,
    Script,
    Send,
    SetState,
    Wait,
    WaitConnect,
    awaited,
    check_vars,
    declared_vars,
    play,
)
from replay.errors import ScenarioInvalid, ScenarioNotFound, StepFailed, VariablesInvalid
from replay.loader import parse_scenario
from replay.matching import ClientFrame
from replay.protocol import CLOSE_FRAME, Endpoint, StreamType, chunk_frame
from replay.scenario import ClientFrameMatch
from replay.tokens import split_tokens

#: 2023-11-14T22:13:20Z, a round epoch for templates' ``now``.
EPOCH = 1_700_000_000.0

Answer = Callable[[Wait], ClientFrame | None]


# --- helpers --------------------------------------------------------------------------------


def catalog(**sources: str) -> Catalog:
    """A checked catalog of scenarios given as YAML text, by name."""
    found = Catalog.resolve(
        parse_scenario(source, f"scenarios/{name}.yaml") for name, source in sources.items()
    )
    for loaded in found:
        assert loaded.valid, loaded.problems
    return found


class BoundedCatalog(Catalog):
    """A catalog that fails the test after too many scenario lookups, so that an engine
    looping without ever yielding makes the test fail instead of hanging."""

    def __init__(self, inner: Catalog, budget: int = 2_000) -> None:
        super().__init__(inner.files, inner.protocol_file)
        object.__setattr__(self, "budget", budget)

    def scenario(self, name: str) -> Any:
        left = self.budget - 1
        object.__setattr__(self, "budget", left)
        if left < 0:
            raise AssertionError("the engine looks scenarios up endlessly (it would hang)")
        return super().scenario(name)


def no_answer(wait: Wait) -> ClientFrame | None:
    return None


class Driver:
    """Drives a script the way a runner would, but at once and on paper.

    Records every action (branches' included, in the order they were driven), answers
    waits with ``answer``, and drives a fork's branches in ``order``: "forward",
    "reverse", or "interleaved" (one action of each branch in turn).
    """

    def __init__(
        self, answer: Answer = no_answer, order: str = "forward", max_actions: int = 10_000
    ) -> None:
        self.answer = answer
        self.order = order
        self.max_actions = max_actions
        self.actions: list[Action] = []
        self.branch_ends: list[list[float]] = []

    def run(self, script: Script) -> float:
        try:
            return self._run(script)
        finally:
            script.close()

    def _run(self, script: Script) -> float:
        reply: Any = None
        while True:
            try:
                action = script.send(reply)
            except StopIteration as stop:
                return float(stop.value)
            reply = self._handle(action)

    def _handle(self, action: Action) -> Any:
        self.actions.append(action)
        if len(self.actions) > self.max_actions:
            raise AssertionError(f"more than {self.max_actions} actions: a runaway script")
        if isinstance(action, Wait):
            return self.answer(action)
        if isinstance(action, Fork):
            before = len(self.actions)
            ends = self._fork(action.branches)
            self.branch_ends.append(ends)
            return Joined(max([action.at, *ends]), len(self.actions) - before)
        return None

    def _fork(self, branches: Sequence[Script]) -> list[float]:
        ends: dict[int, float] = {}
        if self.order == "interleaved":
            replies: dict[int, Any] = {index: None for index in range(len(branches))}
            while replies:
                for index in list(replies):
                    try:
                        action = branches[index].send(replies[index])
                    except StopIteration as stop:
                        ends[index] = float(stop.value)
                        del replies[index]
                        continue
                    replies[index] = self._handle(action)
        else:
            indexes: Iterable[int] = range(len(branches))
            if self.order == "reverse":
                indexes = reversed(range(len(branches)))
            for index in indexes:
                ends[index] = self.run(branches[index])
        return [ends[index] for index in range(len(branches))]


def context(**fields: Any) -> Context:
    fields.setdefault("run_id", "run-1")
    fields.setdefault("seed", 7)
    return Context(**fields)


def drive(
    name: str = "main",
    ctx: Context | None = None,
    driver: Driver | None = None,
    **sources: str,
) -> tuple[list[Action], float]:
    """Play ``name`` from the given scenarios; the actions and the end offset."""
    driver = driver or Driver()
    end = driver.run(play(name, catalog(**sources), ctx or context()))
    return driver.actions, end


def sends(actions: Iterable[Action]) -> list[Send]:
    return [action for action in actions if isinstance(action, Send)]


def contents(actions: Iterable[Action]) -> list[Any]:
    """The content of every stream frame sent."""
    return [json.loads(send.frame)["content"] for send in sends(actions)]


def offsets(actions: Iterable[Action]) -> list[float]:
    return [action.at for action in actions]


def gaps(values: Sequence[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(values)]


def frame_from(client: str, message_type: str, message: str, at: float) -> ClientFrame:
    text = json.dumps({"message_type": message_type, "message": message})
    return ClientFrame(client, text, at)


# --- frames, byte for byte ------------------------------------------------------------------


def test_message_with_text_is_sent_byte_exact() -> None:
    actions, end = drive(main="steps:\n  - message: EVENT\n    text: 'héllo \"world\" ✓'\n")
    assert actions == [
        Send(
            0.0,
            Endpoint.MESSAGES,
            '{"message_type":"EVENT","message":"héllo \\"world\\" ✓"}',
            None,
            "main",
            "0",
        )
    ]
    assert end == 0.0


def test_message_with_data_sends_its_json_text() -> None:
    actions, _ = drive(
        main="steps:\n"
        "  - message: EVENT\n"
        "    data: {name: 'agent-1 - EventType.START_TURN', ok: true, n: [1, 2.5, null]}\n"
    )
    [send] = sends(actions)
    assert send.endpoint == Endpoint.MESSAGES
    assert send.frame == (
        '{"message_type":"EVENT","message":'
        '"{\\"name\\":\\"agent-1 - EventType.START_TURN\\",\\"ok\\":true,\\"n\\":[1,2.5,null]}"}'
    )


def test_message_data_templates_render_and_a_lone_expression_keeps_its_type() -> None:
    actions, _ = drive(
        ctx=context(run_id="r-9", epoch=EPOCH),
        main="vars: {count: 3, label: x}\n"
        "delay: 1.5\n"
        "steps:\n"
        "  - chunk: first\n"
        "  - message: EVENT\n"
        "    data:\n"
        "      id: '{{ run.id }}'\n"
        "      at: '{{ now.ms }}'\n"
        "      count: '{{ vars.count }}'\n"
        "      label: 'at {{ now.ms }}'\n"
        "      nested: ['{{ vars.label }}', {deep: '{{ step }}'}]\n"
        "      plain: '{not a template}'\n",
    )
    send = sends(actions)[1]
    assert send.frame == (
        '{"message_type":"EVENT","message":"{\\"id\\":\\"r-9\\",\\"at\\":1700000001500,'
        '\\"count\\":3,\\"label\\":\\"at 1700000001500\\",\\"nested\\":[\\"x\\",{\\"deep\\":1}],'
        '\\"plain\\":\\"{not a template}\\"}"}'
    )
    data = json.loads(json.loads(send.frame)["message"])
    assert data["at"] == 1_700_000_001_500
    assert isinstance(data["at"], int)


@pytest.mark.parametrize(
    "step", ["text: '{{ received.message }}'", "data: {said: '{{ received.message }}'}"]
)
def test_a_lone_surrogate_a_client_sent_fails_the_step_not_the_server(step: str) -> None:
    found = catalog(main=f"steps:\n  - wait: CHAT_INPUT\n  - message: EVENT\n    {step}\n")
    answer = ClientFrame("c1", '{"message_type": "CHAT_INPUT", "message": "a\\ud800"}', 0.0)
    driver = Driver(lambda wait: answer)
    with pytest.raises(StepFailed, match="half of a surrogate pair") as failed:
        driver.run(play("main", found, context()))
    assert (failed.value.scenario, failed.value.step) == ("main", "1")


def test_message_data_template_giving_a_non_finite_number_fails_the_step() -> None:
    # The loader refuses NaN and infinities in data (they have no JSON text); a template
    # that computes one must not put "Infinity" (invalid JSON) on the wire either.
    found = catalog(
        main="vars: {big: 1.0e+308}\n"
        "steps:\n"
        "  - message: EVENT\n"
        "    data: {x: '{{ vars.big * 10 }}'}\n"
    )
    driver = Driver()
    with pytest.raises(StepFailed) as failed:
        driver.run(play("main", found, context()))
    assert (failed.value.scenario, failed.value.step) == ("main", "0")
    assert [send.frame for send in sends(driver.actions)] == []


def test_chunk_tool_and_close_frames() -> None:
    actions, _ = drive(
        main="steps:\n  - chunk: 'héllo '\n  - tool: \"search(query='x')\"\n  - close: stream\n"
    )
    assert [(send.endpoint, send.frame) for send in sends(actions)] == [
        (Endpoint.STREAM, '{"type":"default","content":"héllo "}'),
        (Endpoint.STREAM, '{"type":"tool","content":"search(query=\'x\')"}'),
        (Endpoint.STREAM, '{"type":"close","content":null}'),
    ]
    assert [send.step for send in sends(actions)] == ["0", "1", "2"]


def test_raw_frames_are_sent_as_written_on_their_endpoint() -> None:
    actions, _ = drive(
        ctx=context(run_id="r-2"),
        main="steps:\n  - raw: '{not json'\n  - raw: 'id={{ run.id }}'\n    endpoint: /ws/stream\n",
    )
    assert [(send.endpoint, send.frame) for send in sends(actions)] == [
        (Endpoint.MESSAGES, "{not json"),
        (Endpoint.STREAM, "id=r-2"),
    ]


def test_binary_frames_are_bytes() -> None:
    actions, _ = drive(
        main="steps:\n  - binary: AAEC/w==\n  - binary: aGk=\n    endpoint: /ws/stream\n"
    )
    assert [(send.endpoint, send.frame) for send in sends(actions)] == [
        (Endpoint.MESSAGES, b"\x00\x01\x02\xff"),
        (Endpoint.STREAM, b"hi"),
    ]


def test_disconnect_and_drop_are_hangups() -> None:
    actions, _ = drive(
        main="delay: 1\n"
        "steps:\n"
        "  - disconnect: /ws/stream\n"
        "    code: 4000\n"
        "    reason: bye\n"
        "  - disconnect: all\n"
        "  - drop: /ws\n"
        "    to: alice\n"
        "  - drop: all\n"
    )
    assert actions == [
        Hangup(0.0, (Endpoint.STREAM,), None, 4000, "bye", False, "main", "0"),
        Hangup(0.0, (Endpoint.MESSAGES, Endpoint.STREAM), None, 1000, "", False, "main", "1"),
        Hangup(0.0, (Endpoint.MESSAGES,), "alice", *DROP_FALLBACK, True, "main", "2"),
        Hangup(0.0, (Endpoint.MESSAGES, Endpoint.STREAM), None, *DROP_FALLBACK, True, "main", "3"),
    ]
    assert DROP_FALLBACK == (1011, "connection dropped")


# --- stream steps ---------------------------------------------------------------------------

TEXT = "Hello, wonderful world! Streaming tokens\nlike an LLM does."


def test_stream_sends_tokens_at_its_rate() -> None:
    actions, end = drive(
        main=f"delay: 2\nsteps:\n  - stream: {json.dumps(TEXT)}\n    rate: 10\n  - chunk: after\n"
    )
    tokens = split_tokens(TEXT)
    assert len(tokens) > 5
    streamed = sends(actions)[:-1]
    assert [send.frame for send in streamed] == [chunk_frame(token) for token in tokens]
    assert "".join(contents(streamed)) == TEXT
    assert offsets(streamed) == pytest.approx([index / 10 for index in range(len(tokens))])
    assert {send.step for send in streamed} == {"0"}
    # the step's delay follows its last token
    last = (len(tokens) - 1) / 10
    assert sends(actions)[-1].at == pytest.approx(last + 2)
    assert end == pytest.approx(last + 2 + 2)


def test_stream_of_tool_chunks_closed_one_token_later() -> None:
    actions, end = drive(
        main="steps:\n  - stream: 'call(x)'\n    rate: 4\n    type: tool\n    close_stream: true\n"
    )
    tokens = split_tokens("call(x)")
    frames = [send.frame for send in sends(actions)]
    assert frames == [chunk_frame(token, StreamType.TOOL) for token in tokens] + [CLOSE_FRAME]
    assert offsets(actions) == pytest.approx([index / 4 for index in range(len(tokens) + 1)])
    assert end == pytest.approx(len(tokens) / 4)


def test_stream_text_is_a_template() -> None:
    actions, _ = drive(
        ctx=context(vars={"who": "Ada"}),
        main="vars: {who: nobody}\nsteps:\n  - stream: 'Hi {{ vars.who }}!'\n    rate: 100\n",
    )
    assert "".join(contents(actions)) == "Hi Ada!"


# --- jitter ---------------------------------------------------------------------------------


def chunks(count: int, text: str = "x") -> str:
    return "".join(f"  - chunk: {json.dumps(text)}\n" for _ in range(count))


def test_jitter_keeps_pauses_within_bounds_and_varies_them() -> None:
    actions, _ = drive(main="delay: 1\njitter: 0.3\nsteps:\n" + chunks(40))
    pauses = gaps(offsets(actions))
    assert all(0.7 - 1e-9 <= pause <= 1.3 + 1e-9 for pause in pauses), pauses
    assert len({round(pause, 9) for pause in pauses}) > 30  # they do vary
    assert min(pauses) < 0.9
    assert max(pauses) > 1.1


def test_jitter_never_makes_a_pause_negative() -> None:
    actions, _ = drive(main="delay: 0.1\njitter: 0.5\nsteps:\n" + chunks(60))
    pauses = gaps(offsets(actions))
    assert all(0 <= pause <= 0.6 + 1e-9 for pause in pauses), pauses
    assert pauses.count(0.0) > 5  # clamped at zero, not below
    assert offsets(actions) == sorted(offsets(actions))


def test_step_jitter_overrides_the_scenarios() -> None:
    actions, _ = drive(
        main="delay: 1\n"
        "jitter: 0.4\n"
        "steps:\n"
        "  - chunk: a\n"
        "    jitter: 0\n"
        "  - chunk: b\n"
        "    jitter: 10ms\n"
        "  - chunk: c\n"
    )
    first, second = gaps(offsets(actions))
    assert first == 1.0
    assert 0.99 - 1e-9 <= second <= 1.01 + 1e-9


def test_stream_token_intervals_are_jittered() -> None:
    actions, _ = drive(
        main=f"steps:\n  - stream: {json.dumps(TEXT)}\n    rate: 10\n    jitter: 0.04\n"
    )
    intervals = gaps(offsets(actions))
    assert all(0.06 - 1e-9 <= interval <= 0.14 + 1e-9 for interval in intervals), intervals
    assert len({round(interval, 9) for interval in intervals}) > 1


RANDOM_STEPS = (
    "  - chunk: '{{ random() }}'\n"
    "    delay: 0.5\n"
    "  - sleep: 1\n"
    "  - chunk: '{{ random() }}'\n"
    "  - stream: 'a b c'\n"
    "  - chunk: '{{ random() }}'\n"
)


def random_contents(source: str, seed: int = 11) -> list[float]:
    actions, _ = drive(ctx=context(seed=seed), main=source)
    return [float(text) for text in contents(actions) if text.strip() not in ("a", "b", "c")]


def test_jitter_zero_draws_nothing_from_the_generator() -> None:
    expected = random.Random(11)
    values = [expected.random() for _ in range(3)]
    assert random_contents("steps:\n" + RANDOM_STEPS) == values
    assert random_contents("jitter: 0\nsteps:\n" + RANDOM_STEPS) == values
    # a scenario jitter turned off on every step draws nothing either
    off = RANDOM_STEPS.replace(
        "  - chunk: '{{ random() }}'\n", "  - chunk: '{{ random() }}'\n    jitter: 0\n"
    )
    off = off.replace("  - sleep: 1\n", "  - sleep: 1\n    jitter: 0\n")
    off = off.replace("  - stream: 'a b c'\n", "  - stream: 'a b c'\n    jitter: 0\n")
    assert random_contents("jitter: 0.2\nsteps:\n" + off) == values
    # whereas a real jitter does draw (so the comparison above can tell)
    assert random_contents("jitter: 0.2\nsteps:\n" + RANDOM_STEPS) != values


# --- speed ----------------------------------------------------------------------------------


def test_speed_scales_every_pause() -> None:
    source = "delay: 1\nsteps:\n  - chunk: a\n  - chunk: b\n  - sleep: 2\n  - chunk: c\n"
    actions, end = drive(ctx=context(speed=4), main=source)
    assert offsets(actions) == pytest.approx([0.0, 0.25, 1.0])
    assert end == pytest.approx(1.25)
    slow, slow_end = drive(ctx=context(speed=0.5), main=source)
    assert offsets(slow) == pytest.approx([0.0, 2.0, 8.0])
    assert slow_end == pytest.approx(10.0)


def test_speed_scales_token_intervals() -> None:
    source = "steps:\n  - stream: 'one two three'\n    rate: 10\n    close_stream: true\n"
    actions, end = drive(ctx=context(speed=2), main=source)
    assert offsets(actions) == pytest.approx([0.0, 0.05, 0.1, 0.15])
    assert end == pytest.approx(0.15)


def test_speed_scales_jittered_pauses_the_same_way() -> None:
    source = "delay: 1\njitter: 0.3\nsteps:\n" + chunks(10)
    normal, _ = drive(ctx=context(seed=5), main=source)
    fast, _ = drive(ctx=context(seed=5, speed=2), main=source)
    assert offsets(fast) == pytest.approx([at / 2 for at in offsets(normal)])


def test_speed_zero_removes_every_pause() -> None:
    actions, end = drive(
        ctx=context(speed=0),
        main="delay: 1\njitter: 0.5\nsteps:\n"
        "  - chunk: a\n"
        "  - sleep: 3\n"
        "  - stream: 'one two'\n"
        "    close_stream: true\n"
        "  - play: other\n",
        other="delay: 2\nsteps:\n  - tool: t\n  - tool: u\n",
    )
    assert len(actions) == 6
    assert offsets(actions) == [0.0] * 6
    assert end == 0.0


# --- wait -----------------------------------------------------------------------------------

WAIT = (
    "steps:\n"
    "  - chunk: asked\n"
    "    delay: 1\n"
    "  - wait: CHAT_INPUT\n"
    "    match: '^go'\n"
    "    fields: {message.x: '1'}\n"
    "    timeout: 5s\n"
    "    on_timeout: {on_timeout}\n"
    "  - chunk: after\n"
)


def wait_source(on_timeout: str = "fail") -> str:
    return WAIT.replace("{on_timeout}", on_timeout)


def test_wait_action_carries_the_match_the_timeout_and_the_source() -> None:
    seen: list[Wait] = []

    def answer(wait: Wait) -> ClientFrame:
        seen.append(wait)
        return frame_from("carol", "CHAT_INPUT", "go", wait.at + 1)

    drive(driver=Driver(answer), main=wait_source())
    [wait] = seen
    assert wait.at == 1.0
    assert wait.match == ClientFrameMatch(
        message="CHAT_INPUT", match="^go", fields={"message.x": "1"}
    )
    assert wait.timeout == 5.0
    assert wait.source is None
    assert (wait.scenario, wait.step) == ("main", "1")


@pytest.mark.parametrize(
    ("header", "client", "source"),
    [
        ("", None, None),
        ("to: bob\n", None, "bob"),
        ("to: bob\n", "alice", "alice"),
        ("", "alice", "alice"),
        ("to: all\n", None, None),
    ],
)
def test_wait_source_is_the_runs_target(
    header: str, client: str | None, source: str | None
) -> None:
    driver = Driver(lambda wait: frame_from(wait.source or "x", "CHAT_INPUT", "", wait.at))
    drive(ctx=context(client=client), driver=driver, main=header + "steps:\n  - wait: CHAT_INPUT\n")
    [wait] = driver.actions
    assert isinstance(wait, Wait)
    assert wait.source == source


def test_the_answer_is_received_and_its_client_is_the_sender() -> None:
    driver = Driver(lambda wait: frame_from("carol", "CHAT_INPUT", '{"n": 4}', 3.5))
    actions, end = drive(
        driver=driver,
        main="steps:\n"
        "  - wait: CHAT_INPUT\n"
        "  - chunk: '{{ received.message_type }}|{{ received.message }}|{{ received.data.n }}'\n"
        "  - chunk: '{{ sender }}|{{ received.client }}'\n"
        "    to: sender\n"
        "  - disconnect: /ws\n"
        "    to: sender\n",
    )
    first, second = sends(actions)
    assert json.loads(first.frame)["content"] == 'CHAT_INPUT|{"n": 4}|4'
    assert first.at == 3.5  # the run goes on from when the frame came
    assert first.to is None
    assert json.loads(second.frame)["content"] == "carol|carol"
    assert second.to == "carol"
    hangup = actions[-1]
    assert isinstance(hangup, Hangup)
    assert hangup.to == "carol"
    assert end == 3.5


def test_the_answer_replaces_the_context_sender() -> None:
    driver = Driver(lambda wait: frame_from("carol", "CHAT_INPUT", "", wait.at))
    actions, _ = drive(
        ctx=context(sender="alice"),
        driver=driver,
        main="steps:\n"
        "  - chunk: before\n"
        "    to: sender\n"
        "  - wait: CHAT_INPUT\n"
        "  - chunk: after\n"
        "    to: sender\n",
    )
    assert [send.to for send in sends(actions)] == ["alice", "carol"]


def test_a_timeout_fails_the_step_by_default() -> None:
    script = play("main", catalog(main=wait_source("fail")), context())
    with pytest.raises(StepFailed) as failed:
        Driver(no_answer).run(script)
    error = failed.value
    assert (error.scenario, error.step) == ("main", "1")
    assert "CHAT_INPUT" in str(error)
    assert "on_timeout" in str(error)
    assert "5s" in str(error)


def test_a_timeout_with_continue_goes_on_after_the_timeout() -> None:
    actions, end = drive(driver=Driver(no_answer), main=wait_source("continue"))
    assert [type(action) for action in actions] == [Send, Wait, Send]
    assert actions[-1].at == pytest.approx(6.0)
    assert end == pytest.approx(6.0)


def test_wait_timeouts_are_not_scaled_by_speed() -> None:
    actions, _ = drive(ctx=context(speed=2), driver=Driver(no_answer), main=wait_source("continue"))
    wait = actions[1]
    assert isinstance(wait, Wait)
    assert wait.at == pytest.approx(0.5)
    assert wait.timeout == 5.0
    assert actions[-1].at == pytest.approx(5.5)


def test_received_is_none_before_any_wait_but_the_context_can_give_it() -> None:
    started = ClientFrame("dora", '{"message_type":"PAUSE_REQUEST","message":"now"}', 0.0)
    actions, _ = drive(
        ctx=context(sender="dora", received=started),
        main="steps:\n"
        "  - chunk: '{{ received.message_type }} {{ received.message }} {{ sender }}'\n",
    )
    assert contents(actions) == ["PAUSE_REQUEST now dora"]


# --- targeting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "step_to", "client", "expected"),
    [
        ("", "", None, None),
        ("to: bob\n", "", None, "bob"),
        ("to: bob\n", "", "alice", "alice"),
        ("", "", "alice", "alice"),
        ("to: bob\n", "    to: carol\n", "alice", "carol"),
        ("", "    to: carol\n", None, "carol"),
        ("to: bob\n", "    to: all\n", "alice", None),
        ("to: all\n", "", None, None),
        ("", "", "all", None),
    ],
)
def test_targeting_precedence(
    header: str, step_to: str, client: str | None, expected: str | None
) -> None:
    actions, _ = drive(ctx=context(client=client), main=header + "steps:\n  - chunk: a\n" + step_to)
    [send] = sends(actions)
    assert send.to == expected


@pytest.mark.parametrize(
    ("main_header", "play_to", "client", "expected"),
    [
        ("", "", None, "erin"),  # nothing above: the played scenario's own 'to'
        ("", "    to: dave\n", None, "dave"),  # the play step's 'to' passes down
        ("to: bob\n", "", None, "bob"),  # so does the target the player has
        ("", "", "alice", "alice"),  # and the run's client
        ("to: bob\n", "    to: dave\n", "alice", "dave"),
    ],
)
def test_play_passes_its_target_down(
    main_header: str, play_to: str, client: str | None, expected: str
) -> None:
    actions, _ = drive(
        ctx=context(client=client),
        main=main_header + "steps:\n  - play: sub\n" + play_to + "  - chunk: own\n",
        sub="to: erin\nsteps:\n  - chunk: a\n  - chunk: b\n    to: frank\n",
    )
    inner, own_step, after = sends(actions)
    assert inner.to == expected
    assert own_step.to == "frank"  # a step's own 'to' always wins
    assert (inner.scenario, inner.step) == ("sub", "0")
    assert after.scenario == "main"


def test_parallel_and_repeat_pass_their_target_down() -> None:
    driver = Driver()
    actions, _ = drive(
        driver=driver,
        main="steps:\n"
        "  - parallel: [a, b]\n"
        "    to: dave\n"
        "  - repeat: 2\n"
        "    to: erin\n"
        "    steps:\n"
        "      - chunk: r\n"
        "  - chunk: last\n",
        a="steps:\n  - chunk: a\n",
        b="to: zed\nsteps:\n  - chunk: b\n",
    )
    assert [
        (content, send.to) for content, send in zip(contents(actions), sends(actions), strict=True)
    ] == [
        ("a", "dave"),
        ("b", "dave"),
        ("r", "erin"),
        ("r", "erin"),
        ("last", None),
    ]


def test_to_sender_without_a_sender_fails_the_step() -> None:
    script = play(
        "main", catalog(main="steps:\n  - chunk: a\n  - chunk: b\n    to: sender\n"), context()
    )
    driver = Driver()
    with pytest.raises(StepFailed, match="'to: sender'") as failed:
        driver.run(script)
    assert (failed.value.scenario, failed.value.step) == ("main", "1")
    assert len(driver.actions) == 1


def test_scenario_to_sender_with_a_sender() -> None:
    actions, _ = drive(
        ctx=context(sender="s-1"),
        main="to: sender\nsteps:\n  - chunk: a\n  - drop: all\n",
    )
    assert [action.to for action in actions] == ["s-1", "s-1"]  # type: ignore[union-attr]


def test_a_wait_for_sender_without_one_fails() -> None:
    script = play("main", catalog(main="to: sender\nsteps:\n  - wait: CHAT_INPUT\n"), context())
    with pytest.raises(StepFailed, match="sender"):
        Driver().run(script)


# --- variables ------------------------------------------------------------------------------


def test_vars_have_defaults_and_the_context_overrides_them() -> None:
    source = "vars: {name: World, n: 1}\nsteps:\n  - chunk: 'Hello {{ vars.name }} {{ vars.n }}'\n"
    actions, _ = drive(main=source)
    assert contents(actions) == ["Hello World 1"]
    actions, _ = drive(ctx=context(vars={"name": "Ada"}), main=source)
    assert contents(actions) == ["Hello Ada 1"]


def test_each_scenario_sees_only_the_vars_it_declares() -> None:
    actions, _ = drive(
        ctx=context(vars={"a": 5, "b": 6, "stray": 7}),
        main="vars: {a: 1}\nsteps:\n  - chunk: '{{ vars | tojson }}'\n  - play: sub\n",
        sub="vars: {b: 2, c: 3}\nsteps:\n  - chunk: '{{ vars | tojson }}'\n",
    )
    assert [json.loads(text) for text in contents(actions)] == [{"a": 5}, {"b": 6, "c": 3}]


def test_declared_vars_include_the_played_scenarios() -> None:
    found = catalog(
        main="vars: {a: 1}\n"
        "steps:\n"
        "  - play: sub\n"
        "  - repeat: 2\n"
        "    steps:\n"
        "      - parallel: [deep]\n",
        sub="vars: {b: two}\nsteps:\n  - chunk: x\n",
        deep="vars: {c: [3]}\nsteps:\n  - chunk: y\n",
        unrelated="vars: {z: 0}\nsteps:\n  - chunk: z\n",
    )
    assert declared_vars("main", found) == {"a": 1, "b": "two", "c": [3]}
    assert declared_vars("sub", found) == {"b": "two"}
    check_vars("main", found, {"a": 2, "b": "x", "c": []})
    check_vars("main", found, {})


def test_check_vars_refuses_undeclared_names_with_a_hint() -> None:
    found = catalog(main="vars: {color: red, size: 1}\nsteps:\n  - chunk: x\n")
    with pytest.raises(VariablesInvalid, match="did you mean 'color'") as refused:
        check_vars("main", found, {"colour": "blue", "size": 2})
    assert refused.value.unknown == ("colour",)
    assert refused.value.scenario == "main"
    assert set(refused.value.declared) == {"color", "size"}
    with pytest.raises(VariablesInvalid):
        check_vars("main", catalog(main="steps:\n  - chunk: x\n"), {"any": 1})


# --- templates ------------------------------------------------------------------------------


def test_run_scenario_and_step_names() -> None:
    actions, _ = drive(
        ctx=context(run_id="r-42", seed=99),
        main="steps:\n"
        "  - chunk: '{{ run.id }} {{ run.seed }} {{ run.scenario }} {{ scenario }} {{ step }}'\n"
        "  - play: sub\n",
        sub="steps:\n"
        "  - sleep: 1\n"
        "  - chunk: '{{ run.id }} {{ run.seed }} {{ run.scenario }} {{ scenario }} {{ step }}'\n",
    )
    assert contents(actions) == ["r-42 99 main main 0", "r-42 99 main sub 1"]


def test_now_is_the_epoch_plus_the_offset() -> None:
    actions, _ = drive(
        ctx=context(epoch=EPOCH),
        main="steps:\n"
        "  - chunk: '{{ now.iso }} {{ now.ms }}'\n"
        "    delay: 1.5\n"
        "  - chunk: '{{ now.iso }} {{ now.ms }} {{ now }}'\n",
    )
    assert contents(actions) == [
        "2023-11-14T22:13:20.000Z 1700000000000",
        "2023-11-14T22:13:21.500Z 1700000001500 2023-11-14T22:13:21.500Z",
    ]


def test_now_follows_speed() -> None:
    actions, _ = drive(
        ctx=context(epoch=EPOCH, speed=2),
        main="steps:\n  - sleep: 3\n  - chunk: '{{ now.ms }}'\n",
    )
    assert contents(actions) == ["1700000001500"]


def uuids(seed: int) -> list[str]:
    actions, _ = drive(
        ctx=context(seed=seed),
        main="steps:\n  - chunk: '{{ uuid() }}'\n  - chunk: '{{ uuid() }}'\n",
    )
    return contents(actions)


def test_uuid_is_deterministic_per_seed() -> None:
    first, second = uuids(1)
    assert first != second
    assert uuids(1) == [first, second]
    assert uuids(2) != [first, second]
    for text in (first, second):
        assert uuid.UUID(text).version == 4
        assert str(uuid.UUID(text)) == text


def test_random_helpers_are_seeded() -> None:
    source = (
        "steps:\n"
        '  - chunk: \'{{ random() }} {{ randint(1, 10**9) }} {{ choice(["a", "b", "c"]) }}\'\n'
    )
    first, _ = drive(ctx=context(seed=3), main=source)
    again, _ = drive(ctx=context(seed=3), main=source)
    other, _ = drive(ctx=context(seed=4), main=source)
    assert contents(first) == contents(again)
    assert contents(first) != contents(other)


def test_a_template_failing_at_run_time_fails_its_step() -> None:
    script = play(
        "main",
        catalog(main="steps:\n  - chunk: fine\n  - chunk: '{{ received.message }}'\n"),
        context(),
    )
    driver = Driver()
    with pytest.raises(StepFailed) as failed:
        driver.run(script)
    assert (failed.value.scenario, failed.value.step) == ("main", "1")
    assert str(failed.value).startswith("scenario 'main', step 1: ")
    assert "received" in str(failed.value)
    assert len(driver.actions) == 1


def test_a_failing_template_inside_a_repeat_names_the_nested_step() -> None:
    script = play(
        "main",
        catalog(
            main="steps:\n"
            "  - chunk: a\n"
            "  - chunk: b\n"
            "  - repeat: 2\n"
            "    steps:\n"
            "      - chunk: '{{ received.message }}'\n"
        ),
        context(),
    )
    with pytest.raises(StepFailed) as failed:
        Driver().run(script)
    assert (failed.value.scenario, failed.value.step) == ("main", "2.steps.0")
    assert "scenario 'main', step 2.steps.0" in str(failed.value)


def test_a_failing_template_in_a_played_scenario_names_that_scenario() -> None:
    script = play(
        "main",
        catalog(
            main="steps:\n  - play: sub\n",
            sub="steps:\n  - chunk: ok\n  - tool: '{{ received.data.x }}'\n",
        ),
        context(),
    )
    with pytest.raises(StepFailed) as failed:
        Driver().run(script)
    assert (failed.value.scenario, failed.value.step) == ("sub", "1")


# --- repeat ---------------------------------------------------------------------------------


def test_repeat_n_times_with_the_iteration() -> None:
    actions, end = drive(
        main="delay: 0.5\n"
        "steps:\n"
        "  - repeat: 3\n"
        "    steps:\n"
        "      - chunk: '{{ iteration }}/{{ step }}'\n"
        "  - chunk: '{{ iteration }}'\n"
    )
    assert contents(actions) == ["0/0", "1/0", "2/0", "0"]
    assert offsets(actions) == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert [send.step for send in sends(actions)] == ["0.steps.0"] * 3 + ["1"]
    assert end == pytest.approx(2.0)


def test_nested_repeats_count_their_own_iterations() -> None:
    actions, _ = drive(
        main="steps:\n"
        "  - repeat: 2\n"
        "    steps:\n"
        "      - repeat: 3\n"
        "        steps:\n"
        "          - chunk: 'in {{ iteration }}'\n"
        "      - chunk: 'out {{ iteration }}'\n"
    )
    assert contents(actions) == [
        "in 0",
        "in 1",
        "in 2",
        "out 0",
        "in 0",
        "in 1",
        "in 2",
        "out 1",
    ]
    assert [send.step for send in sends(actions)] == (["0.steps.0.steps.0"] * 3 + ["0.steps.1"]) * 2


def test_repeat_forever_goes_on() -> None:
    found = catalog(
        main="steps:\n  - repeat: forever\n    steps:\n      - chunk: tick\n        delay: 1\n"
    )
    script = play("main", found, context())
    try:
        actions = [next(script) for _ in range(50)]
    finally:
        script.close()
    assert offsets(actions) == [float(index) for index in range(50)]


@pytest.mark.parametrize(
    "block",
    [
        "      - sleep: 1\n      - play: idle\n",
        "      - repeat: 2\n        steps:\n          - play: idle\n",
    ],
)
def test_repeat_forever_of_nothing_fails_instead_of_hanging(block: str) -> None:
    sources = {
        "main": "steps:\n  - chunk: start\n  - repeat: forever\n    steps:\n" + block,
        "idle": "steps:\n  - sleep: 2\n",
    }
    loaded = {
        name: parse_scenario(text, f"scenarios/{name}.yaml") for name, text in sources.items()
    }
    # A checked catalog refuses it when the file loads (replay.budget)...
    checked = Catalog.resolve(loaded.values())
    assert "forever would hang" in checked.file("main").problems[0].message
    # ...and the engine still fails such a run if handed one unchecked.
    found = BoundedCatalog(Catalog(loaded))
    driver = Driver()
    with pytest.raises(StepFailed, match="forever") as failed:
        driver.run(play("main", found, context()))
    assert (failed.value.scenario, failed.value.step) == ("main", "1")
    assert len(driver.actions) == 1


# --- parallel -------------------------------------------------------------------------------

FORK = {
    "main": "steps:\n  - parallel: [a, b, c]\n  - chunk: 'main {{ random() }}'\n",
    "a": "delay: 0.1\njitter: 0.05\nsteps:\n"
    "  - chunk: 'a {{ random() }}'\n  - chunk: 'a {{ uuid() }}'\n  - chunk: 'a end'\n",
    "b": "steps:\n  - parallel: [d]\n  - chunk: 'b {{ randint(0, 10**9) }}'\n"
    "  - stream: 'b b b'\n    rate: 7\n    jitter: 0.01\n",
    "c": "delay: 0.2\njitter: 0.1\nsteps:\n  - tool: '{{ random() }}'\n  - tool: end\n",
    "d": "delay: 0.2\njitter: 0.1\nsteps:\n  - tool: '{{ random() }}'\n  - tool: end\n",
}


def by_branch(driver: Driver) -> dict[str, list[tuple[float, str]]]:
    found: dict[str, list[tuple[float, str]]] = {}
    for send in sends(driver.actions):
        assert isinstance(send.frame, str)
        found.setdefault(send.scenario, []).append((send.at, send.frame))
    return found


@pytest.mark.parametrize("order", ["reverse", "interleaved"])
def test_branches_draw_the_same_values_whatever_the_driving_order(order: str) -> None:
    forward = Driver(order="forward")
    forward_end = forward.run(play("main", catalog(**FORK), context(seed=21)))
    other = Driver(order=order)
    other_end = other.run(play("main", catalog(**FORK), context(seed=21)))
    assert [type(action) for action in other.actions].count(Send) == len(sends(forward.actions))
    assert by_branch(other) == by_branch(forward)
    assert other_end == forward_end


def test_branches_draw_different_values_from_each_other() -> None:
    source = "steps:\n  - chunk: '{{ random() }}'\n"
    driver = Driver()
    driver.run(
        play("main", catalog(main="steps:\n  - parallel: [a, b]\n", a=source, b=source), context())
    )
    first, second = contents(driver.actions)
    assert first != second


def test_parallel_lasts_as_long_as_its_longest_branch() -> None:
    driver = Driver()
    actions, end = drive(
        driver=driver,
        main="steps:\n"
        "  - chunk: before\n"
        "    delay: 1\n"
        "  - parallel: [slow, fast]\n"
        "  - chunk: after\n",
        slow="delay: 1\nsteps:\n  - chunk: s1\n  - chunk: s2\n",
        fast="delay: 0.5\nsteps:\n  - chunk: f1\n",
    )
    fork = actions[1]
    assert isinstance(fork, Fork)
    assert (fork.at, len(fork.branches), fork.scenario, fork.step) == (1.0, 2, "main", "1")
    assert driver.branch_ends == [[3.0, 1.5]]
    assert actions[-1].at == 3.0
    assert contents(actions)[-1] == "after"
    assert end == 3.0


def test_parallel_branches_start_at_the_fork() -> None:
    actions, _ = drive(
        main="steps:\n  - sleep: 2\n  - parallel: [a, a]\n",
        a="steps:\n  - chunk: '{{ scenario }} {{ step }}'\n",
    )
    assert [(send.at, send.scenario, send.step) for send in sends(actions)] == [
        (2.0, "a", "0"),
        (2.0, "a", "0"),
    ]


def test_branches_inherit_the_sender_and_received() -> None:
    driver = Driver(lambda wait: frame_from("carol", "CHAT_INPUT", "hey", wait.at))
    actions, _ = drive(
        driver=driver,
        main="steps:\n  - wait: CHAT_INPUT\n  - parallel: [a]\n",
        a="steps:\n  - chunk: '{{ received.message }}'\n    to: sender\n",
    )
    [send] = sends(actions)
    assert (json.loads(send.frame)["content"], send.to) == ("hey", "carol")


# --- scenarios that cannot be played ----------------------------------------------------------


def test_unknown_and_invalid_scenarios_raise_at_once() -> None:
    found = Catalog.resolve(
        [
            parse_scenario("steps: []\n", "scenarios/broken.yaml"),
            parse_scenario("steps:\n  - play: broken\n", "scenarios/user.yaml"),
        ]
    )
    with pytest.raises(ScenarioNotFound):
        play("nothing", found, context())
    with pytest.raises(ScenarioInvalid):
        play("broken", found, context())
    with pytest.raises(ScenarioInvalid):
        play("user", found, context())


def unchecked(**sources: str) -> Catalog:
    """A catalog built by hand, without Catalog.resolve's cycle check."""
    files = [parse_scenario(source, f"{name}.yaml") for name, source in sources.items()]
    return Catalog({loaded.name: loaded for loaded in files})


def test_a_cycle_in_a_hand_built_catalog_raises_instead_of_recursing() -> None:
    found = unchecked(a="steps:\n  - chunk: a\n  - play: b\n", b="steps:\n  - play: a\n")
    with pytest.raises(ScenarioInvalid, match="plays itself: a -> b -> a"):
        Driver().run(play("a", found, context()))


def test_a_cycle_through_parallel_raises_too() -> None:
    found = unchecked(
        a="steps:\n  - parallel: [b]\n", b="steps:\n  - repeat: 2\n    steps:\n      - play: a\n"
    )
    with pytest.raises(ScenarioInvalid, match="plays itself: a -> b -> a"):
        Driver().run(play("a", found, context()))


def test_playing_the_same_scenario_twice_is_not_a_cycle() -> None:
    actions, _ = drive(
        main="steps:\n  - play: sub\n  - play: sub\n  - parallel: [sub, sub]\n",
        sub="steps:\n  - chunk: s\n",
    )
    assert contents(actions) == ["s"] * 4


# --- choose, let, set, wait_connect and the shared state -------------------------------------


class Stateful(Driver):
    """A driver that applies SetState to ``state`` (a dict the context reads), answers
    WaitConnect with ``connect``, and calls ``on_due`` at each Due (as if time passed
    and something else changed the state meanwhile)."""

    def __init__(
        self,
        state: dict[str, Any],
        answer: Answer = no_answer,
        connect: Callable[[WaitConnect], Connected | None] = lambda wait: None,
        on_due: Callable[[Due], None] = lambda due: None,
    ) -> None:
        super().__init__(answer)
        self.state = state
        self.connect = connect
        self.on_due = on_due

    def _handle(self, action: Action) -> Any:
        if isinstance(action, SetState):
            self.state.update(action.changes)
        elif isinstance(action, WaitConnect):
            self.actions.append(action)
            return self.connect(action)
        elif isinstance(action, Due):
            self.on_due(action)
        return super()._handle(action)


def stateful(
    source: str,
    state: dict[str, Any] | None = None,
    ctx: Context | None = None,
    sub: str | None = None,
    **options: Any,
) -> tuple[list[Action], float, dict[str, Any]]:
    """Play ``main`` (and ``sub``, if given) with a live state dict, driven by a Stateful
    driver made with ``options``; the actions, the end offset and the state."""
    shared = {} if state is None else state
    sources = {"main": source} if sub is None else {"main": source, "sub": sub}
    driver = Stateful(shared, **options)
    played = replace(ctx or context(), state=shared)
    end = driver.run(play("main", catalog(**sources), played))
    return driver.actions, end, shared


def messages(actions: Iterable[Action]) -> list[str]:
    """The message of every /ws frame sent."""
    return [
        json.loads(send.frame)["message"]
        for send in sends(actions)
        if send.endpoint == Endpoint.MESSAGES
    ]


def notes(actions: Iterable[Action]) -> list[tuple[str, str, str]]:
    return [(a.kind, a.text, a.step) for a in actions if isinstance(a, Note)]


CHOOSER = """\
vars: {strict: false}
steps:
  - chunk: first
    delay: 1s
  - choose:
      - when: "state.paused and vars.strict"
        steps:
          - message: EVENT
            text: strictly paused
      - when: "state.paused"
        steps:
          - message: EVENT
            text: paused
          - message: EVENT
            text: "still paused at {{ step }}"
      - otherwise:
          - message: EVENT
            text: running
  - chunk: last
"""


def test_choose_plays_the_first_true_branch_inline() -> None:
    actions, end, _ = stateful(CHOOSER, {"paused": True})
    assert [json.loads(send.frame).get("message") for send in sends(actions)] == [
        None,
        "paused",
        "still paused at 1",
        None,
    ]
    evented = [send for send in sends(actions) if send.endpoint == Endpoint.MESSAGES]
    assert [(send.at, send.step) for send in evented] == [
        (1.0, "1.choose.1.steps.0"),
        (1.0, "1.choose.1.steps.1"),
    ]
    assert notes(actions) == [("choose", "branch 1 (when state.paused)", "1")]
    # It waited for its time before it read the state.
    [due] = [action for action in actions if isinstance(action, Due)]
    assert (due.at, due.step) == (1.0, "1")
    assert end == 1.0


def test_choose_takes_otherwise_when_nothing_is_true_and_none_without_it() -> None:
    actions, _, _ = stateful(CHOOSER, {"paused": False})
    assert [s.step for s in sends(actions)] == ["0", "1.choose.2.otherwise.0", "2"]
    assert notes(actions) == [("choose", "otherwise", "1")]
    no_otherwise = CHOOSER.replace(
        "      - otherwise:\n", "      - when: 'false'\n        steps:\n"
    )
    actions, _, _ = stateful(no_otherwise, {"paused": False})
    assert [s.step for s in sends(actions)] == ["0", "2"]
    assert notes(actions) == [("choose", "no branch: no condition is true", "1")]


def test_conditions_read_vars_received_and_the_state_as_it_is_when_the_step_is_due() -> None:
    source = CHOOSER.replace("  - choose:", "  - wait: CHAT_INPUT\n  - choose:").replace(
        'when: "state.paused"', "when: \"received.message == 'pause' or state.paused\""
    )
    answer = frame_from("c1", "CHAT_INPUT", "pause", 0.5)
    actions, _, _ = stateful(source, {"paused": False}, answer=lambda wait: answer)
    assert "paused" in messages(actions)
    # The state changes while the step waits for its time: the condition sees the change.
    shared: dict[str, Any] = {"paused": False}
    actions, _, _ = stateful(CHOOSER, shared, on_due=lambda due: shared.update(paused=True))
    assert "paused" in messages(actions)
    strict = context(vars={"strict": True})
    actions, _, _ = stateful(CHOOSER, {"paused": True}, ctx=strict)
    assert "strictly paused" in messages(actions)


def test_choose_gives_its_target_to_its_branch_steps() -> None:
    actions, _, _ = stateful(
        "steps:\n"
        "  - choose:\n"
        "      - when: 'true'\n"
        "        steps:\n"
        "          - chunk: a\n"
        "          - chunk: b\n"
        "            to: other\n"
        "    to: browser-1\n"
        "  - chunk: c\n"
    )
    assert [send.to for send in sends(actions)] == ["browser-1", "other", None]


def test_a_condition_that_fails_fails_the_step_located_at_it() -> None:
    source = (
        "steps:\n  - choose:\n      - when: 'false'\n        steps: [{chunk: a}]\n"
        "      - when: received.data.answer == 'yes'\n        steps: [{chunk: b}]\n"
    )
    with pytest.raises(StepFailed) as failed:
        stateful(source)
    assert (failed.value.scenario, failed.value.step) == ("main", "0.choose.1.when")
    assert failed.value.reason.startswith("condition \"received.data.answer == 'yes'\" failed: ")


def test_let_binds_once_for_every_later_step_and_keeps_types() -> None:
    actions, _, _ = stateful(
        "vars: {user: Ada}\n"
        "steps:\n"
        "  - message: EVENT\n"
        "    data: {before: '{{ vars.user }}'}\n"
        "  - let: {order: '{{ uuid() }}', dice: '{{ randint(1, 6) }}', user: 'Grace'}\n"
        "  - message: EVENT\n"
        "    data: {order: '{{ vars.order }}', dice: '{{ vars.dice }}', user: '{{ vars.user }}'}\n"
        "  - message: EVENT\n"
        "    text: '{{ vars.order }}'\n"
    )
    sent = messages(actions)
    assert json.loads(sent[0]) == {"before": "Ada"}
    bound = json.loads(sent[1])
    assert isinstance(bound["dice"], int)
    assert 1 <= bound["dice"] <= 6
    assert bound["user"] == "Grace"  # a let overrides the declared value from then on
    assert str(uuid.UUID(bound["order"])) == bound["order"]
    assert sent[2] == bound["order"]  # rendered once: the same value later
    assert notes(actions) == [
        ("let", f'order = "{bound["order"]}", dice = {bound["dice"]}, user = "Grace"', "1")
    ]


def test_a_played_scenario_sees_the_bound_names_it_declares() -> None:
    actions, _, _ = stateful(
        "steps:\n  - let: {order: 42, other: x}\n  - play: sub\n",
        sub="vars: {order: 0}\nsteps:\n  - message: EVENT\n    text: '{{ vars | tojson }}'\n",
    )
    assert messages(actions) == ['{"order": 42}']


def test_parallel_branches_get_copies_of_what_was_bound() -> None:
    actions, _, _ = stateful(
        "steps:\n"
        "  - let: {n: 1}\n"
        "  - parallel: [sub, sub]\n"
        "  - message: EVENT\n"
        "    text: 'after {{ vars.n }}'\n",
        sub="vars: {n: 0}\n"
        "steps:\n"
        "  - message: EVENT\n"
        "    text: 'branch sees {{ vars.n }}'\n"
        "  - let: {n: 2}\n"
        "  - message: EVENT\n"
        "    text: 'branch now {{ vars.n }}'\n",
    )
    assert messages(actions) == [
        "branch sees 1",
        "branch now 2",
        "branch sees 1",  # the other branch's let is its own
        "branch now 2",
        "after 1",  # and neither reaches back to the run
    ]


def test_set_yields_the_rendered_changes_when_due_and_later_steps_read_them() -> None:
    actions, end, shared = stateful(
        "steps:\n"
        "  - sleep: 2s\n"
        "  - set: {paused: true, turn: '{{ state.turn + 1 }}', label: 'turn {{ state.turn }}'}\n"
        "  - message: EVENT\n"
        "    text: '{{ state.turn }} {{ state.paused }}'\n",
        {"turn": 1},
    )
    [change] = [action for action in actions if isinstance(action, SetState)]
    assert change == SetState(2.0, {"paused": True, "turn": 2, "label": "turn 1"}, "main", "1")
    assert shared == {"turn": 2, "paused": True, "label": "turn 1"}
    assert messages(actions) == ["2 True"]
    dues = [(due.at, due.step) for due in actions if isinstance(due, Due)]
    assert dues == [(2.0, "1"), (2.0, "2")]  # set, then the step whose text reads state
    assert end == 2.0


def test_the_engine_never_changes_the_state_itself() -> None:
    found = catalog(main="steps:\n  - set: {paused: true}\n")
    state = {"paused": False}
    actions = Driver()  # applies nothing
    actions.run(play("main", found, context(state=state)))
    assert state == {"paused": False}


def test_only_steps_that_read_the_state_wait_for_their_time_first() -> None:
    actions, _, _ = stateful(
        "steps:\n"
        "  - chunk: '{{ vars.x }}'\n"
        "  - chunk: '{% if state.on %}on{% endif %}'\n"
        "  - message: EVENT\n"
        "    data: {deep: ['{{ state.on }}']}\n"
        "vars: {x: 1}\n",
        {"on": True},
    )
    assert [due.step for due in actions if isinstance(due, Due)] == ["1", "2"]


def connect_step(target: str, extra: str = "") -> str:
    return (
        f"steps:\n  - wait_connect: {target}\n{extra}"
        "  - message: EVENT\n    text: 'hello {{ sender }}'\n    to: sender\n"
    )


def test_wait_connect_for_any_client_makes_it_the_sender() -> None:
    seen: list[WaitConnect] = []

    def connect(wait: WaitConnect) -> Connected:
        seen.append(wait)
        return Connected("back-1", "/ws", 3.5)

    extra = "    endpoint: /ws\n    new: true\n    timeout: 30s\n"
    actions, end, _ = stateful(connect_step("any", extra), connect=connect)
    assert seen == [WaitConnect(0.0, None, "/ws", True, 30.0, "main", "0")]
    [send] = sends(actions)
    assert (send.at, send.to) == (3.5, "back-1")
    assert messages(actions) == ["hello back-1"]
    assert end == 3.5


def test_wait_connect_for_the_sender_or_an_id_keeps_the_sender() -> None:
    seen: list[WaitConnect] = []

    def connect(wait: WaitConnect) -> Connected:
        seen.append(wait)
        return Connected(wait.client or "?", "/ws/stream", 0.0)

    actions, _, _ = stateful(connect_step("sender"), ctx=context(sender="ui"), connect=connect)
    assert seen[-1] == WaitConnect(0.0, "ui", None, False, 60.0, "main", "0")
    assert [send.to for send in sends(actions)] == ["ui"]
    actions, _, _ = stateful(connect_step("tab-2"), ctx=context(sender="ui"), connect=connect)
    assert seen[-1].client == "tab-2"
    assert messages(actions) == ["hello ui"]


def test_wait_connect_for_the_sender_without_one_fails() -> None:
    with pytest.raises(StepFailed, match="'wait_connect: sender' needs a client") as failed:
        stateful(connect_step("sender"))
    assert failed.value.step == "0"


def test_wait_connect_that_times_out_fails_or_goes_on() -> None:
    with pytest.raises(StepFailed) as failed:
        stateful(connect_step("tab-2", "    endpoint: /ws\n    timeout: 5s\n"))
    assert failed.value.reason == (
        "no connection from client 'tab-2' to /ws within 5s "
        "(set 'on_timeout: continue' to go on without one)"
    )
    actions, end, _ = stateful(
        "steps:\n  - wait_connect: any\n    timeout: 5s\n    on_timeout: continue\n"
        "  - chunk: after\n"
    )
    assert [(send.at, send.step) for send in sends(actions)] == [(5.0, "1")]
    assert end == 5.0


def test_awaited_looks_inside_choose_branches() -> None:
    found = catalog(
        main="steps:\n"
        "  - choose:\n"
        "      - when: 'true'\n"
        "        steps: [{wait: CHAT_INPUT}]\n"
        "      - otherwise: [{play: sub}]\n",
        sub="steps:\n  - choose:\n      - otherwise: [{wait: PAUSE_REQUEST, match: x}]\n",
    )
    assert sorted(match.message for match in awaited("main", found)) == [
        "CHAT_INPUT",
        "PAUSE_REQUEST",
    ]


def test_a_forever_repeat_of_a_false_choice_hands_control_back_each_pass() -> None:
    driver = Stateful({}, on_due=lambda due: None)
    driver.max_actions = 50
    found = catalog(
        main="steps:\n"
        "  - repeat: forever\n"
        "    steps:\n"
        "      - sleep: 1s\n"
        "      - choose:\n"
        "          - when: state.go is defined\n"
        "            steps: [{chunk: go}]\n"
    )
    with pytest.raises(AssertionError, match="more than 50 actions"):
        driver.run(play("main", found, context()))
    dues = [action.at for action in driver.actions if isinstance(action, Due)]
    assert dues[:3] == [1.0, 2.0, 3.0]  # polling the state once a second, never spinning
