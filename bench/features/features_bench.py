"""Fixed features that DP learns well from (issue 16): accuracy against ε, privacy terms only.

Usage: PYTHONPATH=. python bench/features/features_bench.py [--seeds 1] [--eps 0.5 1 2 4 8]
       [--variants ...] [--reuse bench/choice/results/choice_bench.json]
       [--out bench/features/results]

The digits-like 32×32 task of bench/choice (UCI digits 0, 1, 2 upscaled, ~100 images per site at
three sites), under a policy of privacy terms only (the product's chooser picks the settings,
0 ε; the plan derives σ for ε at the ceiling), in three variants of the task file:

- ``digits32-scattering``: a logistic head on wavelet scattering features (``features: {kind:
  scattering, J: 2, L: 8}``, 5184 per image), computed at each site by the product's loader;
- ``digits32-cnn``: the task's GroupNorm CNN (channels 8, 16) on the pixels;
- ``digits32-logistic``: a logistic regression on the pixels.

Each beside the same model trained without DP on the pooled training splits and the sites'
majority-class rate. The federated loop is bench/choice's (:func:`choice_bench.run_task`:
Opacus DP-SGD per site, FedAvg weighted by examples; Flower, SecAgg+ and ledgers left out).
Writes OUT/features_bench.json and OUT/features_bench.png; prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parent / "choice"))

import choice_bench  # noqa: E402

VARIANTS = ("digits32-scattering", "digits32-cnn", "digits32-logistic")
GOAL = {"accuracy": 0.90, "epsilon_at_most": 3.0}


def summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant and ε: the mean accuracy over seeds, and whether it meets the goal."""
    rows = []
    for t in result["tasks"]:
        for eps in sorted({r["epsilon_ceiling"] for r in t["runs"]}):
            accs = [r["mean_accuracy"] for r in t["runs"] if r["epsilon_ceiling"] == eps]
            mean = sum(accs) / len(accs)
            rows.append({"variant": t["task"], "epsilon_ceiling": eps, "mean_accuracy": mean,
                         "per_seed": accs, "pooled_non_private": t["pooled_reference"][
                             "mean_accuracy"], "majority_floor": t["majority_mean"],
                         "meets_goal": eps <= GOAL["epsilon_at_most"]
                         and mean >= GOAL["accuracy"]})
    return rows


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy against ε, one line per variant; its pooled reference dashed, the floor and
    the goal dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = summary(result)
    for colour, t in zip(("tab:blue", "tab:orange", "tab:green"), result["tasks"], strict=True):
        mine = [r for r in rows if r["variant"] == t["task"]]
        eps = [r["epsilon_ceiling"] for r in mine]
        ax.plot(eps, [r["mean_accuracy"] for r in mine], "o-", color=colour, label=t["task"])
        ax.axhline(t["pooled_reference"]["mean_accuracy"], color=colour, ls="--", lw=0.8)
    ax.axhline(result["tasks"][0]["majority_mean"], color="tab:red", ls=":",
               label="majority class (floor)")
    ax.axhline(GOAL["accuracy"], color="black", ls=":", lw=0.8, label="goal 0.90 at ε ≤ 3")
    ax.axvspan(0, GOAL["epsilon_at_most"], color="grey", alpha=0.08)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"ε ceiling per site (δ = {result['delta']:g}); dashed: pooled, non-private")
    ax.set_ylabel("mean test accuracy over sites")
    ax.set_ylim(0, 1.02)
    ax.set_title("digits 32×32, 3 sites, privacy terms only")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--eps", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0, 8.0])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--reuse", type=Path, default=None, help="take the variants not run here "
                    "from this choice_bench.json (bench/choice, the same task and loop)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {
        "delta": choice_bench.DELTA, "seeds": args.seeds, "goal": GOAL,
        "tasks": [choice_bench.run_task(v, args.eps, args.seeds) for v in args.variants]}
    if args.reuse is not None:
        earlier = json.loads(args.reuse.read_text(encoding="utf-8"))
        ran = set(args.variants)
        result["tasks"] += [t | {"from": str(args.reuse)} for t in earlier["tasks"]
                            if t["task"] in VARIANTS and t["task"] not in ran]
    result["summary"] = summary(result)
    print(json.dumps({"summary": result["summary"]}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "features_bench.json").write_text(json.dumps(result, indent=1) + "\n",
                                                  encoding="utf-8")
    plot(result, args.out / "features_bench.png")


if __name__ == "__main__":
    main()
