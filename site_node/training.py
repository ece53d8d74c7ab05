"""Local training with Opacus DP-SGD, and local evaluation.

One call of :func:`train_dp` is one round of a site's work: Poisson sampling, per-sample
clipping and Gaussian noise through a fresh Opacus ``PrivacyEngine`` whose accountant is first
loaded with the site's cumulative history, so ε composes across rounds. DP noise and sampling
draw from operating-system entropy; only the model initialisation is seeded by the run.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from torch import nn
from torch.utils.data import TensorDataset

from site_node.accounting import Mechanism, SiteAccountant
from site_node.data import SiteData
from site_node.model import build_model, get_weights, set_weights

log = logging.getLogger(__name__)


class BudgetExceeded(Exception):
    """Training was refused because it would pass the site's ε ceiling. Nothing was spent."""


@dataclass(frozen=True, kw_only=True)
class TrainPlan:
    """What the consortium asks a site to do in one round.

    Attributes
    ----------
    noise_multiplier, sample_rate, max_grad_norm : float
        DP-SGD mechanism parameters (from the policy).
    local_epochs : int
        Passes over the local data; steps = local_epochs / sample_rate.
    learning_rate : float
        SGD learning rate.
    accountant : str
        ``"rdp"`` or ``"prv"``.
    delta : float
        δ at which ε is reported.
    epsilon_ceiling : float
        The site must not pass this cumulative ε.
    """

    noise_multiplier: float
    sample_rate: float
    max_grad_norm: float
    local_epochs: int
    learning_rate: float
    accountant: str
    delta: float
    epsilon_ceiling: float

    @property
    def steps(self) -> int:
        """Noisy steps per round: each epoch is ``1 / sample_rate`` Poisson-sampled batches."""
        return round(self.local_epochs / self.sample_rate)

    @property
    def mechanism(self) -> Mechanism:
        """The DP mechanism this plan runs."""
        return Mechanism(
            noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
            steps=self.steps, max_grad_norm=self.max_grad_norm, accountant=self.accountant,
        )


@dataclass(frozen=True)
class TrainResult:
    """The updated weights and what was spent."""

    weights: list[np.ndarray]
    mechanism: Mechanism
    epsilon: float
    train_loss: float


def _entropy_generator() -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1))
    return gen


def train_dp(
    weights: list[np.ndarray], data: SiteData, plan: TrainPlan, accountant: SiteAccountant
) -> TrainResult:
    """Run one round of DP-SGD from ``weights`` and record it in ``accountant``.

    Raises
    ------
    BudgetExceeded
        Before any training, if the round would take the site past ``plan.epsilon_ceiling``.
    """
    projected = accountant.projected_epsilon(plan.mechanism, plan.delta)
    if projected > plan.epsilon_ceiling:
        raise BudgetExceeded(
            f"site {data.site}: this round would bring ε to {projected:.4f} > ceiling "
            f"{plan.epsilon_ceiling} at δ={plan.delta}; refused before training"
        )
    model = build_model(data.x_train.shape[1])
    set_weights(model, weights)
    engine = PrivacyEngine(accountant=plan.accountant)
    engine.accountant.history = accountant.history
    gen = _entropy_generator()
    dataset = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    loader = DPDataLoader(dataset, sample_rate=plan.sample_rate, generator=gen)
    optimizer = torch.optim.SGD(model.parameters(), lr=plan.learning_rate)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
        warnings.filterwarnings("ignore", message=".*poisson_sampling.*")
        dp_model, dp_opt, dp_loader = engine.make_private(
            module=model, optimizer=optimizer, data_loader=loader,
            noise_multiplier=plan.noise_multiplier, max_grad_norm=plan.max_grad_norm,
            poisson_sampling=False, noise_generator=gen,
        )
    loss = _run_epochs(dp_model, dp_opt, dp_loader, plan.local_epochs)
    steps = accountant.steps_added_by(engine.accountant)
    mechanism = Mechanism(
        noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate, steps=steps,
        max_grad_norm=plan.max_grad_norm, accountant=plan.accountant,
    )
    accountant.record(mechanism)
    return TrainResult(
        weights=get_weights(model), mechanism=mechanism,
        epsilon=accountant.epsilon(plan.delta), train_loss=loss,
    )


def _run_epochs(
    model: nn.Module, optimizer: torch.optim.Optimizer, loader: DPDataLoader, epochs: int
) -> float:
    criterion = nn.BCEWithLogitsLoss()
    model.train()
    total, count = 0.0, 0
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            if len(xb) == 0:  # an empty Poisson batch still takes a (pure-noise) step
                loss = model(xb).sum() * 0.0
            else:
                loss = criterion(model(xb).squeeze(-1), yb)
                total, count = total + float(loss) * len(xb), count + len(xb)
            loss.backward()
            optimizer.step()
    return total / max(count, 1)


def evaluate(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Loss (mean binary cross-entropy) and accuracy of ``weights`` on ``(x, y)``."""
    model = build_model(x.shape[1])
    set_weights(model, weights)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).squeeze(-1)
        target = torch.from_numpy(y)
        loss = float(nn.functional.binary_cross_entropy_with_logits(logits, target))
        acc = float(((logits > 0).float() == target).float().mean())
    return loss, acc
