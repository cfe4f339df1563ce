"""The replay command: every sub-command, its output and its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import replay.server
from replay.cli import Options, main, play
from replay.ready import bound_address, ready_document
from replay.server import Settings
from tests.conftest import LiveServer, start_live_server
from tests.recording import eventually, read_all, ws_upstream


def names_in(folder: Path) -> list[str]:
    """The scenario names a folder holds (the shipped folder grows over time)."""
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.name.startswith((".", "_")))


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dry_run_prints_the_timeline(
    scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--scenario", "all", "--dry-run", "--scenarios", str(scenarios_dir)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[1].split(None, 2) == [
        "0.000s",
        "/ws",
        '{"message_type":"CHAT_REQUESTED","message":"Test chat request"}',
    ]
    assert out[-2].split(None, 2) == ["2.600s", "/ws/stream", '{"type":"close","content":null}']
    assert out[-1] == "all: 8 frames, 2.600s in all"


def test_dry_run_at_speed(scenarios_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--scenario", "messages", "--dry-run", "--speed", "2", "--scenarios", str(scenarios_dir)])
    offsets = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert offsets == ["0.000s", "0.250s", "0.500s", "0.750s"]


def test_dry_run_of_an_unknown_scenario(
    scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--scenario", "stram", "--dry-run", "--scenarios", str(scenarios_dir)])
    err = capsys.readouterr().err
    assert code == 1
    assert "no scenario named 'stram' (did you mean 'stream'?)" in err


def test_scenarios_folder_from_the_environment(
    scenarios_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPLAY_SCENARIOS", str(scenarios_dir))
    assert main(["list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == names_in(scenarios_dir)


def test_list_shows_invalid_files_with_their_first_problem(
    scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (scenarios_dir / "oops.yaml").write_text("steps:\n  - chunk: [1]\n")
    assert main(["list", "--scenarios", str(scenarios_dir)]) == 0
    out = capsys.readouterr().out
    assert "messages" in out
    line = next(line for line in out.splitlines() if line.startswith("oops "))
    assert line.endswith(
        f"INVALID: {scenarios_dir / 'oops.yaml'}:2:5: steps.0.chunk: wrong type; "
        "expected a string, found a list"
    )


def test_validate_passes_on_the_shipped_scenarios(
    scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--scenarios", str(scenarios_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{len(names_in(scenarios_dir))} valid, 0 invalid"
    assert not [line for line in out if line.startswith("INVALID")]


def test_validate_lists_every_problem_and_fails(
    scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = scenarios_dir / "bad.yaml"
    bad.write_text("steps:\n  - message: EVNT\n    text: x\n  - play: mesages\n  - sleep: -1\n")
    code = main(["validate", str(bad), str(scenarios_dir / "all.yaml")])
    out = capsys.readouterr().out
    assert code == 1
    assert f"INVALID  {bad}" in out
    assert f"{bad}:2:5: steps.0.message: unknown message type 'EVNT' (did you mean 'EVENT'?)" in out
    assert f"{bad}:5:5: steps.2.sleep: a duration must be zero or more seconds" in out
    assert f"{bad}:4:5: steps.1.play: plays 'mesages', which does not exist" in out
    assert "(did you mean 'messages'?)" in out
    assert f"ok       {scenarios_dir / 'all.yaml'}" in out
    assert out.splitlines()[-1] == "1 valid, 1 invalid"


def test_validate_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().out


def test_play_without_a_server_says_so_in_one_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["--scenario", "all", "--url", url]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"replay: no replay server answers at {url} (connection refused); "
        "start one with 'replay serve' or pass --url"
    )


def test_play_prints_each_frame_and_a_summary(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--scenario", "stream", "--url", live_server.url, "--speed", "0"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("run ")
    assert "playing 'stream' (4 frames" in out[0]
    assert '{"type":"default","content":"This is a "}  -> 0 clients' in out[1]
    assert len(out) == 6
    assert ": finished: 4 frames to 0 clients in " in out[-1]


def test_play_an_unknown_scenario(
    live_server: LiveServer, scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--scenario", "nope", "--url", live_server.url]) == 1
    known = ", ".join(names_in(scenarios_dir))
    assert f"known scenarios: {known}" in capsys.readouterr().err


def test_play_an_invalid_scenario(
    live_server: LiveServer, scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (scenarios_dir / "bad.yaml").write_text("steps:\n  - close: everything\n")
    assert main(["--scenario", "bad", "--url", live_server.url]) == 1
    err = capsys.readouterr().err
    assert "scenario 'bad' is invalid" in err
    assert "bad.yaml:2:5: steps.0.close: not an allowed value; expected 'stream'" in err


def test_bad_speed_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", "all", "--speed", "-1"])
    assert exit_info.value.code == 2
    assert "is not a speed" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: replay" in capsys.readouterr().err


def test_serve_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--scenarios", str(tmp_path / "absent")]) == 1
    assert "does not exist: create it, or pass --scenarios DIR" in capsys.readouterr().err


def test_play_survives_being_cut_off_as_a_lagging_follower(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from replay import runner

    monkeypatch.setattr(runner, "FOLLOWER_BACKLOG", 0)  # every follower lags at once
    code = main(["--scenario", "messages", "--url", live_server.url, "--speed", "20"])
    out = capsys.readouterr().out
    assert code == 0
    assert "the server stopped following" in out
    assert ": finished: 4 frames" in out.splitlines()[-1]


# The scenario language on the command line: waits, forever, seeds, variables, the
# protocol file and the schema. Each test writes its own folder.

CHAT = """
vars:
  user: nobody
delay: 0.1
steps:
  - message: CHAT_REQUESTED
    text: "Hi {{ vars.user }}, what now?"
  - wait: CHAT_INPUT
    timeout: 5s
  - message: CHAT
    text: "{{ vars.user }} said {{ received.message }}"
  - disconnect: /ws
    code: 4001
    reason: bye
"""
JITTERED = """
delay: 0.2
jitter: 0.1
steps:
  - message: EVENT
    text: "{{ randint(1, 1000000) }} {{ uuid() }}"
  - chunk: "{{ choice(['a', 'b', 'c', 'd', 'e', 'f']) }}"
  - repeat: 3
    steps:
      - message: EVENT
        text: "{{ iteration }} {{ random() }}"
"""
FOREVER = """
steps:
  - repeat: forever
    steps:
      - message: EVENT
        text: tick
        delay: 1s
"""
PROTOCOL = "message_types:\n  TOKEN_USAGE: token counts after each LLM call\n"
USES_PROTOCOL = "steps:\n  - message: TOKEN_USAGE\n    data: {prompt: 12, completion: 30}\n"


def folder_with(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dry_run_shows_waits_and_disconnects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"chat.yaml": CHAT})
    code, out, _ = run_main(["--scenario", "chat", "--dry-run", "--scenarios", str(folder)], capsys)
    assert code == 0
    lines = out.splitlines()
    wait = next(line for line in lines if "wait for" in line)
    assert wait.split(None, 2)[:2] == ["0.100s", "/ws"]
    assert "[wait for CHAT_INPUT from any client, up to 5s]" in wait
    assert '{"message_type":"CHAT","message":"nobody said "}' in out  # answered with ""
    assert "[close with code 4001 (bye)]" in out
    assert lines[-1] == (
        "chat: 2 frames, 0.200s in all; 1 wait for a client, shown as answered at once"
    )


def test_dry_run_of_a_forever_scenario_says_it_repeats_until_cancelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"ticker.yaml": FOREVER})
    code, out, _ = run_main(
        ["--scenario", "ticker", "--dry-run", "--scenarios", str(folder)], capsys
    )
    assert code == 0
    lines = out.splitlines()
    assert "repeats until cancelled" in lines[-1]
    assert lines[1].split(None, 2) == ["0.000s", "/ws", '{"message_type":"EVENT","message":"tick"}']
    assert lines[3].split()[0] == "2.000s"


def test_dry_run_with_a_seed_is_repeatable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"jittered.yaml": JITTERED})
    args = ["--scenario", "jittered", "--dry-run", "--scenarios", str(folder), "--seed"]
    runs = [run_main([*args, seed], capsys) for seed in ("3", "3", "4")]
    assert [code for code, _, _ in runs] == [0, 0, 0]
    first, again, other = (out for _, out, _ in runs)
    assert first == again
    assert first != other
    offsets = [line.split()[0] for line in first.splitlines()[1:-1]]
    assert offsets != ["0.000s", "0.200s", "0.400s", "0.600s", "0.800s"]  # jittered


def test_dry_run_renders_vars_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"chat.yaml": CHAT})
    args = ["--scenario", "chat", "--dry-run", "--scenarios", str(folder)]
    code, out, _ = run_main([*args, "--var", "user=Ada"], capsys)
    assert code == 0
    assert '"message":"Hi Ada, what now?"' in out
    assert '"message":"Ada said "' in out
    assert "nobody" not in out

    code, out, err = run_main([*args, "--var", "nope=1"], capsys)
    assert code == 1
    assert out == ""
    err = err.strip()
    assert err.startswith("replay: ")
    assert "'nope'" in err
    assert "declares: user" in err
    assert err.count("\n") == 0  # one sentence


def test_var_without_an_equals_sign_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", "chat", "--dry-run", "--var", "user"])
    assert exit_info.value.code == 2
    assert "is not NAME=VALUE" in capsys.readouterr().err


def test_schema_is_json_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    folder = folder_with(tmp_path, {})
    code, out, _ = run_main(["schema", "--scenarios", str(folder)], capsys)
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(yaml.safe_load(CHAT))
    assert not validator.is_valid(yaml.safe_load(USES_PROTOCOL))  # not a built-in type


def test_schema_includes_the_protocol_files_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jsonschema

    folder = folder_with(tmp_path, {"_protocol.yaml": PROTOCOL})
    code, out, _ = run_main(["schema", "--scenarios", str(folder)], capsys)
    assert code == 0
    schema = json.loads(out)
    choices = schema["$defs"]["MessageStep"]["properties"]["message"]["oneOf"]
    assert {"const": "TOKEN_USAGE", "description": "token counts after each LLM call"} in choices
    assert {"EVENT", "CHAT_INPUT"} <= {choice["const"] for choice in choices}
    assert jsonschema.Draft202012Validator(schema).is_valid(yaml.safe_load(USES_PROTOCOL))


def test_validate_reports_a_valid_protocol_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"_protocol.yaml": PROTOCOL, "usage.yaml": USES_PROTOCOL})
    code, out, _ = run_main(["validate", "--scenarios", str(folder)], capsys)
    assert code == 0, out
    assert f"ok       {folder / '_protocol.yaml'} (2 endpoints, 1 message type, 0 routes)" in out
    assert f"ok       {folder / 'usage.yaml'}" in out
    assert out.splitlines()[-1] == "1 valid, 0 invalid"


def test_validate_reports_a_broken_protocol_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = "message_types:\n  2token_usage: bad name\n  GOOD_ONE: fine\n"
    folder = folder_with(tmp_path, {"_protocol.yaml": broken, "chat.yaml": CHAT})
    code, out, _ = run_main(["validate", "--scenarios", str(folder)], capsys)
    assert code == 1
    assert f"INVALID  {folder / '_protocol.yaml'}" in out
    problem = next(line for line in out.splitlines() if "token_usage" in line)
    assert problem.startswith(f"  {folder / '_protocol.yaml'}:2:")
    assert "not a message type name" in problem
    assert f"ok       {folder / 'chat.yaml'}" in out  # the scenarios are still checked


def test_validate_reports_an_unparsable_protocol_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"_protocol.yaml": "message_types: [\n", "chat.yaml": CHAT})
    code, out, _ = run_main(["validate", "--scenarios", str(folder)], capsys)
    assert code == 1
    assert f"INVALID  {folder / '_protocol.yaml'}" in out


def test_validate_given_files_checks_the_protocol_file_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What 'replay validate scenarios/*.yaml' passes: the protocol file among the scenarios.
    folder = folder_with(tmp_path, {"_protocol.yaml": PROTOCOL, "usage.yaml": USES_PROTOCOL})
    files = [str(folder / "_protocol.yaml"), str(folder / "usage.yaml")]
    code, out, _ = run_main(["validate", *files], capsys)
    assert "INVALID" not in out, out
    assert code == 0
    assert f"ok       {folder / '_protocol.yaml'} (2 endpoints, 1 message type, 0 routes)" in out
    assert f"ok       {folder / 'usage.yaml'}" in out


def answer_chat(ws_url: str, ready: threading.Event, seen: list[str]) -> None:
    """A client thread: connect, then answer the CHAT_REQUESTED with CHAT_INPUT 'hello'."""

    async def converse() -> None:
        async with connect(f"{ws_url}/ws?client_id=cli-test") as ws:
            ready.set()
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                seen.append(frame["message"])
                if frame["message_type"] == "CHAT_REQUESTED":
                    await ws.send('{"message_type":"CHAT_INPUT","message":"hello"}')
                if frame["message_type"] == "CHAT":
                    return

    asyncio.run(converse())


def test_play_with_a_var_shows_the_wait_and_what_was_received(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from replay.server import Settings
    from tests.conftest import start_live_server

    folder = folder_with(tmp_path, {"chat.yaml": CHAT})
    live, server, thread = start_live_server(Settings(scenarios=folder, isolated=True))
    seen: list[str] = []
    ready = threading.Event()
    client = threading.Thread(target=answer_chat, args=(live.ws_url, ready, seen), daemon=True)
    try:
        client.start()
        assert ready.wait(10)
        deadline = time.monotonic() + 10
        while live.replay.delivery.client_counts()["/ws"] != 1:  # the server's own thread
            assert time.monotonic() < deadline, "the client never got in"
            time.sleep(0.01)
        args = ["--scenario", "chat", "--var", "user=Ada", "--url", live.url]
        code, out, err = run_main([*args, "--speed", "0", "--seed", "42"], capsys)
        client.join(10)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert code == 0, err
    assert seen == ["Hi Ada, what now?", "Ada said hello"]
    lines = out.splitlines()
    assert "playing 'chat'" in lines[0]
    assert lines[0].endswith(", seed 42)")
    assert '"message":"Hi Ada, what now?"}  -> 1 client' in out
    assert "waiting for CHAT_INPUT from any client..." in out
    received = next(line for line in lines if "received from" in line)
    assert received.strip() == (
        'received from cli-test: {"message_type":"CHAT_INPUT","message":"hello"}'
    )
    assert '"message":"Ada said hello"}  -> 1 client' in out
    assert "closed with code 4001: 1 connection on /ws" in out
    assert ": finished: 2 frames to 1 client in " in lines[-1]


# --json, --quiet and the progress bar.


def test_json_prints_one_event_per_line_and_nothing_else(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--scenario", "stream", "--url", live_server.url, "--speed", "0", "--json"]
    code, out, err = run_main(args, capsys)
    assert code == 0, err
    assert err == ""
    assert out.endswith("\n")
    events = [json.loads(line) for line in out.splitlines()]  # every line is JSON
    assert all(isinstance(event, dict) for event in events)
    assert [event["event"] for event in events] == [
        "start",
        "frame",
        "frame",
        "frame",
        "frame",
        "end",
    ]
    run_id = events[0]["run_id"]
    assert all(event["run_id"] == run_id for event in events)
    assert events[0]["scenario"] == "stream"
    assert json.loads(events[1]["frame"]) == {"type": "default", "content": "This is a "}
    assert (events[-1]["state"], events[-1]["sent"]) == ("finished", 4)


def test_json_of_a_failed_run_keeps_stdout_json(
    live_server: LiveServer, scenarios_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (scenarios_dir / "private.yaml").write_text("steps:\n  - chunk: hi\n    to: sender\n")
    args = ["--scenario", "private", "--url", live_server.url, "--speed", "0", "--json"]
    code, out, err = run_main(args, capsys)
    assert code == 1
    events = [json.loads(line) for line in out.splitlines()]
    assert [event["event"] for event in events] == ["start", "end"]
    assert events[-1]["state"] == "failed"
    assert "replay: the run failed: " in err


def test_quiet_prints_only_the_summary(
    live_server: LiveServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for flag in ("--quiet", "-q"):
        args = ["--scenario", "stream", "--url", live_server.url, "--speed", "0", flag]
        code, out, err = run_main(args, capsys)
        assert code == 0, err
        assert err == ""
        lines = out.splitlines()
        assert len(lines) == 1, out
        assert lines[0].startswith("run ")
        assert ": finished: 4 frames to 0 clients in " in lines[0]


def test_json_and_quiet_together_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", "stream", "--json", "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err
    assert "--json" in err
    assert "--quiet" in err


def test_play_draws_the_progress_under_the_lines_and_clears_it(live_server: LiveServer) -> None:
    out, screen, err = io.StringIO(), Terminal(), io.StringIO()
    code = play("stream", live_server.url, Options(speed=0), out, "text", screen, err=err)
    assert code == 0
    drawn = screen.getvalue()
    assert "4/4 frames, step 3" in drawn  # Rich's live display, drawn on each event
    assert drawn.endswith("\x1b[2K")  # taken off again: the lines it took are erased
    assert "\r" not in out.getvalue()  # the frames and summary are plain lines
    assert "\x1b" not in out.getvalue()
    assert len(out.getvalue().splitlines()) == 6
    # The hint, once, above the progress (on a terminal: err is that terminal).
    assert drawn.count("replay: note: no client is connected") == 1
    assert err.getvalue() == ""


@pytest.mark.parametrize("output", ["json", "quiet"])
def test_play_shows_no_bar_for_json_or_quiet(live_server: LiveServer, output: str) -> None:
    out, screen = io.StringIO(), io.StringIO()
    assert play("stream", live_server.url, Options(speed=0), out, output, screen) == 0
    assert screen.getvalue() == ""


def test_the_progress_goes_to_a_terminal_only(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--scenario", "stream", "--url", live_server.url, "--speed", "0"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err  # captured output is not a terminal
    assert captured.err.startswith("replay: note: no client is connected to /ws")
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(args) == 0
    assert "4/4 frames" in terminal.getvalue()
    assert "no client is connected" in terminal.getvalue()  # stdout is no terminal: stderr
    assert "\r" not in capsys.readouterr().out


def test_play_on_a_terminal_prints_in_colour_with_the_progress_among_the_lines(
    live_server: LiveServer,
) -> None:
    screen = Terminal()
    code = play("stream", live_server.url, Options(speed=0), screen, "text", screen, err=screen)
    assert code == 0
    shown = screen.getvalue()
    assert "\x1b[" in shown  # colours
    assert "4/4 frames" in shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert "-> 0 clients" in plain
    assert plain.count("note: no client is connected to /ws") == 1
    assert f"{live_server.url}/viewer" in plain
    assert ": finished: 4 frames to 0 clients in " in plain


# --- access: the token and non-loopback addresses -----------------------------------------------

REFUSE_WITHOUT_TOKEN = (
    "replay: refusing to serve on {host} without a token: anyone who can reach it could play "
    "scenarios and read what clients send. Pass --token TOKEN (or set REPLAY_TOKEN), or "
    "--insecure if that is what you want."
)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The servers `replay serve` would run; none actually runs (Server.run is replaced)."""
    monkeypatch.delenv("REPLAY_TOKEN", raising=False)
    started: list[Any] = []
    monkeypatch.setattr(
        replay.server.Server, "run", lambda self, sockets=None: started.append(self)
    )
    return started


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "192.168.1.10", "replay.example.com"])
def test_serve_on_a_non_loopback_address_without_a_token_exits_2(
    scenarios_dir: Path, served: list[Any], capsys: pytest.CaptureFixture[str], host: str
) -> None:
    assert main(["serve", "--host", host, "--scenarios", str(scenarios_dir)]) == 2
    assert capsys.readouterr().err.strip() == REFUSE_WITHOUT_TOKEN.format(host=host)
    assert served == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_serve_on_loopback_needs_no_token(
    scenarios_dir: Path, served: list[Any], host: str
) -> None:
    assert main(["serve", "--host", host, "--scenarios", str(scenarios_dir)]) == 0
    [server] = served
    assert server.config.host == host
    assert server.config.app.state.replay.settings.token is None


def test_serve_insecure_serves_without_a_token(scenarios_dir: Path, served: list[Any]) -> None:
    assert (
        main(["serve", "--host", "0.0.0.0", "--insecure", "--scenarios", str(scenarios_dir)]) == 0
    )
    [server] = served
    assert server.config.host == "0.0.0.0"
    assert server.config.app.state.replay.settings.token is None


def test_serve_with_a_token_from_the_option_or_the_environment(
    scenarios_dir: Path, served: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        main(["serve", "--host", "0.0.0.0", "--token", "T", "--scenarios", str(scenarios_dir)]) == 0
    )
    monkeypatch.setenv("REPLAY_TOKEN", "from-env")
    assert main(["serve", "--host", "0.0.0.0", "--scenarios", str(scenarios_dir)]) == 0
    assert [s.config.app.state.replay.settings.token for s in served] == ["T", "from-env"]


def test_serve_passes_the_limits_on(scenarios_dir: Path, served: list[Any]) -> None:
    limits = ["--ws-origin", "http://a.example", "--ws-origin", "http://b.example"]
    limits += ["--max-clients", "7", "--client-rate", "2.5", "--max-frame-size", "4096"]
    limits += ["--client-bytes", "65536"]
    assert main(["serve", "--scenarios", str(scenarios_dir), *limits]) == 0
    [server] = served
    settings = server.config.app.state.replay.settings
    assert settings.ws_origins == ["http://a.example", "http://b.example"]
    assert (settings.max_clients, settings.client_rate) == (7, 2.5)
    assert settings.client_bytes == 65536
    assert server.config.ws_max_size == 4096


def test_serve_defaults_limit_frames_to_one_mib(scenarios_dir: Path, served: list[Any]) -> None:
    assert main(["serve", "--scenarios", str(scenarios_dir)]) == 0
    [server] = served
    assert server.config.ws_max_size == 1024 * 1024
    assert server.config.app.state.replay.settings.ws_origins == []


def test_serve_passes_the_web_page_options_on(scenarios_dir: Path, served: list[Any]) -> None:
    pages = ["--allow-host", "devbox.lan", "--allow-host", "*.example.test"]
    pages += ["--cors-origin", "https://app.example", "--cors-origin", "*"]
    assert main(["serve", "--scenarios", str(scenarios_dir), "--host", "::1", *pages]) == 0
    [server] = served
    settings = server.config.app.state.replay.settings
    assert settings.bind == "::1"
    assert settings.allowed_hosts == ["devbox.lan", "*.example.test"]
    assert settings.cors_origins == ["https://app.example", "*"]


def test_serve_passes_the_upstream_and_the_recordings_folder_on(
    scenarios_dir: Path, served: list[Any], tmp_path: Path
) -> None:
    live = ["--upstream", "ws://127.0.0.1:8000/api", "--recordings", str(tmp_path)]
    assert main(["serve", "--scenarios", str(scenarios_dir), *live]) == 0
    assert main(["serve", "--scenarios", str(scenarios_dir)]) == 0
    proxied, alone = (server.config.app.state.replay for server in served)
    assert (proxied.settings.upstream, proxied.settings.recordings) == (
        "ws://127.0.0.1:8000/api",
        tmp_path,
    )
    assert proxied.upstream.target("/ws") == "ws://127.0.0.1:8000/api/ws"
    assert proxied.runner.marks == {"injected": True}
    assert (alone.upstream, alone.settings.recordings) == (None, Path("recordings"))
    assert alone.runner.marks == {}


def test_serve_refuses_an_upstream_that_is_not_a_websocket_url(
    scenarios_dir: Path, served: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--scenarios", str(scenarios_dir), "--upstream", "http://x:1"]) == 1
    assert capsys.readouterr().err.strip() == (
        "replay: --upstream 'http://x:1': the scheme is 'http'; expected ws://HOST:PORT or "
        "wss://HOST:PORT, optionally with a path that clients' paths are appended to"
    )
    assert served == []


def test_serve_defaults_answer_only_loopback_names_and_pages(
    scenarios_dir: Path, served: list[Any]
) -> None:
    assert main(["serve", "--scenarios", str(scenarios_dir)]) == 0
    [server] = served
    settings = server.config.app.state.replay.settings
    assert (settings.bind, settings.allowed_hosts, settings.cors_origins) == ("127.0.0.1", [], [])


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-clients", "0"), ("--max-frame-size", "-1"), ("--max-clients", "x")],
)
def test_serve_refuses_limits_below_one(
    scenarios_dir: Path,
    served: list[Any],
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--scenarios", str(scenarios_dir), option, value])
    assert exit_info.value.code == 2
    assert f"{value!r} is not a whole number of at least 1" in capsys.readouterr().err
    assert served == []


@pytest.mark.parametrize("option", ["--client-rate", "--client-bytes"])
@pytest.mark.parametrize("rate", ["0", "-5", "nan"])
def test_serve_refuses_a_client_rate_that_is_not_positive(
    scenarios_dir: Path,
    served: list[Any],
    capsys: pytest.CaptureFixture[str],
    rate: str,
    option: str,
) -> None:
    assert main(["serve", "--scenarios", str(scenarios_dir), option, rate]) == 2
    assert capsys.readouterr().err.strip() == f"replay: {option} must be more than 0"
    assert served == []


@pytest.fixture
def guarded_server(scenarios_dir: Path) -> Iterator[LiveServer]:
    live, server, thread = start_live_server(
        Settings(scenarios=scenarios_dir, isolated=True, token="s3cret")
    )
    try:
        yield live
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_play_sends_the_token(
    guarded_server: LiveServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REPLAY_TOKEN", raising=False)
    url = guarded_server.url
    args = ["--scenario", "stream", "--url", url, "--speed", "0", "--quiet"]
    assert main([*args, "--token", "s3cret"]) == 0
    assert ": finished: 4 frames" in capsys.readouterr().out
    monkeypatch.setenv("REPLAY_TOKEN", "s3cret")
    assert main(args) == 0
    assert ": finished: 4 frames" in capsys.readouterr().out
    [first, second] = guarded_server.replay.runner.runs()
    assert first.state == second.state == "finished"


@pytest.mark.parametrize("token", [None, "wrong"])
def test_play_without_the_right_token_says_so(
    guarded_server: LiveServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
) -> None:
    monkeypatch.delenv("REPLAY_TOKEN", raising=False)
    args = ["--scenario", "stream", "--url", guarded_server.url, "--speed", "0"]
    assert main(args + (["--token", token] if token else [])) == 1
    assert capsys.readouterr().err.strip() == (
        "replay: this server needs its token: send 'Authorization: Bearer <token>' (or add "
        "?token=<token> to the URL); replay serve was started with --token or REPLAY_TOKEN"
    )
    assert guarded_server.replay.runner.runs() == []


# --- serve's start-up: the real address, and the ready file ---------------------------------------

ROOT = Path(__file__).resolve().parent.parent
#: Seconds a served process may take to start, answer or stop (generous: 2 shared cores).
STARTUP = 20.0


def wait_until(done: Any, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    """Poll ``done()`` until it is true; fail at once if ``process`` exits, or after STARTUP."""
    deadline = time.monotonic() + STARTUP
    while not done():
        if process.poll() is not None:
            raise AssertionError(
                f"replay serve exited ({process.returncode}) before {what}:\n"
                + log.read_text(errors="replace")[-3000:]
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {STARTUP}s:\n" + log.read_text()[-3000:])
        time.sleep(0.02)


def test_serve_on_port_0_prints_its_real_port_and_writes_a_ready_file(
    scenarios_dir: Path, tmp_path: Path
) -> None:
    ready, out, err = tmp_path / "ready.json", tmp_path / "stdout", tmp_path / "stderr"
    ready.write_text('{"url": "http://127.0.0.1:1", "port": 1, "pid": 1}')  # a stale one
    command = [sys.executable, "-m", "replay", "serve", "--port", "0", "--ready-file", str(ready)]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "--scenarios", str(scenarios_dir)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until(
            lambda: ready.exists() and json.loads(ready.read_text())["pid"] == process.pid,
            process,
            "ready file",
            err,
        )
        document = json.loads(ready.read_text())
        port = document["port"]
        assert isinstance(port, int)
        assert port > 0
        assert document == {
            "url": f"http://127.0.0.1:{port}",
            "ws": f"ws://127.0.0.1:{port}",
            "port": port,
            "pid": process.pid,
        }
        with urllib.request.urlopen(document["url"] + "/healthz", timeout=STARTUP) as answer:
            assert json.loads(answer.read())["status"] == "ok"
        # The line was on stdout before the file was written, flushed (stdout is a file);
        # uvicorn's access log follows it there.
        line = out.read_text().splitlines()[0]
        assert f"on http://127.0.0.1:{port} (dashboard: http://127.0.0.1:{port}/," in line
        assert f"WebSockets: ws://127.0.0.1:{port}/ws and /ws/stream)" in line
        assert [name.name for name in tmp_path.iterdir() if name.name.startswith(".")] == []

        process.send_signal(signal.SIGTERM)
        process.wait(STARTUP)
        assert not ready.exists()
        # A graceful stop: uvicorn shuts down, then ends the process with the signal it
        # caught, as Unix programs do (the shell sees 143).
        assert process.returncode == -signal.SIGTERM
        log = err.read_text()
        assert "Finished server process" in log
        assert "Traceback" not in log
        assert "ERROR" not in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("where", "problem"),
    [("absent/ready.json", "no folder {tmp}/absent"), (".", "{tmp} is a folder")],
)
def test_serve_refuses_a_ready_file_it_could_not_write(
    scenarios_dir: Path,
    tmp_path: Path,
    served: list[Any],
    capsys: pytest.CaptureFixture[str],
    where: str,
    problem: str,
) -> None:
    ready = tmp_path / where
    args = ["serve", "--scenarios", str(scenarios_dir), "--ready-file", str(ready)]
    assert main(args) == 2
    said = capsys.readouterr().err.strip()
    assert said == "replay: --ready-file: " + problem.format(tmp=tmp_path)
    assert served == []


def test_serve_removes_an_old_ready_file_before_it_starts(
    scenarios_dir: Path, tmp_path: Path, served: list[Any]
) -> None:
    ready = tmp_path / "ready.json"
    ready.write_text('{"url": "http://127.0.0.1:1", "port": 1, "pid": 1}')
    assert main(["serve", "--scenarios", str(scenarios_dir), "--ready-file", str(ready)]) == 0
    [server] = served  # its run() is replaced: it never got ready
    assert server.ready_file == ready
    assert not ready.exists()


def test_the_bound_address_prefers_ipv4_and_brackets_ipv6() -> None:
    with contextlib.ExitStack() as stack:
        sockets = []
        for family, host in [(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")]:
            sock = stack.enter_context(socket.socket(family))
            try:
                sock.bind((host, 0))
            except OSError:
                pytest.skip(f"no {host} here")
            sockets.append(sock)
        ipv6, ipv4 = sockets
        assert bound_address(sockets) == ("127.0.0.1", ipv4.getsockname()[1])
        host, port = bound_address([ipv6]) or ("", 0)
        assert (host, port) == ("::1", ipv6.getsockname()[1])
        assert ready_document(host, port)["url"] == f"http://[::1]:{port}"
        assert bound_address([]) is None


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:80"),
        ("::", "http://[::1]:80"),
        ("10.1.2.3", "http://10.1.2.3:80"),
    ],
)
def test_the_ready_file_names_loopback_for_a_wildcard_address(host: str, url: str) -> None:
    assert ready_document(host, 80)["url"] == url
    assert ready_document(host, 80)["ws"] == url.replace("http", "ws")


# --- --dry-run --answer and --state; the new steps in the output ------------------------------

DECIDE = """
vars: {strict: false}
steps:
  - message: CHAT_REQUESTED
    text: Go on?
  - wait: CHAT_INPUT
  - choose:
      - when: "received.message == 'yes' and not state.paused"
        steps:
          - message: CHAT
            text: "going on at turn {{ state.turn }}"
          - set: {turn: "{{ state.turn + 1 }}"}
      - otherwise:
          - message: CHAT
            text: "stopping ({{ received.message }})"
  - wait_connect: any
    endpoint: /ws
    new: true
"""


def test_dry_run_answers_follow_the_given_frames_and_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"decide.yaml": DECIDE})
    args = ["--scenario", "decide", "--dry-run", "--scenarios", str(folder)]
    code, out, err = run_main(
        [*args, "--answer", "CHAT_INPUT:yes", "--state", "turn=3", "--state", "paused=false"],
        capsys,
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[2].split(None, 2)[2] == (
        "[wait for CHAT_INPUT from any client, up to 60s: answered "
        '{"message_type":"CHAT_INPUT","message":"yes"}]'
    )
    assert lines[3].split(None, 2) == [
        "0.000s",
        "-",
        "[choose: branch 0 (when received.message == 'yes' and not state.paused)]",
    ]
    assert '{"message_type":"CHAT","message":"going on at turn 3"}' in lines[4]
    assert lines[5].split(None, 2) == ["0.000s", "-", "[set turn = 4]"]
    assert lines[6].split(None, 2)[:2] == ["0.000s", "/ws"]
    assert "[wait for a new connection from any client to /ws, up to 60s]" in lines[6]
    assert lines[-1] == (
        "decide: 2 frames, 0.000s in all; 2 waits for a client, shown as answered at once"
    )


def test_dry_run_whole_frame_answers_and_unused_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"decide.yaml": DECIDE})
    args = ["--scenario", "decide", "--dry-run", "--scenarios", str(folder), "--state", "turn=1"]
    pause = '{"message_type": "PAUSE_REQUEST", "message": "now"}'
    answer = '{"message_type": "CHAT_INPUT", "message": "no thanks"}'
    code, out, err = run_main([*args, "--answer", pause, "--answer", answer], capsys)
    assert code == 0, err
    assert '"message":"stopping (no thanks)"' in out
    assert out.splitlines()[-1] == f"no wait took --answer {pause}"


def test_dry_run_without_answers_still_answers_with_an_empty_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"decide.yaml": DECIDE})
    args = ["--scenario", "decide", "--dry-run", "--scenarios", str(folder)]
    code, out, _ = run_main(args, capsys)
    assert code == 0
    assert '"message":"stopping ()"' in out
    assert "answered {" not in out


def test_dry_run_a_condition_that_needs_state_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"decide.yaml": DECIDE})
    args = ["--scenario", "decide", "--dry-run", "--scenarios", str(folder)]
    code, out, err = run_main([*args, "--answer", "CHAT_INPUT:yes"], capsys)
    assert code == 1
    assert out == ""  # the timeline is made before anything is printed
    assert err.startswith("replay: scenario 'decide', step 2.choose.0.when: condition ")
    assert "no attribute 'paused'" in err
    assert "unless an --answer fits, and starts from the --state given" in err


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        (["--answer", "yes"], "'yes' is not an answer: give a whole frame as a JSON object"),
        (["--answer", "2chat input:yes"], "is not an answer"),
        (["--answer", "{not json"], "'{not json' is not a JSON frame"),
        (["--answer", "[1, 2]"], "is not an answer"),
        (["--state", "paused"], "is not NAME=VALUE"),
    ],
)
def test_bad_answers_and_state_are_usage_errors(
    argument: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", "chat", "--dry-run", *argument])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_answers_and_state_need_a_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--scenario", "chat", "--answer", "CHAT_INPUT:yes"])
    assert exit_info.value.code == 2
    assert "--answer and --state only apply to --dry-run" in capsys.readouterr().err


# --- replay asyncapi --------------------------------------------------------------------------

EVENTS_PROTOCOL = """\
extends: none
endpoints:
  /socket:
    messages: {type: event, payload: data, data: json}
message_types:
  price_update: {sent_by: server, schema: {type: object}}
"""


def test_asyncapi_prints_schwarms_document_as_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from replay import __version__

    folder = folder_with(tmp_path, {"chat.yaml": CHAT})
    code, out, err = run_main(["asyncapi", "--scenarios", str(folder)], capsys)
    assert (code, err) == (0, "")
    assert out.startswith("asyncapi: 3.0.0\ninfo:\n")
    document = yaml.safe_load(out)
    assert document["info"]["title"] == tmp_path.name  # the project the folder is in
    assert document["info"]["version"] == __version__
    assert document["servers"]["ws"] == {
        "host": "localhost:8123",
        "protocol": "ws",
        "description": "replay's WebSocket endpoints",
    }
    assert [c["address"] for c in document["channels"].values()] == ["/ws", "/ws/stream"]


def test_asyncapi_as_json_for_another_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"_protocol.yaml": EVENTS_PROTOCOL})
    args = ["asyncapi", "--scenarios", str(folder), "--format", "json"]
    code, out, _ = run_main([*args, "--server-url", "wss://replay.test:9000/base"], capsys)
    assert code == 0
    document = json.loads(out)
    assert document["servers"]["ws"]["host"] == "replay.test:9000"
    assert document["servers"]["ws"]["protocol"] == "wss"
    assert document["servers"]["ws"]["pathname"] == "/base"
    assert [c["address"] for c in document["channels"].values()] == ["/socket"]
    assert document["components"]["schemas"] == {"price_update": {"type": "object"}}


@pytest.mark.parametrize(("name", "form"), [("api.json", "json"), ("api.yaml", "yaml")])
def test_asyncapi_writes_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, form: str
) -> None:
    folder = folder_with(tmp_path, {})
    target = tmp_path / name
    code, out, _ = run_main(["asyncapi", "--scenarios", str(folder), "-o", str(target)], capsys)
    assert code == 0
    text = target.read_text()
    assert text.startswith("{") == (form == "json")
    document = yaml.safe_load(text)  # YAML reads JSON too
    assert document["asyncapi"] == "3.0.0"
    operations = len(document["operations"])
    assert operations > len(document["channels"]) == 2
    assert out == f"wrote {target}: AsyncAPI 3.0.0, 2 channels, {operations} operations\n"


def test_asyncapi_refuses_a_protocol_file_with_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {"_protocol.yaml": "message_types:\n  2BAD: x\n"})
    code, out, err = run_main(["asyncapi", "--scenarios", str(folder)], capsys)
    assert (code, out) == (1, "")
    protocol_file = folder / "_protocol.yaml"
    assert f"INVALID  {protocol_file}\n" in err
    assert f"  {protocol_file}:2:3: message_types.2BAD: not a message type name" in err
    assert err.endswith("replay: fix the protocol file first (replay validate)\n")


def test_asyncapi_problems_with_the_command_line_and_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = folder_with(tmp_path, {})
    with pytest.raises(SystemExit) as exited:
        main(["asyncapi", "--scenarios", str(folder), "--server-url", "http://localhost:8123"])
    assert exited.value.code == 2
    assert "'http://localhost:8123' is not a WebSocket URL" in capsys.readouterr().err
    code, _, err = run_main(["asyncapi", "--scenarios", str(tmp_path / "absent")], capsys)
    assert code == 1
    assert "does not exist" in err
    target = tmp_path / "absent" / "api.yaml"
    code, _, err = run_main(["asyncapi", "--scenarios", str(folder), "-o", str(target)], capsys)
    assert code == 1
    assert err.startswith(f"replay: cannot write {target}: ")


# --- replay record ------------------------------------------------------------------------------


def start_record(upstream: str, tmp_path: Path, *options: str) -> subprocess.Popen[bytes]:
    """``replay record --port 0`` in a subprocess; stdout to tmp_path/stdout."""
    command = [sys.executable, "-m", "replay", "record", "--upstream", upstream, "--port", "0"]
    with (tmp_path / "stdout").open("wb") as out, (tmp_path / "stderr").open("wb") as err:
        return subprocess.Popen(
            [*command, "--out", str(tmp_path / "out"), *options],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )


async def record_port(process: subprocess.Popen[bytes], tmp_path: Path) -> int:
    """Wait for the line saying where ``replay record`` listens; its port."""
    deadline = time.monotonic() + STARTUP
    pattern = re.compile(r"recording on ws://127\.0\.0\.1:(\d+) ")
    while not (found := pattern.search((tmp_path / "stdout").read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("no address line:\n" + (tmp_path / "stderr").read_text()[-3000:])
        await asyncio.sleep(0.02)
    return int(found.group(1))


async def wait_for_exit(process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + STARTUP
    while process.poll() is None:
        assert time.monotonic() < deadline, "replay record did not stop"
        await asyncio.sleep(0.02)
    return process.returncode


async def test_record_on_port_0_proxies_records_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    async with ws_upstream() as (upstream, seen):
        process = start_record(upstream, tmp_path, "--ready-file", str(ready))
        try:
            port = await record_port(process, tmp_path)
            assert json.loads(ready.read_text())["ws"] == f"ws://127.0.0.1:{port}"
            async with connect(f"ws://127.0.0.1:{port}/ws?token=s3cret") as ws:
                await ws.send("hello")
                assert await asyncio.wait_for(ws.recv(), STARTUP) == "hello"
                process.send_signal(signal.SIGINT)
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), STARTUP)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1001
            assert await wait_for_exit(process) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert seen.requests[0].path == "/ws?token=s3cret"
    assert not ready.exists()
    (recording,) = read_all(tmp_path / "out")
    assert recording.header.query == "token=***"
    assert [(f.side, f.op) for f in recording.frames][:2] == [
        ("client", "text"),
        ("server", "text"),
    ]
    assert recording.end is not None
    assert recording.end.code == 1001
    shown = (tmp_path / "stdout").read_text()
    assert f"session {recording.header.session} opened: /ws?token=*** -> " in shown
    assert "s3cret" not in shown
    assert "stopped: 1 session and 0 requests recorded in " in shown
    assert "\r" not in shown  # not a terminal: plain lines
    assert "Traceback" not in (tmp_path / "stderr").read_text()


async def test_a_recording_cut_short_by_a_killed_proxy_is_still_readable(tmp_path: Path) -> None:
    async with ws_upstream() as (upstream, _):
        process = start_record(upstream, tmp_path)
        try:
            port = await record_port(process, tmp_path)
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                for text in ("one", "two"):
                    await ws.send(text)
                    await asyncio.wait_for(ws.recv(), STARTUP)
                # A frame is passed on first, then written down: wait for the last line.
                await eventually(lambda: len(read_all(tmp_path / "out")[0].frames) == 4)
                process.kill()
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), STARTUP)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    (recording,) = read_all(tmp_path / "out")
    assert [f.data for f in recording.frames] == ["one", "one", "two", "two"]
    assert recording.end is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--upstream", "ftp://h"], "the scheme 'ftp' is not ws or wss"),
        (["--upstream", "ws://h", "--redact", "a..b"], "--redact 'a..b' is not a JSON path"),
        ([], "the following arguments are required: --upstream"),
    ],
)
def test_record_usage_errors(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["record", *args])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_record_says_when_it_cannot_listen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_main(
            [
                "record",
                "--upstream",
                "ws://127.0.0.1:1",
                "--port",
                str(port),
                "--out",
                str(tmp_path),
            ],
            capsys,
        )
    assert code == 1
    assert err.startswith(f"replay: cannot listen on 127.0.0.1:{port}: ")


def test_record_refuses_a_ready_file_it_could_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["record", "--upstream", "ws://h", "--ready-file", str(tmp_path / "absent" / "r.json")]
    code, _, err = run_main(args, capsys)
    assert code == 2
    assert err == f"replay: --ready-file: no folder {tmp_path}/absent\n"


# --- replay convert ---------------------------------------------------------------------------


def recorded_files(tmp_path: Path, sessions: list[Any] | None = None) -> list[str]:
    """A recorded Schwarm session written as the proxy writes it, one file a session."""
    from tests.recordings import http, schwarm_stream, schwarm_ws

    folder = tmp_path / "recorded"
    folder.mkdir(exist_ok=True)
    paths = []
    for recorded in sessions or [
        schwarm_ws(),
        schwarm_stream(),
        http("h", 6.0, "POST", "/break", True),
    ]:
        path = folder / f"{recorded.header.session}.jsonl"
        path.write_text("".join(recorded.lines()), encoding="utf-8")
        paths.append(str(path))
    return paths


def test_convert_prints_the_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(
        ["convert", *recorded_files(tmp_path), "--match", "message.action"], capsys
    )
    assert (code, err) == (0, "")
    document = yaml.safe_load(out)
    assert document["description"].startswith("Recorded from ws://127.0.0.1:8000 on 2024-12-03")
    assert {"wait": "PAUSE_REQUEST", "fields": {"message.action": "^pause$"}} in document["steps"]
    assert "# left out at 6.000s: a request POST /break that no declared route answers" in out


def test_convert_into_a_folder_with_the_inferred_protocol_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scenarios"
    args = ["convert", *recorded_files(tmp_path), "--scenarios", str(folder), "--name", "session"]
    code, out, err = run_main(
        [*args, "--protocol", "--timing", "compact", "--max-gap", "1s"], capsys
    )
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"wrote {folder / 'session.yaml'}: 16 frames, 4 waits, 1.309s of server time",
        f"wrote {folder / '_protocol.yaml'}: 6 message types, 1 route",
    ]
    assert {"wait": "POST /break"} in yaml.safe_load((folder / "session.yaml").read_text())["steps"]
    code, out, _ = run_main(["validate", "--scenarios", str(folder)], capsys)
    assert (code, out.splitlines()[-1]) == (0, "1 valid, 0 invalid")
    code, _, err = run_main(args, capsys)  # again: the file is there
    exists = f"{folder / 'session.yaml'} exists: choose another name, or --force to replace it"
    assert (code, err) == (1, f"replay: {exists}\n")
    code, _, err = run_main([*args[:-1], "again", "--protocol"], capsys)
    protocol_file = folder / "_protocol.yaml"
    assert err == (
        f"replay: {protocol_file} exists: convert without --protocol to use it, or --force to "
        "replace it\n"
    )
    code, out, _ = run_main(
        [*args, "--force", "--template", "message.span_id={{ hex(16) }}"], capsys
    )
    assert code == 0  # the folder's own protocol, now: the POST /break route counts
    assert "{{ hex(16) }}" in (folder / "session.yaml").read_text()
    assert run_main(["validate", "--scenarios", str(folder)], capsys)[0] == 0


def test_convert_protocol_alone_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(["convert", *recorded_files(tmp_path), "--protocol"], capsys)
    assert code == 0
    assert out.startswith("# Inferred from recorded sessions by `replay convert --protocol`")
    assert yaml.safe_load(out)["extends"] == "schwarm"


def test_convert_to_a_file_writes_its_parts_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import replay.record.convert

    monkeypatch.setattr(replay.record.convert, "PART_BYTES", 1000)
    target = tmp_path / "out" / "long.yaml"
    code, out, _ = run_main(["convert", *recorded_files(tmp_path), "-o", str(target)], capsys)
    assert code == 0
    parts = sorted(path.name for path in target.parent.glob("long-part-*.yaml"))
    assert len(parts) >= 3
    assert out.strip().endswith(f"in {len(parts)} parts played in order")
    code, _, err = run_main(["convert", *recorded_files(tmp_path)], capsys)
    assert code == 1
    assert err.startswith(
        f"replay: the scenario takes {len(parts)} files (a file holds at most 1 MiB)"
    )


def test_convert_of_another_protocol_says_it_used_the_inferred_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.recordings import session

    feed = session("/prices", "feed").server(0.1, {"event": "tick", "data": {"p": 1}})
    code, out, err = run_main(["convert", *recorded_files(tmp_path, [feed])], capsys)
    assert code == 0
    assert "converted with the one inferred from them" in err
    assert {"message": "tick", "data": {"p": 1}} in yaml.safe_load(out)["steps"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "cannot read missing.jsonl: No such file or directory"),
        (["--name", "x"], "--name goes with --scenarios DIR"),
        (["--timing", "exact", "--max-gap", "2s"], "--max-gap goes with --timing compact"),
        (["-o", "x.yml"], "x.yml is not a scenario file: name it NAME.yaml"),
    ],
)
def test_convert_errors_are_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_main(["convert", *recorded_files(tmp_path), *args], capsys)
    assert (code, out) == (1, "")
    assert err.startswith("replay: ")
    assert message in err
    assert err.count("\n") == 1


def test_convert_says_what_is_not_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "notes.jsonl"
    bad.write_text('{"hello": "world"}\n')
    code, _, err = run_main(["convert", str(bad)], capsys)
    assert code == 1
    reason = 'the first line has no "format": "replay-recording"'
    assert err == f"replay: {bad}:1: not a replay recording: {reason}\n"
    empty = tmp_path / "empty.jsonl"
    from tests.recordings import session

    empty.write_text("".join(session("/ws", "e").lines()))
    code, _, err = run_main(["convert", str(empty)], capsys)
    assert (code, err) == (1, "replay: the recordings hold no frames: nothing to convert\n")


def test_convert_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["convert", *recorded_files(tmp_path), "--template", "no-equals"])
    assert exited.value.code == 2
    assert "is not PATH=EXPR" in capsys.readouterr().err


# --- run-control keys ---------------------------------------------------------------------------

WAITS = """
steps:
  - message: EVENT
    text: hi
  - wait: CHAT_INPUT
    timeout: 60s
  - message: CHAT
    text: bye
"""


def eventually_true(check: Any, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def play_in_a_thread(
    url: str, name: str, keys: Any, screen: Terminal, out: io.StringIO
) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def playing() -> None:
        try:
            result["code"] = play(name, url, Options(), out, "text", screen, keys, io.StringIO())
        except Exception as error:
            result["error"] = error
            out.write(f"failed: {error!r}")

    thread = threading.Thread(target=playing, daemon=True)
    thread.start()
    return thread, result


def test_keys_call_the_control_routes_and_q_cancels(
    live_server: LiveServer, scenarios_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from replay import remote

    (scenarios_dir / "waits.yaml").write_text(WAITS)
    calls: list[tuple[str, str, float | None]] = []

    def control(
        url: str, run_id: str, action: str, token: str | None = None, speed: float | None = None
    ) -> dict[str, Any]:
        calls.append((run_id, action, speed))
        return {"run_id": run_id, "paused": True, "speed": speed or 1.0}

    monkeypatch.setattr(remote, "control", control)
    keyboard, program = os.openpty()
    keys = open(program, closefd=False)  # noqa: SIM115 (closed below)
    screen, out = Terminal(), io.StringIO()
    try:
        thread, result = play_in_a_thread(live_server.url, "waits", keys, screen, out)
        eventually_true(lambda: "waiting for CHAT_INPUT" in out.getvalue(), "the run never waited")
        os.write(keyboard, b" ")
        eventually_true(lambda: len(calls) == 1, "space did not pause")
        os.write(keyboard, b"+")
        eventually_true(lambda: len(calls) == 2, "+ did not speed up")
        eventually_true(lambda: "PAUSED" in screen.getvalue(), "the pause is not shown")
        os.write(keyboard, b"q")
        thread.join(20)
        assert not thread.is_alive(), "q did not end the run"
    finally:
        keys.close()
        os.close(program)
        os.close(keyboard)
    run_id = calls[0][0]
    assert calls == [(run_id, "pause", None), (run_id, "speed", 2.0)]
    assert result["code"] == 130
    assert out.getvalue().splitlines()[-1].startswith(f"run {run_id}: cancelled: 1 frame")
    assert "space pause/resume" in screen.getvalue()  # the footer
    assert live_server.replay.runner.get(run_id).state.value == "cancelled"


def test_progress_and_keys_go_where_the_terminals_are(monkeypatch: pytest.MonkeyPatch) -> None:
    from replay.cli import _terminals

    piped, screen, keyboard = io.StringIO(), Terminal(), Terminal()
    for stdout, stderr, stdin, expected in [
        (screen, piped, keyboard, (screen, keyboard)),  # progress among the lines
        (piped, screen, keyboard, (screen, keyboard)),  # lines to a file, progress on stderr
        (piped, piped, keyboard, (None, None)),  # nothing to draw on: no keys either
        (screen, screen, piped, (screen, None)),  # keys only from a terminal
    ]:
        monkeypatch.setattr("sys.stdout", stdout)
        monkeypatch.setattr("sys.stderr", stderr)
        monkeypatch.setattr("sys.stdin", stdin)
        assert _terminals() == expected
