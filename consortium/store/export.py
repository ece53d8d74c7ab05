"""A run as documented JSON (``consortium export --format json``).

The format (``hospital-consortium/run-export/v4``)::

    {"format", "run_id", "status", "stop_reason", "engine", "mode", "started_at",
     "finished_at", "policy_sha256", "task_sha256", "task", "privacy_unit", "delta",
     "epsilon_ceiling",
     "rounds_planned", "seed", "secagg", "sites": [SITE, ...], "choice",
     "rounds": [{"round", "status", "failure_reason", "policy_sha256", "duration_s",
                 "accuracy_mean", "accuracy_weighted", "loss_mean", "loss_weighted",
                 "sites": {SITE: {"accuracy", "loss", "num_examples", "num_train_examples",
                                  "epsilon", "delta", "noise_multiplier", "sample_rate",
                                  "steps", "max_grad_norm", "accountant", "trained",
                                  "refusal", "majority_rate", "beats_majority"}}}],
     "majority_check": {"round", "flagged": [SITE, ...], "useless",
                        "sites": {SITE: {"accuracy", "majority_rate", "beats_majority"}}},
     "comparisons": [{"comparison_id", "created_at", "task_sha256", "federated_run_id",
                      "local_runs": {SITE: RUN_ID},
                      "results": [{"site", "scope", "model", "class_index", "class_name",
                                   "correct", "total", "accuracy", "site_train_count"}]}]}

``accuracy_mean`` is the unweighted mean over the sites that evaluated. ``epsilon`` is the
site's cumulative ε in the run after that round at the site's ``delta`` (at most the run's), as
its verified receipt states; the mechanism fields are that round's DP-SGD parameters, from which
``epsilon`` can be recomputed. ``refusal`` is why a site refused the round (nothing spent).
``mode`` is ``deployment`` or ``local-demo`` (the demonstration provisioned the sites' keys);
``engine`` is ``simulation``, ``deployment`` or ``local`` (one site training alone, for a
comparison). ``task`` is the task the run trained (its canonical JSON, parsed; ``null`` with
``task_sha256`` for a run recorded before tasks existed). ``comparisons`` lists every comparison
the run is part of (as the federated run or as a site's local-only run): for each site, the
per-class test accuracy of its local model (``model`` ``local``) and of the federated model, on
the site's own test set (``scope`` ``own``) and on the union of the sites' test sets
(``union``). ``privacy_unit`` is what every ε of the run protects: ``record``, or ``patient``
(the task's unit; then each ``sample_rate`` is the rate at which patients were sampled, and the
ε is patient-level); a run recorded before units is ``record``. ``majority_rate`` is the share
of the site's test split in its most frequent class, as the site reported it;
``beats_majority`` whether its accuracy beats that (``false``: the model learned nothing for
that site; ``null``: unknown). ``majority_check`` is that check for the last completed round:
``flagged`` the sites where the model does not beat it, ``useless`` true when it beats it
nowhere. ``choice`` is how the training settings were chosen when the policy stated only the
privacy terms (:mod:`policies.choice`: inputs, settings, ε cost), ``null`` when the policy set
them. Version 2 had no ``task_sha256``, ``task`` or ``comparisons``; version 3 no
``privacy_unit``, ``choice``, ``majority_rate``, ``beats_majority`` or ``majority_check``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from consortium.errors import StoreError
from consortium.store.baseline import final_check
from consortium.store.comparisons import comparisons
from consortium.store.records import ComparisonRecord
from consortium.store.run_store import RunStore

FORMAT = "hospital-consortium/run-export/v4"


def export_run(store: RunStore, run_id: str | None = None) -> dict[str, Any]:
    """The run (the latest when ``run_id`` is None) as a JSON-ready dict."""
    rid = run_id or store.latest_run_id()
    run = store.get_run(rid)
    rounds = []
    records = store.rounds(rid)
    for rnd in records:
        row = asdict(rnd)
        row.pop("started_at")
        row.pop("finished_at")
        row.pop("sites")
        row["sites"] = {s.site: {**{k: v for k, v in asdict(s).items() if k != "site"},
                                 "beats_majority": s.beats_majority} for s in rnd.sites}
        rounds.append(row)
    try:
        secagg = json.loads(run.secagg_json)
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"run {rid}: its stored SecAgg+ parameters are unreadable: {exc}") \
            from None
    try:
        task = json.loads(run.task_json) if run.task_json is not None else None
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"run {rid}: its stored task is unreadable: {exc}") from None
    try:
        choice = json.loads(run.choice_json) if run.choice_json is not None else None
    except (TypeError, ValueError, RecursionError) as exc:
        raise StoreError(f"run {rid}: its stored choice of settings is unreadable: {exc}") \
            from None
    return {
        "format": FORMAT, "run_id": run.run_id, "status": run.status,
        "stop_reason": run.stop_reason, "engine": run.engine, "mode": run.mode,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "policy_sha256": run.policy_sha256, "task_sha256": run.task_sha256,
        "task": task, "privacy_unit": privacy_unit(task), "delta": run.delta,
        "epsilon_ceiling": run.epsilon_ceiling, "rounds_planned": run.rounds_planned,
        "seed": run.seed, "secagg": secagg, "sites": list(run.sites), "choice": choice,
        "rounds": rounds, "majority_check": final_check(records).to_json(),
        "comparisons": [_comparison(c) for c in comparisons(store.db, rid)],
    }


def privacy_unit(task: Any) -> str:
    """What the run's ε protects, from its recorded task (parsed, or its canonical JSON;
    ``record`` without one, or for a task written before units)."""
    if isinstance(task, str):
        try:
            task = json.loads(task)
        except (ValueError, RecursionError):
            return "record"
    spec = task.get("privacy_unit") if isinstance(task, dict) else None
    unit = spec.get("unit") if isinstance(spec, dict) else None
    return unit if isinstance(unit, str) else "record"


def _comparison(c: ComparisonRecord) -> dict[str, Any]:
    return {"comparison_id": c.comparison_id, "created_at": c.created_at,
            "task_sha256": c.task_sha256, "federated_run_id": c.federated_run_id,
            "local_runs": c.local_runs,
            "results": [{**asdict(x), "accuracy": x.accuracy} for x in c.cells]}
