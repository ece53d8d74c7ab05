"""The Comparison page: a per-class heat map of each site's local-only model against the
federated model, read from the store only."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard.page_runner import charts, run_page, texts


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Local versus federated"]


def test_a_store_without_comparison_says_how_to_make_one(one_run_store: Path) -> None:
    at = run_page(one_run_store, "comparison")
    _ok(at)
    assert "consortium compare --example digits" in texts(at)
    assert not charts(at)


@pytest.mark.parametrize(("store", "message"), [("missing_store", "No run store at"),
                                                ("empty_store", "holds no run yet")])
def test_missing_or_empty_stores_explain_themselves(store: str, message: str,
                                                    request: pytest.FixtureRequest) -> None:
    at = run_page(request.getfixturevalue(store), "comparison")
    _ok(at)
    assert message in texts(at) and not charts(at)


def test_the_heat_map_shows_local_and_federated_per_site_and_class(comparison_store: Path
                                                                   ) -> None:
    at = run_page(comparison_store, "comparison", run_id="fed")
    _ok(at)
    ((spec, frame),) = charts(at)
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "text"]
    assert spec["layer"][0]["encoding"]["color"]["field"] == "accuracy"
    assert len(frame) == 3 * 2 * 10  # own test sets: 3 sites × 2 models × 10 classes
    rows = set(frame["row"])
    assert rows == {f"{s} · {m}" for s in ("clinic_a", "clinic_b", "clinic_c")
                    for m in ("local", "federated")}
    fed_nine = frame[(frame["model"] == "federated") & (frame["class_name"] == "9")]
    assert set(fed_nine["accuracy"]) == {1.0}
    unseen = frame[(frame["site_name"] == "clinic_a") & (frame["model"] == "local")
                   & (frame["class_name"] == "3")]
    assert unseen["label"].iloc[0] == "0%*" and unseen["site_train_count"].iloc[0] == 0
    page = texts(at)
    assert "Federated run `fed`" in page and "`loc-a`" in page
    summary = at.dataframe[0].value
    assert list(summary["site"]) == ["clinic_a", "clinic_b", "clinic_c"]
    assert list(summary["classes never trained"]) == ["1, 3, 7", "2, 5, 8", "4, 6, 9"]
    assert summary["local: never-trained classes"].tolist() == [0.0, 0.0, 0.0]
    assert summary["federated: never-trained classes"].iloc[2] == pytest.approx(1 / 3, abs=0.05)


def test_the_union_scope_and_a_local_run_select_the_same_comparison(comparison_store: Path
                                                                    ) -> None:
    at = run_page(comparison_store, "comparison", run_id="loc-b")
    _ok(at)
    at.radio[0].set_value("union").run()
    ((_, frame),) = charts(at)
    assert set(frame["model"]) == {"local", "federated"} and len(frame) == 60
    assert frame[frame["class_name"] == "0"]["total"].iloc[0] == 45  # 15 per site's test set
    other = run_page(comparison_store, "comparison", run_id="unrelated")
    _ok(other)
    assert "not part of a comparison" in texts(other) and charts(other)
