"""No demonstration without asking: the server creates and enrols site keys only in an
explicit local-demo run, and marks that run and every enrolment it made as such. A run store it
cannot use is refused before anything is trained."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Context, RecordDict
from flwr.server import LegacyContext, ServerConfig

from consortium.audit import registry
from consortium.audit.log import AuditLog
from consortium.errors import ConsortiumError, PlanError, StoreError
from consortium.home import open_home
from consortium.run.demo import check_store
from consortium.run.plan import RunPlan, make_plan, plan_from_run_config
from consortium.run.workflow import ConsortiumWorkflow
from consortium.store.database import Database
from consortium.store.records import MODE_DEMO, MODE_DEPLOYMENT
from consortium.store.run_store import RunStore
from site_node.home import HOME_ENV as SITE_HOME_ENV
from tests.consortium.audit_fixture import site_key

SITES = ("cleveland", "hungary", "long_beach", "switzerland")


class NoGrid:
    """A grid nothing may touch: the run must end before it is used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the grid was used ({name}) before the run was refused")


def legacy() -> LegacyContext:
    return LegacyContext(context=Context(run_id=1, node_id=0, node_config={},
                                         state=RecordDict(), run_config={}),
                         config=ServerConfig(num_rounds=1))


def workflow(plan: RunPlan) -> tuple[ConsortiumWorkflow, list[int]]:
    wf = ConsortiumWorkflow(plan)
    calls: list[int] = []
    wf.fit_workflow = lambda grid, context: calls.append(1)  # type: ignore[assignment]
    return wf, calls


def site_enrolments(store: Path) -> list[dict[str, Any]]:
    with RunStore(store, readonly=True) as rs:
        return [e.payload for e in AuditLog(rs.db).entries()
                if e.kind == "enrolment" and e.payload.get("role") == "site"]


def receipt_keys(root: Path) -> list[Path]:
    return sorted(root.rglob("receipt-key*.pem"))


def test_the_run_config_is_not_a_demo_unless_it_says_so() -> None:
    assert not plan_from_run_config({}).demo
    assert plan_from_run_config({}).mode == MODE_DEPLOYMENT
    assert not plan_from_run_config({"demo": False}).demo
    assert plan_from_run_config({"demo": True}).mode == MODE_DEMO
    with pytest.raises(PlanError, match="demo: must be true or false"):
        plan_from_run_config({"demo": "yes"})
    assert not make_plan().demo
    with pytest.raises(PlanError, match="local demonstration only"):
        make_plan(example_site_policies=True)


def test_a_deployment_run_without_enrolled_sites_fails_before_training_and_creates_no_key(
    tmp_path: Path,
) -> None:
    site_home = Path(os.environ[SITE_HOME_ENV])
    plan = make_plan(store_path=tmp_path / "runs.sqlite", rounds=1)
    wf, calls = workflow(plan)
    with pytest.raises(ConsortiumError, match="have no enrolled keys") as err:
        wf(NoGrid(), legacy())  # type: ignore[arg-type]
    for site in SITES:
        assert site in str(err.value)
    assert calls == [] and wf.outcome is None
    assert receipt_keys(tmp_path) == [] and not site_home.exists()
    assert site_enrolments(plan.store_path) == []
    with RunStore(plan.store_path, readonly=True) as rs:
        assert rs.list_runs() == []  # not even started


def test_the_error_names_only_the_sites_that_are_missing(tmp_path: Path) -> None:
    plan = make_plan(store_path=tmp_path / "runs.sqlite", rounds=1)
    with RunStore(plan.store_path) as rs:
        log = AuditLog(rs.db, key=open_home().signing_key())
        registry.enrol(log, "cleveland", site_key(1).public_key(), mode=MODE_DEPLOYMENT)
        registry.enrol(log, "hungary", site_key(2).public_key(), mode=MODE_DEPLOYMENT)
    wf, calls = workflow(plan)
    with pytest.raises(ConsortiumError, match=r"site\(s\) long_beach, switzerland have no"):
        wf(NoGrid(), legacy())  # type: ignore[arg-type]
    assert calls == [] and receipt_keys(tmp_path) == []


def test_a_demo_run_marks_itself_and_every_enrolment_local_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = make_plan(store_path=tmp_path / "runs.sqlite", rounds=1, demo=True)
    executed: list[str] = []
    monkeypatch.setattr(ConsortiumWorkflow, "_execute",
                        lambda self, *args: executed.append(self.plan.run_id))
    wf, _ = workflow(plan)
    wf(NoGrid(), legacy())  # type: ignore[arg-type]
    assert executed == [plan.run_id]
    enrolled = site_enrolments(plan.store_path)
    assert sorted(p["subject"] for p in enrolled) == list(SITES)
    assert {p["mode"] for p in enrolled} == {MODE_DEMO}
    with RunStore(plan.store_path, readonly=True) as rs:
        (start,) = [e.payload for e in AuditLog(rs.db).entries() if e.kind == "run-start"]
        assert start["mode"] == MODE_DEMO
        assert rs.get_run(plan.run_id).mode == MODE_DEMO
    assert len(receipt_keys(tmp_path / "site-home")) == 2 * len(SITES)  # private + public


def test_the_workflow_needs_a_legacy_context(tmp_path: Path) -> None:
    wf, _ = workflow(make_plan(store_path=tmp_path / "runs.sqlite", rounds=1))
    with pytest.raises(TypeError, match="LegacyContext"):
        wf(NoGrid(), Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),  # type: ignore[arg-type]
                             run_config={}))


def newer_store(path: Path) -> Path:
    Database(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    return path


@pytest.mark.parametrize("demo", [False, True])
def test_a_store_of_a_newer_version_is_refused_before_training(tmp_path: Path,
                                                               demo: bool) -> None:
    plan = make_plan(store_path=newer_store(tmp_path / "runs.sqlite"), rounds=1, demo=demo)
    with pytest.raises(StoreError, match="newer version"):
        check_store(plan)
    wf, calls = workflow(plan)
    with pytest.raises(StoreError, match="newer version"):
        wf(NoGrid(), legacy())  # type: ignore[arg-type]
    assert calls == [] and receipt_keys(tmp_path) == []


def test_a_store_signed_by_another_consortium_is_refused_before_training(
    tmp_path: Path
) -> None:
    from consortium.errors import AuditLogError

    path = tmp_path / "runs.sqlite"
    with RunStore(path) as rs:
        AuditLog(rs.db, key=open_home(tmp_path / "other-home").signing_key())
    plan = make_plan(store_path=path, rounds=1, demo=True)
    with pytest.raises(AuditLogError, match="signed by consortium key"):
        check_store(plan)
    wf, calls = workflow(plan)
    with pytest.raises(AuditLogError):
        wf(NoGrid(), legacy())  # type: ignore[arg-type]
    assert calls == [] and receipt_keys(tmp_path) == []
