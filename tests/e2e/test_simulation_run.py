"""End to end on Flower's simulation engine: `consortium run` then `consortium export`.

Real processes, real Ray workers, real Opacus DP-SGD and real SecAgg+ in every round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from consortium.keys import HOME_ENV
from tests.privacy_reference import rdp_epsilon

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "consortium"]
SITES = ["cleveland", "hungary", "long_beach", "switzerland"]


def consortium(
    *args: str, home: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if home is not None:
        env[HOME_ENV] = str(home)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("e2e")
    store = tmp / "runs.sqlite"
    run = consortium("run", "--rounds", "2", "--store", str(store), "--seed", "7",
                     home=tmp / "home")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Run ended: completed" in run.stdout
    exp = consortium("export", "--store", str(store), "--format", "json")
    assert exp.returncode == 0, exp.stderr
    return json.loads(exp.stdout)


def test_every_round_has_all_four_sites(exported: dict) -> None:
    assert exported["sites"] == SITES and exported["status"] == "completed"
    assert [r["round"] for r in exported["rounds"]] == [1, 2]
    for rnd in exported["rounds"]:
        assert rnd["status"] == "ok"
        assert sorted(rnd["sites"]) == SITES
        assert rnd["policy_sha256"] == exported["policy_sha256"]
        for fig in rnd["sites"].values():
            assert 0.0 <= fig["accuracy"] <= 1.0 and fig["num_examples"] > 0
            assert fig["accountant"] == "rdp" and fig["steps"] == 10


def test_epsilon_is_cumulative_within_ceiling_and_reproducible(exported: dict) -> None:
    delta, ceiling = exported["delta"], exported["epsilon_ceiling"]
    for site in SITES:
        events, previous = [], 0.0
        for rnd in exported["rounds"]:
            fig = rnd["sites"][site]
            events.append((fig["noise_multiplier"], fig["sample_rate"], fig["steps"]))
            assert previous < fig["epsilon"] <= ceiling
            assert fig["epsilon"] == pytest.approx(rdp_epsilon(events, delta), rel=0.01)
            previous = fig["epsilon"]


def test_bad_policy_is_refused_before_anything_runs(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    text = (Path(__file__).parents[2] / "policies" / "consortium.yaml").read_text()
    policy.write_text(text.replace("max_grad_norm: 1.0", "max_grad_norm: -1"))
    store = tmp_path / "runs.sqlite"
    out = consortium("run", "--policy", str(policy), "--store", str(store), timeout=120)
    assert out.returncode == 2
    assert "dp.max_grad_norm" in out.stdout + out.stderr
    assert not store.exists()
