"""The shared model: logistic regression over the fixed feature layout.

Every site and the consortium build the same architecture from :func:`build_model`; weights
travel as a list of NumPy arrays in ``state_dict`` order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from site_node.data.heart_disease import NUM_FEATURES


def build_model(num_features: int = NUM_FEATURES) -> nn.Module:
    """A logistic-regression model (one linear layer producing a logit)."""
    return nn.Sequential(nn.Linear(num_features, 1))


def initial_weights(seed: int, num_features: int = NUM_FEATURES) -> list[np.ndarray]:
    """The run's initial global weights, fixed by the run seed."""
    torch.manual_seed(seed)
    return get_weights(build_model(num_features))


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """Model weights as NumPy arrays, in ``state_dict`` order."""
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    """Load NumPy weights (``state_dict`` order) into ``model``.

    Raises
    ------
    ValueError
        If the number or shapes of the arrays do not match the model.
    """
    keys = list(model.state_dict().keys())
    if len(keys) != len(weights):
        raise ValueError(f"expected {len(keys)} weight arrays, got {len(weights)}")
    state = {}
    for key, arr, ref in zip(keys, weights, model.state_dict().values(), strict=True):
        if tuple(arr.shape) != tuple(ref.shape):
            raise ValueError(f"weight {key}: shape {arr.shape} != expected {tuple(ref.shape)}")
        state[key] = torch.as_tensor(np.asarray(arr, dtype=np.float32))
    model.load_state_dict(state)
