"""Two runs started at the same moment, in two processes of one site home, cannot together pass
the site's lifetime ceiling (issue 14): admission and its reservation are one transaction under
the ledger's write lock, and a round's record shrinks the reservation in the same transaction."""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from site_node.errors import Refusal
from site_node.privacy import budget
from site_node.privacy.guard import SiteGuard
from site_node.privacy.ledger import SiteLedger
from site_node.settings import NodeSettings
from tests.site_node.factories import instruction, policy, site_home

WEIGHTS = [np.zeros((1, 3), np.float32), np.zeros(1, np.float32)]
LIFETIME_CEILING = 6.0
#: One run is calibrated to ε ≤ 5.2 over its rounds: one fits the lifetime ceiling, two do not.
RACE_POLICY: dict[str, Any] = {"epsilon_ceiling": 5.5, "lifetime_epsilon_ceiling":
                               LIFETIME_CEILING, "dp__target_epsilon": 5.2}


def _one_run(state_dir: str, run_id: str, rounds: int, start: Barrier, admitted: Barrier,
             results: mp.Queue[tuple[str, str]]) -> None:
    """Admit round 1 at the same moment as the other process, then train every round."""
    guard = SiteGuard(NodeSettings(site="hungary", data_path=None, state_dir=Path(state_dir),
                                   policy_path=None))
    loaded = policy(**RACE_POLICY, rounds=rounds)
    start.wait(timeout=60)
    try:
        first = guard.admit(instruction(run_id, 1, loaded, rounds), num_examples=100)
    except Refusal as exc:
        admitted.wait(timeout=60)
        results.put((run_id, f"refused: {exc}"))
        return
    admitted.wait(timeout=60)  # both admissions are done before either round is recorded
    guard.record(first, weights=WEIGHTS, mechanism=first.plan.mechanism, num_examples=100)
    for rnd in range(2, rounds + 1):
        try:
            later = guard.admit(instruction(run_id, rnd, loaded, rounds), num_examples=100)
        except Refusal as exc:  # a run refused part-way: its first round was spent
            results.put((run_id, f"refused in round {rnd} after training: {exc}"))
            return
        guard.record(later, weights=WEIGHTS, mechanism=later.plan.mechanism, num_examples=100)
    results.put((run_id, "trained"))


@pytest.mark.slow
@pytest.mark.parametrize("rounds", [1, 2])
def test_two_runs_racing_in_two_processes_never_pass_the_lifetime_ceiling(
    tmp_path: Path, rounds: int
) -> None:
    home = site_home(tmp_path)
    ctx = mp.get_context("spawn")
    start, admitted = ctx.Barrier(2), ctx.Barrier(2)
    results: mp.Queue[tuple[str, str]] = ctx.Queue()
    procs = [ctx.Process(target=_one_run, args=(str(home.state_dir), run, rounds, start, admitted,
                                                results)) for run in ("run-a", "run-b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0, 0]
    outcome = dict(results.get(timeout=5) for _ in procs)
    with SiteLedger.in_state_dir(home.state_dir, readonly=True) as ledger:
        life = budget.lifetime(ledger)
    assert life is not None and life.epsilon <= LIFETIME_CEILING, outcome
    trained = [r for r, what in outcome.items() if what == "trained"]
    assert len(trained) == 1, outcome
    (refused,) = set(outcome) - set(trained)
    assert "lifetime ceiling" in outcome[refused] and "reserved by 1 other run" in outcome[
        refused]
    with SiteLedger.in_state_dir(home.state_dir, readonly=True) as ledger:
        assert ledger.run_ids() == trained and len(ledger.events()) == rounds
        assert [r.run_id for r in ledger.refusals()] == [refused]
