"""The README is the user manual: its links resolve, and what it shows replay printing or
sending is what replay prints and sends (so that it cannot go stale)."""

from __future__ import annotations

import itertools
import re
import shutil
from pathlib import Path

import pytest

from replay.catalog import Catalog
from replay.cli import main
from replay.loader import parse_scenario
from replay.matching import ClientFrame
from replay.timeline import build_timeline

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of the headings (code blocks hold no headings)."""
    prose = _FENCE.sub("", markdown)
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", prose, re.MULTILINE):
        # GitHub: lower case, drop what is not a letter, digit, '_', '-' or space,
        # spaces to '-'; a repeated heading gets -1, -2, ...
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = counts.get(slug, 0)
        counts[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(markdown: str) -> list[str]:
    """The targets of the links in the prose: [text](target)."""
    prose = _FENCE.sub("", markdown)
    prose = re.sub(r"`[^`\n]*`", "", prose)  # inline code is not a link
    return re.findall(r"\]\(([^)\s]+)\)", prose)


def test_the_anchor_rules_are_githubs() -> None:
    assert anchors("## Wire protocol\n") == {"wire-protocol"}
    assert anchors("### Turning recordings into scenarios (`replay convert`)\n") == {
        "turning-recordings-into-scenarios-replay-convert"
    }
    assert anchors("### Waiting for a reconnection: wait_connect\n") == {
        "waiting-for-a-reconnection-wait_connect"
    }
    assert anchors("## A\n## A\n```\n## not a heading\n```\n") == {"a", "a-1"}
    assert links("see [here](#a) and `[no](#b)`\n```\n[no](#c)\n```\n") == ["#a"]


def test_every_anchor_link_in_the_readme_resolves() -> None:
    known = anchors(README)
    targets = [target[1:] for target in links(README) if target.startswith("#")]
    assert len(targets) > 20
    assert [target for target in targets if target not in known] == []


def test_every_relative_file_link_in_the_readme_exists() -> None:
    relative = [
        target.split("#")[0]
        for target in links(README)
        if not target.startswith(("#", "http://", "https://", "mailto:"))
    ]
    assert [target for target in relative if not (ROOT / target).exists()] == []


def test_the_wire_protocol_section_is_linked_from_the_introduction() -> None:
    assert "wire-protocol" in anchors(README)
    introduction = README.split("## Quick start")[0]
    assert "(#wire-protocol)" in introduction


def section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    end = README.find("\n## ", start + 1)
    following = README.find("\n### ", start + 1)
    ends = [index for index in (end, following) if index != -1]
    return README[start : min(ends) if ends else len(README)]


def test_the_wire_protocol_frames_are_what_replay_sends() -> None:
    wire = section("## Wire protocol")
    source = (
        "steps:\n"
        "  - message: EVENT\n    text: hi\n"
        "  - message: EVENT\n    data: {name: x, n: 1}\n"
        "  - chunk: Hel\n"
        "  - tool: '...'\n"
        "  - close: stream\n"
    )
    loaded = parse_scenario(source, "scenarios/wire.yaml")
    assert loaded.valid, loaded.problems
    timeline = build_timeline("wire", Catalog.resolve([loaded]))
    frames = [(cue.endpoint, cue.frame) for cue in timeline.cues]
    assert [endpoint for endpoint, _ in frames] == [
        "/ws",
        "/ws",
        "/ws/stream",
        "/ws/stream",
        "/ws/stream",
    ]
    for _, frame in frames:
        assert f"`{frame}`" in wire, frame
    # What the README says a client sends is what replay reads as a type and a payload.
    shown = re.findall(r'`(\{"message_type":"(\w+)","message":.*?\})`', wire)
    assert {"CHAT_INPUT", "PAUSE_REQUEST"} <= {kind for _, kind in shown}
    for text, kind in shown:
        frame = ClientFrame("c", text)
        assert frame.message_type == kind
        assert frame.message is not None
    pause = next(ClientFrame("c", text) for text, kind in shown if kind == "PAUSE_REQUEST")
    assert pause.data == {"action": "pause"}


def errors_examples() -> list[tuple[str, str, str]]:
    """Each example of the Errors section: the file's name, its text, and the output of
    `replay validate` the README shows for it."""
    errors = section("### Errors")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", errors, re.MULTILINE | re.DOTALL)
    examples = []
    for (kind, text), (_, shown) in itertools.pairwise(blocks):
        first = text.splitlines()[0]
        if kind == "yaml" and first.startswith("# scenarios/"):
            name = first.removeprefix("# ")
            assert shown.startswith(f"$ uv run replay validate {name}\n"), shown
            examples.append((name, text, shown.split("\n", 1)[1]))
    return examples


def test_the_errors_section_has_examples() -> None:
    names = [name for name, _, _ in errors_examples()]
    assert "scenarios/broken.yaml" in names
    assert "scenarios/indented.yaml" in names


@pytest.mark.parametrize(("name", "text", "shown"), errors_examples())
def test_the_errors_examples_are_what_replay_validate_prints(
    name: str,
    text: str,
    shown: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In a copy of the shipped folder, so that 'play: mesages' finds 'messages' near.
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["validate", name]) == 1
    printed = capsys.readouterr().out
    refresh = f"the README's example of {name} is stale; replay validate prints:\n{printed}"
    assert printed == shown, refresh
