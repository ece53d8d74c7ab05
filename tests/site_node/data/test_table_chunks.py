"""A table is read, checked and encoded a chunk of rows at a time: the data and the report are
the ones the whole table gives at once, progress is reported after every chunk, and no chunk
holds more rows than asked (bounded memory, whatever the file's size)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from site_node.data import DataRefused, load_site_data, tables
from site_node.data import report as rules
from site_node.data.report import Findings
from site_node.data.table_check import Progress, TableEncoder, encode_table
from site_node.data.tables import RawTable
from tests.site_node.data.synthetic import COLUMNS, csv_cell, table, task, write_table

FORMATS = (".csv", ".parquet")
WHOLE = 10**9


def _bad(n: int = 90) -> dict[str, list[object]]:
    """Problems of several kinds, each first seen in a different chunk and column."""
    cols = table(n)
    cols["lactate"] = [None if v is None else csv_cell(v) for v in cols["lactate"]]
    for i in (60, 61, 62, 70, 71, 72, 80):
        cols["lactate"][i] = "high"  # wrong type, from row 61: more than five rows
    cols["lactate"][13] = "99"  # out of range, row 14
    cols["ward"][40] = "cardiology"
    cols["ward"][5] = None  # missing without handling, before the unknown level
    cols["readmitted"][2] = "maybe"
    return cols


def _report(tmp_path: Path, path: Path, chunk_rows: int) -> list[dict[str, object]]:
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path), path, chunk_rows=chunk_rows)
    return [p.as_dict() for p in info.value.report.problems]


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunks_give_the_data_of_the_whole_table(tmp_path: Path, fmt: str) -> None:
    cols = table(100)
    path = write_table(tmp_path / f"site{fmt}", cols)
    whole = load_site_data(task(tmp_path), path, chunk_rows=WHOLE)
    for size in (1, 7, 33, 100):
        part = load_site_data(task(tmp_path), path, chunk_rows=size)
        assert np.array_equal(part.x_train, whole.x_train)
        assert np.array_equal(part.y_test, whole.y_test) and part.summary == whole.summary
    # and the table encoded from the test's own cells, with no reader at all
    findings = Findings("cells", "ward-readmission")
    cells = cols if fmt == ".parquet" else {k: [csv_cell(v) for v in c] for k, c in cols.items()}
    direct = encode_table(task(tmp_path).task, RawTable(COLUMNS, cells, 100, fmt[1:]),  # type: ignore[arg-type]
                          findings)
    assert direct is not None
    assert whole.summary.missing_rates == direct.missing_rates


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunks_give_the_report_of_the_whole_table(tmp_path: Path, fmt: str) -> None:
    path = write_table(tmp_path / f"site{fmt}", _bad())
    whole = _report(tmp_path, path, WHOLE)
    assert [(p["where"], p["rule"]) for p in whole] == [
        ("column lactate", rules.OUT_OF_RANGE), ("column lactate", rules.WRONG_TYPE),
        ("column ward", rules.UNKNOWN_LEVEL), ("column ward", rules.MISSING_VALUE),
        ("label column readmitted", rules.UNKNOWN_CLASS)]
    assert whole[1]["at"] == ["row 61", "row 62", "row 63", "row 71", "row 72"]
    assert whole[1]["count"] == 7
    for size in (1, 4, 10, 64):
        assert _report(tmp_path, path, size) == whole, size


@pytest.mark.parametrize("fmt", FORMATS)
def test_progress_is_reported_after_every_chunk(tmp_path: Path, fmt: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_table(tmp_path / f"site{fmt}", table(100))
    sizes: list[int] = []
    add = TableEncoder.add

    def spy(self: TableEncoder, chunk: RawTable) -> None:
        sizes.append(chunk.rows)
        add(self, chunk)
    monkeypatch.setattr(TableEncoder, "add", spy)
    seen: list[Progress] = []
    load_site_data(task(tmp_path), path, chunk_rows=30, progress=seen.append)
    assert max(sizes) <= 30 and sum(sizes) == 100 and len(sizes) >= math.ceil(100 / 30)
    assert [p.rows for p in seen] == list(np.cumsum(sizes))
    fractions = [p.fraction for p in seen]
    assert all(f is not None for f in fractions) and fractions[-1] == 1.0
    assert fractions == sorted(fractions)  # type: ignore[type-var]


def _csv(tmp_path: Path, lines: list[str]) -> Path:
    path = write_table(tmp_path / "site.csv", table(40))
    body = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(body[:1] + lines + body[1:]) + "\n", encoding="utf-8")
    return path


def test_a_read_error_late_in_the_file_is_the_whole_report(tmp_path: Path) -> None:
    """As when the file was read whole first: problems of earlier chunks are not reported."""
    path = write_table(tmp_path / "site.csv", _bad())
    path.write_bytes(path.read_bytes() + b"P-x,1.0,icu,Y,\xff\xfe\n")
    for size in (5, WHOLE):
        problems = _report(tmp_path, path, size)
        assert [(p["where"], p["rule"]) for p in problems] == [
            ("file site.csv", rules.UNREADABLE)]
        assert "utf-8" in str(problems[0]["detail"])


def test_a_row_with_too_many_fields_is_unreadable_naming_its_line(tmp_path: Path) -> None:
    path = _csv(tmp_path, ["P-1,1.0,icu,Y,no,surplus"])
    (problem,) = _report(tmp_path, path, 10)
    assert problem["rule"] == rules.UNREADABLE
    assert "Expected 5 fields in line 2, saw 6" in str(problem["detail"])


def test_blank_lines_are_skipped_and_short_rows_are_missing_cells(tmp_path: Path) -> None:
    path = _csv(tmp_path, ["", "P-1,1.0,icu", ""])
    problems = _report(tmp_path, path, 10)
    assert [(p["where"], p["rule"], p["at"]) for p in problems] == [
        ("label column readmitted", rules.MISSING_VALUE, ["row 1"])]


def test_a_line_too_long_is_refused_without_reading_it_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "MAX_LINE_CHARS", 200)
    path = _csv(tmp_path, ["P-1,1.0,icu,Y,\"" + "x" * 5000 + "\""])
    (problem,) = _report(tmp_path, path, 10)
    assert problem["rule"] == rules.UNREADABLE
    assert "line 2 is longer than 200 characters" in str(problem["detail"])


def test_a_header_problem_still_reads_the_rows(tmp_path: Path) -> None:
    """A missing column and an unreadable row: the row's problem alone, as before."""
    cols = table(30)
    del cols["ward"]
    path = write_table(tmp_path / "site.csv", cols)
    assert [p["rule"] for p in _report(tmp_path, path, 7)] == [rules.MISSING_COLUMN]
    path.write_bytes(path.read_bytes() + b"\xff\n")
    assert [p["rule"] for p in _report(tmp_path, path, 7)] == [rules.UNREADABLE]
