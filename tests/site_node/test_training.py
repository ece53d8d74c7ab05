"""DP-SGD training with real Opacus on the task's model: the mechanism actually run is what the
ledger composes; one loss (cross-entropy) for every task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from site_node import training
from site_node.data import SiteData, load_site_data
from site_node.model import build_model, initial_weights, set_weights
from site_node.privacy.accountant import epsilon
from site_node.training import TrainPlan, class_counts, evaluate, train_dp
from tests.privacy_reference import rdp_epsilon
from tests.site_node.data.images import image_task, npz_file
from tests.site_node.data_files import example_file, heart_task

HEART = heart_task()


def plan(**over: Any) -> TrainPlan:
    base: dict[str, Any] = dict(noise_multiplier=1.2, sample_rate=0.25, max_grad_norm=1.0,
                                steps=4, learning_rate=1.0, accountant="rdp",
                                delta=1e-5)
    return TrainPlan(**{**base, **over})


def site(name: str) -> SiteData:
    return load_site_data(HEART, example_file(name))


def test_rounds_compose_and_match_an_independent_accountant() -> None:
    data = site("hungary")
    weights = initial_weights(HEART.task, 0)
    mechanisms = []
    for _ in range(3):
        result = train_dp(weights, data, plan(), HEART.task)
        assert result.mechanism.steps == 4  # 1 epoch at q = 0.25
        assert result.mechanism == plan().mechanism
        weights = result.weights
        mechanisms.append(result.mechanism)
    eps = [epsilon(mechanisms[: i + 1], delta=1e-5, accountant="rdp") for i in range(3)]
    assert eps[0] < eps[1] < eps[2]
    assert eps[2] == pytest.approx(rdp_epsilon([(1.2, 0.25, 4)] * 3, 1e-5), rel=0.01)
    assert not all(np.allclose(a, b) for a, b in zip(weights, initial_weights(HEART.task, 0),
                                                       strict=True))


def test_the_plan_runs_its_steps_going_through_the_data_as_often_as_needed() -> None:
    p = plan(steps=10, sample_rate=0.2)  # two passes' worth of Poisson batches
    assert p.steps == 10 and p.mechanism.steps == 10
    result = train_dp(initial_weights(HEART.task, 0), site("switzerland"), p, HEART.task)
    assert result.mechanism.steps == 10


def test_training_learns_something() -> None:
    data = site("cleveland")
    w = initial_weights(HEART.task, 1)
    _, before = evaluate(w, data.x_test, data.y_test, HEART.task)
    for _ in range(5):
        w = train_dp(w, data, plan(noise_multiplier=0.8), HEART.task).weights
    _, after = evaluate(w, data.x_test, data.y_test, HEART.task)
    assert after > max(before, 0.7)


def test_a_cnn_on_images_trains_with_dp_and_counts_per_class(tmp_path: Path) -> None:
    task = image_task(tmp_path, model="{family: cnn, channels: [4, 8]}")
    data = load_site_data(task, npz_file(tmp_path / "s.npz", 48))
    w = initial_weights(task.task, 0)
    result = train_dp(w, data, plan(noise_multiplier=0.5), task.task)
    assert result.mechanism.steps == 4
    assert not all(np.allclose(a, b) for a, b in zip(result.weights, w, strict=True))
    correct, total = class_counts(result.weights, data.x_test, data.y_test, task.task)
    assert total == np.bincount(data.y_test, minlength=3).tolist()
    assert all(0 <= c <= t for c, t in zip(correct, total, strict=True))
    _, acc = evaluate(result.weights, data.x_test, data.y_test, task.task)
    assert acc == pytest.approx(sum(correct) / sum(total))


def test_noise_is_drawn_afresh_every_round() -> None:
    data = site("hungary")
    a = train_dp(initial_weights(HEART.task, 0), data, plan(), HEART.task).weights
    b = train_dp(initial_weights(HEART.task, 0), data, plan(), HEART.task).weights
    assert not np.allclose(a[0], b[0])


def test_weights_of_the_wrong_shape_are_refused() -> None:
    model = build_model(HEART.task)
    with pytest.raises(ValueError, match="expected 2 weight arrays"):
        set_weights(model, initial_weights(HEART.task, 0)[:1])
    with pytest.raises(ValueError, match="shape"):
        set_weights(model, [np.zeros((1, 29), np.float32), np.zeros(1, np.float32)])
    with pytest.raises(ValueError, match="shape"):
        train_dp([np.zeros((2, 3), np.float32), np.zeros(2, np.float32)], site("hungary"),
                 plan(), HEART.task)


def test_an_empty_test_split_evaluates_to_nothing() -> None:
    empty = np.zeros((0, 29), np.float32)
    loss, acc = evaluate(initial_weights(HEART.task, 0), empty, np.zeros(0, np.int64),
                         HEART.task)
    assert np.isnan(loss) and np.isnan(acc)
    assert class_counts(initial_weights(HEART.task, 0), empty, np.zeros(0, np.int64),
                        HEART.task) == ([0, 0], [0, 0])


def _recording_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every physical batch the trained model sees (in mode hooks: the mode
    check would run copies of the model, hooks included)."""
    sizes: list[int] = []
    monkeypatch.setattr(training.grad_mode, "mode_for", lambda *a, **k: "hooks")
    real = training.build_model

    def build(task: Any) -> nn.Module:
        model = real(task)
        model.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
        return model

    monkeypatch.setattr(training, "build_model", build)
    return sizes


def test_a_physical_batch_cap_splits_batches_but_keeps_the_mechanism_and_epsilon(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = site("hungary")  # ~220 training rows: Poisson batches of ~55 at q = 0.25
    p = plan()
    capped_sizes = _recording_sizes(monkeypatch)
    capped = train_dp(initial_weights(HEART.task, 0), data, p, HEART.task, max_physical_batch=8)
    monkeypatch.undo()
    whole = train_dp(initial_weights(HEART.task, 0), data, p, HEART.task)
    assert capped.mechanism == whole.mechanism == p.mechanism  # q, σ, C, steps as planned
    assert epsilon([capped.mechanism], delta=1e-5, accountant="rdp") == \
        epsilon([whole.mechanism], delta=1e-5, accountant="rdp")
    assert capped_sizes and max(capped_sizes) <= 8
    assert len(capped_sizes) > p.steps  # logical batches were computed in pieces
    assert sum(capped_sizes) == pytest.approx(p.steps * p.sample_rate * data.num_train, rel=0.5)


def test_training_on_an_explicit_cpu_device_is_the_default_path() -> None:
    data = site("hungary")
    result = train_dp(initial_weights(HEART.task, 0), data, plan(), HEART.task,
                      device=torch.device("cpu"))
    assert result.mechanism == plan().mechanism
    loss, acc = evaluate(result.weights, data.x_test, data.y_test, HEART.task,
                         device=torch.device("cpu"))
    assert (loss, acc) == evaluate(result.weights, data.x_test, data.y_test, HEART.task)


@pytest.mark.parametrize("mode", ["hooks", "ghost"])
def test_a_resnet18_class_model_trains_under_dp_in_pieces_in_each_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(training.grad_mode, "mode_for", lambda *a, **k: mode)
    task = image_task(tmp_path, channels=3,
                      model="{family: resnet18, widths: [8, 16, 16, 32], groups: 4}")
    data = load_site_data(task, npz_file(tmp_path / "s.npz", 24, channels=3))
    w = initial_weights(task.task, 0)
    result = train_dp(w, data, plan(steps=2), task.task, max_physical_batch=2)
    assert result.mechanism == plan(steps=2).mechanism
    assert all(np.isfinite(a).all() for a in result.weights)
    assert not all(np.allclose(a, b) for a, b in zip(result.weights, w, strict=True))


@pytest.mark.slow
def test_the_full_resnet18_trains_under_dp_on_tiny_images_with_the_mode_the_site_picks(
        tmp_path: Path) -> None:
    """11 M parameters on 4×4 images, physical batches of 2 (the selector runs too: ~30 s)."""
    task = image_task(tmp_path, channels=3, model="{family: resnet18}")
    data = load_site_data(task, npz_file(tmp_path / "s.npz", 12, channels=3))
    w = initial_weights(task.task, 0)
    result = train_dp(w, data, plan(steps=1), task.task, max_physical_batch=2)
    assert result.mechanism == plan(steps=1).mechanism
    assert not all(np.allclose(a, b) for a, b in zip(result.weights, w, strict=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_on_a_gpu_the_same_mechanism_is_run_and_recorded(tmp_path: Path) -> None:
    gpu = torch.device("cuda", 0)
    data = site("hungary")
    result = train_dp(initial_weights(HEART.task, 0), data, plan(), HEART.task, device=gpu,
                      max_physical_batch=16)
    assert result.mechanism == plan().mechanism
    assert all(np.isfinite(a).all() for a in result.weights)
    task = image_task(tmp_path, channels=3, model="{family: resnet18}")
    images = load_site_data(task, npz_file(tmp_path / "s.npz", 48, channels=3))
    trained = train_dp(initial_weights(task.task, 0), images, plan(steps=2), task.task,
                       device=gpu)
    assert trained.mechanism == plan(steps=2).mechanism
    loss, _ = evaluate(trained.weights, images.x_test, images.y_test, task.task, device=gpu)
    assert np.isfinite(loss)
