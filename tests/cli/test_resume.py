"""``consortium run --resume`` through its real entry point: what it refuses, and that a refused
or lost resume starts nothing (no Ray, no training, nothing claimed); a run whose rounds were all
recorded is closed. ``consortium run`` refuses the same data at two sites."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from consortium.audit.log import ENROLMENT, AuditLog
from consortium.audit.trail import RUN_STOP
from consortium.cli import main as consortium_main
from consortium.run.data_fingerprint import SHORT, fingerprint_path
from consortium.store.records import RUN_COMPLETED, RUN_INTERRUPTED, RUN_RUNNING
from consortium.store.run_store import RunStore
from policies.example import load_example
from site_node.home import HOME_ENV as SITE_HOME_ENV
from tests.cli.invoke import Outcome, invoke
from tests.consortium.run.resumable import GONE, entries, left_behind

HEART = load_example("heart-disease")
RIVAL = "rival-host:4242"
Run = Callable[..., Outcome]


@pytest.fixture
def ray_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ray starts are recorded (not made); training is forbidden."""
    import consortium.run.ray_session as ray_session
    import consortium.run.simulation as simulation

    calls: list[str] = []
    monkeypatch.setattr(ray_session, "start_in_background", lambda *_: calls.append("bg"))
    monkeypatch.setattr(ray_session, "start", lambda *_: calls.append("start"))

    def no_training(*_: object, **__: object) -> None:
        raise AssertionError("sites were asked to train")

    monkeypatch.setattr(simulation, "simulate", no_training)
    return calls


@pytest.fixture
def consortium(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
               ray_calls: list[str]) -> Run:
    """``consortium ARGS`` in-process, with Ray and training forbidden."""

    def run(*args: str) -> Outcome:
        return invoke(consortium_main, "consortium", list(args), capsys, monkeypatch)

    return run


@pytest.mark.parametrize("option", [["--policy", "p.yaml"], ["--rounds", "3"], ["--seed", "0"],
                                    ["--example-site-policies"]])
def test_resume_refuses_the_options_it_cannot_apply(consortium: Run, tmp_path: Path,
                                                    ray_calls: list[str],
                                                    option: list[str]) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store).run_id
    result = consortium("run", "--resume", "--store", str(store), *option)
    assert result.code == 2, result.output
    assert option[0] in result.err and "keeps the policy, rounds, seed" in result.err
    assert ray_calls == []
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(rid).status == RUN_INTERRUPTED


def test_a_resume_that_loses_the_race_for_the_run_starts_nothing(
        consortium: Run, tmp_path: Path, ray_calls: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import consortium.run.resume as resume

    store = tmp_path / "runs.sqlite"
    rid = left_behind(store).run_id
    read = resume.resume_plan

    def read_then_rival_claims(*args: object, **kw: object) -> object:
        found = read(*args, **kw)  # type: ignore[arg-type]
        with RunStore(store) as rs, rs.db.transaction() as conn:  # another process claims it
            conn.execute("UPDATE runs SET status=?, owner=? WHERE run_id=?",
                         (RUN_RUNNING, RIVAL, rid))
        return found

    monkeypatch.setattr(resume, "resume_plan", read_then_rival_claims)
    result = consortium("run", "--resume", "--run", rid, "--store", str(store))
    assert result.code == 1, result.output
    assert f"run {rid} was just taken by process {RIVAL}" in result.err
    assert "Traceback" not in result.output
    assert ray_calls == []
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(rid).owner == RIVAL
    assert entries(store, rid) == []  # the loser wrote nothing


def test_resume_closes_a_run_killed_after_its_last_round(consortium: Run, tmp_path: Path,
                                                         ray_calls: list[str]) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store, rounds_planned=3, rounds_done=3, status=RUN_RUNNING,
                      owner=GONE).run_id
    result = consortium("run", "--resume", "--store", str(store))
    assert result.code == 0, result.output
    out = " ".join(result.out.split())
    assert "all 3 planned rounds were recorded" in out and "Nothing was trained" in out
    assert "Run ended: completed" in out
    assert ray_calls == []
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(rid).status == RUN_COMPLETED
    ((kind, payload),) = entries(store, rid)
    assert kind == RUN_STOP and payload["status"] == RUN_COMPLETED


def _heart_data(**replaced: Path) -> list[str]:
    args = []
    for site, path in HEART.data.items():
        args += ["--data", f"{site}={replaced.get(site, path)}"]
    return args


def test_resume_refuses_a_site_whose_data_changed(consortium: Run, tmp_path: Path,
                                                  ray_calls: list[str]) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store).run_id
    changed = tmp_path / "hungary.csv"
    lines = HEART.data["hungary"].read_text(encoding="utf-8").splitlines(keepends=True)
    changed.write_text("".join(lines[:-1]), encoding="utf-8")  # one patient fewer
    result = consortium("run", "--resume", "--store", str(store), "--task", str(HEART.task),
                        *_heart_data(hungary=changed))
    assert result.code == 2, result.output
    err = " ".join(result.err.split())
    assert f"run {rid}: the data of site hungary changed" in err
    assert fingerprint_path(HEART.data["hungary"])[:SHORT] in err
    assert fingerprint_path(changed)[:SHORT] in err
    assert ray_calls == []
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(rid).status == RUN_INTERRUPTED
    assert entries(store, rid) == []


def test_resume_with_other_site_homes_is_refused_and_provisions_no_key(
        consortium: Run, tmp_path: Path, ray_calls: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store).run_id
    with RunStore(store, readonly=True) as rs:
        enrolments = len([e for e in AuditLog(rs.db).entries() if e.kind == ENROLMENT])
    elsewhere = tmp_path / "other-site-homes"
    monkeypatch.setenv(SITE_HOME_ENV, str(elsewhere))
    result = consortium("run", "--resume", "--store", str(store))
    assert result.code == 2, result.output
    err = " ".join(result.err.split())
    assert f"run {rid}: site cleveland's home {elsewhere / 'demo' / 'cleveland'}" in err
    assert "has no receipt key" in err and "the key enrolled for it is" in err
    assert not elsewhere.exists()  # nothing provisioned
    assert ray_calls == []
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(rid).status == RUN_INTERRUPTED
        assert len([e for e in AuditLog(rs.db).entries() if e.kind == ENROLMENT]) == enrolments


@pytest.mark.parametrize("how", ["same file", "a copy"])
def test_a_new_run_refuses_the_same_data_at_two_sites(consortium: Run, tmp_path: Path,
                                                      how: str) -> None:
    store = tmp_path / "runs.sqlite"
    twin = HEART.data["cleveland"]
    if how == "a copy":
        twin = Path(shutil.copy(twin, tmp_path / "renamed.csv"))
    result = consortium("run", "--store", str(store), "--task", str(HEART.task),
                        *_heart_data(long_beach=twin))
    assert result.code == 2, result.output
    err = " ".join(result.err.split())
    assert "sites cleveland and long_beach are given the same" in err
    assert str(twin) in err and "nothing was trained" in err
    assert not store.exists()


def test_resume_refuses_another_examples_data(consortium: Run, tmp_path: Path,
                                              ray_calls: list[str]) -> None:
    store = tmp_path / "runs.sqlite"
    rid = left_behind(store).run_id  # heart disease
    result = consortium("run", "--resume", "--store", str(store), "--example", "digits")
    assert result.code == 2, result.output
    assert f"run {rid} trains task heart-disease" in " ".join(result.err.split())
    assert ray_calls == []
    with RunStore(store, readonly=True) as rs:
        assert rs.get_run(rid).status == RUN_INTERRUPTED


def test_a_new_run_refuses_data_an_earlier_run_trained_as_another_sites(
        consortium: Run, tmp_path: Path, ray_calls: list[str]) -> None:
    store = tmp_path / "runs.sqlite"
    earlier = left_behind(store).run_id  # the heart-disease sites, each with its own file
    swapped = _heart_data(cleveland=HEART.data["hungary"], hungary=HEART.data["cleveland"])
    result = consortium("run", "--store", str(store), "--task", str(HEART.task), *swapped)
    assert result.code == 2, result.output
    err = " ".join(result.err.split())
    assert (f"the data of site hungary ({HEART.data['cleveland']}, sha256 "
            f"{fingerprint_path(HEART.data['cleveland'])[:SHORT]}…) were trained as site "
            f"cleveland's in run {earlier}") in err
    with RunStore(store, readonly=True) as rs:
        assert [r.run_id for r in rs.list_runs()] == [earlier]
