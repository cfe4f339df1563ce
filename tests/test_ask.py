"""Ask and answer across nodes: the asker alone on memory://, then three nodes in this
process (each app in its own TestClient thread) answering GET /clients, /runs,
/runs/{id} and /journal for the cluster, and run control taken on any node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

import replay.backplane.presence as presence_module
from replay.backplane import open_backplane
from replay.backplane.ask import Asker
from replay.backplane.messages import Ask
from replay.server import Settings, create_app
from tests.conftest import LocalClient

#: Seconds a test waits for something that should happen soon.
DEADLINE = 15.0

FIVE = "steps:\n" + "".join(f"  - message: EVENT\n    text: frame {n}\n" for n in range(5))
SLOW = """\
steps:
  - message: EVENT
    text: first
  - sleep: 60s
  - message: EVENT
    text: late
"""


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


# The asker alone.


class Side:
    """One asker on a memory:// backplane, answering ``{"from": its id}``."""

    def __init__(self, url: str, name: str, peers: list[str]) -> None:
        self.backplane = open_backplane(url)
        self.asker = Asker(name, self.backplane.publish, lambda: peers, lambda: True, self.reply)
        self.asked: list[Ask] = []

    async def reply(self, question: Ask) -> tuple[int, dict[str, Any]]:
        self.asked.append(question)
        return 200, {"from": self.asker.node, **question.params}


async def test_an_asker_collects_every_alive_node_and_names_the_silent_one(
    tmp_path: Path,
) -> None:
    url = f"memory://{tmp_path}"
    peers = ["a", "b", "c"]
    sides = [Side(url, name, peers) for name in peers]
    tasks = [asyncio.create_task(s.backplane.listen(s.asker.heard)) for s in sides[:2]]
    try:
        await asyncio.sleep(0)  # the listeners subscribe in their first turn
        assert all(s.backplane.subscribed for s in sides[:2])
        sides[0].asker.wait = 0.3  # c never listens: it cannot answer
        answers = await sides[0].asker.ask("runs", {"x": 1})
        assert {n: a.body for n, a in answers.answers.items()} == {
            "a": {"from": "a", "x": 1},
            "b": {"from": "b", "x": 1},
        }
        assert answers.unanswered == ["c"]
        assert answers.about() == {"nodes": ["a", "b"], "unanswered": ["c"], "cluster": "reachable"}
        assert sides[2].asked == []
    finally:
        for task in tasks:
            task.cancel()


async def test_an_asker_that_cannot_hear_answers_alone_and_says_so() -> None:
    async def reply(question: Ask) -> tuple[int, dict[str, Any]]:
        return 200, {"mine": True}

    async def publish(message: Any) -> None:
        raise AssertionError("nothing is published while the node cannot hear")

    asker = Asker("a", publish, lambda: ["a", "b"], lambda: False, reply)
    answers = await asker.ask("clients")
    assert list(answers.answers) == ["a"]
    about = answers.about()
    assert (about["cluster"], about["unanswered"]) == ("unreachable", ["b"])
    assert "this node's state alone" in about["note"]


# Three nodes in this process.


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "five.yaml").write_text(FIVE)
    (scenarios / "slow.yaml").write_text(SLOW)
    return scenarios


@pytest.fixture
def nodes(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[LocalClient]]:
    """Three nodes on one memory:// backplane, each with one client (client-0, ...),
    once each hears the others."""
    # A node hears one that joined after it at that one's next beat: beats every 0.05 s
    # (not every second) make the wait short; a node is still lost after LOST_AFTER.
    monkeypatch.setattr(presence_module, "BEAT_EVERY", 0.05)
    url = f"memory://{tmp_path}"
    with ExitStack() as stack:
        made = []
        for _ in range(3):
            app = create_app(Settings(scenarios=folder, isolated=True, backplane=url))
            made.append(stack.enter_context(LocalClient(app)))
        for node in made:
            until(lambda node=node: len(node_of(node).peers()) == 3, "not every node heard")
        for n, node in enumerate(made):
            ws = stack.enter_context(node.websocket_connect(f"/ws?client_id=client-{n}"))
            until(lambda node=node: len(node.get("/clients?local=true").json()["clients"]) == 1, "")
            made[n].ws = ws  # type: ignore[attr-defined]
        yield made


def node_of(client: LocalClient) -> Any:
    return client.app.state.replay.node  # type: ignore[attr-defined]


def ids(nodes: list[LocalClient]) -> list[str]:
    return [node_of(n).id for n in nodes]


def test_clients_of_every_node_with_their_node(nodes: list[LocalClient]) -> None:
    a, b, c = ids(nodes)
    answer = nodes[0].get("/clients").json()
    assert sorted((x["client_id"], x["node"]) for x in answer["clients"]) == [
        ("client-0", a),
        ("client-1", b),
        ("client-2", c),
    ]
    assert answer["clients"][0]["node"] == a  # this node's first
    assert (answer["nodes"], answer["unanswered"], answer["cluster"]) == (
        sorted([a, b, c]),
        [],
        "reachable",
    )
    local = nodes[1].get("/clients?local=true").json()
    assert [x["client_id"] for x in local["clients"]] == ["client-1"]
    assert "nodes" not in local


def test_a_run_is_listed_once_on_any_node_with_its_copies_summed(
    nodes: list[LocalClient],
) -> None:
    a, b, c = ids(nodes)
    run = nodes[0].post("/trigger/five?speed=0").json()
    for node in nodes:
        assert [node.ws.receive_json()["message"] for _ in range(5)] == [  # type: ignore[attr-defined]
            f"frame {n}" for n in range(5)
        ]
    for node in nodes:
        until(
            lambda node=node: node_of(node).runner.get(run["run_id"]).done,
            "a copy never ended",
        )
    listed = nodes[1].get("/runs").json()
    (merged,) = [r for r in listed["runs"] if r["run_id"] == run["run_id"]]
    assert (merged["clients"], merged["sent"]) == (3, 3 * run["sent"])
    assert (merged["origin"], merged["origin_lost"]) == (a, False)
    assert sorted(merged["nodes"]) == sorted([a, b, c])
    assert {copy["state"] for copy in merged["nodes"].values()} == {"finished"}
    assert listed["unanswered"] == []
    one = nodes[2].get(f"/runs/{run['run_id']}").json()
    assert (one["clients"], one["origin"], one["answered"]) == (3, a, sorted([a, b, c]))
    local = nodes[2].get(f"/runs/{run['run_id']}?local=true").json()
    assert (local["clients"], "nodes" in local) == (1, False)
    missing = nodes[2].get("/runs/nope")
    assert missing.status_code == 404
    assert missing.json()["answered"] == sorted([a, b, c])


def test_the_journal_of_every_node_by_time_each_entry_with_its_node(
    nodes: list[LocalClient],
) -> None:
    run = nodes[0].post("/trigger/five?speed=0").json()
    for node in nodes:
        for _ in range(5):
            node.ws.receive_json()  # type: ignore[attr-defined]
    journal = nodes[1].get(f"/journal?run={run['run_id']}&direction=sent").json()
    assert sorted({e["node"] for e in journal["entries"]}) == sorted(ids(nodes))
    assert len(journal["entries"]) == 15
    times = [e["time"] for e in journal["entries"]]
    assert times == sorted(times)
    newest = nodes[1].get(f"/journal?run={run['run_id']}&direction=sent&limit=4").json()
    assert newest["entries"] == journal["entries"][-4:]


def test_a_node_that_does_not_answer_is_named_and_nothing_waits_for_it(
    nodes: list[LocalClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c = ids(nodes)
    silent = nodes[2].app.state.replay.views.asker  # type: ignore[attr-defined]
    monkeypatch.setattr(silent, "_answer_later", lambda question: None)
    answer = nodes[0].get("/clients").json()
    assert (answer["nodes"], answer["unanswered"]) == (sorted([a, b]), [c])
    assert sorted(x["client_id"] for x in answer["clients"]) == ["client-0", "client-1"]
    runs = nodes[1].get("/runs").json()
    assert runs["unanswered"] == [c]


def test_a_node_that_cannot_hear_answers_with_its_own_state(
    nodes: list[LocalClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    deaf = nodes[0].app.state.replay.views.asker  # type: ignore[attr-defined]
    monkeypatch.setattr(deaf, "_hears", lambda: False)
    answer = nodes[0].get("/clients")
    assert answer.status_code == 200
    body = answer.json()
    assert [x["client_id"] for x in body["clients"]] == ["client-0"]
    assert body["cluster"] == "unreachable"
    assert sorted(body["unanswered"]) == sorted(ids(nodes)[1:])


def test_run_control_taken_on_any_node_applies_to_every_copy(nodes: list[LocalClient]) -> None:
    started = nodes[0].post("/trigger/slow?wait=false")
    assert started.status_code == 202
    run_id = started.json()["run_id"]
    for node in nodes:
        assert node.ws.receive_json()["message"] == "first"  # type: ignore[attr-defined]
    paused = nodes[1].post(f"/runs/{run_id}/pause")
    assert paused.status_code == 200
    assert {copy["paused"] for copy in paused.json()["nodes"].values()} == {True}
    for node in nodes:
        assert node_of(node).runner.get(run_id).pace.paused
    resumed = nodes[2].post(f"/runs/{run_id}/resume").json()
    assert {copy["paused"] for copy in resumed["nodes"].values()} == {False}
    sped = nodes[2].post(f"/runs/{run_id}/speed?speed=2").json()
    assert {copy["speed"] for copy in sped["nodes"].values()} == {2.0}
    assert nodes[2].post(f"/runs/{run_id}/speed?speed=0").status_code == 422
    cancelled = nodes[2].delete(f"/runs/{run_id}")
    assert cancelled.status_code == 200
    assert {copy["state"] for copy in cancelled.json()["nodes"].values()} == {"cancelled"}
    for node in nodes:
        until(lambda node=node: node_of(node).runner.get(run_id).done, "a copy plays on")
        assert node_of(node).runner.get(run_id).state.value == "cancelled"
    again = nodes[1].delete(f"/runs/{run_id}")
    assert again.status_code == 409
    assert nodes[0].post("/runs/nope/pause").status_code == 404


def test_a_control_on_a_node_without_the_run_is_answered_by_its_owners(
    nodes: list[LocalClient],
) -> None:
    started = nodes[0].post("/trigger/slow?wait=false").json()
    run_id = started["run_id"]
    for node in nodes:
        node.ws.receive_json()  # type: ignore[attr-defined]
    # The third node forgets its copy (as if it had joined after the start).
    runner = node_of(nodes[2]).runner
    runner.cancel(run_id)
    until(lambda: runner.get(run_id).done, "not cancelled")
    runner.forget_finished()
    paused = nodes[2].post(f"/runs/{run_id}/pause")
    assert paused.status_code == 200
    body = paused.json()
    assert body["origin"] == node_of(nodes[0]).id
    assert sorted(body["nodes"]) == sorted(ids(nodes)[:2])
    assert node_of(nodes[0]).runner.get(run_id).pace.paused


def test_reset_clears_every_node(nodes: list[LocalClient]) -> None:
    run_id = nodes[0].post("/trigger/slow?wait=false").json()["run_id"]
    for node in nodes:
        node.ws.receive_json()  # type: ignore[attr-defined]
    done = nodes[1].post("/reset").json()
    assert done["cancelled"] == 3
    assert done["nodes"] == sorted(ids(nodes))
    for node in nodes:
        with pytest.raises(Exception, match="no run with id"):
            node_of(node).runner.get(run_id)
    assert nodes[2].get("/journal?local=true").json()["entries"] == []


async def test_a_node_with_too_many_questions_waiting_answers_503_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[Any] = []
    release, published = asyncio.Event(), asyncio.Event()

    async def slow(question: Ask) -> tuple[int, dict[str, Any]]:
        await release.wait()
        return 200, {}

    async def publish(message: Any) -> None:
        sent.append(message)
        published.set()

    monkeypatch.setattr("replay.backplane.ask.MAX_ANSWERING", 2)
    asker = Asker("b", publish, lambda: ["a", "b"], lambda: True, slow)
    for n in range(3):
        asker.heard(Ask(f"q{n}", "a", "runs"))
    await asyncio.wait_for(published.wait(), DEADLINE)
    assert [(m.id, m.status) for m in sent] == [("q2", 503)]
    assert "answers 2 questions already" in sent[0].body["detail"]
    release.set()
    await asyncio.wait_for(asyncio.gather(*asker._answering), DEADLINE)
    assert sorted((m.id, m.status) for m in sent) == [("q0", 200), ("q1", 200), ("q2", 503)]
