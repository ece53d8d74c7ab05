"""DP-SGD training: real Opacus, ε recorded per round, refusal before any training."""

from __future__ import annotations

import numpy as np
import pytest

from site_node import training
from site_node.accounting import SiteAccountant
from site_node.data import load_site
from site_node.model import initial_weights
from site_node.training import BudgetExceeded, TrainPlan, evaluate, train_dp
from tests.privacy_reference import rdp_epsilon


def plan(**over: float) -> TrainPlan:
    base = dict(noise_multiplier=1.2, sample_rate=0.25, max_grad_norm=1.0, local_epochs=1,
                learning_rate=1.0, accountant="rdp", delta=1e-5, epsilon_ceiling=10.0)
    base.update(over)
    return TrainPlan(**base)  # type: ignore[arg-type]


def test_rounds_compose_in_one_accountant_and_match_an_independent_one() -> None:
    data = load_site("hungary")
    acc = SiteAccountant(accountant="rdp")
    weights = initial_weights(0)
    eps = []
    for _ in range(3):
        result = train_dp(weights, data, plan(), acc)
        assert result.mechanism.steps == 4  # 1 epoch at q = 0.25
        weights = result.weights
        eps.append(result.epsilon)
    assert eps[0] < eps[1] < eps[2]
    assert eps[2] == pytest.approx(rdp_epsilon([(1.2, 0.25, 4)] * 3, 1e-5), rel=0.01)
    assert not all(np.allclose(a, b) for a, b in zip(weights, initial_weights(0), strict=True))


def test_training_learns_something() -> None:
    data = load_site("cleveland")
    acc = SiteAccountant(accountant="rdp")
    w = initial_weights(1)
    _, before = evaluate(w, data.x_test, data.y_test)
    for _ in range(5):
        w = train_dp(w, data, plan(noise_multiplier=0.8, epsilon_ceiling=100.0), acc).weights
    _, after = evaluate(w, data.x_test, data.y_test)
    assert after > max(before, 0.7)


def test_over_budget_round_is_refused_before_training(monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_site("switzerland")
    acc = SiteAccountant(accountant="rdp", history=[(1.2, 0.25, 4)])
    before = acc.history
    ceiling = acc.epsilon(1e-5) + 0.01  # the next round would pass it
    calls: list[tuple[object, ...]] = []
    def spy(*args: object) -> float:
        calls.append(args)
        return 0.0

    monkeypatch.setattr(training, "_run_epochs", spy)
    with pytest.raises(BudgetExceeded, match="refused before training"):
        train_dp(initial_weights(0), data, plan(epsilon_ceiling=ceiling), acc)
    assert calls == [] and acc.history == before
