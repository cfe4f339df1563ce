"""Recordings to a scenario: what a recorded backend said, played back as it said it (pure).

:func:`convert` takes recorded sessions (:mod:`replay.record.format`) and the protocol
the scenario will speak, and writes a scenario that, played to a client that sends the
same answers, puts the same frames on the wire, in the same order, with the same timing:

- **Server frames.** A text frame becomes the step that makes exactly that frame, byte
  for byte, checked by building the frame with the protocol: ``message: TYPE`` (``data``
  when its payload is JSON the step writes back identically, else ``text``), ``chunk``,
  ``tool`` or ``close: stream``; anything else is ``raw`` (always exact). Binary frames
  become ``binary`` steps, a server's close ``disconnect`` (or ``drop``, for a close
  with no status). Text a template would render (``{{``) is wrapped to be sent as is.
- **Client frames** become ``wait`` steps that match what identifies them: the message
  type, and ``fields`` patterns (``^value$``) for the fields the user names, so ids and
  timestamps do not break the replay. A request to a declared HTTP route becomes a
  ``wait`` for that route. What replay cannot wait for (binary frames, frames with no
  type the protocol knows) is left out, with a comment. A client's close ends that
  session's part; a later session on the same endpoint is a ``wait_connect``.
- **Timing** measures the server's think time, not the client's: a server frame that
  follows a client frame is timed from it (the ``wait`` ends when the frame arrives, and
  the engine measures from there). Offsets are rounded to the millisecond; ``compact``
  timing caps every gap.
- **Several sessions** (one client on several endpoints) merge on a common time axis:
  each header's ``started`` plus each frame's ``t``.
- **Templates.** ``PATH=EXPR`` replaces a field of the server's data steps by a
  template (``message.span_id={{ hex(16) }}``); with ``echo``, an id-like value the
  server repeated from the client frame just waited for becomes
  ``{{ received.data.X | default('recorded') }}``.
- **Size.** A scenario file holds at most :data:`~replay.loader.MAX_FILE_BYTES` and
  :data:`~replay.loader.MAX_VALUES` values; a longer recording is cut into parts played
  in sequence by the scenario of the given name (``play:``).
"""

from __future__ import annotations

import base64
import json
import math
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from replay import templates
from replay.answers import HttpRequest
from replay.durations import MAX_BARE_SECONDS, format_seconds
from replay.errors import PatternRefused, ReplayError
from replay.loader import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES
from replay.matching import ClientFrame, lookup
from replay.patterns import compile_pattern
from replay.protocol.declaration import Protocol
from replay.protocol.payloads import payload_problems
from replay.protocol.schwarm import SCHWARM
from replay.protocol.wire import encode
from replay.record.emit import count_values, literal, quoted, scalar, step_lines
from replay.record.format import Frame, Recording
from replay.routes import find, is_route_key
from replay.scenario import NAME_PATTERN, NAME_RULE

#: A part of a long scenario holds at most this much YAML, and this many values: under
#: the loader's limits, with room for the part's own lines.
PART_BYTES = MAX_FILE_BYTES - 64 * 1024
PART_VALUES = MAX_VALUES - 5_000
#: The longest pause one step may take (the loader's limit), in milliseconds.
MAX_PAUSE_MS = 3_600_000
#: A wait's default timeout; a client that took more than half of it to answer in the
#: recording gets twice the time it took (at most an hour).
WAIT_TIMEOUT_MS = 60_000
#: Values the server may have echoed from a client frame (ids, nonces, tokens).
_ECHOABLE = re.compile(r"^[A-Za-z0-9._:@/+=-]{8,200}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A field pattern longer than RE2 takes is cut to a prefix of this many characters.
_PREFIX = 200


class ConvertError(ReplayError):
    """Recordings that cannot become a scenario, or options that do not fit them."""


@dataclass(frozen=True)
class Options:
    """How to convert: ``timing`` (``exact``, or ``compact``: every gap at most
    ``max_gap`` seconds), ``match`` (dotted paths of client-frame fields a wait matches,
    anchored), ``templates`` (``(path, expression)``: server data fields replaced by a
    template), ``echo`` (values repeated from the client frame just waited for become
    ``received`` templates), and the size of a part of a long scenario."""

    timing: Literal["exact", "compact"] = "exact"
    max_gap: float = 2.0
    match: tuple[str, ...] = ()
    templates: tuple[tuple[str, str], ...] = ()
    echo: bool = False
    part_bytes: int = PART_BYTES
    part_values: int = PART_VALUES


@dataclass(frozen=True)
class Converted:
    """The scenario files :func:`convert` wrote: ``files`` maps each scenario's name to
    its YAML text, the one to play (``name``) first; when there are parts, it plays them
    in order."""

    name: str
    files: Mapping[str, str]
    frames: int
    waits: int
    skipped: int
    duration: float

    @property
    def parts(self) -> tuple[str, ...]:
        """The names of the parts (none when the scenario fits in one file)."""
        return tuple(name for name in self.files if name != self.name)


def convert(
    recordings: Sequence[Recording],
    protocol: Protocol = SCHWARM,
    options: Options = Options(),
    name: str = "recorded",
) -> Converted:
    """The scenario that replays ``recordings`` under ``protocol``; raises ConvertError."""
    if not NAME_PATTERN.match(name):
        raise ConvertError(f"{name!r} is not a scenario name: use {NAME_RULE}")
    _check_options(options)
    events = merge(recordings, protocol)
    translator = _Translator(protocol, options)
    actions = [action for event in _grouped(events, protocol) for action in translator(event)]
    entries, duration = _timed(actions, options)
    if not any(entry.step for entry in entries):
        raise ConvertError(
            "nothing to replay: the recordings hold no server frames and no client frames "
            "replay can wait for"
        )
    about = _description(recordings, translator, options, duration)
    files = _files(name, about, entries, options)
    counts = translator.counts
    return Converted(name, files, counts["frames"], counts["waits"], counts["skipped"], duration)


def _check_options(options: Options) -> None:
    if options.timing == "compact" and not options.max_gap > 0:
        raise ConvertError(f"--max-gap must be more than 0 seconds, not {options.max_gap:g}")
    for path in options.match:
        if not path or any(not part for part in path.split(".")):
            raise ConvertError(f"--match {path!r} is not a dotted path such as message.id")
    for path, expression in options.templates:
        if not path or any(not part for part in path.split(".")):
            raise ConvertError(f"--template {path!r} is not a dotted path such as message.id")
        problems = templates.check(expression, ()) if templates.is_template(expression) else []
        if problems:
            raise ConvertError(f"--template {path}={expression}: {problems[0]}")


# --- the sessions on one time axis ---------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Something that happened in a session, ``ms`` milliseconds after the earliest
    session started: a frame, or (``frame`` None) a client connecting again."""

    ms: int
    session: int
    endpoint: str
    frame: Frame | None


def merge(recordings: Sequence[Recording], protocol: Protocol) -> list[Event]:
    """The events of every session, in order on a common time axis; a session's frames
    after its first close are left out (the other side's close answers it)."""
    if not recordings:
        raise ConvertError("no recordings given")
    clients = sorted({r.header.client for r in recordings if r.header.client is not None})
    if len(clients) > 1:
        raise ConvertError(
            f"the recordings are of {len(clients)} clients ({', '.join(clients)}): a scenario "
            "replays one client's sessions; convert each client's recordings on their own"
        )
    origin = min(recording.header.started for recording in recordings)
    served = protocol.paths()
    ended: dict[str, float] = {}
    events: list[Event] = []
    order = sorted(range(len(recordings)), key=lambda i: recordings[i].header.started)
    for index in order:
        recording = recordings[index]
        endpoint = _endpoint(recording, served)
        start = recording.header.started - origin
        if endpoint in ended and ended[endpoint] <= recording.header.started:
            events.append(Event(round(start * 1000), index, endpoint, None))
        frames, end = _session(recording)
        events.extend(Event(round((start + f.t) * 1000), index, endpoint, f) for f in frames)
        if end is not None:
            ended[endpoint] = recording.header.started + end
    if not any(event.frame for event in events):
        raise ConvertError("the recordings hold no frames: nothing to convert")
    events.sort(key=lambda event: event.ms)  # stable: ties keep the sessions' order
    return events


def _endpoint(recording: Recording, served: Mapping[str, str]) -> str:
    header = recording.header
    if header.kind == "http":
        return "http"
    if header.endpoint not in served:
        raise ConvertError(
            f"{recording.file} is a session on {header.endpoint}, which the protocol in use "
            f"does not serve (it serves {', '.join(served) or 'nothing'}): infer one from "
            "the recordings (--protocol), or convert into a folder whose protocol declares it"
        )
    return served[header.endpoint]


def _session(recording: Recording) -> tuple[list[Frame], float | None]:
    """The frames that count, up to and with the first close, and when the session
    ended (None if it never did). A server's end with no close frame becomes one."""
    frames: list[Frame] = []
    for frame in recording.frames:
        frames.append(frame)
        if frame.op == "close":
            return frames, frame.t
    end = recording.end
    if end is None:
        return frames, None
    if end.by == "server":
        frames.append(Frame(end.t, "server", "close", None, end.code, end.reason))
    return frames, end.t


def _grouped(events: list[Event], protocol: Protocol) -> Iterator[list[Event]]:
    """Each event alone, but the frames of a protocol's multi-frame end of stream
    (P3's close, twice) together when they came one after the other, in the same ms."""
    index = 0
    while index < len(events):
        size = _close_run(events, index, protocol)
        yield events[index : index + size]
        index += size


def _close_run(events: list[Event], index: int, protocol: Protocol) -> int:
    event = events[index]
    if event.frame is None or event.frame.side != "server" or event.frame.op != "text":
        return 1
    closes = protocol.close_frames(event.endpoint) if event.endpoint != "http" else ()
    run = events[index : index + len(closes)]
    if len(closes) < 2 or len(run) < len(closes):
        return 1
    same = all(
        e.frame is not None
        and e.frame.side == "server"
        and (e.frame.data, e.endpoint, e.ms) == (text, event.endpoint, event.ms)
        for e, text in zip(run, closes, strict=True)
    )
    return len(closes) if same else 1


# --- events to steps -----------------------------------------------------------------------


@dataclass
class Action:
    """A step (or, with ``step`` None, only a comment) and when it happened; ``side`` says
    whose act it is: the server's (timed from what came before) or the client's (a wait:
    what follows is timed from it)."""

    ms: int
    side: Literal["server", "client", "note"]
    step: dict[str, Any] | None
    comment: str = ""


class _Translator:
    """Turns events into actions, one event (or end-of-stream run) at a time."""

    def __init__(self, protocol: Protocol, options: Options) -> None:
        self.protocol = protocol
        self.options = options
        self.received: ClientFrame | None = None
        self.counts = {"frames": 0, "waits": 0, "skipped": 0}

    def __call__(self, run: list[Event]) -> list[Action]:
        event = run[0]
        frame = event.frame
        if frame is None:
            step = {"wait_connect": "any", "endpoint": event.endpoint, "new": True}
            return [Action(event.ms, "client", step)]
        if len(run) > 1:
            return [self.server(event, _close_step(self.protocol, event.endpoint), len(run))]
        if frame.side == "server":
            return self.from_server(event, frame)
        return self.from_client(event, frame)

    def from_server(self, event: Event, frame: Frame) -> list[Action]:
        if frame.op == "text" and frame.data is not None:
            if not _utf8(frame.data):
                return [self.skip(event, "a server text frame that is not valid UTF-8")]
            return [self.server(event, self.text_step(event.endpoint, frame.data))]
        if frame.op == "binary" and frame.data is not None:
            return [self.server(event, {"binary": frame.data, "endpoint": event.endpoint})]
        if frame.op == "close":
            return [self.server(event, _hangup(event.endpoint, frame))]
        return []  # pings, pongs and answers to HTTP requests: not replay's to send

    def server(self, event: Event, step: dict[str, Any], frames: int = 1) -> Action:
        if "disconnect" not in step and "drop" not in step:
            self.counts["frames"] += frames
        return Action(event.ms, "server", step)

    def skip(self, event: Event, what: str) -> Action:
        self.counts["skipped"] += 1
        seconds = f"{event.ms / 1000:.3f}s"
        return Action(event.ms, "note", None, f"left out at {seconds}: {what}")

    def text_step(self, endpoint: str, text: str) -> dict[str, Any]:
        """The step that sends ``text`` on ``endpoint`` exactly: a message, chunk, tool or
        close step when one makes it byte for byte, else ``raw``."""
        step = exact_step(self.protocol, endpoint, text)
        if step is None:
            return {"raw": literal(text), "endpoint": endpoint}
        step = _escaped(step)
        if "data" in step:
            step["data"] = self.templated(step["data"], endpoint)
        return step

    def from_client(self, event: Event, frame: Frame) -> list[Action]:
        if frame.op == "close":
            code = "no status" if frame.code is None else f"code {frame.code}"
            text = f"the client closed {event.endpoint} ({code}): its part ends here"
            return [Action(event.ms, "note", None, text)]
        if frame.op == "request":
            return self.request(event, frame)
        if frame.op != "text" or frame.data is None:
            if frame.op == "binary":
                return [self.skip(event, f"a binary frame from the client on {event.endpoint}")]
            return []
        return [self.client_text(event, frame.data)]

    def client_text(self, event: Event, text: str) -> Action:
        envelope = self.protocol.endpoints[event.endpoint].messages
        shown = _short(text)
        if envelope is None:
            return self.skip(
                event, f"a client frame on {event.endpoint}, which takes no messages: {shown}"
            )
        received = ClientFrame("client", text, 0.0, event.endpoint, envelope.type, envelope.payload)
        kind = received.message_type
        if kind is None:
            return self.skip(event, f"a client frame with no {envelope.type!r}: {shown}")
        if kind not in self.protocol.message_types or is_route_key(kind):
            what = f"a client frame of type {kind!r}, which the protocol does not declare"
            return self.skip(event, f"{what}: {shown}")
        return self.wait(event, kind, received)

    def request(self, event: Event, frame: Frame) -> list[Action]:
        """A wait for a request that acts (POST, PUT, PATCH, DELETE) on a declared route;
        a GET is a poll the route answers by itself, whenever it comes."""
        request = _http_request(frame)
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return []
        found = find(self.protocol.routes, request.method, request.path)
        if found is None:
            what = f"a request {request.method} {request.path} that no declared route answers"
            return [self.skip(event, what)]
        route, params = found
        request = replace(request, params=params)
        return [self.wait(event, route.key, request.client_event("client", route))]

    def wait(self, event: Event, kind: str, received: ClientFrame) -> Action:
        step: dict[str, Any] = {"wait": kind}
        fields = self.fields(received.frame)
        if fields:
            step["fields"] = fields
        self.received = received
        self.counts["waits"] += 1
        return Action(event.ms, "client", step)

    def fields(self, frame: Any) -> dict[str, str]:
        """Anchored patterns for the fields ``--match`` names that ``frame`` has."""
        found: dict[str, str] = {}
        for path in self.options.match:
            present, value = lookup(frame, path)
            if present:
                text = value if isinstance(value, str) else encode(value)
                found[path] = _anchored(text)
        return found

    def templated(self, data: Any, endpoint: str) -> Any:
        """``data`` (a server message's payload) with the ``--template`` fields replaced,
        and, with ``echo``, values repeated from the last client frame as ``received``."""
        envelope = self.protocol.endpoints[endpoint].messages
        payload = envelope.payload if envelope else "message"
        for path, expression in self.options.templates:
            head, _, rest = path.partition(".")
            if head == payload and rest:
                data = _replaced(data, rest.split("."), expression)
        if self.options.echo and self.received is not None:
            data = _echoed(data, self.received)
        return data


def exact_step(protocol: Protocol, endpoint: str, text: str) -> dict[str, Any] | None:
    """The message, chunk, tool or close step that sends exactly ``text`` on
    ``endpoint`` under ``protocol`` (values as they are, not yet safe from templates);
    None when no such step makes it byte for byte."""
    if (text,) == protocol.close_frames(endpoint):
        return _close_step(protocol, endpoint)
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, dict):
        return None
    try:
        return _message_step(protocol, endpoint, frame, text) or _chunk_step(
            protocol, endpoint, frame, text
        )
    except ValueError:  # NaN or an infinity (Python's JSON reads them): no step writes them
        return None


def _close_step(protocol: Protocol, endpoint: str) -> dict[str, Any]:
    step: dict[str, Any] = {"close": "stream"}
    if protocol.chunk_endpoint() != endpoint:
        step["endpoint"] = endpoint
    return step


def _message_step(
    protocol: Protocol, endpoint: str, frame: dict[str, Any], text: str
) -> dict[str, Any] | None:
    envelope = protocol.endpoints[endpoint].messages
    if envelope is None or envelope.payload not in frame:
        return None
    kind, payload = frame.get(envelope.type), frame[envelope.payload]
    if not isinstance(kind, str) or kind not in protocol.message_types:
        return None
    extra = {k: v for k, v in frame.items() if k not in (envelope.type, envelope.payload)}
    own = _override(envelope.fields, extra)
    for field_name, value, sent in _payload_forms(payload, envelope.data):
        fields = {**envelope.fields, **(own or {})}
        if protocol.message_frame(endpoint, kind, sent, fields) != text:
            continue
        schema = protocol.message_types[kind].schema_
        if schema is not None and payload_problems(schema, value):
            return None
        step: dict[str, Any] = {"message": kind, field_name: value}
        if own:
            step["envelope"] = own
        if protocol.message_endpoint(kind) != endpoint:
            step["endpoint"] = endpoint
        return step
    return None


def _payload_forms(payload: Any, data: str) -> Iterator[tuple[str, Any, Any]]:
    """``(field, value, what goes in the frame)`` of each step that may give ``payload``,
    the most readable first: data (JSON the step writes back identically), then text."""
    if data == "json" and isinstance(payload, dict | list) and _depth(payload) <= _DATA_DEPTH:
        yield "data", payload, payload
    if not isinstance(payload, str):
        return
    if data == "text" and payload[:1] in ("{", "["):
        try:
            parsed = json.loads(payload)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict | list) and _depth(parsed) <= _DATA_DEPTH:
            yield "data", parsed, encode(parsed)
    yield "text", payload, payload


#: How deep a step's data may nest: the loader's limit, less steps.N.data.
_DATA_DEPTH = MAX_DEPTH - 3


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def _override(own: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The step ``envelope`` that makes a frame's extra fields out of the endpoint's own:
    every field whose value differs (or is a template there)."""
    return {
        key: value
        for key, value in extra.items()
        if key not in own
        or own[key] != value
        or (isinstance(own[key], str) and templates.is_template(own[key]))
    } or None


def _chunk_step(
    protocol: Protocol, endpoint: str, frame: dict[str, Any], text: str
) -> dict[str, Any] | None:
    envelope = protocol.endpoints[endpoint].chunks
    if envelope is None:
        return None
    kind, content = frame.get(envelope.type), frame.get(envelope.content)
    if kind not in (envelope.default, envelope.tool) or not isinstance(content, str) or not content:
        return None
    tool = kind == envelope.tool and kind != envelope.default
    extra = {k: v for k, v in frame.items() if k not in (envelope.type, envelope.content)}
    own = _override(envelope.fields, extra)
    if protocol.chunk_frame(endpoint, tool, content, {**envelope.fields, **(own or {})}) != text:
        return None
    step: dict[str, Any] = {"tool" if tool else "chunk": content}
    if own:
        step["envelope"] = own
    if protocol.chunk_endpoint() != endpoint:
        step["endpoint"] = endpoint
    return step


def _escaped(step: dict[str, Any]) -> dict[str, Any]:
    """``step`` with every string a template would render wrapped to be sent as is."""
    for name in ("text", "chunk", "tool", "data", "envelope"):
        if name in step:
            step[name] = _escape_all(step[name])
    return step


def _escape_all(value: Any) -> Any:
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, dict):
        return {key: _escape_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escape_all(item) for item in value]
    return value


def _hangup(endpoint: str, frame: Frame) -> dict[str, Any]:
    code = frame.code
    if code is None or not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        return {"drop": endpoint}
    step: dict[str, Any] = {"disconnect": endpoint}
    if code != 1000:
        step["code"] = code
    reason = frame.reason.encode()[:123].decode("utf-8", "ignore")
    if reason:
        step["reason"] = reason
    return step


def _http_request(frame: Frame) -> HttpRequest:
    extra = frame.extra
    body = extra.get("body") or ""
    if extra.get("base64") and isinstance(body, str):
        body = base64.b64decode(body).decode("utf-8", "replace")
    try:
        parsed = json.loads(body) if isinstance(body, str) and body.strip() else None
    except (ValueError, RecursionError):
        parsed = None
    query = extra.get("query") or ""
    return HttpRequest(
        str(extra.get("method", "GET")).upper(),
        str(extra.get("path", "/")),
        {},
        dict(parse_qsl(query)) if isinstance(query, str) else dict(query),
        {str(k).lower(): str(v) for k, v in (extra.get("headers") or {}).items()},
        body if isinstance(body, str) else "",
        parsed,
    )


def _anchored(text: str) -> str:
    """A pattern that matches ``text`` and nothing else (a prefix of it, when the
    whole would be too large a pattern)."""
    pattern = "^" + _escape(text) + "$"
    try:
        compile_pattern(pattern)
    except PatternRefused:
        return "^" + _escape(text[:_PREFIX])
    return pattern


_SPECIAL = re.compile(r"([\\.^$|?*+()\[\]{}])")


def _escape(text: str) -> str:
    """``text`` as a pattern of itself: only what RE2 reads as syntax is escaped."""
    return _SPECIAL.sub(r"\\\1", text)


def _replaced(data: Any, path: list[str], expression: str) -> Any:
    """``data`` with the value at ``path`` (keys, or list indexes) set to ``expression``;
    unchanged when there is none."""
    key, rest = path[0], path[1:]
    if isinstance(data, dict) and key in data:
        inner = expression if not rest else _replaced(data[key], rest, expression)
        return {**data, key: inner}
    if isinstance(data, list) and key.isdigit() and int(key) < len(data):
        inner = expression if not rest else _replaced(data[int(key)], rest, expression)
        return [*data[: int(key)], inner, *data[int(key) + 1 :]]
    return data


def _echoed(data: Any, received: ClientFrame) -> Any:
    """Id-like strings of ``data`` that are values of the client frame just received,
    as templates that read them from it (the recorded value by default)."""
    if isinstance(data, dict):
        return {key: _echoed(value, received) for key, value in data.items()}
    if isinstance(data, list):
        return [_echoed(value, received) for value in data]
    if isinstance(data, str) and _ECHOABLE.match(data):
        where = _source(data, received)
        if where is not None:
            return "{{ " + where + " | default('" + data + "') }}"
    return data


def _source(value: str, received: ClientFrame) -> str | None:
    """Where ``value`` is in the frame ``received``, as a template expression."""
    if received.message == value:
        return "received.message"
    for root, name in ((received.data, "received.data"), (received.frame, "received.frame")):
        path = _path_of(value, root)
        if path is not None:
            return name + "".join(_accessor(part) for part in path)
    return None


def _path_of(value: str, data: Any) -> list[str | int] | None:
    if isinstance(data, dict):
        items: Iterator[tuple[str | int, Any]] = iter(data.items())
    elif isinstance(data, list):
        items = iter(enumerate(data))
    else:
        return [] if data == value else None
    for key, item in items:
        inner = _path_of(value, item)
        if inner is not None:
            return [key, *inner]
    return None


def _accessor(part: str | int) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    if _IDENTIFIER.match(part):
        return f".{part}"
    return f"[{quoted(part)}]"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short(text: str) -> str:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return quoted(shown)


# --- timing ---------------------------------------------------------------------------------


@dataclass
class Entry:
    """One step of the scenario (or only a comment), with its pause after set."""

    step: dict[str, Any] | None
    comment: str = ""
    ms: int = 0


def _timed(actions: list[Action], options: Options) -> tuple[list[Entry], float]:
    """The actions as steps with pauses: a server step's gap from the act before it is
    the pause after the step before (or a ``sleep``); a client's act (a wait) comes with
    no pause before it, and the server's next gap counts from it."""
    cap = math.inf if options.timing == "exact" else round(options.max_gap * 1000)
    entries: list[Entry] = []
    base = 0
    carrier: dict[str, Any] | None = None  # the step whose delay is the next pause
    elapsed = 0
    for action in actions:
        if action.step is None:
            entries.append(Entry(None, action.comment, action.ms))
            continue
        gap = int(min(max(0, action.ms - base), cap))
        if action.side == "client":
            _timeout(action.step, action.ms - base)
            carrier = None
        else:
            entries.extend(_pause(carrier, gap, action.ms))
            elapsed += gap
            carrier = action.step
        entries.append(Entry(action.step, action.comment, action.ms))
        base = action.ms
    return entries, elapsed / 1000


def _timeout(step: dict[str, Any], think: int) -> None:
    if think > WAIT_TIMEOUT_MS // 2:
        step["timeout"] = _duration(min(MAX_PAUSE_MS, 2 * think) // 1000 + 1)


def _duration(seconds: float) -> float | str:
    """A pause as a scenario writes it: seconds as a number up to MAX_BARE_SECONDS (a
    longer number without a unit is refused as a likely slip), with a unit above."""
    return format_seconds(seconds) if seconds > MAX_BARE_SECONDS else seconds


def _pause(carrier: dict[str, Any] | None, gap: int, ms: int) -> list[Entry]:
    """Sleep steps for what of ``gap`` (ms) the step before cannot take as its delay."""
    if gap <= 0:
        return []
    if carrier is not None:
        taken = min(gap, MAX_PAUSE_MS)
        carrier["delay"] = _duration(taken / 1000)
        gap -= taken
    sleeps = []
    while gap > 0:
        taken = min(gap, MAX_PAUSE_MS)
        sleeps.append(Entry({"sleep": _duration(taken / 1000)}, "", ms))
        gap -= taken
    return sleeps


# --- files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Written:
    lines: tuple[str, ...]
    size: int
    values: int
    ms: int


def _files(name: str, about: str, entries: list[Entry], options: Options) -> dict[str, str]:
    written = [_written(entry) for entry in entries]
    parts = _parts(written, options)
    if len(parts) == 1:
        return {name: _document(about, written)}
    width = max(2, len(str(len(parts))))
    names = [f"{name}-part-{number:0{width}d}" for number in range(1, len(parts) + 1)]
    main = [_written(Entry({"play": part})) for part in names]
    files = {name: _document(about + f" Played in {len(parts)} parts, in order.", main)}
    for number, (part, items) in enumerate(zip(names, parts, strict=True), 1):
        start = next((item.ms for item in items if item.values), items[0].ms)
        head = f"Part {number} of {len(parts)} of {name}, from {_clock(start)} of the recording."
        files[part] = _document(head, items)
    return files


def _written(entry: Entry) -> _Written:
    if entry.step is None:
        text = tuple(f"  # {line}" for line in entry.comment.splitlines())
        return _Written(text, sum(len(line) + 1 for line in text), 0, entry.ms)
    text = tuple(step_lines(entry.step, entry.comment))
    size = sum(len(line.encode()) + 1 for line in text)
    return _Written(text, size, count_values(entry.step), entry.ms)


def _parts(written: list[_Written], options: Options) -> list[list[_Written]]:
    parts: list[list[_Written]] = [[]]
    size = values = 0
    for item in written:
        if parts[-1] and (
            size + item.size > options.part_bytes or values + item.values > options.part_values
        ):
            parts.append([])
            size = values = 0
        parts[-1].append(item)
        size += item.size
        values += item.values
    # A part of comments only would be a scenario without steps: fold it into the one before.
    if len(parts) > 1 and not any(item.values for item in parts[-1]):
        parts[-2].extend(parts.pop())
    return parts


def _document(about: str, items: Sequence[_Written]) -> str:
    head = ["version: 1", *_description_lines(about), "steps:"]
    body = [line for item in items for line in item.lines]
    return "\n".join([*head, *body]) + "\n"


def _description_lines(about: str) -> list[str]:
    if about.isprintable() and about == about.strip() and "  " not in about and about.isascii():
        wrapped = textwrap.wrap(about, 88, break_long_words=False, break_on_hyphens=False)
        return ["description: >-", *(f"  {line}" for line in wrapped)]
    return [f"description: {scalar(about)}"]


def _clock(ms: int) -> str:
    """``1h02m03.456s``, ``2m03.456s``, ``3.456s``."""
    minutes, millis = divmod(ms, 60_000)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{millis / 1000:06.3f}s"
    return f"{minutes}m{millis / 1000:06.3f}s" if minutes else f"{millis / 1000:.3f}s"


def _count(number: int, word: str) -> str:
    return f"{number} {word}" + ("" if number == 1 else "s")


def _description(
    recordings: Sequence[Recording], translator: _Translator, options: Options, duration: float
) -> str:
    headers = sorted((r.header for r in recordings), key=lambda header: header.started)
    first = datetime.fromtimestamp(headers[0].started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    upstreams = sorted({header.upstream for header in headers if header.upstream})
    sessions = [f"{h.endpoint} ({h.session})" for h in headers if h.kind == "websocket"]
    requests = sum(header.kind == "http" for header in headers)
    if len(sessions) > 4:
        sessions = [*sessions[:4], f"{len(sessions) - 4} more"]
    where = f" from {', '.join(upstreams)}" if upstreams else ""
    what = ", ".join(sessions) + (f", {_count(requests, 'HTTP request')}" if requests else "")
    timing = "exact" if options.timing == "exact" else f"compact, gaps at most {options.max_gap:g}s"
    counts = translator.counts
    left = f", {_count(counts['skipped'], 'client frame')} left out" if counts["skipped"] else ""
    span = _clock(round(duration * 1000))
    return (
        f"Recorded{where} on {first}: {what}. Converted by replay convert ({timing} timing): "
        f"{_count(counts['frames'], 'frame')} and {_count(counts['waits'], 'wait')}{left}; "
        f"{span} long, plus the time the client takes to answer."
    )


__all__ = [
    "PART_BYTES",
    "PART_VALUES",
    "Action",
    "ConvertError",
    "Converted",
    "Event",
    "Options",
    "convert",
    "exact_step",
    "merge",
]
