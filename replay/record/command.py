"""``replay record``: the command around the proxy. It starts the proxy, says where it
listens (a line on stdout and, with ``--ready-file``, the same JSON file ``replay
serve`` writes), shows the counts while it records, and stops on Ctrl-C or SIGTERM:
sessions still open are closed with 1001 and their end lines written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from replay import __version__
from replay.record.proxy import RecordingProxy, serve
from replay.record.redact import PayloadPath
from replay.record.status import Console
from replay.record.upstream import Upstream


def record(
    upstream: Upstream,
    host: str,
    port: int,
    out: Path,
    redact: Sequence[PayloadPath] = (),
    ready_file: Path | None = None,
    stdout: TextIO = sys.stdout,
) -> int:
    """Record until stopped; 0 once stopped, 1 if the proxy could not listen or say it
    was ready."""
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s:     %(name)s: %(message)s", stream=sys.stderr
    )
    console = Console(stdout, live=_is_terminal(stdout))
    proxy = RecordingProxy(upstream, out, redact, console)
    try:
        return asyncio.run(_record(proxy, console, host, port, ready_file))
    except OSError as error:
        print(f"replay: cannot listen on {host}:{port}: {error.strerror or error}", file=sys.stderr)
        return 1


async def _record(
    proxy: RecordingProxy, console: Console, host: str, port: int, ready_file: Path | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def stopping() -> None:  # a second Ctrl-C interrupts at once
        stop.set()
        for number in signals:
            loop.remove_signal_handler(number)

    for number in signals:
        loop.add_signal_handler(number, stopping)
    tasks: list[asyncio.Task[None]] = []
    failed: list[str] = []

    def ready(bound_host: str, bound_port: int) -> None:
        # The file first: whoever reads the address line may then read the file too.
        if ready_file is not None and not _write_ready_file(ready_file, bound_host, bound_port):
            failed.append(str(ready_file))
            stop.set()
            return
        _announce(proxy, console, bound_host, bound_port)
        tasks.append(asyncio.create_task(console.run()))

    try:
        await serve(proxy, stop, host, port, ready)
    finally:
        for task in tasks:
            task.cancel()
        if ready_file is not None and not failed:
            _remove(ready_file)
        console.finish(proxy.recorder.folder)
    return 1 if failed else 0


def _announce(proxy: RecordingProxy, console: Console, host: str, port: int) -> None:
    """Say where the proxy listens, in one line a parent process can wait for."""
    from replay.ready import url_host

    console.say(
        f"replay {__version__}: recording on ws://{url_host(host)}:{port} (and http://) -> "
        f"{proxy.upstream.url}, sessions in {proxy.recorder.folder}/"
    )


def _write_ready_file(path: Path, host: str, port: int) -> bool:
    from replay.ready import ready_document, write_atomically

    try:
        write_atomically(path, json.dumps(ready_document(host, port)) + "\n")
    except OSError as error:
        logger = logging.getLogger("replay.record")
        logger.error("could not write the ready file %s: %s", path, error)
        return False
    return True


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
