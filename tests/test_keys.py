"""Run-control keys: what each key calls, what the footer then says, and reading keys
from a (pseudo-)terminal."""

from __future__ import annotations

import os
import queue
import termios
from typing import Any

import pytest

from replay.errors import ServerRefused
from replay.keys import KeyReader, RunKeys
from replay.terminal import RunStatus
from replay.timeline import MAX_SPEED, MIN_SPEED


class FakeRun:
    """The control routes of one run, as the contract says they answer."""

    def __init__(self, speed: float = 1.0, ended: bool = False) -> None:
        self.calls: list[tuple[str, str, float | None]] = []
        self.cancelled: list[str] = []
        self.paused = False
        self.speed = speed
        self.ended = ended

    def control(self, run_id: str, action: str, speed: float | None) -> dict[str, Any]:
        self.calls.append((run_id, action, speed))
        if self.ended:
            raise ServerRefused(409, f"run {run_id} has already ended")
        if action in ("pause", "step"):
            self.paused = True
        elif action == "resume":
            self.paused = False
        elif action == "speed":
            assert speed is not None
            self.speed = speed
        summary: dict[str, Any] = {"run_id": run_id, "paused": self.paused, "speed": self.speed}
        if action == "step":
            summary["stepped"] = {"kind": "frame", "step": "2"}
        return summary

    def cancel(self, run_id: str) -> None:
        self.cancelled.append(run_id)


def keys_for(run: FakeRun, speed: float = 1.0) -> tuple[RunKeys, RunStatus]:
    status = RunStatus(keys=True, speed=speed)
    return RunKeys(status, run.control, run.cancel), status


def test_space_pauses_and_resumes() -> None:
    run = FakeRun()
    keys, status = keys_for(run)
    keys.begin("r1")
    keys.press(" ")
    assert run.calls == [("r1", "pause", None)]
    assert status.paused
    assert status.message == "paused"
    keys.press(" ")
    assert run.calls[-1] == ("r1", "resume", None)
    assert not status.paused
    assert status.message == "resumed"


def test_s_steps_and_says_what_happened() -> None:
    run = FakeRun()
    keys, status = keys_for(run)
    keys.begin("r1")
    keys.press("s")
    assert run.calls == [("r1", "step", None)]
    assert status.paused
    assert status.message == "stepped: frame (step 2); paused"


def test_plus_and_minus_double_and_halve_the_speed_within_bounds() -> None:
    run = FakeRun(speed=2.0)
    keys, status = keys_for(run, speed=2.0)
    keys.begin("r1")
    keys.press("+")
    assert run.calls[-1] == ("r1", "speed", 4.0)
    assert status.speed == 4.0
    keys.press("-")
    keys.press("-")
    assert [call[2] for call in run.calls] == [4.0, 2.0, 1.0]
    assert status.message == "speed 1x"
    status.speed = MAX_SPEED
    keys.press("+")
    assert len(run.calls) == 3  # nothing faster to ask for
    assert "fastest" in status.message
    status.speed = MIN_SPEED * 1.5
    keys.press("-")
    assert run.calls[-1] == ("r1", "speed", MIN_SPEED)


def test_speed_keys_at_speed_0_say_there_are_no_pauses() -> None:
    run = FakeRun(speed=0.0)
    keys, status = keys_for(run, speed=0.0)
    keys.begin("r1")
    keys.press("+")
    assert run.calls == []
    assert "speed 0" in status.message


def test_q_cancels_once_even_before_the_run_started() -> None:
    run = FakeRun()
    keys, status = keys_for(run)
    keys.press("q")
    assert keys.quit
    assert run.cancelled == []  # no run yet
    keys.begin("r1")
    assert run.cancelled == ["r1"]
    keys.press("q")
    keys.press(" ")  # after q, nothing more
    assert run.cancelled == ["r1"]
    assert run.calls == []
    assert status.message == "cancelling..."


def test_keys_before_the_start_and_unknown_keys_do_nothing() -> None:
    run = FakeRun()
    keys, status = keys_for(run)
    keys.press(" ")
    keys.begin("r1")
    keys.press("x")
    keys.press("\n")
    assert run.calls == []
    assert status.message == ""


def test_a_refusal_is_said_in_the_footer() -> None:
    run = FakeRun(ended=True)
    keys, status = keys_for(run)
    keys.begin("r1")
    keys.press(" ")
    assert status.message == "pause: run r1 has already ended"
    assert not status.paused


@pytest.fixture
def terminal() -> Any:
    """A pseudo-terminal: (the program's side, the keyboard's side)."""
    keyboard, program = os.openpty()
    try:
        yield program, keyboard
    finally:
        os.close(program)
        os.close(keyboard)


class Stream:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_the_reader_hands_keys_over_without_enter_and_restores_the_terminal(
    terminal: tuple[int, int],
) -> None:
    program, keyboard = terminal
    before = termios.tcgetattr(program)
    pressed: queue.Queue[str] = queue.Queue()
    with KeyReader(Stream(program), pressed.put):  # type: ignore[arg-type]
        during = termios.tcgetattr(program)
        assert not during[3] & termios.ICANON  # keys come one at a time
        assert not during[3] & termios.ECHO
        assert during[3] & termios.ISIG  # Ctrl-C still interrupts
        os.write(keyboard, b" s+q")
        got = [pressed.get(timeout=10) for _ in range(4)]
    assert got == [" ", "s", "+", "q"]
    assert termios.tcgetattr(program) == before


def test_the_reader_of_something_that_is_no_terminal_reads_nothing() -> None:
    read, write = os.pipe()
    try:
        pressed: list[str] = []
        with KeyReader(Stream(read), pressed.append) as reader:  # type: ignore[arg-type]
            assert not reader._thread.is_alive()
    finally:
        os.close(read)
        os.close(write)
    assert pressed == []


def test_the_reader_of_a_background_job_leaves_the_terminal_alone(
    terminal: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    program, _ = terminal
    before = termios.tcgetattr(program)
    monkeypatch.setattr(os, "tcgetpgrp", lambda fd: os.getpgrp() + 1)  # another job has it
    with KeyReader(Stream(program), print) as reader:  # type: ignore[arg-type]
        assert termios.tcgetattr(program) == before
        assert not reader._thread.is_alive()
