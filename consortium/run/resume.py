"""Resuming a run that was interrupted or killed, from its last completed round.

A run can be resumed when its status is ``running`` (its process was killed: the owner on this
host is gone) or ``interrupted``. It continues with the same run id, policy and task (each
re-validated from the stored canonical JSON against its hash), planned rounds, seed, noise
multiplier and sites' data (their recorded fingerprints), from the global model of its last
completed round (its checkpoint, checked against its SHA-256; the seeded initial model when no
round completed). Every round a site trained is spent once: the round that was in flight at the
crash is asked for again, and a site that already trained it sends that round's kept receipt
instead of training twice (``site_node.privacy.guard``).

Reading a run (:func:`resume_plan`) takes nothing. :func:`claim` then takes it over for this
process by compare-and-set (its status and owner must still be what was read), in one
transaction with its signed ``run-resume`` entry, so of two processes resuming at once exactly
one continues the run and the other starts nothing. A run whose planned rounds were all recorded
(its process died before closing it) is closed instead, with its signed ``run-stop`` entry.

A run that cannot be resumed (its policy or task no longer validates, it was recorded before
tasks existed, its checkpoint is damaged, it is a local-only run of ``consortium compare``) is
marked ``abandoned`` with the reason, in the run store and in the signed audit log (a
``run-stop`` entry) in one transaction. The automatic choice (no run id) skips local-only runs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from hashlib import sha256
from pathlib import Path

import numpy as np

from consortium.audit.log import AuditLog
from consortium.audit.trail import RunAudit
from consortium.errors import PlanError, StoreError
from consortium.home import default_store_path, open_home
from consortium.run.convergence import STOP_ROUNDS_DONE
from consortium.run.plan import RunPlan, make_plan_from_policy
from consortium.run.rounds import utc_now
from consortium.store.owner import owner_gone, this_process
from consortium.store.records import (
    ENGINE_LOCAL,
    MODE_DEMO,
    ROUND_OK,
    RUN_ABANDONED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
    RunStatus,
)
from consortium.store.run_store import RunStore
from policies.errors import PolicyError
from policies.loader import policy_from_canonical
from policies.task_loader import task_from_canonical
from site_node.protocol import run_config as run_config_keys

log = logging.getLogger(__name__)

RESUMABLE = (RUN_RUNNING, RUN_INTERRUPTED)


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues."""

    rounds: tuple[RoundRecord, ...]
    next_round: int
    weights: list[np.ndarray] | None
    seen_status: str = RUN_INTERRUPTED
    seen_owner: str | None = None

    @property
    def recorded(self) -> int:
        """Rounds recorded before the interruption."""
        return len(self.rounds)


@dataclass(frozen=True)
class Closed:
    """How a run whose planned rounds were all recorded was closed on resume."""

    status: str
    reason: str


LOCAL_ONLY = ("it is a local-only run of one site (consortium compare), not a federated run: "
              "continuing it would train every site in a run recorded as one site's")


def _choose(store: RunStore, run_id: str | None) -> str:
    if run_id is not None:
        return run_id
    for run in store.list_runs():
        if run.engine != ENGINE_LOCAL and (run.status == RUN_INTERRUPTED or (
                run.status == RUN_RUNNING and owner_gone(run.owner))):
            return run.run_id
    raise PlanError(f"{store.path} holds no interrupted run to resume")


def resumable(store_path: Path, run_id: str | None = None) -> str:
    """The id of the run to resume (``run_id``, or the latest interrupted one), read only.

    Raises
    ------
    PlanError
        If there is no such run, or it is finished, still running or a local-only run.
    """
    try:
        with RunStore(store_path, readonly=True) as store:
            rid = _choose(store, run_id)
            run = store.get_run(rid)
    except StoreError as exc:
        raise PlanError(str(exc)) from None
    _check_not_finished(run)
    if run.engine == ENGINE_LOCAL:
        raise PlanError(f"run {rid} cannot be resumed: {LOCAL_ONLY}")
    return rid


def _check_not_finished(run: RunRecord) -> None:
    """Raise :class:`PlanError` unless ``run`` is interrupted, or running with its owner gone."""
    if run.status not in RESUMABLE:
        raise PlanError(f"run {run.run_id} is {run.status} and cannot be resumed")
    if run.status == RUN_RUNNING and not owner_gone(run.owner):
        raise PlanError(f"run {run.run_id} is still running (process {run.owner}) or its "
                        "process cannot be checked from this host")


def _close(store: RunStore, run: RunRecord, *, status: str, reason: str) -> None:
    """End ``run`` as ``status`` in the store and in the signed log (one transaction), if it is
    still as it was read; raises :class:`~consortium.errors.RunTaken` otherwise."""
    audit = RunAudit(AuditLog(store.db, key=open_home().signing_key()), run)
    with store.db.transaction():
        store.claim_run(run.run_id, seen_status=run.status, seen_owner=run.owner,
                        owner=this_process(), status=status, reason=reason,
                        finished_at=utc_now())
        audit.finish(status, reason)


def _abandon(store: RunStore, run: RunRecord, why: str) -> PlanError:
    reason = f"cannot be resumed: {why}"
    _close(store, run, status=RUN_ABANDONED, reason=reason)
    return PlanError(f"run {run.run_id} {reason}; it is marked abandoned")


def _weights(store: RunStore, run_id: str) -> list[np.ndarray] | None:
    last = store.last_checkpoint(run_id)
    if last is None:
        return None
    rnd, blob, digest = last
    if sha256(blob).hexdigest() != digest:
        raise StoreError(f"the checkpoint of round {rnd} does not match its SHA-256")
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


def resume_plan(store_path: Path, run_id: str | None = None) -> tuple[RunPlan, ResumePoint]:
    """The plan and resume point of an interrupted run (read only: :func:`claim` takes it).

    Raises
    ------
    PlanError
        If there is no such run, it is not resumable (finished, or still running), or it cannot
        be resumed (it is then marked abandoned, with the reason, in the store and the log).
    """
    with RunStore(store_path) as store:
        rid = _choose(store, run_id)
        run = store.get_run(rid)
        _check_not_finished(run)
        if run.engine == ENGINE_LOCAL:
            raise _abandon(store, run, LOCAL_ONLY) from None
        try:
            loaded = policy_from_canonical(run.policy_json, run.policy_sha256,
                                           source=f"the policy of run {rid}")
            if run.task_json is None or run.task_sha256 is None:
                raise StoreError("it was recorded before tasks existed (no task is stored with "
                                 "it), and its model does not fit this version's")
            task = task_from_canonical(run.task_json, run.task_sha256,
                                       source=f"the task of run {rid}")
            rounds = tuple(store.rounds(rid))
            weights = _weights(store, rid)
        except (PolicyError, StoreError, ValueError, OSError) as exc:
            raise _abandon(store, run, str(exc)) from None
    plan = make_plan_from_policy(loaded, task, store_path=store_path, rounds=run.rounds_planned,
                                 seed=run.seed, run_id=rid, demo=run.mode == MODE_DEMO,
                                 example_site_policies=run.example_site_policies,
                                 data_fingerprints=run.data_fingerprints,
                                 choice_json=run.choice_json)
    next_round = (rounds[-1].round if rounds else 0) + 1
    return plan, ResumePoint(rounds=rounds, next_round=next_round, weights=weights,
                             seen_status=run.status, seen_owner=run.owner)


def _closing(point: ResumePoint) -> Closed:
    ok = sum(r.status == ROUND_OK for r in point.rounds)
    if ok == 0:
        return Closed(RUN_FAILED, "no round completed")
    return Closed(RUN_COMPLETED, f"{STOP_ROUNDS_DONE} (all {point.recorded} were recorded "
                  "before its process ended; closed on resume)")


def claim(plan: RunPlan, point: ResumePoint) -> Closed | None:
    """Take the run over for this process: compare-and-set on the status and owner read by
    :func:`resume_plan`, with the signed ``run-resume`` entry, in one transaction.

    If every planned round is already recorded the run is closed instead (completed, or failed
    if no round completed) with its signed ``run-stop`` entry, and how is returned; nothing is
    to be trained then.

    Raises
    ------
    RunTaken
        If another process claimed the run since it was read (nothing was written).
    AuditLogError
        If the store's audit log is signed by another consortium key than this home's.
    """
    with RunStore(plan.store_path) as store:
        run = store.get_run(plan.run_id)
        seen = replace(run, status=RunStatus(point.seen_status), owner=point.seen_owner)
        if point.next_round > plan.rounds:
            closed = _closing(point)
            _close(store, seen, status=closed.status, reason=closed.reason)
            return closed
        audit = RunAudit(AuditLog(store.db, key=open_home().signing_key()), run)
        with store.db.transaction():
            store.claim_run(run.run_id, seen_status=point.seen_status,
                            seen_owner=point.seen_owner, owner=this_process())
            audit.resumed(point.next_round)
    return None


def _parsed(run_config: Mapping[str, object]) -> run_config_keys.RunConfig:
    try:
        return run_config_keys.parse(run_config)
    except run_config_keys.RunConfigError as exc:
        raise PlanError(str(exc)) from None


def resuming(run_config: Mapping[str, object]) -> bool:
    """Whether a Flower run config asks to continue an interrupted run (``resume = true``)."""
    return _parsed(run_config).resume


def resume_in_server(run_config: Mapping[str, object]) -> tuple[RunPlan, ResumePoint | None]:
    """In the deployed ServerApp: the plan of run ``run-id`` and where it continues, claimed
    for this process (``None`` as the point: every planned round was recorded and the run was
    closed instead). Its policy, task, rounds and seed are the stored run's, never the run
    config's.

    Raises
    ------
    PlanError
        If the run config names no run, or the run cannot be resumed (see :func:`resume_plan`).
    RunTaken
        If another process claimed the run first.
    """
    config = _parsed(run_config)
    if config.run_id is None:
        raise PlanError(f"run config {run_config_keys.RESUME} = true needs "
                        f"{run_config_keys.RUN_ID}: the run to continue")
    store = Path(config.store or default_store_path()).expanduser().resolve()
    plan, point = resume_plan(store, config.run_id)
    closed = claim(plan, point)
    if closed is not None:
        log.info("run %s closed on resume as %s: %s", plan.run_id, closed.status, closed.reason)
        return plan, None
    log.info("run %s resumed at round %d", plan.run_id, point.next_round)
    return plan, point
