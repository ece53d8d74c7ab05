"""The consortium's round loop: SecAgg+ fit, judgement, evaluation, convergence, recording.

Flower's legacy ``DefaultWorkflow`` runs a fixed number of rounds, cannot stop early, cannot
tell a halted secure aggregation from a completed one, and adopts any aggregate. Here each round
runs Flower's own ``SecAggPlusWorkflow``; then every reply is attributed to the site enrolled
for its node and checked (:mod:`consortium.run.attribution`), and the unmasked aggregate becomes
the new global model only if no reply was rejected, at least ``min_sites`` sites trained, and it
is finite and within the clipping range. Otherwise the round is recorded as failed and the
previous model stays. Every round, completed or failed, is written with its receipts and audit
entries in one transaction (:mod:`consortium.run.recorder`, which a site's local-only run uses
too). Before each round :mod:`consortium.run.gate` may stop the run: the budget projection,
the preflight before the first round (every site asked whether it would admit the run: if
fewer than ``min_sites`` would, the run stops before anyone trains), and, later, fewer than
``min_sites`` members that have not finally refused the run.
"""

from __future__ import annotations

import logging
import threading
import timeit
from collections.abc import Callable
from dataclasses import dataclass

from flwr.app import ConfigRecord, Context
from flwr.server import LegacyContext
from flwr.serverapp import Grid

from consortium import flower_compat as compat
from consortium.audit.log import AuditLog
from consortium.audit.registry import KeyRegistry
from consortium.audit.trail import RunAudit
from consortium.errors import ConsortiumError, RunInterrupted
from consortium.home import open_home
from consortium.run import rounds as rr
from consortium.run.attribution import (
    Attribution,
    FitJudgement,
    RejectedReply,
    Rejection,
    RoundContext,
    judge_fit,
)
from consortium.run.convergence import (
    STOP_ROUNDS_DONE,
    ConvergenceCheck,
)
from consortium.run.demo import check_demo_keys, enrol_demo_sites
from consortium.run.gate import RoundGate
from consortium.run.grid import PacedGrid
from consortium.run.plan import RunPlan
from consortium.run.recorder import RoundOutcome, RunRecorder
from consortium.run.resume import ResumePoint
from consortium.run.strategy import ConsortiumStrategy, FitRound
from consortium.store.owner import this_process
from consortium.store.records import (
    ROUND_OK,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RUN_STOPPED,
    RoundRecord,
    RunRecord,
    RunStatus,
)
from consortium.store.run_store import RunStore
from site_node.protocol import wire

log = logging.getLogger(__name__)
HALTED = "secure aggregation halted (too few sites answered a SecAgg+ stage)"


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended."""

    run_id: str
    status: RunStatus
    reason: str
    rounds_ok: int
    rounds_failed: int


def secagg_workflow(plan: RunPlan) -> compat.SecAggPlus:
    """The SecAgg+ workflow (mask version 2) with the policy's (validated) parameters."""
    s = plan.loaded.policy.secagg
    return compat.SecAggPlus(
        num_shares=s.num_shares, reconstruction_threshold=s.reconstruction_threshold,
        max_weight=s.max_weight, clipping_range=s.clipping_range,
        quantization_range=s.quantization_range, modulus_range=s.modulus_range,
        timeout=s.timeout_s,
    )


#: Why a run stopped by Flower's own exit (a signal to the ServerApp) is resumable.
FLOWER_EXIT = ("the ServerApp was stopped (exit code {code}): its SuperLink or SuperExec ended, "
               "or the run was stopped with `flwr stop`")
SIGNAL_STOP = "the run's process was stopped ({how})"


def ending_of(exc: BaseException) -> tuple[RunStatus, str]:
    """The status and reason a run ends with when ``exc`` leaves it: Ctrl-C, and Flower's
    exit on a signal (the SuperLink stopped under its ServerApp), interrupt it (it can be
    resumed); anything else fails it."""
    if isinstance(exc, KeyboardInterrupt):
        return RUN_INTERRUPTED, SIGNAL_STOP.format(how=str(exc) or "Ctrl-C")
    if isinstance(exc, SystemExit):
        return RUN_INTERRUPTED, FLOWER_EXIT.format(code=exc.code)
    return RUN_FAILED, f"error: {exc!r}"


class ConsortiumWorkflow:
    """Run one consortium run on a Flower grid.

    Parameters
    ----------
    plan : RunPlan
        The resolved run settings.
    on_round : callable, optional
        Called with every recorded round (progress display).
    """

    def __init__(self, plan: RunPlan, *,
                 on_round: Callable[[RoundRecord], None] | None = None,
                 stop: threading.Event | None = None,
                 resume: ResumePoint | None = None) -> None:
        self.plan = plan
        self.on_round = on_round
        self.stop = stop or threading.Event()
        self.resume = resume
        self.fit_workflow = secagg_workflow(plan)
        self.outcome: RunOutcome | None = None
        self.done: list[RoundRecord] = list(resume.rounds) if resume else []
        #: Sites whose refusal is final for the run, and why (they train no further round).
        self.gate = RoundGate(plan, first=resume.next_round if resume else 1)

    def __call__(self, grid: Grid, context: Context) -> None:
        """Execute the run (Flower calls this with a LegacyContext)."""
        if not isinstance(context, LegacyContext):
            raise TypeError(f"Expect a LegacyContext, but get {type(context).__name__}.")
        engine = compat.engine_of(grid)
        paced = PacedGrid(grid, self.stop)
        store = RunStore(self.plan.store_path)  # refuses a store of a newer version
        try:
            audit_log = AuditLog(store.db, key=open_home().signing_key())
            attribution = self._attribution(audit_log)
            with store.db.transaction():
                recorder = self._open_run(store, audit_log, engine)
            self._execute(paced, context, recorder, attribution)
        finally:
            store.close()

    def _execute(self, grid: PacedGrid, context: LegacyContext, rec: RunRecorder,
                 attribution: Attribution) -> None:
        thread, f_stop, c_done = compat.start_update_client_manager_thread(
            grid, context.client_manager)
        c_done.wait()
        try:
            compat.default_init_params_workflow(grid, context)
            self.outcome = self._rounds(grid, context, rec, attribution)
        except RunInterrupted as exc:
            self.outcome = self._interrupted(str(exc))
        except BaseException as exc:
            status, reason = ending_of(exc)
            rec.finish(status, reason)
            raise
        finally:
            f_stop.set()
            thread.join()
        rec.finish(self.outcome.status, self.outcome.reason)

    def _open_run(self, store: RunStore, audit_log: AuditLog, engine: str) -> RunRecorder:
        """Record the run's start with this process as its owner (a resumed run was claimed
        by this process, with its signed entry, before anything started)."""
        if self.resume is None:
            recorder = RunRecorder(store, RunAudit(audit_log, self._run_record(engine)),
                                   on_round=self.on_round)
            recorder.start()
            return recorder
        run = store.get_run(self.plan.run_id)  # claimed by this process, with its entry
        if (run.status, run.owner) != (RUN_RUNNING, this_process()):
            raise ConsortiumError(f"run {run.run_id} is {run.status} under process {run.owner}, "
                                  "not claimed by this one (consortium.run.resume.claim)")
        return RunRecorder(store, RunAudit(audit_log, run), on_round=self.on_round)

    def _interrupted(self, reason: str) -> RunOutcome:
        ok = sum(r.status == ROUND_OK for r in self.done)
        log.warning("run %s interrupted: %s", self.plan.run_id, reason)
        return RunOutcome(self.plan.run_id, RUN_INTERRUPTED, reason, ok, len(self.done) - ok)

    def _attribution(self, audit_log: AuditLog) -> Attribution:
        sites = self.plan.loaded.policy.sites
        if self.plan.demo and self.resume is not None:
            check_demo_keys(audit_log, sites, self.plan.run_id)  # a resume never rotates keys
        elif self.plan.demo:
            enrol_demo_sites(audit_log, sites, self.plan.run_id)
        registry = KeyRegistry.from_entries(audit_log.entries())
        missing = [s for s in sites if registry.active(s) is None]
        if missing:
            raise ConsortiumError(
                f"member site(s) {', '.join(missing)} have no enrolled keys in "
                f"{self.plan.store_path}; enrol them (`consortium enroll`) before running")
        return Attribution(registry, sites, demo=self.plan.demo)

    def _run_record(self, engine: str) -> RunRecord:
        p = self.plan.loaded.policy
        return RunRecord(
            run_id=self.plan.run_id, started_at=rr.utc_now(), status=RUN_RUNNING,
            engine=engine, mode=self.plan.mode, policy_sha256=self.plan.policy_sha256,
            policy_json=self.plan.loaded.canonical_json, delta=p.delta,
            epsilon_ceiling=p.epsilon_ceiling, rounds_planned=self.plan.rounds,
            seed=self.plan.seed, sites=p.sites, secagg_json=self.plan.secagg_json(),
            owner=this_process(), example_site_policies=self.plan.example_site_policies,
            task_sha256=self.plan.task.sha256, task_json=self.plan.task.canonical_json,
            data_fingerprints=self.plan.data_fingerprints, choice_json=self.plan.choice_json,
        )

    def _rounds(self, grid: PacedGrid, context: LegacyContext, rec: RunRecorder,
                attribution: Attribution) -> RunOutcome:
        p = self.plan.loaded.policy
        conv = ConvergenceCheck(p.convergence.target_accuracy, p.convergence.patience,
                                p.convergence.min_delta)
        cfg = ConfigRecord({compat.Key.START_TIME: timeit.default_timer()})
        context.state.config_records[compat.MAIN_CONFIGS_RECORD] = cfg
        done = self.done
        for earlier in done:
            conv.observe(earlier.accuracy_mean if earlier.status == ROUND_OK else None)
        status, reason = RUN_COMPLETED, STOP_ROUNDS_DONE
        first = self.resume.next_round if self.resume else 1
        for rnd in range(first, self.plan.rounds + 1):
            why = self.gate.stop_before(rnd, grid=grid, rec=rec, attribution=attribution)
            if why is not None:
                status, reason = RUN_STOPPED, why
                break
            cfg[compat.Key.CURRENT_ROUND] = rnd
            try:
                record = self._one_round(rnd, grid, context, rec, attribution)
            except RunInterrupted:
                rec.audit.interrupted(rnd)
                raise
            done.append(record)
            stop = conv.observe(record.accuracy_mean) if record.status == ROUND_OK else None
            if stop:
                reason = stop
                break
        ok = sum(r.status == ROUND_OK for r in done)
        if done and ok == 0:
            stopped = f"; {reason}" if status == RUN_STOPPED and self.gate.finally_refused else ""
            status, reason = RUN_FAILED, "no round completed" + stopped
        log.info("run %s %s: %s", self.plan.run_id, status, reason)
        return RunOutcome(self.plan.run_id, status, reason, ok, len(done) - ok)

    def _failure(self, fit: FitRound | None, judgement: FitJudgement) -> str | None:
        policy = self.plan.loaded.policy
        if fit is None:
            return HALTED
        if judgement.rejections:
            return "reply rejected: " + "; ".join(r.reason for r in judgement.rejections)
        if len(judgement.trained) < policy.min_sites:
            refused = "".join(f"; {s} refused: {why}" for s, why in judgement.refusals.items())
            return (f"only {len(judgement.trained)} site(s) trained, the policy requires "
                    f"min_sites={policy.min_sites}{refused}")
        return rr.aggregate_problem(fit.aggregate, float(policy.secagg.clipping_range))

    def _one_round(self, rnd: int, grid: Grid, context: LegacyContext, rec: RunRecorder,
                   attribution: Attribution) -> RoundRecord:
        strategy = context.strategy
        assert isinstance(strategy, ConsortiumStrategy)
        started_at, t0 = rr.utc_now(), timeit.default_timer()
        self.fit_workflow(grid, context)
        fit = strategy.fits.get(rnd)
        ctx = RoundContext(self.plan.run_id, rnd, self.plan.policy_sha256, self.plan.task.sha256)
        judgement = judge_fit(fit.replies, attribution, ctx) if fit else FitJudgement()
        self.gate.finally_refused |= {s: judgement.refusals[s] for s in judgement.final}
        failure = self._failure(fit, judgement)
        evals: list[rr.EvalFigure] = []
        eval_rejections: list[Rejection] = []
        model = fit.aggregate if failure is None and fit is not None else None
        if model is not None:
            compat.set_global_weights(context, model)
            compat.default_evaluate_workflow(grid, context)
            evals, eval_rejections = self._evaluations(strategy, rnd, attribution)
        return rec.round(RoundOutcome(
            round=rnd, judgement=judgement, started_at=started_at, t0=t0, failure=failure,
            model=model, evals=evals, failures=fit.failures if fit else 0,
            eval_rejections=eval_rejections))

    @staticmethod
    def _evaluations(strategy: ConsortiumStrategy, rnd: int, attribution: Attribution
                     ) -> tuple[list[rr.EvalFigure], list[Rejection]]:
        figures, rejections = [], []
        for ev in strategy.evals.get(rnd, []):
            try:
                site = attribution.site_of(ev.reply)
            except RejectedReply as exc:
                rejections.append(Rejection(ev.reply.node_id, ev.reply.claimed_site, str(exc)))
                continue
            figures.append(rr.EvalFigure(
                site=site, loss=ev.loss, num_examples=ev.reply.num_examples,
                accuracy=rr.metric(ev.reply.metrics, wire.ACCURACY),
                majority_rate=rr.metric(ev.reply.metrics, wire.MAJORITY_RATE)))
        return figures, rejections

