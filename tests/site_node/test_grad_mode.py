"""The site chooses its Opacus per-sample gradient mode: the fastest one whose per-sample norms
match an exact reference and that survives an empty Poisson batch; once per process."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import nn

from site_node import grad_mode, precision
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
    monkeypatch.setattr(precision, "FLOAT32_RTOL", -1.0)
    with pytest.raises(TrainingError) as info:
        grad_mode.choose(_linear(), *_batch())
    for mode in grad_mode.CANDIDATES:
        assert f"{mode}:" in str(info.value)
    assert "disagree" in str(info.value)


def test_the_choice_is_made_once_per_process_and_model_shape(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []

    def counting(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 candidates: tuple[str, ...]) -> tuple[str, dict[str, float | str]]:
        calls.append(tuple(x.shape))
        return candidates[-1], {candidates[-1]: 0.0}

    monkeypatch.setattr(grad_mode, "_CHOSEN", {})
    monkeypatch.setattr(grad_mode, "choose", counting)
    for _ in range(3):
        assert grad_mode.mode_for(_linear(), input_shape=(5,), num_classes=3,
                                  batch_size=40) == grad_mode.CANDIDATES[-1]
    grad_mode.mode_for(_linear(), input_shape=(5,), num_classes=3, batch_size=80)
    assert calls == [(40, 5), (80, 5)]


def test_patient_level_training_chooses_only_among_modes_that_keep_per_sample_gradients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grad_mode, "_CHOSEN", {})
    x = torch.randn(8, 5)
    y = torch.arange(8) % 3
    mode, seen = grad_mode.choose(_linear(), x, y, grad_mode.PER_SAMPLE_GRADIENTS)
    assert mode in grad_mode.PER_SAMPLE_GRADIENTS and set(seen) <= {"hooks", "functorch"}
    assert grad_mode.mode_for(_linear(), input_shape=(5,), num_classes=3, batch_size=8,
                              candidates=("functorch",)) == "functorch"


def test_max_relative_difference() -> None:
    ref = torch.tensor([1.0, 2.0])
    assert grad_mode.max_relative_difference(torch.tensor([1.0, 2.2]), ref) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="shapes differ"):
        grad_mode.max_relative_difference(torch.ones(3), ref)
    assert math.isclose(grad_mode.max_relative_difference(ref, ref), 0.0)


def _noisy(norms: torch.Tensor, rel: float, seed: int = 3) -> torch.Tensor:
    """``norms`` moved by ±``rel`` relative, sample by sample (reduced-precision noise)."""
    signs = torch.randint(0, 2, norms.shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return norms * (1 + rel * signs.to(norms.dtype))


def test_tf32_sized_noise_passes_on_a_tf32_device_and_a_bug_sized_error_never_does() -> None:
    ref = grad_mode.reference_norms(_linear(), *_batch(8))
    tf32_noise = _noisy(ref, 1.4e-3)  # what TF32 did to ResNet-18's norms on an H200
    assert grad_mode.norm_error(tf32_noise, ref, "tf32") is None
    assert "in float32" in str(grad_mode.norm_error(tf32_noise, ref, "float32"))
    assert grad_mode.norm_error(_noisy(ref, 2e-4), ref, "float32") is None  # float32 rounding
    for bug in (3e-2, 0.1, 1.0):  # a missed layer, another sample's gradient, a wrong scale
        assert grad_mode.norm_error(_noisy(ref, bug), ref, "tf32") is not None
        assert grad_mode.norm_error(_noisy(ref, bug), ref, "float32") is not None


def _without_bias(real: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """A deliberately wrong mode: its norms leave out the bias's per-sample gradient."""

    def wrong(dp: grad_mode.Private, mode: str, x: torch.Tensor, y: torch.Tensor
              ) -> torch.Tensor:
        if mode != "hooks":
            return real(dp, mode, x, y)
        dp.optimizer.zero_grad()
        dp.criterion(dp.model(x), y).backward()
        weight = next(p for n, p in dp.model.named_parameters() if n.endswith("weight"))
        norms = weight.grad_sample.reshape(len(x), -1).norm(dim=1)  # type: ignore[attr-defined]
        dp.optimizer.zero_grad()
        return norms.detach()

    return wrong


def test_a_wrong_mode_is_refused_even_on_a_device_that_trains_in_tf32(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "training_precision", lambda device: "tf32")
    monkeypatch.setattr(grad_mode, "per_sample_norms", _without_bias(grad_mode.per_sample_norms))
    mode, seen = grad_mode.choose(_linear(), *_batch(), candidates=("hooks", "ghost"))
    assert mode == "ghost"
    assert isinstance(seen["hooks"], str) and "disagree" in seen["hooks"]


def test_a_tf32_device_checks_in_float32_and_again_in_tf32(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a (simulated) TF32 device each mode is checked twice: with TF32 off at the float32
    tolerance, then as it trains at the TF32 one; TF32-sized noise in the second passes."""
    monkeypatch.setattr(precision, "training_precision", lambda device: "tf32")
    real = grad_mode.per_sample_norms
    flags: list[bool] = []

    def tf32_like(dp: grad_mode.Private, mode: str, x: torch.Tensor, y: torch.Tensor
                  ) -> torch.Tensor:
        flags.append(bool(torch.backends.cudnn.allow_tf32))
        norms = real(dp, mode, x, y)
        return norms if len(flags) % 2 else _noisy(norms, 1.4e-3)

    monkeypatch.setattr(grad_mode, "per_sample_norms", tf32_like)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    try:
        mode, seen = grad_mode.choose(_linear(), *_batch(), candidates=("hooks",))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert mode == "hooks" and isinstance(seen["hooks"], float)
    assert flags == [False, True]


def test_tf32_is_off_inside_the_check_and_restored_after_it_even_on_error() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        with pytest.raises(RuntimeError, match="inside"), precision.full_float32():
            assert not precision.tf32_enabled()
            raise RuntimeError("inside")
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert precision.training_precision(torch.device("cpu")) == "float32"
        assert precision.training_precision(torch.device("cuda", 0)) == "tf32"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_ghost_clipping_is_a_candidate_with_its_own_norm_check() -> None:
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(8, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(8) % 3
    assert "ghost" in grad_mode.CANDIDATES
    mode, seen = grad_mode.choose(cnn, x, y, candidates=("ghost",))
    assert mode == "ghost" and isinstance(seen["ghost"], float)
    dp = grad_mode._private(copy.deepcopy(cnn), "ghost", 8)
    ghost = grad_mode.per_sample_norms(dp, "ghost", x, y)
    assert grad_mode.norm_error(ghost, grad_mode.reference_norms(cnn, x, y), "float32") is None


def test_the_choice_is_kept_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    devices: list[str] = []

    def record(model: nn.Module, x: torch.Tensor, y: torch.Tensor, candidates: tuple[str, ...]
               ) -> tuple[str, dict[str, float | str]]:
        devices.append(str(x.device))
        return "hooks", {"hooks": 0.0}

    monkeypatch.setattr(grad_mode, "_CHOSEN", {})
    monkeypatch.setattr(grad_mode, "choose", record)
    for device in (None, torch.device("cpu")):
        grad_mode.mode_for(_linear(), input_shape=(5,), num_classes=3, batch_size=8,
                           device=device)
    assert devices == ["cpu"]
    assert {key[4] for key in grad_mode._CHOSEN} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_on_a_gpu_with_tf32_a_mode_is_chosen_and_the_flags_are_restored() -> None:
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.GroupNorm(4, 16), nn.ReLU(),
                        nn.Conv2d(16, 32, 3, padding=1), nn.GroupNorm(4, 32), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3))
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.allow_tf32 = True
    try:
        mode = grad_mode.mode_for(cnn, input_shape=(1, 32, 32), num_classes=3, batch_size=32,
                                  device=torch.device("cuda", 0))
        assert mode in grad_mode.CANDIDATES
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
