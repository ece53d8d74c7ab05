"""A small audited run written through the real writers (no Flower): 4 sites × 2 rounds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from consortium.keys import SITE_KEY_FILE, load_or_create_key, site_state_dir
from consortium.receipt import Receipt
from consortium.records import (
    ROUND_OK,
    RUN_COMPLETED,
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
    SiteRoundRecord,
)
from consortium.run_audit import RunAudit, RunFacts
from consortium.store import RunStore
from policies.loader import load_policy
from site_node.accounting import Mechanism, SiteAccountant

SITES = ("cleveland", "hungary", "long_beach", "switzerland")
ROUNDS = 2
RUN_ID = "run-0001"
SIGMA = {"cleveland": 2.0, "hungary": 2.5, "long_beach": 1.8, "switzerland": 1.8}


@dataclass(frozen=True)
class AuditedRun:
    """Where the fixture run lives."""

    store: Path
    home: Path
    run_id: str


def _receipt(site: str, rnd: int, acc: SiteAccountant, policy_sha: str) -> Receipt:
    m = Mechanism(noise_multiplier=SIGMA[site], sample_rate=0.25, steps=4, max_grad_norm=1.0,
                  accountant="rdp")
    acc.record(m)
    eps = acc.epsilon(1e-5)
    return Receipt(run_id=RUN_ID, round=rnd, site=site, policy_sha256=policy_sha,
                   site_policy_sha256="", noise_multiplier=m.noise_multiplier,
                   sample_rate=m.sample_rate, steps=m.steps, max_grad_norm=m.max_grad_norm,
                   accountant="rdp", delta=1e-5, epsilon=eps, lifetime_epsilon=eps,
                   epsilon_ceiling=3.0, lifetime_epsilon_ceiling=10.0, num_examples=100 + rnd,
                   update_sha256=f"{rnd:064x}", issued_at="2026-11-28T00:00:00+00:00")


def write_audited_run(tmp: Path) -> AuditedRun:
    """Run store + audit log of a completed run whose every receipt is genuine."""
    home, store_path = tmp / "home", tmp / "home" / "runs.sqlite"
    loaded = load_policy()
    run = RunRecord(run_id=RUN_ID, started_at="2026-11-28T00:00:00+00:00", status=RUN_RUNNING,
                    engine="simulation", policy_sha256=loaded.sha256,
                    policy_json=loaded.canonical_json, delta=1e-5, epsilon_ceiling=3.0,
                    rounds_planned=ROUNDS, seed=0, sites=SITES, secagg_json="{}")
    audit = RunAudit(store_path, RunFacts(RUN_ID, "simulation", loaded.sha256,
                                          loaded.canonical_json, SITES, ROUNDS), home=home)
    with RunStore(store_path) as store:
        store.start_run(run)
        audit.start()
        accs = {s: SiteAccountant(accountant="rdp") for s in SITES}
        for rnd in range(1, ROUNDS + 1):
            wires = []
            for site in SITES:
                key = load_or_create_key(site_state_dir(site, home) / SITE_KEY_FILE)
                wires.append((site, _receipt(site, rnd, accs[site], loaded.sha256).sign(key)
                              .to_wire()))
            sites = tuple(SiteRoundRecord(site=s, accuracy=0.8, loss=0.5, num_examples=50,
                                          num_train_examples=100, epsilon=accs[s].epsilon(1e-5),
                                          noise_multiplier=SIGMA[s], sample_rate=0.25, steps=4,
                                          max_grad_norm=1.0, accountant="rdp") for s in SITES)
            store.record_round(RUN_ID, RoundRecord(
                round=rnd, status=ROUND_OK, started_at="t", finished_at="t", duration_s=1.0,
                policy_sha256=loaded.sha256, sites=sites))
            assert audit.round(rnd, wires, 0, ROUND_OK) == len(SITES)
        store.finish_run(RUN_ID, status=RUN_COMPLETED, reason="completed all planned rounds",
                         finished_at="t")
    audit.finish(RUN_COMPLETED, "completed all planned rounds")
    return AuditedRun(store_path, home, RUN_ID)
