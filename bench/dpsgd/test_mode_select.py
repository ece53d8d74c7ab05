"""Fast CPU tests of the DP-SGD mode selector and the benchmark models.

Run: ``.venv/bin/python -m pytest bench/dpsgd/test_mode_select.py -q``
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mode_select
from mode_select import (
    MODES,
    make_private,
    max_relative_difference,
    per_sample_norms,
    reference_norms,
    select_mode,
    train_step,
)
from models import GroupNormCNN, ResNet18GN, build_model, num_parameters


def _batch(n: int, ch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, ch, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


class InPlaceResidual(nn.Module):
    """torchvision's pattern: ``out += identity`` on a hooked module's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.gn = nn.GroupNorm(2, 4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.gn(self.conv(x))
        out = self.conv2(identity)
        out += identity
        return self.head(out.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------- models
@pytest.mark.parametrize("size", [8, 28, 64])
def test_cnn_is_valid_and_runs_at_each_size(size: int) -> None:
    model = GroupNormCNN(in_channels=1, num_classes=7, image_size=size)
    assert ModuleValidator.validate(model, strict=True) == []
    x, _ = _batch(2, 1, size)
    assert model(x).shape == (2, 7)


@pytest.mark.parametrize(("stem", "size"), [("cifar", 16), ("imagenet", 64)])
def test_resnet_is_valid_and_resnet18_sized(stem: str, size: int) -> None:
    model = ResNet18GN(in_channels=3, num_classes=10, stem=stem)
    assert ModuleValidator.validate(model, strict=True) == []
    assert 11.0e6 < num_parameters(model) < 11.3e6
    blocks = [m for m in model.modules() if m.__class__.__name__ == "BasicBlock"]
    assert len(blocks) == 8
    assert all(not m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    x, _ = _batch(2, 3, size)
    assert model(x).shape == (2, 10)


def test_build_model_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", in_channels=1, image_size=8)
    with pytest.raises(ValueError, match="stem"):
        ResNet18GN(stem="other")


# ---------------------------------------------------------------------------- norms
def test_reference_norms_match_a_hand_computed_linear_model() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    ref = reference_norms(model, x, y)
    for i in range(4):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        expected = torch.cat([g.flatten() for g in grads]).norm()
        assert ref[i].item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_matches_the_reference_on_the_small_resnet(mode: str) -> None:
    torch.manual_seed(0)
    model = ResNet18GN(in_channels=1, stem="cifar", widths=(8, 8, 16, 16))
    x, y = _batch(6, 1, 16)
    ref = reference_norms(model, x, y)
    norms = per_sample_norms(make_private(model, mode, 6), x, y)
    assert max_relative_difference(norms, ref) < 1e-4


# ---------------------------------------------------------------------------- selector
def test_selects_a_working_mode_and_reports_all() -> None:
    torch.manual_seed(0)
    model = GroupNormCNN(image_size=8, widths=(8, 16))
    mode, timings = select_mode(model, _batch(8, 1, 8), steps=2)
    assert mode in MODES
    assert set(timings) == set(MODES)
    assert all(t.ok and t.step_s and t.step_s > 0 for t in timings.values())
    assert all(
        t.max_rel_norm_diff is not None and t.max_rel_norm_diff < 1e-3 for t in timings.values()
    )
    fastest = min(timings.values(), key=lambda t: t.step_s or float("inf"))
    assert timings[mode].step_s == fastest.step_s


def test_leaves_the_callers_model_untouched() -> None:
    torch.manual_seed(0)
    model = GroupNormCNN(image_size=8, widths=(8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    select_mode(model, _batch(4, 1, 8), candidates=("hooks", "ghost"), steps=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    make_private(model, "hooks", 4)  # would raise "Trying to add hooks twice" if wrapped


def test_drops_modes_that_fail_on_inplace_residual() -> None:
    torch.manual_seed(0)
    mode, timings = select_mode(InPlaceResidual(), _batch(4, 1, 8), steps=1)
    assert mode == "ew"
    for failing in ("hooks", "ghost", "functorch"):
        assert not timings[failing].ok
        assert "inplace" in (timings[failing].error or "").replace("-", "")


def test_drops_a_mode_whose_norms_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    real = mode_select.per_sample_norms

    def skewed(setup: mode_select.DPSetup, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        norms = real(setup, x, y)
        return norms * 1.01 if setup.mode == "hooks" else norms

    monkeypatch.setattr(mode_select, "per_sample_norms", skewed)
    torch.manual_seed(0)
    mode, timings = select_mode(
        GroupNormCNN(image_size=8, widths=(8,)),
        _batch(4, 1, 8),
        candidates=("hooks", "ghost"),
        steps=1,
    )
    assert mode == "ghost"
    assert not timings["hooks"].ok
    assert "disagree" in (timings["hooks"].error or "")


def test_unknown_mode_is_recorded_and_all_failing_raises() -> None:
    model = GroupNormCNN(image_size=8, widths=(8,))
    mode, timings = select_mode(model, _batch(4, 1, 8), candidates=("bogus", "hooks"), steps=1)
    assert mode == "hooks"
    assert "unknown grad_sample_mode" in (timings["bogus"].error or "")
    with pytest.raises(RuntimeError, match="no DP-SGD mode works"):
        select_mode(model, _batch(4, 1, 8), candidates=("bogus",))


def test_cross_sample_model_is_rejected_by_the_norm_check() -> None:
    class Centred(nn.Module):
        """Subtracts the batch mean: per-sample gradients from hooks are not the truth."""

        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x - x.mean(0, keepdim=True))

    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    with pytest.raises(RuntimeError, match="disagree"):
        select_mode(Centred(), (x, y), candidates=("hooks", "functorch"), steps=1)


# ---------------------------------------------------------------------------- bk prototype
@pytest.mark.parametrize("kind", ["cnn", "resnet"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bk_clipped_sum_and_norms_match_opacus_hooks(kind: str, seed: int) -> None:
    torch.manual_seed(seed)
    model: nn.Module = (
        GroupNormCNN(image_size=16, widths=(8, 16, 16))
        if kind == "cnn"
        else ResNet18GN(in_channels=1, stem="cifar", widths=(8, 8, 16, 16))
    )
    x, y = _batch(6, 1, 16, seed)
    ref = reference_norms(model, x, y)
    bk = make_private(copy.deepcopy(model), "bk", 6, noise_multiplier=0.0, max_grad_norm=0.5)
    # float32: the ghost-norm identity sums T² products, so ~1e-4 is float32 noise; the
    # selector accepts 1e-3
    assert max_relative_difference(per_sample_norms(bk, x, y), ref) < 5e-4
    hooks = make_private(copy.deepcopy(model), "hooks", 6, noise_multiplier=0.0, max_grad_norm=0.5)
    hooks.criterion(hooks.model(x), y).backward()
    hooks.optimizer.clip_and_accumulate()  # type: ignore[attr-defined]
    expected = [p.summed_grad for p in hooks.model.parameters()]  # type: ignore[attr-defined]
    _, sums = bk.engine.clipped_sum(x, y, bk.criterion)
    for p, want in zip(bk.model.parameters(), expected, strict=True):
        assert torch.allclose(sums[p], want, rtol=1e-4, atol=1e-6)


def test_bk_step_adds_noise_of_the_right_scale() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    setup = make_private(model, "bk", 8, lr=1.0, noise_multiplier=100.0, max_grad_norm=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    train_step(setup, x, y)
    after = list(model.parameters())
    moved = torch.cat([(b - a.detach()).flatten() for b, a in zip(before, after, strict=True)])
    # update = (clipped sum + N(0, (σC)²)) / 8: noise std 12.5 dominates the clipped part (≤ 1)
    assert 5.0 < float(moved.std()) < 25.0


def test_bk_refuses_unsupported_layers_and_the_selector_drops_it() -> None:
    class WithConv1d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 2, 3)
            self.head = nn.Linear(2, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x.flatten(2)).mean(-1))

    mode, timings = select_mode(WithConv1d(), _batch(4, 1, 4), candidates=("bk", "hooks"), steps=1)
    assert mode == "hooks"
    assert "NotImplementedError" in (timings["bk"].error or "")


def test_selector_can_pick_bk_on_the_cnn() -> None:
    torch.manual_seed(0)
    model = GroupNormCNN(image_size=8, widths=(8, 16))
    mode, timings = select_mode(model, _batch(16, 1, 8), candidates=("hooks", "bk"), steps=3)
    assert timings["bk"].ok and timings["hooks"].ok
    assert mode == min(timings.values(), key=lambda t: t.step_s or float("inf")).mode


@pytest.mark.parametrize("impl", ["ghost", "unfold", "grouped", None])
def test_bk_conv_impls_all_match_opacus(impl: str | None) -> None:
    from bk import BookKeepingDPSGD

    torch.manual_seed(0)
    model = ResNet18GN(in_channels=1, stem="cifar", widths=(8, 8, 16, 16))
    x, y = _batch(5, 1, 16)
    hooks = make_private(copy.deepcopy(model), "hooks", 5, noise_multiplier=0.0, max_grad_norm=0.5)
    hooks.criterion(hooks.model(x), y).backward()
    hooks.optimizer.clip_and_accumulate()  # type: ignore[attr-defined]
    expected = [p.summed_grad for p in hooks.model.parameters()]  # type: ignore[attr-defined]
    mine = copy.deepcopy(model)
    engine = BookKeepingDPSGD(
        mine,
        torch.optim.SGD(mine.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=0.5,
        expected_batch_size=5,
        conv_impl=impl,
    )
    _, sums = engine.clipped_sum(x, y, nn.CrossEntropyLoss())
    for p, want in zip(mine.parameters(), expected, strict=True):
        assert torch.allclose(sums[p], want, rtol=1e-4, atol=1e-6)
    if impl is None:  # autotuned: every conv has a decision and its three timings
        convs = [la for la in engine.layers if isinstance(la.module, nn.Conv2d)]
        assert all(la.impl in BookKeepingDPSGD.CONV_IMPLS for la in convs)
        assert len(engine.autotune_costs) == len(convs)


def test_bk_handles_torchvisions_inplace_residual_like_ew() -> None:
    """``out += identity`` breaks hooks/ghost/functorch; bk's clipped sum still matches ew."""
    torch.manual_seed(0)
    model = InPlaceResidual()
    x, y = _batch(6, 1, 8)
    ew = make_private(copy.deepcopy(model), "ew", 6, noise_multiplier=0.0, max_grad_norm=0.3)
    ew.criterion(ew.model(x), y).backward()
    grads = [p.grad_sample for p in ew.model.parameters()]  # type: ignore[attr-defined]
    norms = torch.stack([g.reshape(6, -1).norm(dim=1) for g in grads], 1).norm(dim=1)
    coef = (0.3 / (norms + 1e-6)).clamp(max=1.0)
    expected = [torch.einsum("n,n...->...", coef, g) for g in grads]
    bk = make_private(copy.deepcopy(model), "bk", 6, noise_multiplier=0.0, max_grad_norm=0.3)
    _, sums = bk.engine.clipped_sum(x, y, bk.criterion)
    for p, want in zip(bk.model.parameters(), expected, strict=True):
        assert torch.allclose(sums[p], want, rtol=1e-4, atol=1e-6)
