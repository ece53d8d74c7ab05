"""The embedded examples are data: a manifest naming a task, a policy and each site's file."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies.errors import PolicyError
from policies.example import example_names, examples_dir, load_example
from policies.loader import load_policy
from policies.task_loader import load_task


@pytest.mark.parametrize("name", ["heart-disease", "digits"])
def test_each_example_names_valid_files_and_its_policys_members(name: str) -> None:
    ex = load_example(name)
    assert all(p.exists() for p in (ex.task, ex.policy, *ex.data.values()))
    assert load_task(ex.task).name == name
    assert load_policy(ex.policy).policy.sites == ex.sites


def test_the_examples_are_listed_and_an_unknown_one_is_refused() -> None:
    assert example_names() == ("digits", "heart-disease", "heart-visits")
    with pytest.raises(PolicyError, match="unknown example 'mnist'; the examples are: digits, "
                                          "heart-disease"):
        load_example("mnist")


def test_a_manifest_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("policies.example.examples_dir", lambda: tmp_path)
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ntask: policies/tasks/digits.yaml\npolicy: policies/consortium.yaml\n"
        "data: {Site A: x.csv, b: y.csv}\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"bad\.yaml: data: .*invalid site id 'Site A'"):
        load_example("bad")
    (tmp_path / "gone.yaml").write_text(
        "name: gone\ntask: policies/tasks/nope.yaml\npolicy: policies/consortium.yaml\n"
        "data: {a: x.csv, b: y.csv}\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"gone\.yaml: task: policies/tasks/nope\.yaml "
                                          r"does not exist"):
        load_example("gone")
    (tmp_path / "other.yaml").write_text((examples_dir() / "digits.yaml").read_text(),
                                         encoding="utf-8")
    with pytest.raises(PolicyError, match="name: 'digits' is not the file's name 'other'"):
        load_example("other")
