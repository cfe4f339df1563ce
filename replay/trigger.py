"""The trigger request, ``POST /trigger/{scenario}``: its query, its body, and its route.

A trigger is the one request whose time counts: a frontend's test presses a button and
waits for the first frame. FastAPI's request handling (its dependency solving reads and
validates each query parameter on its own) is most of the Python a trigger runs before
that frame. :class:`TriggerRoute` keeps FastAPI's route, docs and body handling, and
checks a trigger that has no body with :class:`TriggerQuery` alone: the same model, so
the same rules and the same 422 answers, in one validation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.responses import Response

from replay.scenario import CLIENT_ID_PATTERN
from replay.timeline import MAX_SPEED, MIN_SPEED, check_speed


class TriggerQuery(BaseModel):
    """The query of ``POST /trigger/{scenario}``. Other parameters are ignored."""

    wait: bool = Field(default=True, description="Answer when the run has ended.")
    follow: bool = Field(
        default=False, description="Stream the run's events as JSON lines as they happen."
    )
    speed: Annotated[
        float,
        Field(
            ge=0,
            le=MAX_SPEED,
            description=f"2 = twice as fast; 0 = no pauses; at least {MIN_SPEED:g} otherwise.",
        ),
        AfterValidator(check_speed),
    ] = 1.0
    client: str | None = Field(
        default=None,
        pattern=CLIENT_ID_PATTERN.pattern,
        description="Send to this client only (unless a step says otherwise).",
    )
    seed: int | None = Field(
        default=None, ge=0, lt=2**63, description="Seed for jitter and random values (repeatable)."
    )


class TriggerBody(BaseModel):
    """The optional JSON body of ``POST /trigger/{scenario}``."""

    model_config = ConfigDict(extra="forbid")

    vars: dict[str, Any] = Field(
        default_factory=dict, description="Values for the scenario's declared variables."
    )
    seed: int | None = Field(default=None, ge=0, lt=2**63, description="As the query's seed.")

    @field_validator("vars")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Python's json reads NaN and Infinity, which JSON (and a browser) does not have,
        # and "\ud800" escapes into a lone surrogate, which no UTF-8 frame can carry.
        try:
            json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            bad = error.object[error.start : error.end]
            raise ValueError(
                f"variables must be valid Unicode text: {bad!r} is half of a surrogate "
                "pair (a \\uD800-\\uDFFF escape without its other half)"
            ) from None
        except ValueError:
            raise ValueError("variables must be plain JSON: no NaN or Infinity") from None
        return value

    client: str | None = Field(
        default=None, pattern=CLIENT_ID_PATTERN.pattern, description="As the query's client."
    )


def read_query(params: Mapping[str, str]) -> TriggerQuery:
    """The trigger's query checked; raises RequestValidationError (a 422 answer) with
    each error located as FastAPI locates it (``["query", "speed"]``)."""
    try:
        return TriggerQuery.model_validate(dict(params))
    except ValidationError as error:
        errors = error.errors(include_url=False)
        raise RequestValidationError(
            [{**found, "loc": ("query", *found["loc"])} for found in errors]
        ) from None


def has_body(request: Request) -> bool:
    """Whether the request says a body follows (a length over 0, or chunks)."""
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class TriggerRoute(APIRoute):
    """FastAPI's route for the trigger endpoint ``endpoint(scenario, query, body)``
    (``query: Annotated[TriggerQuery, Query()]``, ``body: TriggerBody | None``): the docs
    and a request with a body go through FastAPI as usual; a request without one has its
    query checked by :func:`read_query` and the endpoint called with ``body=None``."""

    def get_route_handler(self) -> Handler:
        with_body = super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if has_body(request):
                return await with_body(request)
            query = read_query(request.query_params)
            answer: Response = await endpoint(
                scenario=request.path_params["scenario"], query=query, body=None
            )
            return answer

        return handler
