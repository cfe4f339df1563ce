"""JSON answers that always encode.

Python strings may hold lone surrogates (a JSON body's ``"\\ud800"`` escape decodes into
one), which UTF-8 cannot encode: Starlette's ``JSONResponse`` then fails with a 500, and
an answer that repeats a bad request (a 422 echoing its input) or lists what a client
sent would fail every time it is asked for. :class:`JSONAnswer` writes such text as JSON
``\\uXXXX`` escapes instead.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


class JSONAnswer(JSONResponse):
    """A JSON response, as Starlette writes it, that never fails to encode."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            # ASCII escapes carry any string, lone surrogates included.
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")
