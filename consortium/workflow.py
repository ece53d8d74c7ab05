"""The consortium's round loop: SecAgg+ fit, federated evaluation, convergence, recording.

Flower's legacy ``DefaultWorkflow`` runs a fixed number of rounds and cannot stop early nor tell
a halted secure aggregation from a completed one. :class:`ConsortiumWorkflow` runs the same
stages (Flower's own ``SecAggPlusWorkflow`` and ``default_evaluate_workflow``), checks the
budget before every round and convergence after it, and writes every round, completed or
failed, to the run store in one transaction.
"""

from __future__ import annotations

import logging
import timeit
from collections.abc import Callable
from dataclasses import dataclass

import flwr.compat.common.recorddict_compat as compat
from flwr.app import ConfigRecord, Context
from flwr.common import parameters_to_ndarrays
from flwr.server import LegacyContext
from flwr.server.compat.app_utils import start_update_client_manager_thread
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.default_workflows import (
    default_evaluate_workflow,
    default_init_params_workflow,
)
from flwr.serverapp import Grid

from consortium import rounds as rr
from consortium.convergence import STOP_BUDGET, STOP_ROUNDS_DONE, ConvergenceCheck, budget_allows
from consortium.plan import RunPlan
from consortium.records import (
    ROUND_OK,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_RUNNING,
    RUN_STOPPED,
    RoundRecord,
    RunRecord,
)
from consortium.run_audit import RunAudit, audit_for
from consortium.store import RunStore
from consortium.strategy import ConsortiumFedAvg
from site_node.accounting import Mechanism

log = logging.getLogger(__name__)
HALTED = "secure aggregation halted (too few sites answered a SecAgg+ stage)"


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended."""

    run_id: str
    status: str
    reason: str
    rounds_ok: int
    rounds_failed: int


def secagg_workflow(plan: RunPlan) -> SecAggPlusWorkflow:
    """Flower's SecAgg+ workflow with the policy's (validated, odd-share) parameters."""
    s = plan.loaded.policy.secagg
    return SecAggPlusWorkflow(
        num_shares=s.num_shares, reconstruction_threshold=s.reconstruction_threshold,
        max_weight=s.max_weight, clipping_range=s.clipping_range,
        quantization_range=s.quantization_range, modulus_range=s.modulus_range,
        timeout=s.timeout_s,
    )


class ConsortiumWorkflow:
    """Run one consortium run on a Flower grid.

    Parameters
    ----------
    plan : RunPlan
        The resolved run settings.
    on_round : callable, optional
        Called with every recorded round (progress display).
    """

    def __init__(
        self, plan: RunPlan, *, on_round: Callable[[RoundRecord], None] | None = None
    ) -> None:
        self.plan = plan
        self.on_round = on_round
        self.fit_workflow = secagg_workflow(plan)
        self.outcome: RunOutcome | None = None
        self.audit: RunAudit | None = None

    def __call__(self, grid: Grid, context: Context) -> None:
        """Execute the run (Flower calls this with a LegacyContext)."""
        if not isinstance(context, LegacyContext):
            raise TypeError(f"Expect a LegacyContext, but get {type(context).__name__}.")
        thread, f_stop, c_done = start_update_client_manager_thread(grid, context.client_manager)
        c_done.wait()
        store = RunStore(self.plan.store_path)
        try:
            record = self._run_record()
            store.start_run(record)
            self.audit = audit_for(record, self.plan.store_path)
            default_init_params_workflow(grid, context)
            self.outcome = self._rounds(grid, context, store)
        except BaseException as exc:
            store.finish_run(self.plan.run_id, status=RUN_FAILED, reason=f"error: {exc!r}",
                             finished_at=rr.utc_now())
            if self.audit is not None:
                self.audit.finish(RUN_FAILED, f"error: {exc!r}")
            raise
        finally:
            f_stop.set()
            thread.join()
        store.finish_run(self.plan.run_id, status=self.outcome.status,
                         reason=self.outcome.reason, finished_at=rr.utc_now())
        assert self.audit is not None
        self.audit.finish(self.outcome.status, self.outcome.reason)
        store.close()

    def _run_record(self) -> RunRecord:
        p = self.plan.loaded.policy
        return RunRecord(
            run_id=self.plan.run_id, started_at=rr.utc_now(), status=RUN_RUNNING,
            engine=self.plan.engine, policy_sha256=self.plan.policy_sha256,
            policy_json=self.plan.loaded.canonical_json, delta=p.delta,
            epsilon_ceiling=p.epsilon_ceiling, rounds_planned=self.plan.rounds,
            seed=self.plan.seed, sites=p.sites, secagg_json=self.plan.secagg_json(),
        )

    def _mechanism(self) -> Mechanism:
        dp = self.plan.loaded.policy.dp
        return Mechanism(noise_multiplier=self.plan.noise_multiplier, sample_rate=dp.sample_rate,
                         steps=dp.steps_per_round, max_grad_norm=dp.max_grad_norm,
                         accountant=dp.accountant)

    def _rounds(self, grid: Grid, context: LegacyContext, store: RunStore) -> RunOutcome:
        p = self.plan.loaded.policy
        conv = ConvergenceCheck(p.convergence.target_accuracy, p.convergence.patience,
                                p.convergence.min_delta)
        cfg = ConfigRecord({Key.START_TIME: timeit.default_timer()})
        context.state.config_records[MAIN_CONFIGS_RECORD] = cfg
        done: list[RoundRecord] = []
        status, reason = RUN_COMPLETED, STOP_ROUNDS_DONE
        for rnd in range(1, self.plan.rounds + 1):
            allowed, eps = budget_allows(mechanism=self._mechanism(), rounds_attempted=rnd - 1,
                                         delta=p.delta, ceiling=p.epsilon_ceiling)
            if not allowed:
                status = RUN_STOPPED
                reason = (f"{STOP_BUDGET}: round {rnd} could bring a site to ε={eps:.4f} > "
                          f"{p.epsilon_ceiling}")
                break
            cfg[Key.CURRENT_ROUND] = rnd
            record = self._one_round(rnd, grid, context, store)
            done.append(record)
            stop = conv.observe(record.accuracy_mean) if record.status == ROUND_OK else None
            if stop:
                reason = stop
                break
        ok = sum(r.status == ROUND_OK for r in done)
        if done and ok == 0:
            status, reason = RUN_FAILED, "no round completed"
        log.info("run %s %s: %s", self.plan.run_id, status, reason)
        return RunOutcome(self.plan.run_id, status, reason, ok, len(done) - ok)

    def _one_round(
        self, rnd: int, grid: Grid, context: LegacyContext, store: RunStore
    ) -> RoundRecord:
        strategy = context.strategy
        assert isinstance(strategy, ConsortiumFedAvg)
        started_at, t0 = rr.utc_now(), timeit.default_timer()
        self.fit_workflow(grid, context)
        sha = self.plan.policy_sha256
        if rnd not in strategy.fits:
            record = rr.failed_round(rnd, reason=HALTED, started_at=started_at, started=t0,
                                     finished=timeit.default_timer(), policy_sha256=sha)
            store.record_round(self.plan.run_id, record)
        else:
            default_evaluate_workflow(grid, context)
            record = rr.ok_round(rnd, fits=strategy.fits[rnd], evals=strategy.evals.get(rnd, []),
                                 started_at=started_at, started=t0,
                                 finished=timeit.default_timer(), policy_sha256=sha)
            params = compat.arrayrecord_to_parameters(
                context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
            blob, digest = rr.checkpoint_bytes(parameters_to_ndarrays(params))
            store.record_round(self.plan.run_id, record, checkpoint=blob, checkpoint_sha256=digest)
        assert self.audit is not None
        self.audit.round(rnd, [(f.site, f.metrics) for f in strategy.fits.get(rnd, [])],
                         strategy.fit_failures.get(rnd, 0), record.status, record.failure_reason)
        log.info("round %d %s (%.1fs) mean accuracy %s", rnd, record.status,
                 record.duration_s, record.accuracy_mean)
        if self.on_round is not None:
            self.on_round(record)
        return record
