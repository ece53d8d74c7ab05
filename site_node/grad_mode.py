"""The per-sample gradient mode of Opacus a site trains with, chosen by the site itself.

Opacus computes per-sample gradients in several ways (``grad_sample_mode``): module hooks,
functorch, or expanded weights. They differ in speed and memory by model and machine
(``bench/dpsgd/``), and not every mode supports every layer. :func:`choose` tries each
candidate on a copy of the model, with a made-up batch of the training batch's shape (no
site record is used), and keeps the fastest one that

- runs one DP-SGD step on that batch and one on an empty batch (Poisson sampling may draw one),
- and computes per-sample gradient norms that agree with an exact reference (plain autograd,
  one sample at a time) within :data:`RTOL`.

The choice changes how gradients are computed, never the mechanism: clipping, noise, sampling
and the accounting are the same in every mode. It is made once per process and model shape
(:func:`mode_for`), so a round pays for it only the first time. If no mode passes, it raises
:class:`~site_node.errors.TrainingError` naming each mode's failure.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from typing import Any, cast

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from site_node.errors import TrainingError

log = logging.getLogger(__name__)

#: Candidate modes, in order of preference on equal timings ("hooks" is Opacus' default).
CANDIDATES: tuple[str, ...] = ("hooks", "ew", "functorch")
#: Largest accepted relative difference between a mode's per-sample norms and the reference.
RTOL = 1e-3
#: Timed DP-SGD steps per candidate (after one untimed step).
TIMED_STEPS = 3
_CHECK_SAMPLES = 8


def reference_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                    criterion: nn.Module | None = None) -> torch.Tensor:
    """Exact per-sample gradient norms by plain autograd, one sample at a time (float64);
    the loss is cross-entropy unless ``criterion`` is given."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss_of = criterion if criterion is not None else nn.CrossEntropyLoss()
    out = []
    for i in range(x.shape[0]):
        grads = torch.autograd.grad(loss_of(model(x[i:i + 1]), y[i:i + 1]), params)
        out.append(math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads)))
    return torch.tensor(out, dtype=torch.float64)


def max_relative_difference(norms: torch.Tensor, ref: torch.Tensor) -> float:
    """max_i |norms_i − ref_i| / max(ref_i, 1e-12)."""
    a, b = norms.detach().double().cpu(), ref.detach().double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"norm shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float(((a - b).abs() / b.clamp_min(1e-12)).max())


def _private(model: nn.Module, mode: str, batch_size: int
             ) -> tuple[nn.Module, torch.optim.Optimizer]:
    loader = DataLoader(TensorDataset(torch.zeros(batch_size, 1)), batch_size=batch_size)
    dp_model, dp_opt, _ = PrivacyEngine(accountant="rdp").make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0,
        poisson_sampling=False, grad_sample_mode=mode)
    return dp_model, dp_opt


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
          y: torch.Tensor) -> None:
    optimizer.zero_grad()
    out = model(x)
    loss: Any = out.sum() * 0.0 if len(x) == 0 else nn.functional.cross_entropy(out, y)
    loss.backward()
    optimizer.step()


def _norms(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
           y: torch.Tensor) -> torch.Tensor:
    optimizer.zero_grad()
    loss: Any = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    samples: list[torch.Tensor] = [p.grad_sample  # type: ignore[attr-defined]
                                   for p in model.parameters() if p.requires_grad]
    optimizer.zero_grad()
    parts = [g.reshape(len(x), -1).norm(2, dim=1) for g in samples]
    return cast(torch.Tensor, torch.stack(parts, dim=1).norm(2, dim=1))


def _trial(model: nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor,
           ref: torch.Tensor) -> float:
    """Median CPU seconds of one DP-SGD step in ``mode``; raises why the mode is unfit."""
    dp_model, dp_opt = _private(copy.deepcopy(model).train(), mode, len(x))
    n = len(ref)
    diff = max_relative_difference(_norms(dp_model, dp_opt, x[:n], y[:n]), ref)
    if not diff <= RTOL:
        raise ValueError(f"per-sample norms disagree with the reference ({diff:.1e})")
    _step(dp_model, dp_opt, x[:0], y[:0])  # an empty Poisson batch
    _step(dp_model, dp_opt, x, y)
    times = []
    for _ in range(TIMED_STEPS):
        start = time.process_time()
        _step(dp_model, dp_opt, x, y)
        times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2]


def choose(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           candidates: tuple[str, ...] = CANDIDATES) -> tuple[str, dict[str, float | str]]:
    """The fastest correct mode for ``model`` on batches like ``(x, y)``, and what each
    candidate measured (seconds per step, or why it was dropped)."""
    n = min(_CHECK_SAMPLES, len(x))
    ref = reference_norms(copy.deepcopy(model).train(), x[:n], y[:n])
    seen: dict[str, float | str] = {}
    for mode in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Opacus' and torch's hook notices
                seen[mode] = _trial(model, mode, x, y, ref)
        except Exception as exc:  # a mode that fails is an answer, not an error
            seen[mode] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    timed = [(t, candidates.index(m), m) for m, t in seen.items() if isinstance(t, float)]
    if not timed:
        raise TrainingError("no Opacus per-sample gradient mode works for this model: "
                            + "; ".join(f"{m}: {why}" for m, why in seen.items()))
    return min(timed)[2], seen


#: The mode chosen for each model shape in this process.
_CHOSEN: dict[tuple[object, ...], str] = {}


def mode_for(model: nn.Module, *, input_shape: tuple[int, ...], num_classes: int,
             batch_size: int) -> str:
    """The mode for this model shape, chosen on first use in this process on made-up data
    (standard normal inputs, classes in turn) of the expected batch size."""
    batch = max(2, batch_size)
    key = (repr(model), input_shape, num_classes, batch)
    if key not in _CHOSEN:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((batch, *input_shape), generator=gen)
        y = torch.arange(batch) % num_classes
        mode, seen = choose(model, x, y)
        log.info("per-sample gradient mode %s (seconds per step, or why not: %s)", mode, seen)
        _CHOSEN[key] = mode
    return _CHOSEN[key]
