"""``GET /metrics``: the server's state in the Prometheus text format.

Counts live where they are made (the managers count frames, bytes and drops; the runner
counts runs); a collector reads them when Prometheus scrapes, so the hot path never
touches a metrics object, except one histogram observation per frame for lateness.

A node of a cluster (``--backplane``) labels every sample with its ``node`` id, and a
worker of ``replay serve --workers N`` with its ``worker`` index too: several processes
answer on one address, and their series must not mix. ``replay_node_info`` says which
process (``pid``) a node is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from replay.runner import RunState

if TYPE_CHECKING:
    from replay.server import Replay

#: What ``GET /metrics`` answers with.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Lateness buckets, in seconds: a frame is on time within a millisecond or two.
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    """One server's metrics registry."""

    def __init__(self, replay: Replay) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StateCollector(replay))
        self.lateness = Histogram(
            "replay_frame_lateness_seconds",
            "How late each frame went out against its deadline.",
            buckets=LATENESS_BUCKETS,
            registry=self.registry,
        )
        replay.runner.on_lateness = self.lateness.observe
        #: The labels every sample carries: the node's id and the worker's index, if any.
        self.labels = node_labels(replay)
        self.exposed: Collector = self.registry
        if self.labels:
            self.registry.register(_NodeInfo())
            self.exposed = _Labelled(self.registry, self.labels)

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.exposed)


def node_labels(replay: Replay) -> dict[str, str]:
    """``node`` (the cluster node's id) and ``worker`` (the index among ``--workers``),
    those that apply; none for a single process."""
    labels = {}
    if replay.node is not None:
        labels["node"] = replay.node.id
    if replay.settings.worker is not None:
        labels["worker"] = str(replay.settings.worker)
    return labels


class _NodeInfo(Collector):
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "replay_node_info",
            "Which process this node is (its labels: node, worker, pid); always 1.",
            labels=["pid"],
        )
        info.add_metric([str(os.getpid())], 1)
        yield info


class _Labelled(Collector):
    """A registry's metrics with constant labels added to every sample (prometheus_client
    has constant labels only as a separate target_info metric, which a query must join)."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self.registry = registry
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [
                sample._replace(labels={**self.labels, **sample.labels})
                for sample in metric.samples
            ]
            yield labelled


class _StateCollector(Collector):
    def __init__(self, replay: Replay) -> None:
        self.replay = replay

    def collect(self) -> Iterator[Metric]:
        managers = self.replay.delivery.managers
        clients = GaugeMetricFamily(
            "replay_clients", "Clients connected, per endpoint.", labels=["endpoint"]
        )
        frames = CounterMetricFamily(
            "replay_frames_sent",
            "Frame copies handed to clients' send queues, per endpoint.",
            labels=["endpoint"],
        )
        sent_bytes = CounterMetricFamily(
            "replay_bytes_sent",
            "Bytes (UTF-8) of the frame copies handed to clients' send queues, per endpoint.",
            labels=["endpoint"],
        )
        drops = CounterMetricFamily(
            "replay_send_queue_drops",
            "Clients dropped because their send queue was full, per endpoint.",
            labels=["endpoint"],
        )
        for endpoint in _endpoints(self.replay):
            # A manager with no client is falsy (len 0): None is the one that is missing.
            manager = managers.get(endpoint)
            if manager is None:  # none made for it yet: nothing to count
                counts = (0, 0, 0, 0)
            else:
                counts = (len(manager), manager.frames_sent, manager.bytes_sent, manager.drops)
            clients.add_metric([endpoint], counts[0])
            for family, count in zip((frames, sent_bytes, drops), counts[1:], strict=True):
                family.add_metric([endpoint], count)
        runner = self.replay.runner
        runs = CounterMetricFamily("replay_runs", "Runs that ended, by state.", labels=["state"])
        for state in (RunState.FINISHED, RunState.FAILED, RunState.CANCELLED):
            runs.add_metric([state.value], runner.ended[state])
        active = GaugeMetricFamily("replay_runs_active", "Runs playing now.", len(runner.active))
        shares = runner.shares()
        by_share = GaugeMetricFamily(
            "replay_runs_active_by_share",
            "Runs playing now, by share: triggered, or started by clients.",
            labels=["share"],
        )
        for share in ("trigger", "client"):
            by_share.add_metric([share], shares[share]["active"])
        runs_refused = CounterMetricFamily(
            "replay_runs_refused",
            "Runs not started because their share was full: triggers (429), all clients' "
            "(skipped), one client's (skipped).",
            labels=["share"],
        )
        for share, count in sorted(runner.refused.items()):
            runs_refused.add_metric([share], count)
        refused = CounterMetricFamily(
            "replay_clients_refused",
            "WebSocket clients refused: Host or origin not allowed, or over the client limit.",
            labels=["reason"],
        )
        for reason, count in sorted(self.replay.refused.items()):
            refused.add_metric([reason], count)
        yield from (
            *_protocol(self.replay),
            clients,
            frames,
            sent_bytes,
            drops,
            runs,
            active,
            by_share,
            runs_refused,
            refused,
        )


def _endpoints(replay: Replay) -> list[str]:
    """The endpoints the per-endpoint series are labelled with: every declared one, from
    the moment it is declared (as 0 until a client connects), then any other that has
    clients now or has counted something (one no longer declared, whose clients stay
    until they leave and whose counters must not vanish). A folder that does not extend
    Schwarm's protocol is not labelled with its two sockets, which it does not serve."""
    declared = list(replay.protocol.endpoints)
    others = [
        endpoint
        for endpoint, manager in replay.delivery.managers.items()
        if endpoint not in replay.protocol.endpoints
        and (len(manager) or manager.frames_sent or manager.drops)
    ]
    return declared + others


def _protocol(replay: Replay) -> Iterator[Metric]:
    """What the server speaks: the protocol's size, and its file's problems."""
    protocol = replay.protocol
    info = GaugeMetricFamily(
        "replay_protocol_info",
        "The protocol served (the scenarios folder's _protocol.yaml, else Schwarm's): what "
        "it extends, and how many endpoints, message types and HTTP routes it declares.",
        labels=["extends", "endpoints", "message_types", "routes"],
    )
    counts = (protocol.endpoints, protocol.message_types, protocol.routes)
    info.add_metric([protocol.extends, *(str(len(part)) for part in counts)], 1)
    found = replay.library.protocol_file
    problems = GaugeMetricFamily(
        "replay_protocol_problems",
        "Problems in the protocol file (0 without one); the parts with problems are not served.",
        len(found.problems) if found else 0,
    )
    yield from (info, problems)
