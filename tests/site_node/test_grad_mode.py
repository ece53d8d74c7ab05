"""The site chooses its Opacus per-sample gradient mode: the fastest one whose per-sample norms
match an exact reference and that survives an empty Poisson batch; once per process."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from site_node import grad_mode
from site_node.errors import TrainingError


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 3))


def _batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=gen), torch.arange(n) % 3


def test_reference_norms_match_the_closed_form_of_a_linear_softmax_model() -> None:
    model = _linear()
    x, y = _batch(6)
    layer = model[0]
    assert isinstance(layer, nn.Linear)
    p = torch.softmax(layer(x), dim=1).double()
    err = p - nn.functional.one_hot(y, 3).double()
    # d loss / dW = err x^T and d loss / db = err: the norm is |err| * sqrt(|x|^2 + 1).
    expected = err.norm(dim=1) * (x.double().pow(2).sum(1) + 1).sqrt()
    got = grad_mode.reference_norms(model, x, y)
    assert torch.allclose(got, expected, rtol=1e-6)


def test_a_working_mode_is_chosen_and_every_candidate_is_reported() -> None:
    model = _linear()
    before = [t.clone() for t in model.parameters()]
    mode, seen = grad_mode.choose(model, *_batch())
    assert mode in grad_mode.CANDIDATES and isinstance(seen[mode], float)
    assert set(seen) == set(grad_mode.CANDIDATES)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_mode_that_cannot_take_an_empty_batch_is_dropped_with_its_reason() -> None:
    # Opacus' expanded weights refuse a batch of 0 samples, which Poisson sampling can draw.
    _, seen = grad_mode.choose(_linear(), *_batch(), candidates=("hooks", "ew"))
    assert isinstance(seen["hooks"], float)
    assert isinstance(seen["ew"], str) and "Batch size" in seen["ew"]


def test_an_unknown_mode_is_dropped_not_fatal() -> None:
    mode, seen = grad_mode.choose(_linear(), *_batch(), candidates=("no-such-mode", "hooks"))
    assert mode == "hooks" and isinstance(seen["no-such-mode"], str)


def test_norms_that_disagree_drop_every_mode_and_the_error_names_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grad_mode, "RTOL", -1.0)
    with pytest.raises(TrainingError) as info:
        grad_mode.choose(_linear(), *_batch())
    for mode in grad_mode.CANDIDATES:
        assert f"{mode}:" in str(info.value)
    assert "disagree" in str(info.value)


def test_the_choice_is_made_once_per_process_and_model_shape(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []

    def counting(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                 ) -> tuple[str, dict[str, float | str]]:
        calls.append(tuple(x.shape))
        return "hooks", {"hooks": 0.0}

    monkeypatch.setattr(grad_mode, "_CHOSEN", {})
    monkeypatch.setattr(grad_mode, "choose", counting)
    for _ in range(3):
        assert grad_mode.mode_for(_linear(), input_shape=(5,), num_classes=3,
                                  batch_size=40) == "hooks"
    grad_mode.mode_for(_linear(), input_shape=(5,), num_classes=3, batch_size=80)
    assert calls == [(40, 5), (80, 5)]


def test_max_relative_difference() -> None:
    ref = torch.tensor([1.0, 2.0])
    assert grad_mode.max_relative_difference(torch.tensor([1.0, 2.2]), ref) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shapes differ"):
        grad_mode.max_relative_difference(torch.ones(3), ref)
    assert math.isclose(grad_mode.max_relative_difference(ref, ref), 0.0)
