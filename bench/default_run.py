"""Benchmark the embedded default: wall time of `consortium run` and final accuracy per seed.

Usage: python bench/default_run.py [--seeds 0 1 2] [--rounds N] [--out bench/results]
                                  [--example-site-policies]

Runs the default policy's rounds unless ``--rounds`` is given. Prints one JSON object (per seed:
wall seconds, final mean accuracy over the four hospitals, final ε per site), writes it to
OUT/default_run.json (OUT/default_run_site_policies.json with ``--example-site-policies``;
``_rN`` added with ``--rounds N``, e.g. the main job's timing: ``--rounds 10 --seeds 0 1 2 3
4`` writes OUT/default_run_r10.json) and plots accuracy per round beside it (matplotlib:
``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from consortium.home import HOME_ENV
from site_node.home import HOME_ENV as SITE_HOME_ENV


def one_run(seed: int, rounds: int | None, store: Path, site_policies: bool = False
            ) -> dict[str, Any]:
    # Each run gets fresh homes: the sites' lifetime ledgers must not carry over between
    # benchmark runs (a site's lifetime budget never forgets).
    env = {**os.environ, HOME_ENV: str(store.parent / f"home-{seed}"),
           SITE_HOME_ENV: str(store.parent / f"sites-{seed}")}
    t0 = time.perf_counter()
    extra = ["--example-site-policies"] if site_policies else []
    if rounds is not None:
        extra += ["--rounds", str(rounds)]
    subprocess.run([sys.executable, "-m", "consortium", "run",
                    "--seed", str(seed), "--store", str(store), *extra], check=True,
                   capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    exported = json.loads(subprocess.run(
        [sys.executable, "-m", "consortium", "export", "--store", str(store)],
        check=True, capture_output=True, text=True).stdout)
    last = exported["rounds"][-1]
    return {
        "seed": seed, "wall_s": round(wall, 1), "rounds": len(exported["rounds"]),
        "final_accuracy_mean": last["accuracy_mean"],
        "final_accuracy_per_site": {s: v["accuracy"] for s, v in last["sites"].items()},
        "final_epsilon": {s: v["epsilon"] for s, v in last["sites"].items()},
        "accuracy_by_round": [r["accuracy_mean"] for r in exported["rounds"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=None,
                        help="Rounds per run (default: the policy's).")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--example-site-policies", action="store_true",
                        help="Let the hospitals apply policies/sites/*.yaml (tighter).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(s, args.rounds, Path(tmp) / f"seed{s}.sqlite",
                        args.example_site_policies) for s in args.seeds]
    result = {"benchmark": "default_run", "example_site_policies": args.example_site_policies,
              "rounds_requested": args.rounds, "cpu_count": os.cpu_count(), "runs": runs,
              "min_final_accuracy": min(float(r["final_accuracy_mean"]) for r in runs),
              "mean_final_accuracy": sum(float(r["final_accuracy_mean"]) for r in runs)
              / len(runs),
              "mean_wall_s": sum(float(r["wall_s"]) for r in runs) / len(runs)}
    name = "default_run_site_policies" if args.example_site_policies else "default_run"
    if args.rounds is not None:
        name += f"_r{args.rounds}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    plot(runs, args.out / f"{name}.png")
    print(json.dumps(result))


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Mean test accuracy per round, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in runs:
        acc = r["accuracy_by_round"]
        ax.plot(range(1, len(acc) + 1), acc, marker="o", label=f"seed {r['seed']}")
    ax.set(title="Embedded example: mean test accuracy over the four hospitals",
           xlabel="round", ylabel="mean accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
