"""End to end, declared protocols: a folder that is not Schwarm, played to real clients
over real sockets by a real uvicorn on port 0 (see examples/price-feed)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.test_e2e_conversations import TIMEOUT, eventually, http, recv_json, registered, trigger

ROOT = Path(__file__).resolve().parent.parent
PRICE_FEED = ROOT / "examples" / "price-feed"

Serve = Callable[[Path], LiveServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    stops: list[Any] = []

    def start(folder: Path) -> LiveServer:
        live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
        stops.append((server, thread))
        return live

    yield start
    for server, thread in stops:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def price_feed(tmp_path: Path) -> Path:
    folder = tmp_path / "price-feed"
    shutil.copytree(PRICE_FEED, folder)
    return folder


async def test_a_price_feed_plays_in_its_own_envelope(serve: Serve, price_feed: Path) -> None:
    live = serve(price_feed)
    async with connect(f"{live.ws_url}/prices?client_id=desk") as ws:
        await registered(live, ("/prices", "desk"))
        await ws.send(json.dumps({"event": "subscribe", "data": {"symbols": ["ACME", "XYZ"]}}))
        assert await recv_json(ws) == {
            "event": "snapshot",
            "data": {"prices": {"ACME": 100.0, "XYZ": 100.0}},
        }
        status, answer = await trigger(live, "ticks", {"vars": {"symbol": "XYZ"}}, wait=True)
        assert status == 200, answer
        assert await recv_json(ws) == {
            "event": "price_update",
            "data": {"symbol": "XYZ", "price": 101.5},
        }
        assert await recv_json(ws) == {
            "event": "price_update",
            "data": {"symbol": "XYZ", "price": 99.25},
        }
        assert await recv_json(ws) == {"event": "market_closed", "data": {}}


async def test_schwarm_sockets_are_not_served_by_another_protocol(
    serve: Serve, price_feed: Path
) -> None:
    live = serve(price_feed)
    status, body = await http("GET", f"{live.url}/protocol")
    assert status == 200, body
    assert list(body["endpoints"]) == ["/prices"]
    with pytest.raises(InvalidStatus):
        async with connect(f"{live.ws_url}/ws"):
            pass


async def test_a_wrong_payload_is_refused_with_its_location(serve: Serve, price_feed: Path) -> None:
    ticks = price_feed / "ticks.yaml"
    ticks.write_text(ticks.read_text().replace("price: 99.25", "price: -1"))
    live = serve(price_feed)
    status, answer = await trigger(live, "ticks")
    assert status == 422, answer
    [problem] = answer["problems"]
    assert (problem["line"], problem["field"]) == (9, "steps.1.data.price")
    assert "-1 is less than the minimum of 0" in problem["message"]


async def test_a_templated_payload_that_fails_its_schema_fails_the_run(
    serve: Serve, price_feed: Path
) -> None:
    live = serve(price_feed)
    status, answer = await trigger(live, "ticks", {"vars": {"symbol": "lower"}}, wait=True)
    assert status == 500, answer
    assert "fails the price_update schema" in answer["error"]
    assert "'lower' does not match" in answer["error"]


async def test_a_new_endpoint_in_the_protocol_file_is_served_at_once(
    serve: Serve, price_feed: Path
) -> None:
    live = serve(price_feed)
    protocol = price_feed / "_protocol.yaml"
    protocol.write_text(
        protocol.read_text().replace(
            "endpoints:\n", "endpoints:\n  /news:\n    messages: {type: event, payload: data}\n"
        )
    )

    async def served() -> bool:
        status, body = await http("GET", f"{live.url}/protocol")
        return status == 200 and "/news" in body["endpoints"]

    await eventually(served, "the new endpoint declared")
    async with connect(f"{live.ws_url}/news?client_id=reader") as ws:
        await registered(live, ("/news", "reader"))
        await ws.send("not even json")  # heard, ignored, nothing breaks
        await asyncio.wait_for(ws.ping(), TIMEOUT)
