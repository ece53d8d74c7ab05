"""A tabular task's rules applied to a site's table: validation and the fixed feature encoding.

Every cell is checked against its column's declaration (:mod:`policies.task_columns`) and
encoded with the task's fixed preprocessing only: a numeric value scaled from its declared range
to [-1, 1], a missing value replaced by the declared imputation value (with an indicator feature
where declared), a category one-hot over the declared levels, a boolean as 0/1. Nothing is
computed from the site's records, so nothing about them shapes training outside DP-SGD.

Any cell of any type may arrive (a CSV gives strings, a Parquet file numbers, booleans, nulls,
or anything else): a cell that does not fit is a problem in the report, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from policies.task import ClassSpec, TabularTask
from policies.task_columns import BooleanColumn, CategoricalColumn, NumericColumn
from policies.task_numbers import parse_number
from site_node.data import judging
from site_node.data import report as rules
from site_node.data.report import Findings
from site_node.data.tables import RawTable

AnyColumn = NumericColumn | CategoricalColumn | BooleanColumn


def _row(i: int) -> str:
    return f"row {i + 1}"


def _text(cell: object) -> str | None:
    """A cell as text (for levels, spellings, labels); None for a cell that has no text form."""
    if isinstance(cell, str):
        return cell.strip()
    if isinstance(cell, bool) or cell is None:
        return None
    if isinstance(cell, int):
        return str(cell)
    if isinstance(cell, float | Decimal):
        number = _number(cell)
        if number is not None and math.isfinite(number) and number.is_integer():
            return str(int(number))
    return None


def _number(cell: object) -> float | None:
    """A cell as a float (possibly non-finite); None if it is not a number."""
    if isinstance(cell, bool):
        return None
    if isinstance(cell, int | float | Decimal):
        try:
            return float(cell)
        except (OverflowError, ValueError):
            return math.inf
    if isinstance(cell, str):
        return parse_number(cell)
    return None


def _spellings(column: AnyColumn) -> frozenset[str]:
    """The cell texts (stripped) that mean missing in ``column``."""
    values = column.missing.values if column.missing is not None else ("",)
    return frozenset(v.strip() for v in values)


def _is_missing(cell: object, spellings: frozenset[str]) -> bool:
    if cell is None:
        return True
    return isinstance(cell, str) and cell.strip() in spellings


def _numeric(column: NumericColumn, cells: Sequence[object], start: int,
             findings: Findings, missing: np.ndarray) -> np.ndarray:
    lo, hi = column.range
    zero_missing = column.missing is not None and column.missing.zero_is_missing
    spellings = _spellings(column)
    outside = f"outside the allowed range [{lo:g}, {hi:g}] {column.unit}".rstrip()

    def judge(cell: object) -> judging.Outcome:
        if _is_missing(cell, spellings):
            return None
        value = _number(cell)
        if value is None:
            return rules.WRONG_TYPE, "not a number"
        if not math.isfinite(value):
            return rules.NON_FINITE, "NaN or infinite"
        if zero_missing and value == 0.0:
            return None
        if not lo <= value <= hi:
            return rules.OUT_OF_RANGE, outside
        return column.scale(value)

    out = judging.judge_all(cells, judge, f"column {column.name}", start, findings, missing)
    if column.missing is not None:
        out[missing] = column.scale(float(column.missing.impute))
    return out[:, None]


def _categorical(column: CategoricalColumn, cells: Sequence[object], start: int,
                 findings: Findings, missing: np.ndarray) -> np.ndarray:
    index = {level: j for j, level in enumerate(column.levels)}
    spellings = _spellings(column)
    unknown = f"not one of the levels {list(column.levels)}"

    def judge(cell: object) -> judging.Outcome:
        if _is_missing(cell, spellings):
            return None
        text = _text(cell)
        if text is None:
            return rules.WRONG_TYPE, "not text"
        if text not in index:
            return rules.UNKNOWN_LEVEL, unknown
        return index[text]

    level = judging.judge_all(cells, judge, f"column {column.name}", start, findings, missing)
    if column.missing is not None and column.missing.impute is not None:
        level[missing] = index[column.missing.impute]
    out = np.zeros((len(cells), len(column.levels)))
    rows = np.flatnonzero(level >= 0)
    out[rows, level[rows].astype(np.int64)] = 1.0
    return out


def _boolean(column: BooleanColumn, cells: Sequence[object], start: int,
             findings: Findings, missing: np.ndarray) -> np.ndarray:
    spellings = _spellings(column)
    unknown = (f"not a spelling of true {list(column.true_values)} or false "
               f"{list(column.false_values)}")

    def judge(cell: object) -> judging.Outcome:
        if _is_missing(cell, spellings):
            return None
        if isinstance(cell, bool):
            return float(cell)
        text = _text(cell)
        if text in column.true_values:
            return 1.0
        if text in column.false_values:
            return 0.0
        return rules.UNKNOWN_LEVEL, unknown

    out = judging.judge_all(cells, judge, f"column {column.name}", start, findings, missing)
    out[out < 0] = 0.0
    if column.missing is not None:
        out[missing] = float(column.missing.impute)
    return out[:, None]


_ENCODERS: dict[type, Callable[..., np.ndarray]] = {
    NumericColumn: _numeric, CategoricalColumn: _categorical, BooleanColumn: _boolean}


@dataclass(frozen=True)
class Sinks:
    """Where one column's problems are recorded, by kind, so that a table checked in chunks
    gives the report of the table checked whole (each kind's problems in row order)."""

    values: Findings
    missing: Findings
    scaling: Findings

    def all(self) -> tuple[Findings, ...]:
        """In report order."""
        return self.values, self.missing, self.scaling


def _encode_column(column: AnyColumn, cells: Sequence[object], start: int, sinks: Sinks
                   ) -> tuple[np.ndarray, int]:
    """The column's features (float32) and its count of missing cells."""
    missing = np.zeros(len(cells), dtype=bool)
    block = _ENCODERS[type(column)](column, cells, start, sinks.values, missing)
    if missing.any() and column.missing is None:
        for i in np.flatnonzero(missing).tolist():
            sinks.missing.add(f"column {column.name}", rules.MISSING_VALUE,
                              "the task declares no missing-value handling for this column",
                              _row(start + i))
    if column.missing is not None and column.missing.indicator:
        block = np.hstack([block, missing[:, None].astype(float)])
    block = block.astype(np.float32)
    for i in np.flatnonzero(~np.isfinite(block).all(axis=1)).tolist():
        sinks.scaling.add(f"column {column.name}", rules.NON_FINITE,
                          "the task's scaling gives a non-finite feature", _row(start + i))
    return block, int(missing.sum())


def class_of(cell: object, classes: Sequence[ClassSpec]) -> int | None:
    """The index of the class a label cell means (None if it means none)."""
    text, number = _text(cell), _number(cell)
    for k, cls in enumerate(classes):
        for value in cls.values:
            if text is not None and text == str(value):
                return k
            if number is not None and isinstance(value, int) and number == value:
                return k
    return None


def _labels(task: TabularTask, cells: Sequence[object], start: int, findings: Findings
            ) -> np.ndarray:
    names = [c.name for c in task.label.classes]
    unknown = f"not a label value of the classes {names}"

    def judge(cell: object) -> judging.Outcome:
        if cell is None or (isinstance(cell, str) and not cell.strip()):
            return rules.MISSING_VALUE, "a record without a label"
        k = class_of(cell, task.label.classes)
        return (rules.UNKNOWN_CLASS, unknown) if k is None else k

    unused = np.zeros(len(cells), dtype=bool)
    k = judging.judge_all(cells, judge, f"label column {task.label.column}", start, findings,
                          unused)
    k[k < 0] = 0
    return k.astype(np.int64)


def check_columns(task: TabularTask, columns: Sequence[str], findings: Findings) -> None:
    """Record every column the task declares that the file lacks, and every column the file
    holds that the task neither declares nor ignores."""
    assert task.label.column is not None  # a tabular task names its label (schema)
    declared = [c.name for c in task.columns] + [task.label.column]
    patient = task.privacy_unit.patient_column
    for name in [*declared, *([patient] if patient else [])]:
        if name not in columns:
            findings.add(f"column {name}", rules.MISSING_COLUMN, "the task declares it; the "
                         "file does not hold it")
    allowed = set(declared) | set(task.ignore_columns) | ({patient} if patient else set())
    for name in columns:
        if name not in allowed:
            findings.add(f"column {name}", rules.EXTRA_COLUMN, "the task does not declare it "
                         "(list identifiers under ignore_columns)")


@dataclass(frozen=True)
class EncodedChunk:
    """One chunk's features (float32), class indices and missing cells per column."""

    x: np.ndarray
    y: np.ndarray
    missing: dict[str, int]


def encode_chunk(task: TabularTask, chunk: RawTable, sinks: dict[str, Sinks], label: Findings
                 ) -> EncodedChunk:
    """Check and encode every cell of a chunk whose columns fit (:func:`check_columns`); its
    problems go to each column's ``sinks`` and the label's to ``label``."""
    assert task.label.column is not None
    blocks, missing = [], {}
    for column in task.columns:
        block, missing[column.name] = _encode_column(column, chunk.cells[column.name],
                                                     chunk.start, sinks[column.name])
        blocks.append(block)
    y = _labels(task, chunk.cells[task.label.column], chunk.start, label)
    x = np.hstack(blocks) if chunk.rows else np.zeros((0, len(task.feature_names())),
                                                      np.float32)
    return EncodedChunk(x=x, y=y, missing=missing)
