"""The site's budget ledger, admission control and the guarded client round."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from typer.testing import CliRunner

from consortium import wire
from consortium.receipt import SignedReceipt, update_sha256
from site_node import client as client_mod
from site_node.accounting import Mechanism, SiteAccountant
from site_node.admission import AdmissionRefused, Ceilings, admit, admit_round
from site_node.cli import app as site_app
from site_node.guard import SiteGuard
from site_node.ledger import LedgerError, SiteLedger

DELTA = 1e-5


def mech(sigma: float = 1.2, q: float = 0.25, steps: int = 4, acct: str = "rdp") -> Mechanism:
    return Mechanism(noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0,
                     accountant=acct)


RUNS = {"run-a": [mech(1.2)] * 3, "run-b": [mech(0.9, 0.125, 8)] * 2, "run-c": [mech(2.0)] * 4}


def fill(ledger: SiteLedger, runs: dict[str, list[Mechanism]] = RUNS) -> None:
    for run_id, mechs in runs.items():
        for rnd, m in enumerate(mechs, start=1):
            ledger.record(run_id=run_id, rnd=rnd, policy_sha256="p" * 64, mechanism=m,
                          delta=DELTA)


@pytest.mark.parametrize("acct", ["rdp", "prv"])
def test_lifetime_composition_matches_one_accountant_over_all_events(
    tmp_path: Path, acct: str
) -> None:
    with SiteLedger(tmp_path / "ledger.sqlite") as ledger:
        fill(ledger)
        lifetime = ledger.lifetime_epsilon(DELTA, accountant=acct)
        per_run = [ledger.run_epsilon(r, DELTA, accountant=acct) for r in RUNS]
    single = SiteAccountant(accountant=acct)
    for mechs in RUNS.values():
        for m in mechs:
            single.record(Mechanism(**{**m.__dict__, "accountant": acct}))
    assert lifetime == pytest.approx(single.epsilon(DELTA), rel=1e-9)
    assert lifetime < sum(per_run)  # composed, not added
    assert lifetime > max(per_run)


def test_ledger_persists_and_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with SiteLedger(path) as ledger:
        fill(ledger)
        with pytest.raises(LedgerError, match="UNIQUE"):
            ledger.record(run_id="run-a", rnd=1, policy_sha256="p", mechanism=mech(), delta=DELTA)
    with SiteLedger(path) as ledger:
        assert [e.run_id for e in ledger.events()].count("run-a") == 3
        assert ledger.run_ids() == list(RUNS)
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM dp_events")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE dp_events SET noise_multiplier=99")


def test_admission_refuses_a_run_that_would_pass_the_lifetime_ceiling(tmp_path: Path) -> None:
    with SiteLedger(tmp_path / "l.sqlite") as ledger:
        fill(ledger)
        before = ledger.events()
        lifetime = ledger.lifetime_epsilon(DELTA)
        ceilings = Ceilings(delta=DELTA, epsilon_ceiling=100,
                            lifetime_epsilon_ceiling=lifetime + 0.1)
        with pytest.raises(AdmissionRefused, match=r"lifetime ε to .* > lifetime ceiling"):
            admit(ledger, site="s", run_id="new", mechanism=mech(1.0), rounds=10,
                  ceilings=ceilings)
        assert ledger.events() == before


def test_a_run_is_admitted_whole_then_each_round_is_checked(tmp_path: Path) -> None:
    with SiteLedger(tmp_path / "l.sqlite") as ledger:
        one = SiteAccountant(accountant="rdp")
        for _ in range(3):
            one.record(mech())
        ceiling = one.epsilon(DELTA) + 1e-6  # exactly three rounds fit
        c = Ceilings(delta=DELTA, epsilon_ceiling=ceiling, lifetime_epsilon_ceiling=100)
        with pytest.raises(AdmissionRefused, match="4 more round"):
            admit_round(ledger, site="s", run_id="r", rnd=1, rounds_planned=4, mechanism=mech(),
                        ceilings=c)
        for rnd in (1, 2, 3):
            admit_round(ledger, site="s", run_id="r", rnd=rnd, rounds_planned=3,
                        mechanism=mech(), ceilings=c)
            ledger.record(run_id="r", rnd=rnd, policy_sha256="p", mechanism=mech(), delta=DELTA)
        with pytest.raises(AdmissionRefused, match="the next round"):
            admit_round(ledger, site="s", run_id="r", rnd=4, rounds_planned=3, mechanism=mech(),
                        ceilings=c)
        assert len(ledger.events("r")) == 3


# -- the guarded client round ---------------------------------------------------------------

def fit_config(
    run_id: str = "run-x", rnd: int = 1, lifetime: float = 10.0
) -> dict[str, bool | bytes | float | int | str]:
    return {wire.RUN_ID: run_id, wire.ROUND: rnd, wire.POLICY_SHA256: "c" * 64,
            wire.NOISE_MULTIPLIER: 2.0, wire.SAMPLE_RATE: 0.25, wire.MAX_GRAD_NORM: 1.0,
            wire.LOCAL_EPOCHS: 1, wire.LEARNING_RATE: 0.5, wire.ACCOUNTANT: "rdp",
            wire.DELTA: DELTA, wire.EPSILON_CEILING: 3.0,
            wire.LIFETIME_EPSILON_CEILING: lifetime, wire.ROUNDS_PLANNED: 2}


def site_client(tmp_path: Path, site: str = "switzerland") -> client_mod.SiteClient:
    ctx = Context(run_id=1, node_id=1, node_config={wire.NODE_SITE_ID: site,
                                                    wire.NODE_STATE_DIR: str(tmp_path)},
                  state=RecordDict(), run_config={})
    return client_mod.client_for(ctx)


def test_refused_run_never_trains_and_spends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(client_mod, "train_dp", lambda *a, **k: calls.append(a))
    client = site_client(tmp_path)
    weights = [np.zeros((1, 30), np.float32), np.zeros(1, np.float32)]
    with pytest.raises(AdmissionRefused, match="nothing was spent"):
        client.fit(weights, fit_config(lifetime=0.5))
    assert calls == []
    with SiteLedger.in_state_dir(tmp_path) as ledger:
        assert ledger.events() == []


def test_trained_round_is_recorded_before_the_update_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = site_client(tmp_path)
    from site_node.model import initial_weights

    weights, n, metrics = client.fit(initial_weights(0), fit_config())
    signed = SignedReceipt.from_wire(metrics)
    assert signed.receipt.update_sha256 == update_sha256(weights)
    assert signed.receipt.num_examples == n and signed.receipt.site == "switzerland"
    with SiteLedger.in_state_dir(tmp_path) as ledger:
        (event,) = ledger.events()
        assert signed.receipt.epsilon == pytest.approx(ledger.run_epsilon("run-x", DELTA))
    # An upload lost after training: the ledger already holds the round.
    monkeypatch.setattr(SiteGuard, "_receipt", lambda *a, **k: (_ for _ in ()).throw(
        ConnectionError("upload lost")))
    with pytest.raises(ConnectionError):
        client.fit(initial_weights(0), fit_config(rnd=2))
    with SiteLedger.in_state_dir(tmp_path) as ledger:
        assert [e.round for e in ledger.events()] == [1, 2]
    assert event.mechanism.noise_multiplier == 2.0


def test_site_policy_tightens_the_instruction(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(
        "site: hungary\nepsilon_ceiling: 2.5\ndp:\n  noise_multiplier: 2.5\n  max_grad_norm: 0.5\n")
    guard = SiteGuard("hungary", tmp_path)
    plan = client_mod.plan_from_config(fit_config())
    tight = guard.before_training(fit_config(), plan)
    assert (tight.noise_multiplier, tight.max_grad_norm, tight.epsilon_ceiling) == (2.5, 0.5, 2.5)


def test_budget_command_shows_lifetime_runs_and_history(tmp_path: Path) -> None:
    with SiteLedger.in_state_dir(tmp_path / "hungary") as ledger:
        fill(ledger)
    res = CliRunner().invoke(site_app, ["budget", "--state-dir", str(tmp_path / "hungary"),
                                        "--json"])
    assert res.exit_code == 0, res.output
    import json

    data = json.loads(res.output)
    assert data["site"] == "hungary" and [r["run_id"] for r in data["runs"]] == list(RUNS)
    assert len(data["history"]) == 9
    assert data["remaining"] == pytest.approx(10.0 - data["lifetime_epsilon"])
