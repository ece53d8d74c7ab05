"""A hospital's own data: loading, the fixed train/test split, and preprocessing.

The embedded default is the UCI Heart Disease data (920 patients from four hospitals; see
``site_node/data/PROVENANCE.md``). Each site reads its own rows only, makes a fixed stratified
train/test split, and preprocesses with statistics from its own *train* split: medians and modes
for imputation, means and standard deviations for scaling. Nothing about another site's data is
ever used.

The feature layout is fixed by the data dictionary (not learned from data), so every site
produces the same columns in the same order and one global model fits them all.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from site_node.errors import DataError

#: Site id -> value of the CSV's ``dataset`` column.
HOSPITALS: dict[str, str] = {
    "cleveland": "Cleveland",
    "hungary": "Hungary",
    "long_beach": "VA Long Beach",
    "switzerland": "Switzerland",
}
SITE_IDS: tuple[str, ...] = tuple(HOSPITALS)
EMBEDDED_SHA256 = "82aa62057fc07d031c4370b5d3c7153a5a79fe7cecd6e2b9504b1b1af6612758"

#: Numeric columns; a value of 0 in those named in ZERO_IS_MISSING is a missing value
#: (Switzerland records unknown cholesterol as 0; a resting blood pressure of 0 is impossible).
NUMERIC = ("age", "trestbps", "chol", "thalch", "oldpeak", "ca")
ZERO_IS_MISSING = frozenset({"trestbps", "chol"})
BINARY = {"sex": "Male", "fbs": "TRUE", "exang": "TRUE"}
CATEGORICAL: dict[str, tuple[str, ...]] = {
    "cp": ("typical angina", "atypical angina", "non-anginal", "asymptomatic"),
    "restecg": ("normal", "st-t abnormality", "lv hypertrophy"),
    "slope": ("upsloping", "flat", "downsloping"),
    "thal": ("normal", "fixed defect", "reversable defect"),
}
#: Columns that get a missing-value indicator feature (missingness is informative and
#: differs between hospitals).
INDICATED = ("trestbps", "chol", "fbs", "thalch", "exang", "oldpeak", "ca")
TEST_FRACTION = 0.25
SPLIT_SEED = 20240601


def feature_names() -> tuple[str, ...]:
    """The fixed feature layout every site produces."""
    names: list[str] = [*NUMERIC, *BINARY]
    for col, levels in CATEGORICAL.items():
        names += [f"{col}={lvl}" for lvl in levels]
    names += [f"{col}_missing" for col in INDICATED]
    return tuple(names)


NUM_FEATURES = len(feature_names())


@dataclass(frozen=True)
class SiteData:
    """A site's preprocessed split: float32 features and 0/1 float32 labels."""

    site: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return len(self.y_train)

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return len(self.y_test)


def embedded_csv() -> Path:
    """Path of the UCI Heart Disease CSV shipped inside the package."""
    return Path(str(resources.files("site_node.data") / "heart_disease_uci.csv"))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_rows(path: Path, site: str) -> list[dict[str, str]]:
    """The CSV rows that belong to ``site``.

    Raises
    ------
    DataError
        If the site is unknown, the file is unreadable or lacks columns, or has no rows for it.
    """
    if site not in HOSPITALS:
        raise DataError(f"unknown site {site!r}; known sites: {', '.join(SITE_IDS)}")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            needed = {"dataset", "num", *NUMERIC, *BINARY, *CATEGORICAL}
            missing = needed - set(reader.fieldnames or ())
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            rows = [r for r in reader if r["dataset"] == HOSPITALS[site]]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read data file {path}: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: no rows for site {site!r} (dataset={HOSPITALS[site]!r})")
    return rows


def stratified_split(labels: np.ndarray, *, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of test rows: the same fraction of each class, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_test = round(len(idx) * test_fraction)
        is_test[idx[:n_test]] = True
    return is_test


def _raw_matrix(rows: list[dict[str, str]]) -> np.ndarray:
    """Numeric and binary columns as floats, NaN where missing (before imputation)."""
    out = np.full((len(rows), len(NUMERIC) + len(BINARY)), np.nan)
    for i, row in enumerate(rows):
        for j, col in enumerate(NUMERIC):
            val = row[col].strip()
            if not val:
                continue  # an empty cell is a missing value; a written "nan" is not
            number = float(val)
            if not math.isfinite(number):
                raise ValueError(f"{col} = {val!r} is not finite")
            if not (col in ZERO_IS_MISSING and number == 0.0):
                out[i, j] = number
        for j, (col, positive) in enumerate(BINARY.items(), start=len(NUMERIC)):
            val = row[col].strip()
            if val:
                out[i, j] = 1.0 if val == positive else 0.0
    return out


def _one_hot(rows: list[dict[str, str]]) -> np.ndarray:
    """Categorical columns one-hot over fixed levels; a missing value is all zeros."""
    blocks = []
    for col, levels in CATEGORICAL.items():
        block = np.zeros((len(rows), len(levels)))
        for i, row in enumerate(rows):
            if row[col] in levels:
                block[i, levels.index(row[col])] = 1.0
        blocks.append(block)
    return np.hstack(blocks)


@dataclass(frozen=True)
class Preprocessor:
    """Imputation and scaling statistics, fitted on one site's train split only."""

    fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, raw: np.ndarray) -> Preprocessor:
        """Medians (numeric) / modes (binary) for imputation; mean and std for scaling."""
        fill = np.nanmedian(np.where(np.isnan(raw).all(axis=0), 0.0, raw), axis=0)
        fill = np.where(np.isnan(fill), 0.0, fill)
        n_num = len(NUMERIC)
        fill[n_num:] = np.round(fill[n_num:])  # the mode of a 0/1 column is its rounded median
        filled = np.where(np.isnan(raw), fill, raw)
        mean = filled.mean(axis=0)
        std = filled.std(axis=0)
        mean[n_num:] = 0.0  # binary features stay 0/1
        scale = np.where((std > 1e-8) & (np.arange(raw.shape[1]) < n_num), std, 1.0)
        return cls(fill=fill, mean=mean, scale=scale)

    def transform(self, raw: np.ndarray, one_hot: np.ndarray) -> np.ndarray:
        """Impute, scale, and append one-hot blocks and missing-value indicators."""
        missing = np.isnan(raw)
        filled = np.where(missing, self.fill, raw)
        scaled = (filled - self.mean) / self.scale
        cols = [*NUMERIC, *BINARY]
        indicators = missing[:, [cols.index(c) for c in INDICATED]].astype(float)
        return np.hstack([scaled, one_hot, indicators]).astype(np.float32)


def load_site(site: str, path: Path | None = None) -> SiteData:
    """Load, split and preprocess one hospital's data (its own rows only).

    Raises
    ------
    DataError
        If the file is unreadable, lacks columns or rows for the site, or holds values that
        are not numbers where numbers are expected, or are not finite.
    """
    source = path or embedded_csv()
    rows = read_rows(source, site)
    try:
        labels = np.array([1.0 if int(r["num"]) > 0 else 0.0 for r in rows], dtype=np.float32)
        raw, one_hot = _raw_matrix(rows), _one_hot(rows)
    except ValueError as exc:
        raise DataError(f"{source}: site {site}: a value is not a finite number: {exc}") \
            from None
    if len(np.unique(labels)) < 2:
        raise DataError(f"{source}: site {site}: needs both classes of the label, found one")
    is_test = stratified_split(labels, test_fraction=TEST_FRACTION, seed=SPLIT_SEED)
    prep = Preprocessor.fit(raw[~is_test])
    return SiteData(
        site=site,
        x_train=prep.transform(raw[~is_test], one_hot[~is_test]),
        y_train=labels[~is_test],
        x_test=prep.transform(raw[is_test], one_hot[is_test]),
        y_test=labels[is_test],
    )
