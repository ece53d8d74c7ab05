"""Which runs can be resumed, from where, and which are abandoned (with the reason)."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

from consortium.errors import PlanError
from consortium.run.plan import make_plan
from consortium.run.resume import resume_plan
from consortium.run.rounds import checkpoint_bytes, utc_now
from consortium.store.owner import owner_gone, this_process
from consortium.store.records import (
    MODE_DEMO,
    ROUND_OK,
    RUN_ABANDONED,
    RUN_COMPLETED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
    RoundRecord,
    RunRecord,
)
from consortium.store.run_store import RunStore

GONE = f"{socket.gethostname()}:999999999"


def _run(store: Path, *, status: str, owner: str = GONE, rounds_done: int = 2,
         damage: bool = False, policy_json: str | None = None) -> str:
    plan = make_plan(store_path=store, rounds=5, demo=True)
    with RunStore(store) as rs:
        rs.start_run(RunRecord(
            run_id=plan.run_id, started_at=utc_now(), status=status, engine="simulation",
            policy_sha256=plan.policy_sha256,
            policy_json=policy_json or plan.loaded.canonical_json, delta=1e-5,
            epsilon_ceiling=3.0, rounds_planned=5, seed=3, sites=plan.loaded.policy.sites,
            secagg_json="{}", mode=MODE_DEMO, owner=owner, task_sha256=plan.task.sha256,
            task_json=plan.task.canonical_json))
        for rnd in range(1, rounds_done + 1):
            weights = [np.full((2, 29), float(rnd), np.float32), np.zeros(2, np.float32)]
            blob, digest = checkpoint_bytes(weights)
            rs.record_round(plan.run_id, RoundRecord(
                round=rnd, status=ROUND_OK, started_at=utc_now(), finished_at=utc_now(),
                duration_s=1.0, accuracy_mean=0.7), checkpoint=blob,
                checkpoint_sha256="0" * 64 if damage else digest)
    return plan.run_id


def test_an_interrupted_run_resumes_after_its_last_round_from_its_checkpoint(tmp_path: Path
                                                                             ) -> None:
    store = tmp_path / "runs.sqlite"
    rid = _run(store, status=RUN_INTERRUPTED)
    plan, point = resume_plan(store)
    assert plan.run_id == rid and plan.rounds == 5 and plan.seed == 3 and plan.demo
    assert point.next_round == 3 and point.recorded == 2
    assert point.weights is not None and float(point.weights[0][0, 0]) == 2.0


def test_a_run_whose_process_was_killed_is_resumable(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    rid = _run(store, status=RUN_RUNNING, owner=GONE, rounds_done=0)
    assert owner_gone(GONE)
    _plan, point = resume_plan(store, rid)
    assert point.next_round == 1 and point.weights is None  # the seeded initial model


def test_a_live_run_is_not_resumed(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    rid = _run(store, status=RUN_RUNNING, owner=this_process())
    with pytest.raises(PlanError, match="still running"):
        resume_plan(store, rid)


@pytest.mark.parametrize("status", [RUN_COMPLETED, RUN_ABANDONED])
def test_a_finished_run_is_not_resumed(tmp_path: Path, status: str) -> None:
    store = tmp_path / "runs.sqlite"
    rid = _run(store, status=status)
    with pytest.raises(PlanError, match=f"is {status} and cannot be resumed"):
        resume_plan(store, rid)


def test_nothing_to_resume_is_said(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    _run(store, status=RUN_COMPLETED)
    with pytest.raises(PlanError, match="no interrupted run"):
        resume_plan(store)


@pytest.mark.parametrize(("damage", "why"), [
    ("checkpoint", "does not match its SHA-256"),
    ("policy", "does not match its hash"),
])
def test_a_run_that_cannot_be_resumed_is_abandoned_with_the_reason(
    tmp_path: Path, damage: str, why: str
) -> None:
    store = tmp_path / "runs.sqlite"
    rid = _run(store, status=RUN_INTERRUPTED, damage=damage == "checkpoint",
               policy_json='{"tampered": true}' if damage == "policy" else None)
    with pytest.raises(PlanError, match="marked abandoned"):
        resume_plan(store, rid)
    with RunStore(store, readonly=True) as rs:
        run = rs.get_run(rid)
    assert run.status == RUN_ABANDONED and why in str(run.stop_reason)
