"""The convergence check and the conservative budget projection."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consortium.run.convergence import ConvergenceCheck, budget_allows
from site_node.privacy import accountant
from site_node.protocol.mechanism import Mechanism

MECH = Mechanism(noise_multiplier=1.5, sample_rate=0.25, steps=4, max_grad_norm=1.0,
                 accountant="rdp")


def test_target_accuracy_stops() -> None:
    check = ConvergenceCheck(target_accuracy=0.8)
    assert check.observe(0.7) is None
    assert "target accuracy reached" in (check.observe(0.81) or "")


def test_patience_counts_rounds_without_improvement() -> None:
    check = ConvergenceCheck(patience=2, min_delta=0.01)
    assert check.observe(0.70) is None
    assert check.observe(0.705) is None  # below min_delta: stale 1
    assert "no improvement for 2" in (check.observe(None) or "")  # a failed round: stale 2


def test_an_improvement_resets_patience() -> None:
    check = ConvergenceCheck(patience=2)
    assert check.observe(0.70) is None
    assert check.observe(0.69) is None
    assert check.observe(0.75) is None  # improved: stale 0
    assert check.observe(0.74) is None
    assert check.observe(None) is not None


def test_no_criteria_never_stops() -> None:
    check = ConvergenceCheck()
    assert all(check.observe(a) is None for a in (0.5, 0.4, 0.3, None))


@settings(deadline=None, max_examples=20)
@given(st.integers(0, 30))
def test_budget_projection_is_monotone(attempted: int) -> None:
    _, eps_now = budget_allows(mechanism=MECH, rounds_attempted=attempted, delta=1e-5,
                               ceiling=100.0)
    _, eps_next = budget_allows(mechanism=MECH, rounds_attempted=attempted + 1, delta=1e-5,
                                ceiling=100.0)
    assert eps_next >= eps_now


def test_budget_projection_is_the_one_epsilon_computation() -> None:
    _, eps = budget_allows(mechanism=MECH, rounds_attempted=2, delta=1e-5, ceiling=100.0)
    assert eps == accountant.epsilon([MECH] * 3, delta=1e-5, accountant="rdp")


def test_budget_refuses_the_round_that_would_pass_the_ceiling() -> None:
    ok, eps1 = budget_allows(mechanism=MECH, rounds_attempted=0, delta=1e-5, ceiling=10.0)
    assert ok
    ok, _ = budget_allows(mechanism=MECH, rounds_attempted=0, delta=1e-5, ceiling=eps1 * 0.99)
    assert not ok
