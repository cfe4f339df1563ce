"""GET /metrics: the Prometheus text format, parsed back, after real runs through the app."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from replay import client as client_module
from replay.library import PROTOCOL_FILE
from replay.metrics import LATENESS_BUCKETS
from replay.server import Replay, Settings, create_app
from tests.conftest import SHIPPED, LocalClient
from tests.fakes import FakeWebSocket
from tests.protocols import write_protocol

MESSAGES = [
    '{"message_type":"CHAT_REQUESTED","message":"Test chat request"}',
    '{"message_type":"IS_WAITING","message":"Waiting for user input"}',
    '{"message_type":"EVENT","message":"Test event message"}',
    '{"message_type":"PAUSE_STATUS","message":"System paused"}',
]
OWN = {
    "private": "steps:\n  - message: EVENT\n    text: psst\n    to: sender\n",
    "ticker": "steps:\n  - repeat: forever\n    steps:\n      - chunk: tick\n        delay: 1s\n",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Each family's type, and every sample by (name, sorted labels)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """messages.yaml as shipped, a scenario that fails, and one that plays forever."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    shutil.copy(SHIPPED / "messages.yaml", folder / "messages.yaml")
    for name, text in OWN.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


@pytest.fixture
def client(folder: Path) -> Iterator[TestClient]:
    with LocalClient(create_app(Settings(scenarios=folder, isolated=True))) as test_client:
        yield test_client


def scrape(client: TestClient) -> tuple[dict[str, str], Samples]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    return parse(answer.text)


def test_metrics_of_a_fresh_server(client: TestClient) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "version=0.0.4" in answer.headers["content-type"]
    types, samples = parse(answer.text)
    assert (
        types.items()
        >= {
            "replay_clients": "gauge",
            "replay_frames_sent": "counter",
            "replay_bytes_sent": "counter",
            "replay_send_queue_drops": "counter",
            "replay_runs": "counter",
            "replay_runs_active": "gauge",
            "replay_runs_active_by_share": "gauge",
            "replay_runs_refused": "counter",
            "replay_frame_lateness_seconds": "histogram",
        }.items()
    )
    for endpoint in ("/ws", "/ws/stream"):
        assert value(samples, "replay_clients", endpoint=endpoint) == 0
        assert value(samples, "replay_frames_sent_total", endpoint=endpoint) == 0
        assert value(samples, "replay_bytes_sent_total", endpoint=endpoint) == 0
        assert value(samples, "replay_send_queue_drops_total", endpoint=endpoint) == 0
    for state in ("finished", "failed", "cancelled"):
        assert value(samples, "replay_runs_total", state=state) == 0
    assert value(samples, "replay_runs_active") == 0
    for share in ("trigger", "client"):
        assert value(samples, "replay_runs_active_by_share", share=share) == 0
    for share in ("trigger", "clients", "client"):
        assert value(samples, "replay_runs_refused_total", share=share) == 0
    assert value(samples, "replay_frame_lateness_seconds_count") == 0


def test_metrics_after_a_run_to_a_client(client: TestClient) -> None:
    with client.websocket_connect("/ws") as ws:
        answer = client.post("/trigger/messages?speed=0")
        assert answer.json()["status"] == "success"
        assert [ws.receive_text() for _ in MESSAGES] == MESSAGES
        _, samples = scrape(client)
        assert value(samples, "replay_clients", endpoint="/ws") == 1
        assert value(samples, "replay_clients", endpoint="/ws/stream") == 0
    assert value(samples, "replay_frames_sent_total", endpoint="/ws") == 4
    assert value(samples, "replay_frames_sent_total", endpoint="/ws/stream") == 0
    sent_bytes = sum(len(frame.encode()) for frame in MESSAGES)
    assert value(samples, "replay_bytes_sent_total", endpoint="/ws") == sent_bytes
    assert value(samples, "replay_bytes_sent_total", endpoint="/ws/stream") == 0
    assert value(samples, "replay_runs_total", state="finished") == 1
    assert value(samples, "replay_runs_total", state="failed") == 0
    assert value(samples, "replay_runs_active") == 0
    assert value(samples, "replay_frame_lateness_seconds_count") == 4
    assert value(samples, "replay_frame_lateness_seconds_bucket", le="+Inf") == 4
    assert value(samples, "replay_frame_lateness_seconds_sum") >= 0
    buckets = [
        value(samples, "replay_frame_lateness_seconds_bucket", le=str(bound))
        for bound in LATENESS_BUCKETS
    ]
    assert buckets == sorted(buckets)  # cumulative
    # The client has gone: the gauge follows, the counters do not.
    _, after = scrape(client)
    assert value(after, "replay_clients", endpoint="/ws") == 0
    assert value(after, "replay_frames_sent_total", endpoint="/ws") == 4


def test_frames_count_once_per_client_copy(client: TestClient) -> None:
    with client.websocket_connect("/ws"), client.websocket_connect("/ws"):
        client.post("/trigger/messages?speed=0")
        _, samples = scrape(client)
    assert value(samples, "replay_frames_sent_total", endpoint="/ws") == 8
    assert value(samples, "replay_frame_lateness_seconds_count") == 4  # per frame, not copy


def test_a_run_without_clients_sends_no_copies_but_is_late_or_not(client: TestClient) -> None:
    client.post("/trigger/messages?speed=0")
    _, samples = scrape(client)
    assert value(samples, "replay_frames_sent_total", endpoint="/ws") == 0
    assert value(samples, "replay_frame_lateness_seconds_count") == 4
    assert value(samples, "replay_runs_total", state="finished") == 1


def test_a_failed_run_counts_as_failed(client: TestClient) -> None:
    answer = client.post("/trigger/private?speed=0")
    assert answer.status_code == 500
    _, samples = scrape(client)
    assert value(samples, "replay_runs_total", state="failed") == 1
    assert value(samples, "replay_runs_total", state="finished") == 0
    assert value(samples, "replay_runs_active") == 0


def test_active_and_cancelled_runs(client: TestClient) -> None:
    started = client.post("/trigger/ticker?wait=false")
    assert started.status_code == 202
    _, samples = scrape(client)
    assert value(samples, "replay_runs_active") == 1
    assert value(samples, "replay_runs_active_by_share", share="trigger") == 1
    assert value(samples, "replay_runs_active_by_share", share="client") == 0
    assert value(samples, "replay_runs_total", state="cancelled") == 0
    assert client.delete(started.json()["url"]).json()["state"] == "cancelled"
    _, samples = scrape(client)
    assert value(samples, "replay_runs_active") == 0
    assert value(samples, "replay_runs_total", state="cancelled") == 1


async def test_a_client_dropped_for_a_full_queue_is_counted(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "CLOSE_GRACE", 0.01)
    replay = Replay(Settings(scenarios=folder, isolated=True, queue_size=1))
    stalled = FakeWebSocket(stalled=True)
    await replay.stream.connect(stalled)  # type: ignore[arg-type]
    for n in range(3):  # one frame in the writer, one queued, one too many
        replay.stream.broadcast(f"chunk {n} " + "." * 2048)  # at least 1 KiB: the bound
        for _ in range(10):
            await asyncio.sleep(0)
    _, samples = parse(replay.metrics.render().decode())
    assert value(samples, "replay_send_queue_drops_total", endpoint="/ws/stream") == 1
    assert value(samples, "replay_send_queue_drops_total", endpoint="/ws") == 0
    assert value(samples, "replay_clients", endpoint="/ws/stream") == 0
    assert value(samples, "replay_frames_sent_total", endpoint="/ws/stream") == 2
    # The dropped client's connection is cut after the grace period (abort() says so).
    assert await asyncio.wait_for(stalled.incoming.get(), 5) == {
        "type": "websocket.disconnect",
        "code": 1006,
    }
    assert stalled.aborted


async def test_each_server_has_its_own_registry(folder: Path) -> None:
    first = Replay(Settings(scenarios=folder, isolated=True))
    second = Replay(Settings(scenarios=folder, isolated=True))
    await first.messages.connect(FakeWebSocket())  # type: ignore[arg-type]
    first.messages.broadcast("x")
    first.metrics.lateness.observe(0.001)
    _, one = parse(first.metrics.render().decode())
    _, two = parse(second.metrics.render().decode())
    assert value(one, "replay_frames_sent_total", endpoint="/ws") == 1
    assert value(two, "replay_frames_sent_total", endpoint="/ws") == 0
    assert value(one, "replay_frame_lateness_seconds_count") == 1
    assert value(two, "replay_frame_lateness_seconds_count") == 0
    assert second.metrics.render().startswith(b"# HELP")


async def test_a_worker_labels_every_sample_with_its_node_and_index(folder: Path) -> None:
    replay = Replay(
        Settings(scenarios=folder, isolated=True, backplane="memory://metrics", worker=1)
    )
    assert replay.node is not None
    replay.metrics.lateness.observe(0.001)
    types, samples = parse(replay.metrics.render().decode())
    assert len(samples) > 20
    for _, labels in samples:
        assert ("node", replay.node.id) in labels
        assert ("worker", "1") in labels
    assert types["replay_node_info"] == "gauge"
    info = {"node": replay.node.id, "worker": "1", "pid": str(os.getpid())}
    assert value(samples, "replay_node_info", **info) == 1
    assert value(samples, "replay_frame_lateness_seconds_count", node=replay.node.id, worker="1")


def test_a_node_alone_is_labelled_with_its_id_and_a_single_server_not_at_all(
    folder: Path,
) -> None:
    node = Replay(Settings(scenarios=folder, isolated=True, backplane="memory://alone"))
    assert node.node is not None
    _, samples = parse(node.metrics.render().decode())
    assert all(dict(labels).get("node") == node.node.id for _, labels in samples)
    assert not any("worker" in dict(labels) for _, labels in samples)
    single = Replay(Settings(scenarios=folder, isolated=True))
    types, samples = parse(single.metrics.render().decode())
    assert "replay_node_info" not in types
    assert not any("node" in dict(labels) for _, labels in samples)


PRICE_FEED = SHIPPED.parent / "examples" / "price-feed"
#: The price feed with a second endpoint declared.
ORDERS = """
  /orders:
    description: orders in, fills out
    messages: {type: event, payload: data}
"""


@pytest.fixture
def price_feed(tmp_path: Path) -> Path:
    """A copy of examples/price-feed: a declared protocol that is not Schwarm."""
    folder = tmp_path / "price-feed"
    shutil.copytree(PRICE_FEED, folder)
    return folder


def info(samples: Samples) -> dict[str, str]:
    """The labels of the one replay_protocol_info sample (whose value is 1)."""
    [labels] = [dict(key[1]) for key in samples if key[0] == "replay_protocol_info"]
    assert samples[("replay_protocol_info", tuple(sorted(labels.items())))] == 1
    return labels


def endpoints(samples: Samples, name: str = "replay_clients") -> dict[str, float]:
    """A per-endpoint series' values, by endpoint."""
    return {dict(key[1])["endpoint"]: got for key, got in samples.items() if key[0] == name}


def test_the_protocol_served_is_described(client: TestClient) -> None:
    types, samples = scrape(client)
    assert types["replay_protocol_info"] == "gauge"
    # No protocol file: Schwarm's, as the seed spoke it.
    assert info(samples) == {
        "extends": "schwarm",
        "endpoints": "2",
        "message_types": "10",
        "routes": "0",
    }
    assert value(samples, "replay_protocol_problems") == 0
    with LocalClient(create_app(Settings(scenarios=SHIPPED, isolated=True))) as shipped:
        _, samples = scrape(shipped)
    assert info(samples) == {
        "extends": "schwarm",
        "endpoints": "2",
        "message_types": "10",
        "routes": "8",
    }


def test_declared_endpoints_are_counted_from_the_moment_they_are_declared(
    price_feed: Path,
) -> None:
    with LocalClient(create_app(Settings(scenarios=price_feed, isolated=True))) as client:
        _, samples = scrape(client)
        assert info(samples) == {
            "extends": "none",
            "endpoints": "1",
            "message_types": "4",
            "routes": "0",
        }
        # Only what is served: Schwarm's sockets are not, and never had a client.
        for series in ("replay_clients", "replay_frames_sent_total", "replay_bytes_sent_total"):
            assert endpoints(samples, series) == {"/prices": 0}
        assert endpoints(samples, "replay_send_queue_drops_total") == {"/prices": 0}

        # Declared: counted at the next scrape, before any client connects to it.
        text = (price_feed / PROTOCOL_FILE).read_text()
        write_protocol(price_feed, text.replace("\nmessage_types:", ORDERS + "\nmessage_types:"))
        _, samples = scrape(client)
        assert endpoints(samples) == {"/prices": 0, "/orders": 0}
        assert endpoints(samples, "replay_frames_sent_total") == {"/prices": 0, "/orders": 0}
        assert info(samples)["endpoints"] == "2"
        with client.websocket_connect("/orders"):
            _, samples = scrape(client)
            assert endpoints(samples) == {"/prices": 0, "/orders": 1}
            # No longer declared: its client stays until it leaves, and is counted.
            write_protocol(price_feed, text)
            _, samples = scrape(client)
            assert endpoints(samples) == {"/prices": 0, "/orders": 1}
            assert info(samples)["endpoints"] == "1"
        _, samples = scrape(client)
        assert endpoints(samples) == {"/prices": 0}


def test_a_broken_protocol_file_counts_its_problems(price_feed: Path) -> None:
    text = (price_feed / PROTOCOL_FILE).read_text()
    broken = text.replace("sent_by: client", "sent_by: nobody").replace(
        "payload: data", "payload: ''"
    )
    write_protocol(price_feed, broken)
    with LocalClient(create_app(Settings(scenarios=price_feed, isolated=True))) as client:
        _, samples = scrape(client)
        problems = client.get("/protocol").json()["problems"]
        assert len(problems) >= 2
        assert value(samples, "replay_protocol_problems") == len(problems)
        write_protocol(price_feed, text)
        _, samples = scrape(client)
        assert value(samples, "replay_protocol_problems") == 0
