"""What a local consortium runs on: an example, or a task file with the sites' files; the sites
given replace the policy's members and the policy recorded is that effective one."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortium.errors import PlanError
from consortium.run.inputs import parse_data, resolve_inputs
from consortium.run.plan import plan_from_run_config
from policies.errors import PolicyError
from policies.example import load_example
from policies.loader import default_policy_path, load_policy
from tests.site_node.data import synthetic


def test_the_default_is_the_heart_disease_example_unchanged() -> None:
    inputs = resolve_inputs()
    ex = load_example("heart-disease")
    assert inputs.example == "heart-disease" and inputs.task.name == "heart-disease"
    assert inputs.data == ex.data and inputs.sites == ex.sites
    assert inputs.policy.sha256 == load_policy().sha256  # same members: the same policy


def test_the_digits_example_brings_its_task_policy_and_sites() -> None:
    inputs = resolve_inputs(example="digits")
    assert inputs.task.name == "digits" and inputs.sites == ("clinic_a", "clinic_b", "clinic_c")
    assert inputs.policy.policy.rounds == 5 and inputs.policy.policy.sites == inputs.sites


def test_a_task_file_with_the_sites_files_replaces_the_members(tmp_path: Path) -> None:
    task = synthetic.write_task(tmp_path)
    policy = tmp_path / "p.yaml"
    policy.write_text(default_policy_path().read_text(encoding="utf-8").replace(
        "min_sites: 4", "min_sites: 3"), encoding="utf-8")
    data = [f"north={tmp_path / 'n.csv'}", f"south={tmp_path / 's.parquet'}", "east=e.csv"]
    inputs = resolve_inputs(task=task, data=data, policy=policy)
    assert inputs.sites == ("north", "south", "east") and inputs.example is None
    assert inputs.policy.policy.sites == inputs.sites
    assert inputs.policy.sha256 != load_policy(policy).sha256  # the effective policy's hash
    assert "member sites replaced by the sites given: north, south, east" in inputs.policy.source
    assert inputs.data["east"] == Path("e.csv").resolve()


def test_with_an_example_the_members_are_the_policys_each_with_its_file(tmp_path: Path
                                                                       ) -> None:
    three = tmp_path / "three.yaml"
    three.write_text(default_policy_path().read_text(encoding="utf-8").replace(
        "sites: [cleveland, hungary, long_beach, switzerland]",
        "sites: [cleveland, hungary, switzerland]").replace("min_sites: 4", "min_sites: 3"),
        encoding="utf-8")
    inputs = resolve_inputs(policy=three)
    assert inputs.sites == ("cleveland", "hungary", "switzerland")
    assert inputs.policy.sha256 == load_policy(three).sha256  # recorded as written
    mayo = tmp_path / "mayo.yaml"
    mayo.write_text(three.read_text().replace("switzerland]", "mayo]"), encoding="utf-8")
    with pytest.raises(PlanError, match=r"member site\(s\) 'mayo' have no data in example "
                                        r"heart-disease"):
        resolve_inputs(policy=mayo)


def test_the_policy_must_still_fit_the_sites_given(tmp_path: Path) -> None:
    task = synthetic.write_task(tmp_path)
    with pytest.raises(PolicyError, match=r"min_sites \(4\) exceeds the number of member sites "
                                          r"\(2\)"):
        resolve_inputs(task=task, data=["a=x.csv", "b=y.csv"])


@pytest.mark.parametrize(("kw", "match"), [
    ({"example": "digits", "task": Path("t.yaml"), "data": ["a=x"]}, "either --example or"),
    ({"task": Path("t.yaml")}, "--task needs the sites' data"),
    ({"data": ["a=x.csv"]}, "--data goes with --task"),
    ({"example": "digits", "data": ["a=x.csv"]}, "--data goes with --task"),
])
def test_options_that_do_not_go_together_are_refused(kw: dict[str, object], match: str) -> None:
    with pytest.raises(PlanError, match=match):
        resolve_inputs(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("values", "match"), [
    (["north"], "expected SITE=PATH"), (["north="], "expected SITE=PATH"),
    (["North=x"], "invalid site id 'North'"), (["a=x", "a=y"], "site 'a' is given twice"),
])
def test_bad_data_options_are_named(values: list[str], match: str) -> None:
    with pytest.raises(PlanError, match=match):
        parse_data(values)


def test_an_unknown_example_is_named() -> None:
    with pytest.raises(PolicyError, match="unknown example 'mnist'"):
        resolve_inputs(example="mnist")


def test_the_flower_run_config_names_the_task_or_the_example(tmp_path: Path) -> None:
    assert plan_from_run_config({}).task.name == "heart-disease"
    digits = plan_from_run_config({"example": "digits"})
    assert digits.task.name == "digits" and digits.loaded.policy.sites[0] == "clinic_a"
    task = synthetic.write_task(tmp_path)
    assert plan_from_run_config({"task": str(task)}).task.name == "ward-readmission"
