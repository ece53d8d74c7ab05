"""A small audited run written through the real writers (no Flower): 4 sites × 2 rounds.

The consortium's own code writes it: the run store, the audit log signed by a consortium home's
key, the key registry (each site's receipt key enrolled), :class:`RunAudit` for the run's
entries and :mod:`consortium.run.rounds` for the round records. Every receipt is a real
:class:`Receipt` signed by the site's real Ed25519 key, with the ε the site's one ε computation
(:mod:`site_node.privacy.accountant`, Opacus) gives for its mechanism history. The dashboard's
audit tests use it too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consortium.audit import registry
from consortium.audit.log import AuditLog
from consortium.audit.registry import EnrolledKey
from consortium.audit.trail import RunAudit
from consortium.home import open_home
from consortium.run import rounds as rr
from consortium.run.attribution import FitJudgement, Trained
from consortium.store.records import (
    MODE_DEPLOYMENT,
    RUN_COMPLETED,
    RUN_RUNNING,
    RunRecord,
)
from consortium.store.run_store import RunStore
from policies.loader import LoadedPolicy, load_policy
from policies.task_loader import LoadedTask
from site_node.privacy import accountant
from site_node.protocol.mechanism import Mechanism
from site_node.protocol.receipt import Receipt, SignedReceipt
from tests.site_node.data_files import heart_task

SITES = ("cleveland", "hungary", "long_beach", "switzerland")
ROUNDS = 2
RUN_ID = "run-0001"
DELTA = 1e-5
SIGMA = {"cleveland": 4.0, "hungary": 5.0, "long_beach": 3.7, "switzerland": 3.7}
EXAMPLES = {"cleveland": 242, "hungary": 235, "long_beach": 160, "switzerland": 98}
EPSILON_CEILING = 1.0  # the shipped consortium policy's: 2 rounds of every σ stay below
LIFETIME_CEILING = 10.0
#: The task every fixture run trains (the heart-disease example's).
TASK: LoadedTask = heart_task()


@dataclass(frozen=True)
class AuditedRun:
    """Where the fixture run lives, and the keys that wrote it."""

    store: Path
    home: Path
    run_id: str
    site_keys: Mapping[str, Ed25519PrivateKey] = field(default_factory=dict)


def site_key(seed: int) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key (tests only): seed byte repeated 32 times."""
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def default_site_keys(sites: tuple[str, ...] = SITES) -> dict[str, Ed25519PrivateKey]:
    """One distinct key per site."""
    return {s: site_key(10 + i) for i, s in enumerate(sites)}


def mechanism(site: str) -> Mechanism:
    """The DP-SGD mechanism ``site`` runs in every round of the fixture."""
    return Mechanism(noise_multiplier=SIGMA.get(site, 4.0), sample_rate=0.25, steps=4,
                     max_grad_norm=1.0, accountant="rdp")


@functools.lru_cache(maxsize=64)
def site_epsilon(site: str, rounds: int) -> float:
    """ε at :data:`DELTA` after ``rounds`` rounds of :func:`mechanism` (Opacus, via the one ε
    computation; cached: the fixture asks for the same few values again and again)."""
    return accountant.epsilon([mechanism(site)] * rounds, delta=DELTA, accountant="rdp")


def make_receipt(site: str, rnd: int, policy_sha256: str, *, run_id: str = RUN_ID,
                 trained_rounds: int | None = None, **changes: Any) -> Receipt:
    """The receipt ``site`` issues after round ``rnd``, having trained ``trained_rounds``
    rounds of this run (default: every round so far); ``changes`` override fields."""
    m = mechanism(site)
    eps = site_epsilon(site, rnd if trained_rounds is None else trained_rounds)
    receipt = Receipt(
        run_id=run_id, round=rnd, site=site, policy_sha256=policy_sha256,
        site_policy_sha256="", task_sha256=TASK.sha256, noise_multiplier=m.noise_multiplier,
        sample_rate=m.sample_rate, steps=m.steps, max_grad_norm=m.max_grad_norm,
        accountant=m.accountant, delta=DELTA, epsilon=eps, lifetime_epsilon=eps,
        epsilon_ceiling=EPSILON_CEILING, lifetime_epsilon_ceiling=LIFETIME_CEILING,
        num_examples=EXAMPLES.get(site, 100), update_sha256=f"{rnd:064x}",
        issued_at="2026-11-28T00:00:00+00:00",
    )
    return replace(receipt, **changes) if changes else receipt


def run_record(loaded: LoadedPolicy, *, run_id: str = RUN_ID, sites: tuple[str, ...] = SITES,
               mode: str = MODE_DEPLOYMENT, rounds: int = ROUNDS) -> RunRecord:
    """A live run under ``loaded``."""
    p = loaded.policy
    return RunRecord(run_id=run_id, started_at="2026-11-28T00:00:00+00:00", status=RUN_RUNNING,
                     engine="simulation", mode=mode, policy_sha256=loaded.sha256,
                     policy_json=loaded.canonical_json, delta=p.delta,
                     epsilon_ceiling=p.epsilon_ceiling, rounds_planned=rounds, seed=0,
                     sites=sites, secagg_json="{}", task_sha256=TASK.sha256,
                     task_json=TASK.canonical_json)


def trained(signed: SignedReceipt, key: EnrolledKey) -> Trained:
    """A training reply the server accepted."""
    return Trained(site=signed.receipt.site, signed=signed, key=key,
                   num_examples=signed.receipt.num_examples)


def write_round(store: RunStore, audit: RunAudit, rnd: int, judgement: FitJudgement,
                *, failure: str | None = None, checkpoint: bool = False) -> None:
    """Record one round as the workflow does: round, receipts and entries in one transaction
    (with a checkpoint of a small model, if asked)."""
    evals = [rr.EvalFigure(site=t.site, loss=0.5, accuracy=0.8, num_examples=50,
                           majority_rate=0.6)
             for t in judgement.trained] if failure is None else []
    record = rr.make_round(rnd, judgement=judgement, evals=evals, started_at=rr.utc_now(),
                           duration_s=1.0, policy_sha256=audit.run.policy_sha256,
                           failure=failure)
    blob, digest = (rr.checkpoint_bytes([np.full(3, float(rnd))]) if checkpoint
                    else (None, None))
    with store.db.transaction():
        store.record_round(audit.run.run_id, record, checkpoint=blob, checkpoint_sha256=digest)
        audit.round(rnd, judgement, failures=0, status=record.status, reason=failure,
                    record=record, checkpoint_sha256=digest)


def write_audited_run(tmp: Path, *, mode: str = MODE_DEPLOYMENT,
                      checkpoints: bool = False) -> AuditedRun:
    """Run store + audit log of a completed run whose every receipt is genuine (with a
    checkpoint per round, if asked)."""
    home = tmp / "home"
    store_path = home / "runs.sqlite"
    loaded = load_policy()
    keys = default_site_keys()
    run = run_record(loaded, mode=mode)
    with RunStore(store_path) as store:
        log = AuditLog(store.db, key=open_home(home).signing_key())
        enrolled = {s: registry.enrol(log, s, keys[s].public_key(), mode=mode) for s in SITES}
        audit = RunAudit(log, run)
        with store.db.transaction():
            store.start_run(run)
            audit.start()
        for rnd in range(1, ROUNDS + 1):
            judgement = FitJudgement(trained=[
                trained(make_receipt(s, rnd, loaded.sha256).sign(keys[s]), enrolled[s])
                for s in SITES])
            write_round(store, audit, rnd, judgement, checkpoint=checkpoints)
        with store.db.transaction():
            store.finish_run(RUN_ID, status=RUN_COMPLETED, reason="completed all planned rounds",
                             finished_at=rr.utc_now())
            audit.finish(RUN_COMPLETED, "completed all planned rounds")
    return AuditedRun(store_path, home, RUN_ID, keys)
