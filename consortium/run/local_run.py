"""A site's local-only run: the site trains alone, through the real site code, and it is a run.

For a comparison each site also trains without the others, with the same DP mechanism and as
many rounds as the federated run (the same instruction: the same policy, task, σ and planned
rounds), so it spends the same ε. It is not a shortcut around the site's privacy machinery:
every round goes through :meth:`site_node.client.SiteClient.fit` (the site's guard, admission,
ledger and signed receipt), the reply is judged like any other (attribution, receipt signature,
run, round, policy, task), and the run is recorded in the run store with its rounds, receipts,
checkpoints and audit entries, with engine ``local`` and mode ``local-demo``. So the site's
ledger, its receipts, ``consortium audit verify`` and the export all show what the comparison
spent.
"""

from __future__ import annotations

import logging
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from consortium.audit.log import AuditLog
from consortium.audit.registry import KeyRegistry
from consortium.audit.trail import RunAudit
from consortium.home import open_home
from consortium.run import rounds as rr
from consortium.run.attribution import Attribution, FitJudgement, Reply, RoundContext, judge_fit
from consortium.run.demo import enrol_demo_sites
from consortium.run.plan import RunPlan
from consortium.run.recorder import RoundOutcome, RunRecorder
from consortium.store.owner import this_process
from consortium.store.records import (
    ENGINE_LOCAL,
    ROUND_OK,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
    RunStatus,
)
from consortium.store.run_store import RunStore
from site_node.client import SiteClient
from site_node.model import initial_weights
from site_node.protocol import wire
from site_node.settings import NodeSettings

log = logging.getLogger(__name__)
#: The node id a local run's replies carry (there is no Flower node: the site runs in-process).
LOCAL_NODE = 0


@dataclass(frozen=True)
class LocalOutcome:
    """How a site's local-only run ended, and its model."""

    site: str
    run_id: str
    status: RunStatus
    rounds_ok: int
    weights: list[np.ndarray]


def _failure(judgement: FitJudgement, site: str) -> str | None:
    if judgement.rejections:
        return "reply rejected: " + "; ".join(r.reason for r in judgement.rejections)
    if not judgement.trained:
        return f"{site} did not train: {judgement.refusals.get(site, 'no reply')}"
    return None


class LocalRun:
    """One site's local-only run under the instruction of a federated plan.

    Parameters
    ----------
    federated : RunPlan
        The federated run's plan: its policy, task, σ, planned rounds and seed.
    settings : NodeSettings
        The site (its home, its data, its own policy).
    on_round : callable, optional
        Called with every recorded round.
    """

    def __init__(self, federated: RunPlan, settings: NodeSettings, *,
                 on_round: Callable[[RoundRecord], None] | None = None) -> None:
        self.site = settings.site
        self.plan = replace(federated, run_id=str(uuid.uuid4()))
        self.client = SiteClient(settings)
        self.on_round = on_round

    def _record(self) -> RunRecord:
        p, plan = self.plan.loaded.policy, self.plan
        return RunRecord(
            run_id=plan.run_id, started_at=rr.utc_now(), status=RUN_RUNNING, engine=ENGINE_LOCAL,
            mode=plan.mode, policy_sha256=plan.policy_sha256,
            policy_json=plan.loaded.canonical_json, delta=p.delta,
            epsilon_ceiling=p.epsilon_ceiling, rounds_planned=plan.rounds,
            seed=plan.seed, sites=(self.site,), secagg_json="{}", owner=this_process(),
            example_site_policies=plan.example_site_policies, task_sha256=plan.task.sha256,
            task_json=plan.task.canonical_json, data_fingerprints=self._fingerprint(),
            choice_json=plan.choice_json)

    def _fingerprint(self) -> dict[str, str] | None:
        """The site's data fingerprint, as the federated run recorded it."""
        fps = self.plan.data_fingerprints
        return None if fps is None or self.site not in fps else {self.site: fps[self.site]}

    def run(self, rounds: int) -> LocalOutcome:
        """Train ``rounds`` rounds (stopping at the first the site refuses); record everything."""
        weights = initial_weights(self.plan.model_task, self.plan.seed)
        ok, status = 0, RUN_COMPLETED
        with RunStore(self.plan.store_path) as store:
            audit_log = AuditLog(store.db, key=open_home().signing_key())
            enrol_demo_sites(audit_log, [self.site], self.plan.run_id)
            attribution = Attribution(KeyRegistry.from_entries(audit_log.entries()),
                                      (self.site,), demo=True)
            recorder = RunRecorder(store, RunAudit(audit_log, self._record()),
                                   on_round=self.on_round)
            recorder.start()
            reason = f"{rounds} round(s) done"
            for rnd in range(1, rounds + 1):
                record, weights = self._round(rnd, weights, recorder, attribution)
                if record.status != ROUND_OK:
                    status, reason = RUN_FAILED, record.failure_reason or "round failed"
                    break
                ok += 1
            recorder.finish(status, reason)
        log.info("local run %s of site %s: %s (%s)", self.plan.run_id, self.site, status, reason)
        return LocalOutcome(self.site, self.plan.run_id, status, ok, weights)

    def _round(self, rnd: int, weights: list[np.ndarray], recorder: RunRecorder,
               attribution: Attribution) -> tuple[RoundRecord, list[np.ndarray]]:
        started_at, t0 = rr.utc_now(), timeit.default_timer()
        config = self.plan.fit_config(rnd)
        new, n, metrics = self.client.fit(weights, config)
        ctx = RoundContext(self.plan.run_id, rnd, self.plan.policy_sha256, self.plan.task.sha256)
        judgement = judge_fit([Reply(LOCAL_NODE, n, metrics)], attribution, ctx)
        failure = _failure(judgement, self.site)
        evals: list[rr.EvalFigure] = []
        if failure is None:
            weights = new
            loss, n_test, emetrics = self.client.evaluate(weights, config)
            evals = [rr.EvalFigure(self.site, loss, rr.metric(emetrics, wire.ACCURACY), n_test,
                                   majority_rate=rr.metric(emetrics, wire.MAJORITY_RATE))]
        record = recorder.round(RoundOutcome(
            round=rnd, judgement=judgement, started_at=started_at, t0=t0, failure=failure,
            model=weights if failure is None else None, evals=evals))
        return record, weights
