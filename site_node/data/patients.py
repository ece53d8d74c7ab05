"""Each record's patient, as an index the site keeps to itself: grouping, the cap and the split.

The task names where a record's patient id comes from (:mod:`policies.task_privacy`). The ids
are read here and replaced at once by small integers (0, 1, … in order of first appearance):
the ids themselves are kept nowhere, never leave the site and never enter the model. With the
indices the site

- caps each patient's records (:func:`cap_mask`: a patient's records beyond the cap, in file
  order, are dropped; the rule looks at no value of any record),
- splits by patient (:func:`patient_split_mask`: all of a patient's records are in training or
  all in testing, so a test patient was never trained on), and
- reports how many records patients hold (:class:`PatientStats`, counts only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from site_node.data import report as rules
from site_node.data.report import Findings
from site_node.data.split import split_mask

#: The rule a record without a patient id breaks.
MISSING_PATIENT = rules.MISSING_VALUE


def _id_text(cell: object) -> str | None:
    """A patient id cell as text; None if it has none (missing, or not a plain value)."""
    if isinstance(cell, bool) or cell is None:
        return None
    if isinstance(cell, str):
        text = cell.strip()
        return text or None
    if isinstance(cell, int | np.integer):
        return str(int(cell))
    return None


def encode_ids(cells: Sequence[object], codes: dict[str, int], *, where: str, start: int,
               findings: Findings) -> np.ndarray:
    """Each cell's patient index (a new id gets the next index in ``codes``); a cell without an
    id is a problem (rows counted from 1 after ``start``) and gets -1."""
    out = np.full(len(cells), -1, dtype=np.int64)
    for i, cell in enumerate(cells):
        text = _id_text(cell)
        if text is None:
            findings.add(where, MISSING_PATIENT, "every record names its patient (a text or "
                         "integer id)", f"row {start + i + 1}")
            continue
        out[i] = codes.setdefault(text, len(codes))
    return out


def cap_mask(patients: np.ndarray, cap: int | None) -> np.ndarray:
    """Boolean mask of the records kept: each patient's first ``cap`` records in order."""
    if cap is None or len(patients) == 0:
        return np.ones(len(patients), dtype=bool)
    order = np.argsort(patients, kind="stable")
    sorted_ids = patients[order]
    first = np.searchsorted(sorted_ids, sorted_ids, side="left")
    rank = np.empty(len(patients), dtype=np.int64)
    rank[order] = np.arange(len(patients)) - first
    return rank < cap


def patient_split_mask(patients: np.ndarray, labels: np.ndarray, *, test_fraction: float,
                       seed: int, stratified: bool = True) -> np.ndarray:
    """Boolean mask of test records: the task's split made over patients, every record of a
    patient on the same side (stratified by each patient's first record's class)."""
    if len(patients) == 0:
        return np.zeros(0, dtype=bool)
    ids, first = np.unique(patients, return_index=True)
    test_patient = split_mask(labels[first], test_fraction=test_fraction, seed=seed,
                              stratified=stratified)
    return np.asarray(test_patient[np.searchsorted(ids, patients)], dtype=bool)


def renumber(patients: np.ndarray) -> np.ndarray:
    """The same grouping with indices 0, 1, … in order of first appearance."""
    _, first, inverse = np.unique(patients, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


@dataclass(frozen=True)
class PatientStats:
    """How many patients the training data hold and how many records each (counts only)."""

    patients: int
    median_records: float
    max_records: int
    #: The largest number of records of one patient before the cap (None without a cap).
    max_records_before_cap: int | None = None
    dropped_by_cap: int = 0

    @classmethod
    def of(cls, patients: np.ndarray, *, before: np.ndarray | None = None) -> PatientStats:
        """The figures of ``patients`` (one index per record); ``before``: the same before the
        cap."""
        counts = np.bincount(patients) if len(patients) else np.zeros(0, np.int64)
        counts = counts[counts > 0]
        prior = None if before is None else (int(np.bincount(before).max()) if len(before)
                                             else 0)
        return cls(patients=len(counts),
                   median_records=float(np.median(counts)) if len(counts) else 0.0,
                   max_records=int(counts.max()) if len(counts) else 0,
                   max_records_before_cap=prior,
                   dropped_by_cap=0 if before is None else len(before) - len(patients))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)
