"""Resuming a run that was interrupted or killed, from its last completed round.

A run can be resumed when its status is ``running`` (its process was killed: the owner on this host
is gone) or ``interrupted``. It continues with the same run id, policy and task (each re-validated
from the stored canonical JSON against its hash), planned rounds, seed and noise multiplier, from
the global model of its last completed round (its checkpoint, checked against its SHA-256; the
seeded initial model when no round completed). Every round a site trained is spent once: the round
that was in flight at the crash is asked for again, and a site that already trained it sends that
round's kept receipt instead of training twice (``site_node.privacy.guard``).

A run that cannot be resumed (its policy or task no longer validates, it was recorded before tasks
existed, its checkpoint is damaged) is marked ``abandoned`` with the reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import numpy as np

from consortium.errors import PlanError, StoreError
from consortium.run.plan import RunPlan, make_plan_from_policy
from consortium.run.rounds import utc_now
from consortium.store.owner import owner_gone
from consortium.store.records import (
    MODE_DEMO,
    RUN_ABANDONED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RoundRecord,
)
from consortium.store.run_store import RunStore
from policies.errors import PolicyError
from policies.loader import policy_from_canonical
from policies.task_loader import task_from_canonical

RESUMABLE = (RUN_RUNNING, RUN_INTERRUPTED)


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues."""

    rounds: tuple[RoundRecord, ...]
    next_round: int
    weights: list[np.ndarray] | None

    @property
    def recorded(self) -> int:
        """Rounds recorded before the interruption."""
        return len(self.rounds)


def _choose(store: RunStore, run_id: str | None) -> str:
    if run_id is not None:
        return run_id
    for run in store.list_runs():
        if run.status == RUN_INTERRUPTED or (run.status == RUN_RUNNING
                                             and owner_gone(run.owner)):
            return run.run_id
    raise PlanError(f"{store.path} holds no interrupted run to resume")


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
    """The plan and resume point of an interrupted run.

    Raises
    ------
    PlanError
        If there is no such run, it is not resumable (finished, or still running), or it cannot
        be resumed (it is then marked abandoned, with the reason).
    """
    with RunStore(store_path) as store:
        rid = _choose(store, run_id)
        run = store.get_run(rid)
        if run.status not in RESUMABLE:
            raise PlanError(f"run {rid} is {run.status} and cannot be resumed")
        if run.status == RUN_RUNNING and not owner_gone(run.owner):
            raise PlanError(f"run {rid} is still running (process {run.owner}) or its process "
                            "cannot be checked from this host")
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
            reason = f"cannot be resumed: {exc}"
            store.finish_run(rid, status=RUN_ABANDONED, reason=reason, finished_at=utc_now())
            raise PlanError(f"run {rid} {reason}; it is marked abandoned") from None
    plan = make_plan_from_policy(loaded, task, store_path=store_path, rounds=run.rounds_planned,
                                 seed=run.seed, run_id=rid, demo=run.mode == MODE_DEMO,
                                 example_site_policies=run.example_site_policies)
    next_round = (rounds[-1].round if rounds else 0) + 1
    if next_round > plan.rounds:
        raise PlanError(f"run {rid} recorded all {plan.rounds} planned rounds; nothing to resume")
    return plan, ResumePoint(rounds=rounds, next_round=next_round, weights=weights)
