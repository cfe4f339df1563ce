"""File descriptors: as many as the system lets ``replay serve`` have, and no more clients
than they allow.

Each connection holds a file descriptor. With the common soft limit of 1024 and the
default client limit of 10,000, the 1,015th connection found none left: asyncio's accept
loop failed (and logged) without end, ``/healthz`` and triggers timed out, and new
clients hung instead of being told 1013 "too many clients". At start-up, ``replay serve``
raises its soft limit to the hard one, then keeps the client limit below what is left
once a reserve for HTTP requests, the listening socket and files is set aside.
"""

from __future__ import annotations

from dataclasses import dataclass

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows, which has no such limit
    resource = None  # type: ignore[assignment]

#: File descriptors kept for everything but WebSocket clients, at the least...
RESERVE = 64
#: ... and as a share of the limit.
RESERVE_SHARE = 0.1


@dataclass(frozen=True)
class FileBudget:
    """What :func:`file_budget` found and did."""

    #: Clients allowed at once: the limit asked for, or lower if descriptors are short.
    clients: int
    #: The client limit asked for.
    asked: int
    #: The soft limit on open files now (None: no limit, or no way to tell).
    limit: int | None = None
    #: The soft limit before it was raised, if it was.
    raised_from: int | None = None

    def message(self) -> str | None:
        """One line saying what changed, or None if nothing did."""
        raised = (
            f"raised the open-file limit from {self.raised_from} to {self.limit}"
            if self.raised_from is not None
            else None
        )
        if self.clients < self.asked:
            why = (
                f"client limit lowered from {self.asked} to {self.clients} because only "
                f"{self.limit} file descriptors are allowed"
            )
            hint = " (raise the hard limit, 'ulimit -Hn', to allow more)"
            return f"{raised}; {why}{hint}" if raised else f"{why}{hint}"
        return raised


def reserve(limit: int) -> int:
    """File descriptors kept back from WebSocket clients when ``limit`` are allowed."""
    return max(RESERVE, int(limit * RESERVE_SHARE))


def file_budget(clients: int) -> FileBudget:
    """Raise this process's soft limit on open files to its hard limit, and lower
    ``clients`` to what the limit allows (at least 1)."""
    if resource is None:
        return FileBudget(clients, clients)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised_from = None
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        raised = _raise(soft, hard)
        if raised > soft:
            soft, raised_from = raised, soft
    if soft == resource.RLIM_INFINITY:
        return FileBudget(clients, clients, None, raised_from)
    allowed = max(1, soft - reserve(soft))
    return FileBudget(min(clients, allowed), clients, soft, raised_from)


def _raise(soft: int, hard: int) -> int:
    """Set the soft limit as high as the system takes; the soft limit then."""
    # An unlimited hard limit (macOS) may still refuse an unlimited soft one: try less.
    wanted = [hard] if hard != resource.RLIM_INFINITY else [1 << 20, 10240]
    for value in wanted:
        if value <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (value, hard))
        except (ValueError, OSError):
            continue
        return value
    return soft
