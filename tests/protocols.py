"""Protocol files with HTTP routes and state, for tests: Schwarm's control routes, and a
scenario that waits for one of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from replay.library import PROTOCOL_FILE
from replay.protocol.file import parse_protocol
from replay.routes import Route

#: Schwarm's HTTP control routes (P1-P3) as a project declares them, and a few more that
#: tests need: a parameter, an echo of the request, a template that fails, a path of
#: replay's own with another method, a slow route.
SCHWARM_PROTOCOL = """\
routes:
  - path: /break
    body: "{{ state.paused }}"
    description: Whether the run is paused.
  - method: POST
    path: /break
    set: {paused: "{{ not state.paused }}"}
    body: "{{ state.paused }}"
  - path: /chat
    body: "{{ state.paused and state.waiting }}"
  - method: POST
    path: /chat
    set:
      paused: "{{ not state.paused }}"
      chat_input: "{{ request.query.user_input }}"
    body: "{{ request.query.user_input }}"
  - path: /breakpoint/turns
    body: "{{ state.turns }}"
  - path: /spans/{id}
    body: {id: "{{ request.params.id }}", status_code: OK}
  - method: PUT
    path: /echo/{what:path}
    status: 201
    body: "{{ request }}"
  - path: /broken
    body: "{{ request.json.missing }}"
  - method: POST
    path: /healthz
    body: a route of the project's
  - path: /slow
    latency: 5s
    body: late
state: {paused: true, waiting: false, chat_input: "", turns: 1}
"""

#: The routes and state of SCHWARM_PROTOCOL, as the protocol file gives them.
SCHWARM = parse_protocol(SCHWARM_PROTOCOL, PROTOCOL_FILE).protocol
assert len(SCHWARM.routes) == 10, "SCHWARM_PROTOCOL has a problem"

#: A scenario that asks for chat input and waits for it as a request to POST /chat.
CHAT = """
description: Asks for chat input over HTTP, and answers it.
steps:
  - message: CHAT_REQUESTED
    text: What should I do?
  - wait: POST /chat
    fields: {query.user_input: "\\\\S"}
    timeout: 30s
  - message: CHAT
    text: "You said: {{ received.frame.query.user_input }} ({{ received.client }})"
"""


def route(**fields: Any) -> Route:
    """A route from the fields a protocol file gives (``set`` included)."""
    return Route.model_validate(fields)


def write_protocol(folder: Path, text: str) -> None:
    """Write the folder's protocol file, so that the next look at the folder sees it
    changed (its modification time moves on even within the clock's resolution)."""
    path = folder / PROTOCOL_FILE
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    after = path.stat().st_mtime_ns
    if after <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))
