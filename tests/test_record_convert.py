"""Recordings to scenarios (replay.record.convert): the same frames, in the same order,
with the same timing, in a scenario that validates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from replay.catalog import Catalog
from replay.engine import Context
from replay.loader import MAX_FILE_BYTES, MAX_VALUES, ScenarioFile, parse_scenario
from replay.protocol.declaration import (
    ChunkEnvelope,
    EndpointDeclaration,
    MessageEnvelope,
    Protocol,
)
from replay.protocol.file import ProtocolFile, parse_protocol
from replay.protocol.schwarm import SCHWARM
from replay.protocol.wire import encode
from replay.record.convert import Converted, ConvertError, Options, convert, exact_step
from replay.record.format import End, Recording, bytes_frame, close_frame, text_frame
from replay.record.infer import infer_protocol
from replay.timeline import build_timeline
from tests.recordings import (
    frames_of,
    hour_of_chunks,
    schwarm_session,
    schwarm_stream,
    schwarm_ws,
    session,
)

# --- helpers ------------------------------------------------------------------------------


def loaded(converted: Converted, protocol: Protocol = SCHWARM) -> Catalog:
    """Every file of ``converted``, each valid, resolved together."""
    files: list[ScenarioFile] = []
    for name, text in converted.files.items():
        scenario = parse_scenario(text, f"{name}.yaml", protocol)
        assert scenario.valid, [str(problem) for problem in scenario.problems]
        files.append(scenario)
    catalog = Catalog.resolve(files, ProtocolFile("_protocol.yaml", protocol))
    assert all(file.valid for file in catalog), [p for f in catalog for p in f.problems]
    return catalog


def replayed(
    converted: Converted, protocol: Protocol = SCHWARM, answers: Sequence[str] = ()
) -> list[tuple[int, str, str]]:
    """What the scenario sends, played on paper with ``answers`` for its waits:
    (offset in ms, endpoint, frame) of every frame, binary ones as ``binary:HEX``, and
    hangups as ``close CODE`` / ``drop``."""
    timeline = build_timeline(converted.name, loaded(converted, protocol), answers=answers)
    cues = []
    for cue in timeline:
        if cue.kind in ("frame", "binary", "disconnect", "drop"):
            cues.append((round(cue.offset * 1000), str(cue.endpoint), _shown(cue.kind, cue.frame)))
    return cues


def _shown(kind: str, frame: str) -> str:
    if kind == "disconnect":
        return frame
    return "drop" if kind == "drop" else frame


def recorded(recordings: Sequence[Recording]) -> list[tuple[int, str, str]]:
    """What the server sent, at its recorded offsets less the time the client took to
    send what it sent before (a replay measures the server's think time only)."""
    origin = min(r.header.started for r in recordings)
    frames = []
    for recording in recordings:
        start = recording.header.started - origin
        for frame in recording.frames:
            frames.append((round((start + frame.t) * 1000), recording, frame))
            if frame.op == "close":
                break
    frames.sort(key=lambda item: item[0])
    shift, last, sent = 0, 0, []
    for ms, recording, frame in frames:
        if frame.side == "client" and frame.op in ("text", "request"):
            shift += ms - last
        elif frame.side == "server" and frame.op == "text":
            sent.append((ms - shift, recording.header.endpoint, str(frame.data)))
        last = ms
    return sent


def client_texts(recordings: Sequence[Recording]) -> list[str]:
    """The client frames in time order, as a dry run's answers."""
    origin = min(r.header.started for r in recordings)
    found = []
    for recording in recordings:
        for frame in recording.frames:
            at = recording.header.started - origin + frame.t
            if frame.side == "client" and frame.op == "text" and frame.data:
                found.append((at, frame.data))
            elif frame.op == "request":
                found.append((at, f"{frame.extra['method']} {frame.extra['path']}"))
    return [text for _, text in sorted(found, key=lambda item: item[0])]


def steps(converted: Converted, name: str | None = None) -> list[dict[str, Any]]:
    document = yaml.safe_load(converted.files[name or converted.name])
    return list(document["steps"])


def one_session(*frames: Any, endpoint: str = "/ws") -> list[Recording]:
    recording = session(endpoint, "s1")
    for frame in frames:
        recording.add(frame)
    return [recording.recording()]


def server(t: float, value: Any) -> Any:
    return text_frame(t, "server", value if isinstance(value, str) else encode(value))


def client(t: float, value: Any) -> Any:
    return text_frame(t, "client", value if isinstance(value, str) else encode(value))


def message(kind: str, text: str) -> str:
    return encode({"message_type": kind, "message": text})


# --- a Schwarm session, end to end ------------------------------------------------------------


def test_a_schwarm_session_replays_its_frames_in_order_and_time() -> None:
    recordings = schwarm_session()
    converted = convert(recordings, name="session")
    sent = replayed(converted, answers=client_texts(recordings))
    assert sent == recorded(recordings[:2])
    assert converted.frames == 16
    assert converted.waits == 3  # CHAT_INPUT and two PAUSE_REQUEST: no routes under Schwarm's


def test_the_session_becomes_steps_a_person_reads() -> None:
    converted = convert(schwarm_session(), name="session")
    written = steps(converted)
    assert written[:4] == [
        {"sleep": 0.12},
        {"message": "CHAT_REQUESTED", "text": "What should I do next?", "delay": 0.001},
        {"message": "IS_WAITING", "text": "Waiting for user input"},
        {"wait": "CHAT_INPUT"},
    ]
    first_span = written[5]
    assert first_span["message"] == "EVENT"
    assert first_span["data"]["name"] == "planner - EventType.START_TURN"
    assert first_span["data"]["parent_span_id"] is None
    assert {"tool": "search_changelog(", "delay": 0.025} in written
    assert {"chunk": "I found ", "delay": 0.033} in written
    assert {"close": "stream"} in written
    text = converted.files["session"]
    assert "    data:\n      id: a3ce929d0e0e4736\n" in text  # block style
    assert "left out at 6.000s: a request POST /break that no declared route answers" in text
    assert "# the client closed /ws (code 1000): its part ends here" in text


def test_the_description_says_where_the_scenario_came_from() -> None:
    about = yaml.safe_load(convert(schwarm_session()).files["recorded"])["description"]
    assert about.startswith(
        "Recorded from ws://127.0.0.1:8000 on 2024-12-03 21:06:40 UTC: /ws (3f2a9c0e1b7d), "
        "/ws/stream (9a8b7c6d5e4f), 3 HTTP requests. Converted by replay convert (exact timing)"
    )
    assert "16 frames and 3 waits" in about


def test_under_the_inferred_protocol_requests_to_routes_are_waited_for() -> None:
    recordings = schwarm_session()
    protocol = infer_protocol(recordings).protocol
    converted = convert(recordings, protocol, name="session")
    written = steps(converted)
    assert written.count({"wait": "POST /break"}) == 2
    assert {"wait": "GET /break"} not in written  # a poll: the route answers it by itself
    sent = replayed(converted, protocol, client_texts(recordings))
    assert sent == recorded(recordings[:2])


# --- server frames --------------------------------------------------------------------------


def test_frames_no_step_makes_exactly_become_raw() -> None:
    frames = [
        '{"message_type": "EVENT", "message": "spaced JSON"}',  # not compact
        "not JSON at all",
        encode({"message_type": "NOT_A_TYPE", "message": "x"}),
        encode({"message_type": "EVENT", "message": 5}),
        encode({"message_type": "EVENT"}),
        encode([1, 2]),
        '{"message_type":"EVENT","message":"{\\"x\\":NaN}"}',
        '{"message_type":"EVENT","message":"x","n":Infinity}',
        '{"type":"default","content":"x","n":NaN}',
    ]
    recordings = one_session(*(server(0.1 * n, text) for n, text in enumerate(frames, 1)))
    written = steps(convert(recordings))
    raws = [step for step in written if "raw" in step]
    assert [step["raw"] for step in raws] == frames
    assert all(step["endpoint"] == "/ws" for step in raws)
    assert [text for _, _, text in replayed(convert(recordings))] == frames


def test_a_message_holding_json_becomes_data_only_when_it_writes_back_the_same() -> None:
    same = message("EVENT", encode({"name": "a", "n": 1.5e16, "x": [None, True]}))
    spaced = message("EVENT", '{"name": "a"}')
    floats = message("EVENT", '{"n": 1e5}')  # Python writes 100000.0
    recordings = one_session(server(0.1, same), server(0.2, spaced), server(0.3, floats))
    written = steps(convert(recordings))
    assert written[1]["data"] == {"name": "a", "n": 1.5e16, "x": [None, True]}
    assert written[2]["text"] == '{"name": "a"}'
    assert written[3]["text"] == '{"n": 1e5}'
    assert [text for _, _, text in replayed(convert(recordings))] == [same, spaced, floats]


def test_recorded_text_is_never_rendered_as_a_template() -> None:
    texts = [
        message("CHAT", "Hello {{ run.id }}"),
        message("EVENT", encode({"template": "{% if x %}", "endraw": "{% endraw %}{{ y }}"})),
        "raw {# not a comment #}",
    ]
    chunk = encode({"type": "default", "content": "{{ chunk }}"})
    recordings = [
        one_session(*(server(0.1 * n, text) for n, text in enumerate(texts, 1)))[0],
        one_session(server(0.5, chunk), endpoint="/ws/stream")[0],
    ]
    assert [text for _, _, text in replayed(convert(recordings))] == [*texts, chunk]


def test_envelope_fields_beyond_the_protocols_become_the_steps_envelope() -> None:
    frame = encode({"message_type": "CHAT", "message": "hi", "agent": "planner"})
    written = steps(convert(one_session(server(0.1, frame))))
    assert written[1] == {"message": "CHAT", "text": "hi", "envelope": {"agent": "planner"}}


def test_exact_step_checks_by_building_the_frame_with_the_protocol() -> None:
    protocol = Protocol(
        {
            "/feed": EndpointDeclaration(
                messages=MessageEnvelope(type="event", payload="data", data="json"),
                chunks=ChunkEnvelope(
                    type="kind",
                    content="text",
                    fields={"agent": "{{ state.agent }}"},
                    close=[{"kind": "end"}, {"kind": "end"}],
                ),
            )
        },
        {"tick": SCHWARM.message_types["EVENT"]},
    )
    assert exact_step(protocol, "/feed", '{"event":"tick","data":{"p":1}}') == {
        "message": "tick",
        "data": {"p": 1},
    }
    assert exact_step(protocol, "/feed", '{"event":"tick","data":"t"}') == {
        "message": "tick",
        "text": "t",
    }
    assert exact_step(protocol, "/feed", '{"event":"tick","data":3}') is None
    # A chunk whose envelope field is a template there: the step gives the value it had.
    assert exact_step(protocol, "/feed", '{"kind":"default","text":"x","agent":"a1"}') == {
        "chunk": "x",
        "envelope": {"agent": "a1"},
    }
    assert exact_step(protocol, "/feed", '{"kind":"default","text":"x"}') is None


def test_a_multi_frame_end_of_stream_becomes_one_close_step() -> None:
    protocol = Protocol(
        {"/ws": EndpointDeclaration(chunks=ChunkEnvelope(close=[{"type": "close"}] * 2))}, {}
    )
    end = encode({"type": "close"})
    recordings = one_session(
        server(0.1, {"type": "default", "content": "a"}), server(0.2, end), server(0.2, end)
    )
    converted = convert(recordings, protocol)
    assert steps(converted)[-1] == {"close": "stream"}
    assert [text for _, _, text in replayed(converted, protocol)] == [
        encode({"type": "default", "content": "a"}),
        end,
        end,
    ]


def test_binary_frames_and_the_servers_close() -> None:
    recordings = one_session(
        bytes_frame(0.1, "server", "binary", b"\x00\x01\xff"),
        bytes_frame(0.15, "server", "ping", b"keepalive"),
        close_frame(0.2, "server", 4001, "bye now"),
        close_frame(0.21, "client", 4001, "bye now"),
    )
    written = steps(convert(recordings))
    assert written[1] == {"binary": "AAH/", "endpoint": "/ws", "delay": 0.1}
    assert written[2] == {"disconnect": "/ws", "code": 4001, "reason": "bye now"}
    assert len(written) == 3  # the ping, and the client's answering close, are not replayed
    assert [cue[2] for cue in replayed(convert(recordings))] == [
        "binary 3 bytes: AAH/",
        "close with code 4001 (bye now)",
    ]


@pytest.mark.parametrize(("code", "step"), [(None, {"drop": "/ws"}), (1006, {"drop": "/ws"})])
def test_a_close_replay_cannot_send_is_a_drop(code: int | None, step: dict[str, Any]) -> None:
    written = steps(
        convert(
            one_session(server(0.1, message("CHAT", "x")), close_frame(0.2, "server", code, ""))
        )
    )
    assert written[-1] == step


def test_a_server_that_ended_without_a_close_frame_still_hangs_up() -> None:
    recordings = one_session(server(0.1, message("CHAT", "x")), End(0.5, 1011, "crash", "server"))
    assert steps(convert(recordings))[-1] == {"disconnect": "/ws", "code": 1011, "reason": "crash"}


# --- client frames --------------------------------------------------------------------------


def test_client_frames_become_waits_on_what_identifies_them() -> None:
    answer = {"action": "pause", "request_id": "req-1 (a.b*c)", "at": 1733260000123}
    recordings = one_session(
        server(0.1, message("CHAT_REQUESTED", "?")),
        client(2.0, message("PAUSE_REQUEST", encode(answer))),
        server(2.1, message("PAUSE_STATUS", "System paused")),
    )
    options = Options(match=("message.action", "message.request_id", "message.at", "missing"))
    written = steps(convert(recordings, options=options))
    assert written[2] == {
        "wait": "PAUSE_REQUEST",
        "fields": {
            "message.action": "^pause$",
            "message.request_id": r"^req-1 \(a\.b\*c\)$",
            "message.at": "^1733260000123$",
        },
    }
    converted = convert(recordings, options=options)
    assert [cue[2] for cue in replayed(converted, answers=client_texts(recordings))] == [
        message("CHAT_REQUESTED", "?"),
        message("PAUSE_STATUS", "System paused"),
    ]
    other = message("PAUSE_REQUEST", encode({**answer, "action": "resume"}))
    timeline = build_timeline("recorded", loaded(converted), answers=[other])
    assert timeline.unused == (other,)  # a wait matches the field it was told to match


def test_client_frames_replay_cannot_wait_for_are_left_out_with_a_comment() -> None:
    recordings = [
        *one_session(
            server(0.1, message("CHAT", "x")),
            client(0.2, "not json"),
            client(0.3, message("MADE_UP", "x")),
            client(0.4, encode({"no": "type"})),
            bytes_frame(0.5, "client", "binary", b"\x01"),
        ),
        *one_session(client(0.6, message("CHAT_INPUT", "x")), endpoint="/ws/stream"),
    ]
    converted = convert(recordings)
    text = converted.files["recorded"]
    assert converted.skipped == 5
    assert "# left out at 0.200s: a client frame with no 'message_type': \"not json\"" in text
    assert "a client frame of type 'MADE_UP', which the protocol does not declare" in text
    assert "a binary frame from the client on /ws" in text
    assert "a client frame on /ws/stream, which takes no messages" in text
    assert not [step for step in steps(converted) if "wait" in step]


def test_a_later_session_on_the_same_endpoint_is_waited_for() -> None:
    first = session("/ws", "a")
    first.add(server(0.1, message("CHAT", "one"))).add(close_frame(0.5, "server", 1012, "restart"))
    second = session("/ws", "b", offset=3.0)
    second.add(server(0.2, message("CHAT", "two")))
    converted = convert([first.recording(), second.recording()])
    assert steps(converted)[2:] == [
        {"disconnect": "/ws", "code": 1012, "reason": "restart"},
        {"wait_connect": "any", "endpoint": "/ws", "new": True},
        {"sleep": 0.2},
        {"message": "CHAT", "text": "two"},
    ]


# --- timing -------------------------------------------------------------------------------


def test_gaps_are_kept_to_the_millisecond() -> None:
    recordings = one_session(
        server(0.0004, message("CHAT", "a")),
        server(0.0339, message("CHAT", "b")),
        server(1.5, message("CHAT", "c")),
    )
    assert [cue[0] for cue in replayed(convert(recordings))] == [0, 34, 1500]


def test_the_clients_think_time_is_not_the_servers() -> None:
    recordings = one_session(
        server(0.5, message("CHAT_REQUESTED", "?")),
        server(1.0, message("IS_WAITING", "...")),
        client(40.0, message("CHAT_INPUT", "yes")),  # the user took 39 s
        server(40.25, message("CHAT", "ok")),
    )
    written = steps(convert(recordings))
    assert written == [
        {"sleep": 0.5},
        {"message": "CHAT_REQUESTED", "text": "?", "delay": 0.5},
        {"message": "IS_WAITING", "text": "..."},
        {"wait": "CHAT_INPUT", "timeout": "79s"},  # twice the time it took, at least 60 s
        {"sleep": 0.25},
        {"message": "CHAT", "text": "ok"},
    ]


def test_compact_timing_caps_every_gap() -> None:
    recordings = one_session(
        server(10.0, message("CHAT", "a")),
        server(10.5, message("CHAT", "b")),
        server(400.0, message("CHAT", "c")),
    )
    compact = convert(recordings, options=Options(timing="compact", max_gap=2.0))
    assert [cue[0] for cue in replayed(compact)] == [2000, 2500, 4500]
    exact = convert(recordings)
    assert [cue[0] for cue in replayed(exact)] == [10000, 10500, 400000]


def test_a_gap_over_an_hour_is_several_pauses() -> None:
    recordings = one_session(
        server(0.0, message("CHAT", "a")), server(9000.0, message("CHAT", "b"))
    )
    written = steps(convert(recordings))
    assert written == [
        {"message": "CHAT", "text": "a", "delay": "3600s"},
        {"sleep": "3600s"},
        {"sleep": "1800s"},
        {"message": "CHAT", "text": "b"},
    ]
    assert [cue[0] for cue in replayed(convert(recordings))] == [0, 9_000_000]


def test_sessions_merge_on_the_time_their_headers_give() -> None:
    ws = session("/ws", "a", offset=0.0)
    ws.add(server(0.30, message("CHAT", "second")))
    stream = session("/ws/stream", "b", offset=0.25)  # connected a quarter second later
    stream.add(server(0.0, {"type": "default", "content": "first"}))
    stream.add(server(0.10, {"type": "default", "content": "third"}))
    sent = replayed(convert([ws.recording(), stream.recording()]))
    assert [(ms, endpoint) for ms, endpoint, _ in sent] == [
        (250, "/ws/stream"),
        (300, "/ws"),
        (350, "/ws/stream"),
    ]


# --- templates -----------------------------------------------------------------------------


def test_templates_replace_the_fields_they_name() -> None:
    span = {"name": "a", "span_id": "0123456789abcdef", "attributes": {"ts": 1, "ids": ["x"]}}
    recordings = one_session(server(0.1, message("EVENT", encode(span))))
    options = Options(
        templates=(
            ("message.span_id", "{{ hex(16) }}"),
            ("message.attributes.ts", "{{ now.ms }}"),
            ("message.attributes.ids.0", "{{ uuid() }}"),
            ("message.nowhere", "{{ uuid() }}"),
            ("other.span_id", "{{ uuid() }}"),
        )
    )
    converted = convert(recordings, options=options)
    assert steps(converted)[1]["data"] == {
        "name": "a",
        "span_id": "{{ hex(16) }}",
        "attributes": {"ts": "{{ now.ms }}", "ids": ["{{ uuid() }}"]},
    }
    [(_, _, frame)] = replayed(converted)
    assert "span_id" in frame
    assert "0123456789abcdef" not in frame


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        (("message.id", "{{ nw.ms }}"), "unknown name 'nw'"),
        (("message.id", "{{ 1 + }}"), "message.id="),
        (("", "x"), "not a dotted path"),
        (("a..b", "x"), "not a dotted path"),
    ],
)
def test_a_template_that_cannot_work_is_refused_at_once(
    template: tuple[str, str], reason: str
) -> None:
    recordings = one_session(server(0.1, message("CHAT", "x")))
    with pytest.raises(ConvertError, match=reason.replace(".", r"\.").replace("+", r"\+")):
        convert(recordings, options=Options(templates=(template,)))


def test_echo_reads_what_the_server_repeated_from_the_client() -> None:
    request = encode({"action": "pause", "request_id": "req-7f3a9b21"})
    answer = encode({"paused": True, "request_id": "req-7f3a9b21", "by": "ui"})
    recordings = one_session(
        client(1.0, message("PAUSE_REQUEST", request)),
        server(1.1, message("EVENT", answer)),
    )
    converted = convert(recordings, options=Options(echo=True))
    assert steps(converted)[2]["data"] == {
        "paused": True,
        "request_id": "{{ received.data.request_id | default('req-7f3a9b21') }}",
        "by": "ui",  # too short to be an id
    }
    same = replayed(converted, answers=[message("PAUSE_REQUEST", request)])
    assert [frame for _, _, frame in same] == [message("EVENT", answer)]
    other = message("PAUSE_REQUEST", encode({"action": "pause", "request_id": "req-00000001"}))
    [(_, _, frame)] = replayed(converted, answers=[other])
    assert "req-00000001" in frame
    [(_, _, frame)] = replayed(converted)  # a dry run without answers: the recorded value
    assert "req-7f3a9b21" in frame


# --- errors, and size -----------------------------------------------------------------------


def test_what_cannot_be_converted_says_why() -> None:
    with pytest.raises(ConvertError, match="no recordings given"):
        convert([])
    with pytest.raises(ConvertError, match="the recordings hold no frames"):
        convert([session("/ws", "empty").recording()])
    with pytest.raises(ConvertError, match=r"a session on /prices, which the protocol"):
        convert([session("/prices", "p").server(0.1, "x").recording()])
    with pytest.raises(ConvertError, match="'Bad Name' is not a scenario name"):
        convert(schwarm_session(), name="Bad Name")
    with pytest.raises(ConvertError, match="nothing to replay"):
        convert(one_session(client(0.1, "hello")))
    tabs = [session("/ws", name, client=name).server(0.1, "x").recording() for name in "ab"]
    with pytest.raises(ConvertError, match=r"the recordings are of 2 clients \(a, b\)"):
        convert(tabs)


def test_a_long_scenario_is_played_in_parts() -> None:
    recordings = [schwarm_ws().recording(), schwarm_stream().recording()]
    whole = convert(recordings, name="long")
    split = convert(recordings, options=Options(part_bytes=1000), name="long")
    assert len(split.parts) >= 3
    assert split.parts[0] == "long-part-01"
    assert steps(split) == [{"play": part} for part in split.parts]
    part = yaml.safe_load(split.files[split.parts[1]])
    assert part["description"].startswith(f"Part 2 of {len(split.parts)} of long, from ")
    answers = client_texts(recordings)
    assert replayed(split, answers=answers) == replayed(whole, answers=answers)


def test_an_hour_long_session_converts_validates_and_plans_whole() -> None:
    # How long it takes is bench/long_scenario.py's to measure, not a test's to assert.
    recordings = hour_of_chunks()
    assert frames_of(recordings) > 100_000
    converted = convert(recordings, name="hour")
    catalog = loaded(converted)
    timeline = build_timeline("hour", catalog, Context("dry-run", 0), limit=200_000)
    assert timeline.frames == frames_of(recordings)
    assert timeline.duration == pytest.approx(recordings[1].frames[-1].t, abs=0.002)
    assert len(converted.parts) >= 4
    for name, text in converted.files.items():
        assert len(text.encode()) <= MAX_FILE_BYTES, name
        assert catalog.file(name).valid
    assert sum(len(text) for text in converted.files.values()) > 4 * 10**6
    assert MAX_VALUES == 100_000  # each part stays under the loader's limit on values


def test_the_inferred_protocol_and_the_scenario_agree() -> None:
    recordings = schwarm_session()
    inferred = infer_protocol(recordings)
    assert parse_protocol(inferred.text, "_protocol.yaml").problems == ()
    converted = convert(recordings, inferred.protocol, Options(match=("message.action",)))
    loaded(converted, inferred.protocol)
