"""Patient-level DP-SGD: patients are sampled, and each sampled patient's records give one
clipped gradient.

The privacy unit of a task may be the patient (:mod:`policies.task_privacy`). Then one step is:

1. **Poisson sampling of patients**: each of the site's ``P`` training patients is in the step
   with probability ``q`` (the policy's sample rate, now a rate of patients), independently,
   from operating-system entropy; the batch is every (capped) record of the sampled patients.
2. **Per-record gradients** by Opacus' grad-sample machinery (the mode the site chose,
   :mod:`site_node.grad_mode`), with the loss summed over the records, so ``grad_sample[i]`` is
   record ``i``'s own gradient.
3. **One gradient per patient**: each parameter's ``grad_sample`` ``[records, …]`` is replaced
   by ``[sampled patients, …]``, the mean (or sum, as the task says) of each patient's records'
   gradients (:func:`combine_per_patient`).
4. Opacus' ``DPOptimizer`` then clips each *patient's* gradient to ``C``, adds Gaussian noise of
   standard deviation ``σ·C`` and divides by the expected number of patients ``q·P``.

Adding or removing one patient (with all their records) changes at most one clipped term of
the sum, so the step is the Poisson-subsampled Gaussian mechanism over patients: the accountant,
fed the patient rate ``q``, gives a patient-level ε. The patient indices come from
:class:`site_node.data.SiteData` (small integers; the ids never reach this module).

**Augmentation multiplicity** (:mod:`policies.task_augmentation`) runs through the same steps:
each sampled record enters as ``K`` random copies (:func:`site_node.augmentation.views`) owned
by the same unit, and step 3 averages over them too (a ``sum`` over a patient's records sums
their copy-averages). A record-level task that augments uses it with every record its own unit.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from opacus.accountants import RDPAccountant
from opacus.grad_sample import wrap_model
from opacus.optimizers import DPOptimizer
from torch import nn

from policies.task_augmentation import Augmentation
from site_node.augmentation import views

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatientIndex:
    """Each patient's training records: ``records[offsets[j]:offsets[j+1]]`` are patient j's."""

    records: torch.Tensor
    offsets: torch.Tensor

    @classmethod
    def of(cls, patients: np.ndarray) -> PatientIndex:
        """From one patient index (0 … P−1) per training record."""
        order = np.argsort(patients, kind="stable")
        counts = np.bincount(patients) if len(patients) else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return cls(torch.from_numpy(order.astype(np.int64)),
                   torch.from_numpy(offsets.astype(np.int64)))

    @property
    def num_patients(self) -> int:
        """Number of patients."""
        return len(self.offsets) - 1

    def batch(self, sampled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The records of the ``sampled`` patients and, per record, its patient's position
        among them (0 … len(sampled)−1)."""
        starts, ends = self.offsets[sampled], self.offsets[sampled + 1]
        sizes = ends - starts
        owner = torch.repeat_interleave(torch.arange(len(sampled)), sizes)
        within = torch.arange(int(sizes.sum())) - torch.repeat_interleave(
            torch.cumsum(sizes, 0) - sizes, sizes)
        return self.records[starts[owner] + within], owner


def sample_patients(num_patients: int, rate: float, gen: torch.Generator) -> torch.Tensor:
    """Poisson sampling: the indices of the patients drawn, each independently with ``rate``."""
    return torch.nonzero(torch.rand(num_patients, generator=gen) < rate).reshape(-1)


def combine_per_patient(params: list[nn.Parameter], owner: torch.Tensor, num_sampled: int,
                        how: str, copies: int = 1) -> None:
    """Replace every parameter's per-record ``grad_sample`` by one gradient per sampled patient:
    the sum over the patient's records, divided by their number when ``how`` is ``"mean"``
    (by ``copies``, the augmented copies of each record, when it is ``"sum"``)."""
    counts = torch.bincount(owner, minlength=num_sampled).clamp(min=1)
    for p in params:
        gs = p.grad_sample  # type: ignore[attr-defined]
        if isinstance(gs, list):  # several backward passes: Opacus keeps a list
            gs = torch.cat(gs, dim=0)
        out = torch.zeros((num_sampled, *gs.shape[1:]), dtype=gs.dtype, device=gs.device)
        out.index_add_(0, owner.to(gs.device), gs)
        if how == "mean":
            out /= counts.to(gs.device, gs.dtype).reshape(-1, *([1] * (gs.dim() - 1)))
        elif copies > 1:
            out /= copies
        p.grad_sample = out  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class PatientStep:
    """The patient-level mechanism of a round: σ, C, the patient rate q and the combination."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    learning_rate: float
    combine: str


def _batches(index: PatientIndex, rate: float, gen: torch.Generator, steps: int
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    for _ in range(steps):
        sampled = sample_patients(index.num_patients, rate, gen)
        records, owner = index.batch(sampled)
        yield records, owner, len(sampled)


def train_patient_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                        patients: np.ndarray, step: PatientStep, *, steps: int, mode: str,
                        gen: torch.Generator, augmentation: Augmentation | None = None
                        ) -> list[tuple[float, float, int]]:
    """Run ``steps`` patient-level DP-SGD steps on ``model`` in place (each record as
    ``augmentation``'s copies, if given); returns the accountant's history (σ, q, steps), with
    ``q`` the patient rate."""
    copies = augmentation.multiplicity if augmentation is not None else 1
    index = PatientIndex.of(patients)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        dp_model = wrap_model(model, grad_sample_mode=mode, loss_reduction="sum")
        params = [p for p in dp_model.parameters() if p.requires_grad]
        optimizer = DPOptimizer(
            torch.optim.SGD(params, lr=step.learning_rate),
            noise_multiplier=step.noise_multiplier, max_grad_norm=step.max_grad_norm,
            expected_batch_size=step.sample_rate * index.num_patients, loss_reduction="mean",
            generator=gen)
        accountant = RDPAccountant()
        optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=step.sample_rate))
        criterion = nn.CrossEntropyLoss(reduction="sum")
        dp_model.train()
        for records, owner, sampled in _batches(index, step.sample_rate, gen, steps):
            optimizer.zero_grad()
            xb, yb = x[records], y[records]
            if augmentation is not None:
                xb, yb = views(xb, augmentation, gen), yb.repeat_interleave(copies)
                owner = owner.repeat_interleave(copies)
            out = dp_model(xb)
            loss = out.sum() * 0.0 if len(records) == 0 else criterion(out, yb)
            loss.backward()
            combine_per_patient(params, owner, sampled, step.combine, copies)
            optimizer.step()
    return [(float(s), float(q), int(n)) for s, q, n in accountant.history]
