"""The JSON Schema of a scenario file, generated from the models, for editors.

``replay schema > scenarios/scenario.schema.json`` and a first line of
``# yaml-language-server: $schema=scenario.schema.json`` in a scenario file give
completion, hover help and inline errors in editors that use the YAML language server
(VS Code's YAML extension, Neovim, JetBrains IDEs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from replay.loader import EXTENSION
from replay.protocol import MESSAGE_TYPES
from replay.scenario import ClientFrameMatch, MessageStep, Scenario, WaitStep

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"

# The model fields that name a message type: (model, field).
_TYPED_FIELDS = ((MessageStep, "message"), (WaitStep, "wait"), (ClientFrameMatch, "message"))


def scenario_schema(message_types: Mapping[str, str] = MESSAGE_TYPES) -> dict[str, Any]:
    """The JSON Schema of a scenario file; message type fields list ``message_types``,
    each with its description."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = SCHEMA_URI
    schema["title"] = "replay scenario"
    # Top-level "x-..." keys are ignored by the loader: a place for YAML anchors.
    schema["patternProperties"] = {
        f"^{EXTENSION}": {"description": "Ignored: a place to define YAML anchors."}
    }
    definitions = schema.get("$defs", {})
    choices = [
        {"const": name, "description": description} for name, description in message_types.items()
    ]
    for model, name in _TYPED_FIELDS:
        field = definitions.get(model.__name__, {}).get("properties", {}).get(name)
        if field is not None:
            field.pop("type", None)
            field["oneOf"] = choices
    return schema
