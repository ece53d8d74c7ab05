"""Local training with Opacus DP-SGD, and local evaluation.

One call of :func:`train_dp` is one round of a site's work on the task's model
(:mod:`site_node.model`): Poisson sampling, per-sample clipping and Gaussian noise through a
fresh Opacus ``PrivacyEngine``, with one loss for every task (cross-entropy over the classes),
in the per-sample gradient mode the site chose for the model (:mod:`site_node.grad_mode`).
The mechanism actually run (with the number of noisy steps Opacus counted) is returned for the
site's ledger, which is the one record ε is composed from. DP noise and sampling draw from
operating-system entropy; only the model initialisation is seeded by the run.

The same code runs on every device (:mod:`site_node.device`): the model and each batch are moved
to it, the noise is drawn there. Poisson batches larger than the site's ``max_physical_batch``
are computed in pieces by Opacus' ``BatchMemoryManager``: the noisy step is still taken once per
logical batch, so the sampling rate, the steps and ε are those of the plan.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sized
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
from opacus.utils.batch_memory_manager import BatchMemoryManager
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from policies.task import AnyTask, ImageTask
from policies.task_augmentation import Augmentation
from site_node import bookkeeping, grad_mode
from site_node.data import SiteData
from site_node.errors import TrainingError
from site_node.model import build_model, get_weights, set_weights
from site_node.patient_sgd import PatientStep, train_patient_steps
from site_node.protocol.mechanism import Mechanism

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainPlan:
    """What a site runs in one round, after its own policy tightened the consortium's.

    Attributes
    ----------
    noise_multiplier, sample_rate, max_grad_norm : float
        DP-SGD mechanism parameters.
    steps : int
        Noisy steps per round (Poisson-sampled batches; an epoch is ``1 / sample_rate``).
    learning_rate : float
        SGD learning rate.
    accountant : str
        ``"rdp"`` or ``"prv"``.
    delta : float
        δ at which the site states its ε.
    unit : str
        The task's privacy unit: ``"record"``, or ``"patient"`` (``sample_rate`` samples
        patients; :mod:`site_node.patient_sgd`).
    patient_gradient : str
        Patient unit: a sampled patient's one gradient is the ``"mean"`` or ``"sum"`` of its
        records'.
    """

    noise_multiplier: float
    sample_rate: float
    max_grad_norm: float
    steps: int
    learning_rate: float
    accountant: str
    delta: float
    unit: str = "record"
    patient_gradient: str = "mean"

    @property
    def mechanism(self) -> Mechanism:
        """The DP mechanism this plan runs."""
        return Mechanism(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                         steps=self.steps, max_grad_norm=self.max_grad_norm,
                         accountant=self.accountant, unit=self.unit)


@dataclass(frozen=True)
class TrainResult:
    """The updated weights and the mechanism that was run."""

    weights: list[np.ndarray]
    mechanism: Mechanism


def _entropy_generator(device: torch.device | None = None) -> torch.Generator:
    gen = torch.Generator(device=device or "cpu")
    gen.manual_seed(int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1))
    return gen


def train_dp(weights: list[np.ndarray], data: SiteData, plan: TrainPlan, task: AnyTask, *,
             device: torch.device | None = None, max_physical_batch: int | None = None
             ) -> TrainResult:
    """Run one round of DP-SGD from ``weights`` on ``device`` (default: the CPU), computing at
    most ``max_physical_batch`` examples at once; returns the new weights and the mechanism run.

    Raises
    ------
    ValueError
        If ``weights`` do not fit the task's model.
    TrainingError
        If no Opacus per-sample gradient mode works for the model (nothing was trained).
    """
    device = device or torch.device("cpu")
    augmentation = task.augmentation if isinstance(task, ImageTask) else None
    grouped = plan.unit == "patient" or augmentation is not None
    if grouped and device.type != "cpu":
        log.info("patient-level DP-SGD and augmentation multiplicity train on the CPU (not yet "
                 "on %s)", device)
        device = torch.device("cpu")
    model = build_model(task)
    set_weights(model, weights)
    model.to(device)
    physical = max(1, max_physical_batch or len(data.x_train))
    mode = grad_mode.mode_for(model, input_shape=tuple(data.x_train.shape[1:]),
                              num_classes=task.num_classes, device=device,
                              batch_size=min(physical, round(plan.sample_rate * len(data.x_train))),
                              candidates=(grad_mode.PER_SAMPLE_GRADIENTS if grouped
                                          else grad_mode.CANDIDATES))
    gen = _entropy_generator()
    if grouped:
        history = _grouped_round(model, data, plan, mode, gen, augmentation)
        return TrainResult(weights=get_weights(model), mechanism=_run(plan, history))
    dataset = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    loader = DPDataLoader(dataset, sample_rate=plan.sample_rate, generator=gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=plan.learning_rate)
    with warnings.catch_warnings():
        # Opacus warns that its default noise generator is not cryptographically secure: this
        # one is seeded from os.urandom (see the README's threat model); and that the loader is
        # not wrapped again, which is intended (it is already a Poisson DPDataLoader). Torch
        # warns that the full backward hooks Opacus puts on the first layer fire although its
        # input (the data) needs no gradient: expected, per-sample gradients are of the weights.
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message=".*poisson_sampling.*")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        engine = PrivacyEngine(accountant=plan.accountant)
        dp, loader = _private(engine, model, optimizer, loader, plan, mode, device)
        with BatchMemoryManager(data_loader=loader, max_physical_batch_size=physical,
                                optimizer=cast(DPOptimizer, dp.optimizer)) as batches:
            _run_steps(dp, batches, plan.steps, device, taken=lambda: _steps_taken(engine))
    return TrainResult(weights=get_weights(model),
                       mechanism=_run(plan, engine.accountant.history))


def _private(engine: PrivacyEngine, model: nn.Module, optimizer: torch.optim.Optimizer,
             loader: DPDataLoader, plan: TrainPlan, mode: str, device: torch.device
             ) -> tuple[grad_mode.Private, DataLoader[tuple[torch.Tensor, ...]]]:
    """The model, optimizer and loss of ``mode``, the accountant attached as Opacus attaches
    it (its sampling rate and expected batch size from the Poisson loader)."""
    noise = _entropy_generator(device)
    if mode == bookkeeping.MODE:
        rate = 1 / len(loader)
        made_bk = bookkeeping.make_private(
            model, optimizer, noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            expected_batch_size=int(len(cast(Sized, loader.dataset)) * rate), generator=noise)
        made_bk[1].attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=rate))
        return grad_mode.Private(*made_bk), loader
    made = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader, criterion=nn.CrossEntropyLoss(),
        noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
        poisson_sampling=False, noise_generator=noise, grad_sample_mode=mode)
    return grad_mode.Private(made[0], made[1], made[2] if mode == "ghost"
                             else nn.CrossEntropyLoss()), made[-1]


def _run(plan: TrainPlan, history: list[tuple[float, float, int]]) -> Mechanism:
    """The mechanism run: the plan's, with the noisy steps Opacus' accountant counted."""
    steps = sum(int(n) for _, _, n in history)
    return Mechanism(noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate,
                     steps=steps, max_grad_norm=plan.max_grad_norm, accountant=plan.accountant,
                     unit=plan.unit)


def _grouped_round(model: nn.Module, data: SiteData, plan: TrainPlan, mode: str,
                   gen: torch.Generator, augmentation: Augmentation | None
                   ) -> list[tuple[float, float, int]]:
    """One round of DP-SGD with one clipped gradient per unit combined from several per-sample
    gradients (:mod:`site_node.patient_sgd`): a patient's records, and/or a record's augmented
    copies. With the record unit, every record is its own unit (and its copies are averaged)."""
    if plan.unit == "patient":
        if data.patients_train is None:
            raise TrainingError("the task's privacy unit is the patient, but the data carry no "
                                "patient of each record")
        units, combine = data.patients_train, plan.patient_gradient
    else:
        units, combine = np.arange(len(data.y_train)), "mean"
    step = PatientStep(noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
                       sample_rate=plan.sample_rate, learning_rate=plan.learning_rate,
                       combine=combine)
    return train_patient_steps(model, torch.from_numpy(data.x_train),
                               torch.from_numpy(data.y_train), units, step,
                               steps=plan.steps, mode=mode, gen=gen, augmentation=augmentation)


def _steps_taken(engine: PrivacyEngine) -> int:
    """Noisy steps the accountant counted (one per logical batch, however it was split)."""
    return sum(int(n) for _, _, n in engine.accountant.history)


def _run_steps(dp: grad_mode.Private, loader: DataLoader[tuple[torch.Tensor, ...]], steps: int,
               device: torch.device, *, taken: Callable[[], int]) -> None:
    """Physical batches from ``loader`` (going through it as often as needed) until ``steps``
    noisy steps were taken."""
    dp.model.train()
    while taken() < steps:
        before = taken()
        for xb, yb in loader:
            dp.optimizer.zero_grad()
            # An empty Poisson batch still takes a (pure-noise) step.
            xb, yb = xb.to(device), yb.to(device)
            grad_mode.batch_loss(dp.criterion, dp.model(xb), yb).backward()
            dp.optimizer.step()
            if taken() == steps:
                return
        if taken() == before:
            raise TrainingError("a pass over the data took no noisy step")


def _logits(weights: list[np.ndarray], x: np.ndarray, task: AnyTask,
            device: torch.device | None = None) -> torch.Tensor:
    model = build_model(task)
    set_weights(model, weights)
    model.to(device or "cpu").eval()
    with torch.no_grad():
        logits: torch.Tensor = model(torch.from_numpy(x).to(device or "cpu")).cpu()
    return logits


def evaluate(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, task: AnyTask, *,
             device: torch.device | None = None) -> tuple[float, float]:
    """Loss (mean cross-entropy) and accuracy of ``weights`` on ``(x, y)``, computed on
    ``device`` (default: the CPU)."""
    if len(y) == 0:
        return float("nan"), float("nan")
    logits = _logits(weights, x, task, device)
    target = torch.from_numpy(y)
    loss = float(nn.functional.cross_entropy(logits, target))
    acc = float((logits.argmax(dim=1) == target).float().mean())
    return loss, acc


def class_counts(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, task: AnyTask
                 ) -> tuple[list[int], list[int]]:
    """Per class: how many examples of ``(x, y)`` the model gets right, and how many there are."""
    k = task.num_classes
    if len(y) == 0:
        return [0] * k, [0] * k
    predicted = _logits(weights, x, task).argmax(dim=1).numpy()
    correct = np.bincount(y[predicted == y], minlength=k)
    total = np.bincount(y, minlength=k)
    return [int(c) for c in correct], [int(t) for t in total]
