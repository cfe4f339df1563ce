"""Ready profiles: a scenarios folder per Schwarm protocol version, chosen with one flag.

``replay serve --profile p3`` is ``replay serve --scenarios <the p3 folder>``. The
folders ship with replay: in a clone they are ``scenarios/`` (P5, the default) and
``profiles/NAME/``; in an installed wheel they are inside the package, under
``replay/_profiles/NAME/``. Which frontend each serves is in the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CLONE = _PACKAGE.parent


@dataclass(frozen=True)
class Profile:
    """A shipped scenarios folder: its name, what it serves, and where it is in a clone."""

    name: str
    summary: str
    in_clone: str


PROFILES = {
    profile.name: profile
    for profile in (
        Profile("p5", "Schwarm P5, the default: /ws, /ws/stream, control routes", "scenarios"),
        Profile("p3", "Schwarm P3 (main): chunks on /ws, polled /spans", "profiles/p3"),
        Profile("p6", "Schwarm P6: one socket at / (port 8765), BREAK frames", "profiles/p6"),
    )
}


def profile_folder(name: str) -> Path:
    """The scenarios folder of profile ``name`` (one of :data:`PROFILES`)."""
    profile = PROFILES[name]
    installed = _PACKAGE / "_profiles" / name
    return installed if installed.is_dir() else _CLONE / profile.in_clone
