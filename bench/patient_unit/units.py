"""Patient-level against record-level DP on the same multi-record task (``heart-visits``).

For each target ε (1 and 3, δ = 1e-5) and seed, trains the heart-visits task at its four sites
with the site's own DP-SGD code (:func:`site_node.training.train_dp`: Opacus, the real
accountant) and federated averaging of the updates weighted by training records (what SecAgg+
sums, unmasked here: masking does not change the sum), 20 rounds of the policy in
``policies/consortium-heart-visits.yaml``, once with the task's privacy unit ``patient`` and once
with ``record`` (the same file, the same cap of 8 records per patient, the same split by
patient). Both use the same model and the same hyperparameters (the default policy's, tuned for
heart-disease at record level; no tuning for either here: the same budget of zero). σ is
calibrated to the target for each unit's sample rate (the same q: patients or records).

It also states what the record-level run really gives a patient: the group-privacy bound
(:mod:`site_node.privacy.group`) for the median and the largest number of records per patient.
Prints JSON; writes ``bench/results/patient_unit.json``.

    python bench/patient_unit/units.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from policies.example import load_example
from policies.loader import load_policy
from policies.task_loader import LoadedTask, parse_task
from site_node.data import load_site_data
from site_node.data.dataset import with_site_indicator
from site_node.model import build_model, get_weights
from site_node.privacy import accountant
from site_node.privacy.group import group_bound
from site_node.training import TrainPlan, evaluate, train_dp

ROOT = Path(__file__).resolve().parents[2]
DELTA = 1e-5


def _task(unit: str) -> LoadedTask:
    import yaml

    ex = load_example("heart-visits")
    data = yaml.safe_load(ex.task.read_text(encoding="utf-8"))
    data["privacy_unit"]["unit"] = unit
    return parse_task(data, f"heart-visits ({unit})")


def _run(unit: str, target: float, seed: int) -> dict[str, float]:
    import torch

    ex = load_example("heart-visits")
    policy = load_policy(ex.policy).policy
    loaded = _task(unit)
    task = loaded.task.for_members(policy.sites)
    sites = {s: with_site_indicator(load_site_data(loaded, p), task, s)
             for s, p in ex.data.items()}
    dp, rounds = policy.dp, policy.rounds
    sigma = accountant.noise_for_target(target_epsilon=target, delta=DELTA,
                                        sample_rate=float(dp.sample_rate),
                                        steps=dp.steps_per_round * rounds,
                                        accountant=dp.accountant)
    plan = TrainPlan(noise_multiplier=sigma, sample_rate=float(dp.sample_rate),
                     max_grad_norm=float(dp.max_grad_norm), steps=dp.steps_per_round,
                     learning_rate=float(dp.learning_rate), accountant=dp.accountant,
                     delta=DELTA, unit=unit,
                     patient_gradient=loaded.task.privacy_unit.patient_gradient)
    torch.manual_seed(seed)
    weights = get_weights(build_model(task))
    mechs = []
    for _ in range(rounds):
        results = [(train_dp(weights, d, plan, task), d.num_train) for d in sites.values()]
        total = sum(n for _, n in results)
        weights = [sum(r.weights[i] * n for r, n in results) / total
                   for i in range(len(weights))]
        mechs.append(results[0][0].mechanism)
    accs = [evaluate(weights, d.x_test, d.y_test, task)[1] for d in sites.values()]
    eps = accountant.epsilon(mechs, delta=DELTA, accountant=dp.accountant)
    out = {"accuracy": float(np.mean(accs)), "epsilon": eps, "sigma": sigma}
    if unit == "record":
        stats = [d.summary.patients for d in sites.values()]
        for name, k in (("median", max(math.ceil(s.median_records) for s in stats if s)),
                        ("largest", max(s.max_records for s in stats if s))):
            b = group_bound(mechs, k=k, delta=DELTA, accountant_name=dp.accountant)
            # None: no finite ε at δ from the record-level guarantee (JSON has no infinity)
            out[f"patient_epsilon_{name}"] = b.epsilon if math.isfinite(b.epsilon) else None
            out[f"records_{name}"] = k
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for target in (1.0, 3.0):
        for unit in ("patient", "record"):
            runs = [_run(unit, target, seed) for seed in range(args.seeds)]
            row = {"target_epsilon": target, "unit": unit,
                   "accuracy_per_seed": [r["accuracy"] for r in runs],
                   "accuracy_mean": float(np.mean([r["accuracy"] for r in runs])),
                   **{k: v for k, v in runs[0].items() if k != "accuracy"}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = ROOT / "bench/results/patient_unit.json"
    out.write_text(json.dumps({"delta": DELTA, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
