"""A task's fixed features at the site: the same at every site for the same image, computed
before DP-SGD (which then trains the head on them), and a backbone file checked by its hash
before any record is read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from site_node.client import site_data
from site_node.data import DataRefused, load_site_data
from site_node.features import extract, extractor
from site_node.model import build_model, initial_weights
from site_node.settings import NodeSettings, settings_from_node_config
from site_node.training import TrainPlan, evaluate, train_dp
from tests.site_node import feature_data as fd


def test_features_are_deterministic_and_the_same_at_two_sites(tmp_path: Path) -> None:
    """Two sites (two folders, two processes' worth of fresh extractors) give the same image
    the same features, bit for bit: nothing in them depends on a site or its other records."""
    loaded = fd.task(tmp_path)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    a = load_site_data(loaded, fd.npz(one / "site.npz", 40, seed=0))
    b = load_site_data(loaded, fd.npz(two / "site.npz", 8, seed=0))  # other records beside it
    assert a.x_train.shape == (40, 25 * 4 * 4) and a.x_train.dtype == np.float32
    assert np.array_equal(a.x_train[:8], b.x_train)
    image = fd.images(np.array([1]), seed=7).astype(np.float32)[:, None] / 255
    task = loaded.task
    assert task.modality == "image"
    first = extract(extractor(task, folder=tmp_path), image, task=task)
    again = extract(extractor(task, folder=tmp_path), np.repeat(image, 3, 0), task=task)
    assert np.array_equal(first[0], again[2])
    assert "scattering features, 400 per image (computed here, never sent)" in (
        a.summary.image_size or "")


def test_a_round_of_dp_sgd_on_scattering_features_trains(tmp_path: Path) -> None:
    loaded = fd.task(tmp_path)
    data = load_site_data(loaded, fd.npz(tmp_path / "site.npz", 80))
    model_task = loaded.task
    start = initial_weights(model_task, seed=0)
    plan = TrainPlan(noise_multiplier=0.5, sample_rate=0.5, max_grad_norm=1.0, steps=20,
                     learning_rate=0.5, accountant="rdp", delta=1e-5)
    result = train_dp(start, data, plan, model_task)
    assert result.mechanism.steps == 20
    before = evaluate(start, data.x_train, data.y_train, model_task)
    after = evaluate(result.weights, data.x_train, data.y_train, model_task)
    assert after[0] < before[0] and after[1] >= 0.9, (before, after)
    # The head is a logistic regression on the 400 features (1 + 2·4 + 16 coefficients, 4×4
    # each): no extractor weight travels.
    assert [w.shape for w in result.weights] == [(2, 400), (2,)]
    assert sum(p.numel() for p in build_model(model_task).parameters()) == 2 * 400 + 2


def test_a_pretrained_backbone_gives_the_heads_input(tmp_path: Path) -> None:
    sha = fd.backbone(tmp_path / "backbone.pt")
    loaded = fd.task(tmp_path, fd.pretrained("backbone.pt", sha))
    data = load_site_data(loaded, fd.npz(tmp_path / "site.npz", 20))
    assert data.x_train.shape == (20, 6)
    assert np.all(np.abs(data.x_train) <= 1)  # tanh of the frozen backbone


def test_a_backbone_whose_hash_differs_is_refused_naming_the_file_and_both_hashes(
        tmp_path: Path) -> None:
    sha = fd.backbone(tmp_path / "backbone.pt")
    wrong = "0" * 64
    loaded = fd.task(tmp_path, fd.pretrained("backbone.pt", wrong))
    unreadable = tmp_path / "site.npz"
    unreadable.write_bytes(b"not read")  # refused before any record is read
    with pytest.raises(DataRefused) as info:
        load_site_data(loaded, unreadable)
    (problem,) = info.value.report.problems
    assert problem.where == "features.file backbone.pt" and problem.rule == "features file"
    assert sha in problem.detail and wrong in problem.detail


def test_a_missing_backbone_is_refused_and_a_features_folder_may_be_given(
        tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    sha = fd.backbone(folder / "backbone.pt")
    loaded = fd.task(tmp_path, fd.pretrained("backbone.pt", sha))
    path = fd.npz(tmp_path / "site.npz", 12)
    with pytest.raises(DataRefused, match=r"features\.file backbone\.pt.*no such file"):
        load_site_data(loaded, path)
    assert load_site_data(loaded, path, features_dir=folder).x_train.shape == (12, 6)


def test_a_missing_backbone_at_a_node_without_features_dir_is_refused_and_found_with_it(
        tmp_path: Path) -> None:
    """A deployed node (its settings read back from its node config) whose backbone lives in
    another folder than its data finds it through ``features-dir``; without the setting it
    refuses, naming the file and the folder it looked in."""
    models = tmp_path / "srv" / "models"
    models.mkdir(parents=True)
    sha = fd.backbone(models / "backbone.pt")
    loaded = fd.task(tmp_path, fd.pretrained("backbone.pt", sha))
    (tmp_path / "data").mkdir()
    path = fd.npz(tmp_path / "data" / "site.npz", 12)
    without = NodeSettings(site="north", data_path=path, state_dir=tmp_path / "state")
    looked = f"features.file backbone.pt: features file: no such file in the site's features " \
             f"folder {tmp_path / 'data'}"
    with pytest.raises(DataRefused, match=re.escape(looked)):
        site_data(settings_from_node_config(without.node_config()), loaded)
    given = NodeSettings(site="north", data_path=path, state_dir=tmp_path / "state",
                         features_dir=models)
    data = site_data(settings_from_node_config(given.node_config()), loaded)
    assert data.x_train.shape == (12, 6)
