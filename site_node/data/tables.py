"""Reading a site's table (CSV or Parquet) into raw cells, before any interpretation, in chunks.

A table is read a chunk of rows at a time (:meth:`TableSource.chunks`), so checking a file of a
million rows holds one chunk's cells, never the whole file's. A CSV is read as text with the
``csv`` module, every cell a string (no NA guessing: an empty cell stays ``""``, and whether it
means missing is the task's to say; a row shorter than the header has ``None`` for its missing
cells, one longer is an error; blank lines are skipped). A Parquet file is read with pyarrow, a
record batch at a time, and every cell keeps its Python value: a null is ``None`` (missing), a
NaN stays a float NaN (a non-finite value, refused). A file that cannot be read is refused with
the reason; a line longer than :data:`MAX_LINE_CHARS` is one (it is not read into memory).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from site_node.data.report import DUPLICATE_COLUMN, UNREADABLE, Findings

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Rows read, checked and encoded at a time.
CHUNK_ROWS = 20_000
#: The longest CSV line read (a longer one is refused, never read whole).
MAX_LINE_CHARS = 1 << 20
#: What reading a table may raise (each becomes an "unreadable" problem).
READ_ERRORS = (OSError, UnicodeDecodeError, ValueError, csv.Error, pa.ArrowException,
               StopIteration)


@dataclass(frozen=True)
class RawTable:
    """A chunk of a table: its header and its cells, column by column (row ``i`` of every
    column aligned), the rows before it (``start``) and how far through the file it ends."""

    columns: tuple[str, ...]
    cells: dict[str, Sequence[object]]
    rows: int
    format: str
    start: int = 0
    fraction: float | None = None


def table_format(path: Path) -> str | None:
    """``csv``, ``parquet``, or None for a file that is neither (by its suffix)."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    return None


def _lines(text: io.TextIOBase) -> Iterator[str]:
    """The file's lines, each at most :data:`MAX_LINE_CHARS` long."""
    number = 0
    while line := text.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise csv.Error(f"line {number} is longer than {MAX_LINE_CHARS:,} characters")
        yield line


def _chunk(header: tuple[str, ...], rows: list[Sequence[str | None]], fmt: str, start: int,
           fraction: float | None) -> RawTable:
    by_column = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    cells: dict[str, Sequence[object]] = dict(zip(header, by_column, strict=True))
    return RawTable(header, cells, len(rows), fmt, start, fraction)


@dataclass(frozen=True)
class TableSource:
    """A table file whose header has been read; :meth:`chunks` reads its rows."""

    path: Path
    format: str
    columns: tuple[str, ...]

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[RawTable]:
        """The table ``rows`` rows at a time. Raises one of :data:`READ_ERRORS` where the file
        cannot be read."""
        yield from (self._csv(rows) if self.format == "csv" else self._parquet(rows))

    def _csv(self, size: int) -> Iterator[RawTable]:
        total = max(self.path.stat().st_size, 1)
        width = len(self.columns)
        with self.path.open("rb") as raw, io.TextIOWrapper(
                raw, encoding="utf-8-sig", newline="") as text:
            reader = csv.reader(_lines(text))
            next(reader)  # the header
            rows: list[Sequence[str | None]] = []
            start = 0
            for row in reader:
                if not row:
                    continue  # a blank line
                if len(row) > width:
                    raise csv.Error(f"Expected {width} fields in line {reader.line_num}, "
                                    f"saw {len(row)}")
                rows.append(row if len(row) == width else [*row, *[None] * (width - len(row))])
                if len(rows) == size:
                    yield _chunk(self.columns, rows, "csv", start, raw.tell() / total)
                    start, rows = start + len(rows), []
            yield _chunk(self.columns, rows, "csv", start, 1.0)

    def _parquet(self, size: int) -> Iterator[RawTable]:
        with pq.ParquetFile(self.path) as file:
            total, start = max(file.metadata.num_rows, 1), 0
            for batch in file.iter_batches(batch_size=size):
                cells: dict[str, Sequence[object]] = {
                    name: batch.column(j).to_pylist() for j, name in enumerate(self.columns)}
                start += batch.num_rows
                yield RawTable(self.columns, cells, batch.num_rows, "parquet",
                               start - batch.num_rows, start / total)


def _header(path: Path, kind: str) -> tuple[str, ...]:
    if kind == "csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(_lines(fh)), None)
        if header is None:
            raise ValueError("No columns to parse from file")
        return tuple(header)
    with pq.ParquetFile(path) as file:
        return tuple(str(n) for n in file.schema_arrow.names)


def unreadable(path: Path, kind: str, exc: BaseException, findings: Findings) -> None:
    """Record that ``path`` cannot be read as ``kind``, with the first line of the reason."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    findings.add(f"file {path.name}", UNREADABLE, f"cannot read it as {kind}: {detail}")


def open_table(path: Path, findings: Findings) -> TableSource | None:
    """Read a CSV or Parquet file's header; None (with the problem recorded) if it cannot be
    read. A column named twice is recorded too."""
    kind = table_format(path)
    if kind is None:
        findings.add(f"file {path.name}", UNREADABLE,
                     "not a CSV (.csv) or Parquet (.parquet) file")
        return None
    try:
        columns = _header(path, kind)
    except READ_ERRORS as exc:
        unreadable(path, kind, exc, findings)
        return None
    log.debug("opened %s: %d columns", path, len(columns))
    return TableSource(path, kind, columns)


def duplicate_columns(columns: tuple[str, ...], findings: Findings) -> None:
    """Record every column the header names twice."""
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            findings.add(f"column {name}", DUPLICATE_COLUMN, "the header names it twice")
        seen.add(name)
