"""Accuracy against ε with a policy of privacy terms only (issue 16).

Usage: python bench/choice/choice_bench.py [--seeds 2] [--eps 0.5 1 2 4 8] [--tasks ...]
       [--out bench/choice/results]

For each task, each ε ceiling and each seed, the training settings are chosen by the product's
chooser (:func:`policies.choice.choose`, from public information only: 0 ε) and the noise
multiplier derived by the product's plan (:func:`consortium.run.plan.make_plan_from_policy`, the
real accountant); then FedAvg runs in this process over the product's site code: Opacus DP-SGD
(:func:`site_node.training.train_dp`) at every site, the update average weighted by each site's
training examples (what SecAgg+ sums), each site's test split evaluated with
:func:`site_node.training.evaluate`. Flower, SecAgg+ and the ledgers are left out to keep it fast;
the figures are the model's, not a deployment's. Beside them: a non-private model of the same
family trained on the pooled training splits (the reference), and each site's majority-class
rate (the floor; a model at the floor learned nothing).

Tasks:

- ``heart-3``: the heart-disease task at the three smaller hospitals (Hungary, Long Beach,
  Switzerland: ~460 training rows), a few hundred rows over three sites;
- ``digits32-cnn``: three digits (0, 1, 2) of the UCI digits, upscaled to 32×32, ~100 images per
  site over three sites, the task's GroupNorm CNN (channels 8, 16); ``digits32-logistic`` the
  same images with a logistic regression declared by the task;
- ``heart-4``: the default example (four hospitals) under terms only, beside the default policy
  (the heart-disease check), at ε = 1.

Writes OUT/choice_bench.json and OUT/choice_bench.png; prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pooled  # noqa: E402
import tasks  # noqa: E402

from consortium.run.plan import RunPlan, make_plan_from_policy  # noqa: E402
from policies.choice import choose  # noqa: E402
from policies.loader import LoadedPolicy, load_policy, policy_sha256  # noqa: E402
from policies.schema import ConsortiumPolicy, PrivacyTerms  # noqa: E402
from policies.task_loader import LoadedTask  # noqa: E402
from site_node.baseline import majority_rate  # noqa: E402
from site_node.data import SiteData  # noqa: E402
from site_node.model import initial_weights  # noqa: E402
from site_node.privacy.accountant import epsilon, noise_for_target  # noqa: E402
from site_node.training import TrainPlan, evaluate, train_dp  # noqa: E402

DELTA = 1e-5


def plans(task: LoadedTask, policy: ConsortiumPolicy, seed: int) -> tuple[RunPlan, TrainPlan]:
    """The product's run plan for ``policy`` (σ from the real accountant) and each site's
    round of it."""
    with tempfile.TemporaryDirectory() as tmp:
        loaded = LoadedPolicy(policy=policy, source="bench", sha256=policy_sha256(policy))
        plan = make_plan_from_policy(loaded, task, store_path=Path(tmp) / "runs.sqlite",
                                     seed=seed)
    dp = policy.dp
    return plan, TrainPlan(noise_multiplier=plan.noise_multiplier,
                           sample_rate=float(dp.sample_rate),
                           max_grad_norm=float(dp.max_grad_norm), steps=dp.steps_per_round,
                           learning_rate=float(dp.learning_rate), accountant=dp.accountant,
                           delta=policy.delta)


def federate(task: LoadedTask, policy: ConsortiumPolicy, data: dict[str, SiteData],
             seed: int) -> dict[str, Any]:
    """FedAvg of DP-SGD rounds under ``policy``; the final accuracy per site and ε spent."""
    plan, train = plans(task, policy, seed)
    model_task, dp = plan.model_task, policy.dp
    weights = initial_weights(model_task, seed)
    for _ in range(plan.rounds):
        updates = [(train_dp(weights, d, train, model_task).weights, d.num_train)
                   for d in data.values()]
        total = sum(n for _, n in updates)
        weights = [sum(w[i] * (n / total) for w, n in updates).astype(np.float32)
                   for i in range(len(weights))]
    accs = {s: evaluate(weights, d.x_test, d.y_test, model_task)[1] for s, d in data.items()}
    spent = epsilon([plan.mechanism()] * plan.rounds, delta=policy.delta,
                    accountant=dp.accountant)
    return {"accuracy": accs, "mean_accuracy": float(np.mean(list(accs.values()))),
            "epsilon_spent": spent, "noise_multiplier": plan.noise_multiplier,
            "rounds": plan.rounds}


def terms_for(sites: tuple[str, ...], eps: float) -> PrivacyTerms:
    return PrivacyTerms(delta=DELTA, epsilon_ceiling=eps, lifetime_epsilon_ceiling=max(10.0, eps),
                        min_sites=len(sites), sites=sites)


def run_task(name: str, eps_list: list[float], seeds: int) -> dict[str, Any]:
    task, data = tasks.load(name)
    sites = tuple(data)
    floor = {s: majority_rate(d.y_test) for s, d in data.items()}
    ref = pooled.reference(task, data, seed=0)
    rows = []
    for eps in eps_list:
        choice = choose(terms_for(sites, eps), task.task,
                        {s: d.num_train for s, d in data.items()}, task_sha256=task.sha256,
                        noise_for=noise_for_target)
        for seed in range(seeds):
            t0 = time.perf_counter()
            out = federate(task, choice.policy, data, seed)
            row = {"task": name, "epsilon_ceiling": eps, "seed": seed,
                   "choice_epsilon_cost": choice.record["epsilon_cost"],
                   "chosen": choice.record["chosen"]["dp"] | {
                       "rounds": choice.record["chosen"]["rounds"]},
                   "flagged_sites": [s for s, a in out["accuracy"].items() if a <= floor[s]],
                   **out, "wall_s": round(time.perf_counter() - t0, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"task": name, "sites": list(sites), "majority_rate": floor,
            "majority_mean": float(np.mean(list(floor.values()))), "pooled_reference": ref,
            "runs": rows}


def heart_check(seeds: int) -> dict[str, Any]:
    """The default example at ε = 1: the default policy and the terms-only choice."""
    task, data = tasks.load("heart-4")
    default = load_policy().policy
    choice = choose(terms_for(tuple(data), 1.0), task.task,
                    {s: d.num_train for s, d in data.items()}, task_sha256=task.sha256,
                    noise_for=noise_for_target)
    out: dict[str, Any] = {"task": "heart-4", "epsilon_ceiling": 1.0}
    for label, policy in (("default policy", default), ("terms only", choice.policy)):
        accs = [federate(task, policy, data, seed)["mean_accuracy"] for seed in range(seeds)]
        out[label] = {"mean_accuracy": float(np.mean(accs)), "per_seed": accs}
        print(json.dumps({"heart-4": label, "per_seed": accs}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    ap.add_argument("--tasks", nargs="+",
                    default=["heart-3", "digits32-cnn", "digits32-logistic"])
    ap.add_argument("--no-heart-check", action="store_true")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {"delta": DELTA, "seeds": args.seeds,
                              "tasks": [run_task(t, args.eps, args.seeds) for t in args.tasks]}
    if not args.no_heart_check:
        result["heart_check"] = heart_check(args.seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice_bench.json").write_text(json.dumps(result, indent=1) + "\n",
                                                encoding="utf-8")
    from plot import plot
    plot(result, args.out / "choice_bench.png")


if __name__ == "__main__":
    main()
