"""Reading a site's table (CSV or Parquet) into raw cells, before any interpretation.

A CSV is read as text, every cell a string (pandas with no NA guessing: an empty cell stays
``""``, and whether it means missing is the task's to say). A Parquet file is read with pyarrow
and every cell keeps its Python value: a null is ``None`` (missing), a NaN stays a float NaN (a
non-finite value, refused). A file that cannot be read at all is refused with the reason.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from site_node.data.report import DUPLICATE_COLUMN, UNREADABLE, Findings

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class RawTable:
    """A table's header and its cells, column by column (row ``i`` of every column aligned)."""

    columns: tuple[str, ...]
    cells: dict[str, list[object]]
    rows: int
    format: str


def table_format(path: Path) -> str | None:
    """``csv``, ``parquet``, or None for a file that is neither (by its suffix)."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return None


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


def _read_csv(path: Path) -> RawTable:
    header = _csv_header(path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                        encoding="utf-8-sig", on_bad_lines="error", skip_blank_lines=True)
    if list(frame.columns) != header:  # pandas renames duplicates ("a", "a.1")
        frame.columns = pd.Index(header[: len(frame.columns)])
    cells: dict[str, list[object]] = {
        str(c): [v if isinstance(v, str) else None for v in frame.iloc[:, i].tolist()]
        for i, c in enumerate(header)}
    return RawTable(tuple(header), cells, len(frame), "csv")


def _read_parquet(path: Path) -> RawTable:
    table: pa.Table = pq.read_table(path)
    names = [str(n) for n in table.column_names]
    cells: dict[str, list[object]] = {
        name: table.column(i).to_pylist() for i, name in enumerate(names)}
    return RawTable(tuple(names), cells, table.num_rows, "parquet")


def read_table(path: Path, findings: Findings) -> RawTable | None:
    """Read a CSV or Parquet file; None (with the problem recorded) if it cannot be read."""
    where = f"file {path.name}"
    kind = table_format(path)
    if kind is None:
        findings.add(where, UNREADABLE, "not a CSV (.csv) or Parquet (.parquet) file")
        return None
    try:
        table = _read_csv(path) if kind == "csv" else _read_parquet(path)
    except (OSError, UnicodeDecodeError, ValueError, csv.Error, pd.errors.ParserError,
            pa.ArrowException, StopIteration) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        findings.add(where, UNREADABLE, f"cannot read it as {kind}: {detail}")
        return None
    seen: set[str] = set()
    for name in table.columns:
        if name in seen:
            findings.add(f"column {name}", DUPLICATE_COLUMN, "the header names it twice")
        seen.add(name)
    log.debug("read %s: %d rows, %d columns", path, table.rows, len(table.columns))
    return table
