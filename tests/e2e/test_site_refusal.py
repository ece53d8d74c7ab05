"""A site over its lifetime budget refuses before training; the round completes without it.
A refusal that can be predicted (every site over budget; a site with more training rows than
secagg.max_weight) stops the run in the preflight, before any site trains or spends.

Real `consortium run` processes on Flower's simulation engine, real SecAgg+ (the refusing site
still takes part in the protocol with weight 0), real admission control against each site's
own ledger. A refusal is a reply, not a crash: its reason reaches the round table, the export's
site record and the signed audit log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consortium.audit.log import AuditLog
from consortium.audit.trail import PREFLIGHT, ROUND, ROUND_FAILED
from consortium.home import HOME_ENV
from consortium.store.database import Database
from policies.loader import default_policy_path, example_site_policy_path, load_site_policy
from site_node.home import HOME_ENV as SITE_HOME_ENV
from site_node.privacy import accountant
from site_node.privacy.ledger import LEDGER_FILE, SiteLedger
from site_node.protocol.mechanism import Mechanism
from tests.site_node.data import synthetic

pytestmark = pytest.mark.slow
SITES = ["cleveland", "hungary", "long_beach", "switzerland"]
# A past run that spent a lot: ε ≈ 12 at δ = 1e-5, beyond every ceiling of the demonstration.
SPENT = Mechanism(noise_multiplier=0.6, sample_rate=0.2, steps=100, max_grad_norm=1.0,
                  accountant="rdp")


def consortium(*args: str, env: dict[str, str],
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consortium", *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env={**os.environ, "COLUMNS": "200", **env})


def _state(sites_home: Path, site: str) -> Path:
    return sites_home / "demo" / site / "state"


def _spend_earlier(sites_home: Path, site: str) -> float:
    """Record a past run in the site's own ledger; its lifetime ε afterwards."""
    with SiteLedger.in_state_dir(_state(sites_home, site)) as ledger:
        ledger.record(run_id="an-earlier-run", rnd=1, policy_sha256="0" * 64, mechanism=SPENT,
                      delta=1e-5)
    return accountant.epsilon([SPENT], delta=1e-5, accountant="rdp")


@dataclass(frozen=True)
class Refused:
    """A finished run, its output, its export and its audit log round entries."""

    returncode: int
    stdout: str
    export: dict[str, Any]
    rounds_logged: list[dict[str, Any]]
    sites_home: Path


def _run(tmp: Path, policy_text: str, spenders: list[str], *args: str) -> Refused:
    env = {HOME_ENV: str(tmp / "home"), SITE_HOME_ENV: str(tmp / "sites")}
    spent = [_spend_earlier(tmp / "sites", site) for site in spenders]
    assert all(eps > 10 for eps in spent), spent  # over every lifetime ceiling
    policy = tmp / "policy.yaml"
    policy.write_text(policy_text, encoding="utf-8")
    run = consortium("run", "--policy", str(policy), *args, env=env)
    exp = consortium("export", env=env, timeout=120)
    assert exp.returncode == 0, exp.stderr
    export = json.loads(exp.stdout)
    with closing(Database(tmp / "home" / "runs.sqlite", readonly=True)) as db:
        logged = [e.payload for e in AuditLog(db).entries(export["run_id"])
                  if e.kind in (ROUND, ROUND_FAILED)]
    return Refused(run.returncode, run.stdout + run.stderr, export, logged, tmp / "sites")


@pytest.fixture(scope="module")
def one_refuses(tmp_path_factory: pytest.TempPathFactory) -> Refused:
    """Switzerland spent its budget in an earlier run; the example site policies are in
    force; the consortium needs 3 of the 4 sites per round."""
    text = default_policy_path().read_text(encoding="utf-8").replace("min_sites: 4",
                                                                     "min_sites: 3")
    return _run(tmp_path_factory.mktemp("refusal"), text, ["switzerland"], "--rounds", "2",
                "--example-site-policies")


def test_the_run_completes_without_the_refusing_site(one_refuses: Refused) -> None:
    assert one_refuses.returncode == 0, one_refuses.stdout[-3000:]
    assert "Run ended: completed" in one_refuses.stdout
    assert "example site policies in force" in one_refuses.stdout
    assert "Traceback" not in one_refuses.stdout
    rounds = one_refuses.export["rounds"]
    assert [(r["round"], r["status"]) for r in rounds] == [(1, "ok"), (2, "ok")]
    for rnd in rounds:
        trained = sorted(s for s, fig in rnd["sites"].items() if fig["trained"])
        assert trained == ["cleveland", "hungary", "long_beach"]
        assert rnd["accuracy_mean"] is not None


def test_the_refusal_reason_is_in_the_export_and_the_audit_log(one_refuses: Refused) -> None:
    run_id = one_refuses.export["run_id"]
    reasons = []
    for rnd, logged in zip(one_refuses.export["rounds"], one_refuses.rounds_logged,
                           strict=True):
        swiss = rnd["sites"]["switzerland"]
        assert swiss["trained"] is False and swiss["epsilon"] is None
        assert swiss["noise_multiplier"] is None and swiss["num_train_examples"] is None
        reason = swiss["refusal"]
        assert reason and run_id in reason
        assert logged["round"] == rnd["round"]
        assert logged["refusals"] == {"switzerland": reason}  # the same words, signed
        assert logged["sites_with_receipt"] == ["cleveland", "hungary", "long_beach"]
        reasons.append(reason)
    first, second = reasons
    assert "lifetime ceiling 6" in first and "nothing was spent" in first
    assert "keeps refusing" in second and first in second  # a refusal is final for the run


def test_a_refusing_site_spends_nothing(one_refuses: Refused) -> None:
    with SiteLedger.in_state_dir(_state(one_refuses.sites_home, "switzerland"),
                                 readonly=True) as ledger:
        assert ledger.run_ids() == ["an-earlier-run"]  # nothing of this run
        assert [r.round for r in ledger.refusals(one_refuses.export["run_id"])] == [1, 2]
    with SiteLedger.in_state_dir(_state(one_refuses.sites_home, "cleveland"),
                                 readonly=True) as ledger:
        assert [e.round for e in ledger.events(one_refuses.export["run_id"])] == [1, 2]


def test_the_example_site_policies_were_in_force(one_refuses: Refused) -> None:
    hungary = load_site_policy(example_site_policy_path("hungary")).policy
    cleveland = load_site_policy(example_site_policy_path("cleveland")).policy
    assert hungary.dp is not None and cleveland.epsilon_ceiling is not None
    last = one_refuses.export["rounds"][-1]["sites"]
    assert last["hungary"]["delta"] == hungary.delta
    assert last["hungary"]["max_grad_norm"] == hungary.dp.max_grad_norm
    assert 0 < last["cleveland"]["epsilon"] <= cleveland.epsilon_ceiling
    assert last["long_beach"]["delta"] == 1e-5


def _preflight_entries(tmp: Path, run_id: str) -> list[dict[str, Any]]:
    with closing(Database(tmp / "home" / "runs.sqlite", readonly=True)) as db:
        return [e.payload for e in AuditLog(db).entries(run_id) if e.kind == PREFLIGHT]


def _ledger_of_run(sites_home: Path, site: str, run_id: str) -> tuple[int, int]:
    """(DP events, refusals) of ``run_id`` in the site's ledger (none: no ledger at all)."""
    state = _state(sites_home, site)
    if not (state / LEDGER_FILE).is_file():
        return 0, 0
    with SiteLedger.in_state_dir(state, readonly=True) as ledger:
        return len(ledger.events(run_id)), len(ledger.refusals(run_id))


def test_when_every_site_would_refuse_the_run_stops_before_any_round(tmp_path: Path) -> None:
    """Every site is over its lifetime ceiling: the preflight finds it, nobody is asked to
    train, and no ledger gets anything of this run (not even a refusal)."""
    text = default_policy_path().read_text(encoding="utf-8")
    refused = _run(tmp_path, text, SITES, "--rounds", "1")
    assert refused.returncode == 1, refused.stdout[-3000:]
    assert "Run ended: stopped (preflight: only 0 of 4 member site(s)" in refused.stdout
    assert "Traceback" not in refused.stdout
    run_id = refused.export["run_id"]
    assert refused.export["status"] == "stopped" and refused.export["rounds"] == []
    assert refused.rounds_logged == []
    (logged,) = _preflight_entries(tmp_path, run_id)
    assert sorted(logged["refusals"]) == SITES and logged["admitting"] == []
    assert sorted(logged["final_refusals"]) == SITES
    for site in SITES:
        assert "lifetime ceiling 10" in logged["refusals"][site]
        assert f"{site} refused: {logged['refusals'][site]}" in refused.export["stop_reason"]
        assert _ledger_of_run(refused.sites_home, site, run_id) == (0, 0)


def test_a_site_with_more_rows_than_max_weight_stops_the_run_before_round_1(
        tmp_path: Path) -> None:
    """The issue's case: one site has 1050 training rows, secagg.max_weight is 1000 and every
    site is needed. Before, the other three trained and spent every round of a run that could
    not succeed; now the run stops before round 1 and nobody spends anything."""
    task = synthetic.write_task(tmp_path)
    rows = {"north": 80, "south": 70, "east": 60, "west": 1400}  # west: 1050 for training
    files = {site: synthetic.write_table(tmp_path / f"{site}.csv", synthetic.table(n, seed=i))
             for i, (site, n) in enumerate(rows.items())}
    data = [x for site, path in files.items() for x in ("--data", f"{site}={path}")]
    env = {HOME_ENV: str(tmp_path / "home"), SITE_HOME_ENV: str(tmp_path / "sites")}
    run = consortium("run", "--task", str(task), *data, "--rounds", "2", env=env)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out[-3000:]
    assert "Run ended: stopped (preflight: only 3 of 4 member site(s)" in out
    why = ("west refused: site west refuses: its 1050 training examples exceed "
           "secagg.max_weight 1000")
    assert why in " ".join(out.split()), out[-3000:]  # the console may wrap the line
    assert "Traceback" not in out
    exp = consortium("export", env=env, timeout=120)
    assert exp.returncode == 0, exp.stderr
    export = json.loads(exp.stdout)
    assert export["status"] == "stopped" and export["rounds"] == []
    assert why in export["stop_reason"]
    (logged,) = _preflight_entries(tmp_path, export["run_id"])
    assert logged["admitting"] == ["north", "south", "east"]
    assert list(logged["refusals"]) == ["west"] and logged["final_refusals"] == []
    for site in rows:
        assert _ledger_of_run(tmp_path / "sites", site, export["run_id"]) == (0, 0)
