"""DP-SGD training with real Opacus: the mechanism actually run is what the ledger composes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from site_node.data import load_site
from site_node.model import build_model, initial_weights, set_weights
from site_node.privacy.accountant import epsilon
from site_node.training import TrainPlan, evaluate, train_dp
from tests.privacy_reference import rdp_epsilon


def plan(**over: Any) -> TrainPlan:
    base: dict[str, Any] = dict(noise_multiplier=1.2, sample_rate=0.25, max_grad_norm=1.0,
                                local_epochs=1, learning_rate=1.0, accountant="rdp",
                                delta=1e-5)
    return TrainPlan(**{**base, **over})


def test_rounds_compose_and_match_an_independent_accountant() -> None:
    data = load_site("hungary")
    weights = initial_weights(0)
    mechanisms = []
    for _ in range(3):
        result = train_dp(weights, data, plan())
        assert result.mechanism.steps == 4  # 1 epoch at q = 0.25
        assert result.mechanism == plan().mechanism
        weights = result.weights
        mechanisms.append(result.mechanism)
    eps = [epsilon(mechanisms[: i + 1], delta=1e-5, accountant="rdp") for i in range(3)]
    assert eps[0] < eps[1] < eps[2]
    assert eps[2] == pytest.approx(rdp_epsilon([(1.2, 0.25, 4)] * 3, 1e-5), rel=0.01)
    assert not all(np.allclose(a, b) for a, b in zip(weights, initial_weights(0), strict=True))


def test_the_plan_states_steps_from_epochs_and_sampling() -> None:
    p = plan(local_epochs=2, sample_rate=0.2)
    assert p.steps == 10 and p.mechanism.steps == 10
    result = train_dp(initial_weights(0), load_site("switzerland"), p)
    assert result.mechanism.steps == 10


def test_training_learns_something() -> None:
    data = load_site("cleveland")
    w = initial_weights(1)
    _, before = evaluate(w, data.x_test, data.y_test)
    for _ in range(5):
        w = train_dp(w, data, plan(noise_multiplier=0.8)).weights
    _, after = evaluate(w, data.x_test, data.y_test)
    assert after > max(before, 0.7)


def test_noise_is_drawn_afresh_every_round() -> None:
    data = load_site("hungary")
    a = train_dp(initial_weights(0), data, plan()).weights
    b = train_dp(initial_weights(0), data, plan()).weights
    assert not np.allclose(a[0], b[0])


def test_weights_of_the_wrong_shape_are_refused() -> None:
    model = build_model()
    with pytest.raises(ValueError, match="expected 2 weight arrays"):
        set_weights(model, initial_weights(0)[:1])
    with pytest.raises(ValueError, match="shape"):
        set_weights(model, [np.zeros((1, 3), np.float32), np.zeros(1, np.float32)])
