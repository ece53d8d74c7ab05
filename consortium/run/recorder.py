"""Recording a run: the one place that writes a run's start, each round and its end.

A federated run (:mod:`consortium.run.workflow`) and a site's local-only run
(:mod:`consortium.run.local_run`) both record through :class:`RunRecorder`: the run store's rows
and the signed audit log's entries of each step commit in one transaction, so a reader (and
``consortium audit verify``) sees all of a step or none of it, and a round's record, its
checkpoint and its signed figures are made in one way only.
"""

from __future__ import annotations

import logging
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from consortium.audit.trail import RunAudit
from consortium.run import rounds as rr
from consortium.run.attribution import FitJudgement, Rejection
from consortium.store.records import RoundRecord, RunRecord, RunStatus
from consortium.store.run_store import RunStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundOutcome:
    """What the server judged in one round, ready to be recorded.

    ``model`` is the new global model (``None`` when the round failed: the previous model
    stays and no checkpoint is written); ``t0`` is the round's start on the
    :func:`timeit.default_timer` clock.
    """

    round: int
    judgement: FitJudgement
    started_at: str
    t0: float
    failure: str | None
    model: list[np.ndarray] | None = None
    evals: Sequence[rr.EvalFigure] = ()
    failures: int = 0
    eval_rejections: Sequence[Rejection] = field(default_factory=tuple)


class RunRecorder:
    """Writes one run's progress to its run store and audit log.

    Parameters
    ----------
    store : RunStore
        The run store (opened for writing).
    audit : RunAudit
        The run's audit trail, on the same database as ``store``.
    on_round : callable, optional
        Called with every recorded round (progress display).
    """

    def __init__(self, store: RunStore, audit: RunAudit, *,
                 on_round: Callable[[RoundRecord], None] | None = None) -> None:
        self.store = store
        self.audit = audit
        self.on_round = on_round

    @property
    def run(self) -> RunRecord:
        """The run being recorded."""
        return self.audit.run

    def start(self) -> None:
        """Record the run as started, with its signed run-start entry."""
        with self.store.db.transaction():
            self.store.start_run(self.run)
            self.audit.start()

    def round(self, outcome: RoundOutcome) -> RoundRecord:
        """Record one round: its row, site rows, checkpoint, receipts and signed entries."""
        rnd = outcome.round
        failure = outcome.failure
        record = rr.make_round(rnd, judgement=outcome.judgement, evals=list(outcome.evals),
                               started_at=outcome.started_at,
                               duration_s=timeit.default_timer() - outcome.t0,
                               policy_sha256=self.run.policy_sha256, failure=failure)
        blob, digest = (rr.checkpoint_bytes(outcome.model)
                        if failure is None and outcome.model is not None else (None, None))
        with self.store.db.transaction():
            self.store.record_round(self.run.run_id, record, checkpoint=blob,
                                    checkpoint_sha256=digest)
            self.audit.round(rnd, outcome.judgement, failures=outcome.failures,
                             status=record.status, reason=failure,
                             eval_rejections=outcome.eval_rejections, record=record,
                             checkpoint_sha256=digest)
        log.info("round %d of run %s %s (%.1fs) mean accuracy %s", rnd, self.run.run_id,
                 record.status, record.duration_s, record.accuracy_mean)
        if self.on_round is not None:
            self.on_round(record)
        return record

    def finish(self, status: RunStatus, reason: str) -> None:
        """Record why the run stopped, with its signed run-stop entry."""
        with self.store.db.transaction():
            self.store.finish_run(self.run.run_id, status=status, reason=reason,
                                  finished_at=rr.utc_now())
            self.audit.finish(status, reason)
