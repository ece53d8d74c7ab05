"""End to end on Flower's simulation engine: `consortium run` then `consortium export`.

Real processes, real Ray workers, real Opacus DP-SGD and real SecAgg+ in every round. One run
(2 rounds, no ``--store``: the store is the consortium home's) is shared by the module.
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
from policies.loader import (
    default_policy_path,
    example_site_policy_path,
    load_policy,
    load_site_policy,
)
from site_node.home import HOME_ENV as SITE_HOME_ENV
from tests.privacy_reference import rdp_epsilon

pytestmark = pytest.mark.slow
SITES = ["cleveland", "hungary", "long_beach", "switzerland"]
DEFAULT = load_policy().policy


def consortium(*args: str, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m consortium ARGS`` with the given homes."""
    return subprocess.run([sys.executable, "-m", "consortium", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200",
                                                           **(env or {})}, check=False)


@dataclass(frozen=True)
class Demo:
    """The shared run: its homes, what `consortium run` printed, and the export."""

    env: dict[str, str]
    home: Path
    sites_home: Path
    stdout: str
    export: dict[str, Any]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    tmp = tmp_path_factory.mktemp("e2e")
    env = {HOME_ENV: str(tmp / "home"), SITE_HOME_ENV: str(tmp / "sites")}
    run = consortium("run", "--rounds", "2", "--seed", "7", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Run ended: completed" in run.stdout
    exp = consortium("export", "--format", "json", env=env, timeout=120)
    assert exp.returncode == 0, exp.stderr
    return Demo(env, tmp / "home", tmp / "sites", run.stdout, json.loads(exp.stdout))


def test_every_round_has_all_four_sites(demo: Demo) -> None:
    exported = demo.export
    assert exported["format"] == "hospital-consortium/run-export/v4"
    assert exported["sites"] == SITES and exported["status"] == "completed"
    assert exported["task"]["name"] == "heart-disease" and len(exported["task_sha256"]) == 64
    assert exported["seed"] == 7 and exported["rounds_planned"] == 2
    assert exported["choice"] is None  # the default policy sets its training settings
    assert [r["round"] for r in exported["rounds"]] == [1, 2]
    for rnd in exported["rounds"]:
        assert rnd["status"] == "ok" and rnd["failure_reason"] is None
        assert sorted(rnd["sites"]) == SITES
        assert rnd["policy_sha256"] == exported["policy_sha256"]
        for fig in rnd["sites"].values():
            assert 0.0 <= fig["accuracy"] <= 1.0 and fig["num_examples"] > 0
            assert fig["accountant"] == "rdp" and fig["steps"] == DEFAULT.dp.local_steps
            assert fig["trained"] is True and fig["refusal"] is None
            assert 0.5 <= fig["majority_rate"] <= 1.0  # each site's test split, as it reported


def test_the_run_is_a_local_demonstration_in_the_export(demo: Demo) -> None:
    assert demo.export["mode"] == "local-demo"
    assert demo.export["engine"] == "simulation"
    assert "(local demonstration)" in demo.stdout


def test_the_store_and_the_site_homes_are_where_the_two_homes_say(demo: Demo) -> None:
    assert (demo.home / "runs.sqlite").is_file()  # no --store: the consortium home's store
    assert (demo.home / "consortium-key.pem").is_file()
    for site in SITES:
        home = demo.sites_home / "demo" / site
        assert (home / "site.toml").is_file() and (home / "state" / "ledger.sqlite").is_file()
        assert (home / "state" / "receipt-key.pem").is_file()
        assert not (demo.home / site).exists()


def test_example_site_policies_apply_only_when_asked(demo: Demo) -> None:
    """Without ``--example-site-policies`` every site runs the consortium policy: Hungary's
    example δ and clipping norm and Cleveland's lower ceiling are not in force."""
    hungary = load_site_policy(example_site_policy_path("hungary")).policy
    cleveland = load_site_policy(example_site_policy_path("cleveland")).policy
    assert hungary.delta != DEFAULT.delta and hungary.dp is not None
    assert hungary.dp.max_grad_norm != DEFAULT.dp.max_grad_norm
    assert cleveland.epsilon_ceiling is not None
    last = demo.export["rounds"][-1]["sites"]
    assert {fig["delta"] for fig in last.values()} == {DEFAULT.delta}
    assert {fig["max_grad_norm"] for fig in last.values()} == {DEFAULT.dp.max_grad_norm}
    assert last["cleveland"]["epsilon"] > cleveland.epsilon_ceiling
    assert "example site policies in force" not in demo.stdout


def test_epsilon_is_cumulative_within_ceiling_and_reproducible(demo: Demo) -> None:
    exported = demo.export
    delta, ceiling = exported["delta"], exported["epsilon_ceiling"]
    for site in SITES:
        events: list[tuple[float, float, int]] = []
        previous = 0.0
        for rnd in exported["rounds"]:
            fig = rnd["sites"][site]
            events.append((fig["noise_multiplier"], fig["sample_rate"], fig["steps"]))
            assert previous < fig["epsilon"] <= ceiling
            assert fig["epsilon"] == pytest.approx(rdp_epsilon(events, delta), rel=0.01)
            previous = fig["epsilon"]


def test_each_sites_own_ledger_states_the_same_epsilon(demo: Demo) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from site_node.cli import main; main()", "budget",
         "--demo-site", "hungary", "--json"], capture_output=True, text=True, timeout=120,
        env={**os.environ, **demo.env}, check=False)
    assert done.returncode == 0, done.stderr
    budget = json.loads(done.stdout)
    final = demo.export["rounds"][-1]["sites"]["hungary"]["epsilon"]
    assert budget["lifetime_epsilon"] == pytest.approx(final, rel=1e-9)
    assert [r["run_id"] for r in budget["runs"]] == [demo.export["run_id"]]
    assert len(budget["history"]) == 2 and budget["refusals"] == []


def test_the_audit_trail_verifies(demo: Demo) -> None:
    done = consortium("audit", "verify", env=demo.env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 receipts over 1 run(s)" in done.stdout
    assert "1 run(s) are local demonstrations" in done.stdout


def test_bad_policy_is_refused_before_anything_runs(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    text = default_policy_path().read_text()
    clip = f"max_grad_norm: {DEFAULT.dp.max_grad_norm}"
    assert clip in text
    policy.write_text(text.replace(clip, "max_grad_norm: -1"))
    store = tmp_path / "runs.sqlite"
    out = consortium("run", "--policy", str(policy), "--store", str(store), timeout=120,
                     env={HOME_ENV: str(tmp_path / "home"), SITE_HOME_ENV: str(tmp_path / "s")})
    assert out.returncode == 2
    assert "dp.max_grad_norm" in out.stderr and str(policy) in out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not store.exists() and not (tmp_path / "s").exists()


def test_homes_stores_ledgers_and_keys_are_private_to_the_user(demo: Demo) -> None:
    """Every directory the demonstration creates is 0700; stores, ledgers and keys are 0600."""
    for root in (demo.home, demo.sites_home):
        for path in [root, *root.rglob("*")]:
            mode = path.stat().st_mode & 0o777
            if path.is_dir():
                assert mode == 0o700, f"{path} is {oct(mode)}"
            elif path.suffix in (".sqlite",) or (path.name.endswith(".pem")
                                                  and ".pub." not in path.name) \
                    or path.name == "node.key":
                assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
