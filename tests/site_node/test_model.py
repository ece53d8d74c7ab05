"""Models follow the task: logistic regression, an MLP, and an Opacus-compatible CNN; the server
and every site build the same one from the task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from policies.task_loader import LoadedTask
from site_node.model import build_model, get_weights, initial_weights, set_weights
from tests.site_node.data.images import image_task
from tests.site_node.data.synthetic import task as tabular_task
from tests.site_node.data_files import heart_task


def shapes(task: LoadedTask) -> list[tuple[int, ...]]:
    return [tuple(w.shape) for w in initial_weights(task.task, 0)]


def test_logistic_regression_has_one_logit_per_class() -> None:
    assert shapes(heart_task()) == [(2, 29), (2,)]


def test_the_mlp_has_the_declared_hidden_widths(tmp_path: Path) -> None:
    task = tabular_task(tmp_path, model="mlp, hidden: [8, 4]")
    assert shapes(task) == [(8, 6), (8,), (4, 8), (4,), (3, 4), (3,)]
    model = build_model(task.task)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 2 and not any(r.inplace for r in relus)


def test_images_enter_logistic_and_mlp_models_flattened(tmp_path: Path) -> None:
    model = build_model(image_task(tmp_path).task)
    assert model(torch.zeros(5, 1, 4, 4)).shape == (5, 3)
    assert shapes(image_task(tmp_path)) == [(3, 16), (3,)]


@pytest.mark.parametrize(("channels", "size"), [(1, 4), (3, 4)])
def test_the_cnn_is_opacus_compatible_with_groupnorm_and_no_inplace_ops(
        tmp_path: Path, channels: int, size: int) -> None:
    task = image_task(tmp_path, channels=channels, model="{family: cnn, channels: [6, 8]}")
    model = build_model(task.task)
    assert ModuleValidator.validate(model, strict=True) == []
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert [n.num_groups for n in norms] == [2, 4]  # gcd with the declared 4 groups
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.zeros(2, channels, size, size)).shape == (2, 3)


@pytest.mark.parametrize(("head", "cells"), [("", 4), (", head_grid: 1", 1), (", head_grid: 8", 4)])
def test_the_cnn_keeps_a_grid_of_where_features_are_for_its_linear_layer(
        tmp_path: Path, head: str, cells: int) -> None:
    """By default the last 2x2 map of a 4x4 image is kept whole (at most 4x4 cells); head_grid 1
    is global average pooling; the grid is never larger than the map."""
    task = image_task(tmp_path, model=f"{{family: cnn, channels: [6, 8]{head}}}")
    assert shapes(task)[-2:] == [(3, 8 * cells), (3,)]
    assert build_model(task.task)(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


def test_the_resnet18_family_is_resnet18_sized_and_opacus_compatible(tmp_path: Path) -> None:
    task = image_task(tmp_path, channels=3, model="{family: resnet18}")
    model = build_model(task.task)
    assert ModuleValidator.validate(model, strict=True) == []
    assert 11.0e6 < sum(p.numel() for p in model.parameters()) < 11.3e6
    assert sum(1 for m in model.modules() if type(m).__name__ == "BasicBlock") == 8
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.zeros(2, 3, 4, 4)).shape == (2, 3)
    small = build_model(image_task(tmp_path, model="{family: resnet18, widths: [4, 8, 8, 16], "
                                                   "groups: 2}").task)
    assert {n.num_groups for n in small.modules() if isinstance(n, nn.GroupNorm)} == {2}


def test_initial_weights_are_fixed_by_the_seed_and_round_trip() -> None:
    task = heart_task().task
    a, b, c = initial_weights(task, 3), initial_weights(task, 3), initial_weights(task, 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    model = build_model(task)
    set_weights(model, a)
    assert all(np.array_equal(x, y) for x, y in zip(get_weights(model), a, strict=True))
