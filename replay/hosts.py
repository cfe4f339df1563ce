"""Which names replay answers to: the ``Host`` allow-list, replay's defence against DNS
rebinding.

A page at ``http://evil.example:8123`` can make its own name resolve to 127.0.0.1; the
browser then treats replay on the developer's machine as that page's own origin, and the
page may read everything. What gives it away is the ``Host`` header, which a page cannot
set: it says ``evil.example``. A server bound to a loopback address therefore answers
only to loopback names (``localhost``, ``*.localhost``, 127.0.0.0/8, ``[::1]``, any
port), plus the names given with ``--allow-host``.

A server bound to another address is reached by names replay cannot know (a LAN address,
the machine's name, a tunnel). With a token it answers to any name: a rebound page does
not have the token, and the ``replay_token`` cookie belongs to the name it was set for.
Without one (``--insecure``) it answers to loopback names, IP addresses (a page cannot
rebind an address, only a name), this machine's host names and ``--allow-host`` names.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: ``name``, ``name:port``, ``[v6]`` or ``[v6]:port``: the syntax of a Host header.
_AUTHORITY = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_.\-]+))(?::(?P<port>[0-9]{1,5}))?"
)
#: What ``--allow-host '*'`` says: answer to any name.
ANY = "*"
#: The longest Host value a refusal repeats back.
SHOWN = 200


def split_authority(value: str) -> tuple[str, int | None] | None:
    """The host (lower case, without a final dot; an IPv6 address without its brackets)
    and port of ``host[:port]``, or None if ``value`` is not one."""
    found = _AUTHORITY.fullmatch(value.strip())
    if found is None:
        return None
    port = int(found["port"]) if found["port"] is not None else None
    if port is not None and port > 65535:
        return None
    if found["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(found["v6"])), port
        except ValueError:
            return None
    name = found["name"].lower()
    if name.endswith(".") and len(name) > 1:
        name = name[:-1]
    return name, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as :func:`split_authority` gives it) names this machine's loopback
    interface: ``localhost`` and its subdomains (browsers resolve them to loopback
    themselves), 127.0.0.0/8 and ::1."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class HostPolicy:
    """The names a server answers to; see the module's description.

    ``names`` are allowed exactly, ``suffixes`` (from ``*.example.test``) with any
    subdomain; loopback names are always allowed.
    """

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    any_host: bool = False
    ip_addresses: bool = False
    #: How the refusal describes what is allowed, e.g. "loopback names (...)".
    described: str = "loopback names (localhost, 127.0.0.1, [::1])"

    def allows(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header value may go on. A request with no
        Host header at all is not from a browser (they always send one) and goes on."""
        if header is None or self.any_host:
            return True
        split = split_authority(header)
        if split is None:
            return False
        host = split[0]
        return (
            is_loopback(host)
            or host in self.names
            or host.endswith(self.suffixes)
            or (self.ip_addresses and _ip(host) is not None)
        )

    def refusal(self, header: str) -> str:
        """What a refused request is told: what is allowed and how to allow more."""
        split = split_authority(header)
        suggestion = split[0] if split is not None and len(split[0]) <= SHOWN else "NAME"
        if ":" in suggestion:
            suggestion = f"[{suggestion}]"
        shown = header if len(header) <= SHOWN else header[:SHOWN] + "..."
        return (
            f"this server answers only to {self.described}, not to Host {shown!r}: a page "
            "reaching it under another name may be a DNS rebinding attack. Use one of those "
            f"names, or start replay serve with --allow-host {suggestion} (repeatable; "
            "--allow-host '*' turns this check off)"
        )


def host_policy(
    bind: str,
    allowed: Sequence[str] = (),
    token: str | None = None,
    machine: Iterable[str] | None = None,
) -> HostPolicy:
    """The names a server bound to ``bind`` answers to, with ``allowed`` (``--allow-host``)
    added; ``machine`` are this machine's names (default: looked up)."""
    names: set[str] = set()
    suffixes: list[str] = []
    for entry in allowed:
        entry = entry.strip().lower()
        if entry == ANY:
            return HostPolicy(any_host=True, described="any name")
        if entry.startswith("*."):
            suffixes.append(entry[1:])
            continue
        names.add(_bare(entry))
    extra = sorted(names) + [f"*{suffix}" for suffix in suffixes]
    if is_loopback(_bare(bind)):
        listed = ", ".join(["localhost", "127.0.0.1", "[::1]", *extra])
        return HostPolicy(frozenset(names), tuple(suffixes), described=f"the names {listed}")
    if token:
        return HostPolicy(any_host=True, described="any name")
    own = set(machine_names() if machine is None else machine)
    if _ip(_bare(bind)) is None and split_authority(bind) is not None:
        own.add(_bare(bind))  # bound to a name: that name is one of the machine's
    names |= {name.lower() for name in own}
    listed = ", ".join(["localhost", "IP addresses", *sorted(own), *extra])
    return HostPolicy(
        frozenset(names), tuple(suffixes), ip_addresses=True, described=f"the names {listed}"
    )


def _bare(bind: str) -> str:
    split = split_authority(bind)
    if split is not None:
        return split[0]
    # "::" or "::1" without brackets: how --host gives an IPv6 address.
    address = _ip(bind.strip("[]"))
    return str(address) if address is not None else bind.lower()


def machine_names() -> set[str]:
    """This machine's host names, as other machines may reach it: its name, its fully
    qualified name and its mDNS name (``NAME.local``)."""
    name = socket.gethostname().lower()
    found = {name, f"{name.split('.')[0]}.local", socket.getfqdn().lower()}
    return {entry for entry in found if entry and entry != "localhost"}
