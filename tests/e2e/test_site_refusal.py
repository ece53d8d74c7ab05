"""A site whose lifetime budget is spent refuses before training; SecAgg+ completes without it.

Real Flower simulation, real SecAgg+ (with the consortium's ChaCha20 masks, so the server must
reconstruct the refusing site's pairwise masks from shares), real admission control.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from consortium.keys import site_state_dir
from consortium.plan import make_plan
from consortium.simulation import simulate
from consortium.store import RunStore
from site_node.ledger import SiteLedger

pytestmark = pytest.mark.slow


def test_a_refusing_site_spends_nothing_and_the_round_completes(
    tmp_path: Path, _isolated_consortium_home: Path
) -> None:
    swiss = site_state_dir("switzerland", _isolated_consortium_home)
    swiss.mkdir(parents=True)
    (swiss / "policy.yaml").write_text(
        "version: 1\nsite: switzerland\nlifetime_epsilon_ceiling: 0.5\n"
    )
    plan = make_plan(store_path=tmp_path / "runs.sqlite", rounds=1)
    outcome = simulate(plan)
    assert outcome.status == "completed" and outcome.rounds_ok == 1
    with RunStore(plan.store_path, readonly=True) as store:
        (rnd,) = store.rounds(plan.run_id)
    trained = {s.site for s in rnd.sites if s.trained}
    assert trained == {"cleveland", "hungary", "long_beach"}
    assert rnd.status == "ok" and rnd.accuracy_mean is not None
    with SiteLedger.in_state_dir(swiss) as ledger:
        assert ledger.lifetime_epsilon(1e-5) == 0.0  # refused: nothing spent


def test_a_halted_secure_aggregation_is_recorded_as_a_failed_round(
    tmp_path: Path, _isolated_consortium_home: Path
) -> None:
    for site in ("cleveland", "hungary", "long_beach", "switzerland"):
        state = site_state_dir(site, _isolated_consortium_home)
        state.mkdir(parents=True)
        (state / "policy.yaml").write_text(
            f"version: 1\nsite: {site}\nlifetime_epsilon_ceiling: 0.5\n"
        )
    plan = make_plan(store_path=tmp_path / "runs.sqlite", rounds=1)
    outcome = simulate(plan)
    assert (outcome.status, outcome.reason) == ("failed", "no round completed")
    with RunStore(plan.store_path, readonly=True) as store:
        (rnd,) = store.rounds(plan.run_id)
        run = store.get_run(plan.run_id)
    assert rnd.status == "failed" and "secure aggregation halted" in (rnd.failure_reason or "")
    assert rnd.sites == () and run.status == "failed"
