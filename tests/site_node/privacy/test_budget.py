"""One lifetime figure: `site-node status`, `site-node budget --json`, the budget module and the
latest signed receipt state the same ε at the same δ for one ledger."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from site_node.cli.budget import summary
from site_node.cli.node import budget_line
from site_node.privacy import budget
from site_node.privacy.accountant import epsilon
from site_node.privacy.guard import SiteGuard
from site_node.privacy.ledger import SiteLedger
from site_node.protocol.receipt import SignedReceipt
from tests.site_node.factories import instruction, settings, site_home

WEIGHTS = [np.zeros((1, 3), np.float32), np.zeros(1, np.float32)]


def train_rounds(guard: SiteGuard, run_id: str, rounds: int) -> SignedReceipt:
    signed = None
    for rnd in range(1, rounds + 1):
        admitted = guard.admit(instruction(run_id, rnd), num_examples=100)
        signed = guard.record(admitted, weights=WEIGHTS, mechanism=admitted.plan.mechanism,
                              num_examples=100)
    assert signed is not None
    return signed


def test_status_budget_and_receipt_state_the_same_lifetime_epsilon(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    train_rounds(SiteGuard(settings(home)), "run-1", 2)  # at the consortium's δ = 1e-5
    own = tmp_path / "hungary.yaml"
    own.write_text("site: hungary\ndelta: 1.0e-7\n", encoding="utf-8")
    latest = train_rounds(SiteGuard(settings(home, policy_path=own)), "run-2", 2).receipt
    assert latest.delta == 1e-7 and latest.site_policy_sha256 != ""

    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        deltas = [e.delta for e in ledger.events()]
        life = budget.lifetime(ledger)
        every = [e.mechanism for e in ledger.events()]
    assert deltas == [1e-5, 1e-5, 1e-7, 1e-7]
    assert life is not None and (life.delta, life.events, life.runs) == (1e-7, 4, 2)
    # The one figure: every event composed, at the latest δ (not each run's own δ, not added).
    assert life.epsilon == epsilon(every, delta=1e-7, accountant=life.accountant)

    line = budget_line(home)
    report = summary(home.state_dir)
    assert report is not None
    assert latest.lifetime_epsilon == life.epsilon == report["lifetime_epsilon"]
    assert latest.delta == life.delta == report["delta"]
    assert latest.accountant == life.accountant == report["accountant"]
    assert line == f"lifetime {life}"
    assert f"ε = {latest.lifetime_epsilon:.4f} (record-level) at δ = {latest.delta:g}" in line
    assert "over 4 round(s) in 2 run(s)" in line
    # Per-run figures in the report are stated at that same δ.
    runs = {r["run_id"]: r for r in report["runs"]}
    assert runs["run-2"]["epsilon"] == latest.epsilon
    assert set(runs) == {"run-1", "run-2"} and len(report["history"]) == 4


def test_a_site_that_spent_nothing_says_so(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    assert budget_line(home) == "no DP events recorded yet"
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        assert budget.lifetime(ledger) is None
        ledger.record_refusal(run_id="r", rnd=1, reason="no")
    assert budget_line(home) == "no DP events recorded yet"
    assert summary(home.state_dir) is None


def test_a_delta_can_be_asked_for_explicitly(tmp_path: Path) -> None:
    home = site_home(tmp_path)
    train_rounds(SiteGuard(settings(home)), "run-1", 2)
    at_default = summary(home.state_dir)
    at_other = summary(home.state_dir, delta=1e-3)
    assert at_default is not None and at_other is not None
    assert at_other["delta"] == 1e-3 and at_other["lifetime_epsilon"] < \
        at_default["lifetime_epsilon"]
    with SiteLedger.in_state_dir(home.state_dir) as ledger:
        stated = budget.lifetime(ledger, delta=1e-3)
    assert stated is not None and stated.epsilon == pytest.approx(at_other["lifetime_epsilon"])
    assert "δ = 0.001" in str(stated)
