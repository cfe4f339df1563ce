"""replay: a scripted scenario replay engine for WebSocket frontends.

The public API, for embedding replay or testing against it::

    from replay import create_app, Settings, WebsocketManager, StreamManager
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("replay")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from replay.errors import (
    Problem,
    ReplayError,
    RunNotFound,
    ScenarioFolderMissing,
    ScenarioInvalid,
    ScenarioNotFound,
    ServerRefused,
    ServerUnavailable,
)
from replay.managers import MessageType, StreamManager, WebsocketManager
from replay.server import Settings, create_app

__all__ = [
    "MessageType",
    "Problem",
    "ReplayError",
    "RunNotFound",
    "ScenarioFolderMissing",
    "ScenarioInvalid",
    "ScenarioNotFound",
    "ServerRefused",
    "ServerUnavailable",
    "Settings",
    "StreamManager",
    "WebsocketManager",
    "__version__",
    "create_app",
]
