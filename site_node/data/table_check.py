"""A site's table checked and encoded a chunk at a time, with progress and bounded memory.

:func:`check_table` reads the header (:func:`~site_node.data.tables.open_table`), checks the
columns against the task, then reads, checks and encodes the rows a chunk at a time
(:class:`TableEncoder`), calling ``progress`` after each chunk. It holds one chunk's raw cells
at a time and, while no problem is found, the encoded features (float32) of the chunks read;
once a problem is found only the problems are kept (each at most five named rows and a count).
The report is the one the whole table gives checked at once: each column's problems are kept
apart by kind and merged in the table's order at the end. A file that cannot be read, anywhere
in it, gives that problem alone, as it did when the file was read whole first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from policies.task import TabularTask
from site_node.data.patients import encode_ids
from site_node.data.report import Findings
from site_node.data.tables import (
    CHUNK_ROWS,
    READ_ERRORS,
    RawTable,
    duplicate_columns,
    open_table,
    unreadable,
)
from site_node.data.tabular import Sinks, check_columns, encode_chunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """How far a check has got: rows read, and the share of the file (None if unknown)."""

    rows: int
    fraction: float | None


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class EncodedTable:
    """The features (float32, the task's layout), class indices, each column's missing rate,
    and each row's patient index (None unless the task names a patient column)."""

    x: np.ndarray
    y: np.ndarray
    missing_rates: dict[str, float]
    patients: np.ndarray | None = None


class TableEncoder:
    """Checks and encodes a table's chunks in order; :meth:`finish` gives the whole table."""

    def __init__(self, task: TabularTask, findings: Findings) -> None:
        def new() -> Findings:
            return Findings(findings.source, findings.task)
        self._task = task
        self._sinks = {c.name: Sinks(new(), new(), new()) for c in task.columns}
        self._label = new()
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []
        self._missing = {c.name: 0 for c in task.columns}
        self._rows = 0
        self._patient_column = task.privacy_unit.patient_column
        self._patient_codes: dict[str, int] = {}  # ids -> indices, dropped at finish
        self._patient_findings = new()
        self._patients: list[np.ndarray] = []

    def _ordered(self) -> list[Findings]:
        return ([f for sinks in self._sinks.values() for f in sinks.all()] + [self._label]
                + [self._patient_findings])

    def add(self, chunk: RawTable) -> None:
        """Check and encode the next chunk (its rows follow the previous chunk's)."""
        encoded = encode_chunk(self._task, chunk, self._sinks, self._label)
        self._rows += chunk.rows
        for name, count in encoded.missing.items():
            self._missing[name] += count
        if self._patient_column is not None:
            self._patients.append(encode_ids(
                chunk.cells[self._patient_column], self._patient_codes,
                where=f"patient column {self._patient_column}", start=chunk.start,
                findings=self._patient_findings))
        if any(self._ordered()):
            self._x, self._y, self._patients = [], [], []  # refused: keep only the problems
        else:
            self._x.append(encoded.x)
            self._y.append(encoded.y)

    def finish(self, findings: Findings) -> EncodedTable | None:
        """Record every problem in ``findings``; the encoded table, or None if any."""
        for part in self._ordered():
            findings.merge(part)
        if findings:
            return None
        width = len(self._task.feature_names())
        x = np.concatenate(self._x) if self._x else np.zeros((0, width), np.float32)
        y = np.concatenate(self._y) if self._y else np.zeros(0, np.int64)
        rates = {name: count / self._rows if self._rows else 0.0
                 for name, count in self._missing.items()}
        patients = None
        if self._patient_column is not None:
            patients = (np.concatenate(self._patients) if self._patients
                        else np.zeros(0, np.int64))
        self._patient_codes = {}
        return EncodedTable(x=x, y=y, missing_rates=rates, patients=patients)


def encode_table(task: TabularTask, table: RawTable, findings: Findings) -> EncodedTable | None:
    """Check every column and cell of a table held whole; the encoded table, or None if any
    problem was found."""
    check_columns(task, table.columns, findings)
    if findings:
        return None
    encoder = TableEncoder(task, findings)
    encoder.add(table)
    return encoder.finish(findings)


def check_table(task: TabularTask, path: Path, findings: Findings, *,
                chunk_rows: int = CHUNK_ROWS, progress: ProgressFn | None = None
                ) -> tuple[EncodedTable, str] | None:
    """Read, check and encode a CSV or Parquet file ``chunk_rows`` rows at a time: the encoded
    table and its format, or None (every problem recorded in ``findings``)."""
    source = open_table(path, findings)
    if source is None:
        return None
    header = Findings(findings.source, findings.task)
    duplicate_columns(source.columns, header)
    check_columns(task, source.columns, header)
    encoder = None if header else TableEncoder(task, findings)
    try:
        for chunk in source.chunks(chunk_rows):
            if encoder is not None:
                encoder.add(chunk)
            if progress is not None:
                progress(Progress(chunk.start + chunk.rows, chunk.fraction))
    except READ_ERRORS as exc:
        unreadable(path, source.format, exc, findings)
        return None
    findings.merge(header)
    encoded = None if encoder is None else encoder.finish(findings)
    log.debug("checked %s: %s", path, "fits" if encoded is not None else "refused")
    return None if encoded is None else (encoded, source.format)
