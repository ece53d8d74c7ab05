"""Run stores for the dashboard tests, written by the consortium's own code paths.

Every run is planned by :func:`consortium.run.plan.make_plan` from the embedded policy (validated
by :mod:`policies.loader`), so its policy JSON and SecAgg+ parameters are what a real run
records (``timeout_s``, an odd ``num_shares``). :func:`write_run` writes the rounds with the run
store's writer API; :func:`write_audited_run` goes through the server's own judgement and audit
path without Flower: the demonstration's site homes and key enrolment
(:func:`consortium.run.demo.enrol_demo_sites`), receipts signed with those keys and ε from the one
ε computation, :func:`consortium.run.attribution.judge_fit`,
:func:`consortium.run.rounds.make_round` and :class:`consortium.audit.trail.RunAudit`, a round and
its audit entries in one transaction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from consortium.audit.log import AuditLog
from consortium.audit.registry import KeyRegistry
from consortium.audit.trail import RunAudit
from consortium.home import open_home
from consortium.run.attribution import Attribution, Reply, RoundContext, judge_fit
from consortium.run.demo import enrol_demo_sites
from consortium.run.plan import RunPlan, make_plan
from consortium.run.rounds import EvalFigure, make_round
from consortium.store.records import (
    MODE_DEMO,
    MODE_DEPLOYMENT,
    ROUND_FAILED,
    ROUND_OK,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
    SiteRoundRecord,
)
from consortium.store.run_store import RunStore
from site_node.demo import provision
from site_node.privacy import accountant
from site_node.protocol import keys, wire
from site_node.protocol.mechanism import Mechanism
from site_node.protocol.receipt import Receipt

SITES = ("cleveland", "hungary", "long_beach", "switzerland")
SITE_NAMES = ("Cleveland", "Hungary (Budapest)", "VA Long Beach", "Switzerland (Zurich/Basel)")
FAILURE = "secure aggregation halted (too few sites answered a SecAgg+ stage)"


def plan(run_id: str, rounds: int, *, demo: bool = False) -> RunPlan:
    """The plan of a run of the embedded policy, as ``consortium run``/``submit`` make it."""
    return make_plan(rounds=rounds, run_id=run_id, demo=demo)


def run_record(p: RunPlan, *, started_at: str, sites: tuple[str, ...] | None = None,
               engine: str = "simulation") -> RunRecord:
    """The run record the server writes at run start (as ``ConsortiumWorkflow`` builds it)."""
    policy = p.loaded.policy
    return RunRecord(
        run_id=p.run_id, started_at=started_at, status=RUN_RUNNING, engine=engine, mode=p.mode,
        policy_sha256=p.policy_sha256, policy_json=p.loaded.canonical_json, delta=policy.delta,
        epsilon_ceiling=policy.epsilon_ceiling, rounds_planned=p.rounds, seed=p.seed,
        sites=sites or policy.sites, secagg_json=p.secagg_json(),
        task_sha256=p.task.sha256, task_json=p.task.canonical_json,
    )


def site_record(site: str, rnd: int, *, trained: bool = True,
                refusal: str | None = None, majority_rate: float = 0.5) -> SiteRoundRecord:
    """A plausible figure of ``site`` after round ``rnd`` (ε grows like √rounds)."""
    k = SITES.index(site) if site in SITES else 4
    spent = trained and refusal is None
    return SiteRoundRecord(
        site=site, accuracy=0.55 + 0.03 * rnd + 0.01 * k, loss=0.7 - 0.03 * rnd,
        num_examples=60 + 10 * k, num_train_examples=240 + 40 * k if spent else None,
        epsilon=round((0.3 + 0.05 * k) * math.sqrt(rnd), 4) if spent else None,
        delta=1e-5 if spent else None, noise_multiplier=1.1 if spent else None,
        sample_rate=0.2 if spent else None, steps=10 if spent else None,
        max_grad_norm=1.0 if spent else None, accountant="rdp" if spent else None,
        trained=spent, refusal=refusal, majority_rate=majority_rate,
    )


def ok_round(rnd: int, sites: Iterable[SiteRoundRecord], *, policy_sha256: str | None = None,
             started_at: str = "2025-01-01T10:00:00+00:00") -> RoundRecord:
    """A completed round of these site figures, with its means."""
    rows = tuple(sites)
    accs = [s.accuracy for s in rows if s.accuracy is not None]
    return RoundRecord(
        round=rnd, status=ROUND_OK, started_at=started_at, finished_at=started_at,
        duration_s=10.0 + rnd, accuracy_mean=sum(accs) / len(accs),
        accuracy_weighted=sum(accs) / len(accs) + 0.005, loss_mean=0.7 - 0.03 * rnd,
        loss_weighted=0.69 - 0.03 * rnd, policy_sha256=policy_sha256, sites=rows,
    )


def write_run(
    store: RunStore,
    run_id: str,
    *,
    rounds: int,
    status: str = RUN_COMPLETED,
    sites: tuple[str, ...] = SITES,
    planned: int = 10,
    started_at: str = "2025-01-01T10:00:00+00:00",
    failed: Iterable[int] = (),
    dropouts: Mapping[int, Iterable[str]] | None = None,
    not_trained: Mapping[int, Iterable[str]] | None = None,
    refusals: Mapping[int, Mapping[str, str]] | None = None,
    demo: bool = False,
) -> RunPlan:
    """Write a run with ``rounds`` rounds; failed rounds have no site rows."""
    failed, dropouts, not_trained = set(failed), dropouts or {}, not_trained or {}
    refusals = refusals or {}
    p = plan(run_id, planned, demo=demo)
    store.start_run(run_record(p, started_at=started_at, sites=sites))
    for r in range(1, rounds + 1):
        if r in failed:
            rec = RoundRecord(round=r, status=ROUND_FAILED, started_at=started_at,
                              finished_at=started_at, duration_s=30.0, failure_reason=FAILURE,
                              policy_sha256=p.policy_sha256)
        else:
            present = [s for s in sites if s not in set(dropouts.get(r, ()))]
            rec = ok_round(r, (site_record(s, r, trained=s not in set(not_trained.get(r, ())),
                                           refusal=refusals.get(r, {}).get(s))
                               for s in present), policy_sha256=p.policy_sha256,
                           started_at=started_at)
        store.record_round(run_id, rec, checkpoint=b"npz", checkpoint_sha256="00" * 32)
    if status != RUN_RUNNING:
        store.finish_run(run_id, status=status, reason="completed all planned rounds",
                         finished_at="2025-01-01T11:00:00+00:00")
    return p


def write_audited_run(
    path: Path,
    run_id: str,
    *,
    rounds: int = 2,
    started_at: str = "2026-11-28T00:00:00+00:00",
    refusals: Mapping[str, str] | None = None,
    node_base: int = 1000,
) -> RunPlan:
    """A local-demo run whose receipts and audit trail are genuine.

    ``refusals`` maps a site to the reason it refuses every round (weight 0, nothing spent);
    the other sites train. A round in which fewer than the policy's ``min_sites`` trained
    fails, as the workflow judges it. Site homes live under ``$SITE_NODE_HOME/demo``; the
    consortium key is the one of ``$HOSPITAL_CONSORTIUM_HOME``.
    """
    refusals = refusals or {}
    p = plan(run_id, rounds, demo=True)
    policy = p.loaded.policy
    dp = policy.dp
    mech = Mechanism(noise_multiplier=p.noise_multiplier, sample_rate=float(dp.sample_rate),
                     steps=dp.steps_per_round, max_grad_norm=float(dp.max_grad_norm),
                     accountant=dp.accountant)
    with RunStore(path) as store:
        audit_log = AuditLog(store.db, key=open_home().signing_key())
        run = run_record(p, started_at=started_at)
        enrol_demo_sites(audit_log, policy.sites, run_id)
        attribution = Attribution(KeyRegistry.from_entries(audit_log.entries()), policy.sites,
                                  demo=True)
        with store.db.transaction():
            store.start_run(run)
            audit = RunAudit(audit_log, run)
            audit.start()
        ok = 0
        for rnd in range(1, rounds + 1):
            replies: list[Reply] = []
            evals: list[EvalFigure] = []
            for k, site in enumerate(policy.sites):
                if site in refusals:
                    replies.append(Reply(node_base + k, 0, {wire.SITE: site,
                                                            wire.REFUSAL: refusals[site]}))
                    continue
                eps = accountant.epsilon([mech] * rnd, delta=policy.delta,
                                         accountant=mech.accountant)
                n = 200 + 10 * k
                receipt = Receipt(
                    run_id=run_id, round=rnd, site=site, policy_sha256=p.policy_sha256,
                    site_policy_sha256="", task_sha256=p.task.sha256,
                    noise_multiplier=mech.noise_multiplier,
                    sample_rate=mech.sample_rate, steps=mech.steps,
                    max_grad_norm=mech.max_grad_norm, accountant=mech.accountant,
                    delta=policy.delta, epsilon=eps, lifetime_epsilon=eps,
                    epsilon_ceiling=float(policy.epsilon_ceiling),
                    lifetime_epsilon_ceiling=float(policy.lifetime_epsilon_ceiling),
                    num_examples=n, update_sha256=f"{rnd:064x}", issued_at=started_at)
                key = keys.load_signing_key(provision(site).receipt_key)
                replies.append(Reply(node_base + k, n, {wire.SITE: site,
                                                        **receipt.sign(key).to_wire()}))
                evals.append(EvalFigure(site=site, loss=0.5, accuracy=0.8 - 0.01 * k,
                                        num_examples=60 + k))
            judgement = judge_fit(replies, attribution, RoundContext(
                run_id, rnd, p.policy_sha256, p.task.sha256))
            assert not judgement.rejections, judgement.rejections
            failure = None
            if len(judgement.trained) < policy.min_sites:  # as the workflow judges a round
                failure = (f"only {len(judgement.trained)} site(s) trained, the policy requires "
                           f"min_sites={policy.min_sites}")
                evals = []
            record = make_round(rnd, judgement=judgement, evals=evals, started_at=started_at,
                                duration_s=1.0, policy_sha256=p.policy_sha256, failure=failure)
            ok += record.status == ROUND_OK
            with store.db.transaction():
                store.record_round(run_id, record)
                audit.round(rnd, judgement, failures=0, status=record.status, reason=failure,
                            record=record)
        status, reason = ((RUN_COMPLETED, "completed all planned rounds") if ok
                          else (RUN_FAILED, "no round completed"))
        with store.db.transaction():
            store.finish_run(run_id, status=status, reason=reason, finished_at=started_at)
            audit.finish(status, reason)
    return p


__all__ = ["MODE_DEMO", "MODE_DEPLOYMENT", "SITES", "SITE_NAMES", "ok_round", "plan",
           "run_record", "site_record", "write_audited_run", "write_run"]
