"""AppTest runs of every page of the dashboard against fixture stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from consortium.audit.log import AuditLog
from consortium.store.records import RoundRecord
from consortium.store.run_store import RunStore
from dashboard import data
from tests.dashboard.page_runner import PAGES, chart_titled, charts, metrics, run_page, texts
from tests.dashboard.stores import (
    SITE_NAMES,
    SITES,
    ok_round,
    plan,
    run_record,
    site_record,
    write_run,
)

#: The pages of one run (the Comparison page shows comparisons: test_comparison_page.py).
ALL_PAGES = [p for p in PAGES if p != "comparison"]
TITLES = {"overview": "Overview", "privacy": "Privacy budget",
          "participation": "Participation and secure aggregation", "audit": "Audit"}


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
    assert {m.delta for m in at.metric if m.label in SITE_NAMES} == {"majority class 50.0%"}


def test_overview_flags_a_model_that_does_not_beat_the_majority_class(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    p = plan("r-useless", 1)
    with RunStore(path) as store:
        store.start_run(run_record(p, started_at="2025-01-01T10:00:00+00:00"))
        store.record_round(p.run_id, ok_round(1, [
            site_record(s, 1, majority_rate=0.58 + 0.01 * k if k < 2 else 0.1)
            for k, s in enumerate(SITES)]))
    at = run_page(path, "overview")
    assert not at.exception
    (error,) = at.error
    assert "does not beat the majority-class rate at" in error.value
    assert SITE_NAMES[0] in error.value and SITE_NAMES[1] in error.value
    assert SITE_NAMES[2] not in error.value


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
    # The embedded policy's δ and per-run ceiling, as the run recorded them.
    assert "δ = 1e-05" in page and "ε = 1" in page
    assert "linear estimate" in page and "conservative" in page


def test_participation_failed_round_and_dropout(failed_store: Path) -> None:
    at = run_page(failed_store, "participation")
    _ok(at, "participation")
    _, part = chart_titled(at, "Participation per round")
    state = {(r.round, r.site): r.participation for r in part.itertuples()}
    assert state[(2, "hungary")] == "dropped out"
    assert state[(3, "cleveland")] == "round failed"
    assert state[(4, "long_beach")] == "did not train"
    assert state[(5, "switzerland")] == "did not train"
    assert state[(1, "switzerland")] == "took part"
    _, dur = chart_titled(at, "Time per round")
    assert list(dur["status"]) == ["ok", "ok", "failed", "ok", "ok"]
    page = texts(at)
    assert "Round 3 failed: secure aggregation halted" in page
    assert "Dropouts: Hungary (Budapest) (round 2)" in page


def test_participation_shows_the_secagg_parameters_of_the_policy(failed_store: Path) -> None:
    """The SecAgg+ metrics come from the run's recorded parameters, under the policy's own
    field names (``timeout_s``; the old page read ``timeout`` and always showed a dash)."""
    at = run_page(failed_store, "participation")
    _ok(at, "participation")
    shown = metrics(at)
    assert shown["Shares"] == "3" and shown["Reconstruction threshold"] == "2"
    assert shown["Timeout (s)"] == "120"
    assert shown["Clipping range"] == "8.0"


def test_participation_names_every_refusal_and_its_reason(failed_store: Path) -> None:
    at = run_page(failed_store, "participation")
    _ok(at, "participation")
    refusals = [w.value for w in at.warning if "refused" in w.value]
    assert refusals == ["Round 5: Switzerland (Zurich/Basel) refused: site switzerland refuses "
                        "run run-fail: the next round would bring its lifetime ε to 6.1 > "
                        "lifetime ceiling 6"]


def test_overview_failed_run(failed_store: Path) -> None:
    at = run_page(failed_store, "overview")
    _ok(at, "overview")
    _, acc = chart_titled(at, "Global accuracy")
    assert 3 not in set(acc["round"])  # the failed round has no accuracy
    assert "Failed rounds 1" in texts(at)


def test_audit_page_without_audit_log(failed_store: Path) -> None:
    """A store without an audit log fails closed: the verdict says the trail does not verify
    and why, no mechanism is shown as signed, no report is offered."""
    at = run_page(failed_store, "audit")
    _ok(at, "audit")
    assert "AUDIT VERIFICATION FAILED" in at.error[0].value
    assert "ChainBroken" in at.error[0].value
    assert at.code[0].value == "the audit log does not begin by enrolling the consortium key"
    with RunStore(failed_store, readonly=True) as store:
        assert store.get_run("run-fail").policy_sha256 in [c.value for c in at.code]
    page = texts(at)
    assert "No site has signed a receipt for this run" in page
    assert "no audit log entries" in page
    assert not at.dataframe  # nothing signed to show
    assert not at.get("download_button")


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
        expected = ("No site has signed a receipt" if page == "audit"
                    else "No round has been recorded")
        assert expected in texts(at)


def test_header_shows_the_run_mode(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.sqlite") as store:
        write_run(store, "demo-run", rounds=1, demo=True, started_at="2025-01-02T00:00:00+00:00")
        write_run(store, "deployed-run", rounds=1, started_at="2025-01-01T00:00:00+00:00")
    demo = texts(run_page(store.path, "overview"))
    assert "mode `local-demo`" in demo and "Local demonstration" in demo
    deployed = texts(run_page(store.path, "overview", run_id="deployed-run"))
    assert "mode `deployment`" in deployed and "Local demonstration" not in deployed


# -- the audit tables of an audited store (two genuine runs) ---------------------------------


def _table(at: AppTest, column: str) -> pd.DataFrame:
    """The one table of the page that has ``column``."""
    found = [df.value for df in at.dataframe if column in df.value.columns]
    assert len(found) == 1, [list(df.value.columns) for df in at.dataframe]
    return found[0]


@pytest.mark.parametrize("run_id", ["run-early", "run-late"])
def test_audit_tables_are_the_selected_runs_rows_in_order(audited_store: Path,
                                                          run_id: str) -> None:
    with RunStore(audited_store, readonly=True) as store:
        log = AuditLog(store.db)
        expected_seq = [e.seq for e in log.entries(run_id)]
        expected_receipts = [(r.round, r.site) for r in log.receipts(run_id)]
        other = [e.seq for e in log.entries() if e.run_id not in (run_id, None)]
    assert expected_seq and expected_receipts and other  # both runs have rows
    at = run_page(audited_store, "audit", run_id=run_id)
    _ok(at, "audit")
    entries = _table(at, "entry_hash")
    receipts = _table(at, "receipt_json")
    assert list(entries["seq"]) == expected_seq == sorted(expected_seq)
    assert set(entries["run_id"]) == {run_id}
    assert list(zip(receipts["round"], receipts["site"], strict=True)) == expected_receipts
    assert set(receipts["run_id"]) == {run_id}
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download audit_log (CSV)" in labels and "Download receipts (CSV)" in labels


def test_refusal_of_a_real_round_reaches_the_participation_page(audited_store: Path) -> None:
    at = run_page(audited_store, "participation", run_id="run-early")
    _ok(at, "participation")
    page = texts(at)
    for rnd in (1, 2):
        assert (f"Round {rnd}: Switzerland (Zurich/Basel) refused: site switzerland refuses: "
                "lifetime ceiling") in page
        assert f"Round {rnd} failed: only 3 site(s) trained" in page
    late = texts(run_page(audited_store, "participation", run_id="run-late"))
    assert "refused" not in late


def test_a_run_whose_process_was_killed_is_shown_as_killed_not_live(live_store: Path) -> None:
    """A run still recorded as running whose process on this host is gone (SIGKILL, a crash)
    is not shown as live: it says so and how to resume it."""
    import socket

    with RunStore(live_store) as store, store.db.transaction() as conn:
        conn.execute("UPDATE runs SET owner=?", (f"{socket.gethostname()}:999999999",))
    at = run_page(live_store, "overview")
    _ok(at, "overview")
    assert not at.get("progress")  # no "round 4 of 10 in progress"
    shown = texts(at)
    assert "killed" in shown
    assert "consortium run --resume --run run-live" in shown


def test_a_killed_local_only_run_is_not_offered_a_resume(live_store: Path) -> None:
    """A comparison's local-only run is never resumed (a resume marks it abandoned): the page
    says to run the comparison again instead."""
    import socket

    with RunStore(live_store) as store, store.db.transaction() as conn:
        conn.execute("UPDATE runs SET owner=?, engine='local'",
                     (f"{socket.gethostname()}:999999999",))
    shown = texts(run_page(live_store, "overview"))
    assert "killed" in shown and "consortium compare" in shown
    assert "--resume" not in shown
