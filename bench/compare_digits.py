"""Benchmark the digits comparison: federated versus local-only, per seed.

Usage: python bench/compare_digits.py [--seeds 0 1 2] [--rounds 0] [--out bench/results]

Runs ``consortium compare --example digits`` once per seed (fresh homes: a comparison spends each
site's budget twice, and a site's lifetime budget never forgets), exports the federated run and
prints one JSON object: per seed and per site, the test accuracy of the site's local-only model
and of the federated model on the site's own test set, over all ten digits and over the three
digits the site never trained on; and their means. Writes it to OUT/compare_digits.json.
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


def _acc(results: list[dict[str, Any]], site: str, model: str, classes: set[int] | None
         ) -> float:
    chosen = [r for r in results if (r["site"], r["scope"], r["model"]) == (site, "own", model)
              and (classes is None or r["class_index"] in classes)]
    return sum(r["correct"] for r in chosen) / sum(r["total"] for r in chosen)


def one_seed(seed: int, rounds: int, tmp: Path) -> dict[str, Any]:
    env = {**os.environ, HOME_ENV: str(tmp / f"home-{seed}"),
           SITE_HOME_ENV: str(tmp / f"sites-{seed}"), "COLUMNS": "200"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "consortium", "compare", "--example", "digits",
                           "--rounds", str(rounds), "--seed", str(seed)], check=True,
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    fed = next(line.split()[2].rstrip(":") for line in done.stdout.splitlines()
               if line.startswith("Federated run "))
    exported = json.loads(subprocess.run(
        [sys.executable, "-m", "consortium", "export", "--run", fed], check=True,
        capture_output=True, text=True, env=env).stdout)
    (cmp,) = exported["comparisons"]
    results = cmp["results"]
    sites = {}
    for site in cmp["local_runs"]:
        missing = {r["class_index"] for r in results if r["site"] == site
                   and r["site_train_count"] == 0}
        sites[site] = {
            "missing_digits": sorted(missing),
            "local_all": _acc(results, site, "local", None),
            "federated_all": _acc(results, site, "federated", None),
            "local_missing": _acc(results, site, "local", missing),
            "federated_missing": _acc(results, site, "federated", missing),
            "epsilon_per_run": exported["rounds"][-1]["sites"][site]["epsilon"],
        }
    mean = {k: sum(s[k] for s in sites.values()) / len(sites)
            for k in ("local_all", "federated_all", "local_missing", "federated_missing")}
    return {"seed": seed, "wall_s": round(wall, 1), "rounds": len(exported["rounds"]),
            "sites": sites, "mean": mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=0, help="0: the policy's (5)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_seed(s, args.rounds, Path(tmp)) for s in args.seeds]
    keys = ("local_all", "federated_all", "local_missing", "federated_missing")
    result = {"benchmark": "compare_digits", "runs": runs,
              "mean_over_seeds": {k: sum(r["mean"][k] for r in runs) / len(runs) for k in keys}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare_digits.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
