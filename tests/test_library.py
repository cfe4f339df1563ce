"""The scenarios folder, re-read on demand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import replay.library
from replay.errors import ScenarioFolderMissing, ScenarioInvalid
from replay.library import ScenarioLibrary
from replay.loader import MAX_FILE_BYTES, ScenarioFile, parse_scenario
from replay.scenario import ChunkStep

GOOD = "steps:\n  - chunk: a\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path) -> None:
    """Make sure a rewrite is seen even on file systems with coarse timestamps."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 5_000_000_000))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "scenarios"
    path.mkdir()
    return path


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files parse_scenario is called for, in order."""
    calls: list[str] = []
    real = parse_scenario

    def counting(source: bytes | str, file: str, *args: object, **kwargs: object) -> ScenarioFile:
        calls.append(Path(file).name)
        return real(source, file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(replay.library, "parse_scenario", counting)
    return calls


def test_loads_the_yaml_files_of_the_folder(folder: Path) -> None:
    write(folder, "one.yaml", GOOD)
    write(folder, "two.yaml", "steps:\n  - play: one\n")
    write(folder, "notes.txt", "not a scenario")
    write(folder, "three.yml", GOOD)  # only .yaml files are scenarios
    found = ScenarioLibrary(folder).catalog()
    assert found.names == ["one", "two"]
    assert all(loaded.valid for loaded in found)
    assert found.file("one").file == str(folder / "one.yaml")


def test_a_broken_file_does_not_stop_the_others(folder: Path) -> None:
    write(folder, "a.yaml", GOOD)
    write(folder, "b.yaml", "steps:\n\t- chunk: a\n")
    (folder / "c.yaml").write_bytes(b"steps:\n  - chunk: \xff\n")
    write(folder, "d.yaml", GOOD)
    found = ScenarioLibrary(folder).catalog()
    assert found.names == ["a", "b", "c", "d"]
    assert found.file("a").valid
    assert found.file("d").valid
    [tab] = found.file("b").problems
    assert tab.location == f"{folder / 'b.yaml'}:2:1"
    [utf8] = found.file("c").problems
    assert utf8.message == "the file is not valid UTF-8"
    with pytest.raises(ScenarioInvalid):
        found.scenario("b")


def test_edits_take_effect_on_the_next_catalog(folder: Path) -> None:
    path = write(folder, "demo.yaml", GOOD)
    library = ScenarioLibrary(folder)
    first = library.catalog().scenario("demo").steps[0]
    assert isinstance(first, ChunkStep)
    assert first.chunk == "a"
    path.write_text("steps:\n  - chunk: edited\n", encoding="utf-8")  # size changes too
    second = library.catalog().scenario("demo").steps[0]
    assert isinstance(second, ChunkStep)
    assert second.chunk == "edited"


def test_same_size_edit_is_seen_through_the_mtime(folder: Path) -> None:
    path = write(folder, "demo.yaml", "steps:\n  - chunk: aaa\n")
    library = ScenarioLibrary(folder)
    assert library.catalog().file("demo").valid
    path.write_text("steps:\n  - chunk: bbb\n", encoding="utf-8")
    bump_mtime(path)
    step = library.catalog().scenario("demo").steps[0]
    assert isinstance(step, ChunkStep)
    assert step.chunk == "bbb"


def test_breaking_and_fixing_a_file(folder: Path) -> None:
    path = write(folder, "demo.yaml", GOOD)
    write(folder, "user.yaml", "steps:\n  - play: demo\n")
    library = ScenarioLibrary(folder)
    assert library.catalog().file("user").valid
    path.write_text("steps: []\n", encoding="utf-8")
    bump_mtime(path)
    broken = library.catalog()
    assert not broken.file("demo").valid
    assert not broken.file("user").valid  # re-checked though the file itself did not change
    path.write_text(GOOD + "  - chunk: b\n", encoding="utf-8")
    bump_mtime(path)
    fixed = library.catalog()
    assert fixed.file("demo").valid
    assert fixed.file("user").valid


def test_new_and_deleted_files(folder: Path) -> None:
    write(folder, "a.yaml", GOOD)
    library = ScenarioLibrary(folder)
    assert library.catalog().names == ["a"]
    write(folder, "b.yaml", GOOD)
    assert library.catalog().names == ["a", "b"]
    (folder / "a.yaml").unlink()
    found = library.catalog()
    assert found.names == ["b"]
    assert "a" not in found


def test_deleting_a_played_scenario_invalidates_its_player(folder: Path) -> None:
    write(folder, "target.yaml", GOOD)
    write(folder, "user.yaml", "steps:\n  - play: target\n")
    library = ScenarioLibrary(folder)
    assert library.catalog().file("user").valid
    (folder / "target.yaml").unlink()
    [problem] = library.catalog().file("user").problems
    assert problem.message == "plays 'target', which does not exist"


def test_unchanged_files_are_not_parsed_again(folder: Path, parses: list[str]) -> None:
    write(folder, "a.yaml", GOOD)
    path_b = write(folder, "b.yaml", GOOD)
    library = ScenarioLibrary(folder)
    first = library.catalog()
    assert sorted(parses) == ["a.yaml", "b.yaml"]
    second = library.catalog()
    assert parses == ["a.yaml", "b.yaml"]
    assert second is first  # nothing changed: the same catalog
    path_b.write_text(GOOD + "  - chunk: b\n", encoding="utf-8")
    bump_mtime(path_b)
    third = library.catalog()
    assert parses == ["a.yaml", "b.yaml", "b.yaml"]
    assert third is not first
    assert len(third.scenario("b").steps) == 2


def test_symlink_outside_the_folder_is_reported(folder: Path, tmp_path: Path) -> None:
    outside = write(tmp_path, "secret.yaml", GOOD)
    (folder / "sneaky.yaml").symlink_to(outside)
    write(folder, "fine.yaml", GOOD)
    found = ScenarioLibrary(folder).catalog()
    assert found.file("fine").valid
    sneaky = found.file("sneaky")
    assert not sneaky.valid
    [problem] = sneaky.problems
    assert problem.message == "the file links outside the scenarios folder"
    assert str(problem) == f"{folder / 'sneaky.yaml'}: the file links outside the scenarios folder"


def test_symlink_inside_the_folder_is_fine(folder: Path) -> None:
    write(folder, "real.yaml", GOOD)
    (folder / "alias.yaml").symlink_to(folder / "real.yaml")
    found = ScenarioLibrary(folder).catalog()
    assert found.file("alias").valid


def test_dangling_symlink_is_reported(folder: Path) -> None:
    (folder / "gone.yaml").symlink_to(folder / "missing.yaml")
    [problem] = ScenarioLibrary(folder).catalog().file("gone").problems
    assert problem.message.startswith("cannot read the file")


def test_file_over_the_size_limit_is_not_read(folder: Path, parses: list[str]) -> None:
    (folder / "big.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    [problem] = ScenarioLibrary(folder).catalog().file("big").problems
    assert problem.message == "the file is too large"
    assert problem.found == f"{MAX_FILE_BYTES + 1} bytes"
    assert parses == []


def test_missing_folder(tmp_path: Path) -> None:
    library = ScenarioLibrary(tmp_path / "nowhere")
    with pytest.raises(ScenarioFolderMissing) as caught:
        library.catalog()
    assert caught.value.folder == str(tmp_path / "nowhere")
    assert "does not exist" in str(caught.value)


def test_folder_deleted_after_loading(folder: Path) -> None:
    path = write(folder, "a.yaml", GOOD)
    library = ScenarioLibrary(folder)
    library.catalog()
    path.unlink()
    folder.rmdir()
    with pytest.raises(ScenarioFolderMissing):
        library.catalog()


def test_custom_message_types(folder: Path) -> None:
    write(folder, "custom.yaml", "steps:\n  - message: CUSTOM\n    text: x\n")
    assert not ScenarioLibrary(folder).catalog().file("custom").valid
    assert ScenarioLibrary(folder, {"CUSTOM": "mine"}).catalog().file("custom").valid


def test_invalid_file_name(folder: Path) -> None:
    write(folder, "Bad Name.yaml", GOOD)
    [problem] = ScenarioLibrary(folder).catalog().file("Bad Name").problems
    assert "not a valid scenario name" in problem.message
