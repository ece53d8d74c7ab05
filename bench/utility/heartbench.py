"""Utility benchmark for the heart-disease task: accuracy per privacy budget.

Everything the study needs, in one module:

* :data:`TASK` — the task file's declared, data-independent preprocessing: clinical ranges,
  imputation values, category levels, missing-value indicators and feature sets. Nothing that
  shapes training is computed from the data (no medians, means or standard deviations).
* Site splits — the product's fixed stratified 75/25 train/test split (seed 20240601) per
  hospital, and site-local stratified validation folds carved out of each train split.
* DP-SGD — two exactly equivalent implementations of Poisson-sampled, per-sample-clipped,
  Gaussian-noised SGD (Opacus' ``DPOptimizer`` arithmetic: the noisy clipped sum divided by the
  expected batch size ``int(n * q)``):

  - :class:`NumpyBackend`, vectorised over replicates (folds × seeds) for the search;
  - :class:`OpacusBackend`, Opacus ``PrivacyEngine.make_private`` with a ``DPDataLoader``,
    used for every reported figure.

* The federated loop with a server optimizer over the weighted mean of the sites' updates
  (FedAvg, and Flower's FedAdam / FedYogi formulas), local-only training, the pooled non-private
  ceiling and the majority floor, and the metrics (accuracy, AUC).

ε is each site's total over all noisy steps of the run, at δ, from Opacus' RDP accountant.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The shipped example: one file per hospital (with PROVENANCE.md's one fix: row 304 belongs to
#: Hungary). A CSV of all four (the raw Kaggle export) is read too; the README's figures were
#: computed from that raw export, where row 304 is labelled Cleveland.
DEFAULT_CSV = (Path(__file__).resolve().parents[2] / "site_node" / "data" / "examples"
               / "heart-disease")
DELTA = 1e-5
SPLIT_SEED = 20240601  # the product's fixed train/test split
TEST_FRACTION = 0.25
VAL_SEED = 7  # site-local validation folds (inside each train split)
VAL_FOLDS = 4
EPSILONS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
FLAMBY_DROPPED = ("slope", "ca", "thal")
FLAMBY_TRAIN_FRACTION = 0.66
FLAMBY_SEED = 43

# --------------------------------------------------------------------------------------------
# The task file: declared by the consortium from clinical knowledge, never fitted to data.
# --------------------------------------------------------------------------------------------
TASK: dict[str, Any] = {
    "label": {"column": "num", "positive": "num > 0"},
    "sites": {
        "cleveland": "Cleveland",
        "hungary": "Hungary",
        "long_beach": "VA Long Beach",
        "switzerland": "Switzerland",
    },
    # Clinical plausibility range (values are clipped into it), the value imputed when missing
    # (a typical value for an adult referred for cardiac work-up) and whether 0 means missing.
    # A feature is gain * (clip(x, lo, hi) - impute) / (hi - lo): the imputed value maps to 0.
    "numeric": {
        "age": {"range": (0.0, 100.0), "impute": 55.0, "unit": "years"},
        "trestbps": {"range": (80.0, 220.0), "impute": 130.0, "unit": "mmHg", "zero_missing": True},
        "chol": {"range": (100.0, 600.0), "impute": 240.0, "unit": "mg/dl", "zero_missing": True},
        "thalch": {"range": (60.0, 220.0), "impute": 140.0, "unit": "bpm"},
        "oldpeak": {"range": (-3.0, 7.0), "impute": 0.5, "unit": "mm ST depression"},
        "ca": {"range": (0.0, 3.0), "impute": 0.0, "unit": "vessels"},
    },
    # 0/1 features: the CSV value that means 1, and the value imputed when missing (normal).
    "binary": {
        "sex": {"positive": "Male", "impute": 1.0},
        "fbs": {"positive": "True", "impute": 0.0},
        "exang": {"positive": "True", "impute": 0.0},
    },
    # One-hot over fixed levels; a missing value is all zeros.
    "categorical": {
        "cp": ("typical angina", "atypical angina", "non-anginal", "asymptomatic"),
        "restecg": ("normal", "st-t abnormality", "lv hypertrophy"),
        "slope": ("upsloping", "flat", "downsloping"),
        "thal": ("normal", "fixed defect", "reversable defect"),
    },
    # Columns that get a 0/1 missing-value indicator (missingness differs between hospitals).
    "indicated": ("trestbps", "chol", "fbs", "thalch", "exang", "oldpeak", "ca"),
    # Feature sets a configuration may choose (names of source columns).
    "feature_sets": {
        # The product's 29 features.
        "full": ("age", "trestbps", "chol", "thalch", "oldpeak", "ca", "sex", "fbs", "exang",
                 "cp", "restecg", "slope", "thal"),
        # Without the columns that are mostly missing outside Cleveland (slope, ca, thal).
        "dense": ("age", "trestbps", "chol", "thalch", "oldpeak", "sex", "fbs", "exang",
                  "cp", "restecg"),
        # Demographics and the exercise-test / chest-pain findings only.
        "core": ("age", "thalch", "oldpeak", "sex", "exang", "cp"),
    },
}
SITES: tuple[str, ...] = tuple(TASK["sites"])


def feature_names(feature_set: str, site_onehot: bool = False) -> list[str]:
    """Column names of the encoded feature matrix for ``feature_set``."""
    cols = TASK["feature_sets"][feature_set]
    names: list[str] = [c for c in TASK["numeric"] if c in cols]
    names += [c for c in TASK["binary"] if c in cols]
    for c, levels in TASK["categorical"].items():
        if c in cols:
            names += [f"{c}={lvl}" for lvl in levels]
    names += [f"{c}_missing" for c in TASK["indicated"] if c in cols]
    if site_onehot:
        names += [f"site={s}" for s in SITES]
    return names


def _missing_mask(df: pd.DataFrame, col: str) -> np.ndarray:
    miss = df[col].isna().to_numpy().copy()
    spec = TASK["numeric"].get(col, {})
    if spec.get("zero_missing"):
        miss |= (pd.to_numeric(df[col], errors="coerce") == 0).to_numpy()
    return miss


def encode(df: pd.DataFrame, site: str, feature_set: str, gain: float = 1.0,
           site_onehot: bool = False) -> np.ndarray:
    """Task-fixed encoding of one site's rows (no statistic of the data is used)."""
    cols = TASK["feature_sets"][feature_set]
    blocks: list[np.ndarray] = []
    for c, spec in TASK["numeric"].items():
        if c not in cols:
            continue
        lo, hi = spec["range"]
        x = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
        x = np.where(_missing_mask(df, c), spec["impute"], np.clip(x, lo, hi))
        blocks.append(gain * (x - spec["impute"]) / (hi - lo))
    for c, spec in TASK["binary"].items():
        if c not in cols:
            continue
        raw = df[c].astype("string").str.strip().str.lower()
        x = (raw == spec["positive"].lower()).to_numpy(dtype=float)
        blocks.append(np.where(df[c].isna().to_numpy(), spec["impute"], x))
    for c, levels in TASK["categorical"].items():
        if c not in cols:
            continue
        vals = df[c].to_numpy()
        blocks += [(vals == lvl).astype(float) for lvl in levels]
    blocks += [_missing_mask(df, c).astype(float) for c in TASK["indicated"] if c in cols]
    if site_onehot:
        blocks += [np.full(len(df), float(s == site)) for s in SITES]
    return np.column_stack(blocks).astype(np.float64)


def labels_of(df: pd.DataFrame) -> np.ndarray:
    """Binary label: disease present (num > 0)."""
    return (pd.to_numeric(df["num"]) > 0).to_numpy(dtype=float)


def read_sites(path: Path) -> dict[str, pd.DataFrame]:
    """Each hospital's rows (in file order), from one CSV or a folder of ``<site>.csv`` files."""
    if path.is_dir():
        df = pd.concat([pd.read_csv(path / f"{site}.csv") for site in TASK["sites"]],
                       ignore_index=True)
    else:
        df = pd.read_csv(path)
    return {s: df[df["dataset"] == name].reset_index(drop=True)
            for s, name in TASK["sites"].items()}


def stratified_test_mask(labels: np.ndarray, *, test_fraction: float, seed: int) -> np.ndarray:
    """The product's split (site_node.data.stratified_split): same fraction of each class."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        is_test[idx[: round(len(idx) * test_fraction)]] = True
    return is_test


def stratified_folds(labels: np.ndarray, *, k: int, seed: int) -> np.ndarray:
    """Fold id 0..k-1 per row, each class dealt round-robin after a seeded shuffle."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), dtype=int)
    offset = 0
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return fold


# --------------------------------------------------------------------------------------------
# Study data: per site the train/test split and the site-local validation folds.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureSpec:
    """Feature handling: which feature set, the numeric gain, and a site one-hot."""

    features: str = "full"
    gain: float = 1.0
    site_onehot: bool = False


@dataclass(frozen=True)
class SiteArrays:
    """One site's encoded train and test arrays and its validation fold ids."""

    site: str
    x_train: np.ndarray
    y_train: np.ndarray
    folds: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class Study:
    """The four hospitals' rows with a fixed test split and site-local validation folds."""

    def __init__(self, frames: dict[str, pd.DataFrame], test_masks: dict[str, np.ndarray],
                 *, val_seed: int = VAL_SEED, val_folds: int = VAL_FOLDS) -> None:
        self.frames = frames
        self.test_masks = test_masks
        self.val_folds = val_folds
        self.folds: dict[str, np.ndarray] = {}
        for s in SITES:
            y_tr = labels_of(frames[s])[~test_masks[s]]
            self.folds[s] = stratified_folds(y_tr, k=val_folds, seed=val_seed)
        self._cache: dict[FeatureSpec, list[SiteArrays]] = {}

    @classmethod
    def product(cls, path: Path = DEFAULT_CSV, split_seed: int = SPLIT_SEED) -> Study:
        """The product's setting: stratified 75/25 split per hospital."""
        frames = read_sites(path)
        masks = {s: stratified_test_mask(labels_of(f), test_fraction=TEST_FRACTION,
                                         seed=split_seed) for s, f in frames.items()}
        return cls(frames, masks)

    @classmethod
    def flamby(cls, path: Path = DEFAULT_CSV) -> Study:
        """FLamby's Fed-Heart-Disease protocol on the same rows.

        Drop slope, ca and thal and then every row with a missing value (740 rows remain);
        per hospital a 66/34 split by scikit-learn's ``train_test_split`` with
        ``random_state=43``, stratified on the label when both classes have more than 2 rows,
        exactly as ``flamby.datasets.fed_heart_disease.HeartDiseaseRaw`` does (the CSV keeps
        the row order of UCI's processed.*.data files that FLamby reads). A cholesterol of 0 is
        a value to FLamby (kept, as it is not empty); the task encoding still reads it as
        missing.
        """
        from sklearn.model_selection import train_test_split

        frames, masks = {}, {}
        for s, f in read_sites(path).items():
            kept = [c for c in f.columns if c not in FLAMBY_DROPPED]
            f = f.dropna(subset=kept).reset_index(drop=True)
            y = labels_of(f).astype(int)
            classes = np.unique(y)
            stratify = y if len(classes) > 1 and all((y == c).sum() > 2 for c in classes) else None
            _, test_idx = train_test_split(np.arange(len(f)), test_size=1.0 - FLAMBY_TRAIN_FRACTION,
                                           train_size=FLAMBY_TRAIN_FRACTION,
                                           random_state=FLAMBY_SEED, shuffle=True,
                                           stratify=stratify)
            mask = np.zeros(len(f), dtype=bool)
            mask[test_idx] = True
            frames[s], masks[s] = f, mask
        return cls(frames, masks)

    def arrays(self, spec: FeatureSpec) -> list[SiteArrays]:
        """Encoded arrays per site (cached per feature handling)."""
        if spec not in self._cache:
            out = []
            for s in SITES:
                f, m = self.frames[s], self.test_masks[s]
                x = encode(f, s, spec.features, spec.gain, spec.site_onehot)
                y = labels_of(f)
                out.append(SiteArrays(s, x[~m], y[~m], self.folds[s], x[m], y[m]))
            self._cache[spec] = out
        return self._cache[spec]


# --------------------------------------------------------------------------------------------
# Configuration and accounting.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Everything a product may tune. Local-only runs use rounds=1 and local_steps=T."""

    model: str = "logreg"  # "logreg" or "mlp<h>" (one tanh hidden layer of h units)
    features: str = "full"
    gain: float = 1.0
    site_onehot: bool = False
    q: float = 0.2  # Poisson sample rate (1/q must be an integer: Opacus' DPDataLoader)
    rounds: int = 10
    local_steps: int = 10
    clip: float = 1.0  # per-sample clipping norm C (math.inf: none)
    lr: float = 0.5  # local SGD learning rate
    server: str = "fedavg"  # "fedavg", "fedadam" or "fedyogi"
    server_lr: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    @property
    def steps(self) -> int:
        """Noisy steps per site over the whole run."""
        return self.rounds * self.local_steps

    @property
    def spec(self) -> FeatureSpec:
        """The feature handling of this configuration."""
        return FeatureSpec(self.features, self.gain, self.site_onehot)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (inf as the string "inf")."""
        d = asdict(self)
        return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        """Inverse of :meth:`to_dict`."""
        fields = cls.__dataclass_fields__
        kw: dict[str, Any] = {k: (math.inf if v == "inf" else v) for k, v in d.items()
                              if k in fields}
        return cls(**kw)

    def key(self) -> str:
        """Short stable id."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def loader_sample_rate(q: float) -> float:
    """The sample rate Opacus uses for a DPDataLoader of rate q: 1 / (number of batches)."""
    n_batches = int(1 / q)
    if abs(1.0 / n_batches - q) > 1e-12:
        raise ValueError(f"sample rate {q}: 1/q must be an integer for Opacus' DPDataLoader")
    return 1.0 / n_batches


def expected_batch_size(n: int, q: float) -> int:
    """Opacus' averaging denominator: int(len(dataset) * sample_rate)."""
    return max(1, int(n * loader_sample_rate(q)))


@cache
def noise_multiplier(epsilon: float, q: float, steps: int, delta: float = DELTA) -> float:
    """σ such that ``steps`` Poisson-subsampled Gaussian steps stay below ``epsilon`` (RDP).

    0.0 for ε = ∞ (non-private). Opacus' binary search returns the upper end of its bracket,
    whose ε is below the target; :func:`epsilon_spent` re-checks it.
    """
    if math.isinf(epsilon):
        return 0.0
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sigma = float(get_noise_multiplier(
            target_epsilon=epsilon, target_delta=delta, sample_rate=loader_sample_rate(q),
            steps=steps, accountant="rdp", epsilon_tolerance=0.005))
    spent = epsilon_spent(sigma, q, steps, delta)
    if spent > epsilon:
        raise AssertionError(f"σ={sigma} gives ε={spent} > target {epsilon}")
    return sigma


def epsilon_spent(sigma: float, q: float, steps: int, delta: float = DELTA) -> float:
    """ε of ``steps`` Poisson-subsampled Gaussian steps, Opacus RDP accountant."""
    if sigma == 0.0:
        return math.inf
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(sigma, loader_sample_rate(q), steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta=delta))


# --------------------------------------------------------------------------------------------
# Models as flat parameter vectors (leading replicate axis R).
# --------------------------------------------------------------------------------------------
def hidden_units(model: str) -> int:
    """0 for logistic regression, h for "mlp<h>"."""
    if model == "logreg":
        return 0
    if model.startswith("mlp"):
        return int(model[3:])
    raise ValueError(f"unknown model {model!r}")


def num_params(model: str, d: int) -> int:
    """Length of the flat parameter vector."""
    h = hidden_units(model)
    return d + 1 if h == 0 else h * d + 2 * h + 1


def init_params(model: str, d: int, seeds: Sequence[int]) -> np.ndarray:
    """Initial parameters per replicate: zeros (logreg) or PyTorch's default uniform (MLP)."""
    h = hidden_units(model)
    out = np.zeros((len(seeds), num_params(model, d)))
    if h == 0:
        return out
    for r, seed in enumerate(seeds):
        rng = np.random.default_rng([seed, 1])
        b1, b2 = 1 / math.sqrt(d), 1 / math.sqrt(h)
        out[r, : h * d] = rng.uniform(-b1, b1, h * d)
        out[r, h * d: h * d + h] = rng.uniform(-b1, b1, h)
        out[r, h * d + h: h * d + 2 * h] = rng.uniform(-b2, b2, h)
        out[r, -1] = rng.uniform(-b2, b2)
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logits(model: str, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Logits (R, n) of every replicate on rows ``x`` (n, d)."""
    h = hidden_units(model)
    d = x.shape[1]
    if h == 0:
        return theta[:, :d] @ x.T + theta[:, d:]
    w1 = theta[:, : h * d].reshape(-1, h, d)
    b1 = theta[:, h * d: h * d + h]
    w2 = theta[:, h * d + h: h * d + 2 * h]
    a = np.tanh(np.einsum("nd,rhd->rnh", x, w1) + b1[:, None, :])
    return np.einsum("rnh,rh->rn", a, w2) + theta[:, -1:]


def clipped_grad_sum(model: str, theta: np.ndarray, x: np.ndarray, y: np.ndarray,
                     mask: np.ndarray, clip: float) -> np.ndarray:
    """Σ over the sampled rows of per-sample BCE gradients clipped to norm ``clip``.

    Clip factor as Opacus: min(1, C / (‖g‖ + 1e-6)). ``mask`` (R, n) selects the rows.
    """
    h = hidden_units(model)
    d = x.shape[1]
    xn2 = (x * x).sum(1) + 1.0  # ‖[x, 1]‖²
    if h == 0:
        r = _sigmoid(theta[:, :d] @ x.T + theta[:, d:]) - y
        norm = np.abs(r) * np.sqrt(xn2)
        c = mask * r * (np.minimum(1.0, clip / (norm + 1e-6)) if math.isfinite(clip) else 1.0)
        return np.concatenate([c @ x, c.sum(1, keepdims=True)], axis=1)
    w1 = theta[:, : h * d].reshape(-1, h, d)
    b1 = theta[:, h * d: h * d + h]
    w2 = theta[:, h * d + h: h * d + 2 * h]
    a = np.tanh(np.einsum("nd,rhd->rnh", x, w1) + b1[:, None, :])
    r = _sigmoid(np.einsum("rnh,rh->rn", a, w2) + theta[:, -1:]) - y
    da = r[:, :, None] * w2[:, None, :] * (1.0 - a * a)  # dL/d(pre-activation)
    norm = np.sqrt(r * r * ((a * a).sum(-1) + 1.0) + (da * da).sum(-1) * xn2)
    c = mask * (np.minimum(1.0, clip / (norm + 1e-6)) if math.isfinite(clip) else 1.0)
    dac = da * c[:, :, None]
    g_w1 = np.einsum("rnh,nd->rhd", dac, x).reshape(len(theta), -1)
    g_b1 = dac.sum(1)
    g_w2 = np.einsum("rn,rnh->rh", c * r, a)
    g_b2 = (c * r).sum(1, keepdims=True)
    return np.concatenate([g_w1, g_b1, g_w2, g_b2], axis=1)


# --------------------------------------------------------------------------------------------
# Server optimizers over the aggregate (the weighted mean of the sites' models).
# --------------------------------------------------------------------------------------------
@dataclass
class ServerOpt:
    """FedAvg / FedAdam / FedYogi exactly as Flower 1.42's strategies update the global model.

    Works only on ``delta`` = (weighted mean of the sites' returned models) − global model, the
    one quantity secure aggregation reveals. Post-processing of DP outputs: costs no ε.
    """

    kind: str
    lr: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)

    def step(self, theta: np.ndarray, delta: np.ndarray, server_round: int) -> np.ndarray:
        """The new global model after round ``server_round`` (1-based)."""
        if self.kind == "fedavg":
            return theta + self.lr * delta
        if self.m is None or self.v is None:
            self.m, self.v = np.zeros_like(delta), np.zeros_like(delta)
        self.m = self.beta1 * self.m + (1 - self.beta1) * delta
        d2 = delta * delta
        if self.kind == "fedadam":
            self.v = self.beta2 * self.v + (1 - self.beta2) * d2
            eta = (self.lr * math.sqrt(1 - self.beta2 ** (server_round + 1.0))
                   / (1 - self.beta1 ** (server_round + 1.0)))
        elif self.kind == "fedyogi":
            self.v = self.v - (1.0 - self.beta2) * d2 * np.sign(self.v - d2)
            eta = self.lr
        else:
            raise ValueError(f"unknown server optimizer {self.kind!r}")
        return theta + eta * self.m / (np.sqrt(self.v) + self.tau)


def server_opt(cfg: Config) -> ServerOpt:
    """The configuration's server optimizer, fresh state."""
    return ServerOpt(cfg.server, cfg.server_lr, cfg.beta1, cfg.beta2, cfg.tau)


# --------------------------------------------------------------------------------------------
# Backends: local DP-SGD of one site for a number of steps.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Replicates:
    """R independent runs of one configuration: per run a seed and a training subset.

    ``members[k]`` (R, n_k) marks the rows of site k's train split each run trains on
    (validation runs leave out one fold; test runs use the whole train split).
    """

    seeds: tuple[int, ...]
    members: tuple[np.ndarray, ...]


class NumpyBackend:
    """Vectorised DP-SGD (Poisson sampling, per-sample clipping, Gaussian noise) in NumPy."""

    name = "numpy"

    def __init__(self, cfg: Config, sites: list[SiteArrays], reps: Replicates, sigma: float,
                 stream: int = 0) -> None:
        self.cfg, self.sites, self.reps, self.sigma = cfg, sites, reps, sigma
        seed_key = [*reps.seeds, stream, 97]
        self.rngs = [np.random.default_rng([*seed_key, k]) for k in range(len(sites))]
        self.batch = [np.array([expected_batch_size(int(m.sum()), cfg.q) for m in mem],
                               dtype=float)[:, None] for mem in reps.members]

    def local(self, k: int, theta: np.ndarray, steps: int) -> np.ndarray:
        """``steps`` DP-SGD steps of site k from ``theta`` (R, P)."""
        cfg, site, rng = self.cfg, self.sites[k], self.rngs[k]
        member = self.reps.members[k]
        theta = theta.copy()
        noise_std = self.sigma * cfg.clip if self.sigma > 0 else 0.0
        for _ in range(steps):
            mask = (rng.random(member.shape) < cfg.q) & member
            g = clipped_grad_sum(cfg.model, theta, site.x_train, site.y_train, mask, cfg.clip)
            if noise_std:
                g = g + noise_std * rng.standard_normal(g.shape)
            theta -= cfg.lr * g / self.batch[k]
        return theta


class OpacusBackend:
    """Opacus DP-SGD: one PrivacyEngine per site per run, as the product's site does.

    ``make_private`` with a ``DPDataLoader`` (Poisson sampling at rate q), per-sample clipping
    to C, Gaussian noise σ·C, SGD. Runs one replicate (R = 1). Each site's Opacus RDP accountant
    records every step; :meth:`epsilons` reads the ε spent.
    """

    name = "opacus"

    def __init__(self, cfg: Config, sites: list[SiteArrays], reps: Replicates, sigma: float,
                 stream: int = 0) -> None:
        import torch
        from opacus import PrivacyEngine
        from opacus.data_loader import DPDataLoader
        from torch import nn
        from torch.utils.data import TensorDataset

        if len(reps.seeds) != 1:
            raise ValueError("OpacusBackend runs one replicate at a time")
        torch.set_num_threads(1)
        warnings.filterwarnings("ignore", message=".*Secure RNG.*")
        warnings.filterwarnings("ignore", message=".*Full backward hook.*")
        self.cfg, self.sites, self.sigma = cfg, sites, sigma
        self.torch = torch
        self.engines: list[Any] = []
        self.models: list[Any] = []
        self.optims: list[Any] = []
        self.iters: list[Iterator[Any]] = []
        h = hidden_units(cfg.model)
        for k, site in enumerate(sites):
            rows = reps.members[k][0]
            d = site.x_train.shape[1]
            model: nn.Module = (nn.Sequential(nn.Linear(d, 1)) if h == 0 else
                                nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, 1)))
            gen = torch.Generator()
            gen.manual_seed(int(np.random.default_rng([reps.seeds[0], stream, 97, k])
                                .integers(2**62)))
            ds = TensorDataset(torch.tensor(site.x_train[rows], dtype=torch.float32),
                               torch.tensor(site.y_train[rows], dtype=torch.float32))
            loader = DPDataLoader(ds, sample_rate=cfg.q, generator=gen)
            opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
            engine = PrivacyEngine(accountant="rdp")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dp_model, dp_opt, dp_loader = engine.make_private(
                    module=model, optimizer=opt, data_loader=loader,
                    noise_multiplier=sigma,
                    max_grad_norm=cfg.clip if math.isfinite(cfg.clip) else 1e12,
                    poisson_sampling=False, noise_generator=gen)
            self.engines.append(engine)
            self.models.append(dp_model)
            self.optims.append(dp_opt)
            self.iters.append(self._cycle(dp_loader))

    @staticmethod
    def _cycle(loader: Any) -> Iterator[Any]:
        while True:
            yield from loader

    def _params(self, k: int) -> list[Any]:
        return [p for p in self.models[k].parameters()]

    def _set(self, k: int, flat: np.ndarray) -> None:
        torch = self.torch
        off = 0
        with torch.no_grad():
            for p in self._params(k):
                n = p.numel()
                p.copy_(torch.tensor(flat[off: off + n].reshape(p.shape), dtype=p.dtype))
                off += n

    def _get(self, k: int) -> np.ndarray:
        return np.concatenate([p.detach().numpy().astype(np.float64).ravel()
                               for p in self._params(k)])

    def local(self, k: int, theta: np.ndarray, steps: int) -> np.ndarray:
        """``steps`` Opacus DP-SGD steps of site k from ``theta`` (1, P)."""
        torch = self.torch
        model, opt, it = self.models[k], self.optims[k], self.iters[k]
        self._set(k, theta[0])
        crit = torch.nn.BCEWithLogitsLoss()
        model.train()
        for _ in range(steps):
            xb, yb = next(it)
            opt.zero_grad()
            # An empty Poisson batch still takes a (pure-noise) step.
            loss = (model(xb).sum() * 0.0 if len(xb) == 0
                    else crit(model(xb).squeeze(-1), yb))
            loss.backward()
            opt.step()
        return self._get(k)[None, :]

    def epsilons(self, delta: float = DELTA) -> list[float]:
        """Each site's ε spent so far, from its own Opacus accountant."""
        if self.sigma == 0.0:
            return [math.inf] * len(self.engines)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [float(e.accountant.get_epsilon(delta=delta)) for e in self.engines]


# --------------------------------------------------------------------------------------------
# Federated, local-only and pooled training.
# --------------------------------------------------------------------------------------------
def run_federated(cfg: Config, sites: list[SiteArrays], reps: Replicates, sigma: float,
                  backend: str = "numpy", stream: int = 0, delta: float = DELTA
                  ) -> tuple[np.ndarray, list[float]]:
    """Rounds of local DP-SGD at every site, weighted mean, server optimizer.

    Returns the final global parameters (R, P) and, for Opacus, each site's ε spent at δ.
    With one site this is local-only training (use rounds=1, fedavg, server_lr=1).
    """
    cls = OpacusBackend if backend == "opacus" else NumpyBackend
    be = cls(cfg, sites, reps, sigma, stream)
    d = sites[0].x_train.shape[1]
    theta = init_params(cfg.model, d, reps.seeds)
    weights = np.stack([m.sum(1) for m in reps.members], axis=0).astype(float)  # (K, R)
    weights /= weights.sum(0, keepdims=True)
    opt = server_opt(cfg)
    for rnd in range(1, cfg.rounds + 1):
        avg = np.zeros_like(theta)
        for k in range(len(sites)):
            avg += weights[k][:, None] * be.local(k, theta, cfg.local_steps)
        theta = opt.step(theta, avg - theta, rnd)
    eps = be.epsilons(delta) if isinstance(be, OpacusBackend) else []
    return theta, eps


def local_config(cfg: Config) -> Config:
    """A local-only configuration: all steps in one 'round', no server optimizer."""
    return replace(cfg, rounds=1, local_steps=cfg.steps, server="fedavg", server_lr=1.0)


def fit_pooled_logreg(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Non-private L2-regularised logistic regression (L-BFGS), flat [w, b]."""
    from scipy.optimize import minimize

    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ p[:-1] + p[-1]
        loss = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * float(p[:-1] @ p[:-1])
        r = (_sigmoid(z) - y) / len(y)
        g = np.concatenate([x.T @ r + l2 * p[:-1], [r.sum()]])
        return float(loss), g

    res = minimize(fun, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000})
    return res.x[None, :]


def pooled_scores(sites: list[SiteArrays], l2: float, folds: Sequence[int | None]
                  ) -> dict[str, np.ndarray]:
    """Pooled non-private logistic regression: train on the union of the sites' training rows
    (all but fold f, or the whole train split for f = None), score each site on fold f (or its
    test split). Returns per site × fold accuracy, AUC and log-loss (deterministic fit)."""
    out: dict[str, list[list[float]]] = {"acc": [[] for _ in sites], "auc": [[] for _ in sites],
                                         "logloss": [[] for _ in sites]}
    for f in folds:
        keep = [np.ones(len(st.y_train), bool) if f is None else st.folds != f for st in sites]
        x = np.concatenate([st.x_train[m] for st, m in zip(sites, keep, strict=True)])
        y = np.concatenate([st.y_train[m] for st, m in zip(sites, keep, strict=True)])
        theta = fit_pooled_logreg(x, y, l2)
        for k, st in enumerate(sites):
            if f is None:
                xe, ye = st.x_test, st.y_test
            else:
                xe, ye = st.x_train[st.folds == f], st.y_train[st.folds == f]
            a, u, ll = site_metrics("logreg", theta, xe, ye)
            out["acc"][k].append(float(a[0]))
            out["auc"][k].append(float(u[0]))
            out["logloss"][k].append(float(ll[0]))
    return {k: np.array(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Metrics.
# --------------------------------------------------------------------------------------------
def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties count half); NaN if one class is absent."""
    pos, neg = score[y == 1], score[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(sorted_v):
        j = i
        while j + 1 < len(sorted_v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i: j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def site_metrics(model: str, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:
    """Per replicate: accuracy, AUC and mean log-loss on (x, y)."""
    z = logits(model, theta, x)
    acc = ((z > 0).astype(float) == y).mean(1)
    aucs = np.array([auc(y, zr) for zr in z])
    ll = (np.logaddexp(0.0, z) - y * z).mean(1)
    return acc, aucs, ll


def make_replicates(sites: list[SiteArrays], seeds: Sequence[int], folds: Sequence[int | None]
                    ) -> Replicates:
    """One replicate per (seed, fold) pair; fold None trains on the whole train split."""
    pairs = [(s, f) for f in folds for s in seeds]
    members = tuple(np.stack([np.ones(len(st.y_train), bool) if f is None else st.folds != f
                              for _, f in pairs]) for st in sites)
    return Replicates(tuple(1_000_003 * s + (f if f is not None else 999) for s, f in pairs),
                      members)


def evaluate(cfg: Config, sites: list[SiteArrays], theta: np.ndarray | list[np.ndarray],
             reps_folds: Sequence[int | None]) -> dict[str, np.ndarray]:
    """Per site and replicate accuracy/AUC/log-loss on the validation fold (or the test split).

    ``theta`` is (R, P) for one global model per replicate, or a list per site (local-only).
    """
    acc, au, ll = [], [], []
    for k, st in enumerate(sites):
        th = theta[k] if isinstance(theta, list) else theta
        n_seeds = len(th) // len(reps_folds)
        a_k, u_k, l_k = np.empty(len(th)), np.empty(len(th)), np.empty(len(th))
        for j, f in enumerate(reps_folds):
            sl = slice(j * n_seeds, (j + 1) * n_seeds)
            if f is None:
                x, y = st.x_test, st.y_test
            else:
                x, y = st.x_train[st.folds == f], st.y_train[st.folds == f]
            a_k[sl], u_k[sl], l_k[sl] = site_metrics(cfg.model, th[sl], x, y)
        acc.append(a_k)
        au.append(u_k)
        ll.append(l_k)
    return {"acc": np.array(acc), "auc": np.array(au), "logloss": np.array(ll)}


def majority_floor(sites: list[SiteArrays]) -> dict[str, Any]:
    """Each hospital predicts its train split's majority class."""
    accs = []
    for st in sites:
        maj = float(st.y_train.mean() >= 0.5)
        accs.append(float((st.y_test == maj).mean()))
    return {"acc_mean": float(np.mean(accs)), "auc_mean": 0.5,
            "acc_per_site": dict(zip(SITES, accs, strict=True))}


def json_default(o: Any) -> Any:
    """json.dumps helper for NumPy scalars/arrays and inf."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def fmt_eps(eps: float) -> str:
    """'inf' or the number."""
    return "inf" if math.isinf(eps) else f"{eps:g}"
