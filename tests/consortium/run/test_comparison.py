"""The comparison table: every model evaluated on every site's test split by the site code;
own and union counts, training counts per class; recorded in the store and the export."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from consortium.run.comparison import (
    accuracy,
    compare_models,
    majority_rate,
    missing_classes,
    summary_line,
)
from consortium.run.inputs import resolve_inputs
from consortium.store.comparisons import comparisons, record_comparison
from consortium.store.export import export_run
from consortium.store.records import (
    MODEL_FEDERATED,
    MODEL_LOCAL,
    SCOPE_OWN,
    SCOPE_UNION,
    ComparisonCell,
    ComparisonRecord,
)
from consortium.store.run_store import RunStore
from site_node.data import load_site_data
from tests.dashboard.stores import plan, run_record

DIGITS = resolve_inputs(example="digits")


def always(k: int) -> list[np.ndarray]:
    """A logistic model over 64 pixels that always predicts class ``k``."""
    bias = np.zeros(10, np.float32)
    bias[k] = 5.0
    return [np.zeros((10, 64), np.float32), bias]


def cells() -> tuple[ComparisonCell, ...]:
    local = {"clinic_a": always(0), "clinic_b": always(1), "clinic_c": always(2)}
    return compare_models(DIGITS.task, DIGITS.data, always(9), local)


def test_counts_follow_the_models_and_the_test_sets() -> None:
    table = cells()
    assert len(table) == 3 * 4 * 10
    tests = {s: load_site_data(DIGITS.task, p) for s, p in DIGITS.data.items()}
    for c in table:
        own = tests[c.site].y_test
        union = np.concatenate([d.y_test for d in tests.values()])
        labels = own if c.scope == SCOPE_OWN else union
        assert c.total == int((labels == c.class_index).sum())
        predicted = 9 if c.model == MODEL_FEDERATED else {"clinic_a": 0, "clinic_b": 1,
                                                          "clinic_c": 2}[c.site]
        assert c.correct == (c.total if c.class_index == predicted else 0)
        assert c.site_train_count == int((tests[c.site].y_train == c.class_index).sum())
        assert c.class_name == str(c.class_index)


def test_missing_classes_and_pooled_accuracy() -> None:
    table = cells()
    assert missing_classes(table, "clinic_a") == {1, 3, 7}
    assert missing_classes(table, "clinic_b") == {2, 5, 8}
    assert missing_classes(table, "clinic_c") == {4, 6, 9}
    fed_nines = accuracy(table, site="clinic_c", scope=SCOPE_OWN, model=MODEL_FEDERATED,
                         classes={9})
    assert fed_nines == 1.0
    share = accuracy(table, site="clinic_a", scope=SCOPE_UNION, model=MODEL_LOCAL)
    zeros = sum(c.total for c in table if (c.site, c.scope, c.model, c.class_index) == (
        "clinic_a", SCOPE_UNION, MODEL_LOCAL, 0))
    assert share == zeros / 447
    assert accuracy(table, site="nowhere", scope=SCOPE_OWN, model=MODEL_LOCAL) is None


def test_a_comparison_is_recorded_and_exported_with_each_run_it_ties(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    p = plan("fed", 1)
    with RunStore(path) as store:
        for rid in ("fed", "loc-a", "other"):
            store.start_run(run_record(plan(rid, 1), started_at="2026-11-28T00:00:00+00:00"))
        record = ComparisonRecord("cmp-1", "2026-11-28T01:00:00+00:00", p.task.sha256, "fed",
                                  {"clinic_a": "loc-a"}, cells()[:40])
        record_comparison(store.db, record)
        (back,) = comparisons(store.db)
        assert replace(back, cells=()) == replace(record, cells=())
        assert set(back.cells) == set(record.cells) and len(back.cells) == 40
        assert comparisons(store.db, "loc-a") == [back]
        assert comparisons(store.db, "other") == []
        exported = export_run(store, "fed")
        assert export_run(store, "other")["comparisons"] == []
    (cmp,) = exported["comparisons"]
    assert cmp["federated_run_id"] == "fed" and cmp["local_runs"] == {"clinic_a": "loc-a"}
    assert len(cmp["results"]) == 40
    first = cmp["results"][0]
    assert set(first) == {"site", "scope", "model", "class_index", "class_name", "correct",
                          "total", "accuracy", "site_train_count"}
    assert first["accuracy"] == (first["correct"] / first["total"] if first["total"] else None)


def test_the_summary_line_flags_models_that_predict_one_class() -> None:
    table = cells()
    line = summary_line(table, tuple(DIGITS.data))
    assert line.startswith("Summary, all classes, each site's own test set (mean of 3 sites)")
    # each model predicts a single digit: none beats any site's majority-class rate
    assert "the local-only model does not beat the majority class at clinic_a, clinic_b, " \
           "clinic_c" in line
    assert "the federated model does not beat the majority class at clinic_a" in line
    for site in DIGITS.data:
        rate = majority_rate(table, site=site)
        assert rate is not None and 0.1 <= rate < 0.2


def test_the_summary_line_says_nothing_is_wrong_with_a_useful_model() -> None:
    table = tuple(replace(c, correct=c.total) if c.model == MODEL_FEDERATED else c
                  for c in cells())
    line = summary_line(table, tuple(DIGITS.data))
    assert "federated 1.000" in line and "federated ahead at 3 of 3" in line
    assert "WARNING: the federated" not in line and "WARNING: the local-only" in line


def test_a_task_with_a_site_indicator_is_evaluated_as_its_sites_trained_it() -> None:
    """Heart disease appends a one-hot of the site: each site's test rows get their own, so a
    model that reads only the indicator predicts each site's own class."""
    heart = resolve_inputs(example="heart-disease")
    sites = list(heart.data)
    model_task = heart.task.task.for_members(tuple(sites))
    width = model_task.input_shape[0] - heart.task.task.input_shape[0]
    assert width == len(sites)
    weight = np.zeros((2, model_task.input_shape[0]), np.float32)
    weight[1, -width:] = [10.0 if i % 2 else -10.0 for i in range(width)]  # odd sites: class 1
    model = [weight, np.zeros(2, np.float32)]
    table = compare_models(heart.task, heart.data, model, {sites[0]: model})
    tests = {s: load_site_data(heart.task, p) for s, p in heart.data.items()}
    for c in table:
        if c.scope == SCOPE_OWN:
            predicted = sites.index(c.site) % 2
            assert c.correct == (c.total if c.class_index == predicted else 0), c
            assert c.total == int((tests[c.site].y_test == c.class_index).sum())
