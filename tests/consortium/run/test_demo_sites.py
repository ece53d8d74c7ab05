"""Before a local consortium runs, every site's data are checked against the task and the
policy's sampling rate; a site that cannot train stops the run before anything starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from consortium.errors import PlanError
from consortium.run.demo import demo_sites
from consortium.run.inputs import resolve_inputs
from consortium.run.plan import make_plan_from_policy
from policies.loader import default_policy_path
from site_node.home import HOME_ENV as SITE_HOME_ENV
from tests.site_node.data import synthetic


def setup(tmp_path: Path, east_rows: int = 40, east_edit: bool = False
          ) -> tuple[object, dict[str, Path]]:
    task = synthetic.write_task(tmp_path)
    policy = tmp_path / "p.yaml"
    policy.write_text(default_policy_path().read_text(encoding="utf-8").replace(
        "min_sites: 4", "min_sites: 3").replace("sample_rate: 0.5 ", "sample_rate: 0.2 "),
        encoding="utf-8")
    east = synthetic.table(east_rows, seed=3, classes=("no", "yes"))
    if east_edit:
        east["lactate"][2] = 40.0
    files = {"north": synthetic.write_table(tmp_path / "n.csv", synthetic.table(40)),
             "south": synthetic.write_table(tmp_path / "s.parquet", synthetic.table(40, seed=2)),
             "east": synthetic.write_table(tmp_path / "e.csv", east)}
    inputs = resolve_inputs(task=task, policy=policy,
                            data=[f"{s}={p}" for s, p in files.items()])
    plan = make_plan_from_policy(inputs.policy, inputs.task, store_path=tmp_path / "r.sqlite",
                                 demo=True)
    return plan, inputs.data


def test_every_site_with_fitting_data_gets_its_settings(tmp_path: Path) -> None:
    plan, data = setup(tmp_path)
    sites = demo_sites(plan, data)  # type: ignore[arg-type]
    assert [s.site for s in sites] == ["north", "south", "east"]
    assert [s.data_path for s in sites] == list(data.values())


def test_a_site_whose_data_do_not_fit_stops_the_run_with_the_report(tmp_path: Path) -> None:
    plan, data = setup(tmp_path, east_edit=True)
    with pytest.raises(PlanError, match=r"site east: its data .* do not fit task "
                                        r"ward-readmission; nothing was trained:\n  column "
                                        r"lactate: out of range: .*\(row 3\)"):
        demo_sites(plan, data)  # type: ignore[arg-type]
    assert not Path(os.environ[SITE_HOME_ENV]).exists()  # no site home was made


def test_too_few_rows_for_the_sampling_rate_stop_the_run(tmp_path: Path) -> None:
    plan, data = setup(tmp_path, east_rows=6)  # 4 training rows at q = 0.2: 0.8 < 1
    with pytest.raises(PlanError, match=r"site east: 4 training example\(s\) at sample rate 0.2 "
                                        r"give an expected batch of 0.80 < 1"):
        demo_sites(plan, data)  # type: ignore[arg-type]


def test_a_member_without_data_is_named(tmp_path: Path) -> None:
    plan, data = setup(tmp_path)
    del data["south"]
    with pytest.raises(PlanError, match=r"member site south has no data \(give --data "
                                        r"south=PATH\)"):
        demo_sites(plan, data)  # type: ignore[arg-type]
