"""The replay command: every sub-command, its output and its exit code."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from replay.cli import main
from tests.conftest import LiveServer


def names_in(folder: Path) -> list[str]:
    """The scenario names a folder holds (the shipped folder grows over time)."""
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.name.startswith((".", "_")))


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
