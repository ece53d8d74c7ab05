"""Accuracy per privacy budget on the heart-disease task, with Opacus DP-SGD.

Usage: python bench/utility/utility_curve.py [CSV] [--selected bench/utility/results/selected.json]
       [--seeds 0 1 2 3 4] [--split-seeds 1 2 3 4 5] [--workers 2] [--out bench/utility/results]

For each ε in {0.5, 1, 2, 4, 8, ∞} (each site's total ε over the whole run, δ = 1e-5, Opacus'
RDP accountant; ∞ = non-private) it trains, with the configurations search.py selected on
site-local validation folds (never on a test split):

* federated DP — the four hospitals with FedAvg/FedAdam/FedYogi over the weighted mean update;
* local-only DP — each hospital alone at the same ε, with its own selected configuration;
* pooled non-private logistic regression (the ceiling) and each hospital's majority class
  (the floor);
* as a baseline, the product's current policy (logistic regression, q = 0.2, 10 rounds × 10
  steps, C = 1, lr 0.5, FedAvg) on the same task-fixed features — not tuned, not selected;

and reports the mean over the four hospitals of the test accuracy and AUC, mean ± sd over the
seeds (model initialisation, Poisson sampling and noise), on the product's split (seed
20240601), and again over other random 75/25 splits (the same selected configurations).

Prints JSON lines, writes OUT/utility_curve.json and OUT/utility_curve.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heartbench as hb

_STUDIES: dict[tuple[str, int], hb.Study] = {}
METHODS = ("federated", "local", "product_policy")
#: The product's current policy (policies/consortium.yaml), here on the task-fixed features.
PRODUCT_POLICY = hb.Config(model="logreg", features="full", gain=1.0, site_onehot=False, q=0.2,
                           rounds=10, local_steps=10, clip=1.0, lr=0.5, server="fedavg",
                           server_lr=1.0)
#: The issue's goal (a requirement, not a result): mean test accuracy at ε = 1.
GOAL_ACCURACY_AT_EPS_1 = 0.82


def study(csv: str, split_seed: int) -> hb.Study:
    """The product split for ``split_seed`` (cached per process)."""
    key = (csv, split_seed)
    if key not in _STUDIES:
        _STUDIES[key] = hb.Study.product(Path(csv), split_seed)
    return _STUDIES[key]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One Opacus run: federated (all sites, one config) or local-only (each site its own)."""
    t0 = time.perf_counter()
    st = study(job["csv"], job["split_seed"])
    accs: list[float] = []
    aucs: list[float] = []
    eps_spent: list[float] = []
    if job["method"] in ("federated", "product_policy"):
        cfg = hb.Config.from_dict(job["config"])
        sites = st.arrays(cfg.spec)
        reps = hb.make_replicates(sites, [job["seed"]], [None])
        theta, eps_spent = hb.run_federated(cfg, sites, reps, job["sigma"], "opacus")
        m = hb.evaluate(cfg, sites, theta, [None])
        accs, aucs = m["acc"][:, 0].tolist(), m["auc"][:, 0].tolist()
    else:
        for k, site in enumerate(hb.SITES):
            entry = job["local"][site]
            cfg = hb.Config.from_dict(entry["config"])
            one = [st.arrays(cfg.spec)[k]]
            reps = hb.make_replicates(one, [job["seed"]], [None])
            theta, eps_site = hb.run_federated(cfg, one, reps, entry["sigma"], "opacus",
                                               stream=k)
            m = hb.evaluate(cfg, one, theta, [None])
            accs.append(float(m["acc"][0, 0]))
            aucs.append(float(m["auc"][0, 0]))
            eps_spent += eps_site
    return {"method": job["method"], "epsilon": job["epsilon"], "split_seed": job["split_seed"],
            "seed": job["seed"], "acc_per_site": accs, "auc_per_site": aucs,
            "acc": float(np.mean(accs)), "auc": float(np.nanmean(aucs)),
            "epsilon_spent_per_site": eps_spent, "seconds": round(time.perf_counter() - t0, 2)}


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value)."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(np.nanmean(a)),
            "sd": float(np.nanstd(a, ddof=1)) if len(a) > 1 else 0.0, "n": len(a)}


def summarise(runs: list[dict[str, Any]], primary: int) -> dict[str, Any]:
    """Seeds on the primary split; seed-means over the other splits."""
    prim = [r for r in runs if r["split_seed"] == primary]
    others = sorted({r["split_seed"] for r in runs} - {primary})
    out: dict[str, Any] = {
        "acc": mean_sd([r["acc"] for r in prim]), "auc": mean_sd([r["auc"] for r in prim]),
        "acc_per_site": dict(zip(hb.SITES, np.mean([r["acc_per_site"] for r in prim], 0)
                                 .tolist(), strict=True)),
    }
    if others:
        split_acc = [float(np.mean([r["acc"] for r in runs if r["split_seed"] == s]))
                     for s in others]
        split_auc = [float(np.nanmean([r["auc"] for r in runs if r["split_seed"] == s]))
                     for s in others]
        out["other_splits"] = {"split_seeds": others, "acc_per_split": split_acc,
                               "acc": mean_sd(split_acc),
                               "auc": mean_sd(split_auc),
                               "acc_all_runs": mean_sd([r["acc"] for r in runs
                                                        if r["split_seed"] != primary])}
    eps = [e for r in prim for e in r.get("epsilon_spent_per_site", [])]
    if eps:
        out["epsilon_spent_max"] = max(eps)
    return out


def reference_rows(csv: str, split_seed: int, pooled_cfg: dict[str, Any]) -> dict[str, Any]:
    """Pooled non-private ceiling and majority floor on one split (deterministic)."""
    st = study(csv, split_seed)
    spec = hb.FeatureSpec(pooled_cfg["features"], pooled_cfg["gain"], pooled_cfg["site_onehot"])
    m = hb.pooled_scores(st.arrays(spec), pooled_cfg["l2"], [None])
    floor = hb.majority_floor(st.arrays(hb.FeatureSpec()))
    return {"split_seed": split_seed,
            "pooled": {"acc": float(m["acc"].mean()), "auc": float(np.nanmean(m["auc"])),
                       "acc_per_site": dict(zip(hb.SITES, m["acc"][:, 0].tolist(),
                                                strict=True))},
            "floor": {"acc": floor["acc_mean"], "auc": floor["auc_mean"],
                      "acc_per_site": floor["acc_per_site"]}}


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy and AUC vs ε with error bars; ceiling, floor and goal as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps_keys = list(result["curve"])
    finite = [float(e) for e in eps_keys if e != "inf"]
    xs = [float(e) if e != "inf" else max(finite) * 2.5 for e in eps_keys]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, metric in zip(axes, ("acc", "auc"), strict=True):
        for method, color, dx in (("federated", "tab:blue", 1.0), ("local", "tab:orange", 1.06),
                                  ("product_policy", "tab:purple", 0.94)):
            ys = [result["curve"][e][method][metric]["mean"] for e in eps_keys]
            sd = [result["curve"][e][method][metric]["sd"] for e in eps_keys]
            label = ("current product policy, untuned" if method == "product_policy"
                     else f"{method} DP, selected")
            ax.errorbar([x * dx for x in xs], ys, yerr=sd, marker="o", capsize=3, color=color,
                        label=f"{label} (product split, sd over seeds)",
                        alpha=0.6 if method == "product_policy" else 1.0)
            if method != "product_policy" and "other_splits" in result["curve"][eps_keys[0]][
                    method]:
                ys2 = [result["curve"][e][method]["other_splits"][metric]["mean"]
                       for e in eps_keys]
                sd2 = [result["curve"][e][method]["other_splits"][metric]["sd"]
                       for e in eps_keys]
                ax.errorbar([x * dx * 1.03 for x in xs], ys2, yerr=sd2, marker="x",
                            capsize=2, color=color, alpha=0.45, linestyle=":",
                            label=f"{method}: other splits (sd over splits)")
        ref = result["references"]["product_split"]
        ax.axhline(ref["pooled"][metric], color="green", linestyle="--",
                   label="pooled non-private (ceiling)")
        ax.axhline(ref["floor"][metric], color="grey", linestyle=":",
                   label="majority class per hospital (floor)")
        if metric == "acc":
            ax.axhline(result["goal_accuracy_at_eps_1"], color="red", alpha=0.35,
                       label="goal at ε = 1")
        ax.set_xscale("log")
        ax.set_xticks(xs)
        ax.set_xticklabels([e if e != "inf" else "∞" for e in eps_keys])
        ax.set_xlabel("each site's total ε over the run (δ = 1e-5)")
        ax.set_ylabel(f"mean test {'accuracy' if metric == 'acc' else 'AUC'} over 4 hospitals")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("UCI heart disease, 4 hospitals: utility per privacy budget (Opacus DP-SGD)")
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", type=Path, default=hb.DEFAULT_CSV)
    here = Path(__file__).resolve().parent
    parser.add_argument("--selected", type=Path, default=here / "results" / "selected.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epsilons", nargs="+", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=here / "results")
    args = parser.parse_args()
    t0 = time.perf_counter()
    sel = json.loads(args.selected.read_text())
    eps_keys = args.epsilons or list(sel["epsilons"])
    csv = str(args.csv)
    primary = hb.SPLIT_SEED
    splits = [primary, *[s for s in args.split_seeds if s != primary]]
    jobs: list[dict[str, Any]] = []
    for e in eps_keys:
        eps = math.inf if e == "inf" else float(e)
        fed = sel["epsilons"][e]["federated"]
        fed_cfg = hb.Config.from_dict(fed["config"])
        sigma = hb.noise_multiplier(eps, fed_cfg.q, fed_cfg.steps)  # recomputed, not trusted
        product_sigma = hb.noise_multiplier(eps, PRODUCT_POLICY.q, PRODUCT_POLICY.steps)
        local = {}
        for site in hb.SITES:
            lc = hb.Config.from_dict(sel["epsilons"][e]["local"][site]["config"])
            local[site] = {"config": lc.to_dict(),
                           "sigma": hb.noise_multiplier(eps, lc.q, lc.steps)}
        for split in splits:
            for seed in args.seeds:
                base = {"csv": csv, "epsilon": e, "split_seed": split, "seed": seed}
                jobs.append({**base, "method": "federated", "config": fed_cfg.to_dict(),
                             "sigma": sigma})
                jobs.append({**base, "method": "local", "local": local})
                jobs.append({**base, "method": "product_policy",
                             "config": PRODUCT_POLICY.to_dict(), "sigma": product_sigma})
    runs: list[dict[str, Any]] = []
    with Pool(args.workers) as pool:
        for i, r in enumerate(pool.imap_unordered(run_job, jobs), 1):
            runs.append(r)
            if i % 20 == 0:
                print(f"[utility_curve] {i}/{len(jobs)} runs, {time.perf_counter() - t0:.0f}s",
                      file=sys.stderr)
    refs = {s: reference_rows(csv, s, sel["pooled"]["config"]) for s in splits}
    result: dict[str, Any] = {
        "benchmark": "utility_curve", "delta": hb.DELTA, "csv": csv, "primary_split": primary,
        "other_split_seeds": splits[1:], "seeds": args.seeds,
        "goal_accuracy_at_eps_1": GOAL_ACCURACY_AT_EPS_1,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "curve": {}, "selected": {}, "references": {},
    }
    ref_other = [refs[s] for s in splits[1:]]
    result["references"] = {
        "product_split": refs[primary],
        "other_splits": {
            "pooled_acc": mean_sd([r["pooled"]["acc"] for r in ref_other]),
            "pooled_auc": mean_sd([r["pooled"]["auc"] for r in ref_other]),
            "floor_acc": mean_sd([r["floor"]["acc"] for r in ref_other]),
        } if ref_other else {},
        "pooled_config": sel["pooled"]["config"],
    }
    for e in eps_keys:
        result["curve"][e] = {}
        for method in METHODS:
            rs = [r for r in runs if r["epsilon"] == e and r["method"] == method]
            summ = summarise(rs, primary)
            result["curve"][e][method] = summ
            line = {"epsilon": e, "method": method, **summ}
            print(json.dumps(line, default=hb.json_default), flush=True)
            target = math.inf if e == "inf" else float(e)
            if summ.get("epsilon_spent_max", 0.0) > target:
                raise AssertionError(f"ε spent {summ['epsilon_spent_max']} > {target}")
        result["selected"][e] = {"federated": sel["epsilons"][e]["federated"]["config"],
                                 "local": {s: sel["epsilons"][e]["local"][s]["config"]
                                           for s in hb.SITES}}
    for name in ("pooled", "floor"):
        print(json.dumps({"epsilon": "n/a", "method": name, **refs[primary][name],
                          "other_splits": result["references"]["other_splits"]}), flush=True)
    result["runs"] = runs
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "utility_curve.json").write_text(json.dumps(result, indent=1,
                                                            default=hb.json_default))
    plot(result, args.out / "utility_curve.png")
    print(json.dumps({"wrote": [str(args.out / "utility_curve.json"),
                                str(args.out / "utility_curve.png")],
                      "seconds": result["seconds"]}))


if __name__ == "__main__":
    main()
