"""A project's protocol declaration: the models of ``_protocol.yaml``, and what they resolve to.

The file declares:

- ``endpoints``: the WebSocket paths clients connect to, and per endpoint how steps become
  frames there: ``messages`` (the envelope of ``message`` steps: which field holds the type
  and which the payload) and ``chunks`` (the envelope of ``chunk``, ``tool``, ``stream``
  and ``close`` steps);
- ``message_types``: each type's description, endpoint, who sends it, and an optional JSON
  Schema of its payload;
- ``routes`` and ``state``: HTTP routes (see :mod:`replay.routes`) and the state they
  share with scenarios (see :mod:`replay.state`).

``extends: schwarm`` (the default) starts from Schwarm's two sockets and message types
(:data:`replay.protocol.schwarm.SCHWARM`) and adds the file's; ``extends: none`` starts
empty. With no file at all, a folder speaks Schwarm exactly as the seed did.

These models do no I/O; :mod:`replay.protocol.file` reads the file with located errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from replay.errors import did_you_mean
from replay.protocol.wire import encode
from replay.routes import Route, RouteList

#: What an endpoint's path must look like.
PATH_PATTERN = re.compile(r"^/[A-Za-z0-9._~/-]*$")
PATH_RULE = "a path such as /ws or /chat/socket (letters, digits, '.', '_', '~', '-', '/')"
#: Message type names a project may declare.
MESSAGE_TYPE_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
MESSAGE_TYPE_RULE = (
    "a letter, then up to 63 letters, digits, '_', '.', ':' or '-' (e.g. EVENT, price_update)"
)
#: Paths replay serves WebSockets on itself, which an endpoint may not take.
RESERVED_SOCKETS = frozenset({"/runs/ws", "/events/ws"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_field_name(value: str) -> str:
    if not value or not value.strip():
        raise PydanticCustomError(
            "field_name", "must not be empty", {"expected": "a JSON field name", "found": "''"}
        )
    return value


class MessageEnvelope(_Model):
    """How ``message`` steps become frames on an endpoint, and how its client frames are read:
    ``{<type>: "EVENT", <payload>: "...", **fields}``."""

    type: str = Field(default="message_type", description="The field that holds the type.")
    payload: str = Field(
        default="message", description="The field that holds the text or the data."
    )
    data: Literal["text", "json"] = Field(
        default="text",
        description="How a step's 'data' goes in the payload: 'text', as its JSON text "
        "(Schwarm: the message is a string), or 'json', as JSON in the frame.",
    )
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="More fields on every frame, after the type and payload (values may be "
        "templates; a step's 'envelope' overrides them).",
    )

    _names = field_validator("type", "payload")(_check_field_name)


def _frames(value: Any) -> Any:
    # One frame is a list of one: `close: {type: end}` reads as it looks.
    return [value] if isinstance(value, Mapping) else value


class ChunkEnvelope(_Model):
    """How ``chunk``, ``tool``, ``stream`` and ``close`` steps become frames on an endpoint:
    ``{<type>: <default or tool>, <content>: "...", **fields}``, and the end-of-stream frames."""

    type: str = Field(default="type", description="The field that holds the chunk's kind.")
    content: str = Field(default="content", description="The field that holds the text.")
    default: str = Field(default="default", description="The kind of a text chunk.")
    tool: str = Field(default="tool", description="The kind of a tool-call chunk.")
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="More fields on every chunk, after the kind and content (values may be "
        "templates; a step's 'envelope' overrides them).",
    )
    close: Annotated[list[dict[str, Any]], BeforeValidator(_frames)] = Field(
        default_factory=lambda: [{"type": "close", "content": None}],
        description="The frames 'close: stream' sends, in order ([] when the protocol has no "
        "end marker).",
    )

    _names = field_validator("type", "content")(_check_field_name)


class EndpointDeclaration(_Model):
    """A WebSocket endpoint: its envelopes and the other paths that serve it."""

    description: str = Field(default="", description="What the endpoint carries, for humans.")
    aliases: list[str] = Field(
        default_factory=list,
        description="More paths that serve this endpoint: their clients are its clients.",
    )
    messages: MessageEnvelope | None = Field(
        default=None, description="The envelope of 'message' steps here (none: they can't)."
    )
    chunks: ChunkEnvelope | None = Field(
        default=None, description="The envelope of streamed chunks here (none: they can't)."
    )

    @field_validator("aliases")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        return [check_path(path) for path in paths]


class MessageTypeDeclaration(_Model):
    """A message type: what it means, where it goes, who sends it, its payload's schema."""

    description: str = Field(default="", description="What the message means, for humans.")
    endpoint: str | None = Field(
        default=None,
        description="The endpoint its frames go to (default: the first that takes messages).",
    )
    sent_by: Literal["server", "client", "both"] = Field(
        default="both", description="Who sends it: the server (scenarios), the client, or both."
    )
    schema_: dict[str, Any] | None = Field(
        default=None,
        alias="schema",
        description="A JSON Schema (2020-12) its payload must pass: a step's data, or its "
        "text when the type has no data.",
    )


def _type_entry(value: Any) -> Any:
    # `NAME: description` is the short form of `NAME: {description: ...}`.
    return {"description": value} if isinstance(value, str) else value


class ProtocolDeclaration(_Model):
    """The whole ``_protocol.yaml``."""

    extends: Literal["schwarm", "none"] = Field(
        default="schwarm",
        description="'schwarm' (default): Schwarm's /ws and /ws/stream and message types, plus "
        "this file's; 'none': only this file's.",
    )
    description: str = Field(default="", description="What the protocol is, for humans.")
    endpoints: dict[str, EndpointDeclaration] = Field(
        default_factory=dict, description="WebSocket endpoints by path."
    )
    message_types: dict[str, Annotated[MessageTypeDeclaration, BeforeValidator(_type_entry)]] = (
        Field(
            default_factory=dict,
            description="Message types by name: a description, or a mapping with description, "
            "endpoint, sent_by and schema.",
        )
    )
    routes: RouteList = Field(default=(), description="HTTP routes.")
    state: dict[str, Any] = Field(
        default_factory=dict,
        description="The shared state's initial values (routes and 'set' steps change it; "
        "templates read it as state.NAME).",
    )


def check_path(value: str) -> str:
    """``value`` if it is an endpoint path; raises PydanticCustomError."""
    if not isinstance(value, str) or not PATH_PATTERN.match(value) or "//" in value:
        raise PydanticCustomError(
            "endpoint_path", "not an endpoint path", {"expected": PATH_RULE, "found": repr(value)}
        )
    if value in RESERVED_SOCKETS:
        raise PydanticCustomError(
            "endpoint_path",
            "replay serves this path itself",
            {"expected": "another path", "found": repr(value)},
        )
    return value


@dataclass(frozen=True)
class Protocol:
    """A resolved protocol: what a folder's scenarios, server and tools speak.

    Endpoints keep their declaration order: the first that takes messages is where a
    ``message`` step goes unless its type or the step says otherwise, and likewise for
    chunks.
    """

    endpoints: Mapping[str, EndpointDeclaration]
    message_types: Mapping[str, MessageTypeDeclaration]
    routes: tuple[Route, ...] = ()
    state: Mapping[str, Any] = field(default_factory=dict)
    extends: str = "none"
    description: str = ""

    @property
    def descriptions(self) -> dict[str, str]:
        """Each message type's description, by name."""
        return {name: kind.description for name, kind in self.message_types.items()}

    def with_types(self, descriptions: Mapping[str, str]) -> Protocol:
        """This protocol with more message types (name: description), sent both ways."""
        added = {
            name: MessageTypeDeclaration(description=text) for name, text in descriptions.items()
        }
        return replace(self, message_types={**self.message_types, **added})

    def paths(self) -> dict[str, str]:
        """Every path served, aliases included, with the endpoint it serves."""
        served: dict[str, str] = {}
        for path, endpoint in self.endpoints.items():
            served[path] = path
            for alias in endpoint.aliases:
                served.setdefault(alias, path)
        return served

    def message_endpoint(self, message_type: str, explicit: str | None = None) -> str | None:
        """Where a ``message`` step of ``message_type`` goes: the step's endpoint, else
        the type's, else the first endpoint that takes messages; None if there is none."""
        declared = self.message_types.get(message_type)
        chosen = explicit or (declared.endpoint if declared else None)
        if chosen is not None:
            return chosen
        return next((path for path, e in self.endpoints.items() if e.messages), None)

    def chunk_endpoint(self, explicit: str | None = None) -> str | None:
        """Where chunks go: the step's endpoint, else the first that takes chunks."""
        if explicit is not None:
            return explicit
        return next((path for path, e in self.endpoints.items() if e.chunks), None)

    def first_endpoint(self) -> str | None:
        """The first declared endpoint (where ``raw`` and ``binary`` go by default)."""
        return next(iter(self.endpoints), None)

    def message_frame(
        self, endpoint: str, message_type: str, payload: Any, extra: Mapping[str, Any]
    ) -> str:
        """The text of a message frame on ``endpoint``; ``payload`` is the text, or the
        data as it goes in (already JSON text when the envelope says ``data: text``)."""
        envelope = self.endpoints[endpoint].messages
        assert envelope is not None, f"{endpoint} takes no messages"
        frame = {envelope.type: message_type, envelope.payload: payload}
        frame.update(extra)
        return encode(frame)

    def chunk_frame(self, endpoint: str, tool: bool, content: str, extra: Mapping[str, Any]) -> str:
        """The text of a chunk frame on ``endpoint``."""
        envelope = self.endpoints[endpoint].chunks
        assert envelope is not None, f"{endpoint} takes no chunks"
        frame = {
            envelope.type: envelope.tool if tool else envelope.default,
            envelope.content: content,
        }
        frame.update(extra)
        return encode(frame)

    def close_frames(self, endpoint: str) -> tuple[str, ...]:
        """The end-of-stream frames of ``endpoint``, in order."""
        envelope = self.endpoints[endpoint].chunks
        return tuple(encode(frame) for frame in envelope.close) if envelope else ()

    def reader(self, endpoint: str) -> tuple[str, str]:
        """The fields that hold a client frame's type and payload on ``endpoint``
        (Schwarm's ``message_type`` and ``message`` where it declares no messages)."""
        declared = self.endpoints.get(self.paths().get(endpoint, endpoint))
        envelope = declared.messages if declared else None
        return (envelope.type, envelope.payload) if envelope else ("message_type", "message")

    def to_dict(self) -> dict[str, Any]:
        """The resolved protocol as JSON (``GET /protocol``)."""
        return {
            "extends": self.extends,
            "description": self.description,
            "endpoints": {
                path: endpoint.model_dump(mode="json") for path, endpoint in self.endpoints.items()
            },
            "message_types": {
                name: kind.model_dump(mode="json", by_alias=True)
                for name, kind in self.message_types.items()
            },
            "routes": [route.model_dump(mode="json") for route in self.routes],
            "state": dict(self.state),
        }


#: Where a problem found across the declaration sits, what it is, what was expected.
Finding = tuple[tuple[str | int, ...], str, str, str]


def resolve(declaration: ProtocolDeclaration, base: Protocol) -> tuple[Protocol, list[Finding]]:
    """The protocol ``declaration`` gives on top of ``base`` (used when it extends
    schwarm), and what is wrong across its parts (``(path, message, expected, found)``).
    Parts with problems are left out; the others still count."""
    start = base if declaration.extends == "schwarm" else Protocol({}, {})
    endpoints = {**start.endpoints, **declaration.endpoints}
    findings = _alias_findings(declaration, start)
    for path, endpoint in declaration.endpoints.items():
        if not endpoint.messages and not endpoint.chunks:
            findings.append(
                (
                    ("endpoints", path),
                    "the endpoint takes no frames",
                    "messages, chunks or both",
                    "neither",
                )
            )
    if not endpoints:
        findings.append(((), "the protocol declares no endpoint", "an 'endpoints' mapping", "none"))
    types = dict(start.message_types)
    for name, kind in declaration.message_types.items():
        problem = _type_finding(name, kind, endpoints)
        if problem:
            findings.append(problem)
        else:
            types[name] = kind
    protocol = Protocol(
        endpoints,
        types,
        tuple(declaration.routes),
        dict(declaration.state),
        declaration.extends,
        declaration.description or start.description,
    )
    return protocol, findings


def _alias_findings(declaration: ProtocolDeclaration, start: Protocol) -> list[Finding]:
    findings: list[Finding] = []
    taken = set(start.paths()) | set(declaration.endpoints)
    for path, endpoint in declaration.endpoints.items():
        for index, alias in enumerate(endpoint.aliases):
            if alias in taken:
                findings.append(
                    (
                        ("endpoints", path, "aliases", index),
                        "this path is already served",
                        "a path of its own",
                        alias,
                    )
                )
            taken.add(alias)
    return findings


def _type_finding(
    name: str, kind: MessageTypeDeclaration, endpoints: Mapping[str, EndpointDeclaration]
) -> Finding | None:
    if not MESSAGE_TYPE_PATTERN.match(name):
        return (("message_types", name), "not a message type name", MESSAGE_TYPE_RULE, repr(name))
    if kind.endpoint is None:
        return None
    declared = endpoints.get(kind.endpoint)
    if declared is None:
        return (
            ("message_types", name, "endpoint"),
            f"unknown endpoint {kind.endpoint!r}{did_you_mean(kind.endpoint, endpoints)}",
            "one of " + ", ".join(endpoints) if endpoints else "a declared endpoint",
            repr(kind.endpoint),
        )
    if declared.messages is None:
        return (
            ("message_types", name, "endpoint"),
            f"{kind.endpoint} takes no messages",
            "an endpoint with 'messages'",
            repr(kind.endpoint),
        )
    return None
