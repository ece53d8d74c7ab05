"""Parameter averaging over rounds (issue 16): does an exponential moving average of the global
models beat the last global model?

Usage: PYTHONPATH=. python bench/choice/averaging_bench.py TASKS EPS SEEDS
       e.g. ``digits32-cnn,heart-3 1,3 2``

The same in-process FedAvg as ``choice_bench.py`` (the product's chooser and plan for a policy of
privacy terms only, the product's DP-SGD at each site), keeping beside the global model an
average ``a ← d·a + (1−d)·w`` after every round for each decay ``d``; prints one JSON line per
run with the mean test accuracy over the sites of the last model (``raw``) and of each average.
Averaging is post-processing of what the server already holds, so it costs no ε. Results of the
last run: ``results/averaging_bench.jsonl``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import tasks
from choice_bench import plans, terms_for

from policies.choice import choose
from policies.schema import ConsortiumPolicy
from policies.task_loader import LoadedTask
from site_node.data import SiteData
from site_node.model import initial_weights
from site_node.privacy.accountant import noise_for_target
from site_node.training import evaluate, train_dp

DECAYS = (0.5, 0.7, 0.85)


def federate(task: LoadedTask, policy: ConsortiumPolicy, data: dict[str, SiteData],
             seed: int) -> dict[str, float]:
    """Mean test accuracy of the last global model and of each average."""
    plan, train = plans(task, policy, seed)
    mt = plan.model_task
    w = initial_weights(mt, seed)
    averages: dict[float, list[np.ndarray] | None] = dict.fromkeys(DECAYS)
    for _ in range(plan.rounds):
        ups = [(train_dp(w, d, train, mt).weights, d.num_train) for d in data.values()]
        total = sum(n for _, n in ups)
        w = [sum(u[i] * (n / total) for u, n in ups).astype(np.float32) for i in range(len(w))]
        for d, a in averages.items():
            averages[d] = ([x.copy() for x in w] if a is None
                           else [d * x + (1 - d) * y for x, y in zip(a, w, strict=True)])

    def acc(ws: list[np.ndarray]) -> float:
        return float(np.mean([evaluate(ws, s.x_test, s.y_test, mt)[1] for s in data.values()]))

    return {"raw": acc(w), **{f"ema{d}": acc(a) for d, a in averages.items() if a is not None}}


def main(names: str, eps_list: str, seeds: str) -> None:
    for name in names.split(","):
        task, data = tasks.load(name)
        for eps in (float(e) for e in eps_list.split(",")):
            choice = choose(terms_for(tuple(data), eps), task.task,
                            {s: d.num_train for s, d in data.items()}, task_sha256=task.sha256,
                            noise_for=noise_for_target)
            for seed in range(int(seeds)):
                row: dict[str, Any] = {"task": name, "eps": eps, "seed": seed,
                                       **federate(task, choice.policy, data, seed)}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
