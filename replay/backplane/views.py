"""The whole cluster from any node: ``GET /clients``, ``/runs``, ``/runs/{id}`` and
``/journal`` merged from every node's answer, and run control (``DELETE /runs/{id}``,
pause, resume, step, speed, ``POST /reset``) applied on every node.

Each node answers from its own state (:meth:`Views.answer`); the node taking the request
merges (:func:`merge_runs`, :func:`merge_journal`, ...), and every answer says which
nodes answered (``nodes`` for lists, ``answered`` for one run), which did not
(``unanswered``) and whether the cluster could be asked (``cluster``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from replay.backplane.ask import ANSWER_WAIT, Answers, Asker
from replay.backplane.messages import MAX_ANSWER_BYTES, Answer, Ask
from replay.errors import RunControlRefused, RunNotFound

if TYPE_CHECKING:
    from replay.backplane.node import Node
    from replay.runner import Run
    from replay.server import Replay

#: Run control actions a node applies to its copy of a run.
ACTIONS = ("cancel", "pause", "resume", "step", "speed", "reset")
#: What each node's copy of a run shows in a merged run's ``nodes``.
COPY_FIELDS = ("state", "paused", "speed", "sent", "deliveries", "clients", "max_lateness_s")
#: The journal filters a node applies before answering.
JOURNAL_FILTERS = ("client", "run", "direction", "message_type", "endpoint")


class Views:
    """The cluster's views and run control on one node (see the module's docstring)."""

    def __init__(self, replay: Replay, node: Node, wait: float = ANSWER_WAIT) -> None:
        self.replay = replay
        self.node = node
        self.asker = Asker(
            node.id,
            node.backplane.publish,
            node.peers,
            lambda: node.backplane.subscribed and node.presence.hears,
            self.answer,
            wait,
        )
        node.listeners.append(self.asker.heard)

    # What this node answers.

    async def answer(self, question: Ask) -> tuple[int, dict[str, Any]]:
        """This node's answer to ``question``: its own state (cut to MAX_ANSWER_BYTES)."""
        params = question.params
        if question.what == "clients":
            clients = [{**c.info(), "node": self.node.id} for c in self.replay.delivery.clients()]
            return 200, fit({"clients": clients}, "clients")
        if question.what == "runs":
            runs = [self._summary(run) for run in self.replay.runner.runs()]
            return 200, fit({"runs": runs, "shares": self.replay.runner.shares()}, "runs")
        if question.what == "run":
            try:
                return 200, self._summary(self.replay.runner.get(str(params.get("run_id"))))
            except RunNotFound as error:
                return 404, {"detail": str(error), "run_id": error.run_id}
        if question.what == "journal":
            return 200, self._journal(params)
        if question.what == "control":
            return await self.apply(params)
        return 400, {"detail": f"node {self.node.id} does not know the question {question.what!r}"}

    def _summary(self, run: Run) -> dict[str, Any]:
        # Runs started here without a start command (on-connect runs) are this node's.
        return {**run.summary(), "origin": self.node.origins.get(run.id, self.node.id)}

    def _journal(self, params: Mapping[str, Any]) -> dict[str, Any]:
        filters = {
            name: str(params[name]) for name in JOURNAL_FILTERS if params.get(name) is not None
        }
        limit = params.get("limit")
        entries = self.replay.journal.entries(
            **filters, limit=int(limit) if limit is not None else None
        )
        tagged = [{**entry, "node": self.node.id} for entry in entries]
        body = {"entries": tagged, "forgotten": self.replay.journal.forgotten}
        return fit(body, "entries", keep_tail=True)

    async def apply(self, params: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Apply a run control action to this node's copy of the run (or reset this
        node): the status and body the route would answer on a single process."""
        action = params.get("action")
        run_id = str(params.get("run_id"))
        runner = self.replay.runner
        try:
            if action == "cancel":
                run = runner.get(run_id)
                if run.done:
                    detail = f"run {run_id} has already ended ({run.state})"
                    return 409, {"detail": detail, **self._summary(run)}
                await runner.cancel(run_id).wait()
                return 200, self._summary(run)
            if action == "pause":
                return 200, self._summary(runner.pause(run_id))
            if action == "resume":
                return 200, self._summary(runner.resume(run_id))
            if action == "step":
                run, stepped = await runner.step(run_id)
                return 200, {**self._summary(run), "stepped": stepped}
            if action == "speed":
                return 200, self._summary(runner.set_speed(run_id, float(params["speed"])))
            if action == "reset":
                return 200, await self.replay.reset(bool(params.get("disconnect")))
        except RunNotFound as error:
            return 404, {"detail": str(error), "run_id": error.run_id}
        except RunControlRefused as error:
            return 409, {"detail": str(error), "run_id": error.run_id}
        except (ValueError, KeyError, TypeError) as error:
            return 422, {"detail": str(error)}
        return 422, {"detail": f"unknown run control {action!r}; expected one of {ACTIONS}"}

    # What the node taking a request answers.

    async def clients(self) -> dict[str, Any]:
        """``GET /clients`` for the cluster: every client, with its ``node``."""
        answers = await self.asker.ask("clients")
        clients = [c for a in _in_order(answers, self.node.id) for c in a.body.get("clients", ())]
        return {"clients": clients, **_about(answers)}

    async def runs(self) -> dict[str, Any]:
        """``GET /runs`` for the cluster: one entry per run (see :func:`merge_runs`);
        ``shares`` are this node's."""
        answers = await self.asker.ask("runs")
        lists = {n: list(a.body.get("runs", ())) for n, a in answers.answers.items()}
        shares = answers.answers[self.node.id].body.get("shares", {})
        runs = merge_runs(lists, set(self.node.peers()))
        return {"runs": runs, "shares": shares, **_about(answers)}

    async def run(self, run_id: str) -> tuple[int, dict[str, Any]]:
        """``GET /runs/{id}`` for the cluster: the run merged from every node's copy;
        404 if no node knows it."""
        answers = await self.asker.ask("run", {"run_id": run_id})
        return _one_run(answers, self.node.id, set(self.node.peers()))

    async def journal(self, filters: Mapping[str, Any], limit: int | None) -> dict[str, Any]:
        """``GET /journal`` for the cluster: every node's entries (filtered there), by
        time, the newest ``limit`` of them."""
        params = {k: v for k, v in filters.items() if v is not None}
        if limit is not None:
            params["limit"] = limit
        answers = await self.asker.ask("journal", params)
        lists = {n: list(a.body.get("entries", ())) for n, a in answers.answers.items()}
        return {
            "entries": merge_journal(lists, limit),
            "forgotten": sum(int(a.body.get("forgotten", 0)) for a in answers.answers.values()),
            **_about(answers),
        }

    async def control(
        self, action: str, run_id: str | None = None, **extra: Any
    ) -> tuple[int, dict[str, Any]]:
        """Apply ``action`` here first (its answer and errors are this node's), then on
        every other node's copy; returns the status and body to answer."""
        params = {"action": action, "run_id": run_id, **extra}
        status, body = await self.apply(params)
        if status == 422:
            return status, body  # bad input: the same everywhere, asked of no one
        answers = await self.asker.ask("control", params, local=(status, body))
        if action == "reset":
            return 200, _reset(answers)
        return _one_run(answers, self.node.id, set(self.node.peers()))

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` adds under ``backplane``."""
        presence = self.node.presence
        return {"hears": presence.hears, "nodes": presence.table(presence.clock())}


def fit(body: dict[str, Any], key: str, keep_tail: bool = False) -> dict[str, Any]:
    """``body`` with as many of ``body[key]``'s items as fit in MAX_ANSWER_BYTES (the
    first ones; with ``keep_tail`` the last ones), and ``truncated``: whether any were
    left out."""
    items = body[key]
    rest = len(json.dumps({**body, key: [], "truncated": True}))
    sizes = [len(json.dumps(item)) + 1 for item in items]
    if rest + sum(sizes) <= MAX_ANSWER_BYTES:
        return {**body, "truncated": False}
    order = range(len(items) - 1, -1, -1) if keep_tail else range(len(items))
    total, kept = rest, 0
    for index in order:
        if total + sizes[index] > MAX_ANSWER_BYTES:
            break
        total += sizes[index]
        kept += 1
    chosen = items[len(items) - kept :] if keep_tail else items[:kept]
    return {**body, key: chosen, "truncated": True}


def merge_run(copies: Mapping[str, Mapping[str, Any]], alive: Collection[str]) -> dict[str, Any]:
    """One run from each node's copy of it (by node id): the fields of the copy on its
    ``origin`` (the node that took the trigger; if it did not answer, any copy), with
    ``sent``, ``deliveries`` and ``clients`` summed over the copies, ``nodes``: each
    copy's state and counts, and ``origin_lost``: whether the origin is no longer alive."""
    origin = next((c["origin"] for c in copies.values() if c.get("origin")), None)
    base = copies.get(origin) if origin is not None else None
    if base is None:
        base = copies[min(copies)]
    merged = dict(base)
    for count in ("sent", "deliveries", "clients"):
        merged[count] = sum(int(copy.get(count) or 0) for copy in copies.values())
    merged["nodes"] = {
        node: {name: copy.get(name) for name in COPY_FIELDS}
        for node, copy in sorted(copies.items())
    }
    merged["origin"] = origin
    merged["origin_lost"] = origin is not None and origin not in alive
    return merged


def merge_runs(
    lists: Mapping[str, list[dict[str, Any]]], alive: Collection[str]
) -> list[dict[str, Any]]:
    """Every run of every node's list, once (runs share their id across nodes: see
    :func:`merge_run`), newest first."""
    by_id: dict[str, dict[str, dict[str, Any]]] = {}
    for node, runs in lists.items():
        for run in runs:
            by_id.setdefault(str(run["run_id"]), {})[node] = run
    merged = [merge_run(copies, alive) for copies in by_id.values()]
    merged.sort(key=lambda run: run.get("started_at") or 0.0, reverse=True)
    return merged


def merge_journal(
    lists: Mapping[str, list[dict[str, Any]]], limit: int | None
) -> list[dict[str, Any]]:
    """Every node's entries (each with its ``node``) by time, oldest first; the newest
    ``limit`` if given."""
    entries = [entry for node in sorted(lists) for entry in lists[node]]
    entries.sort(key=lambda e: (e.get("time") or 0.0, str(e.get("node")), e.get("seq") or 0))
    return entries[-limit:] if limit else entries


def _about(answers: Answers) -> dict[str, Any]:
    """Who answered a list question: a node that answered with an error (say it was too
    busy) is unanswered too, its reason in ``errors``."""
    about = answers.about()
    errors = {n: a.body.get("detail") for n, a in answers.answers.items() if a.status != 200}
    about["nodes"] = [n for n in about["nodes"] if n not in errors]
    about["unanswered"] = sorted([*about["unanswered"], *errors])
    truncated = sorted(n for n, a in answers.answers.items() if a.body.get("truncated"))
    return {**about, "truncated": truncated, "errors": errors}


def _in_order(answers: Answers, me: str) -> list[Answer]:
    """This node's answer first, then the others' by node id."""
    mine = answers.answers[me]
    return [mine, *(answers.answers[n] for n in sorted(answers.answers) if n != me)]


def _one_run(answers: Answers, me: str, alive: Collection[str]) -> tuple[int, dict[str, Any]]:
    """The merged answer about one run: 200 with the run merged from every node holding
    a copy; else the first refusal (409) or this node's 404."""
    about = answers.about()
    about["answered"] = about.pop("nodes")
    copies = {n: a.body for n, a in answers.answers.items() if 200 <= a.status < 300}
    if copies:
        merged = merge_run(copies, alive)
        mine = answers.answers[me].body
        if "stepped" in mine:
            merged["stepped"] = mine["stepped"]
        refused = {n: a.body for n, a in answers.answers.items() if a.status == 409}
        for node, body in refused.items():  # a copy that had already ended there
            merged["nodes"][node] = {name: body.get(name) for name in COPY_FIELDS}
        return 200, {**merged, **about}
    for node in [me, *sorted(answers.answers)]:
        answer = answers.answers[node]
        if answer.status != 404:
            return answer.status, {**answer.body, **about}
    return 404, {**answers.answers[me].body, **about}


def _reset(answers: Answers) -> dict[str, Any]:
    totals = {
        name: sum(int(a.body.get(name, 0)) for a in answers.answers.values() if a.status == 200)
        for name in ("cancelled", "forgotten", "disconnected")
    }
    return {**totals, **answers.about()}
