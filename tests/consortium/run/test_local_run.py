"""A site's local-only run goes through the real site code (guard, admission, ledger, signed
receipts) and is a run of the store like any other: rounds, receipts, audit entries, verified."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from consortium.audit.verify import verify_store
from consortium.run.inputs import resolve_inputs
from consortium.run.local_run import LocalRun
from consortium.run.plan import RunPlan, make_plan_from_policy
from consortium.store.records import ENGINE_LOCAL, MODE_DEMO, RUN_COMPLETED, RUN_FAILED
from consortium.store.run_store import RunStore
from site_node.demo import demo_settings, provision
from site_node.privacy import accountant
from site_node.privacy.ledger import SiteLedger


def digits_plan(tmp_path: Path, rounds: int = 2) -> RunPlan:
    inputs = resolve_inputs(example="digits")
    return make_plan_from_policy(inputs.policy, inputs.task, store_path=tmp_path / "r.sqlite",
                                 rounds=rounds, seed=1, demo=True)


def test_a_local_run_trains_through_the_site_and_is_recorded_and_verified(tmp_path: Path
                                                                          ) -> None:
    plan = digits_plan(tmp_path)
    data = resolve_inputs(example="digits").data["clinic_a"]
    outcome = LocalRun(plan, demo_settings("clinic_a", data_path=data)).run(2)
    assert (outcome.status, outcome.rounds_ok) == (RUN_COMPLETED, 2)
    assert outcome.run_id != plan.run_id
    with RunStore(plan.store_path, readonly=True) as store:
        run = store.get_run(outcome.run_id)
        rounds = store.rounds(outcome.run_id)
        assert store.last_checkpoint(outcome.run_id) is not None
    assert (run.engine, run.mode, run.sites, run.status) == (ENGINE_LOCAL, MODE_DEMO,
                                                             ("clinic_a",), RUN_COMPLETED)
    assert run.policy_sha256 == plan.policy_sha256 and run.task_sha256 == plan.task.sha256
    assert [r.status for r in rounds] == ["ok", "ok"]
    figures = [r.sites[0] for r in rounds]
    assert all(f.trained and f.site == "clinic_a" and f.accuracy is not None for f in figures)
    result = verify_store(plan.store_path, run_id=outcome.run_id)
    assert len(result.checks) == 2 and result.modes[outcome.run_id] == MODE_DEMO
    with SiteLedger.in_state_dir(provision("clinic_a").state_dir, readonly=True) as ledger:
        events = ledger.events(outcome.run_id)
    assert [e.round for e in events] == [1, 2]
    assert events[0].mechanism.noise_multiplier == pytest.approx(plan.noise_multiplier)
    assert figures[-1].epsilon == pytest.approx(accountant.epsilon(
        [e.mechanism for e in events], delta=1e-5, accountant="rdp"))


def test_a_site_that_refuses_its_local_run_spends_nothing_and_the_run_says_why(
        tmp_path: Path) -> None:
    plan = digits_plan(tmp_path)
    own = tmp_path / "own.yaml"
    own.write_text("site: clinic_b\nepsilon_ceiling: 9.0\n", encoding="utf-8")  # loosens
    settings = demo_settings("clinic_b", data_path=resolve_inputs(example="digits").data[
        "clinic_b"])
    outcome = LocalRun(plan, replace(settings, policy_path=own)).run(2)
    assert (outcome.status, outcome.rounds_ok) == (RUN_FAILED, 0)
    with RunStore(plan.store_path, readonly=True) as store:
        run = store.get_run(outcome.run_id)
        (rnd,) = store.rounds(outcome.run_id)
    assert run.status == RUN_FAILED and "clinic_b did not train" in (run.stop_reason or "")
    assert rnd.sites[0].refusal is not None and not rnd.sites[0].trained
    assert "epsilon_ceiling" in (rnd.sites[0].refusal or "")
    ledger_file = provision("clinic_b").state_dir / "ledger.sqlite"
    if ledger_file.exists():
        with SiteLedger(ledger_file, readonly=True) as ledger:
            assert ledger.events() == []
    verify_store(plan.store_path, run_id=outcome.run_id)
