"""A protocol as an AsyncAPI 3.0.0 document (``replay asyncapi``), for AsyncAPI Studio,
Microcks, code generators and whoever reads the frontend's wire format.

The document is written from replay's point of view, as AsyncAPI 3 wants it: replay is
the application. It ``send``\\s the frames scenarios play to its clients and
``receive``\\s those the clients send:

- each WebSocket endpoint is a channel (address: its path); each of its aliases is a
  channel of its own with the same messages, since clients may connect at either;
- an endpoint with a ``messages`` envelope has a message per message type that goes
  there by default, whose payload is the whole frame: the type field (``const``), the
  payload field (the type's JSON Schema; a JSON text holding it when the envelope sends
  data as text) and the envelope's extra fields; an endpoint no type goes to by default
  has one generic message instead;
- an endpoint with a ``chunks`` envelope has the messages ``chunk``, ``tool_chunk`` and,
  when the protocol has end-of-stream frames, ``stream_end``;
- each message has an operation per direction its type's ``sent_by`` gives
  (``server``: send, ``client``: receive, ``both``: both);
- each HTTP route path is a channel on an ``http`` server, and each route a ``receive``
  operation with an HTTP operation binding (its method) and a ``reply`` whose message
  carries the answer's status and headers in an HTTP message binding.

Type schemas go in ``components.schemas``, their own ``#...`` references rewritten to
point there. Every key of ``channels``, ``operations`` and ``components`` matches
:data:`KEY_PATTERN`. Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from replay import templates
from replay.protocol.declaration import (
    ChunkEnvelope,
    EndpointDeclaration,
    MessageEnvelope,
    MessageTypeDeclaration,
    Protocol,
)

#: The AsyncAPI version of the documents made here.
ASYNCAPI_VERSION = "3.0.0"
#: What the keys of channels, operations and components must look like.
KEY_PATTERN = re.compile(r"^[a-zA-Z0-9.\-_]+$")
#: The HTTP methods the AsyncAPI HTTP operation binding (0.3.0) allows.
HTTP_METHODS = frozenset({"GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"})
HTTP_BINDING = "0.3.0"
WS_BINDING = "0.1.0"
JSON = "application/json"

#: A route path's parameters: ``{name}`` and, last, ``{name:path}``.
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]*))?\}")
_NOT_KEY = re.compile(r"[^A-Za-z0-9.\-_]+")
#: Schema keywords whose values are data, not schemas: their "$ref"s are not references.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "example"})
_ACTIONS = {"server": ("send",), "client": ("receive",), "both": ("send", "receive")}


def asyncapi_document(
    protocol: Protocol, *, title: str, version: str, server_url: str | None
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``protocol`` (see the module's description).

    ``title`` and ``version`` go in ``info``; ``server_url`` (``ws://host:port``, or
    ``wss://``) is where replay serves, or None for a document without servers. Raises
    ValueError for a server URL that is not a WebSocket URL."""
    servers = server_objects(server_url, http=bool(protocol.routes))
    builder = _Builder(protocol, servers)
    for path, endpoint in protocol.endpoints.items():
        builder.add_endpoint(path, endpoint)
    for path, routes in _by_path(protocol.routes).items():
        builder.add_routes(path, routes)
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(protocol, title, version),
        "defaultContentType": JSON,
    }
    if servers:
        document["servers"] = servers
    document["channels"] = builder.channels
    document["operations"] = builder.operations
    components: dict[str, Any] = {"messages": builder.messages}
    if builder.schemas:
        components["schemas"] = builder.schemas
    document["components"] = components
    return document


def document_text(document: Mapping[str, Any], form: Literal["yaml", "json"]) -> str:
    """``document`` as YAML (keys in the document's order) or JSON text, ending in a
    newline."""
    if form == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return text


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper without anchors and aliases (``&id001``), which some AsyncAPI
    tools do not follow."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def server_objects(server_url: str | None, *, http: bool) -> dict[str, Any]:
    """The ``servers`` of a document: ``ws`` at ``server_url`` and, when ``http``, the
    same host as ``http`` (for the routes); none without a URL. Raises ValueError for a
    URL that is not ``ws://HOST[:PORT][/PATH]`` or ``wss://...``."""
    if server_url is None:
        return {}
    parts = urllib.parse.urlsplit(server_url)
    try:
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
        valid = parts.scheme in ("ws", "wss") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid or parts.query or parts.fragment:
        raise ValueError(f"{server_url!r} is not a WebSocket URL such as ws://localhost:8123")
    where = {"host": parts.netloc.rpartition("@")[2]}
    if parts.path.strip("/"):
        where["pathname"] = "/" + parts.path.strip("/")
    servers: dict[str, Any] = {
        "ws": {**where, "protocol": parts.scheme, "description": "replay's WebSocket endpoints"}
    }
    if http:
        scheme = "https" if parts.scheme == "wss" else "http"
        servers["http"] = {**where, "protocol": scheme, "description": "replay's HTTP routes"}
    return servers


def component_key(text: str) -> str:
    """``text`` as a key AsyncAPI allows: ``/ws/stream`` -> ``ws_stream``, ``/`` -> ``root``."""
    return _NOT_KEY.sub("_", text).strip("_") or "root"


def _unique(wanted: str, taken: Iterable[str]) -> str:
    """``wanted`` as a key, made unique among ``taken`` with a suffix (_2, _3...)."""
    key = component_key(wanted)
    names = set(taken)
    candidate, number = key, 1
    while candidate in names:
        number += 1
        candidate = f"{key}_{number}"
    return candidate


def _info(protocol: Protocol, title: str, version: str) -> dict[str, Any]:
    about = protocol.description
    lines = [about] if about else []
    lines.append(
        f"Generated by replay {version} (`replay asyncapi`) from the scenarios folder's "
        "protocol. replay is the application described: it sends the frames of `send` "
        "operations to its clients and receives those of `receive` operations."
    )
    return {"title": title, "version": version, "description": "\n\n".join(lines)}


@dataclass
class _Message:
    """A message of a channel: its key there, its component's key, who sends it (as
    operations' actions) and what it is called in their summaries."""

    key: str
    component: str
    actions: tuple[str, ...]
    label: str


@dataclass
class _Builder:
    """The channels, operations and components of a document, as they are added."""

    protocol: Protocol
    servers: Mapping[str, Any]
    channels: dict[str, Any] = field(default_factory=dict)
    operations: dict[str, Any] = field(default_factory=dict)
    messages: dict[str, Any] = field(default_factory=dict)
    schemas: dict[str, Any] = field(default_factory=dict)

    def add_endpoint(self, path: str, endpoint: EndpointDeclaration) -> None:
        """A WebSocket endpoint: its messages, then a channel (with operations) for its
        path and one for each alias."""
        base = component_key(path)
        found: list[_Message] = []
        if endpoint.messages is not None:
            found += self._typed_messages(path, base, endpoint.messages)
        if endpoint.chunks is not None:
            found += self._chunk_messages(base, endpoint.chunks, [m.key for m in found])
        for address in (path, *endpoint.aliases):
            about = endpoint.description
            if address != path:
                about = f"Another path of {path}: its clients are that endpoint's. {about}"
            channel = self._channel(address, about.strip(), found, "ws")
            self.channels[channel]["bindings"] = {
                "ws": {"method": "GET", "bindingVersion": WS_BINDING}
            }
            for message in found:
                for action in message.actions:
                    self._operation(action, channel, message)

    def _channel(
        self,
        address: str,
        about: str,
        found: Sequence[_Message],
        server: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> str:
        key = _unique(address, self.channels)
        channel: dict[str, Any] = {"address": address}
        if parameters:
            channel["parameters"] = parameters
        if about:
            channel["description"] = about
        channel["messages"] = {
            m.key: {"$ref": f"#/components/messages/{m.component}"} for m in found
        }
        if server in self.servers:
            channel["servers"] = [{"$ref": f"#/servers/{server}"}]
        self.channels[key] = channel
        return key

    def _operation(self, action: str, channel: str, message: _Message) -> None:
        key = _unique(f"{action}.{channel}.{message.key}", self.operations)
        self.operations[key] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"Send {message.label} to the clients"
            if action == "send"
            else f"Receive {message.label} from a client",
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message.key}"}],
        }

    def _add_message(self, wanted: str, message: dict[str, Any]) -> str:
        key = _unique(wanted, self.messages)
        self.messages[key] = message
        return key

    def _typed_messages(self, path: str, base: str, envelope: MessageEnvelope) -> list[_Message]:
        """A message per type that goes to ``path`` by default (or a generic one)."""
        names = [
            n for n in self.protocol.message_types if self.protocol.message_endpoint(n) == path
        ]
        if not names:
            return [self._generic_message(base, envelope)]
        found = []
        taken: list[str] = []
        for name in names:
            kind = self.protocol.message_types[name]
            schema = self._type_schema(name, kind)
            component = self._add_message(name, _type_message(name, kind, envelope, schema))
            taken.append(_unique(name, taken))
            found.append(_Message(taken[-1], component, _ACTIONS[kind.sent_by], name))
        return found

    def _generic_message(self, base: str, envelope: MessageEnvelope) -> _Message:
        names = list(self.protocol.message_types)
        kind: dict[str, Any] = {"type": "string"}
        if names:
            kind["enum"] = names
        message = {
            "name": "message",
            "title": "A message",
            "summary": "A message of any type: no type goes here unless a step names this "
            "endpoint.",
            "contentType": JSON,
            "payload": _frame(envelope, kind, _payload(envelope, None)),
        }
        component = self._add_message(f"{base}.message", message)
        return _Message("message", component, ("send", "receive"), "a message of any type")

    def _type_schema(self, name: str, kind: MessageTypeDeclaration) -> str | None:
        """The reference of the type's schema, put in ``components.schemas``; None when
        the type has none."""
        if kind.schema_ is None:
            return None
        key = _unique(name, self.schemas)
        self.schemas[key] = embedded_schema(kind.schema_, f"#/components/schemas/{key}")
        return f"#/components/schemas/{key}"

    def _chunk_messages(
        self, base: str, envelope: ChunkEnvelope, taken: Sequence[str]
    ) -> list[_Message]:
        """``chunk``, ``tool_chunk`` and, if the stream has an end, ``stream_end``."""
        found: list[_Message] = []
        for wanted, message in _chunk_message_objects(envelope):
            component = self._add_message(f"{base}.{wanted}", message)
            key = _unique(wanted, [*taken, *(m.key for m in found)])
            found.append(_Message(key, component, ("send",), wanted))
        return found

    def add_routes(self, path: str, routes: Sequence[Any]) -> None:
        """A channel on the ``http`` server for a route path; per route a request and an
        answer, and a ``receive`` operation whose reply is the answer."""
        found: list[_Message] = []
        pairs: list[tuple[Any, _Message, _Message]] = []
        base = component_key(path)
        for route in routes:
            method = str(route.method).upper()
            request = self._add_message(f"{base}.{method}.request", _request_message(route))
            answer = self._add_message(f"{base}.{method}.response", _response_message(route))
            taken = [m.key for m in found]
            asked = _Message(_unique(f"{method}.request", taken), request, ("receive",), method)
            answered = _Message(_unique(f"{method}.response", taken), answer, (), method)
            found += [asked, answered]
            pairs.append((route, asked, answered))
        about = "HTTP routes: " + ", ".join(f"{str(r.method).upper()} {path}" for r in routes)
        channel = self._channel(_address(path), about, found, "http", _parameters(path))
        for route, asked, answered in pairs:
            self._route_operation(route, channel, asked, answered)

    def _route_operation(
        self, route: Any, channel: str, asked: _Message, answered: _Message
    ) -> None:
        method = str(route.method).upper()
        key = _unique(f"{method}.{channel}", self.operations)
        at = f"#/channels/{channel}"
        operation: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": at},
            "summary": f"{method} {route.path}",
        }
        about = _route_description(route)
        if about:
            operation["description"] = about
        operation["messages"] = [{"$ref": f"{at}/messages/{asked.key}"}]
        operation["reply"] = {
            "channel": {"$ref": at},
            "messages": [{"$ref": f"{at}/messages/{answered.key}"}],
        }
        if method in HTTP_METHODS:
            operation["bindings"] = {"http": {"method": method, "bindingVersion": HTTP_BINDING}}
        self.operations[key] = operation


_SENDERS = {"server": "replay", "client": "the clients", "both": "replay and the clients"}


def _type_message(
    name: str, kind: MessageTypeDeclaration, envelope: MessageEnvelope, schema: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = {"name": name, "title": name}
    if kind.description:
        message["summary"] = kind.description
    message["description"] = f"Sent by {_SENDERS[kind.sent_by]}."
    message["contentType"] = JSON
    kind_schema = {"type": "string", "const": name}
    message["payload"] = _frame(envelope, kind_schema, _payload(envelope, schema))
    return message


def _payload(envelope: MessageEnvelope, schema: str | None) -> dict[str, Any]:
    """The schema of a message frame's payload field."""
    if envelope.data == "json":
        if schema is None:
            return {"description": "The message's text, or its data as JSON."}
        return {"$ref": schema}
    about = "The message's text, or its data as JSON text."
    if schema is None:
        return {"type": "string", "description": about}
    return {
        "type": "string",
        "description": about,
        "contentMediaType": JSON,
        "contentSchema": {"$ref": schema},
    }


def _frame(
    envelope: MessageEnvelope, kind: dict[str, Any], payload: dict[str, Any]
) -> dict[str, Any]:
    """The schema of a whole message frame: type, payload and the envelope's fields."""
    properties = {envelope.type: kind, envelope.payload: payload}
    for name, value in envelope.fields.items():
        properties.setdefault(name, _field_schema(value))
    return {
        "type": "object",
        "required": [envelope.type, envelope.payload],
        "properties": properties,
    }


def _field_schema(value: Any) -> dict[str, Any]:
    """An envelope's extra field: its value on every frame, unless a step's envelope
    gives another."""
    if isinstance(value, str) and templates.is_template(value):
        return {"description": f"Rendered from the template {value!r} (a step may override it)."}
    return {"default": value, "description": "On every frame (a step may override it)."}


def _chunk_message_objects(envelope: ChunkEnvelope) -> list[tuple[str, dict[str, Any]]]:
    """The messages of a chunks envelope, by the key they want."""
    found = [
        ("chunk", _chunk(envelope, "chunk", envelope.default, "A chunk of streamed text.")),
        (
            "tool_chunk",
            _chunk(envelope, "tool_chunk", envelope.tool, "A chunk of a streamed tool call."),
        ),
    ]
    if envelope.close:
        found.append(("stream_end", _stream_end(envelope.close)))
    return found


def _chunk(envelope: ChunkEnvelope, name: str, kind: str, about: str) -> dict[str, Any]:
    properties = {
        envelope.type: {"type": "string", "const": kind},
        envelope.content: {"type": "string", "description": "The text."},
    }
    for field_name, value in envelope.fields.items():
        properties.setdefault(field_name, _field_schema(value))
    payload = {
        "type": "object",
        "required": [envelope.type, envelope.content],
        "properties": properties,
    }
    return {"name": name, "title": name, "summary": about, "contentType": JSON, "payload": payload}


def _stream_end(frames: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The end-of-stream frames, sent in this order after a stream's last chunk."""
    payload: dict[str, Any] = {"type": "object"}
    if len(frames) == 1:
        payload["const"] = dict(frames[0])
    else:
        payload["enum"] = [dict(frame) for frame in frames]
    summary = "The end of a stream."
    if len(frames) > 1:
        summary = f"The end of a stream: these {len(frames)} frames, in this order."
    return {
        "name": "stream_end",
        "title": "stream_end",
        "summary": summary,
        "contentType": JSON,
        "payload": payload,
        "examples": [{"name": f"frame{i + 1}", "payload": dict(f)} for i, f in enumerate(frames)],
    }


def embedded_schema(schema: Mapping[str, Any], at: str) -> dict[str, Any]:
    """A type's payload schema as it goes in the document at ``at`` (a ``#/...``
    pointer): its own references (``#``, ``#/$defs/x``) made to point there, and its
    ``$id`` and ``$schema`` left out (the document is their base now)."""
    copied = {k: v for k, v in schema.items() if k not in ("$id", "$schema")}
    result: dict[str, Any] = _rebased(copied, at)
    return result


def _rebased(value: Any, at: str) -> Any:
    if isinstance(value, Mapping):
        result = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and (item == "#" or item.startswith("#/")):
                result[key] = at + item[1:]
            elif key in _DATA_KEYWORDS:
                result[key] = item
            else:
                result[key] = _rebased(item, at)
        return result
    if isinstance(value, list):
        return [_rebased(item, at) for item in value]
    return value


def _by_path(routes: Iterable[Any]) -> dict[str, list[Any]]:
    """Routes grouped by path, in declaration order."""
    grouped: dict[str, list[Any]] = {}
    for route in routes:
        grouped.setdefault(str(route.path), []).append(route)
    return grouped


def _address(path: str) -> str:
    """A route path as a channel address: ``{name:path}`` becomes ``{name}``."""
    return _PARAMETER.sub(lambda found: "{" + found.group(1) + "}", path)


def _parameters(path: str) -> dict[str, Any]:
    """The channel parameters of a route path's ``{name}`` segments."""
    parameters = {}
    for found in _PARAMETER.finditer(path):
        rest = found.group(2) == "path"
        parameters[found.group(1)] = {
            "description": "The rest of the path, slashes included."
            if rest
            else "One segment of the path."
        }
    return parameters


def _route_description(route: Any) -> str:
    """What a route does besides answering: its description, latency and state changes."""
    parts = [str(getattr(route, "description", "") or "")]
    latency = getattr(route, "latency", 0) or 0
    if latency:
        parts.append(f"Answers after {float(latency) * 1000:g} ms.")
    sets = getattr(route, "set", None) or {}
    if sets:
        parts.append("Sets the shared state's " + ", ".join(sorted(sets)) + ".")
    return " ".join(part for part in parts if part)


def _request_message(route: Any) -> dict[str, Any]:
    method = str(route.method).upper()
    return {
        "name": f"{method} {route.path}",
        "title": f"{method} {route.path}",
        "summary": f"A {method} request to {route.path} (any body, any query string).",
    }


def _response_message(route: Any) -> dict[str, Any]:
    """The answer: body as payload, status and headers in the HTTP message binding."""
    method = str(route.method).upper()
    headers: Mapping[str, str] = getattr(route, "headers", None) or {}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    message: dict[str, Any] = {
        "name": f"{method} {route.path} {route.status}",
        "title": f"{route.status} answer to {method} {route.path}",
    }
    if "body" in getattr(route, "model_fields_set", {"body"}):
        body = route.body
        as_text = content_type is not None and "json" not in content_type.lower()
        message["summary"] = "The route's body, rendered."
        message["contentType"] = content_type or JSON
        message["payload"] = _body_schema(body, as_text)
        if not templates.has_templates(body) and (isinstance(body, str) or not as_text):
            message["examples"] = [{"name": "body", "payload": body}]
    else:
        message["summary"] = "An empty answer."
    binding: dict[str, Any] = {"statusCode": route.status}
    if headers:
        binding["headers"] = {
            "type": "object",
            "properties": {name: _header_schema(value) for name, value in headers.items()},
        }
    message["bindings"] = {"http": {**binding, "bindingVersion": HTTP_BINDING}}
    return message


def _header_schema(value: str) -> dict[str, Any]:
    if templates.is_template(value):
        return {"type": "string", "description": f"Rendered from the template {value!r}."}
    return {"type": "string", "const": value}


def _body_schema(body: Any, as_text: bool = False) -> dict[str, Any]:
    """The schema of a route's body: exact where it has no templates."""
    if as_text:
        if isinstance(body, str) and not templates.is_template(body):
            return {"type": "string", "const": body}
        return {
            "type": "string",
            "description": "The body as text (anything but a string as its JSON text), rendered.",
        }
    if isinstance(body, str) and templates.is_template(body):
        return {"description": f"Rendered from the template {body!r}."}
    if not templates.has_templates(body):
        return {"const": body}
    if isinstance(body, Mapping):
        return {
            "type": "object",
            "required": list(body),
            "properties": {str(k): _body_schema(v) for k, v in body.items()},
        }
    items = [_body_schema(item) for item in body]
    return {"type": "array", "items": items, "minItems": len(items), "maxItems": len(items)}
