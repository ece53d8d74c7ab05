"""The per-sample gradient mode of Opacus a site trains with, chosen by the site itself.

Opacus computes per-sample gradients in several ways (``grad_sample_mode``): module hooks,
ghost clipping (per-sample norms without per-sample gradients, two backward passes),
functorch, or expanded weights; and book-keeping (:mod:`site_node.bookkeeping`: per-sample
norms and the clipped sum from one backward, Opacus' optimizer adding the noise). They differ
in speed and memory by model and machine
(``bench/dpsgd/``), and not every mode supports every layer. :func:`choose` tries each
candidate on a copy of the model, on the device that will train, with a made-up batch of the
training batch's shape (no site record is used), and keeps the fastest one that

- runs one DP-SGD step on that batch and one on an empty batch (Poisson sampling may draw one),
- and computes per-sample gradient norms that agree with an exact reference (plain autograd,
  one sample at a time, float64 sums, TF32 off) within the tolerance of the precision the
  device computes in (:mod:`site_node.precision`): float32 always, and TF32 too where the
  device trains in TF32.

The choice changes how gradients are computed, never the mechanism: clipping, noise, sampling
and the accounting are the same in every mode. It is made once per process, model shape and
device (:func:`mode_for`), so a round pays for it only the first time. If no mode passes, it
raises :class:`~site_node.errors.TrainingError` naming each mode's failure.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import opacus
import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from site_node import bookkeeping, node_cache, precision
from site_node.errors import TrainingError

log = logging.getLogger(__name__)

#: Candidate modes, in order of preference on equal timings ("hooks" is Opacus' default).
CANDIDATES: tuple[str, ...] = ("hooks", "ghost", "ew", "functorch", bookkeeping.MODE)
#: The modes that keep each sample's own gradient in ``p.grad_sample`` (patient-level DP-SGD
#: combines them per patient before clipping; ghost clipping never forms them).
PER_SAMPLE_GRADIENTS: tuple[str, ...] = ("hooks", "functorch")
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


class Private(NamedTuple):
    """A model made private in one mode: what a DP-SGD step needs (``criterion`` is Opacus'
    own in ghost mode, whose ``backward`` runs both passes)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[[torch.Tensor, torch.Tensor], Any]


def _private(model: nn.Module, mode: str, batch_size: int) -> Private:
    if mode == bookkeeping.MODE:
        return Private(*bookkeeping.make_private(
            model, torch.optim.SGD(model.parameters(), lr=0.01), noise_multiplier=1.0,
            max_grad_norm=1.0, expected_batch_size=batch_size))
    loader = DataLoader(TensorDataset(torch.zeros(batch_size, 1)), batch_size=batch_size)
    made = PrivacyEngine(accountant="rdp").make_private(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        data_loader=loader, criterion=nn.CrossEntropyLoss(), noise_multiplier=1.0,
        max_grad_norm=1.0, poisson_sampling=False, grad_sample_mode=mode)
    if mode == "ghost":
        return Private(made[0], made[1], made[2])
    return Private(made[0], made[1], nn.CrossEntropyLoss())


def batch_loss(criterion: Callable[[torch.Tensor, torch.Tensor], Any], out: torch.Tensor,
               y: torch.Tensor) -> Any:
    """The loss of one batch; an empty (Poisson) batch gets a zero loss that still takes the
    noisy step."""
    return out.sum() * 0.0 if len(y) == 0 else criterion(out, y)


def _step(dp: Private, x: torch.Tensor, y: torch.Tensor) -> None:
    dp.optimizer.zero_grad()
    batch_loss(dp.criterion, dp.model(x), y).backward()
    dp.optimizer.step()


def per_sample_norms(dp: Private, mode: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The per-sample gradient norms the mode clips with (no step is taken)."""
    dp.optimizer.zero_grad()
    dp.criterion(dp.model(x), y).backward()
    if mode in ("ghost", bookkeeping.MODE):
        norms = cast(torch.Tensor, dp.model.per_sample_gradient_norms).detach().clone()
    else:
        samples: list[torch.Tensor] = [p.grad_sample  # type: ignore[attr-defined]
                                       for p in dp.model.parameters() if p.requires_grad]
        parts = [g.reshape(len(x), -1).norm(2, dim=1) for g in samples]
        norms = torch.stack(parts, dim=1).norm(2, dim=1).detach()
    dp.optimizer.zero_grad()
    return norms


def norm_error(norms: torch.Tensor, ref: torch.Tensor, in_precision: precision.Precision
               ) -> str | None:
    """Why ``norms`` computed in ``in_precision`` are not the reference's, or None if they
    agree within that precision's tolerance."""
    diff = max_relative_difference(norms, ref)
    limit = precision.tolerance(in_precision)
    if diff <= limit:
        return None
    return (f"per-sample norms disagree with the reference ({diff:.1e} > {limit:.0e} in "
            f"{in_precision})")


def _check(dp: Private, mode: str, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor,
           device: torch.device) -> None:
    with precision.full_float32():
        seen = [("float32", per_sample_norms(dp, mode, x, y))]
    trains_in = precision.training_precision(device)
    if trains_in != "float32":
        seen.append((trains_in, per_sample_norms(dp, mode, x, y)))
    for in_precision, norms in seen:
        why = norm_error(norms, ref, cast(precision.Precision, in_precision))
        if why is not None:
            raise ValueError(why)


def _now(device: torch.device) -> float:
    """Process CPU seconds on a CPU (other jobs on the cores do not inflate it); wall seconds
    after the device finished its queued work on a GPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter()
    return time.process_time()


def _trial(model: nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor,
           ref: torch.Tensor) -> float:
    """Median seconds of one DP-SGD step in ``mode``; raises why the mode is unfit."""
    device = x.device
    dp = _private(copy.deepcopy(model).train(), mode, len(x))
    n = len(ref)
    _check(dp, mode, x[:n], y[:n], ref, device)
    _step(dp, x[:0], y[:0])  # an empty Poisson batch
    _step(dp, x, y)
    times = []
    for _ in range(TIMED_STEPS):
        start = _now(device)
        _step(dp, x, y)
        times.append(_now(device) - start)
    return sorted(times)[len(times) // 2]


def choose(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           candidates: tuple[str, ...] = CANDIDATES) -> tuple[str, dict[str, float | str]]:
    """The fastest correct mode for ``model`` on batches like ``(x, y)`` on their device (the
    model is copied there), and what each candidate measured (seconds per step, or why it was
    dropped)."""
    model = copy.deepcopy(model).to(x.device)
    n = min(_CHECK_SAMPLES, len(x))
    with precision.full_float32():
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


#: What chosen modes are kept under on disk (:mod:`site_node.node_cache`): a deployed node runs
#: each message in a fresh process, and the trials cost about a second a round.
MODE_CACHE = "grad-modes"
#: The mode chosen for each model shape and device in this process.
_CHOSEN: dict[tuple[object, ...], str] = {}


def mode_for(model: nn.Module, *, input_shape: tuple[int, ...], num_classes: int,
             batch_size: int, device: torch.device | None = None,
             candidates: tuple[str, ...] = CANDIDATES) -> str:
    """The mode for this model shape on ``device`` (default: the CPU), chosen among
    ``candidates`` on first use in this process (or read back from the node's cache,
    :mod:`site_node.node_cache`, where a process of this node chose it before with the same
    libraries) on made-up data (standard normal inputs, classes in turn) of the batch size the
    device computes at once."""
    device = device or torch.device("cpu")
    batch = max(2, batch_size)
    key = (repr(model), input_shape, num_classes, batch, str(device),
           precision.training_precision(device), candidates)
    if key not in _CHOSEN:
        kept_key = repr((*key, torch.__version__, opacus.__version__, CANDIDATES))
        kept = node_cache.get(MODE_CACHE, kept_key)
        if isinstance(kept, str) and kept in candidates:
            _CHOSEN[key] = kept
            return kept
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((batch, *input_shape), generator=gen)
        y = torch.arange(batch) % num_classes
        mode, seen = choose(model, x.to(device), y.to(device), candidates)
        log.info("per-sample gradient mode %s on %s (seconds per step, or why not: %s)", mode,
                 device, seen)
        _CHOSEN[key] = mode
        node_cache.put(MODE_CACHE, kept_key, mode)
    return _CHOSEN[key]
