"""Pick the fastest *correct* Opacus per-sample-gradient mode for a model, once per process.

:func:`select_mode` tries each candidate mode ("hooks", "ghost", "functorch", "ew") on a copy of
the model for a few DP-SGD steps on a sample batch, drops every mode that fails (an exception,
a non-finite norm) or whose per-sample gradient norms disagree with an exact reference, and
returns the fastest of the rest with every mode's timing.

The reference norms come from plain autograd, one sample at a time (``reference_norms``, the
product's own, from :mod:`site_node.grad_mode`, like ``max_relative_difference``): the
definition of a per-sample gradient, exact for models without cross-sample layers (GroupNorm,
LayerNorm; not BatchNorm, which Opacus refuses anyway).

Depends on torch, opacus and :mod:`site_node.grad_mode`. The caller's model is never wrapped or
modified: every trial runs on a ``copy.deepcopy``.
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from opacus import PrivacyEngine
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from site_node.grad_mode import max_relative_difference, reference_norms

__all__ = [
    "MODES",
    "PROTOTYPE_MODES",
    "DPSetup",
    "ModeTiming",
    "make_private",
    "max_relative_difference",
    "per_sample_norms",
    "reference_norms",
    "select_mode",
    "train_step",
]

#: Opacus 1.6 grad_sample_mode values this module knows how to drive.
MODES: tuple[str, ...] = ("hooks", "ghost", "functorch", "ew")
#: This folder's prototype (``bk.py``): book-keeping DP-SGD, one backward, mixed ghost norms.
PROTOTYPE_MODES: tuple[str, ...] = ("bk", "bk-site")
"""``bk``: this folder's prototype (bk.py, autotuned convolution paths); ``bk-site``: the
product's mode (``site_node.bookkeeping``: the flop rule only, Opacus' optimizer adds noise)."""

Criterion = Callable[[torch.Tensor, torch.Tensor], Any]


@dataclass
class DPSetup:
    """A model made private in one mode: what a training step needs."""

    mode: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Criterion
    engine: Any = None  # BookKeepingDPSGD for mode "bk"


@dataclass
class ModeTiming:
    """What :func:`select_mode` saw for one mode.

    Attributes
    ----------
    ok : bool
        The mode ran and its per-sample norms matched the reference within tolerance.
    step_s : float or None
        Median seconds of one DP-SGD step (forward, backward, clip, noise, update).
    max_rel_norm_diff : float or None
        Max over samples of |norm_mode − norm_ref| / norm_ref.
    error : str or None
        Why the mode was dropped.
    """

    mode: str
    ok: bool = False
    step_s: float | None = None
    max_rel_norm_diff: float | None = None
    error: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _quiet_opacus() -> Iterator[None]:
    """Silence Opacus' start-up warnings (secure RNG, Poisson sampling, hook notices)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message=".*poisson_sampling.*")
        warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="opacus")
        yield


def make_private(
    model: nn.Module,
    mode: str,
    batch_size: int,
    *,
    criterion: nn.Module | None = None,
    lr: float = 0.05,
    noise_multiplier: float = 1.0,
    max_grad_norm: float = 1.0,
    noise_generator: torch.Generator | None = None,
) -> DPSetup:
    """Wrap ``model`` (in place: pass a copy you own) for DP-SGD in ``mode``.

    Fixed-size batches (``poisson_sampling=False``): this module measures step cost, not
    privacy; a site trains with Poisson sampling.
    """
    if mode not in MODES + PROTOTYPE_MODES:
        raise ValueError(
            f"unknown grad_sample_mode {mode!r}; expected one of {MODES + PROTOTYPE_MODES}"
        )
    crit = criterion if criterion is not None else nn.CrossEntropyLoss()
    if mode == "bk-site":
        from site_node import bookkeeping

        wrapped, dp_opt, clipped = bookkeeping.make_private(
            model, torch.optim.SGD(model.parameters(), lr=lr), noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, expected_batch_size=batch_size,
            generator=noise_generator)
        return DPSetup(mode=mode, model=wrapped.train(), optimizer=dp_opt, criterion=clipped)
    if mode == "bk":
        from bk import BookKeepingDPSGD

        opt = torch.optim.SGD(model.parameters(), lr=lr)
        engine = BookKeepingDPSGD(
            model,
            opt,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=batch_size,
            noise_generator=noise_generator,
        )
        return DPSetup(mode=mode, model=model, optimizer=opt, criterion=crit, engine=engine)
    device = next(model.parameters()).device
    # A placeholder loader: make_private derives the expected batch size from it.
    placeholder = DataLoader(
        TensorDataset(torch.zeros(batch_size, 1, device="cpu")), batch_size=batch_size
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    with _quiet_opacus():
        engine = PrivacyEngine()
        out = engine.make_private(
            module=model,
            optimizer=optimizer,
            criterion=crit,
            data_loader=placeholder,
            noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm,
            poisson_sampling=False,
            grad_sample_mode=mode,
            noise_generator=noise_generator,
        )
    if mode == "ghost":
        dp_model, dp_opt, dp_crit, _ = out
    else:
        dp_model, dp_opt, _ = out
        dp_crit = crit
    dp_model.to(device)
    return DPSetup(mode=mode, model=dp_model, optimizer=dp_opt, criterion=dp_crit)


def train_step(setup: DPSetup, x: torch.Tensor, y: torch.Tensor) -> float:
    """One DP-SGD step; returns the loss."""
    if setup.engine is not None:
        return float(setup.engine.step(x, y, setup.criterion))
    setup.optimizer.zero_grad()
    loss = setup.criterion(setup.model(x), y)
    loss.backward()
    setup.optimizer.step()
    if setup.mode == "bk-site":
        return float(loss.item())
    return float(loss.detach() if hasattr(loss, "detach") else loss)


def per_sample_norms(setup: DPSetup, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample gradient norms (over all trainable parameters) of one batch, before clipping.

    hooks/functorch/ew: from each parameter's ``grad_sample``. ghost: the norms Opacus computes
    for clipping (``per_sample_gradient_norms``; ghost never holds all per-sample gradients).
    No optimizer step is taken; gradients are cleared afterwards.
    """
    if setup.engine is not None:
        return setup.engine.per_sample_norms(x, y, setup.criterion).detach()
    setup.optimizer.zero_grad()
    loss = setup.criterion(setup.model(x), y)
    loss.backward()
    if setup.mode in ("ghost", "bk-site"):
        ghost_norms: torch.Tensor = setup.model.per_sample_gradient_norms  # type: ignore[assignment]
        norms = ghost_norms.detach().clone()
    else:
        params = [p for p in setup.model.parameters() if p.requires_grad]
        parts = []
        for p in params:
            gs = getattr(p, "grad_sample", None)
            if gs is None:
                raise RuntimeError(f"mode {setup.mode}: a parameter has no grad_sample")
            if isinstance(gs, list):  # accumulated over several forward passes
                gs = torch.stack(gs).sum(0)
            parts.append(gs.reshape(gs.shape[0], -1).norm(2, dim=1))
        norms = torch.stack(parts, dim=1).norm(2, dim=1).detach()
    setup.optimizer.zero_grad()
    return norms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def select_mode(
    model: nn.Module,
    sample_batch: tuple[torch.Tensor, torch.Tensor],
    candidates: Sequence[str] = MODES,
    *,
    criterion: nn.Module | None = None,
    steps: int = 3,
    warmup: int = 1,
    check_samples: int = 8,
    rtol: float = 1e-3,
    clock: str = "auto",
) -> tuple[str, dict[str, ModeTiming]]:
    """The fastest correct DP-SGD mode for ``model`` and every candidate's timing.

    Parameters
    ----------
    model : nn.Module
        The site's model (not modified; each candidate runs on a deep copy).
    sample_batch : (inputs, targets)
        A batch on the training device. Timing runs on the whole batch, so pass the training
        batch size for a faithful ranking (mode costs scale differently with batch size); the
        norm check uses its first ``check_samples`` samples.
    candidates : sequence of str
        Modes to try, in order of preference on ties.
    steps, warmup : int
        Timed and untimed DP-SGD steps per mode.
    rtol : float
        Largest accepted relative difference to the reference per-sample norms.
    clock : {"auto", "wall", "cpu"}
        How steps are timed. "auto": wall time (with CUDA synchronisation) on a GPU, process
        CPU time on CPU, which other jobs sharing the cores do not inflate.

    Raises
    ------
    RuntimeError
        If no candidate works (the message lists each mode's error).
    """
    x, y = sample_batch
    if clock == "auto":
        clock = "wall" if x.device.type == "cuda" else "cpu"
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'auto', 'wall' or 'cpu', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    if x.shape[0] < 1 or x.shape[0] != y.shape[0]:
        raise ValueError("sample_batch must be (inputs, targets) with the same, non-zero length")
    n_check = min(check_samples, x.shape[0])
    xc, yc = x[:n_check], y[:n_check]
    device = x.device
    was_training = model.training
    ref_model = copy.deepcopy(model).train()
    ref = reference_norms(ref_model, xc, yc, criterion=criterion)
    del ref_model
    timings: dict[str, ModeTiming] = {}
    for mode in candidates:
        t = ModeTiming(mode=mode)
        timings[mode] = t
        try:
            trial = copy.deepcopy(model).train()
            setup = make_private(
                trial, mode, x.shape[0], criterion=copy.deepcopy(criterion) if criterion else None
            )
            norms = per_sample_norms(setup, xc, yc)
            if not torch.isfinite(norms).all():
                raise FloatingPointError("non-finite per-sample norm")
            t.max_rel_norm_diff = max_relative_difference(norms, ref)
            if t.max_rel_norm_diff > rtol:
                t.error = f"per-sample norms disagree: max rel diff {t.max_rel_norm_diff:.2e}"
                continue
            for _ in range(warmup):
                train_step(setup, x, y)
            durations = []
            for _ in range(steps):
                _sync(device)
                start = now()
                train_step(setup, x, y)
                _sync(device)
                durations.append(now() - start)
            t.step_s = statistics.median(durations)
            t.ok = True
        except Exception as exc:  # a failing mode is an answer, not an error
            t.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        finally:
            setup = None  # type: ignore[assignment]
            trial = None  # type: ignore[assignment]
    model.train(was_training)
    working = [t for t in timings.values() if t.ok and t.step_s is not None]
    if not working:
        detail = "; ".join(f"{m}: {t.error}" for m, t in timings.items())
        raise RuntimeError(f"no DP-SGD mode works for this model: {detail}")
    best = min(working, key=lambda t: (t.step_s, list(candidates).index(t.mode)))
    return best.mode, timings
