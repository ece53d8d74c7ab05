"""Done means: ``consortium run --task FILE --policy P --data ...`` with a policy of privacy terms
only trains and reports; the choice of settings (0 ε) is in the export, the signed run-start and
the audit report, the majority-class check is printed, and ``audit verify`` passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.terms_only import run_terms_only
from tests.e2e.test_own_task import run
from tests.site_node.data import synthetic

pytestmark = pytest.mark.slow


def test_a_policy_of_privacy_terms_only_trains_and_records_its_choice(tmp_path: Path) -> None:
    task = synthetic.write_task(tmp_path)
    files = {"north": synthetic.write_table(tmp_path / "north.csv", synthetic.table(80, seed=1)),
             "south": synthetic.write_table(tmp_path / "south.csv", synthetic.table(70, seed=2)),
             "east": synthetic.write_table(tmp_path / "east.csv", synthetic.table(60, seed=3))}
    done, env = run_terms_only(tmp_path, task, files, rounds=2)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "training settings chosen from public information, 0 ε" in done.stdout
    assert "majority class" in done.stdout  # the table's column
    assert "round 2: the model" in done.stdout and "majority-class rate" in done.stdout
    exported = json.loads(run("consortium", "export", env=env, timeout=120).stdout)
    choice = exported["choice"]
    assert choice["epsilon_cost"] == 0.0 and choice["chosen"]["rounds"] == 2
    assert set(choice["inputs"]["train_counts"]) == set(files)
    assert exported["majority_check"]["round"] == 2
    for rnd in exported["rounds"]:
        for fig in rnd["sites"].values():
            assert fig["epsilon"] <= 1.0 and 0 < fig["majority_rate"] <= 1
    verified = run("consortium", "audit", "verify", env=env, timeout=300)
    assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
    out = tmp_path / "report"
    reported = run("consortium", "audit", "report", "--out", str(out), env=env, timeout=300)
    assert reported.returncode == 0, reported.stderr[-2000:]
    (report,) = out.glob("*.json")
    assert json.loads(report.read_text(encoding="utf-8"))["run"]["choice"] == choice
