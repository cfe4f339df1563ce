"""A cluster node: takes triggers for the whole cluster, and plays every trigger heard.

The run moves to the sockets, not every frame: the node that takes a trigger publishes
one :class:`StartCommand` (the scenario's sources, variables, seed, speed, client, run
id and a wall-clock start a little ahead), and every node, itself included, plays it to
its own clients from that moment, under the same run id. Each frame then costs no broker
hop; nodes agree on timing as far as their clocks agree.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from replay.backplane.command import (
    MAX_START_BYTES,
    SourceFile,
    StartCommand,
    bytes_of,
    text_of,
)
from replay.backplane.heard import HeardFrame, HeardState, Shared
from replay.backplane.interface import Backplane
from replay.backplane.messages import Beat, Message
from replay.backplane.presence import Presence
from replay.catalog import Catalog
from replay.engine import check_vars
from replay.errors import BackplaneUnreachable, ReplayError, ScenarioInvalid, StartTooLarge
from replay.library import PROTOCOL_FILE, read_source
from replay.loader import ScenarioFile, parse_scenario
from replay.mailbox import MAX_FRAMES
from replay.matching import ClientFrame
from replay.protocol.declaration import Protocol
from replay.protocol.file import parse_protocol
from replay.protocol.schwarm import SCHWARM
from replay.runner import Run, Runner
from replay.timeline import check_speed

log = logging.getLogger("replay.backplane")

#: Seconds between a trigger and the wall-clock moment every node starts its run: time
#: for the command to reach the nodes (and for them to read the sources).
START_DELAY = 0.05
#: Bytes of scenario source a node parses in a second, taken low (a quiet 2-core machine
#: parses about 1.5 MB a second): a large scenario starts that much later, so that every
#: node has parsed it by its start (see start_delay).
PARSE_RATE = 1_000_000
#: Seconds the node taking a trigger waits to hear its own command before answering 503.
HEAR_TIMEOUT = 5.0
#: A command heard this many seconds after its start is not played (the node was cut
#: off): better no run than one far behind the others.
MAX_LATE = 10.0
#: Catalogs made from start commands' sources, kept for the next trigger of the same
#: version (parsing a converted recording takes seconds).
KEEP_CATALOGS = 8
#: Seconds a starting node waits for the backplane before serving without it.
JOIN_TIMEOUT = 3.0
#: Client frames a node may hold waiting to be shared (Redis slow or unreachable); one
#: beyond that is not shared (counted in ``Node.unshared``): a client's reader never waits.
MAX_UNSHARED = 10_000
#: Runs whose origin (the node that took the trigger) a node remembers.
KEEP_ORIGINS = 10_000


class Node:
    """One node of a cluster: its runner, and the backplane it hears triggers on."""

    def __init__(
        self,
        backplane: Backplane,
        runner: Runner,
        folder: Path,
        base: Protocol = SCHWARM,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backplane = backplane
        self.runner = runner
        self.folder = folder
        self.base = base
        #: This node's name in start commands (``origin``).
        self.id = uuid.uuid4().hex[:8]
        #: Triggers taken here and not yet heard back: their catalog, and who waits.
        self._pending: dict[str, tuple[Catalog, asyncio.Future[Run]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listening: asyncio.Task[None] | None = None
        self._catalogs: OrderedDict[str, Catalog] = OrderedDict()
        #: Client frames of this node's clients, numbered, waiting to be shared in order.
        self._outbox: deque[Shared] = deque()
        self._outbox_ready = asyncio.Event()
        self._shared = 0
        #: Frames not shared: the outbox was full, or the backplane refused them.
        self.unshared = 0
        self._sharing_fails = False
        self._sharing: asyncio.Task[None] | None = None
        #: The last frame heard from each other node (its ``seq``): one heard twice is
        #: given to the runs once.
        self._last_seq: dict[str, int] = {}
        #: Runs heard and not started yet (they start at ``start_at``), and the client
        #: frames heard meanwhile: given to the run as it starts, as every node does.
        self._starting: dict[str, list[ClientFrame]] = {}
        #: Called with ``(changes, by)`` for each state change another node shared (see
        #: :meth:`share_state`); the server applies it to its state.
        self.on_state: Callable[[Mapping[str, Any], str], None] | None = None
        #: The folder's catalog if no file changed since it was read, else None (the
        #: server's ScenarioLibrary.current): sources read while it holds are the texts
        #: that catalog was made from, so this node need not parse them again.
        self.unchanged: Callable[[], Catalog | None] = lambda: None
        #: The nodes alive, from this node's hearing (see replay.backplane.presence).
        self.presence = Presence(
            self.id,
            backplane.publish,
            lambda: backplane.subscribed,
            self._counts,
            runner.feed,
            clock,
        )
        self._beating: asyncio.Task[None] | None = None
        #: The node that took each run's trigger, by run id (the newest KEEP_ORIGINS).
        self.origins: OrderedDict[str, str] = OrderedDict()
        #: Called with every question and answer heard (see replay.backplane.views).
        self.listeners: list[Callable[[Message], None]] = []

    def _counts(self) -> tuple[int, int]:
        """This node's clients and active runs, for its beats."""
        clients = self.runner.delivery.clients
        # A test's stand-in delivery may hold no clients to count.
        return (len(clients()) if callable(clients) else 0), len(self.runner.active)

    def peers(self) -> list[str]:
        """The ids of the nodes alive, this one first (see replay.backplane.presence)."""
        return self.presence.alive()

    async def join(self) -> None:
        """Start hearing triggers, and wait (JOIN_TIMEOUT at most) until the backplane
        hears: a node that has just started takes triggers. An unreachable backplane is
        logged, not raised: the node serves its clients, and joins when it can."""
        self._listening = asyncio.create_task(
            self.backplane.listen(self._heard), name="replay-backplane-listen"
        )
        self._sharing = asyncio.create_task(self._share_frames(), name="replay-backplane-share")
        self._beating = asyncio.create_task(self.presence.run(), name="replay-backplane-beat")
        # The backplane says whether it hears, with no event to wait on: look every 10 ms.
        for _ in range(int(JOIN_TIMEOUT / 0.01)):
            if self.backplane.subscribed:
                break
            await asyncio.sleep(0.01)
        if self.backplane.subscribed:
            log.info("node %s joined the cluster on %s", self.id, self.backplane.url)
        else:
            log.warning(
                "node %s: the backplane %s does not answer yet; triggers answer 503 until it does",
                self.id,
                self.backplane.url,
            )

    async def close(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            await self.presence.leave()  # a clean goodbye: node.left, not node.lost
        for task in [self._listening, self._sharing, *self._tasks]:
            if task is not None:
                task.cancel()
        await self.backplane.close()

    async def trigger(
        self,
        name: str,
        catalog: Catalog,
        *,
        speed: float = 1.0,
        seed: int | None = None,
        vars: Mapping[str, Any] | None = None,
        client: str | None = None,
    ) -> Run:
        """Start ``name`` (as ``catalog`` has it) on every node; return this node's run.

        Raises what :meth:`Runner.start` raises, StartTooLarge, and BackplaneUnreachable
        (within seconds) when the cluster cannot hear it."""
        check_speed(speed)
        self.runner.admit()  # a full share refuses here, not after the others play it
        values = dict(vars or {})
        catalog.scenario(name)  # ScenarioNotFound, ScenarioInvalid: before reading anything
        files, protocol = await asyncio.to_thread(self._sources, name, catalog)
        ours = await self._catalog(files, protocol, catalog)
        ours.scenario(name)  # changed on disk since: the version read now must be valid
        check_vars(name, ours, values)
        command = StartCommand(
            run_id=uuid.uuid4().hex[:12],
            scenario=name,
            files=files,
            protocol=protocol,
            vars=values,
            seed=seed if seed is not None else random.SystemRandom().randrange(2**32),
            speed=speed,
            client=client,
            started_by="trigger",
            start_at=time.time() + start_delay(files, protocol),
            origin=self.id,
        )
        return await self._publish(command, ours)

    async def react(
        self, name: str, catalog: Catalog, frame: ClientFrame, *, speed: float = 1.0
    ) -> Run:
        """Start the reaction ``name`` to ``frame`` (a client of this node sent it, and no
        run took it) on every node, once for the cluster: only the node holding the
        client reacts, and every node plays it under one run id, with ``sender`` and
        ``received`` as the client and its frame. Raises what :meth:`trigger` raises."""
        self.runner.admit("reaction", frame.client)
        files, protocol = await asyncio.to_thread(self._sources, name, catalog)
        ours = await self._catalog(files, protocol, catalog)
        ours.scenario(name)
        command = StartCommand(
            run_id=uuid.uuid4().hex[:12],
            scenario=name,
            files=files,
            protocol=protocol,
            vars={},
            seed=random.SystemRandom().randrange(2**32),
            speed=speed,
            client=None,
            started_by="reaction",
            start_at=time.time() + start_delay(files, protocol),
            origin=self.id,
            sender=frame.client,
            received={
                "client": frame.client,
                "text": frame.text,
                "endpoint": frame.endpoint,
                "type_field": frame.type_field,
                "payload_field": frame.payload_field,
                "kind": frame.kind,
            },
        )
        return await self._publish(command, ours)

    def share(self, frame: ClientFrame) -> None:
        """Share ``frame`` (from a client of this node, already given to this node's
        runs) with the other nodes, after the frames shared before it. Never waits: a
        frame that cannot be shared (Redis slow or down) is counted and logged once."""
        if frame.text is None or frame.message_type is None:
            return  # no wait takes it (see replay.mailbox)
        self._hold(frame)
        if len(self._outbox) >= MAX_UNSHARED:
            self._unshared(f"{MAX_UNSHARED} frames wait to be shared")
            return
        self._enqueue(lambda seq: HeardFrame.of(frame, self.id, seq))

    def share_state(self, changes: Mapping[str, Any], by: str) -> None:
        """Share a state change this node made for a request (a route's ``set``, ``PUT
        /state``), after the frames shared before it: the other nodes apply it, so their
        routes and templates read the same state. Never waits, as :meth:`share`."""
        if len(self._outbox) >= MAX_UNSHARED:
            self._unshared(f"{MAX_UNSHARED} frames wait to be shared")
            return
        self._enqueue(lambda seq: HeardState(self.id, seq, dict(changes), by))

    def _enqueue(self, make: Callable[[int], Shared]) -> None:
        self._shared += 1
        self._outbox.append(make(self._shared))
        self._outbox_ready.set()

    async def _share_frames(self) -> None:
        # One at a time, in order: the other nodes hear a client's frames as it sent them.
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            frame = self._outbox.popleft()
            try:
                await self.backplane.publish_frame(frame)
            except Exception as error:  # whatever it is, sharing must go on afterwards
                reason = error.reason if isinstance(error, BackplaneUnreachable) else repr(error)
                self._unshared(reason)
                # Those waiting are stale by the time the backplane is back (each failure
                # may take seconds): given up too, so no answer arrives long after its wait.
                self.unshared += len(self._outbox)
                self._outbox.clear()
                continue
            if self._sharing_fails:
                self._sharing_fails = False
                log.warning("node %s: client frames are shared with the cluster again", self.id)

    def _unshared(self, reason: str) -> None:
        self.unshared += 1
        if not self._sharing_fails:  # once until sharing works again
            self._sharing_fails = True
            log.warning(
                "node %s: client frames are not shared with the other nodes (%s); this "
                "node's runs still hear them",
                self.id,
                reason,
            )

    async def _publish(self, command: StartCommand, ours: Catalog) -> Run:
        heard: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
        self._pending[command.run_id] = (ours, heard)
        try:
            await self.backplane.publish_start(command)
            ahead = max(0.0, command.start_at - time.time())
            return await asyncio.wait_for(heard, ahead + HEAR_TIMEOUT)
        except TimeoutError:
            raise BackplaneUnreachable(
                self.backplane.url, f"this node did not hear its trigger within {HEAR_TIMEOUT:g} s"
            ) from None
        finally:
            # Heard later, it is not played here (see _play): the caller was told 503.
            self._pending.pop(command.run_id, None)

    async def _catalog(
        self,
        files: Mapping[str, SourceFile],
        protocol: SourceFile | None,
        read_from: Catalog | None = None,
    ) -> Catalog:
        """The catalog these sources make: ``read_from`` if the sources were read from its
        files and none has changed since, else one made in a thread (or last time)."""
        key = _version(files, protocol)
        catalog = self._catalogs.get(key)
        if catalog is None and read_from is not None and self.unchanged() is read_from:
            catalog = read_from  # a long recording need not be parsed twice on this node
        if catalog is None:
            catalog = await asyncio.to_thread(played, files, protocol, self.base)
        self._catalogs[key] = catalog
        self._catalogs.move_to_end(key)
        while len(self._catalogs) > KEEP_CATALOGS:
            self._catalogs.popitem(last=False)
        return catalog

    def _sources(
        self, name: str, catalog: Catalog
    ) -> tuple[dict[str, SourceFile], SourceFile | None]:
        """The sources of ``name`` and of every scenario it plays, and the protocol's,
        read now; raises StartTooLarge or ScenarioInvalid (a file now unreadable)."""
        files: dict[str, SourceFile] = {}
        todo = [name]
        size = 0
        while todo:
            current = todo.pop()
            if current in files:
                continue
            loaded = catalog.file(current)
            files[current] = source = _read(current, Path(loaded.file), self.folder)
            size += len(source.text)
            if size > MAX_START_BYTES:
                raise StartTooLarge(name, size, MAX_START_BYTES)
            todo.extend(target for _, target in loaded.plays)
        protocol = None
        if catalog.protocol_file is not None:
            protocol = _read(PROTOCOL_FILE, self.folder / PROTOCOL_FILE, self.folder)
        return files, protocol

    def _heard(self, message: StartCommand | Shared | Message) -> None:
        if isinstance(message, HeardFrame | HeardState):
            self._hear_frame(message)
            return
        if isinstance(message, Beat):
            self.presence.heard(message, self.presence.clock())
            return
        if not isinstance(message, StartCommand):
            for listener in self.listeners:
                listener(message)
            return
        command = message
        self.origins[command.run_id] = command.origin
        while len(self.origins) > KEEP_ORIGINS:
            self.origins.popitem(last=False)
        self._starting.setdefault(command.run_id, [])
        task = asyncio.create_task(self._play(command), name=f"replay-start-{command.run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hear_frame(self, heard: Shared) -> None:
        # This node's own frames went to its runs when read; another node's, once each,
        # in its order. It starts no reaction here: the node holding the client does.
        if heard.origin == self.id or heard.seq <= self._last_seq.get(heard.origin, 0):
            return
        self._last_seq[heard.origin] = heard.seq
        if isinstance(heard, HeardState):
            if self.on_state is not None:
                self.on_state(heard.changes, f"node {heard.origin}: {heard.by}")
            return
        frame = heard.frame()
        self._hold(frame)
        self.runner.keep(frame)

    def _hold(self, frame: ClientFrame) -> None:
        # A node that took a little longer to start a run must not miss an answer the
        # others' copies keep (their start and the frame raced): as mailboxes do, at most
        # MAX_FRAMES (further ones go to the mailbox's dropped count when offered).
        for frames in self._starting.values():
            if len(frames) < MAX_FRAMES:
                frames.append(frame)

    async def _play(self, command: StartCommand) -> None:
        try:
            run = await self._start(command)
        finally:
            held = self._starting.pop(command.run_id, [])
        if run is not None:
            for frame in held:
                run.mailbox.offer(frame)

    async def _start(self, command: StartCommand) -> Run | None:
        pending = self._pending.get(command.run_id)
        if command.origin == self.id and pending is None:
            log.warning("run %s: heard too late; not played", command.run_id)
            return None
        if pending is not None:
            catalog, heard = pending
        else:
            catalog = await self._catalog(command.files, command.protocol)
        late = time.time() - command.start_at
        if late > MAX_LATE:
            log.warning("run %s: heard %.1f s after its start; not played", command.run_id, late)
            return None
        if late < 0:
            await asyncio.sleep(-late)
        # Run time 0 is the agreed start on every node: one that woke late (a busy loop, a
        # long parse) catches up from its first frame instead of staying late throughout.
        clock = self.runner.clock
        begins_at = clock.now() - (time.time() - command.start_at)
        try:
            run = self.runner.start(
                command.scenario,
                catalog,
                speed=command.speed,
                seed=command.seed,
                vars=command.vars,
                client=command.client,
                sender=command.sender,
                received=_received(command.received),
                started_by=command.started_by,
                run_id=command.run_id,
                begins_at=begins_at,
            )
        except ReplayError as error:
            if pending is not None and not heard.done():
                heard.set_exception(error)
            else:
                log.warning("run %s: not played on this node: %s", command.run_id, error)
            return None
        if pending is not None and not heard.done():
            heard.set_result(run)
        return run


def start_delay(files: Mapping[str, SourceFile], protocol: SourceFile | None) -> float:
    """Seconds from a trigger to its agreed start: time for the command to reach every
    node, and for a node that has not seen these sources to parse them."""
    size = sum(len(source.text) for source in files.values())
    size += len(protocol.text) if protocol is not None else 0
    return START_DELAY + size / PARSE_RATE


def _received(fields: Mapping[str, Any] | None) -> ClientFrame | None:
    return ClientFrame(**fields) if fields is not None else None


def _read(name: str, path: Path, folder: Path) -> SourceFile:
    source = read_source(path, folder)
    if isinstance(source, ScenarioFile):
        raise ScenarioInvalid(name, source.problems)
    return SourceFile(str(path), text_of(source))


def _version(files: Mapping[str, SourceFile], protocol: SourceFile | None) -> str:
    """A digest of the sources: the same for the same files, paths and texts."""
    found = sorted((f.file, f.text) for f in files.values())
    parts = [found, (protocol.file, protocol.text) if protocol is not None else None]
    # ASCII JSON: undecodable bytes (surrogates) are escaped, nothing is ambiguous.
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def played(
    files: Mapping[str, SourceFile],
    protocol: SourceFile | None,
    base: Protocol = SCHWARM,
) -> Catalog:
    """The catalog a start command's sources make (parsing: call it in a thread)."""
    protocol_file = None
    if protocol is not None:
        protocol_file = parse_protocol(bytes_of(protocol.text), protocol.file, base)
    speaks = protocol_file.protocol if protocol_file is not None else base
    loaded = [
        parse_scenario(bytes_of(source.text), source.file, speaks) for source in files.values()
    ]
    return Catalog.resolve(loaded, protocol_file)
