"""The catalog: scenario files checked against each other."""

from __future__ import annotations

import pytest

from replay.catalog import Catalog
from replay.errors import ReplayError, ScenarioInvalid, ScenarioNotFound
from replay.loader import ScenarioFile, parse_scenario


def load(name: str, source: str) -> ScenarioFile:
    return parse_scenario(source, f"scenarios/{name}.yaml")


def catalog(**sources: str) -> Catalog:
    return Catalog.resolve(load(name, source) for name, source in sources.items())


def texts(loaded: ScenarioFile) -> list[str]:
    return [str(problem) for problem in loaded.problems]


def test_valid_references() -> None:
    found = catalog(
        messages="steps:\n  - chunk: a\n",
        stream="steps:\n  - chunk: b\n",
        all="steps:\n  - play: messages\n  - parallel: [messages, stream]\n",
    )
    assert all(loaded.valid for loaded in found)
    assert found.names == ["all", "messages", "stream"]
    assert len(found) == 3
    assert "all" in found
    assert "nope" not in found
    assert found.file("all").plays[0][1] == "messages"
    assert found.file("stream").name == "stream"


def test_missing_play_target_with_suggestion() -> None:
    found = catalog(
        messages="steps:\n  - chunk: a\n",
        user="steps:\n  - chunk: a\n  - play: mesages\n",
    )
    assert found.file("messages").valid
    user = found.file("user")
    assert not user.valid
    assert texts(user) == [
        "scenarios/user.yaml:3:5: steps.1.play: "
        "plays 'mesages', which does not exist (did you mean 'messages'?)"
    ]


def test_missing_parallel_target_is_located_on_the_item() -> None:
    found = catalog(
        messages="steps:\n  - chunk: a\n",
        user="steps:\n  - parallel: [messages, nothing_like_it]\n",
    )
    [problem] = found.file("user").problems
    assert (problem.line, problem.column, problem.field) == (2, 26, "steps.0.parallel.1")
    assert problem.message == "plays 'nothing_like_it', which does not exist"


def test_two_scenario_cycle_is_located_in_both_files() -> None:
    found = catalog(
        a="steps:\n  - chunk: x\n  - play: b\n",
        b="description: b\nsteps:\n  - play: a\n",
        c="steps:\n  - chunk: fine\n",
    )
    assert texts(found.file("a")) == [
        "scenarios/a.yaml:3:5: steps.1.play: plays itself: a -> b -> a"
    ]
    assert texts(found.file("b")) == [
        "scenarios/b.yaml:3:5: steps.0.play: plays itself: b -> a -> b"
    ]
    assert found.file("c").valid


def test_self_cycle() -> None:
    found = catalog(s="steps:\n  - chunk: x\n  - play: s\n")
    assert texts(found.file("s")) == ["scenarios/s.yaml:3:5: steps.1.play: plays itself: s -> s"]


def test_cycle_through_parallel() -> None:
    found = catalog(
        a="steps:\n  - parallel: [b]\n",
        b="steps:\n  - parallel: [c, a]\n",
        c="steps:\n  - chunk: x\n",
    )
    [problem_a] = found.file("a").problems
    assert problem_a.field == "steps.0.parallel.0"
    assert problem_a.message == "plays itself: a -> b -> a"
    [problem_b] = found.file("b").problems
    assert problem_b.field == "steps.0.parallel.1"
    assert problem_b.message == "plays itself: b -> a -> b"
    assert found.file("c").valid


def test_scenario_that_plays_into_a_cycle_is_invalid_too() -> None:
    found = catalog(
        a="steps:\n  - play: b\n",
        b="steps:\n  - play: a\n",
        user="steps:\n  - play: a\n",
    )
    assert texts(found.file("user")) == [
        "scenarios/user.yaml:2:5: steps.0.play: plays 'a', which is invalid"
    ]


def test_playing_an_invalid_scenario_makes_the_player_invalid_and_nothing_else() -> None:
    found = catalog(
        broken="steps: []\n",
        fine="steps:\n  - chunk: a\n",
        user="steps:\n  - play: fine\n  - parallel: [fine, broken]\n",
        outer="steps:\n  - play: user\n",
        bystander="steps:\n  - play: fine\n",
    )
    assert texts(found.file("broken")) == ["scenarios/broken.yaml:1:1: steps: must not be empty"]
    assert texts(found.file("user")) == [
        "scenarios/user.yaml:3:22: steps.1.parallel.1: plays 'broken', which is invalid"
    ]
    assert texts(found.file("outer")) == [
        "scenarios/outer.yaml:2:5: steps.0.play: plays 'user', which is invalid"
    ]
    assert found.file("fine").valid
    assert found.file("bystander").valid
    assert found.scenario("bystander").steps


def test_scenario_raises_not_found_with_suggestion() -> None:
    found = catalog(messages="steps:\n  - chunk: a\n", stream="steps:\n  - chunk: a\n")
    with pytest.raises(ScenarioNotFound) as caught:
        found.scenario("mesages")
    assert caught.value.name == "mesages"
    assert caught.value.known == ("messages", "stream")
    assert str(caught.value) == (
        "no scenario named 'mesages' (did you mean 'messages'?); known scenarios: messages, stream"
    )
    assert isinstance(caught.value, ReplayError)
    with pytest.raises(ScenarioNotFound):
        found.file("nothing")


def test_a_scenario_name_in_the_wrong_case_suggests_the_scenario() -> None:
    found = catalog(messages="steps:\n  - chunk: a\n", outer="steps:\n  - play: Messages\n")
    with pytest.raises(ScenarioNotFound, match="did you mean 'messages'"):
        found.scenario("MESSAGES")
    assert "did you mean 'messages'" in " ".join(texts(found.file("outer")))


def test_scenario_raises_invalid_with_its_problems() -> None:
    found = catalog(broken="steps:\n  - chunk: a\n    delay: soon\n")
    with pytest.raises(ScenarioInvalid) as caught:
        found.scenario("broken")
    assert caught.value.name == "broken"
    assert [p.field for p in caught.value.problems] == ["steps.0.delay"]
    assert str(caught.value).startswith("scenario 'broken' is invalid (1 problem):\n  ")
    assert "scenarios/broken.yaml:3:5: steps.0.delay:" in str(caught.value)


def test_scenario_raises_invalid_for_a_bad_file_name_even_though_it_parsed() -> None:
    found = Catalog.resolve([parse_scenario("steps:\n  - chunk: a\n", "scenarios/Bad.yaml")])
    with pytest.raises(ScenarioInvalid):
        found.scenario("Bad")


def test_duplicate_keys_make_a_file_unplayable_and_its_players_too() -> None:
    found = catalog(
        dup="steps:\n  - chunk: a\nsteps:\n  - chunk: b\n",
        user="steps:\n  - play: dup\n",
    )
    with pytest.raises(ScenarioInvalid):
        found.scenario("dup")
    assert texts(found.file("user")) == [
        "scenarios/user.yaml:2:5: steps.0.play: plays 'dup', which is invalid"
    ]


def test_empty_catalog() -> None:
    found = Catalog.resolve([])
    assert len(found) == 0
    with pytest.raises(ScenarioNotFound, match="known scenarios: none"):
        found.scenario("x")


def test_an_invalid_file_still_gets_its_missing_targets_reported() -> None:
    found = catalog(
        messages="steps:\n  - chunk: a\n",
        user="steps:\n  - chunk: a\n    delay: soon\n  - play: mesages\n",
    )
    problems = found.file("user").problems
    assert [(p.line, p.field) for p in problems] == [(3, "steps.0.delay"), (4, "steps.1.play")]
    assert problems[1].message == "plays 'mesages', which does not exist (did you mean 'messages'?)"
    assert found.file("messages").valid


def test_plays_inside_choose_branches_are_checked_like_any_other() -> None:
    found = catalog(
        a="steps:\n  - choose:\n      - when: 'true'\n        steps: [{play: b}]\n",
        b="steps:\n  - choose:\n      - otherwise: [{parallel: [a]}]\n",
        c="steps:\n  - choose:\n      - otherwise: [{play: mising}]\n",
        missing="steps:\n  - chunk: x\n",
    )
    [problem_a] = found.file("a").problems
    assert problem_a.field == "steps.0.choose.0.steps.0.play"
    assert problem_a.message == "plays itself: a -> b -> a"
    [problem_b] = found.file("b").problems
    assert problem_b.field == "steps.0.choose.0.otherwise.0.parallel.0"
    assert texts(found.file("c")) == [
        "scenarios/c.yaml:3:22: steps.0.choose.0.otherwise.0.play: plays 'mising', which does "
        "not exist (did you mean 'missing'?)"
    ]


def test_resolving_works_out_what_a_run_asks_of_each_file() -> None:
    # A server resolves its catalog in its reading thread: runs starting on the event
    # loop then find each file's waits and let names ready (see Scenario.awaits).
    found = catalog(
        main="steps:\n  - wait: CHAT_INPUT\n  - let: {a: 1}\n  - play: part\n",
        part="steps:\n  - chunk: a\n",
    )
    for loaded in found:
        assert loaded.scenario is not None
        assert "awaits" in vars(loaded.scenario)
        assert "_bound_names" in vars(loaded.scenario)
    main = found.scenario("main")
    assert [match.message for match in main.awaits.values()] == ["CHAT_INPUT"]
    assert main.bound_names() == {"a"}
