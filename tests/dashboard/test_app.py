"""AppTest runs of every page of the dashboard against fixture stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import SITE_NAMES, SITES, write_run
from page_runner import PAGES, chart_titled, charts, run_page, texts
from streamlit.testing.v1 import AppTest

from consortium.store import RunStore
from dashboard import data

ALL_PAGES = list(PAGES)
TITLES = {"overview": "Overview", "privacy": "Privacy budget",
          "participation": "Participation and secure aggregation", "audit": "Audit"}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    data.load_runs.clear()
    data.load_run.clear()
    data.load_audit_tables.clear()


def _ok(at: AppTest, page: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == [TITLES[page]]


@pytest.mark.parametrize("page", ALL_PAGES)
def test_missing_store_explains_itself(missing_store: Path, page: str) -> None:
    at = run_page(missing_store, page)
    _ok(at, page)
    assert len(at.error) == 1
    assert "No run store at" in at.error[0].value and str(missing_store) in at.error[0].value
    assert not at.get("vega_lite_chart")


@pytest.mark.parametrize("page", ALL_PAGES)
def test_empty_store_says_no_run(empty_store: Path, page: str) -> None:
    at = run_page(empty_store, page)
    _ok(at, page)
    assert not at.error
    assert any("holds no run yet" in i.value for i in at.info)
    assert not at.selectbox  # nothing to choose


@pytest.mark.parametrize("store", ["garbage_store", "partial_store"])
@pytest.mark.parametrize("page", ["overview", "privacy"])
def test_unreadable_store_is_an_error_not_a_traceback(
    store: str, page: str, request: pytest.FixtureRequest
) -> None:
    at = run_page(request.getfixturevalue(store), page)
    _ok(at, page)
    assert len(at.error) == 1
    assert "cannot be read" in at.error[0].value


def test_locked_store_is_an_error(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        write_run(store, "r", rounds=2)
    path = tmp_path / "runs.sqlite"
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("PRAGMA journal_mode=DELETE")
    lock.execute("BEGIN EXCLUSIVE")
    try:
        at = run_page(path, "overview")
    finally:
        lock.rollback()
        lock.close()
    _ok(at, "overview")
    assert "locked" in texts(at)


def test_overview_one_run(one_run_store: Path) -> None:
    at = run_page(one_run_store, "overview")
    _ok(at, "overview")
    assert not at.error
    spec, acc = chart_titled(at, "Global accuracy")
    assert sorted(acc["round"].unique()) == [1, 2, 3, 4, 5]
    assert set(acc["aggregate"]) == {"weighted by test examples", "mean of sites"}
    assert "tooltip" in spec["encoding"]
    _, loss = chart_titled(at, "Global loss")
    assert len(loss) == 10
    spec, sites = chart_titled(at, "Accuracy at each site")
    assert len(sites) == 20 and set(sites["site_name"]) == set(SITE_NAMES)
    assert spec["encoding"]["color"]["scale"]["domain"] == list(SITE_NAMES)
    labels = [m.label for m in at.metric]
    for name in SITE_NAMES:
        assert name in labels
    assert "5 / 5" in texts(at)
    assert not at.get("progress")  # not live


def test_overview_several_runs_lists_and_switches(several_runs_store: Path) -> None:
    at = run_page(several_runs_store, "overview")
    _ok(at, "overview")
    runs_table = at.dataframe[0].value
    assert list(runs_table["run_id"]) == ["run-c", "run-b", "run-a"]
    assert at.selectbox[0].value == "run-c"
    _, sites = chart_titled(at, "Accuracy at each site")
    assert "oslo" in set(sites["site_name"])  # unknown site shown by its id
    at.selectbox[0].select("run-b").run()
    _ok(at, "overview")
    _, acc = chart_titled(at, "Global accuracy")
    assert acc["round"].max() == 6
    assert "badge[stopped]" in texts(at)


def test_site_colours_consistent_across_pages(several_runs_store: Path) -> None:
    scales = []
    for page, title in [("overview", "Accuracy at each site"),
                        ("privacy", "Cumulative privacy loss ε per site")]:
        spec, _ = chart_titled(run_page(several_runs_store, page), title)
        enc = spec["encoding"] if "encoding" in spec else spec["layer"][0]["encoding"]
        scales.append(enc["color"]["scale"])
    assert scales[0] == scales[1]
    assert scales[0]["domain"][:4] == list(SITE_NAMES)


def test_privacy_page(one_run_store: Path) -> None:
    at = run_page(one_run_store, "privacy")
    _ok(at, "privacy")
    spec, eps = chart_titled(at, "Cumulative privacy loss ε per site")
    assert len(eps) == 20 and set(eps["site_name"]) == set(SITE_NAMES)
    rule = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rule"]
    assert rule, "ceiling rule missing"
    budget = at.dataframe[0].value
    assert list(budget["site_name"]) == list(SITE_NAMES)
    assert (budget["remaining"] >= 0).all() and budget["rounds_affordable"].notna().all()
    page = texts(at)
    assert "δ = 1e-05" in page and "ε = 8" in page
    assert "linear estimate" in page and "conservative" in page


def test_participation_failed_round_and_dropout(failed_store: Path) -> None:
    at = run_page(failed_store, "participation")
    _ok(at, "participation")
    _, part = chart_titled(at, "Participation per round")
    state = {(r.round, r.site): r.participation for r in part.itertuples()}
    assert state[(2, "hungary")] == "dropped out"
    assert state[(3, "cleveland")] == "round failed"
    assert state[(4, "long_beach")] == "did not train"
    assert state[(1, "switzerland")] == "took part"
    _, dur = chart_titled(at, "Time per round")
    assert list(dur["status"]) == ["ok", "ok", "failed", "ok", "ok"]
    page = texts(at)
    assert "Round 3 failed: too few sites" in page
    assert "Dropouts: Hungary (Budapest) (round 2)" in page
    assert [m.value for m in at.metric][:2] == ["4", "3"]  # shares, threshold


def test_overview_failed_run(failed_store: Path) -> None:
    at = run_page(failed_store, "overview")
    _ok(at, "overview")
    _, acc = chart_titled(at, "Global accuracy")
    assert 3 not in set(acc["round"])  # the failed round has no accuracy
    assert "Failed rounds 1" in texts(at)


def test_audit_page_without_receipts(failed_store: Path) -> None:
    at = run_page(failed_store, "audit")
    _ok(at, "audit")
    assert at.code[0].value == "ab" * 32
    mech = at.dataframe[0].value
    assert {"noise_multiplier", "sample_rate", "steps", "max_grad_norm"} <= set(mech.columns)
    assert len(mech) == 15
    page = texts(at)
    assert "not available in this store yet" in page
    assert not at.get("download_button")


def test_audit_page_shows_receipts_table(one_run_store: Path) -> None:
    with sqlite3.connect(one_run_store) as conn:
        conn.execute("CREATE TABLE receipts (run_id TEXT, round INTEGER, site TEXT, sig TEXT)")
        conn.executemany("INSERT INTO receipts VALUES (?,?,?,?)",
                         [("run-one", 1, s, "sig") for s in SITES] + [("other", 1, "x", "s")])
    at = run_page(one_run_store, "audit")
    _ok(at, "audit")
    receipts = at.dataframe[1].value
    assert len(receipts) == 4 and set(receipts["site"]) == set(SITES)
    assert "not available in this store yet" not in texts(at)
    assert len(at.get("download_button")) == 1  # the CSV; no auditor report yet


@pytest.mark.parametrize("page", ALL_PAGES)
def test_live_run_every_page(live_store: Path, page: str) -> None:
    at = run_page(live_store, page)
    _ok(at, page)
    progress = at.get("progress")
    assert len(progress) == 1 and "round 4 of 10 in progress" in progress[0].proto.text
    if page != "audit":
        assert charts(at)


def test_live_run_shows_new_rounds(live_store: Path) -> None:
    at = run_page(live_store, "overview")
    assert "3 / 10" in texts(at)
    from conftest import site_record

    from consortium.records import RoundRecord

    with RunStore(live_store) as store:
        store.record_round("run-live", RoundRecord(
            round=4, status="ok", started_at="2025-01-05T10:04:00+00:00",
            finished_at="2025-01-05T10:05:00+00:00", duration_s=60.0, accuracy_mean=0.7,
            accuracy_weighted=0.71, loss_mean=0.5, loss_weighted=0.5,
            sites=tuple(site_record(s, 4) for s in SITES)))
    data.load_run.clear()  # the real app waits out the cache's TTL instead
    at.run()
    _ok(at, "overview")
    assert "4 / 10" in texts(at)
    _, acc = chart_titled(at, "Global accuracy")
    assert acc["round"].max() == 4


def test_run_without_rounds(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        write_run(store, "fresh", rounds=0, status="running")
    for page in ALL_PAGES:
        at = run_page(store.path, page)
        _ok(at, page)
        expected = "No site has reported" if page == "audit" else "No round has been recorded"
        assert expected in texts(at)
