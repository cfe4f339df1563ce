"""Requests to declared routes and the answers routes render (no I/O, no clock)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from replay.answers import (
    HttpRequest,
    parse_body,
    render_answer,
    render_changes,
    stand_in_event,
    template_names,
)
from replay.errors import TemplateFailed
from replay.matching import ClientFrame, matches
from replay.routes import Route
from replay.scenario import ClientFrameMatch


def route(**fields: Any) -> Route:
    return Route.model_validate(fields)


def names(
    request: HttpRequest | None = None, state: dict[str, Any] | None = None
) -> dict[str, Any]:
    return template_names(
        request or HttpRequest("GET", "/x"), state or {}, 1_700_000_000.123, random.Random(3)
    )


# --- answers -----------------------------------------------------------------------------


def test_a_lone_expression_keeps_its_json_type() -> None:
    answer = render_answer(
        route(path="/break", body="{{ state.paused }}"), names(state={"paused": True})
    )
    assert (answer.status, answer.body) == (200, b"true")
    assert ("content-type", "application/json") in answer.headers


def test_a_body_is_rendered_like_scenario_data() -> None:
    request = HttpRequest(
        "GET", "/spans/7", {"id": "7"}, {"n": "3", "items": "x"}, {"x-a": "b"}, "", None
    )
    body = {
        "id": "{{ request.params.id }}",
        "n": "{{ request.query.n | int }}",
        "items": "{{ request.query.items }}",  # a parameter, never the mapping's method
        "text": "span {{ request.params.id }} of {{ request.path }}",
        "header": "{{ request.headers['x-a'] }}",
        "at": "{{ now.ms }}",
        "plain": [1, None, True],
    }
    answer = render_answer(route(path="/spans/{id}", body=body), names(request))
    assert json.loads(answer.body) == {
        "id": "7",
        "n": 3,
        "items": "x",
        "text": "span 7 of /spans/7",
        "header": "b",
        "at": 1_700_000_000_123,
        "plain": [1, None, True],
    }
    assert answer.body.startswith(b'{"id":"7","n":3')  # compact, as FastAPI writes JSON


def test_a_string_body_is_json_unless_the_content_type_says_otherwise() -> None:
    chat = HttpRequest("POST", "/chat", query={"user_input": "Hi ✓"})
    as_json = render_answer(route(path="/chat", body="{{ request.query.user_input }}"), names(chat))
    assert as_json.body == '"Hi ✓"'.encode()
    text = route(
        path="/s/", headers={"Content-Type": "text/plain; charset=utf-8"}, body="a {{ 1 + 1 }}"
    )
    answer = render_answer(text, names())
    assert answer.body == b"a 2"
    assert answer.headers == (("Content-Type", "text/plain; charset=utf-8"),)
    mapping = route(path="/s/", headers={"content-type": "text/plain"}, body={"a": 1})
    assert render_answer(mapping, names()).body == b'{"a":1}'
    problem = route(path="/p", headers={"content-type": "application/problem+json"}, body="x")
    assert render_answer(problem, names()).body == b'"x"'


def test_no_body_is_an_empty_answer_and_null_is_json_null() -> None:
    empty = render_answer(route(path="/x", status=204), names())
    assert (empty.status, empty.headers, empty.body) == (204, (), b"")
    assert render_answer(route(path="/x", body=None), names()).body == b"null"


def test_header_values_are_rendered() -> None:
    answer = render_answer(route(path="/x", headers={"X-Id": "span-{{ request.path }}"}), names())
    assert answer.headers == (("X-Id", "span-/x"),)
    bad = route(path="/x", headers={"X-Id": "{{ request.body }}"})
    with pytest.raises(TemplateFailed, match="line break"):
        render_answer(bad, names(HttpRequest("GET", "/x", body="a\r\nSet-Cookie: x")))


def test_changes_are_rendered_with_the_state_as_it_was() -> None:
    flip = route(
        path="/break", set={"paused": "{{ not state.paused }}", "by": "{{ request.method }}"}
    )
    assert render_changes(flip, names(state={"paused": True})) == {"paused": False, "by": "GET"}
    assert render_changes(route(path="/x"), names()) == {}


def test_a_template_that_fails_raises_template_failed() -> None:
    with pytest.raises(TemplateFailed, match="no attribute 'x'"):
        render_answer(route(path="/x", body="{{ request.json.x }}"), names())
    with pytest.raises(TemplateFailed, match=r"'missing' is undefined|no attribute 'missing'"):
        render_changes(route(path="/x", set={"a": "{{ state.missing }}"}), names())


def test_random_values_come_from_the_given_generator() -> None:
    body = {"id": "{{ uuid() }}", "n": "{{ randint(1, 1000000) }}", "span": "{{ hex(16) }}"}
    first = render_answer(route(path="/x", body=body), names())
    again = render_answer(route(path="/x", body=body), names())
    assert first.body == again.body  # the same seed
    assert len(json.loads(first.body)["id"]) == 36
    assert len(json.loads(first.body)["span"]) == 16


def test_a_lone_surrogate_in_a_json_body_is_escaped() -> None:
    request = HttpRequest("POST", "/echo", json={"text": "\ud800"})
    answer = render_answer(route(path="/echo", body="{{ request.json }}"), names(request))
    assert answer.body == b'{"text":"\\ud800"}'


# --- requests as client events -----------------------------------------------------------


def test_parse_body() -> None:
    assert parse_body(b'{"a": [1]}') == ('{"a": [1]}', {"a": [1]})
    assert parse_body(b"user_input=hi") == ("user_input=hi", None)
    assert parse_body(b"") == ("", None)
    assert parse_body(b"\xff") == ("\ufffd", None)
    assert parse_body(b"[" * 100_000) == ("[" * 100_000, None)


def test_a_request_is_a_client_event_of_its_routes_kind() -> None:
    chat = route(method="POST", path="/chat")
    request = HttpRequest(
        "POST", "/chat", {}, {"user_input": "Hi"}, {"x-a": "1"}, '{"n": 2}', {"n": 2}
    )
    event = request.client_event("tab-1", chat)
    assert isinstance(event, ClientFrame)
    assert (event.client, event.endpoint, event.message_type) == ("tab-1", "http", "POST /chat")
    assert json.loads(event.text or "") == {
        "method": "POST",
        "path": "/chat",
        "params": {},
        "query": {"user_input": "Hi"},
        "headers": {"x-a": "1"},
        "body": '{"n": 2}',
        "json": {"n": 2},
    }
    assert event.data == {"n": 2}
    assert event.for_template()["frame"]["query"]["user_input"] == "Hi"
    assert matches(ClientFrameMatch(message="CHAT_INPUT"), event) is False
    wanted = ClientFrameMatch.model_construct(
        message="POST /chat", match=None, fields={"query.user_input": "^Hi$"}
    )
    assert matches(wanted, event)
    other = ClientFrameMatch.model_construct(
        message="POST /chat", match=None, fields={"query.user_input": "^Bye$"}
    )
    assert not matches(other, event)


def test_the_stand_in_event_of_a_dry_run() -> None:
    event = stand_in_event("POST /chat", "client")
    assert (event.message_type, event.endpoint, event.client) == ("POST /chat", "http", "client")
    assert event.frame["query"] == {}
    assert event.data is None
