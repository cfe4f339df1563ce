"""Testing a frontend against replay: a real server and WebSocket clients for tests.

``ReplayServer`` starts a replay server on a free port for the length of a ``with``
block; ``ReplayClient`` connects to its ``/ws`` and ``/ws/stream`` as a frontend would,
records what arrives and expects frames with a deadline. The pytest plugin
(``replay.testing.plugin``, loaded by pytest by itself once replay is installed) gives the
same as the fixtures ``replay_server`` and ``replay_client``::

    def test_chat(replay_server, replay_client):
        client = replay_client("ui-1")
        replay_server.trigger("chat", client="ui-1", speed=0, wait=False)
        client.expect("CHAT_REQUESTED")
        client.send("CHAT_INPUT", "hello")
        assert 'You asked: "hello".' in client.expect_stream()

This package does not need pytest; only its ``plugin`` module imports it.
"""

from replay.testing.api import ReplayApi, ReplayTestError
from replay.testing.client import Frame, ReplayClient
from replay.testing.server import ReplayServer

__all__ = ["Frame", "ReplayApi", "ReplayClient", "ReplayServer", "ReplayTestError"]
