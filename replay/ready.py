"""How ``replay serve`` says it is ready: the address it really bound (with ``--port 0``
the system picks a free port), printed once the sockets listen and, with
``--ready-file``, written to a small JSON file that is removed again on a clean exit.

A parent process (a test runner, a script) can wait for either: the line on stdout, or
the file, which appears only after the line is printed and the server answers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import uvicorn

from replay.server import Server

logger = logging.getLogger("replay.serve")


def bound_address(sockets: Iterable[socket.socket]) -> tuple[str, int] | None:
    """The host and port of the first listening TCP socket, IPv4 ones first (a name such
    as ``localhost`` binds one socket per address family, and with port 0 each gets its
    own port); None without a TCP socket."""
    tcp = [s for s in sockets if s.family in (socket.AF_INET, socket.AF_INET6)]
    if not tcp:
        return None
    first = min(tcp, key=lambda s: s.family != socket.AF_INET)
    host, port = first.getsockname()[:2]
    return str(host), int(port)


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def connectable(host: str) -> str:
    """The address to connect to for a bound one: loopback for the unspecified address
    (0.0.0.0 and ::), the address itself otherwise."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return host


def ready_document(host: str, port: int) -> dict[str, Any]:
    """What the ready file holds: where to connect, and who is serving."""
    where = f"{url_host(connectable(host))}:{port}"
    return {"url": f"http://{where}", "ws": f"ws://{where}", "port": port, "pid": os.getpid()}


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in ``path``'s folder, then rename it to ``path``:
    a reader sees no file or the whole file, never a part."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it 0600; it holds nothing secret
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class ReadyServer(Server):
    """replay's server, saying where it listens once it does.

    Once the sockets listen (and the application has started), ``ready_file``, if given,
    is written; then ``announce`` is called with the bound host and port (so whoever reads
    the announced address may read the file too). A file that cannot be written stops the
    server unannounced. The file is removed as the server begins to shut down (so before
    uvicorn passes a SIGTERM or SIGINT it caught on to the process).
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        announce: Callable[[str, int], None] | None = None,
        ready_file: Path | None = None,
    ) -> None:
        super().__init__(config)
        self.announce = announce
        self.ready_file = ready_file
        #: The host and port the server listens on, once it does.
        self.address: tuple[str, int] | None = None
        #: True if the server could not say it was ready (the file could not be written).
        self.failed = False
        self._wrote = False

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:  # a signal came during start-up: it stops at once
            return
        listening = [s for server in self.servers for s in server.sockets]
        self.address = bound_address(listening)
        if self.address is None:
            return
        # The file first: whoever reads the announced address may then read the file too.
        if self.ready_file is not None:
            try:
                write_atomically(self.ready_file, json.dumps(ready_document(*self.address)) + "\n")
            except OSError as error:
                logger.error("could not write the ready file %s: %s", self.ready_file, error)
                self.failed = True
                self.should_exit = True
                return
            self._wrote = True
        if self.announce is not None:
            self.announce(*self.address)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.remove_ready_file()  # no longer ready: a reader should not try it now
        await super().shutdown(sockets)

    def remove_ready_file(self) -> None:
        """Remove the ready file if this server wrote it (again: no harm)."""
        if self._wrote and self.ready_file is not None:
            self._wrote = False
            with contextlib.suppress(OSError):
                self.ready_file.unlink()
