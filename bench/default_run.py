"""Benchmark the embedded default: wall time of `consortium run` and final accuracy per seed.

Usage: python bench/default_run.py [--seeds 0 1 2] [--rounds 10] [--out bench/results]

Prints one JSON object (per seed: wall seconds, final mean accuracy over the four hospitals,
final ε per site), writes it to OUT/default_run.json and plots accuracy per round to
OUT/default_run.svg.
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

from consortium.keys import HOME_ENV

sys.path.insert(0, str(Path(__file__).resolve().parent))
from svg_plot import line_chart


def one_run(seed: int, rounds: int, store: Path) -> dict[str, Any]:
    # Each run gets a fresh consortium home: the sites' lifetime ledgers must not carry over
    # between benchmark runs (Switzerland's example policy allows about two runs).
    env = {**os.environ, HOME_ENV: str(store.parent / f"home-{seed}")}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "consortium", "run", "--rounds", str(rounds),
                    "--seed", str(seed), "--store", str(store)], check=True,
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
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(s, args.rounds, Path(tmp) / f"seed{s}.sqlite") for s in args.seeds]
    result = {"benchmark": "default_run", "runs": runs,
              "min_final_accuracy": min(float(r["final_accuracy_mean"]) for r in runs)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "default_run.json").write_text(json.dumps(result, indent=2))
    svg = line_chart({f"seed {r['seed']}": r["accuracy_by_round"] for r in runs},
                     title="Embedded default: mean test accuracy over the four hospitals",
                     x_label="round", y_label="mean accuracy")
    (args.out / "default_run.svg").write_text(svg)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
