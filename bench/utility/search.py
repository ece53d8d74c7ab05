"""Hyper-parameter search on site-local validation folds, per privacy budget ε.

Usage: python bench/utility/search.py [CSV] [--epsilons 0.5 1 2 4 8 inf] [--random 600]
       [--refine 8] [--top 16] [--workers 2] [--out bench/utility/results]

For every ε (each site's total over the run, δ = 1e-5, Opacus RDP accountant) it searches

* the federated configuration (model, feature handling, q, rounds × local steps, clipping,
  learning rate, server optimizer) by the mean over the four hospitals of the validation
  accuracy, and
* for each hospital alone (local-only DP-SGD at the same ε) its own configuration by its own
  validation accuracy,

and, once, the pooled non-private ceiling (L2 of a pooled logistic regression, feature handling).

Validation never touches a test split: each site's train split (the product's stratified 75/25
split, seed 20240601) is cut into 4 stratified folds; a configuration is trained on 3 folds of
every site and scored on the held-out fold of every site, for all 4 folds × several seeds.
Stage 1 scores random configurations (and mutations of the best ones) with 2 seeds; stage 2
re-scores the best with 6 fresh seeds and selects on stage 2 alone. The search uses the
vectorised NumPy DP-SGD (exactly Opacus' arithmetic; see check_equivalence.py).

Writes OUT/search_trials.jsonl (every configuration tried, one JSON line each) and
OUT/selected.json (the selection per ε), and prints the selected ones as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import replace
from multiprocessing import Pool
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heartbench as hb

MAX_STEPS = 400  # noisy steps per site over a run (keeps a run to seconds under Opacus)
STAGE1_SEEDS = (1000, 1001)
STAGE2_SEEDS = (2000, 2001, 2002, 2003, 2004, 2005)
FOLDS: tuple[int, ...] = tuple(range(hb.VAL_FOLDS))

# Ordered value lists: random search draws from them, refinement moves to a neighbour.
SPACE: dict[str, list[Any]] = {
    "model": ["logreg", "mlp8"],
    "features": ["full", "dense", "core"],
    "gain": [1.0, 2.0, 4.0, 8.0],
    "site_onehot": [False, True],
    "q": [0.1, 0.2, 0.25, 0.5, 1.0],
    "rounds": [5, 10, 20, 40, 80],
    "local_steps": [1, 2, 5, 10, 20],
    "clip": [0.1, 0.3, 1.0, 3.0],
    "step": [0.03, 0.1, 0.3, 1.0, 3.0],  # lr × C: the largest per-step move of a clipped mean
    "server": ["fedavg", "fedadam", "fedyogi"],
    "server_lr": [0.003, 0.01, 0.03, 0.1, 0.3],
    "tau": [1e-3, 1e-2, 1e-1],
}
LOCAL_STEPS_T = [5, 10, 20, 40, 80, 160, 320]
POOLED_L2 = [1e-4, 1e-3, 1e-2, 1e-1]

# The product's current policy, for reference (scaled by declared ranges here).
PRODUCT = hb.Config(model="logreg", features="full", gain=1.0, q=0.2, rounds=10, local_steps=10,
                    clip=1.0, lr=0.5, server="fedavg", server_lr=1.0)


def step_of(cfg: hb.Config) -> float:
    """lr × C (lr alone when there is no clipping)."""
    return cfg.lr * (cfg.clip if math.isfinite(cfg.clip) else 1.0)


def with_step(cfg: hb.Config, step: float) -> hb.Config:
    """Set lr from the per-step scale lr × C."""
    return replace(cfg, lr=step / (cfg.clip if math.isfinite(cfg.clip) else 1.0))


def clips_for(eps: float) -> list[float]:
    """Clipping norms searched (non-private runs may also go unclipped)."""
    return SPACE["clip"] + ([math.inf] if math.isinf(eps) else [])


def random_config(rng: np.random.Generator, eps: float, local: bool,
                  space: dict[str, list[Any]] = SPACE) -> hb.Config:
    """One draw from the search space (logistic regression 3× as likely as the MLP)."""
    def pick(name: str) -> Any:
        vals = space[name]
        return vals[int(rng.integers(len(vals)))]

    model = "mlp8" if rng.random() < 0.25 else "logreg"
    clip = clips_for(eps)[int(rng.integers(len(clips_for(eps))))]
    if local:
        t = LOCAL_STEPS_T[int(rng.integers(len(LOCAL_STEPS_T)))]
        cfg = hb.Config(model=model, features=pick("features"), gain=pick("gain"),
                        site_onehot=False, q=pick("q"), rounds=1, local_steps=t, clip=clip,
                        server="fedavg", server_lr=1.0)
        return with_step(cfg, pick("step"))
    while True:
        rounds, ls = pick("rounds"), pick("local_steps")
        if rounds * ls <= MAX_STEPS:
            break
    server = pick("server")
    cfg = hb.Config(model=model, features=pick("features"), gain=pick("gain"),
                    site_onehot=pick("site_onehot"), q=pick("q"), rounds=rounds, local_steps=ls,
                    clip=clip, server=server,
                    server_lr=1.0 if server == "fedavg" else pick("server_lr"),
                    tau=pick("tau") if server != "fedavg" else 1e-3)
    return with_step(cfg, pick("step"))


def neighbours(cfg: hb.Config, eps: float, local: bool,
               space: dict[str, list[Any]] = SPACE) -> Iterable[hb.Config]:
    """Configurations one step away in one dimension."""
    def around(vals: list[Any], v: Any) -> list[Any]:
        if v not in vals:
            return []
        i = vals.index(v)
        return [vals[j] for j in (i - 1, i + 1) if 0 <= j < len(vals)]

    for v in around(space["model"], cfg.model):
        yield replace(cfg, model=v)
    for v in space["features"]:
        if v != cfg.features:
            yield replace(cfg, features=v)
    for v in around(space["gain"], cfg.gain):
        yield replace(cfg, gain=v)
    for v in around(space["q"], cfg.q):
        yield replace(cfg, q=v)
    for v in around(clips_for(eps), cfg.clip):
        yield with_step(replace(cfg, clip=v), step_of(cfg))
    step = step_of(cfg)
    for v in around(space["step"], min(space["step"], key=lambda s: abs(math.log(s / step)))):
        yield with_step(cfg, v)
    if local:
        for v in around(LOCAL_STEPS_T, cfg.local_steps):
            yield replace(cfg, local_steps=v)
        return
    yield replace(cfg, site_onehot=not cfg.site_onehot)
    for v in around(space["rounds"], cfg.rounds):
        yield replace(cfg, rounds=v)
    for v in around(space["local_steps"], cfg.local_steps):
        yield replace(cfg, local_steps=v)
    # Same total steps, split differently between rounds and local steps.
    for r2 in space["rounds"]:
        if r2 != cfg.rounds and cfg.steps % r2 == 0 and cfg.steps // r2 in space["local_steps"]:
            yield replace(cfg, rounds=r2, local_steps=cfg.steps // r2)
    for sv in space["server"]:
        if sv != cfg.server:
            yield replace(cfg, server=sv, server_lr=1.0 if sv == "fedavg" else 0.03)
    if cfg.server != "fedavg":
        for v in around(space["server_lr"], cfg.server_lr):
            yield replace(cfg, server_lr=v)
        for v in around(space["tau"], cfg.tau):
            yield replace(cfg, tau=v)


# ---------------------------------------------------------------------------------------------
# Scoring (runs in worker processes).
# ---------------------------------------------------------------------------------------------
_STUDY: hb.Study | None = None


def make_study(study_key: tuple[Any, ...]) -> hb.Study:
    """("product", csv, split_seed) or ("flamby", csv)."""
    if study_key[0] == "flamby":
        return hb.Study.flamby(Path(study_key[1]))
    return hb.Study.product(Path(study_key[1]), int(study_key[2]))


def _init_worker(study_key: tuple[Any, ...]) -> None:
    global _STUDY
    _STUDY = make_study(study_key)


def score(job: tuple[str, float, dict[str, Any], tuple[int, ...], float]) -> dict[str, Any]:
    """Validation scores of one configuration: federated (all sites) or local (each site)."""
    kind, eps, cfg_d, seeds, sigma = job
    assert _STUDY is not None
    cfg = hb.Config.from_dict(cfg_d)
    sites = _STUDY.arrays(cfg.spec)
    t0 = time.perf_counter()
    if kind == "federated":
        reps = hb.make_replicates(sites, seeds, FOLDS)
        theta, _ = hb.run_federated(cfg, sites, reps, sigma)
        m = hb.evaluate(cfg, sites, theta, FOLDS)
    else:
        thetas = []
        for k in range(len(sites)):
            reps = hb.make_replicates([sites[k]], seeds, FOLDS)
            thetas.append(hb.run_federated(cfg, [sites[k]], reps, sigma, stream=k)[0])
        m = hb.evaluate(cfg, sites, thetas, FOLDS)
    per_site_acc = m["acc"].mean(1)
    with warnings.catch_warnings():  # a validation fold with one class has no AUC
        warnings.simplefilter("ignore", RuntimeWarning)
        per_site_auc = np.nanmean(m["auc"], 1)
    return {
        "kind": kind, "epsilon": hb.fmt_eps(eps), "config": cfg.to_dict(), "key": cfg.key(),
        "sigma": sigma, "steps": cfg.steps, "n_seeds": len(seeds), "folds": len(FOLDS),
        "val_acc": float(per_site_acc.mean()), "val_auc": float(per_site_auc.mean()),
        "val_logloss": float(m["logloss"].mean()),
        "val_acc_per_site": dict(zip(hb.SITES, per_site_acc.tolist(), strict=True)),
        "val_auc_per_site": dict(zip(hb.SITES, per_site_auc.tolist(), strict=True)),
        "val_acc_sd_over_seeds": float(m["acc"].mean(0).reshape(len(FOLDS), len(seeds))
                                       .mean(0).std()),
        "seconds": round(time.perf_counter() - t0, 3),
    }


SigmaKey = tuple[float, float, int, float]


def _sigma_job(key: SigmaKey) -> tuple[SigmaKey, float]:
    eps, q, steps, delta = key
    return key, hb.noise_multiplier(eps, q, steps, delta)


class SigmaTable:
    """σ per (ε, q, steps, δ), computed with Opacus' get_noise_multiplier, cached on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.table: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    @staticmethod
    def _k(eps: float, q: float, steps: int, delta: float) -> str:
        return f"{hb.fmt_eps(eps)}|{q:g}|{steps}|{delta:g}"

    def ensure(self, keys: set[SigmaKey], pool: Any) -> None:
        """Compute the missing entries (in parallel) and save."""
        todo = sorted(k for k in keys if self._k(*k) not in self.table and not math.isinf(k[0]))
        if todo:
            print(f"[search] computing σ for {len(todo)} (ε, q, steps, δ)", file=sys.stderr)
            for key, sigma in pool.imap_unordered(_sigma_job, todo):
                self.table[self._k(*key)] = sigma
            self.path.write_text(json.dumps(self.table, indent=0, sort_keys=True))

    def __call__(self, eps: float, q: float, steps: int, delta: float = hb.DELTA) -> float:
        if math.isinf(eps):
            return 0.0
        return self.table[self._k(eps, q, steps, delta)]


def all_sigma_keys(eps: float, delta: float = hb.DELTA) -> set[SigmaKey]:
    """Every (ε, q, steps, δ) the search space can need."""
    steps = {r * s for r in SPACE["rounds"] for s in SPACE["local_steps"] if r * s <= MAX_STEPS}
    steps |= set(LOCAL_STEPS_T)
    return {(eps, q, t, delta) for q in SPACE["q"] for t in steps}


def search_one(kind: str, eps: float, args: argparse.Namespace, pool: Any, sig: SigmaTable,
               log: Any, *, delta: float = hb.DELTA, space: dict[str, list[Any]] = SPACE,
               tag: str = "product") -> dict[str, Any]:
    """Stage 1 (random + refinement) and stage 2 for one kind at one ε.

    ``space`` may restrict the search (e.g. FedAvg only, or feature sets); ``tag`` labels the
    trial lines (which study they belong to)."""
    local = kind == "local"
    rng = np.random.default_rng([hash_eps(eps), 1 if local else 0])
    seen: dict[str, hb.Config] = {}

    def add(cfg: hb.Config) -> None:
        seen.setdefault(cfg.key(), cfg)

    product = PRODUCT if PRODUCT.features in space["features"] else None
    if not local and product is not None:
        add(product)
    while len(seen) < args.random:
        add(random_config(rng, eps, local, space))

    def run(cfgs: list[hb.Config], seeds: tuple[int, ...], stage: str) -> list[dict[str, Any]]:
        jobs = [(kind, eps, c.to_dict(), seeds, sig(eps, c.q, c.steps, delta)) for c in cfgs]
        out = []
        for res in pool.imap_unordered(score, jobs, chunksize=2):
            res["stage"] = stage
            res["study"] = tag
            res["delta"] = delta
            res["product_policy"] = res["key"] == PRODUCT.key()
            log.write(json.dumps(res, default=hb.json_default) + "\n")
            out.append(res)
        log.flush()
        return out

    def ranking(results: list[dict[str, Any]], site: str | None) -> list[dict[str, Any]]:
        def val(r: dict[str, Any]) -> tuple[float, float]:
            if site is None:
                return (r["val_acc"], r["val_auc"])
            return (r["val_acc_per_site"][site], r["val_auc_per_site"][site])
        return sorted(results, key=val, reverse=True)

    t0 = time.perf_counter()
    stage1 = run(list(seen.values()), STAGE1_SEEDS, "1-random")
    targets: list[str | None] = list(hb.SITES) if local else [None]
    best_keys: list[str] = []
    for site in targets:
        best_keys += [r["key"] for r in ranking(stage1, site)[: args.refine]]
    new: dict[str, hb.Config] = {}
    for key in dict.fromkeys(best_keys):
        for nb in neighbours(seen[key], eps, local, space):
            if nb.key() not in seen and (nb.steps <= MAX_STEPS or local):
                new.setdefault(nb.key(), nb)
    seen.update(new)
    stage1 += run(list(new.values()), STAGE1_SEEDS, "1-refine")
    finalists: list[str] = []
    for site in targets:
        finalists += [r["key"] for r in ranking(stage1, site)[: args.top]]
    if not local and product is not None:
        finalists.append(product.key())
    stage2 = run([seen[k] for k in dict.fromkeys(finalists)], STAGE2_SEEDS, "2-finalist")
    by_key1 = {r["key"]: r for r in stage1}
    selected: dict[str, Any] = {}
    for site in targets:
        pool2 = [r for r in stage2 if site is None or r["key"] in
                 {x["key"] for x in ranking(stage1, site)[: args.top]}]
        best = ranking(pool2, site)[0]
        entry = {"config": best["config"], "key": best["key"], "sigma": best["sigma"],
                 "steps": best["steps"],
                 "delta": delta,
                 "epsilon_check": hb.epsilon_spent(best["sigma"], best["config"]["q"],
                                                   best["steps"], delta),
                 "val_acc_stage2": best["val_acc"] if site is None
                 else best["val_acc_per_site"][site],
                 "val_auc_stage2": best["val_auc"] if site is None
                 else best["val_auc_per_site"][site],
                 "val_acc_stage1": by_key1[best["key"]]["val_acc"] if site is None
                 else by_key1[best["key"]]["val_acc_per_site"][site],
                 "n_tried": len(seen), "n_finalists": len(pool2)}
        if site is None:
            entry["val_acc_per_site"] = best["val_acc_per_site"]
            prod = next((r for r in stage2 if r["key"] == PRODUCT.key()), None)
            if prod is not None:
                entry["product_policy_val_acc_stage2"] = prod["val_acc"]
        selected[site or "federated"] = entry
    print(f"[search] ε={hb.fmt_eps(eps)} {kind}: {len(seen)} configs, "
          f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return selected


def hash_eps(eps: float) -> int:
    """A stable integer per ε for the search RNG."""
    return 10**6 if math.isinf(eps) else round(eps * 1000)


def search_pooled(study: hb.Study, log: Any, features_list: list[str] | None = None,
                  tag: str = "product") -> dict[str, Any]:
    """Pooled non-private logistic regression: L2 and feature handling on validation folds."""
    results = []
    for features in features_list or SPACE["features"]:
        for gain in SPACE["gain"]:
            for onehot in (False, True):
                spec = hb.FeatureSpec(features, gain, onehot)
                sites = study.arrays(spec)
                for l2 in POOLED_L2:
                    m = hb.pooled_scores(sites, l2, FOLDS)
                    acc = m["acc"].mean(1)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        val_auc = float(np.nanmean(m["auc"], 1).mean())
                    res = {"kind": "pooled", "epsilon": "inf",
                           "config": {"features": features, "gain": gain, "site_onehot": onehot,
                                      "l2": l2},
                           "val_acc": float(acc.mean()),
                           "val_auc": val_auc,
                           "val_acc_per_site": dict(zip(hb.SITES, acc.tolist(), strict=True)),
                           "stage": "grid", "study": tag}
                    log.write(json.dumps(res) + "\n")
                    results.append(res)
    best = max(results, key=lambda r: (r["val_acc"], r["val_auc"]))
    return {"config": best["config"], "val_acc": best["val_acc"], "val_auc": best["val_auc"],
            "n_tried": len(results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", type=Path, default=hb.DEFAULT_CSV)
    parser.add_argument("--epsilons", nargs="+", type=float, default=list(hb.EPSILONS))
    parser.add_argument("--random", type=int, default=600, help="stage-1 random configs")
    parser.add_argument("--refine", type=int, default=8, help="best configs to mutate")
    parser.add_argument("--top", type=int, default=16, help="finalists for stage 2")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", nargs="+", default=["federated", "local", "pooled"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sel_path = args.out / "selected.json"
    selected: dict[str, Any] = json.loads(sel_path.read_text()) if sel_path.exists() else {}
    selected.update({"delta": hb.DELTA, "split_seed": hb.SPLIT_SEED, "val_seed": hb.VAL_SEED,
                     "val_folds": hb.VAL_FOLDS, "stage1_seeds": STAGE1_SEEDS,
                     "stage2_seeds": STAGE2_SEEDS, "csv": str(args.csv)})
    selected.setdefault("epsilons", {})
    sig = SigmaTable(args.out / "sigma_table.json")
    t0 = time.perf_counter()
    study_key = ("product", str(args.csv), hb.SPLIT_SEED)
    with Pool(args.workers, initializer=_init_worker, initargs=(study_key,)) as pool, \
            (args.out / "search_trials.jsonl").open("a") as log:
        keys: set[SigmaKey] = set()
        for eps in args.epsilons:
            keys |= all_sigma_keys(eps)
        sig.ensure(keys, pool)
        if "pooled" in args.kinds:
            selected["pooled"] = search_pooled(hb.Study.product(args.csv), log)
            print(json.dumps({"selected": "pooled", **selected["pooled"]}))
        for eps in args.epsilons:
            entry = selected["epsilons"].setdefault(hb.fmt_eps(eps), {})
            for kind in ("federated", "local"):
                if kind not in args.kinds:
                    continue
                got = search_one(kind, eps, args, pool, sig, log)
                entry[kind] = got["federated"] if kind == "federated" else got
                print(json.dumps({"selected": kind, "epsilon": hb.fmt_eps(eps), **(
                    got["federated"] if kind == "federated" else {"sites": got})},
                    default=hb.json_default))
            sel_path.write_text(json.dumps(selected, indent=1, default=hb.json_default))
    selected["search_seconds_last_run"] = round(time.perf_counter() - t0, 1)
    sel_path.write_text(json.dumps(selected, indent=1, default=hb.json_default))


if __name__ == "__main__":
    main()
