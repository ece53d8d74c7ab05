"""The heart-disease example's files and its task: the fixed split, the fixed feature layout and
the task-fixed preprocessing (nothing computed from a site's records)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from policies.example import load_example
from policies.task import TabularTask
from policies.task_columns import NumericColumn
from site_node.data import load_site_data
from tests.site_node.data_files import heart_task

SITES = ("cleveland", "hungary", "long_beach", "switzerland")
#: The SHA-256 of the UCI copy the example's four files were split from (PROVENANCE.md).
ORIGINAL_SHA256 = "82aa62057fc07d031c4370b5d3c7153a5a79fe7cecd6e2b9504b1b1af6612758"


def task() -> TabularTask:
    t = heart_task().task
    assert isinstance(t, TabularTask)
    return t


def test_the_four_files_reassemble_the_provenance_file_byte_for_byte() -> None:
    files = load_example("heart-disease").data
    assert tuple(files) == SITES
    header, rows, sizes = b"", [], {}
    for site, path in files.items():
        lines = path.read_bytes().splitlines(keepends=True)
        header, rows = lines[0], rows + lines[1:]
        sizes[site] = len(lines) - 1
    assert sizes == {"cleveland": 303, "hungary": 294, "long_beach": 200, "switzerland": 123}
    rows.sort(key=lambda line: int(line.split(b",")[0]))
    assert hashlib.sha256(header + b"".join(rows)).hexdigest() == ORIGINAL_SHA256


@pytest.mark.parametrize("site", SITES)
def test_split_is_fixed_stratified_and_disjoint(site: str) -> None:
    loaded = heart_task()
    a = load_site_data(loaded, load_example("heart-disease").data[site])
    b = load_site_data(loaded, load_example("heart-disease").data[site])
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    n = a.num_train + a.num_test
    assert n == a.summary.rows
    assert a.num_test == pytest.approx(n * 0.25, abs=2)
    # stratified: the positive rate of train and test differ by at most one example's worth
    assert abs(a.y_train.mean() - a.y_test.mean()) < 2.0 / a.num_test


def test_every_site_has_the_task_feature_layout_of_the_old_embedded_model() -> None:
    names = task().feature_names()
    assert len(names) == 29 and len(set(names)) == 29
    widths = {load_site_data(heart_task(), p).x_train.shape[1]
              for p in load_example("heart-disease").data.values()}
    assert widths == {29}
    indicated = {n.removesuffix("_missing") for n in names if n.endswith("_missing")}
    assert indicated == {"trestbps", "chol", "fbs", "thalch", "exang", "oldpeak", "ca"}


def test_features_are_the_declared_scaling_of_a_known_row() -> None:
    # First Cleveland record: age 63, Male, typical angina, trestbps 145, chol 233, fbs TRUE,
    # lv hypertrophy, thalch 150, exang FALSE, oldpeak 2.3, downsloping, ca 0, fixed defect.
    d = load_site_data(heart_task(), load_example("heart-disease").data["cleveland"])
    names = task().feature_names()
    x = np.vstack([d.x_train, d.x_test])
    # gain · (value − center) / (hi − lo), every figure declared in the task file
    row = x[np.isclose(x[:, names.index("age")], 4 * (63 - 55) / 100)
            & np.isclose(x[:, names.index("chol")], 4 * (233 - 240) / 650)]
    assert len(row) == 1
    r = dict(zip(names, row[0].tolist(), strict=True))
    assert r["trestbps"] == pytest.approx(4 * (145 - 130) / 140)
    assert r["oldpeak"] == pytest.approx(4 * (2.3 - 0.5) / 10, abs=1e-6)
    assert (r["sex"], r["fbs"], r["exang"]) == (1.0, 1.0, 0.0)
    assert r["cp=typical angina"] == 1.0 and r["thal=fixed defect"] == 1.0
    assert r["chol_missing"] == 0.0
    assert np.abs(x).max() <= 4.0  # every value inside its declared range (gain 4)


def test_preprocessing_uses_no_statistic_of_the_sites_data() -> None:
    # The same record encodes to the same features whatever else the file holds.
    loaded = heart_task()
    files = load_example("heart-disease").data
    encoded = [load_site_data(loaded, files[s]) for s in ("cleveland", "hungary")]
    for d in encoded:
        numeric = d.x_train[:, [task().feature_names().index(c.name)
                                for c in task().columns if isinstance(c, NumericColumn)]]
        # not standardised by the site: its mean is not zero, unlike a site-fitted scaler's
        assert np.abs(numeric.mean(axis=0)).max() > 0.05


def test_switzerland_zero_cholesterol_is_missing_and_imputed_with_the_declared_value() -> None:
    d = load_site_data(heart_task(), load_example("heart-disease").data["switzerland"])
    names = task().feature_names()
    assert d.x_train[:, names.index("chol_missing")].min() == 1.0  # every Swiss record
    chol = next(c for c in task().columns if c.name == "chol")
    assert isinstance(chol, NumericColumn) and chol.missing is not None
    np.testing.assert_allclose(d.x_train[:, names.index("chol")],
                               chol.scale(float(chol.missing.impute)), rtol=1e-6)
    assert d.summary.missing_rates["chol"] == 1.0
