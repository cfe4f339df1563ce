"""How a step becomes frames under a protocol: the endpoint it goes to, the envelope it is
wrapped in, and the payload checked against its type's schema.

Pure: the engine calls these with the values it rendered, and gets the frames' text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from replay.errors import TemplateFailed
from replay.protocol.declaration import Protocol
from replay.protocol.payloads import payload_problems
from replay.protocol.wire import encode
from replay.scenario import MessageStep


def message_endpoint(protocol: Protocol, step: MessageStep) -> str:
    """Where a message step's frame goes (validation made sure there is one)."""
    endpoint = protocol.message_endpoint(step.message, step.endpoint)
    assert endpoint is not None, "validated: the protocol has an endpoint for messages"
    return endpoint


def chunk_endpoint(protocol: Protocol, explicit: str | None) -> str:
    """Where a chunk step's frames go (validation made sure there is one)."""
    endpoint = protocol.chunk_endpoint(explicit)
    assert endpoint is not None, "validated: the protocol has an endpoint for chunks"
    return endpoint


def payload(protocol: Protocol, endpoint: str, step: MessageStep, value: Any) -> Any:
    """What goes in a message frame's payload field: the text as is; data as its JSON
    text (Schwarm) or as JSON, as the envelope says. Raises TemplateFailed for data that
    is not JSON."""
    envelope = protocol.endpoints[endpoint].messages
    if step.text is not None or (envelope is not None and envelope.data == "json"):
        return value
    try:
        return encode(value)
    except (TypeError, ValueError) as error:
        raise TemplateFailed(json.dumps(step.data, default=str), str(error)) from None


def check_payload(protocol: Protocol, message_type: str, value: Any) -> None:
    """Raise TemplateFailed if ``value`` (a message's text or data) fails its type's
    schema; types without one take anything."""
    declared = protocol.message_types.get(message_type)
    if declared is None or declared.schema_ is None:
        return
    problems = payload_problems(declared.schema_, value)
    if problems:
        reasons = "; ".join(message for _, message in problems)
        raise TemplateFailed(
            f"a {message_type} payload", f"it fails the {message_type} schema: {reasons}"
        )


def envelope_fields(own: Mapping[str, Any], step: Mapping[str, Any] | None) -> dict[str, Any]:
    """The envelope's extra fields with the step's on top (before rendering)."""
    return {**own, **step} if step else dict(own)
