"""Declared HTTP routes: the model and its located errors, the list's checks, the matcher,
and the rendering of answers (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ValidationError
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute

from replay import loader
from replay.protocol.file import parse_protocol
from replay.routes import (
    METHODS,
    NAMES,
    OWN_ROUTES,
    Route,
    RouteList,
    check_routes,
    declared,
    declared_state,
    find,
    is_route_key,
)
from replay.server import Settings, create_app


class Protocol(BaseModel):
    """The part of a protocol file routes live in, as the protocol parser embeds them."""

    routes: RouteList = ()


def route(**fields: Any) -> Route:
    return Route.model_validate(fields)


def errors(**fields: Any) -> list[dict[str, Any]]:
    """The validation errors of one route, as pydantic gives them."""
    with pytest.raises(ValidationError) as raised:
        Route.model_validate(fields)
    return list(raised.value.errors())


def only_error(**fields: Any) -> dict[str, Any]:
    found = errors(**fields)
    assert len(found) == 1, found
    return found[0]


# --- the model ---------------------------------------------------------------------------


def test_a_route_needs_only_a_path() -> None:
    declared_route = route(path="/break")
    assert declared_route.method == "GET"
    assert declared_route.status == 200
    assert declared_route.latency == 0.0
    assert declared_route.set == {}
    assert declared_route.key == "GET /break"


def test_every_field_of_a_route() -> None:
    declared_route = route(
        method="post",
        path="/break",
        status=201,
        headers={"X-Kind": "fake"},
        body="{{ state.paused }}",
        latency="200ms",
        set={"paused": "{{ not state.paused }}"},
        description="Pause or resume.",
    )
    assert declared_route.method == "POST"  # methods are written in any case
    assert declared_route.latency == pytest.approx(0.2)
    assert declared_route.set == {"paused": "{{ not state.paused }}"}
    assert declared_route.summary() == {
        "key": "POST /break",
        "method": "POST",
        "path": "/break",
        "status": 201,
        "description": "Pause or resume.",
        "latency": pytest.approx(0.2),
        "sets": ["paused"],
    }


def test_a_latency_written_as_a_bare_number_over_a_minute_is_refused_located() -> None:
    # latency: 200 almost always means 200 ms; the same rule as every duration.
    error = only_error(path="/x", latency=200)
    assert error["loc"] == ("latency",)
    assert error["type"] == "duration"
    assert "200 is read as seconds (3 min 20 s); write 200ms" in error["msg"]
    [problem] = parse_protocol(
        "routes:\n  - path: /x\n    latency: 200\n", "scenarios/_protocol.yaml"
    ).problems
    assert (problem.line, problem.field) == (3, "routes.0.latency")
    assert "write 200ms for milliseconds or 200s to mean seconds" in problem.message
    assert route(path="/x", latency="200ms").latency == pytest.approx(0.2)


@pytest.mark.parametrize("method", ["FETCH", "HEAD", "", 3])
def test_methods_are_the_five_a_route_can_have(method: Any) -> None:
    error = only_error(method=method, path="/x")
    assert error["loc"] == ("method",)
    assert error["type"] == "route_method"
    assert error["ctx"]["expected"] == "GET, POST, PUT, PATCH or DELETE"
    assert error["ctx"]["found"] == repr(method)
    assert set(METHODS) == {"GET", "POST", "PUT", "PATCH", "DELETE"}


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("break", "a route's path starts with '/'"),
        ("/chat?user_input=", "a route's path has no query or fragment"),
        ("/a//b", "a route's path has an empty segment ('//')"),
        ("/spans/{id}/{id}", "parameter 'id' appears twice in the path"),
        ("/files/{rest:path}/more", "{rest:path} takes the rest of the path: it must be the last"),
        ("/spans/{id:int}", "unknown parameter type 'int' in '{id:int}'"),
        ("/spans/x{id}", "a parameter must be a whole segment, like /spans/{id}; found 'x{id}'"),
        ("/a b", "a route's path cannot hold ' '"),
        ("/caf%C3%A9", "a route's path cannot hold '%' (requests' paths are matched unescaped"),
    ],
)
def test_bad_paths_say_what_is_wrong(path: str, message: str) -> None:
    error = only_error(path=path)
    assert error["loc"] == ("path",)
    assert error["type"] == "route_path"
    assert error["msg"].startswith(message)
    assert error["ctx"]["found"] == repr(path)
    assert "{name}" in error["ctx"]["expected"]


@pytest.mark.parametrize("status", [100, 199, 600, "200", True, 200.5])
def test_statuses_are_answers(status: Any) -> None:
    error = only_error(path="/x", status=status)
    assert (error["loc"], error["type"]) == (("status",), "route_status")
    assert error["ctx"]["expected"].startswith("a whole number from 200 to 599")


@pytest.mark.parametrize("status", [204, 304])
def test_answers_without_a_body_cannot_have_one(status: int) -> None:
    error = only_error(path="/x", status=status, body=None)
    assert (error["loc"], error["msg"]) == (("body",), f"a {status} answer has no body")
    assert route(path="/x", status=status).status == status


def test_header_problems_are_located_at_the_header() -> None:
    found = errors(
        path="/x",
        headers={
            "Content-Length": "3",
            "bad name": "x",
            "X-A": "one",
            "x-a": "two",
            "X-Line": "a\nb",
            "X-T": "{{ nope }}",
        },
    )
    assert [(error["loc"], error["type"]) for error in found] == [
        (("headers", "Content-Length"), "header_name"),
        (("headers", "bad name"), "header_name"),
        (("headers", "x-a"), "header_name"),
        (("headers", "X-Line"), "header_value"),
        (("headers", "X-T"), "template"),
    ]
    assert "the server sets content-length itself" in found[0]["msg"]
    assert "header 'x-a' is given twice (also as 'X-A')" in found[2]["msg"]


def test_template_problems_are_located_at_the_string() -> None:
    found = errors(
        path="/x",
        body={"items": [{"name": "{{ requst.path }}"}, "{{ request.qery.n }}"], "ok": 1},
        set={"n": "{{ vars.count }}", "m": "{% if %}"},
    )
    assert [error["loc"] for error in found] == [
        ("body", "items", 0, "name"),
        ("body", "items", 1),
        ("set", "n"),
        ("set", "m"),
    ]
    assert found[0]["msg"].startswith(
        "unknown name 'requst' in a template (did you mean 'request'?)"
    )
    assert found[1]["msg"].startswith("request has no field 'qery' (did you mean 'query'?)")
    assert found[2]["msg"].startswith("unknown name 'vars' in a template")
    assert found[3]["msg"].startswith("template syntax error")
    assert all(error["type"] == "template" for error in found)
    assert found[0]["ctx"]["found"] == "'{{ requst.path }}'"


def test_templates_may_use_every_route_name() -> None:
    body = {
        "all": "{{ [request.method, request.path, request.params, request.query, request.headers,"
        " request.body, request.json, state, now.iso, uuid(), random(), randint(1, 2),"
        " choice([1])] | length }}"
    }
    assert route(path="/x", body=body).body == body
    assert {"request", "state", "now", "uuid"} <= NAMES


def test_set_keys_are_names_templates_can_read() -> None:
    error = only_error(path="/x", set={"paused-now": True})
    assert (error["loc"], error["type"]) == (("set", "paused-now"), "state_key")


@pytest.mark.parametrize("value", [float("nan"), {"when": __import__("datetime").date(2024, 1, 1)}])
def test_bodies_are_plain_json(value: Any) -> None:
    assert only_error(path="/x", body=value)["type"] == "json_data"


def test_unknown_fields_are_refused() -> None:
    error = only_error(path="/x", reply="hi")
    assert (error["loc"], error["type"]) == (("reply",), "extra_forbidden")


# --- the list ----------------------------------------------------------------------------


def test_check_routes_finds_duplicates_unreachable_routes_and_shadowing() -> None:
    routes = [
        route(path="/spans/{id}"),
        route(path="/spans/latest"),  # never answered: /spans/{id} takes it first
        route(path="/spans/{span}"),  # the same as the first
        route(method="POST", path="/spans/latest"),  # another method: fine
        route(path="/runs/{id}"),  # replay's own GET /runs/{run_id}
        route(method="DELETE", path="/ui/x"),  # replay's own files, any method
        route(method="POST", path="/healthz"),  # replay's GET /healthz only: fine
        route(path="/spans/{id}/children"),  # longer: fine
    ]
    problems = check_routes(routes)
    assert [(p.index, p.field) for p in problems] == [
        (1, "path"),
        (2, "path"),
        (4, "path"),
        (5, "path"),
    ]
    assert problems[0].message == (
        "GET /spans/latest is never answered: routes.0 (GET /spans/{id}) is declared before "
        "it and takes every request it would"
    )
    assert (
        problems[1].message
        == "GET /spans/{span} is declared twice (first as routes.0: GET /spans/{id})"
    )
    assert problems[2].message == (
        "GET /runs/{id} would take requests meant for replay's own route GET /runs/{run_id}"
    )
    assert problems[3].message.endswith("replay's own route * /ui/{path:path}")
    assert problems[2].found == "'/runs/{id}'"
    assert "/trigger/{scenario}" in problems[2].expected


def test_more_specific_routes_declared_first_are_fine() -> None:
    routes = [route(path="/spans/latest"), route(path="/spans/{id}"), route(path="/files/{p:path}")]
    assert check_routes(routes) == []


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/trigger/x",
        "/scenarios",
        "/scenarios/{name}",
        "/ui/{rest:path}",
        "/{anything}",
        "/{all:path}",
    ],
)
def test_a_route_may_not_take_replays_own_requests(path: str) -> None:
    [problem] = check_routes([route(method="GET" if "trigger" not in path else "POST", path=path)])
    assert "would take requests meant for replay's own route" in problem.message


@pytest.mark.parametrize("path", ["/ui", "/healthz/x", "/trigger", "/runs/a/b", "/stream/"])
def test_paths_beside_replays_own_are_fine(path: str) -> None:
    assert check_routes([route(method="POST" if path == "/trigger" else "GET", path=path)]) == []


def test_a_route_list_locates_each_problem_on_its_route() -> None:
    data = {
        "routes": [{"path": "/break"}, {"path": "/break"}, {"path": "/ok"}, {"path": "/scenarios"}]
    }
    with pytest.raises(ValidationError) as raised:
        Protocol.model_validate(data)
    found = raised.value.errors()
    assert [error["loc"] for error in found] == [("routes", 1, "path"), ("routes", 3, "path")]
    assert found[0]["ctx"] == {
        "reason": "GET /break is declared twice (first as routes.0: GET /break)",
        "expected": "each method and path once",
        "found": "'/break'",
    }
    assert Protocol.model_validate({"routes": data["routes"][:1]}).routes[0].key == "GET /break"


def test_the_protocol_file_locates_a_routes_problems() -> None:
    text = (
        "routes:\n  - path: /break\n  - method: fetch\n    path: /chat\n"
        "  - path: /chat\n    body: {reply: '{{ reqest.body }}'}\n"
    )
    loaded = parse_protocol(text, "scenarios/_protocol.yaml")
    assert [str(problem) for problem in loaded.problems] == [
        "scenarios/_protocol.yaml:3:5: routes.1.method: not a method a route can have; "
        "expected GET, POST, PUT, PATCH or DELETE, found 'fetch'",
        "scenarios/_protocol.yaml:6:12: routes.2.body.reply: unknown name 'reqest' in a "
        "template (did you mean 'request'?); templates can use choice, hex, now, randint, random, "
        "request, state, uuid, found '{{ reqest.body }}'",
    ]
    assert [route.key for route in loaded.protocol.routes] == ["GET /break"]


def test_a_route_list_s_problems_are_located_in_the_file() -> None:
    """What a protocol file's parser gets from a RouteList: file:line:column, field."""
    text = "routes:\n  - path: /break\n  - path: /ok\n  - path: /break\n"
    data, here = loader.read_document(text, "scenarios/_protocol.yaml")
    with pytest.raises(ValidationError) as raised:
        Protocol.model_validate(data)
    [problem] = loader.explain(here, raised.value, data)
    assert str(problem) == (
        "scenarios/_protocol.yaml:4:5: routes.2.path: GET /break is declared twice (first as "
        "routes.0: GET /break); expected each method and path once, found '/break'"
    )


def test_own_routes_are_the_applications_routes(tmp_path: Path) -> None:
    app = create_app(Settings(scenarios=tmp_path, isolated=True))
    found: set[tuple[str, str]] = set()
    for own in app.routes:
        if isinstance(own, Mount):
            found.add(("*", own.path + "/{path:path}"))
        elif isinstance(own, StarletteRoute):  # FastAPI's APIRoute is one too
            found.update((method, own.path) for method in own.methods or () if method != "HEAD")
    assert found == set(OWN_ROUTES)


# --- matching ----------------------------------------------------------------------------


def test_find_gives_the_first_declared_route_that_matches_and_its_parameters() -> None:
    routes = [
        route(path="/spans/latest", body=1),
        route(path="/spans/{id}", body=2),
        route(method="POST", path="/spans/{id}", body=3),
        route(path="/files/{rest:path}", body=4),
        route(path="/stream/", body=5),
    ]
    assert find(routes, "GET", "/spans/latest") == (routes[0], {})
    assert find(routes, "GET", "/spans/abc") == (routes[1], {"id": "abc"})
    assert find(routes, "POST", "/spans/abc") == (routes[2], {"id": "abc"})
    assert find(routes, "GET", "/files/a/b.txt") == (routes[3], {"rest": "a/b.txt"})
    assert find(routes, "GET", "/files/") == (routes[3], {"rest": ""})
    assert find(routes, "GET", "/stream/") == (routes[4], {})
    for method, path in [
        ("GET", "/spans"),
        ("GET", "/spans/"),
        ("GET", "/spans/a/b"),
        ("PUT", "/spans/a"),
        ("HEAD", "/spans/a"),
        ("GET", "/stream"),
        ("GET", "/files"),
    ]:
        assert find(routes, method, path) is None, (method, path)


def test_literal_segments_match_exactly() -> None:
    special = route(path="/a.b/(x)+")
    assert find([special], "GET", "/a.b/(x)+") is not None
    assert find([special], "GET", "/aXb/(x)") is None


def test_route_keys() -> None:
    assert is_route_key("POST /chat")
    assert is_route_key("get /")
    assert not is_route_key("CHAT_INPUT")
    assert not is_route_key("POST chat")
    assert not is_route_key("SEND /chat")


def test_declared_reads_the_catalogs_protocol() -> None:
    class Protocol:
        routes = (route(path="/a"),)
        state: ClassVar = {"paused": True}

    class Catalog:
        protocol = Protocol()

    assert [r.key for r in declared(Catalog())] == ["GET /a"]
    assert declared_state(Catalog()) == {"paused": True}
    for nothing in (None, object()):
        assert declared(nothing) == ()
        assert declared_state(nothing) == {}
