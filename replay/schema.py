"""The JSON Schema of a scenario file, generated from the models, for editors.

``replay schema > scenarios/scenario.schema.json`` and a first line of
``# yaml-language-server: $schema=scenario.schema.json`` in a scenario file give
completion, hover help and inline errors in editors that use the YAML language server
(VS Code's YAML extension, Neovim, JetBrains IDEs).
"""

from __future__ import annotations

from typing import Any

from replay.loader import EXTENSION
from replay.protocol.declaration import Protocol
from replay.protocol.schwarm import SCHWARM
from replay.scenario import STEP_KINDS, ClientFrameMatch, MessageStep, Scenario, WaitStep

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"

# The model fields that name a message type: (model, field).
_TYPED_FIELDS = ((MessageStep, "message"), (WaitStep, "wait"), (ClientFrameMatch, "message"))


def scenario_schema(protocol: Protocol = SCHWARM) -> dict[str, Any]:
    """The JSON Schema of a scenario file speaking ``protocol``: message type fields list
    its types with their descriptions (and, for what a client sends, its routes' keys),
    endpoint fields its endpoints, and a message step's ``data`` must pass its type's
    payload schema."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = SCHEMA_URI
    schema["title"] = "replay scenario"
    # Top-level "x-..." keys are ignored by the loader: a place for YAML anchors.
    schema["patternProperties"] = {
        f"^{EXTENSION}": {"description": "Ignored: a place to define YAML anchors."}
    }
    definitions = schema.get("$defs", {})
    choices = [
        {"const": name, "description": description}
        for name, description in protocol.descriptions.items()
    ]
    # What a client may send also includes requests to the declared HTTP routes.
    routes = [
        {"const": route.key, "description": route.description or "a request to this route"}
        for route in protocol.routes
    ]
    for model, name in _TYPED_FIELDS:
        sent = choices if model is MessageStep else [*choices, *routes]
        _replace(definitions, model.__name__, name, {"oneOf": sent})
    paths = list(protocol.paths())
    for kind in STEP_KINDS.values():
        _replace(definitions, kind.__name__, "endpoint", {"enum": [*paths, None]})
    for name in ("disconnect", "drop"):
        _replace(definitions, name.capitalize() + "Step", name, {"enum": [*paths, "all"]})
    payloads = [
        {
            "if": {"properties": {"message": {"const": name}}, "required": ["message", "data"]},
            "then": {"properties": {"data": kind.schema_}},
        }
        for name, kind in protocol.message_types.items()
        if kind.schema_ is not None
    ]
    if payloads and "MessageStep" in definitions:
        definitions["MessageStep"]["allOf"] = payloads
    return schema


def _replace(definitions: dict[str, Any], model: str, name: str, how: dict[str, Any]) -> None:
    """Make a model's field in the schema say ``how`` instead of its plain type."""
    field = definitions.get(model, {}).get("properties", {}).get(name)
    if field is not None:
        for key in ("type", "anyOf", "enum"):
            field.pop(key, None)
        field.update(how)
