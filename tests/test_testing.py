"""replay.testing: the server as a context manager, the client's expectations, the HTTP
helpers, and the pytest plugin as a test project uses it (pytester, in this process).

Nothing here asserts timing: every wait has a deadline, and where a test needs "nothing
more will come" a scenario says so by closing the connection (``disconnect``) or by
waiting for a client that never answers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from replay.errors import ReplayError
from replay.testing import Frame, ReplayApi, ReplayServer, ReplayTestError
from tests.conftest import SHIPPED

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
ANSWER = 'You asked: "hello".'  # how the shipped chat.yaml's streamed answer begins

#: Scenarios of these tests, besides the shipped ones.
EXTRA = {
    "greet.yaml": """
        vars: {user: Ada}
        steps:
          - message: EVENT
            text: "hello {{ vars.user }} {{ randint(0, 1000000000) }}"
          - sleep: 30s
    """,
    # Two frames, then /ws closes: whoever expects more learns so at once.
    "hang-up.yaml": """
        steps:
          - message: CHAT_REQUESTED
            text: What should I do next?
          - message: EVENT
            text: thinking
          - disconnect: /ws
    """,
    # A stream that never closes: its connection is cut instead.
    "cut-stream.yaml": """
        steps:
          - chunk: "Half an answer"
          - disconnect: /ws/stream
    """,
    "to-sender.yaml": """
        steps:
          - message: EVENT
            text: for whoever asked
            to: sender
    """,
    "broken.yaml": """
        steps:
          - message: EVNT
            text: typo
    """,
}


def scenarios_in(folder: Path) -> Path:
    """The shipped scenarios and EXTRA, in ``folder``."""
    shutil.copytree(SHIPPED, folder)
    for name, text in EXTRA.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayServer]:
    with ReplayServer(scenarios_in(tmp_path_factory.mktemp("testing") / "scenarios")) as server:
        yield server


@pytest.fixture
def server(module_server: ReplayServer) -> Iterator[ReplayServer]:
    yield module_server
    module_server.reset()


# The context manager and the client ----------------------------------------------------


def test_chat_round_trip(server: ReplayServer) -> None:
    client = server.client("ui-1")
    started = server.trigger("chat", client="ui-1", speed=0, wait=False)
    assert started["status"] == "started"
    asked = client.expect("CHAT_REQUESTED", text="What should I do next?")
    assert isinstance(asked, Frame)
    assert asked.endpoint == "/ws"
    assert asked["message"] == asked.message == "What should I do next?"
    client.send("CHAT_INPUT", "hello")
    event = client.expect("EVENT", match=r"START_TURN")
    assert json.loads(event.message)["attributes"] == {"input": "hello"}
    text = client.expect_stream()
    assert text.startswith(ANSWER)
    assert text.endswith("until they pass.")
    ended = server.wait_run(started["run_id"])
    assert ended["state"] == "finished"
    assert ended["client"] == "ui-1"
    kinds = [(frame.endpoint, frame.message_type) for frame in client.frames]
    assert kinds[:2] == [("/ws", "CHAT_REQUESTED"), ("/ws", "IS_WAITING")]
    assert kinds[-1] == ("/ws/stream", "close")


def test_expect_takes_frames_in_order_and_says_what_came_instead(server: ReplayServer) -> None:
    client = server.client()
    assert client.id.startswith("test-")
    server.trigger("hang-up", speed=0)
    assert client.expect(match=lambda frame: frame.message == "thinking").message_type == "EVENT"
    with pytest.raises(AssertionError) as failed:
        client.expect("CHAT_REQUESTED")
    message = str(failed.value)
    assert f"client {client.id}: no 'CHAT_REQUESTED' frame on /ws (the connection closed" in message
    assert "nothing arrived on /ws since the last expectation" in message
    # The one it wanted came before the frame the last expectation returned.
    assert "a matching frame came earlier" in message
    # Its index and arrival time since the client connected (the time itself is the
    # machine's: a loaded machine may take seconds).
    assert re.search(r"#0 \+\d+\.\d{3}s ", message), message
    assert "What should I do next?" in message


def test_a_client_may_take_the_id_of_one_the_server_let_go(server: ReplayServer) -> None:
    first = server.client("ui-4")
    server.trigger("hang-up", speed=0)
    with pytest.raises(AssertionError, match="the connection closed"):
        first.expect("CHAT")
    assert first.open_endpoints == ("/ws/stream",)
    second = server.client("ui-4")
    server.trigger("messages", client="ui-4", speed=0)
    assert second.expect().message == "Test chat request"


def test_expect_filters(server: ReplayServer) -> None:
    client = server.client()
    server.trigger("all", speed=0)
    assert client.expect(text="Test event message").message_type == "EVENT"
    assert client.expect("PAUSE_STATUS", match="paused$").message == "System paused"
    assert client.expect("default", endpoint="/ws/stream").message == "This is a "
    assert client.expect("close", endpoint="/ws/stream").data == {"type": "close", "content": None}
    with pytest.raises(ValueError, match="not connected to '/nowhere'"):
        client.expect(endpoint="/nowhere")


def test_expect_stream_says_what_arrived_when_the_stream_does_not_close(
    server: ReplayServer,
) -> None:
    client = server.client()
    server.trigger("cut-stream", speed=0)
    with pytest.raises(AssertionError) as failed:
        client.expect_stream()
    message = str(failed.value)
    assert "the stream did not close" in message
    assert "(the connection closed with 1000" in message
    assert "'Half an answer'" in message


def test_reset_closes_the_clients_and_cancels_the_runs(server: ReplayServer) -> None:
    client = server.client("ui-2")
    started = server.trigger("chat", client="ui-2", speed=0, wait=False)
    client.expect("IS_WAITING")
    cancelled = server.reset()
    assert [run["run_id"] for run in cancelled] == [started["run_id"]]
    assert client.closed
    assert server.runs("running") == []
    assert server.run(started["run_id"])["state"] == "cancelled"
    assert all(c["client_id"] != "ui-2" for c in server.clients())


# The HTTP helpers ---------------------------------------------------------------------


def test_trigger_passes_vars_seed_speed_and_client(server: ReplayServer) -> None:
    client = server.client("ui-3")
    answers = [
        server.trigger("greet", vars={"user": "Grace"}, seed=7, speed=0, client="ui-3")
        for _ in range(2)
    ]
    for answer in answers:
        assert answer["status"] == "success"
        assert (answer["seed"], answer["speed"], answer["vars"]) == (7, 0.0, {"user": "Grace"})
        assert answer["client"] == "ui-3"
    first, second = (client.expect("EVENT").message for _ in range(2))
    assert first.startswith("hello Grace ")
    assert first == second  # the same seed: the same random number


def test_a_bad_scenario_name_is_a_readable_error(server: ReplayServer) -> None:
    with pytest.raises(ReplayTestError) as failed:
        server.trigger("gret")
    assert isinstance(failed.value, ReplayError)
    assert failed.value.status == 404
    assert str(failed.value).startswith(
        "trigger 'gret' refused (404): no scenario named 'gret' (did you mean 'greet'?)"
    )
    assert "greet" in failed.value.answer["known"]


def test_other_refusals_carry_the_servers_words(server: ReplayServer) -> None:
    with pytest.raises(ReplayTestError, match=r"\(422\): scenario 'broken' is invalid") as bad:
        server.trigger("broken")
    assert "broken.yaml:3:5: steps.0.message: unknown message type 'EVNT'" in str(bad.value)
    with pytest.raises(ReplayTestError, match=r"declares no variable 'usr' \(did you mean"):
        server.trigger("greet", vars={"usr": "x"})
    with pytest.raises(ReplayTestError, match=r"\(422\): query\.speed: "):
        server.trigger("greet", speed=-1)
    with pytest.raises(ReplayTestError, match=r"failed: .*'to: sender' needs a client") as run:
        server.trigger("to-sender")
    assert run.value.answer["state"] == "failed"
    with pytest.raises(ReplayTestError, match=r"GET /runs/nope refused \(404\): no run"):
        server.run("nope")


def test_cancel_returns_the_run_also_when_it_had_ended(server: ReplayServer) -> None:
    started = server.trigger("greet", wait=False)
    assert server.cancel(started["run_id"])["state"] == "cancelled"
    assert server.cancel(started["run_id"])["state"] == "cancelled"  # 409: as it ended


def test_a_token_on_connect_and_settings(tmp_path: Path) -> None:
    with ReplayServer(
        scenarios_in(tmp_path / "scenarios"), token="s3cret", on_connect=["welcome"], queue_size=64
    ) as server:
        assert server.settings.queue_size == 64
        assert server.settings.isolated
        with server.client("ui-5") as client:
            greeting = client.expect("EVENT")
            assert json.loads(greeting.message)["client"] == "ui-5"
        assert server.trigger("messages", speed=0)["status"] == "success"  # with the token
        with pytest.raises(ReplayTestError) as refused:
            ReplayApi(server.url).runs()
        assert refused.value.status == 401
    with pytest.raises(ReplayTestError, match="not started"):
        _ = server.url


def test_a_missing_folder_and_an_unknown_setting(tmp_path: Path) -> None:
    with pytest.raises(ReplayTestError, match="does not exist"), ReplayServer(tmp_path / "none"):
        pass
    with pytest.raises(TypeError, match=r"unknown settings queue; replay\.Settings has: "):
        ReplayServer(tmp_path, queue=3)


OUTSIDE_PYTEST = """
import sys

sys.modules["pytest"] = None  # importing pytest now fails: replay.testing must not need it
from replay.testing import ReplayServer

with ReplayServer(sys.argv[1]) as server, server.client("cli") as client:
    server.trigger("chat", client="cli", speed=0, wait=False)
    client.expect("CHAT_REQUESTED")
    client.send("CHAT_INPUT", "hello")
    print(client.expect_stream())
"""


def test_the_context_manager_without_pytest(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", OUTSIDE_PYTEST, str(scenarios_in(tmp_path / "scenarios"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(ANSWER)


# The pytest plugin -----------------------------------------------------------------------

#: What the issue asks for: a test playing chat end to end in under 15 lines.
CHAT_TEST = """
def test_chat(replay_server, replay_client):
    client = replay_client("ui-1")
    replay_server.trigger("chat", client="ui-1", speed=0, wait=False)
    client.expect("CHAT_REQUESTED")
    client.send("CHAT_INPUT", "hello")
    assert 'You asked: "hello".' in client.expect_stream()
"""


#: The inner projects' pytest.ini: pytest-asyncio (installed here) warns without it.
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A test project with the shipped scenarios (and EXTRA) in ./scenarios."""
    scenarios_in(pytester.path / "scenarios")
    pytester.makeini(INI)
    return pytester


def test_the_plugin_is_registered() -> None:
    (plugin,) = [ep for ep in entry_points(group="pytest11") if ep.name == "replay"]
    assert plugin.value == "replay.testing.plugin"


def test_a_chat_test_in_under_15_lines(project: pytest.Pytester) -> None:
    assert len(CHAT_TEST.strip().splitlines()) < 15
    project.makepyfile(CHAT_TEST)  # no conftest, no -p: the entry point loads the plugin
    project.runpytest_inprocess().assert_outcomes(passed=1)


def test_a_failing_expectation_shows_what_arrived_instead(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_hang_up(replay_server, replay_client):
            client = replay_client("ui-1")
            replay_server.trigger("hang-up", speed=0)
            client.expect("CHAT")

        def test_waiting(replay_server, replay_client):
            client = replay_client("ui-1")
            replay_server.trigger("chat", client="ui-1", speed=0, wait=False)
            client.expect("IS_WAITING")
            client.expect("CHAT", timeout=0.2)
        """
    )
    result = project.runpytest_inprocess()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "E * client ui-1: no 'CHAT' frame on /ws (the connection closed with 1000)",
            "E * 2 frames arrived on /ws since the last expectation:",
            'E *   #0 +*s {"message_type":"CHAT_REQUESTED","message":"What should I do next?"}',
            'E *   #1 +*s {"message_type":"EVENT","message":"thinking"}',
            "*",
            "E * client ui-1: no 'CHAT' frame on /ws within 0.2s",
            "E * nothing arrived on /ws since the last expectation",
        ]
    )


def test_a_failed_test_leaves_no_run_for_the_next(project: pytest.Pytester) -> None:
    project.makepyfile(
        """
        def test_fails_while_chat_waits(replay_server, replay_client):
            client = replay_client("ui-1")
            replay_server.trigger("chat", client="ui-1", speed=0, wait=False)
            client.expect("IS_WAITING")
            assert False, "failed while the run waits for CHAT_INPUT"

        def test_next(replay_server, replay_client):
            assert replay_server.runs("running") == []
            (chat,) = [run for run in replay_server.runs() if run["scenario"] == "chat"]
            assert chat["state"] == "cancelled"
            client = replay_client("ui-1")
            replay_server.trigger("messages", speed=0)
            assert client.expect().message == "Test chat request"
            assert client.frames[0].message == "Test chat request"
        """
    )
    result = project.runpytest_inprocess()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*failed while the run waits for CHAT_INPUT*"])


def test_the_scenarios_folder_comes_from_the_option_or_the_ini(
    pytester: pytest.Pytester,
) -> None:
    scenarios_in(pytester.path / "ui" / "replay")
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        def test_folder(replay_scenarios, replay_server):
            assert replay_scenarios.parts[-2:] == ("ui", "replay")
            assert replay_server.trigger("greet", speed=0)["status"] == "success"
        """
    )
    pytester.runpytest_inprocess("--replay-scenarios", "ui/replay").assert_outcomes(passed=1)
    pytester.makeini(INI + "replay_scenarios = ui/replay\n")
    pytester.runpytest_inprocess().assert_outcomes(passed=1)

    shutil.rmtree(pytester.path / "ui")
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*replay: the scenarios folder '*replay' does not exist*"])


def test_the_plugin_starts_nothing_unless_asked(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: ReplayServer) -> ReplayServer:
        raise AssertionError("a replay server was started")

    monkeypatch.setattr(ReplayServer, "start", refuse)  # the inner run shares this class
    project.makepyfile("def test_plain():\n    assert True\n")
    project.runpytest_inprocess().assert_outcomes(passed=1)
