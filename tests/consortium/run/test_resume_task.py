"""A resumed run trains the task it started with: re-validated from the store against its hash;
a run recorded before tasks existed cannot be resumed and is marked abandoned, with the reason."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from consortium.errors import PlanError
from consortium.run.inputs import resolve_inputs
from consortium.run.plan import make_plan_from_policy
from consortium.run.resume import resume_plan
from consortium.store.records import RUN_ABANDONED, RUN_INTERRUPTED
from consortium.store.run_store import RunStore
from tests.dashboard.stores import run_record


def interrupted(path: Path, example: str, **changes: object) -> str:
    inputs = resolve_inputs(example=example)
    plan = make_plan_from_policy(inputs.policy, inputs.task, store_path=path, rounds=3,
                                 seed=5, demo=True)
    run = replace(run_record(plan, started_at="2026-11-28T00:00:00+00:00"),
                  status=RUN_INTERRUPTED, **changes)  # type: ignore[arg-type]
    with RunStore(path) as store:
        store.start_run(run)
    return plan.run_id


def test_a_resumed_run_keeps_its_task_and_policy(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    run_id = interrupted(path, "digits")
    plan, point = resume_plan(path)
    assert plan.run_id == run_id and plan.task.name == "digits"
    assert plan.task.sha256 == resolve_inputs(example="digits").task.sha256
    assert plan.loaded.policy.sites == ("clinic_a", "clinic_b", "clinic_c")
    assert (plan.rounds, plan.seed, point.next_round, point.weights) == (3, 5, 1, None)


@pytest.mark.parametrize(("changes", "reason"), [
    ({"task_json": None, "task_sha256": None}, "recorded before tasks existed"),
    ({"task_sha256": "0" * 64}, "the task does not match its hash"),
])
def test_a_run_whose_task_cannot_be_trusted_is_abandoned(tmp_path: Path, changes: dict[
        str, object], reason: str) -> None:
    path = tmp_path / "runs.sqlite"
    run_id = interrupted(path, "heart-disease", **changes)
    with pytest.raises(PlanError, match=f"run {run_id} cannot be resumed: .*{reason}"):
        resume_plan(path, run_id)
    with RunStore(path, readonly=True) as store:
        run = store.get_run(run_id)
    assert run.status == RUN_ABANDONED and reason in (run.stop_reason or "")
