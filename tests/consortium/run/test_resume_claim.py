"""Taking a run over on resume: one claimant wins a race, local-only runs are never continued as
federated runs, a run whose rounds were all recorded is closed, and every status change is in
the signed audit log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from consortium.audit.log import AuditLog
from consortium.audit.trail import RUN_RESUME, RUN_STOP
from consortium.errors import PlanError, RunTaken
from consortium.run.demo import check_demo_keys
from consortium.run.resume import claim, resume_plan
from consortium.store.owner import this_process
from consortium.store.records import (
    ENGINE_LOCAL,
    RUN_ABANDONED,
    RUN_COMPLETED,
    RUN_INTERRUPTED,
    RUN_RUNNING,
)
from consortium.store.run_store import RunStore
from site_node.demo import provision
from site_node.home import HOME_ENV as SITE_HOME_ENV
from tests.consortium.run.resumable import GONE, entries, left_behind

ROOT = Path(__file__).resolve().parents[3]


def test_of_two_resumes_that_read_the_same_run_one_claims_it_the_other_is_refused(
        tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store).run_id
    first, second = resume_plan(store, rid), resume_plan(store, rid)  # both read it resumable
    assert claim(*first) is None
    with pytest.raises(RunTaken, match=f"run {rid} was just taken by process {this_process()}"):
        claim(*second)
    with RunStore(store, readonly=True) as rs:
        run = rs.get_run(rid)
    assert (run.status, run.owner) == (RUN_RUNNING, this_process())
    assert entries(store, rid) == [(RUN_RESUME, {"next_round": 2})]  # the winner's only


_CLAIMANT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from consortium.run.resume import claim, resume_plan
    store, rid, go, out, end = (Path(a) for a in sys.argv[1:6])
    while not go.exists():
        time.sleep(0.005)
    try:
        claim(*resume_plan(store, str(rid)))
        result = "claimed"
    except Exception as exc:  # the refusal, reported to the test
        result = f"{type(exc).__name__}: {exc}"
    out.write_text(json.dumps(result))
    deadline = time.monotonic() + 120
    while not end.exists() and time.monotonic() < deadline:  # a winner stays alive (its claim)
        time.sleep(0.05)
""")


def test_concurrent_processes_racing_for_a_killed_run_exactly_one_claims_it(
        tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store, status=RUN_RUNNING, owner=GONE).run_id
    go, end = tmp_path / "go", tmp_path / "end"
    outs = [tmp_path / f"out{i}.json" for i in range(3)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMANT, str(store), rid, str(go),
                               str(out), str(end)], env=env, cwd=ROOT) for out in outs]
    try:
        time.sleep(1.0)
        go.touch()
        deadline = time.monotonic() + 180
        while not all(o.exists() for o in outs):
            assert time.monotonic() < deadline, "a claimant did not answer"
            assert all(p.poll() is None for p in procs), "a claimant died"
            time.sleep(0.1)
        results = [json.loads(o.read_text()) for o in outs]
    finally:
        end.touch()
        for p in procs:
            p.wait(timeout=60)
    assert results.count("claimed") == 1, results
    for r in results:
        assert r == "claimed" or "was just taken by process" in r or "still running" in r, r
    assert [k for k, _ in entries(store, rid)] == [RUN_RESUME]


def test_a_local_only_run_is_refused_and_abandoned_in_the_store_and_the_log(
        tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store, engine=ENGINE_LOCAL).run_id
    with pytest.raises(PlanError, match=f"run {rid} cannot be resumed: it is a local-only run"):
        resume_plan(store, rid)
    with RunStore(store, readonly=True) as rs:
        run = rs.get_run(rid)
    assert run.status == RUN_ABANDONED and "local-only run" in str(run.stop_reason)
    assert entries(store, rid) == [(RUN_STOP, {"status": RUN_ABANDONED,
                                               "reason": run.stop_reason})]


def test_the_automatic_choice_skips_local_only_runs(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    federated = left_behind(store, started_at="2026-12-01T00:00:00+00:00").run_id
    local = left_behind(store, engine=ENGINE_LOCAL, status=RUN_RUNNING,
                        started_at="2026-12-02T00:00:00+00:00").run_id  # the latest, killed
    plan, _point = resume_plan(store)
    assert plan.run_id == federated
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(local).status == RUN_RUNNING  # untouched


def test_only_local_only_runs_leave_nothing_to_resume(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    left_behind(store, engine=ENGINE_LOCAL)
    with pytest.raises(PlanError, match="holds no interrupted run"):
        resume_plan(store)


@pytest.mark.parametrize("status", [RUN_RUNNING, RUN_INTERRUPTED])
def test_a_run_killed_after_its_last_round_is_closed_as_completed_on_resume(
        tmp_path: Path, status: str) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store, rounds_planned=3, rounds_done=3, status=status).run_id
    plan, point = resume_plan(store)
    assert plan.run_id == rid and point.next_round == 4
    closed = claim(plan, point)
    assert closed is not None and closed.status == RUN_COMPLETED
    assert "completed all planned rounds" in closed.reason
    with RunStore(store, readonly=True) as rs:
        run = rs.get_run(rid)
    assert (run.status, run.stop_reason) == (RUN_COMPLETED, closed.reason)
    assert run.finished_at is not None
    assert entries(store, rid) == [(RUN_STOP, {"status": RUN_COMPLETED,
                                               "reason": closed.reason})]
    with pytest.raises(PlanError, match="is completed and cannot be resumed"):
        resume_plan(store, rid)


def test_a_run_abandoned_for_a_damaged_checkpoint_says_so_in_the_signed_log(
        tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store, rounds_done=2).run_id
    with RunStore(store) as rs, rs.db.transaction() as conn:
        conn.execute("UPDATE checkpoints SET sha256=? WHERE run_id=?", ("0" * 64, rid))
    with pytest.raises(PlanError, match="marked abandoned"):
        resume_plan(store, rid)
    ((kind, payload),) = entries(store, rid)
    assert kind == RUN_STOP and payload["status"] == RUN_ABANDONED
    assert "does not match its SHA-256" in str(payload["reason"])


def test_a_demo_sites_key_that_is_not_the_enrolled_one_is_refused_and_nothing_enrolled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "runs.sqlite"
    plan = left_behind(store)
    other = tmp_path / "other-site-homes"
    monkeypatch.setenv(SITE_HOME_ENV, str(other))
    provision("cleveland")  # another home: a fresh key for the same site
    with RunStore(store) as rs:
        log = AuditLog(rs.db)
        before = len(log.entries())
        with pytest.raises(PlanError, match=rf"run {plan.run_id}: site cleveland's home "
                                            rf"{other / 'demo' / 'cleveland'} .*holds receipt "
                                            r"key .*, but the key enrolled for it is "):
            check_demo_keys(log, plan.loaded.policy.sites, plan.run_id)
        assert len(log.entries()) == before
