"""The scenarios folder, re-read on demand."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
from pathlib import Path

import hypothesis
import pytest
from hypothesis import strategies as st

import replay.library
from replay.errors import ScenarioFolderMissing, ScenarioInvalid
from replay.library import ScenarioLibrary
from replay.loader import MAX_FILE_BYTES, ScenarioFile, parse_scenario
from replay.protocol.schwarm import SCHWARM
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
    assert (
        ScenarioLibrary(folder, SCHWARM.with_types({"CUSTOM": "mine"}))
        .catalog()
        .file("custom")
        .valid
    )


def test_invalid_file_name(folder: Path) -> None:
    write(folder, "Bad Name.yaml", GOOD)
    [problem] = ScenarioLibrary(folder).catalog().file("Bad Name").problems
    assert "not a valid scenario name" in problem.message


# --- the protocol file ------------------------------------------------------------------------

CUSTOM = "steps:\n  - message: TOKEN_USAGE\n    text: x\n"


def test_protocol_file_makes_a_custom_type_valid(folder: Path) -> None:
    write(folder, "_protocol.yaml", "message_types:\n  TOKEN_USAGE: token counts\n")
    write(folder, "usage.yaml", CUSTOM)
    write(folder, "waits.yaml", "steps:\n  - wait: TOKEN_USAGE\n")
    write(folder, "reacts.yaml", "reacts_to: {message: TOKEN_USAGE}\nsteps:\n  - chunk: a\n")
    library = ScenarioLibrary(folder)
    found = library.catalog()
    assert found.names == ["reacts", "usage", "waits"]
    assert all(loaded.valid for loaded in found), [p for f in found for p in f.problems]
    assert found.protocol_file is not None
    assert found.protocol_file.file == str(folder / "_protocol.yaml")
    assert found.protocol_file.declared == 1
    assert found.protocol.descriptions["TOKEN_USAGE"] == "token counts"
    assert found.protocol_file.problems == ()
    assert library.message_types["TOKEN_USAGE"] == "token counts"
    assert "EVENT" in library.message_types


def test_without_a_protocol_file_custom_types_are_unknown(folder: Path) -> None:
    write(folder, "usage.yaml", CUSTOM)
    library = ScenarioLibrary(folder)
    found = library.catalog()
    assert found.protocol_file is None
    assert found.protocol is SCHWARM
    [problem] = found.file("usage").problems
    assert problem.message == "unknown message type 'TOKEN_USAGE'"
    assert "TOKEN_USAGE" not in library.message_types


def test_editing_the_protocol_rechecks_every_scenario(folder: Path, parses: list[str]) -> None:
    protocol = write(folder, "_protocol.yaml", "message_types:\n  TOKEN_USAGE: token counts\n")
    write(folder, "usage.yaml", CUSTOM)
    write(folder, "plain.yaml", GOOD)
    library = ScenarioLibrary(folder)
    assert library.catalog().file("usage").valid
    assert sorted(parses) == ["plain.yaml", "usage.yaml"]

    protocol.write_text("message_types:\n  OTHER: something else\n", encoding="utf-8")
    bump_mtime(protocol)
    found = library.catalog()
    assert sorted(parses) == ["plain.yaml", "plain.yaml", "usage.yaml", "usage.yaml"]
    [problem] = found.file("usage").problems
    assert problem.message == "unknown message type 'TOKEN_USAGE'"
    assert problem.line == 2
    assert found.file("plain").valid
    assert "OTHER" in library.message_types

    protocol.write_text("message_types:\n  TOKEN_USAGE: back again\n", encoding="utf-8")
    bump_mtime(protocol)
    assert library.catalog().file("usage").valid


def test_same_size_protocol_edit_is_seen(folder: Path) -> None:
    protocol = write(folder, "_protocol.yaml", "message_types:\n  TOKEN_USAGE: a\n")
    write(folder, "usage.yaml", CUSTOM)
    library = ScenarioLibrary(folder)
    assert library.catalog().file("usage").valid
    protocol.write_text("message_types:\n  TOKEN_USAGX: a\n", encoding="utf-8")
    bump_mtime(protocol)
    assert not library.catalog().file("usage").valid


def test_adding_and_deleting_the_protocol_file(folder: Path) -> None:
    write(folder, "usage.yaml", CUSTOM)
    library = ScenarioLibrary(folder)
    first = library.catalog()
    assert not first.file("usage").valid
    protocol = write(folder, "_protocol.yaml", "message_types:\n  TOKEN_USAGE: counts\n")
    second = library.catalog()
    assert second is not first
    assert second.file("usage").valid
    protocol.unlink()
    third = library.catalog()
    assert third.protocol_file is None
    assert not third.file("usage").valid
    assert "TOKEN_USAGE" not in library.message_types


def test_unchanged_protocol_keeps_the_catalog(folder: Path, parses: list[str]) -> None:
    write(folder, "_protocol.yaml", "message_types:\n  TOKEN_USAGE: counts\n")
    write(folder, "usage.yaml", CUSTOM)
    library = ScenarioLibrary(folder)
    first = library.catalog()
    assert library.catalog() is first
    assert parses == ["usage.yaml"]


def test_underscore_files_are_not_scenarios(folder: Path, parses: list[str]) -> None:
    write(folder, "_anything.yaml", "this: is not a scenario\n")
    write(folder, "_protocol.yaml", "message_types: {}\n")
    write(folder, "real.yaml", GOOD)
    found = ScenarioLibrary(folder).catalog()
    assert found.names == ["real"]
    assert "_anything" not in found
    assert "_protocol" not in found
    assert parses == ["real.yaml"]


def test_protocol_problems_are_on_the_catalog(folder: Path) -> None:
    write(
        folder,
        "_protocol.yaml",
        "message_types:\n  2token_usage: bad name\n  GOOD: fine\n  BAD: 5\nextra: 1\n",
    )
    write(folder, "uses-good.yaml", "steps:\n  - message: GOOD\n    text: x\n")
    found = ScenarioLibrary(folder).catalog()
    assert found.protocol_file is not None
    problems = found.protocol_file.problems
    assert [(p.line, p.column, p.field) for p in problems] == [
        (2, 3, "message_types.2token_usage"),
        (4, 3, "message_types.BAD"),
        (5, 1, "extra"),
    ]
    assert all(p.file == str(folder / "_protocol.yaml") for p in problems)
    # the valid declarations still count; the scenarios are not blamed
    assert found.file("uses-good").valid


def test_broken_protocol_yaml_is_reported_on_the_catalog(folder: Path) -> None:
    write(folder, "_protocol.yaml", "message_types: [unclosed\n")
    write(folder, "plain.yaml", GOOD)
    found = ScenarioLibrary(folder).catalog()
    assert found.protocol_file is not None
    [problem] = found.protocol_file.problems
    assert problem.message.startswith("not valid YAML")
    assert found.file("plain").valid


def test_protocol_file_over_the_size_limit(folder: Path) -> None:
    (folder / "_protocol.yaml").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    write(folder, "plain.yaml", GOOD)
    found = ScenarioLibrary(folder).catalog()
    assert found.protocol_file is not None
    [problem] = found.protocol_file.problems
    assert problem.message == "the file is too large"
    assert found.file("plain").valid


def test_protocol_adds_to_the_library_types(folder: Path) -> None:
    # The types given to the library are its built-in ones; the protocol file adds to them.
    write(folder, "_protocol.yaml", "message_types:\n  TOKEN_USAGE: counts\n")
    write(folder, "custom.yaml", "steps:\n  - message: CUSTOM\n    text: x\n")
    write(folder, "usage.yaml", CUSTOM)
    library = ScenarioLibrary(folder, SCHWARM.with_types({"CUSTOM": "mine"}))
    found = library.catalog()
    assert found.file("usage").valid
    assert found.file("custom").valid
    assert {"CUSTOM", "TOKEN_USAGE"} <= set(library.message_types)


def test_files_that_are_not_regular_files_are_problems_of_their_own(folder: Path) -> None:
    write(folder, "good.yaml", GOOD)
    os.mkfifo(folder / "fifo.yaml")  # reading it would block forever
    (folder / "folder.yaml").mkdir()
    (folder / "loop.yaml").symlink_to(folder / "loop.yaml")
    (folder / "a.yaml").symlink_to(folder / "b.yaml")
    (folder / "b.yaml").symlink_to(folder / "a.yaml")
    (folder / os.fsdecode(b"caf\xe9.yaml")).write_text(GOOD)
    catalog = ScenarioLibrary(folder).catalog()
    messages = {f.name: [p.message for p in f.problems] for f in catalog}
    assert messages == {
        "good": [],
        "fifo": ["not a regular file (a named pipe)"],
        "folder": ["not a regular file (a folder)"],
        "loop": ["cannot read the file: Too many levels of symbolic links"],
        "a": ["cannot read the file: Too many levels of symbolic links"],
        "b": ["cannot read the file: Too many levels of symbolic links"],
        "caf\\xe9": ["the file name is not valid UTF-8: rename the file"],
    }
    assert catalog.scenario("good").steps == [ChunkStep(chunk="a")]
    # Every name and file can be written as JSON (a surrogate in a name could not).
    for loaded in catalog:
        loaded.name.encode("utf-8")
        loaded.file.encode("utf-8")


def test_read_source_reads_at_most_the_limit(folder: Path) -> None:
    path = write(folder, "big.yaml", "x" * 10)
    assert replay.library.read_source(path) == b"x" * 10
    huge = folder / "huge.yaml"
    huge.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    refused = replay.library.read_source(huge)
    assert isinstance(refused, ScenarioFile)
    assert refused.problems[0].message == "the file is too large"


def test_a_folder_that_cannot_be_listed_is_reported(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(self: Path) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", denied)
    with pytest.raises(ScenarioFolderMissing, match=r"cannot be read \(Permission denied\)"):
        ScenarioLibrary(folder).catalog()


_NAME_BYTES = st.binary(min_size=1, max_size=40).filter(
    lambda name: b"/" not in name and b"\x00" not in name and name not in (b".", b"..")
)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(st.lists(_NAME_BYTES, min_size=1, max_size=6, unique=True))
def test_property_any_file_names_give_a_catalog_that_encodes(names: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        write(folder, "good.yaml", GOOD)
        for name in names:
            path = folder / os.fsdecode(name + b".yaml")
            with contextlib.suppress(OSError):  # a name the file system refuses
                path.write_bytes(b"steps:\n  - chunk: x\n")
        catalog = ScenarioLibrary(folder).catalog()
        assert catalog.file("good").valid
        for loaded in catalog:
            json.dumps({"name": loaded.name, "file": loaded.file}, ensure_ascii=False).encode()
            for problem in loaded.problems:
                str(problem).encode("utf-8")


def test_large_reads_are_frozen_out_of_the_cycle_collector(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replay.library, "FREEZE_BYTES", 2000)
    library = ScenarioLibrary(folder)
    write(folder, "small.yaml", "steps:\n  - chunk: a\n")
    frozen = gc.get_freeze_count()
    try:
        assert gc.isenabled()
        library.catalog()
        assert gc.get_freeze_count() == frozen  # a small read: nothing frozen
        write(folder, "big.yaml", "steps:\n" + "  - chunk: a\n" * 200)
        catalog = library.catalog()
        assert catalog.file("big").valid
        assert gc.get_freeze_count() > frozen  # the big file's models among them
        assert gc.isenabled()  # on again after the read
    finally:
        gc.unfreeze()


def test_current_is_none_before_the_first_read(folder: Path) -> None:
    write(folder, "one.yaml", GOOD)
    assert ScenarioLibrary(folder).current() is None


def test_current_is_the_last_catalog_while_nothing_changes(folder: Path, parses: list[str]) -> None:
    write(folder, "one.yaml", GOOD)
    write(folder, ".one.yaml.swp", "not a scenario")
    library = ScenarioLibrary(folder)
    catalog = library.catalog()
    parses.clear()
    assert library.current() is catalog
    assert library.current() is catalog
    assert parses == []


@pytest.mark.parametrize(
    "change",
    ["edit", "same-size edit", "add", "delete", "replace", "protocol", "folder gone"],
)
def test_current_is_none_after_any_change_catalog_would_see(folder: Path, change: str) -> None:
    one = write(folder, "one.yaml", GOOD)
    library = ScenarioLibrary(folder)
    before = library.catalog()
    if change == "edit":
        write(folder, "one.yaml", GOOD + "  - chunk: b\n")
    elif change == "same-size edit":
        write(folder, "one.yaml", GOOD.replace("a", "b"))
        bump_mtime(one)
    elif change == "add":
        write(folder, "two.yaml", GOOD)
    elif change == "delete":
        one.unlink()
    elif change == "replace":
        write(folder, "new.tmp", GOOD)
        os.replace(folder / "new.tmp", one)
    elif change == "protocol":
        write(folder, "_protocol.yaml", "message_types:\n  TOKEN_USAGE: a\n")
    else:
        one.unlink()
        folder.rmdir()
    assert library.current() is None
    if change != "folder gone":
        after = library.catalog()
        assert after is not before
        assert library.current() is after


def test_files_that_are_not_scenarios_do_not_count_as_changes(folder: Path) -> None:
    write(folder, "one.yaml", GOOD)
    library = ScenarioLibrary(folder)
    catalog = library.catalog()
    write(folder, ".one.yaml.swp", "x")
    write(folder, "notes.txt", "x")
    assert library.current() is catalog
