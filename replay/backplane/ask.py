"""Ask and answer across nodes: one node asks a question of every node alive, each
answers from its own state, and the asker takes what came within :data:`ANSWER_WAIT`.

Nothing hangs and no node is silently dropped: :class:`Answers` says who answered, who
did not (``unanswered``), and whether the cluster could be asked at all (a node that
cannot hear the backplane answers from its own state alone, saying so).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from replay.backplane.messages import Answer, Ask, Message

log = logging.getLogger("replay.backplane")

#: Seconds a node waits for the other nodes' answers.
ANSWER_WAIT = 1.0
#: Questions another node may have waiting for answers from this one at once; one more
#: is answered 503 (a flood of questions must not pile up work).
MAX_ANSWERING = 64

#: What answers a question on this node: its status and body.
Answerer = Callable[[Ask], Awaitable[tuple[int, dict[str, Any]]]]


@dataclass
class Answers:
    """Each node's answer to one question (this node's included), by node id."""

    answers: dict[str, Answer] = field(default_factory=dict)
    #: The nodes alive when asked that did not answer within ANSWER_WAIT.
    unanswered: list[str] = field(default_factory=list)
    #: False when the backplane could not be used: only this node answered.
    reachable: bool = True

    def about(self) -> dict[str, Any]:
        """The fields every cluster-wide answer carries."""
        about: dict[str, Any] = {
            "nodes": sorted(self.answers),
            "unanswered": sorted(self.unanswered),
            "cluster": "reachable" if self.reachable else "unreachable",
        }
        if not self.reachable:
            about["note"] = (
                "the other nodes could not be asked (this node does not hear the backplane "
                "now): this is this node's state alone"
            )
        return about


class Asker:
    """Asks the cluster (see the module's docstring) and answers its questions."""

    def __init__(
        self,
        node: str,
        publish: Callable[[Message], Awaitable[None]],
        peers: Callable[[], list[str]],
        hears: Callable[[], bool],
        answer: Answerer,
        wait: float = ANSWER_WAIT,
    ) -> None:
        self.node = node
        self._publish = publish
        self._peers = peers
        self._hears = hears
        self._answer = answer
        self.wait = wait
        self._waiting: dict[str, tuple[Answers, set[str], asyncio.Event]] = {}
        self._answering: set[asyncio.Task[None]] = set()

    async def ask(
        self,
        what: str,
        params: dict[str, Any] | None = None,
        local: tuple[int, dict[str, Any]] | None = None,
    ) -> Answers:
        """Every alive node's answer to ``what``; this node's is ``local`` if given (an
        action already taken here), else computed here as the others compute theirs."""
        question = Ask(uuid.uuid4().hex[:12], self.node, what, dict(params or {}))
        answers = Answers()
        expected = {n for n in self._peers() if n != self.node}
        done = asyncio.Event()
        if expected and self._hears():
            self._waiting[question.id] = (answers, expected, done)
            try:
                await self._publish(question)
            except Exception as error:  # the backplane's fault: this node's state alone
                log.debug("question %s not asked: %r", question.id, error)
                self._waiting.pop(question.id, None)
                answers.reachable = False
        elif expected:
            answers.reachable = False
        status, body = local if local is not None else await self._answer(question)
        answers.answers[self.node] = Answer(question.id, self.node, self.node, status, body)
        if question.id in self._waiting:
            try:
                await asyncio.wait_for(done.wait(), self.wait)
            except TimeoutError:
                pass
            finally:
                self._waiting.pop(question.id, None)
            answers.unanswered = sorted(expected - set(answers.answers))
        elif not answers.reachable:
            answers.unanswered = sorted(expected)
        return answers

    def heard(self, message: Message) -> None:
        """A question or answer heard on the backplane."""
        if isinstance(message, Ask):
            if message.origin != self.node:
                self._answer_later(message)
        elif isinstance(message, Answer) and message.to == self.node:
            waiting = self._waiting.get(message.id)
            if waiting is None:
                return  # too late: that question was answered without it
            answers, expected, done = waiting
            answers.answers[message.node] = message
            if expected <= set(answers.answers):
                done.set()

    def _answer_later(self, question: Ask) -> None:
        if len(self._answering) >= MAX_ANSWERING:
            body = {"detail": f"node {self.node} answers {MAX_ANSWERING} questions already"}
            self._spawn(self._send(question, 503, body))
            return
        self._spawn(self._reply(question))

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.create_task(run(), name="replay-backplane-answer")
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _reply(self, question: Ask) -> None:
        try:
            status, body = await self._answer(question)
        except Exception as error:  # a node's bug must not stop it answering the next
            log.exception("node %s could not answer %s", self.node, question.what)
            status, body = 500, {"detail": f"node {self.node} failed to answer: {error!r}"}
        await self._send(question, status, body)

    async def _send(self, question: Ask, status: int, body: dict[str, Any]) -> None:
        try:
            await self._publish(Answer(question.id, question.origin, self.node, status, body))
        except Exception as error:  # the asker lists this node as unanswered
            log.debug("answer to %s not sent: %r", question.id, error)

    def close(self) -> None:
        for task in list(self._answering):
            task.cancel()
