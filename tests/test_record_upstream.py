"""The upstream's address, request targets on it, and the headers that go on (pure)."""

from __future__ import annotations

import pytest

from replay.record.upstream import (
    Upstream,
    UpstreamInvalid,
    connection_options,
    forwarded,
    is_websocket_upgrade,
    offered_subprotocols,
    query_value,
    split_target,
)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:8000", Upstream(False, "127.0.0.1", 8000)),
        ("wss://api.example.test", Upstream(True, "api.example.test", 443)),
        ("http://localhost/", Upstream(False, "localhost", 80)),
        ("https://h:8443/api/v1/", Upstream(True, "h", 8443, "/api/v1")),
        ("ws://[::1]:9000", Upstream(False, "::1", 9000)),
    ],
)
def test_upstreams_parse(url: str, expected: Upstream) -> None:
    assert Upstream.parse(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://h", "the scheme 'ftp' is not ws or wss"),
        ("127.0.0.1:8000", "is not ws or wss"),
        ("ws://", "it has no host"),
        ("ws://u:p@h", "credentials in the address are not supported"),
        ("ws://h/?a=1", "a query or fragment has no meaning here"),
        ("ws://h:99999", "Port out of range"),
    ],
)
def test_addresses_that_are_not_upstreams_say_why(url: str, reason: str) -> None:
    with pytest.raises(UpstreamInvalid, match=reason) as problem:
        Upstream.parse(url)
    assert "give ws://HOST:PORT" in str(problem.value)


def test_urls_and_targets() -> None:
    upstream = Upstream.parse("wss://h:443/base/")
    assert (upstream.url, upstream.http_url, upstream.netloc) == (
        "wss://h/base",
        "https://h/base",
        "h",
    )
    assert upstream.target("/ws?x=1") == "/base/ws?x=1"
    assert Upstream.parse("ws://[::1]:9").netloc == "[::1]:9"
    assert Upstream.parse("ws://h:81").target("ws") == "/ws"


def test_targets_split_and_queries_read() -> None:
    assert split_target("/ws?a=1&b=2") == ("/ws", "a=1&b=2")
    assert split_target("") == ("/", "")
    assert query_value("a=1&client_id=ui%201", "client_id") == "ui 1"
    assert query_value("a=1", "client_id") is None


def test_hop_by_hop_headers_stay_behind() -> None:
    headers = [
        ("Host", "proxy:8123"),
        ("Connection", "Upgrade, X-Hop"),
        ("Upgrade", "websocket"),
        ("X-Hop", "only this hop"),
        ("Keep-Alive", "5"),
        ("Proxy-Authorization", "Basic x"),
        ("Proxy-Connection", "keep-alive"),
        ("Sec-WebSocket-Key", "k"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("TE", "trailers"),
        ("Authorization", "Bearer t"),
        ("Cookie", "a=b"),
        ("X-Custom", "1"),
    ]
    assert connection_options(headers) == {"upgrade", "x-hop"}
    assert forwarded(headers) == [
        ("Authorization", "Bearer t"),
        ("Cookie", "a=b"),
        ("X-Custom", "1"),
    ]


def test_subprotocols_and_upgrades() -> None:
    headers = [("Sec-WebSocket-Protocol", "chat, superchat"), ("sec-websocket-protocol", "v2")]
    assert offered_subprotocols(headers) == ["chat", "superchat", "v2"]
    assert is_websocket_upgrade("GET", [("Upgrade", "WebSocket")])
    assert is_websocket_upgrade("GET", [("upgrade", "h2c, websocket")])
    assert not is_websocket_upgrade("POST", [("Upgrade", "websocket")])
    assert not is_websocket_upgrade("GET", [("Connection", "close")])
