"""Book-keeping clipping: per-sample norms and clipped sums equal Opacus' (hooks mode), the
noise and the accounting are Opacus' own, and unsupported layers are refused so the selector
drops the mode."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from policies.task_loader import parse_task
from site_node import bookkeeping, grad_mode
from site_node.data.dataset import SiteData
from site_node.data.summary import DataSummary
from site_node.resnet import ResNet18GN
from site_node.training import TrainPlan, train_dp
from tests.policies.task_data import digits_data


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(4, 8), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1, bias=False),
                         nn.GroupNorm(4, 16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 3))


def _models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    return {"linear": (nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), (1, 8, 8)),
            "mlp": (nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)), (5,)),
            "cnn": (_cnn(), (1, 16, 16)),
            "resnet": (ResNet18GN(1, 3, 16, (8, 8, 16, 16), 4), (1, 16, 16))}


def _hooks_clipped_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, c: float
                        ) -> list[torch.Tensor]:
    """Opacus' own clipped sum (hooks mode, flat clipping), no noise."""
    dp = grad_mode._private(copy.deepcopy(model), "hooks", len(x))
    dp.optimizer.max_grad_norm = c  # type: ignore[attr-defined]
    dp.criterion(dp.model(x), y).backward()
    dp.optimizer.clip_and_accumulate()  # type: ignore[attr-defined]
    return [p.summed_grad for p in dp.model.parameters()]  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["linear", "mlp", "cnn", "resnet"])
@pytest.mark.parametrize("c", [0.05, 100.0])
def test_norms_and_clipped_sums_equal_opacus(kind: str, c: float) -> None:
    torch.manual_seed(3)
    model, shape = _models()[kind]
    x, y = torch.randn(6, *shape), torch.arange(6) % 3
    ref = grad_mode.reference_norms(copy.deepcopy(model), x, y)
    wrapped, _, loss = bookkeeping.make_private(copy.deepcopy(model), torch.optim.SGD(
        model.parameters(), lr=0.1), noise_multiplier=0.0, max_grad_norm=c, expected_batch_size=6)
    wrapped.train()
    loss(wrapped(x), y).backward()
    assert wrapped.per_sample_gradient_norms is not None
    assert grad_mode.max_relative_difference(wrapped.per_sample_gradient_norms, ref) < 5e-4
    want = _hooks_clipped_sums(model, x, y, c)
    got = [p.grad for p in wrapped.parameters()]
    for g, w in zip(got, want, strict=True):
        assert g is not None and torch.allclose(g, w, rtol=1e-4, atol=1e-6)
    assert all(p.requires_grad for p in wrapped.parameters())


def test_the_step_adds_opacus_noise_of_the_right_scale_and_is_accounted() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    before = [p.detach().clone() for p in model.parameters()]
    wrapped, opt, loss = bookkeeping.make_private(
        model, torch.optim.SGD(model.parameters(), lr=1.0), noise_multiplier=100.0,
        max_grad_norm=1.0, expected_batch_size=8)
    steps: list[int] = []
    opt.attach_step_hook(lambda o: steps.append(1))
    wrapped.train()
    opt.zero_grad()
    loss(wrapped(torch.randn(8, 4)), torch.arange(8) % 3).backward()
    opt.step()
    moved = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before,
                                                                   strict=True)])
    assert steps == [1]
    # noise std σC/B = 12.5 per coordinate dominates the clipped signal (at most C/B = 0.125)
    assert 6.0 < float(moved.std()) < 25.0


def test_an_empty_poisson_batch_takes_a_noise_only_step() -> None:
    model = nn.Sequential(nn.Linear(4, 3))
    wrapped, opt, loss = bookkeeping.make_private(
        model, torch.optim.SGD(model.parameters(), lr=1.0), noise_multiplier=1.0,
        max_grad_norm=1.0, expected_batch_size=4)
    wrapped.train()
    opt.zero_grad()
    grad_mode.batch_loss(loss, wrapped(torch.zeros(0, 4)), torch.zeros(0, dtype=torch.long)
                         ).backward()
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before,
                                                              strict=True))


@pytest.mark.parametrize("layer", [nn.Conv1d(1, 2, 3), nn.Conv2d(4, 4, 3, groups=2),
                                   nn.Conv2d(1, 2, 3, padding="same"), nn.BatchNorm2d(2)])
def test_unsupported_layers_are_refused_and_the_selector_drops_the_mode(layer: nn.Module
                                                                        ) -> None:
    with pytest.raises(NotImplementedError, match="bk:"):
        bookkeeping.BookKeeping(nn.Sequential(layer), max_grad_norm=1.0)
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    mode, seen = grad_mode.choose(model, torch.randn(4, 1, 6), torch.arange(4) % 3,
                                  ("hooks", bookkeeping.MODE))
    assert mode == "hooks" and "NotImplementedError" in str(seen[bookkeeping.MODE])


def test_a_layer_run_twice_is_refused() -> None:
    shared = nn.Linear(3, 3)
    wrapped = bookkeeping.BookKeeping(nn.Sequential(shared, nn.ReLU(), shared),
                                      max_grad_norm=1.0)
    wrapped.train()
    with pytest.raises(NotImplementedError, match="twice"):
        wrapped(torch.randn(2, 3))


def test_a_round_in_bookkeeping_mode_trains_and_counts_every_step(
        monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = parse_task(digits_data(), "digits")
    rng = np.random.default_rng(0)
    n = 40
    x = rng.random((n, *loaded.task.input_shape), dtype=np.float32)
    y = (np.arange(n) % loaded.task.num_classes).astype(np.int64)
    summary = DataSummary(source="-", task="digits", task_sha256="0", format="npz", rows=n,
                          train=n, test=0, split="-", classes={})
    data = SiteData(x, y, x[:0], y[:0], summary)
    monkeypatch.setattr(grad_mode, "mode_for", lambda *a, **k: bookkeeping.MODE)
    torch.manual_seed(0)
    from site_node.model import build_model, get_weights
    weights = get_weights(build_model(loaded.task))
    plan = TrainPlan(noise_multiplier=1.0, sample_rate=0.25, max_grad_norm=1.0, steps=6,
                     learning_rate=0.5, accountant="rdp", delta=1e-5)
    result = train_dp(weights, data, plan, loaded.task, max_physical_batch=4)
    assert result.mechanism.steps == 6
    assert any(not np.array_equal(a, b) for a, b in zip(result.weights, weights, strict=True))
