"""``consortium compare --example digits`` end to end: why a hospital joins.

Three sites each lack three digits in training. Real processes, Flower simulation, Opacus DP-SGD
and SecAgg+ for the federated run; then each site alone through the real site code. The local
models fail on the digits their site never saw; the federated model recognises them. Both spend
budget: the ledgers, the receipts, the audit trail and the export say so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from consortium.home import HOME_ENV
from site_node.home import HOME_ENV as SITE_HOME_ENV

pytestmark = pytest.mark.slow
MISSING = {"clinic_a": {1, 3, 7}, "clinic_b": {2, 5, 8}, "clinic_c": {4, 6, 9}}
ROUNDS = 3


def consortium(*args: str, env: dict[str, str], timeout: float = 600
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consortium", *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, "COLUMNS": "200", **env})


@dataclass(frozen=True)
class Compared:
    env: dict[str, str]
    stdout: str
    export: dict[str, Any]


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Compared:
    tmp = tmp_path_factory.mktemp("compare")
    env = {HOME_ENV: str(tmp / "home"), SITE_HOME_ENV: str(tmp / "sites")}
    done = consortium("compare", "--example", "digits", "--rounds", str(ROUNDS), "--seed", "1",
                      env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = [line for line in done.stdout.splitlines() if line.startswith("Federated run ")]
    fed = runs[0].split()[2].rstrip(":")
    exp = consortium("export", "--run", fed, env=env, timeout=120)
    assert exp.returncode == 0, exp.stderr
    return Compared(env, done.stdout, json.loads(exp.stdout))


def acc(results: list[dict[str, Any]], site: str, scope: str, model: str,
        classes: set[int] | None = None) -> float:
    chosen = [r for r in results if (r["site"], r["scope"], r["model"]) == (site, scope, model)
              and (classes is None or r["class_index"] in classes)]
    return sum(r["correct"] for r in chosen) / sum(r["total"] for r in chosen)


def test_local_models_fail_on_their_missing_digits_and_the_federated_model_does_not(
        compared: Compared) -> None:
    (cmp,) = compared.export["comparisons"]
    results = cmp["results"]
    for site, missing in MISSING.items():
        trained = {r["class_index"] for r in results if r["site"] == site
                   and r["site_train_count"] > 0}
        assert trained == set(range(10)) - missing
        local = acc(results, site, "own", "local", missing)
        federated = acc(results, site, "own", "federated", missing)
        assert local <= 0.1, (site, local)  # near 0 on the digits it never saw
        assert federated >= 0.4 and federated > local + 0.3, (site, federated, local)
        assert acc(results, site, "union", "federated") > acc(results, site, "union", "local")


def test_every_run_of_the_comparison_is_recorded_and_spends_budget(compared: Compared) -> None:
    exported = compared.export
    (cmp,) = exported["comparisons"]
    assert exported["task"]["name"] == "digits" and exported["engine"] == "simulation"
    assert sorted(cmp["local_runs"]) == sorted(MISSING)
    for site, run_id in cmp["local_runs"].items():
        local = json.loads(consortium("export", "--run", run_id, env=compared.env).stdout)
        assert (local["engine"], local["mode"], local["sites"]) == ("local", "local-demo",
                                                                   [site])
        assert len(local["rounds"]) == ROUNDS and local["comparisons"] == exported[
            "comparisons"]
        fed_eps = exported["rounds"][-1]["sites"][site]["epsilon"]
        assert local["rounds"][-1]["sites"][site]["epsilon"] == pytest.approx(fed_eps)
        budget = subprocess.run(
            [sys.executable, "-c", "from site_node.cli import main; main()", "budget",
             "--demo-site", site, "--json"], capture_output=True, text=True, timeout=120,
            env={**os.environ, **compared.env}, check=False)
        runs = {r["run_id"] for r in json.loads(budget.stdout)["runs"]}
        assert runs == {exported["run_id"], run_id}
    verify = consortium("audit", "verify", env=compared.env, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"{2 * 3 * ROUNDS} receipts over 4 run(s)" in verify.stdout
