"""The shared model, built from the task: every site and the consortium build the same one.

The task's model family decides the architecture, its input shape and class count decide the
sizes (:func:`build_model`):

- ``logistic``: one linear layer, a logit per class (softmax; two logits for two classes, so
  there is one training path, cross-entropy, for every task);
- ``mlp``: linear layers of the declared widths with ReLU between them;
- ``cnn`` (images): 3×3 convolution blocks, each with GroupNorm, ReLU and 2×2 max pooling while
  the image is large enough, then average pooling to a grid of at most ``head_grid`` cells a side
  (4 unless the task says; 1 is global average pooling) and a linear layer. Only layers Opacus
  computes per-sample gradients for, and no in-place operation (checked by Opacus'
  ``ModuleValidator`` in the tests);
- ``resnet18`` (images): an imaging-size ResNet-18-class network with GroupNorm and
  out-of-place residual adds (:mod:`site_node.resnet`), Opacus-valid too.

Images enter the logistic and MLP models flattened. Weights travel as a list of NumPy arrays in
``state_dict`` order; :func:`initial_weights` is the run's seeded starting point.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from policies.task import AnyTask, CNNModel, LogisticModel, MLPModel, ResNet18Model
from site_node.resnet import ResNet18GN


def _dense(inputs: int, hidden: tuple[int, ...], outputs: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    width = inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, outputs))
    return layers


def _cnn(spec: CNNModel, channels: int, height: int, width: int, outputs: int) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = channels
    for c_out in spec.channels:
        groups = math.gcd(c_out, spec.groups)
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
                   nn.GroupNorm(groups, c_out), nn.ReLU()]
        if min(height, width) >= 4:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        c_in = c_out
    grid = min(spec.head_grid, height, width)
    layers += [nn.AdaptiveAvgPool2d(grid), nn.Flatten(), nn.Linear(c_in * grid * grid, outputs)]
    return nn.Sequential(*layers)


def build_model(task: AnyTask) -> nn.Module:
    """The task's model, freshly initialised (by torch's current random state)."""
    outputs = task.num_classes
    shape = task.model_input_shape
    spec = task.model
    if isinstance(spec, CNNModel):
        channels, height, width = shape
        return _cnn(spec, channels, height, width, outputs)
    if isinstance(spec, ResNet18Model):
        channels, height, width = shape
        return ResNet18GN(channels, outputs, min(height, width), spec.widths, spec.groups)
    hidden = spec.hidden if isinstance(spec, MLPModel) else ()
    assert isinstance(spec, LogisticModel | MLPModel)
    flat = math.prod(shape)
    layers = _dense(flat, hidden, outputs)
    if len(shape) > 1:
        layers.insert(0, nn.Flatten())
    return nn.Sequential(*layers)


def initial_weights(task: AnyTask, seed: int) -> list[np.ndarray]:
    """The run's initial global weights, fixed by the run seed."""
    torch.manual_seed(seed)
    return get_weights(build_model(task))


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
