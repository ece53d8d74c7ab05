"""Check that the vectorised NumPy DP-SGD used by the search matches Opacus.

Usage: python bench/utility/check_equivalence.py [CSV] [--runs 24] [--out bench/utility/results]

1. Deterministic arithmetic: with q = 1 (every row sampled) and σ = 0 both backends must give
   the same final model to float32 precision (clipping, the int(n·q) averaging denominator,
   local steps, weighted averaging, server optimizer).
2. Statistics: with noise and Poisson sampling (ε = 1, δ = 1e-5) both backends are run RUNS
   times per configuration, trained on validation folds 1-3 of every site's train split and
   scored on fold 0 (no test split is used); the accuracy, AUC, log-loss and the
   final parameter norm must agree in distribution (Welch t-test and two-sample
   Kolmogorov-Smirnov p-values; they use different random streams, so only the distributions
   can be compared). The Opacus accountants' ε must equal the target's σ computation.

Writes OUT/equivalence.json and prints one JSON line per check.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heartbench as hb

CONFIGS: dict[str, hb.Config] = {
    "product policy (logreg, q=0.2, 10x10 steps, FedAvg)": hb.Config(),
    "logreg full-batch, 40x1 steps, FedYogi": hb.Config(
        features="core", gain=4.0, site_onehot=True, q=1.0, rounds=40, local_steps=1, clip=0.3,
        lr=1.0, server="fedyogi", server_lr=0.1),
    "mlp8, q=0.25, 20x2 steps, FedAdam": hb.Config(
        model="mlp8", features="dense", gain=2.0, q=0.25, rounds=20, local_steps=2, clip=1.0,
        lr=1.0, server="fedadam", server_lr=0.03),
    "local-only logreg, q=0.5, 40 steps (Switzerland)": hb.Config(
        features="full", gain=4.0, q=0.5, rounds=1, local_steps=40, clip=0.3, lr=1.0),
}


def summary(values: np.ndarray) -> dict[str, float]:
    """Mean and standard deviation."""
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1))}


def run_stats(name: str, cfg: hb.Config, study: hb.Study, runs: int, eps: float
              ) -> dict[str, Any]:
    """Both backends, ``runs`` seeds each, scored on validation fold 0 (never the test split)."""
    local = name.startswith("local-only")
    sites = study.arrays(cfg.spec)
    if local:
        sites = [sites[hb.SITES.index("switzerland")]]
    sigma = hb.noise_multiplier(eps, cfg.q, cfg.steps)
    seeds = list(range(5000, 5000 + runs))
    out: dict[str, Any] = {"check": "statistical", "config_name": name, "config": cfg.to_dict(),
                           "epsilon_target": eps, "sigma": sigma, "runs": runs}
    per_backend: dict[str, dict[str, np.ndarray]] = {}
    eps_opacus: list[float] = []
    for backend in ("numpy", "opacus"):
        thetas = []
        if backend == "numpy":
            reps = hb.make_replicates(sites, seeds, [0])
            thetas.append(hb.run_federated(cfg, sites, reps, sigma, "numpy")[0])
        else:
            for s in seeds:
                reps = hb.make_replicates(sites, [s], [0])
                theta, eps_sites = hb.run_federated(cfg, sites, reps, sigma, "opacus")
                thetas.append(theta)
                eps_opacus += eps_sites
        theta = np.concatenate(thetas)
        m = hb.evaluate(cfg, sites, theta, [0])
        per_backend[backend] = {"acc": m["acc"].mean(0), "auc": np.nanmean(m["auc"], 0),
                                "logloss": m["logloss"].mean(0),
                                "param_norm": np.linalg.norm(theta, axis=1)}
    for metric in ("acc", "auc", "logloss", "param_norm"):
        a, b = per_backend["numpy"][metric], per_backend["opacus"][metric]
        out[metric] = {"numpy": summary(a), "opacus": summary(b),
                       "welch_p": float(stats.ttest_ind(a, b, equal_var=False).pvalue),
                       "ks_p": float(stats.ks_2samp(a, b).pvalue)}
    out["epsilon_opacus_accountant_max"] = max(eps_opacus)
    out["epsilon_rdp_check"] = hb.epsilon_spent(sigma, cfg.q, cfg.steps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", type=Path, default=hb.DEFAULT_CSV)
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    study = hb.Study.product(args.csv)
    results: list[dict[str, Any]] = []
    for name, cfg in CONFIGS.items():
        det = replace(cfg, q=1.0, rounds=min(cfg.rounds, 5))
        sites = study.arrays(det.spec)
        if name.startswith("local-only"):
            sites = [sites[hb.SITES.index("switzerland")]]
        reps = hb.make_replicates(sites, [1], [None])
        a, _ = hb.run_federated(det, sites, reps, 0.0, "numpy")
        b, _ = hb.run_federated(det, sites, reps, 0.0, "opacus")
        line = {"check": "deterministic (q=1, sigma=0)", "config_name": name,
                "max_abs_diff": float(np.abs(a - b).max()),
                "max_abs_param": float(np.abs(a).max())}
        print(json.dumps(line), flush=True)
        results.append(line)
    for name, cfg in CONFIGS.items():
        line = run_stats(name, cfg, study, args.runs, args.epsilon)
        print(json.dumps(line, default=hb.json_default), flush=True)
        results.append(line)
    ok_det = all(r["max_abs_diff"] < 1e-4 for r in results if "max_abs_diff" in r)
    # A metric that is constant in both backends (e.g. Switzerland's all-positive accuracy)
    # gives a NaN t-test: nothing to compare there.
    pvals = [r[m][t] for r in results if "acc" in r for m in ("acc", "auc", "logloss",
                                                              "param_norm")
             for t in ("welch_p", "ks_p") if not math.isnan(r[m][t])]
    eps_ok = all(r["epsilon_opacus_accountant_max"] <= r["epsilon_target"] + 1e-12
                 for r in results if "acc" in r)
    verdict = {"deterministic_match": ok_det, "min_p_value": min(pvals),
               "n_tests": len(pvals), "opacus_epsilon_within_target": eps_ok,
               "note": "p-values are uniform under equivalence; with n_tests tests, a minimum "
                       "below ~0.05/n_tests would signal a mismatch"}
    print(json.dumps(verdict), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "equivalence.json").write_text(json.dumps(
        {"results": results, "verdict": verdict}, indent=1, default=hb.json_default))
    if not (ok_det and eps_ok):
        raise SystemExit("the NumPy DP-SGD does not match Opacus")


if __name__ == "__main__":
    main()
