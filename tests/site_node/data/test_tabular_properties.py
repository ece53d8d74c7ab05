"""Property: the tabular validator never crashes, whatever a file holds in any cell.

A CSV gives strings and a Parquet file numbers, booleans, nulls, or other values (dates,
decimals, bytes): every cell either fits its column or becomes a problem in the report.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import tempfile
from pathlib import Path
from unittest.mock import patch

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.task_loader import LoadedTask
from site_node.data import judging
from site_node.data.report import Findings
from site_node.data.table_check import EncodedTable, TableEncoder, encode_table
from site_node.data.tables import RawTable
from tests.site_node.data.synthetic import COLUMNS, task

CELLS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["", "?", " icu ", "Y", "no", "9", "1e999", "nan"]),
    st.decimals(allow_nan=True, allow_infinity=True), st.binary(max_size=4),
    st.dates().map(lambda d: dt.datetime.combine(d, dt.time())),
)


@functools.cache
def _task() -> LoadedTask:
    with tempfile.TemporaryDirectory() as tmp:
        return task(Path(tmp))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(*[CELLS] * len(COLUMNS)), max_size=8))
def test_arbitrary_cells_give_a_table_or_a_report_never_an_exception(
        rows: list[tuple[object, ...]]) -> None:
    loaded = _task()
    cells = {c: [r[j] for r in rows] for j, c in enumerate(COLUMNS)}
    findings = Findings("cells", loaded.name)
    out = encode_table(loaded.task, RawTable(COLUMNS, cells, len(rows), "parquet"),  # type: ignore[arg-type]
                       findings)
    if out is None:
        report = findings.report()
        assert report.problems and all(p.line() for p in report.problems)
    else:
        assert isinstance(out, EncodedTable) and not findings
        assert out.x.shape == (len(rows), 6) and np.isfinite(out.x).all()
        assert np.abs(out.x).max(initial=0.0) <= 1.0


def test_decimal_and_date_cells_are_reported_not_raised(tmp_path: Path) -> None:
    loaded = task(tmp_path)
    cells: dict[str, list[object]] = {
        "patient_ref": ["a"], "lactate": [decimal.Decimal("sNaN")], "ward": [dt.date.today()],
        "smoker": [b"Y"], "readmitted": [1.5]}
    findings = Findings("cells", loaded.name)
    assert encode_table(loaded.task, RawTable(COLUMNS, cells, 1, "parquet"),  # type: ignore[arg-type]
                        findings) is None
    rules_seen = {p.rule for p in findings.report().problems}
    assert rules_seen >= {"non-finite value", "wrong type", "unknown class"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(*[CELLS] * len(COLUMNS)), max_size=10),
       size=st.integers(min_value=1, max_value=4))
def test_chunks_give_the_whole_table_s_result_and_report(rows: list[tuple[object, ...]],
                                                         size: int) -> None:
    loaded = _task()
    cells = {c: [r[j] for r in rows] for j, c in enumerate(COLUMNS)}
    whole_findings = Findings("cells", loaded.name)
    whole = encode_table(loaded.task, RawTable(COLUMNS, cells, len(rows), "parquet"),  # type: ignore[arg-type]
                         whole_findings)
    findings = Findings("cells", loaded.name)
    encoder = TableEncoder(loaded.task, findings)  # type: ignore[arg-type]
    for start in range(0, max(len(rows), 1), size):
        part = {c: v[start:start + size] for c, v in cells.items()}
        encoder.add(RawTable(COLUMNS, part, len(part["ward"]), "parquet", start))
    chunked = encoder.finish(findings)
    assert findings.report() == whole_findings.report()
    assert (chunked is None) == (whole is None)
    if chunked is not None and whole is not None:
        assert np.array_equal(chunked.x, whole.x) and np.array_equal(chunked.y, whole.y)
        assert chunked.missing_rates == whole.missing_rates



TEXTS = st.one_of(st.none(), st.text(max_size=6),
                  st.sampled_from(["", "?", " icu ", "Y", "N", "no", "9", "1e999", "nan", "3.5",
                                   "25", "0", "yes", "transferred", "surgery", "5_5"]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(*[TEXTS] * len(COLUMNS)), max_size=12))
def test_text_cells_take_the_vectorised_path_with_the_cell_by_cell_result(
        rows: list[tuple[object, ...]]) -> None:
    """A CSV's cells (text or None) are judged with numpy (each distinct cell once); the
    features, missing rates and report are the cell-by-cell loop's."""
    loaded = _task()
    cells = {c: [r[j] for r in rows] for j, c in enumerate(COLUMNS)}
    table = RawTable(COLUMNS, cells, len(rows), "csv")  # type: ignore[arg-type]
    fast, slow = Findings("cells", loaded.name), Findings("cells", loaded.name)
    with patch.object(judging, "judge_texts", wraps=judging.judge_texts) as vectorised:
        out_fast = encode_table(loaded.task, table, fast)  # type: ignore[arg-type]
    assert vectorised.called
    with patch.object(judging, "judge_all", judging.judge_each):
        out_slow = encode_table(loaded.task, table, slow)  # type: ignore[arg-type]
    assert fast.report() == slow.report()
    assert (out_fast is None) == (out_slow is None)
    if out_fast is not None and out_slow is not None:
        assert np.array_equal(out_fast.x, out_slow.x) and np.array_equal(out_fast.y, out_slow.y)
        assert out_fast.missing_rates == out_slow.missing_rates
