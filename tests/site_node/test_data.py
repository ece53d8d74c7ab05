"""Loading, the fixed stratified split, site-local preprocessing, and data a site refuses."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from site_node.data import heart_disease as sd
from site_node.errors import DataError
from tests.site_node.data_files import single_class, with_value


@pytest.mark.parametrize("site", sd.SITE_IDS)
def test_split_is_fixed_stratified_and_disjoint(site: str) -> None:
    a, b = sd.load_site(site), sd.load_site(site)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    n = a.num_train + a.num_test
    assert n == len(sd.read_rows(sd.embedded_csv(), site))
    assert a.num_test == pytest.approx(n * sd.TEST_FRACTION, abs=2)
    # stratified: the positive rate of train and test differ by at most one example's worth
    assert abs(a.y_train.mean() - a.y_test.mean()) < 2.0 / a.num_test


def test_site_sizes_match_the_provenance() -> None:
    sizes = {s: len(sd.read_rows(sd.embedded_csv(), s)) for s in sd.SITE_IDS}
    assert sizes == {"cleveland": 303, "hungary": 294, "long_beach": 200, "switzerland": 123}
    assert sd.file_sha256(sd.embedded_csv()) == sd.EMBEDDED_SHA256


def test_every_site_has_the_same_feature_layout() -> None:
    widths = {sd.load_site(s).x_train.shape[1] for s in sd.SITE_IDS}
    assert widths == {sd.NUM_FEATURES}
    assert len(set(sd.feature_names())) == sd.NUM_FEATURES


def test_train_features_are_scaled_with_train_statistics_only() -> None:
    d = sd.load_site("cleveland")
    numeric = d.x_train[:, : len(sd.NUMERIC)]
    np.testing.assert_allclose(numeric.mean(axis=0), 0.0, atol=1e-5)
    assert not np.isnan(d.x_train).any() and not np.isnan(d.x_test).any()
    # the test split is not standardised to exactly zero mean: its statistics were not used
    assert np.abs(d.x_test[:, : len(sd.NUMERIC)].mean(axis=0)).max() > 1e-3


def test_switzerland_zero_cholesterol_is_missing_not_zero() -> None:
    rows = sd.read_rows(sd.embedded_csv(), "switzerland")
    zero = [r for r in rows if r["chol"].strip() in ("0", "0.0")]
    assert zero, "the fixture expects Switzerland's 0 cholesterol records"
    raw = sd._raw_matrix(rows)
    assert np.isnan(raw[:, sd.NUMERIC.index("chol")]).all()
    d = sd.load_site("switzerland")
    ind = sd.feature_names().index("chol_missing")
    assert d.x_train[:, ind].min() == 1.0  # every Swiss record flagged missing


def test_unknown_site_and_missing_rows_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown site 'mars'"):
        sd.load_site("mars")
    empty = tmp_path / "empty.csv"
    with sd.embedded_csv().open() as src, empty.open("w", newline="") as dst:
        header = next(csv.reader(src))
        csv.writer(dst).writerow(header)
    with pytest.raises(DataError, match="no rows for site 'hungary'"):
        sd.load_site("hungary", empty)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,age\n1,2\n")
    with pytest.raises(DataError, match="missing column"):
        sd.load_site("hungary", bad)
    with pytest.raises(DataError, match="cannot read"):
        sd.load_site("hungary", tmp_path / "nope.csv")


@pytest.mark.parametrize(("column", "value"), [
    ("chol", "inf"), ("age", "-inf"), ("oldpeak", "1e999"), ("chol", "nan"), ("age", "NaN"),
])
def test_a_non_finite_value_is_refused(tmp_path: Path, column: str, value: str) -> None:
    path = with_value(tmp_path, "hungary", column, value)
    with pytest.raises(DataError, match="site hungary"):
        sd.load_site("hungary", path)


@pytest.mark.parametrize(("column", "value"), [("age", "sixty"), ("num", "1.5"), ("num", "")])
def test_a_value_that_is_not_a_number_is_refused(tmp_path: Path, column: str, value: str
                                                 ) -> None:
    with pytest.raises(DataError, match="not a finite number"):
        sd.load_site("hungary", with_value(tmp_path, "hungary", column, value))


def test_an_empty_cell_is_missing_not_an_error(tmp_path: Path) -> None:
    d = sd.load_site("hungary", with_value(tmp_path, "hungary", "chol", ""))
    assert np.isfinite(d.x_train).all() and np.isfinite(d.x_test).all()


def test_a_single_class_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs both classes"):
        sd.load_site("hungary", single_class(tmp_path, "hungary"))
