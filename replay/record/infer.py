"""A protocol inferred from recordings: the ``_protocol.yaml`` that replays them (pure).

:func:`infer_protocol` reads recorded sessions and declares what they show:

- **Endpoints**: every WebSocket path a session connected to. Per endpoint, the
  envelope of its JSON object frames: for **chunks**, a string field whose value says
  ``close`` (or ``end``, ``done``...) on some frames, beside a text field on the others
  (Schwarm's ``type``/``content``); the close frames, as recorded (twice in a row, if
  they came so), become the endpoint's ``chunks.close``. For **messages**, the type field
  is the string field every other frame has, with the fewest distinct values (known
  names first: ``message_type``, ``type``, ``event``...), and the payload field the
  other field they carry (``message``, ``payload``, ``data``... first); payloads that
  are JSON objects make ``data: json``. Fields every frame has with one same value
  become the envelope's ``fields``.
- **Message types**: each type seen, who sent it (``sent_by``) and a JSON Schema of its
  payloads, written by `genson <https://pypi.org/project/genson/>`_. For an envelope
  whose messages hold JSON text (Schwarm's EVENT), the schema is the parsed JSON's when
  every payload of the type parses; it leaves out the top-level ``type``, so a ``text``
  step of that type still passes (the seed sends ``EVENT: Test event message``), while
  a ``data`` step is checked field by field. Schemas leave out ``required``: a session
  shows some shapes of a message, not every one.
- **Routes**: each HTTP request recorded (``METHOD /path``) answers what it answered
  last, as a fixed body and status.

Sessions that fit Schwarm's protocol (``/ws`` typed messages, ``/ws/stream`` chunks)
give ``extends: schwarm``: Schwarm's endpoints and every Schwarm type stay declared, and
the file adds the types seen with their schemas. Anything else gives ``extends: none``.
The text is checked with :func:`~replay.protocol.file.parse_protocol`; an entry it finds
a problem with is left out.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from genson import SchemaBuilder

from replay.errors import ReplayError
from replay.protocol.declaration import MESSAGE_TYPE_PATTERN, Protocol, check_path
from replay.protocol.file import parse_protocol
from replay.record.emit import literal
from replay.record.format import Recording
from replay.routes import Route, check_routes

#: The name of the file the declaration goes in.
FILE = "_protocol.yaml"
#: A chunk kind that ends a stream.
CLOSE_WORDS = frozenset({"close", "closed", "end", "done", "stop", "finish", "finished", "eos"})
#: Names preferred for a type field, a payload field and a chunk's text field.
TYPE_NAMES = ("message_type", "type", "event", "kind", "action", "op", "msg_type", "topic")
PAYLOAD_NAMES = ("message", "payload", "data", "content", "body", "msg", "params", "args")
CONTENT_NAMES = ("content", "text", "delta", "chunk", "data", "token")


class InferError(ReplayError):
    """Recordings no protocol can be inferred from."""


@dataclass(frozen=True)
class Inferred:
    """An inferred protocol: its declaration (the file's data), its text, and the
    protocol it resolves to."""

    declaration: Mapping[str, Any]
    text: str
    protocol: Protocol


@dataclass
class _Seen:
    """One endpoint's text frames: ``(side, the frame parsed, when it is a JSON object)``."""

    frames: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)

    def objects(self, side: str | None = None) -> list[dict[str, Any]]:
        return [f for s, f in self.frames if f is not None and side in (None, s)]


def infer_protocol(recordings: Sequence[Recording]) -> Inferred:
    """The protocol ``recordings`` show; raises InferError when they show no endpoint."""
    seen = _endpoints(recordings)
    if not seen:
        raise InferError("the recordings hold no WebSocket session: no endpoint to declare")
    schwarm = all(_fits_schwarm(path, frames) for path, frames in seen.items())
    endpoints = {} if schwarm else {path: _endpoint(frames) for path, frames in seen.items()}
    reading = _SCHWARM if schwarm else endpoints
    declaration: dict[str, Any] = {
        "extends": "schwarm" if schwarm else "none",
        "description": _description(recordings),
    }
    if endpoints:
        declaration["endpoints"] = endpoints
    declaration["message_types"] = _message_types(seen, reading)
    routes = _routes(recordings)
    if routes:
        declaration["routes"] = routes
    return _checked(declaration, recordings)


def _endpoints(recordings: Sequence[Recording]) -> dict[str, _Seen]:
    seen: dict[str, _Seen] = {}
    for recording in sorted(recordings, key=lambda r: r.header.started):
        if recording.header.kind != "websocket" or not _is_path(recording.header.endpoint):
            continue
        frames = seen.setdefault(recording.header.endpoint, _Seen()).frames
        for frame in recording.frames:
            if frame.op == "text" and frame.data is not None:
                frames.append((frame.side, _object(frame.data)))
    return seen


def _is_path(path: str) -> bool:
    try:
        check_path(path)
    except ValueError:
        return False
    return True


def _object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# --- Schwarm, recognised ------------------------------------------------------------------


def _fits_schwarm(path: str, seen: _Seen) -> bool:
    """Whether every frame the server sent on ``path`` is one Schwarm's protocol sends
    there (what clients sent does not decide it)."""
    sent = [frame for side, frame in seen.frames if side == "server"]
    if path == "/ws":
        return all(_schwarm_message(frame) for frame in sent)
    if path == "/ws/stream":
        return all(_schwarm_chunk(frame) for frame in sent)
    return False


def _schwarm_message(frame: dict[str, Any] | None) -> bool:
    return (
        frame is not None
        and list(frame) == ["message_type", "message"]
        and isinstance(frame["message_type"], str)
        and isinstance(frame["message"], str)
    )


def _schwarm_chunk(frame: dict[str, Any] | None) -> bool:
    if frame is None or list(frame) != ["type", "content"]:
        return False
    kind, content = frame["type"], frame["content"]
    return (kind in ("default", "tool") and isinstance(content, str)) or (
        kind == "close" and content is None
    )


#: Schwarm's endpoints as a declaration writes them (every envelope field its default).
_SCHWARM: dict[str, dict[str, Any]] = {"/ws": {"messages": {}}, "/ws/stream": {"chunks": {}}}


# --- envelopes ------------------------------------------------------------------------------


def _endpoint(seen: _Seen) -> dict[str, Any]:
    """An endpoint's declaration: its chunks' envelope and its messages' envelope, as
    its frames show them (messages, Schwarm's envelope, when they show neither)."""
    declared: dict[str, Any] = {}
    chunks, rest = _chunks(seen)
    if rest or chunks is None:
        declared["messages"] = _messages(rest)
    if chunks is not None:
        declared["chunks"] = chunks
    return declared


def _chunks(seen: _Seen) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The chunk envelope the server's frames show, and the frames left for messages."""
    objects = seen.objects()
    for kind in _ordered(_string_fields(seen.objects("server")), TYPE_NAMES):
        ends = [f for f in objects if _ends(f, kind)]
        texts = [f for f in objects if isinstance(f.get(kind), str) and f not in ends]
        content = _content_field(kind, texts, ends)
        values = Counter(f[kind] for f in texts)
        if not ends or content is None or not 1 <= len(values) <= 3:
            continue
        envelope = _chunk_kinds(kind, content, values)
        envelope["close"] = _close_frames(seen, kind)
        envelope.update(_constant_fields(texts, (kind, content)))
        rest = [f for f in objects if kind not in f]
        return envelope, rest
    return None, objects


def _content_field(
    kind: str, texts: list[dict[str, Any]], ends: list[dict[str, Any]]
) -> str | None:
    if not texts:
        return None
    common = [k for k in texts[0] if k != kind and all(isinstance(f.get(k), str) for f in texts)]
    nulls = [k for k in common if all(f.get(k) is None for f in ends)]
    return next(iter(_ordered(nulls or common, CONTENT_NAMES)), None)


def _chunk_kinds(kind: str, content: str, values: Counter[str]) -> dict[str, Any]:
    envelope: dict[str, Any] = {"type": kind, "content": content}
    names = [name for name, _ in values.most_common()]
    default = "default" if "default" in names else names[0]
    others = [name for name in names if name != default]
    tool = "tool" if "tool" in others else (others[0] if others else "tool")
    envelope.update(default=default, tool=tool)
    return envelope


def _close_frames(seen: _Seen, kind: str) -> list[dict[str, Any]]:
    """The end-of-stream frames: the run of close frames the server sent most often."""
    runs: Counter[str] = Counter()
    current: list[dict[str, Any]] = []
    for side, frame in [*seen.frames, ("server", None)]:
        if (
            side == "server"
            and frame is not None
            and str(frame.get(kind, "")).lower() in CLOSE_WORDS
        ):
            current.append(frame)
            continue
        if current:
            runs[json.dumps(current)] += 1
            current = []
    return list(json.loads(runs.most_common(1)[0][0]))


def _ends(frame: Mapping[str, Any], kind: str) -> bool:
    return str(frame.get(kind, "")).lower() in CLOSE_WORDS


def _messages(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The message envelope of ``objects`` (Schwarm's when they show none)."""
    kind = next(iter(_type_fields(objects)), None)
    if kind is None:
        return {}
    others = Counter(key for frame in objects for key in frame if key != kind)
    candidates = [key for key, _ in others.most_common()]
    payload = next(iter(_ordered(candidates, PAYLOAD_NAMES)), "message")
    envelope: dict[str, Any] = {"type": kind, "payload": payload}
    if any(isinstance(f.get(payload), dict | list) for f in objects):
        envelope["data"] = "json"
    envelope.update(_constant_fields(objects, (kind, payload)))
    return envelope


def _type_fields(objects: list[dict[str, Any]]) -> list[str]:
    """Fields every frame has as a string, known names first, then by fewest values."""
    fields = [k for k in _string_fields(objects) if all(k in frame for frame in objects)]
    distinct = {k: len({frame[k] for frame in objects}) for k in fields}
    known = [name for name in TYPE_NAMES if name in fields]
    return known + sorted((k for k in fields if k not in known), key=lambda k: distinct[k])


def _string_fields(objects: list[dict[str, Any]]) -> list[str]:
    """Fields (in the order frames show them) whose value is a string wherever they are."""
    order: dict[str, bool] = {}
    for frame in objects:
        for key, value in frame.items():
            order[key] = order.get(key, True) and isinstance(value, str)
    return [key for key, strings in order.items() if strings]


def _constant_fields(objects: list[dict[str, Any]], taken: tuple[str, ...]) -> dict[str, Any]:
    """``{"fields": {...}}`` for the fields every frame has with one same value."""
    if not objects:
        return {}
    first = objects[0]
    fields = {
        key: literal(value) if isinstance(value, str) else value
        for key, value in first.items()
        if key not in taken and all(key in f and f[key] == value for f in objects)
    }
    return {"fields": fields} if fields else {}


def _ordered(names: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """``names`` with the preferred ones first, in the order of preference."""
    names = list(names)
    return [n for n in preferred if n in names] + [n for n in names if n not in preferred]


# --- message types --------------------------------------------------------------------------


@dataclass
class _Type:
    sides: set[str] = field(default_factory=set)
    endpoints: list[str] = field(default_factory=list)
    payloads: list[Any] = field(default_factory=list)


def _message_types(
    seen: Mapping[str, _Seen], endpoints: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Every message type the frames show, with who sent it and its payloads' schema."""
    found: dict[str, _Type] = {}
    for path, frames in seen.items():
        envelope = _reader(endpoints.get(path))
        if envelope is None:
            continue
        kind, payload = envelope
        for side, frame in frames.frames:
            if frame is None or payload not in frame:
                continue
            name = frame.get(kind)
            if isinstance(name, str) and MESSAGE_TYPE_PATTERN.match(name):
                entry = found.setdefault(name, _Type())
                entry.sides.add(side)
                entry.endpoints.append(path)
                entry.payloads.append(frame[payload])
    first = next((p for p, e in endpoints.items() if _reader(e) is not None), None)
    text = {path: _data_as_text(endpoints.get(path)) for path in seen}
    return {name: _type(entry, first, text) for name, entry in found.items()}


def _reader(endpoint: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The type and payload fields of an endpoint's messages (None: it takes none)."""
    if endpoint is None or "messages" not in endpoint:
        return None
    envelope = endpoint["messages"]
    return envelope.get("type", "message_type"), envelope.get("payload", "message")


def _data_as_text(endpoint: Mapping[str, Any] | None) -> bool:
    if endpoint is None or "messages" not in endpoint:
        return False
    return bool(endpoint["messages"].get("data", "text") == "text")


def _type(entry: _Type, first: str | None, text: Mapping[str, bool]) -> dict[str, Any]:
    sides = entry.sides
    sent_by = "both" if len(sides) > 1 else next(iter(sides))
    times = f"{len(entry.payloads)} time" + "s" * (len(entry.payloads) != 1)
    who = "both ways" if sent_by == "both" else f"by the {sent_by}"
    declared: dict[str, Any] = {"description": f"sent {who} ({times} recorded)", "sent_by": sent_by}
    places = set(entry.endpoints)
    if len(places) == 1 and first not in places:
        declared["endpoint"] = next(iter(places))
    as_text = all(text.get(path, False) for path in places)
    declared["schema"] = payload_schema(entry.payloads, as_text)
    return declared


def payload_schema(payloads: Sequence[Any], as_text: bool = False) -> dict[str, Any]:
    """The JSON Schema genson writes for ``payloads``, without ``required``. With
    ``as_text`` (messages that hold JSON text), the schema of the parsed JSON when
    every payload parses to an object or list, without its top-level ``type``."""
    parsed = [_parsed(payload) for payload in payloads] if as_text else []
    containers = bool(parsed) and all(isinstance(value, dict | list) for value in parsed)
    builder = SchemaBuilder(schema_uri=None)
    for value in parsed if containers else payloads:
        builder.add_object(value)
    schema = _without_required(builder.to_schema())
    if containers and isinstance(schema, dict):
        schema.pop("type", None)
    return dict(schema)


def _parsed(payload: Any) -> Any:
    if not isinstance(payload, str):
        return None
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


def _without_required(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_without_required(item) for item in schema]
    return schema


# --- routes ---------------------------------------------------------------------------------


def _routes(recordings: Sequence[Recording]) -> list[dict[str, Any]]:
    """A route per request recorded (``METHOD /path``), answering what it answered last."""
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    for recording in sorted(recordings, key=lambda r: r.header.started):
        if recording.header.kind == "http":
            for key, answer in _exchanges(recording):
                answers.pop(key, None)  # the last answer, in the order first asked
                answers.setdefault(key, answer)
    routes = []
    for (method, path), answer in answers.items():
        route = {"path": path, **answer} if method == "GET" else {"method": method, "path": path}
        route.update(answer)
        if _valid_route(route):
            routes.append(route)
    return _listed(routes)


def _exchanges(recording: Recording) -> Iterator[tuple[tuple[str, str], dict[str, Any]]]:
    request: tuple[str, str] | None = None
    for frame in recording.frames:
        if frame.op == "request":
            method = str(frame.extra.get("method", "GET")).upper()
            request = (method, str(frame.extra.get("path", "/")))
        elif frame.op == "response" and request is not None:
            yield request, _answer(frame.extra)
            request = None


def _answer(response: Mapping[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    status = response.get("status", 200)
    if isinstance(status, int) and status != 200:
        answer["status"] = status
    body = response.get("body")
    if response.get("base64") and isinstance(body, str):
        body = base64.b64decode(body).decode("utf-8", "replace")
    if isinstance(body, str) and body.strip() and status not in (204, 304):
        try:
            answer["body"] = _escaped(json.loads(body))
        except (ValueError, RecursionError):
            answer["headers"] = {"content-type": "text/plain; charset=utf-8"}
            answer["body"] = literal(body)
    return answer


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return literal(value)
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    return value


def _valid_route(route: Mapping[str, Any]) -> bool:
    try:
        Route.model_validate(route)
    except ValueError:
        return False
    return True


def _listed(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``routes`` without those the list refuses (replay's own paths, repeats)."""
    while routes:
        problems = check_routes([Route.model_validate(route) for route in routes])
        if not problems:
            break
        routes = [r for i, r in enumerate(routes) if i != problems[0].index]
    return routes


# --- the file -------------------------------------------------------------------------------


def _description(recordings: Sequence[Recording]) -> str:
    started = min(recording.header.started for recording in recordings)
    when = datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%d %H:%M UTC")
    upstreams = sorted({r.header.upstream for r in recordings if r.header.upstream})
    where = f" of {', '.join(upstreams)}" if upstreams else ""
    sessions = f"{len(recordings)} session" + "s" * (len(recordings) != 1)
    return f"Inferred from {sessions}{where} recorded on {when}"


def protocol_text(declaration: Mapping[str, Any]) -> str:
    """The declaration as ``_protocol.yaml`` text, with a comment saying what it is."""
    head = (
        "# Inferred from recorded sessions by `replay convert --protocol`: the endpoints,\n"
        "# envelopes and message types they showed, with JSON Schemas of the payloads seen\n"
        "# (no `required`: add it where a field must always be there). Check it, then edit.\n"
    )
    body = yaml.safe_dump(
        dict(declaration), sort_keys=False, allow_unicode=True, default_flow_style=None, width=96
    )
    return head + body


def _checked(declaration: dict[str, Any], recordings: Sequence[Recording]) -> Inferred:
    """The declaration, its text and protocol, once ``parse_protocol`` finds no problem
    in it: an entry with one is left out (a bug of inference, should it happen)."""
    for _ in range(100):
        text = protocol_text(declaration)
        loaded = parse_protocol(text, FILE)
        if not loaded.problems:
            return Inferred(declaration, text, loaded.protocol)
        declaration = _without(declaration, loaded.problems[0].field.split("."))
    raise InferError(f"the protocol inferred from {len(recordings)} recordings has problems")


def _without(declaration: dict[str, Any], path: list[str]) -> dict[str, Any]:
    section = path[0] if path else ""
    result = dict(declaration)
    if section in ("message_types", "endpoints") and len(path) > 1:
        result[section] = {k: v for k, v in result[section].items() if k != path[1]}
    elif section == "routes" and len(path) > 1 and path[1].isdigit():
        result["routes"] = [r for i, r in enumerate(result["routes"]) if i != int(path[1])]
    else:
        result.pop(section, None)
    return result


__all__ = ["FILE", "InferError", "Inferred", "infer_protocol", "payload_schema", "protocol_text"]
