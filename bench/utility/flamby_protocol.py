"""FLamby's Fed-Heart-Disease protocol on the same data: our numbers beside the published ones.

Usage: python bench/utility/flamby_protocol.py [CSV] [--seeds 0 1 2 3 4]
       [--recipe-seeds 42 43 44 45 46] [--random 400] [--workers 2] [--out bench/utility/results]

The protocol (flamby.datasets.fed_heart_disease): drop slope, ca and thal, then every row with
a missing value (740 of 920 rows remain); per hospital a stratified 66/34 train/test split with
scikit-learn's train_test_split, random_state 43; a logistic model; the metric is the mean over
the four hospitals of the test accuracy. scikit-learn is needed (for FLamby's exact split).

Two families of figures, each mean ± sd over the seeds:

A. FLamby's own recipes, reproduced: raw feature values with one-hot chest pain and resting ECG
   (13 features), sigmoid + BCE; pooled: Adam lr 1e-3, batch 4, 50 epochs; FedAvg: SGD lr 1e-3,
   batch 4, 100 local updates × 15 rounds; FedYogi: client SGD lr 1e-2 (scaler 10), server lr
   1e-2, β = (0.9, 0.999), τ = 1e-8 (FLamby's heart_disease_config.json, fed_benchmark.py and
   FedOpt code); local-only: the pooled recipe on one hospital.
B. Our pipeline on FLamby's rows and splits: the task-fixed encoding (heartbench.TASK, feature
   sets without slope/ca/thal), every hyper-parameter selected on site-local validation folds of
   FLamby's train splits (search.py's machinery), test figures from Opacus runs:
   pooled non-private, FedAvg, best federated (FedAvg/FedAdam/FedYogi), DP-FedAvg and best DP
   federated at ε = 1 with δ = 1e-3 (FLamby's δ) and δ = 1e-5 (ours), local-only.

Local-only is reported on the hospital's own test split and, as FLamby does, on all four test
splits (the range over the four hospitals' models).

Prints JSON lines, writes OUT/flamby_protocol.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
import search

# Published references (FLamby, du Terrail et al., NeurIPS 2022 Datasets & Benchmarks; the
# data README): mean test accuracy over the four hospitals. Constants, not our results.
PUBLISHED: dict[str, Any] = {
    "pooled": 0.735,
    "fedavg": 0.685,
    "best_federated (FedYogi)": 0.731,
    "dp_fedavg_eps1_delta1e-3": 0.702,
    "local_only_range": (0.567, 0.722),
}
# FLamby's recipes (flamby/datasets/fed_heart_disease/common.py, flamby/heart_disease_config.json,
# flamby/benchmarks/fed_benchmark.py: client SGD at LR × learning_rate_scaler)
FLAMBY_BATCH = 4
FLAMBY_POOLED_EPOCHS = 50
FLAMBY_POOLED_LR = 1e-3
FLAMBY_CLIENT_LR = {"fedavg": 1e-3, "fedyogi": 1e-2}
FLAMBY_NUM_UPDATES = 100
FLAMBY_ROUNDS = (486 // 4 // FLAMBY_BATCH) * FLAMBY_POOLED_EPOCHS // FLAMBY_NUM_UPDATES  # 15
FLAMBY_YOGI = {"server_lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "tau": 1e-8}

CP_CODES = {"typical angina": 1, "atypical angina": 2, "non-anginal": 3, "asymptomatic": 4}
ECG_CODES = {"normal": 0, "st-t abnormality": 1, "lv hypertrophy": 2}


# ---------------------------------------------------------------------------------------------
# A. FLamby's recipes on FLamby's raw features.
# ---------------------------------------------------------------------------------------------
def flamby_raw_features(df: Any) -> np.ndarray:
    """FLamby's 13 columns: raw age, sex, trestbps, chol, fbs, thalach, exang, oldpeak, then
    pd.get_dummies(drop_first=True) of chest pain (codes 2, 3, 4) and resting ECG (1, 2)."""
    def flag(col: str, positive: str) -> np.ndarray:
        return (df[col].astype("string").str.lower() == positive.lower()).to_numpy(float)

    cp = df["cp"].map(CP_CODES).to_numpy()
    ecg = df["restecg"].map(ECG_CODES).to_numpy()
    cols = [df["age"].to_numpy(float), flag("sex", "Male"), df["trestbps"].to_numpy(float),
            df["chol"].to_numpy(float), flag("fbs", "True"), df["thalch"].to_numpy(float),
            flag("exang", "True"), df["oldpeak"].to_numpy(float),
            *[(cp == c).astype(float) for c in (2, 3, 4)],
            *[(ecg == c).astype(float) for c in (1, 2)]]
    return np.column_stack(cols)


def _torch_data(st: hb.Study) -> list[tuple[Any, Any, Any, Any]]:
    import torch

    out: list[tuple[Any, Any, Any, Any]] = []
    for s in hb.SITES:
        x = flamby_raw_features(st.frames[s])
        y = hb.labels_of(st.frames[s])
        m = st.test_masks[s]
        xtr, ytr, xte, yte = (torch.tensor(a, dtype=torch.float32)
                              for a in (x[~m], y[~m], x[m], y[m]))
        out.append((xtr, ytr, xte, yte))
    return out


def _batches(x: Any, y: Any, gen: Any) -> Any:
    """Endless shuffled mini-batches of FLAMBY_BATCH (a DataLoader that remembers its place)."""
    import torch

    while True:
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), FLAMBY_BATCH):
            idx = perm[i: i + FLAMBY_BATCH]
            yield x[idx], y[idx]


def _accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    with torch.no_grad():
        return float(((model(x).squeeze(-1) > 0.5).float() == y).float().mean())


def _auc(model: Any, x: Any, y: Any) -> float:
    import torch

    with torch.no_grad():
        return hb.auc(y.numpy(), model(x).squeeze(-1).numpy())


def _model(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(13, 1), torch.nn.Sigmoid())


def _train_centralised(model: Any, x: Any, y: Any, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=FLAMBY_POOLED_LR)
    loss_fn = torch.nn.BCELoss()
    it = _batches(x, y, gen)
    for _ in range(FLAMBY_POOLED_EPOCHS * math.ceil(len(y) / FLAMBY_BATCH)):
        xb, yb = next(it)
        opt.zero_grad()
        loss_fn(model(xb).squeeze(-1), yb).backward()
        opt.step()


def flamby_recipes(st: hb.Study, seed: int) -> dict[str, Any]:
    """Pooled, FedAvg, FedYogi and local-only with FLamby's published recipes."""
    import torch

    torch.set_num_threads(1)
    data = _torch_data(st)
    res: dict[str, Any] = {}

    def scores(model: Any) -> tuple[list[float], list[float]]:
        return ([_accuracy(model, d[2], d[3]) for d in data],
                [_auc(model, d[2], d[3]) for d in data])

    pooled = _model(seed)
    _train_centralised(pooled, torch.cat([d[0] for d in data]), torch.cat([d[1] for d in data]),
                       seed)
    res["pooled"] = scores(pooled)
    for strategy in ("fedavg", "fedyogi"):
        glob = _model(seed)
        sizes = np.array([len(d[1]) for d in data], dtype=float)
        weights = sizes / sizes.sum()
        its = [_batches(d[0], d[1], torch.Generator().manual_seed(seed * 10 + k))
               for k, d in enumerate(data)]
        m = [torch.zeros_like(p) for p in glob.parameters()]
        v = [torch.zeros_like(p) for p in glob.parameters()]
        for _ in range(FLAMBY_ROUNDS):
            start = [p.detach().clone() for p in glob.parameters()]
            delta = [torch.zeros_like(p) for p in start]
            for k, it in enumerate(its):
                local = _model(seed)
                with torch.no_grad():
                    for p, s0 in zip(local.parameters(), start, strict=True):
                        p.copy_(s0)
                opt = torch.optim.SGD(local.parameters(), lr=FLAMBY_CLIENT_LR[strategy])
                for _ in range(FLAMBY_NUM_UPDATES):
                    xb, yb = next(it)
                    opt.zero_grad()
                    torch.nn.BCELoss()(local(xb).squeeze(-1), yb).backward()
                    opt.step()
                for i, (p, s0) in enumerate(zip(local.parameters(), start, strict=True)):
                    delta[i] += weights[k] * (p.detach() - s0)
            with torch.no_grad():
                for i, p in enumerate(glob.parameters()):
                    if strategy == "fedavg":
                        p.add_(delta[i])
                        continue
                    y = FLAMBY_YOGI
                    m[i] = y["beta1"] * m[i] + (1 - y["beta1"]) * delta[i]
                    d2 = delta[i] * delta[i]
                    v[i] = v[i] - (1 - y["beta2"]) * d2 * torch.sign(v[i] - d2)
                    p.add_(y["server_lr"] * m[i] / (torch.sqrt(v[i]) + y["tau"]))
        res[strategy] = scores(glob)
    own, everywhere = [], []
    for k, d in enumerate(data):
        local = _model(seed)
        _train_centralised(local, d[0], d[1], seed)
        acc, _ = scores(local)
        own.append(acc[k])
        everywhere.append(float(np.mean(acc)))
    res["local_own_test"] = own
    res["local_all_tests"] = everywhere
    return res


# ---------------------------------------------------------------------------------------------
# B. Our pipeline on FLamby's rows and splits.
# ---------------------------------------------------------------------------------------------
def opacus_test_job(job: dict[str, Any]) -> dict[str, Any]:
    """One Opacus run of a selected configuration on FLamby's test splits."""
    st = hb.Study.flamby(Path(job["csv"]))
    out: dict[str, Any] = {"name": job["name"], "seed": job["seed"]}
    if job["kind"] == "federated":
        cfg = hb.Config.from_dict(job["config"])
        sites = st.arrays(cfg.spec)
        reps = hb.make_replicates(sites, [job["seed"]], [None])
        theta, eps = hb.run_federated(cfg, sites, reps, job["sigma"], "opacus",
                                      delta=job["delta"])
        m = hb.evaluate(cfg, sites, theta, [None])
        out.update(acc=m["acc"][:, 0].tolist(), auc=m["auc"][:, 0].tolist(), eps=eps)
        return out
    own, own_auc, everywhere, eps_all = [], [], [], []
    for k, site in enumerate(hb.SITES):
        cfg = hb.Config.from_dict(job["local"][site]["config"])
        sites = st.arrays(cfg.spec)
        reps = hb.make_replicates([sites[k]], [job["seed"]], [None])
        theta, eps = hb.run_federated(cfg, [sites[k]], reps, job["local"][site]["sigma"],
                                      "opacus", stream=k, delta=job["delta"])
        m = hb.evaluate(cfg, sites, [theta] * len(sites), [None])
        own.append(float(m["acc"][k, 0]))
        own_auc.append(float(m["auc"][k, 0]))
        everywhere.append(float(m["acc"][:, 0].mean()))
        eps_all += eps
    out.update(acc=own, auc=own_auc, local_all_tests=everywhere, eps=eps_all)
    return out


def mean_sd(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation."""
    a = np.asarray(values, float)
    return {"mean": float(np.nanmean(a)), "sd": float(np.nanstd(a, ddof=1)) if len(a) > 1
            else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", nargs="?", type=Path, default=hb.DEFAULT_CSV)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4],
                        help="seeds of our Opacus test runs (part B)")
    parser.add_argument("--recipe-seeds", type=int, nargs="+", default=[42, 43, 44, 45, 46],
                        help="seeds of the FLamby recipes (part A; FLamby's benchmark uses 42-46)")
    parser.add_argument("--random", type=int, default=400)
    parser.add_argument("--refine", type=int, default=6)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reuse-selection", action="store_true",
                        help="reuse OUT/flamby_selected.json instead of searching again")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    csv = str(args.csv)
    st = hb.Study.flamby(args.csv)
    sizes = {s: {"train": int((~m).sum()), "test": int(m.sum())}
             for s, m in st.test_masks.items()}
    print(json.dumps({"protocol": "flamby", "rows": sum(len(f) for f in st.frames.values()),
                      "sizes": sizes}), flush=True)
    result: dict[str, Any] = {"benchmark": "flamby_protocol", "sizes": sizes,
                              "published": PUBLISHED, "seeds": args.seeds,
                              "recipe_seeds": args.recipe_seeds}

    # A. FLamby's recipes.
    runs_a = [flamby_recipes(st, s) for s in args.recipe_seeds]
    recipe: dict[str, Any] = {}
    for name in ("pooled", "fedavg", "fedyogi"):
        recipe[name] = {"acc": mean_sd([float(np.mean(r[name][0])) for r in runs_a]),
                        "auc": mean_sd([float(np.nanmean(r[name][1])) for r in runs_a])}
    recipe["local_own_test"] = {"acc": mean_sd([float(np.mean(r["local_own_test"]))
                                                for r in runs_a])}
    per_model = np.mean([r["local_all_tests"] for r in runs_a], 0)
    recipe["local_all_tests"] = {"per_hospital_model": dict(zip(hb.SITES, per_model.tolist(),
                                                                strict=True)),
                                 "range": [float(per_model.min()), float(per_model.max())]}
    result["flamby_recipes"] = recipe
    for k, v in recipe.items():
        print(json.dumps({"part": "A flamby recipe", "method": k, **v}), flush=True)

    # B. Our pipeline: selection on site-local validation folds of FLamby's train splits.
    features = ["dense", "core"]
    space = {**search.SPACE, "features": features}
    fedavg_space = {**space, "server": ["fedavg"]}
    sig = search.SigmaTable(args.out / "sigma_table.json")
    searches = [("fedavg", math.inf, hb.DELTA, fedavg_space, "federated"),
                ("best_federated", math.inf, hb.DELTA, space, "federated"),
                ("dp_fedavg_eps1_delta1e-3", 1.0, 1e-3, fedavg_space, "federated"),
                ("best_dp_federated_eps1_delta1e-3", 1.0, 1e-3, space, "federated"),
                ("dp_fedavg_eps1_delta1e-5", 1.0, 1e-5, fedavg_space, "federated"),
                ("best_dp_federated_eps1_delta1e-5", 1.0, 1e-5, space, "federated"),
                ("local_only", math.inf, hb.DELTA, space, "local")]
    selected: dict[str, Any] = {}
    study_key = ("flamby", csv)
    with Pool(args.workers, initializer=search._init_worker, initargs=(study_key,)) as pool, \
            (args.out / "flamby_search_trials.jsonl").open(
                "a" if args.reuse_selection else "w") as log:
        keys: set[search.SigmaKey] = set()
        for _, eps, delta, _, _ in searches:
            if math.isfinite(eps):
                keys |= search.all_sigma_keys(eps, delta)
        sig.ensure(keys, pool)
        sel_path = args.out / "flamby_selected.json"
        if args.reuse_selection and sel_path.exists():
            selected = json.loads(sel_path.read_text())
        else:
            selected["pooled"] = search.search_pooled(st, log, features, tag="flamby")
            for name, eps, delta, sp, kind in searches:
                got = search.search_one(kind, eps, args, pool, sig, log, delta=delta, space=sp,
                                        tag="flamby")
                selected[name] = got["federated"] if kind == "federated" else got
            sel_path.write_text(json.dumps(selected, indent=1, default=hb.json_default))
        # Test runs (Opacus) of the selected configurations.
        jobs: list[dict[str, Any]] = []
        for name, eps, delta, _, kind in searches:
            for seed in args.seeds:
                if kind == "federated":
                    c = hb.Config.from_dict(selected[name]["config"])
                    jobs.append({"csv": csv, "name": name, "seed": seed, "kind": kind,
                                 "delta": delta, "config": c.to_dict(),
                                 "sigma": hb.noise_multiplier(eps, c.q, c.steps, delta)})
                else:
                    local = {}
                    for site in hb.SITES:
                        c = hb.Config.from_dict(selected[name][site]["config"])
                        local[site] = {"config": c.to_dict(),
                                       "sigma": hb.noise_multiplier(eps, c.q, c.steps, delta)}
                    jobs.append({"csv": csv, "name": name, "seed": seed, "kind": kind,
                                 "delta": delta, "local": local})
        test_runs = list(pool.imap_unordered(opacus_test_job, jobs))
    ours: dict[str, Any] = {}
    pc = selected["pooled"]["config"]
    pm = hb.pooled_scores(st.arrays(hb.FeatureSpec(pc["features"], pc["gain"],
                                                   pc["site_onehot"])), pc["l2"], [None])
    ours["pooled"] = {"acc": {"mean": float(pm["acc"].mean()), "sd": 0.0},
                      "auc": {"mean": float(np.nanmean(pm["auc"])), "sd": 0.0},
                      "config": pc, "note": "deterministic fit (L-BFGS): no seed variance"}
    for name, eps, delta, _, kind in searches:
        rs = [r for r in test_runs if r["name"] == name]
        entry: dict[str, Any] = {
            "epsilon": hb.fmt_eps(eps), "delta": delta,
            "acc": mean_sd([float(np.mean(r["acc"])) for r in rs]),
            "auc": mean_sd([float(np.nanmean(r["auc"])) for r in rs]),
            "acc_per_site": dict(zip(hb.SITES, np.mean([r["acc"] for r in rs], 0).tolist(),
                                     strict=True)),
            "selected": (selected[name]["config"] if kind == "federated" else
                         {s: selected[name][s]["config"] for s in hb.SITES}),
        }
        eps_spent = [e for r in rs for e in r["eps"]]
        if math.isfinite(eps):
            entry["epsilon_spent_max"] = max(eps_spent)
            if max(eps_spent) > eps:
                raise AssertionError(f"{name}: ε spent {max(eps_spent)} > {eps}")
        if kind == "local":
            per_model = np.mean([r["local_all_tests"] for r in rs], 0)
            entry["local_all_tests"] = {
                "per_hospital_model": dict(zip(hb.SITES, per_model.tolist(), strict=True)),
                "range": [float(per_model.min()), float(per_model.max())]}
        ours[name] = entry
    result["ours"] = ours
    for k, v in ours.items():
        print(json.dumps({"part": "B ours", "method": k, **v}, default=hb.json_default),
              flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    (args.out / "flamby_protocol.json").write_text(json.dumps(result, indent=1,
                                                              default=hb.json_default))
    print(json.dumps({"wrote": str(args.out / "flamby_protocol.json"),
                      "seconds": result["seconds"]}))


if __name__ == "__main__":
    main()
