"""The documented export (run-export/v4) of a run written by the real writers."""

from __future__ import annotations

import json

from consortium.store.export import FORMAT, export_run
from consortium.store.run_store import RunStore
from tests.consortium.audit_fixture import RUN_ID, SITES, TASK, AuditedRun

RUN_KEYS = {"format", "run_id", "status", "stop_reason", "engine", "mode", "started_at",
            "finished_at", "policy_sha256", "task_sha256", "task", "privacy_unit", "delta",
            "epsilon_ceiling",
            "rounds_planned", "seed", "secagg", "sites", "rounds", "comparisons", "choice",
            "majority_check"}
ROUND_KEYS = {"round", "status", "failure_reason", "policy_sha256", "duration_s",
              "accuracy_mean", "accuracy_weighted", "loss_mean", "loss_weighted", "sites"}
SITE_KEYS = {"accuracy", "loss", "num_examples", "num_train_examples", "epsilon", "delta",
             "noise_multiplier", "sample_rate", "steps", "max_grad_norm", "accountant",
             "trained", "refusal", "majority_rate", "beats_majority"}


def test_the_export_has_the_documented_fields_and_the_receipts_figures(
    audited: AuditedRun
) -> None:
    with RunStore(audited.store, readonly=True) as rs:
        data = export_run(rs)
        assert export_run(rs, RUN_ID) == data
    json.dumps(data, allow_nan=False)  # plain JSON
    assert FORMAT == "hospital-consortium/run-export/v4" and data["format"] == FORMAT
    assert set(data) == RUN_KEYS
    assert data["task_sha256"] == TASK.sha256 and data["task"]["name"] == "heart-disease"
    assert data["privacy_unit"] == "record"
    assert data["comparisons"] == []
    assert data["run_id"] == RUN_ID and data["mode"] == "deployment"
    assert data["sites"] == list(SITES) and [r["round"] for r in data["rounds"]] == [1, 2]
    for rnd in data["rounds"]:
        assert set(rnd) == ROUND_KEYS and sorted(rnd["sites"]) == list(SITES)
        for fig in rnd["sites"].values():
            assert set(fig) == SITE_KEYS
            assert fig["trained"] is True and fig["refusal"] is None
            assert fig["delta"] == 1e-5 and fig["accountant"] == "rdp"
    eps = [[r["sites"][s]["epsilon"] for r in data["rounds"]] for s in SITES]
    assert all(0 < a < b for a, b in eps)  # cumulative in the run
