"""Every kind of bad tabular data is refused with a report naming the column, the rule and the
first offending rows: in CSV and in Parquet files the tests make."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from policies.task import TabularTask
from policies.task_loader import LoadedTask
from site_node.data import DataRefused, load_site_data
from site_node.data import report as rules
from tests.site_node.data.synthetic import csv_cell, table, task, write_table

Table = dict[str, list[object]]
FORMATS = (".csv", ".parquet")


def _set(column: str, row: int, value: object) -> Callable[[Table], Table]:
    def edit(cols: Table) -> Table:
        cols[column][row] = value
        return cols
    return edit


def _text_column(column: str, row: int, value: str) -> Callable[[Table], Table]:
    """Set a cell to text; in Parquet the whole column becomes text (a column has one type)."""
    def edit(cols: Table) -> Table:
        cols[column] = [None if v is None else csv_cell(v) for v in cols[column]]
        cols[column][row] = value
        return cols
    return edit


def _drop(column: str) -> Callable[[Table], Table]:
    def edit(cols: Table) -> Table:
        del cols[column]
        return cols
    return edit


def _add(column: str) -> Callable[[Table], Table]:
    def edit(cols: Table) -> Table:
        cols[column] = ["free text"] * len(cols["ward"])
        return cols
    return edit


def _keep(n: int) -> Callable[[Table], Table]:
    return lambda cols: {k: v[:n] for k, v in cols.items()}


def _relabel(value: str) -> Callable[[Table], Table]:
    def edit(cols: Table) -> Table:
        cols["readmitted"] = [value] * len(cols["readmitted"])
        return cols
    return edit


#: kind -> (edit, where, rule, row named in the report or None)
CASES: dict[str, tuple[Callable[[Table], Table], str, str, str | None]] = {
    "missing column": (_drop("ward"), "column ward", rules.MISSING_COLUMN, None),
    "extra column": (_add("notes"), "column notes", rules.EXTRA_COLUMN, None),
    "wrong type": (_text_column("lactate", 3, "high"), "column lactate", rules.WRONG_TYPE,
                   "row 4"),
    "unknown level": (_set("ward", 5, "cardiology"), "column ward", rules.UNKNOWN_LEVEL,
                      "row 6"),
    "unknown boolean spelling": (_text_column("smoker", 2, "sometimes"), "column smoker",
                                 rules.UNKNOWN_LEVEL, "row 3"),
    "out of range": (_set("lactate", 7, 25.0), "column lactate", rules.OUT_OF_RANGE, "row 8"),
    "negative out of range": (_set("lactate", 0, -1.0), "column lactate", rules.OUT_OF_RANGE,
                              "row 1"),
    "non-finite": (_set("lactate", 9, math.inf), "column lactate", rules.NON_FINITE, "row 10"),
    "missing without handling": (_set("ward", 4, None), "column ward", rules.MISSING_VALUE,
                                 "row 5"),
    "unknown class": (_set("readmitted", 6, "maybe"), "label column readmitted",
                      rules.UNKNOWN_CLASS, "row 7"),
    "missing label": (_set("readmitted", 1, None), "label column readmitted",
                      rules.MISSING_VALUE, "row 2"),
    "one row": (_keep(1), "data", rules.TOO_FEW_ROWS, None),
    "no rows": (_keep(0), "data", rules.TOO_FEW_ROWS, None),
    "single class": (_relabel("no"), "label", rules.SINGLE_CLASS, None),
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_good_file_loads_with_the_tasks_feature_layout(tmp_path: Path, fmt: str) -> None:
    loaded = task(tmp_path)
    data = load_site_data(loaded, write_table(tmp_path / f"site{fmt}", table(60)))
    assert data.x_train.shape[1] == 6  # lactate, lactate_missing, ward ×3, smoker
    assert data.num_train + data.num_test == 60 and data.x_train.dtype == np.float32
    assert set(data.y_train.tolist()) == {0, 1, 2}
    assert np.abs(data.x_train).max() <= 1.0
    assert data.summary.format == fmt.removeprefix(".")
    assert 0 < data.summary.missing_rates["lactate"] < 0.3
    assert data.summary.missing_rates["ward"] == 0.0


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(CASES))
def test_bad_data_is_refused_with_column_rule_and_rows(tmp_path: Path, fmt: str, kind: str
                                                       ) -> None:
    edit, where, rule, row = CASES[kind]
    path = write_table(tmp_path / f"site{fmt}", edit(table(40)))
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path), path)
    found = [p for p in info.value.report.problems if (p.where, p.rule) == (where, rule)]
    assert found, info.value.report.lines()
    if row is not None:
        assert found[0].at[0] == row and found[0].count == 1
    assert path.name in str(info.value) and "ward-readmission" in str(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_class_count_the_task_forbids_is_refused(tmp_path: Path, fmt: str) -> None:
    path = write_table(tmp_path / f"site{fmt}", table(40, classes=("no", "yes")))
    load_site_data(task(tmp_path), path)  # two classes: enough for the default rule
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path, min_classes=3), path)
    (problem,) = info.value.report.problems
    assert (problem.where, problem.rule) == ("label", rules.CLASS_COUNT)
    assert "2 classes" in problem.detail and "at least 3" in problem.detail


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unreadable_file_is_refused(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"site{fmt}"
    path.write_bytes(b"\xff\xfe\x00garbage\x81" * 20)
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path), path)
    assert info.value.report.problems[0].rule == rules.UNREADABLE


def test_other_files_are_refused(tmp_path: Path) -> None:
    for path, detail in ((tmp_path / "site.xlsx", "not a CSV"), (tmp_path / "nope.csv",
                                                                 "no such file")):
        if path.suffix == ".xlsx":
            path.write_bytes(b"x")
        with pytest.raises(DataRefused, match=detail):
            load_site_data(task(tmp_path), path)


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    path = write_table(tmp_path / "site.csv", table(20))
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0] + ",ward"] + [x + ",icu" for x in lines[1:]]) + "\n",
                    encoding="utf-8")
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path), path)
    assert ("column ward", rules.DUPLICATE_COLUMN) in [
        (p.where, p.rule) for p in info.value.report.problems]


def test_the_report_names_the_first_rows_and_counts_the_rest(tmp_path: Path) -> None:
    cols = table(40)
    for i in range(0, 40, 4):
        cols["lactate"][i] = 99.0
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path), write_table(tmp_path / "site.csv", cols))
    (problem,) = info.value.report.problems
    assert problem.at == ("row 1", "row 5", "row 9", "row 13", "row 17")
    assert problem.count == 10
    assert problem.line().endswith("(row 1, row 5, row 9, row 13, row 17 and 5 more)")
    # a refusal travels in clear: it names rows and the rule, never a value
    assert "99" not in str(info.value)


def test_missing_markers_zero_and_label_values_follow_the_task(tmp_path: Path) -> None:
    cols = table(30)
    cols["lactate"][0] = "?"  # declared missing marker (text column in the CSV)
    cols["readmitted"][2] = "9"  # an integer label value of "transferred", written as text
    data = load_site_data(task(tmp_path), write_table(tmp_path / "site.csv", cols))
    assert data.num_train + data.num_test == 30


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("text", ["5_5", "٥", "５", "1_0"])
def test_numbers_float_reads_but_ascii_does_not_are_refused(tmp_path: Path, fmt: str,
                                                            text: str) -> None:
    """A numeric cell (a CSV's text, a Parquet string column) is ASCII decimal or refused."""
    path = write_table(tmp_path / f"site{fmt}", _text_column("lactate", 2, text)(table(40)))
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path), path)
    assert [(p.where, p.rule, p.at) for p in info.value.report.problems] == [
        ("column lactate", rules.WRONG_TYPE, ("row 3",))]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_label_in_unicode_digits_is_no_class(tmp_path: Path, fmt: str) -> None:
    """``9`` labels "transferred"; ``٩`` and ``９`` (float() reads both as 9) do not."""
    cols = table(40)
    cols["readmitted"][2], cols["readmitted"][5] = "٩", "９"
    with pytest.raises(DataRefused) as info:
        load_site_data(task(tmp_path), write_table(tmp_path / f"site{fmt}", cols))
    assert [(p.where, p.rule, p.at) for p in info.value.report.problems] == [
        ("label column readmitted", rules.UNKNOWN_CLASS, ("row 3", "row 6"))]


def test_a_non_finite_encoded_feature_is_refused_naming_column_and_row(tmp_path: Path) -> None:
    """Defence in depth behind ``task check``: a task whose scaling overflows (built here without
    validation) turns every cell, 1e306 as well as 1.0, into an infinite feature; the site
    refuses it, naming the column and the rows."""
    loaded = task(tmp_path)
    assert isinstance(loaded.task, TabularTask)
    lactate = loaded.task.columns[0].model_copy(update={"range": (0, 1e308), "gain": 1000,
                                                        "missing": None})
    wide = loaded.task.model_copy(update={"columns": (lactate, *loaded.task.columns[1:])})
    cols = table(40)
    cols["lactate"] = [1.0] * 40
    cols["lactate"][3] = 1e306
    path = write_table(tmp_path / "site.csv", cols)
    with pytest.raises(DataRefused) as info:
        load_site_data(LoadedTask(wide, loaded.source, loaded.sha256), path)
    assert [(p.where, p.rule, p.at) for p in info.value.report.problems] == [
        ("column lactate", rules.NON_FINITE, tuple(f"row {i + 1}" for i in range(5)))]
    assert info.value.report.problems[0].count == 40
