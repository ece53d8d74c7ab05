"""A dataset nobody here wrote code for runs from a task file alone, end to end.

The test writes a task (``ward-readmission``: numeric, categorical and boolean columns, three
classes) and three sites' files (two CSV, one Parquet), checks one with ``site-node
check-data``, runs ``consortium run --task FILE --data SITE=PATH ...`` (real processes, Flower
simulation, Opacus DP-SGD, SecAgg+; 2 rounds), then exports and verifies the audit trail. A site
whose file does not fit is refused before anything is trained or spent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consortium.home import HOME_ENV
from policies.loader import default_policy_path
from site_node.home import HOME_ENV as SITE_HOME_ENV
from tests.site_node.data import synthetic

pytestmark = pytest.mark.slow
SITES = ("north", "south", "east")


def run(tool: str, *args: str, env: dict[str, str], timeout: float = 600
        ) -> subprocess.CompletedProcess[str]:
    code = {"consortium": "from consortium.cli import main; main()",
            "site-node": "from site_node.cli import main; main()"}[tool]
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200", **env},
                          check=False)


@dataclass(frozen=True)
class Consortium:
    tmp: Path
    env: dict[str, str]
    task: Path
    policy: Path
    files: dict[str, Path]

    def data_options(self, files: dict[str, Path] | None = None) -> list[str]:
        return [x for s, p in (files or self.files).items() for x in ("--data", f"{s}={p}")]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Consortium:
    tmp = tmp_path_factory.mktemp("own-task")
    task = synthetic.write_task(tmp, model="mlp, hidden: [8]")
    policy = tmp / "policy.yaml"
    policy.write_text(default_policy_path().read_text(encoding="utf-8").replace(
        "min_sites: 4", "min_sites: 3"), encoding="utf-8")
    files = {"north": synthetic.write_table(tmp / "north.csv", synthetic.table(80, seed=1)),
             "south": synthetic.write_table(tmp / "south.parquet", synthetic.table(70, seed=2)),
             "east": synthetic.write_table(tmp / "east.csv", synthetic.table(60, seed=3))}
    env = {HOME_ENV: str(tmp / "home"), SITE_HOME_ENV: str(tmp / "sites")}
    return Consortium(tmp, env, task, policy, files)


@pytest.fixture(scope="module")
def exported(own: Consortium) -> dict[str, Any]:
    done = run("consortium", "run", "--task", str(own.task), *own.data_options(), "--policy",
               str(own.policy), "--rounds", "2", "--seed", "3", env=own.env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Run ended: completed" in done.stdout
    assert "task ward-readmission" in done.stdout
    exp = run("consortium", "export", env=own.env, timeout=120)
    assert exp.returncode == 0, exp.stderr
    data: dict[str, Any] = json.loads(exp.stdout)
    return data


def test_check_data_summarises_a_site_without_records(own: Consortium) -> None:
    done = run("site-node", "check-data", "--task", str(own.task), "--data",
               str(own.files["south"]), "--policy", str(own.policy), "--json", env=own.env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and out["summary"]["rows"] == 70 and out["summary"]["format"] == "parquet"
    assert set(out["summary"]["classes"]) == {"no", "yes", "transferred"}
    assert "P02-" not in done.stdout  # no identifier, no record
    text = run("site-node", "check-data", "--task", str(own.task), "--data",
               str(own.files["north"]), env=own.env)
    assert text.returncode == 0 and "The data fit task ward-readmission." in text.stdout


def test_the_run_trains_the_task_at_every_site(own: Consortium, exported: dict[str, Any]
                                               ) -> None:
    assert exported["task"]["name"] == "ward-readmission"
    assert exported["sites"] == list(SITES) and exported["status"] == "completed"
    assert [r["status"] for r in exported["rounds"]] == ["ok", "ok"]
    for rnd in exported["rounds"]:
        assert sorted(rnd["sites"]) == sorted(SITES)
        assert all(f["trained"] and f["accuracy"] is not None for f in rnd["sites"].values())


def test_the_audit_trail_verifies_with_the_task(own: Consortium, exported: dict[str, Any]
                                                ) -> None:
    done = run("consortium", "audit", "verify", env=own.env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 receipts over 1 run(s)" in done.stdout


def test_a_site_whose_file_does_not_fit_is_refused_before_anything_runs(own: Consortium
                                                                         ) -> None:
    cols = synthetic.table(60, seed=4)
    cols["ward"][10] = "cardiology"
    bad = synthetic.write_table(own.tmp / "bad-east.csv", cols)
    env = {HOME_ENV: str(own.tmp / "home2"), SITE_HOME_ENV: str(own.tmp / "sites2")}
    done = run("consortium", "run", "--task", str(own.task),
               *own.data_options({**own.files, "east": bad}), "--policy", str(own.policy),
               "--rounds", "1", env=env, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "site east: its data" in done.stderr and "nothing was trained" in done.stderr
    assert "column ward: unknown level" in done.stderr and "row 11" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (own.tmp / "sites2").exists() and not (own.tmp / "home2" / "runs.sqlite").exists()
    check = run("site-node", "check-data", "--task", str(own.task), "--data", str(bad),
                env=env)
    assert check.returncode == 2 and "column ward: unknown level" in check.stdout
