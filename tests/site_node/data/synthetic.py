"""A tabular task the product's code never names, and tables for it made by the tests.

``ward-readmission`` (entirely synthetic): a numeric column with missing values and an
indicator, a categorical column without missing values, a boolean column with spellings, an
identifier to ignore and a three-class label. :func:`table` draws rows whose label depends on the
features (a model can learn it); :func:`write_table` writes them as CSV (text cells) or Parquet
(typed cells, nulls kept).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from policies.task_loader import LoadedTask, load_task

TASK_YAML = """\
version: 1
name: ward-readmission
description: Synthetic test task, written by the tests.
modality: tabular
preprocessing: fixed
label:
  column: readmitted
  classes:
    - {name: "no", values: ["no"]}
    - {name: "yes", values: ["yes"]}
    - {name: transferred, values: ["transferred", 9]}
  min_classes_per_site: MIN_CLASSES
ignore_columns: [patient_ref]
columns:
  - name: lactate
    type: numeric
    unit: mmol/l
    range: [0, 20]
    missing: {values: ["", "?"], impute: 1.5, indicator: true}
  - {name: ward, type: categorical, levels: [icu, surgery, medicine]}
  - name: smoker
    type: boolean
    true_values: ["Y", "yes"]
    false_values: ["N", "no"]
    missing: {values: [""], impute: false}
model: {family: MODEL}
split: {test_fraction: 0.25, seed: 7, stratified: true}
"""
COLUMNS = ("patient_ref", "lactate", "ward", "smoker", "readmitted")
WARDS = ("icu", "surgery", "medicine")


def write_task(directory: Path, *, min_classes: int = 2, model: str = "logistic") -> Path:
    """The task file (``model``: ``logistic`` or ``mlp, hidden: [8]``)."""
    path = directory / "ward-readmission.yaml"
    path.write_text(TASK_YAML.replace("MIN_CLASSES", str(min_classes)).replace("MODEL", model),
                    encoding="utf-8")
    return path


def task(directory: Path, **kw: Any) -> LoadedTask:
    """The loaded task."""
    return load_task(write_task(directory, **kw))


def table(n: int = 60, seed: int = 0, classes: tuple[str, ...] = ("no", "yes", "transferred")
          ) -> dict[str, list[object]]:
    """``n`` rows: the label follows the ward and the lactate (learnable), with some missing
    lactate and smoker values."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[object]] = {c: [] for c in COLUMNS}
    for i in range(n):
        k = i % len(classes)
        cls = classes[k]
        lactate = float(np.clip(2.0 + 5.0 * k + rng.normal(0, 1.0), 0, 20))
        cols["patient_ref"].append(f"P{seed:02d}-{i:04d}")
        cols["lactate"].append(None if rng.random() < 0.1 else round(lactate, 2))
        cols["ward"].append(WARDS[k % len(WARDS)] if rng.random() < 0.8 else str(
            rng.choice(WARDS)))
        cols["smoker"].append(None if rng.random() < 0.1 else bool(rng.random() < 0.4))
        cols["readmitted"].append(cls)
    return cols


def csv_cell(value: object) -> str:
    """How a value is written in the CSV (booleans as the task's Y/N, None as empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def write_table(path: Path, cols: dict[str, list[object]]) -> Path:
    """Write ``cols`` as CSV (``.csv``: text) or Parquet (``.parquet``: typed, nulls kept)."""
    if path.suffix == ".csv":
        rows = zip(*cols.values(), strict=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(list(cols))
            writer.writerows([csv_cell(v) for v in row] for row in rows)
    else:
        pq.write_table(pa.table({k: pa.array(v) for k, v in cols.items()}), path)
    return path
