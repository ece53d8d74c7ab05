"""Augmentation multiplicity: each sampled image enters a step as K random copies whose
gradients are averaged into its one clipped gradient; the mechanism (and ε) is the image's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.grad_sample import wrap_model
from torch import nn

from policies.errors import PolicyError
from policies.task import ImageTask
from policies.task_augmentation import Augmentation
from site_node import patient_sgd
from site_node.augmentation import views
from site_node.data import DataSummary, SiteData
from site_node.model import initial_weights
from site_node.patient_sgd import combine_per_patient
from site_node.training import TrainPlan, train_dp
from tests.site_node.data.images import image_task


def _images(n: int = 3, size: int = 6) -> torch.Tensor:
    return torch.arange(n * size * size, dtype=torch.float32).reshape(n, 1, size, size) + 1


def test_copies_are_record_major_and_each_a_shift_of_its_own_image() -> None:
    x = _images()
    spec = Augmentation(multiplicity=5, crop_padding=2)
    out = views(x, spec, torch.Generator().manual_seed(0))
    assert out.shape == (15, 1, 6, 6)
    shifts = set()
    for i in range(15):
        src = x[i // 5, 0]
        padded = nn.functional.pad(src, (2, 2, 2, 2))
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(padded[dy:dy + 6, dx:dx + 6], out[i, 0])]
        assert found, f"copy {i} is not a shift of image {i // 5}"
        shifts.add(found[0])
    assert len(shifts) > 1  # random, not one fixed shift


def test_flips_are_the_image_or_its_mirror_and_both_occur() -> None:
    x = _images(n=1)
    out = views(x, Augmentation(multiplicity=32, horizontal_flip=True),
                torch.Generator().manual_seed(1))
    same = [torch.equal(c, x[0]) for c in out]
    mirrored = [torch.equal(c, x[0].flip(2)) for c in out]
    assert all(a or b for a, b in zip(same, mirrored, strict=True))
    assert any(same) and any(mirrored)


def test_an_empty_batch_has_no_copies() -> None:
    out = views(torch.zeros(0, 1, 6, 6), Augmentation(crop_padding=1, vertical_flip=True),
                torch.Generator())
    assert out.shape == (0, 1, 6, 6)


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_a_units_gradient_averages_its_records_copies(how: str) -> None:
    """Unit 0 has records 0 and 1, unit 1 has record 2; each record as 3 copies. ``mean``: the
    mean over all the unit's copies; ``sum``: the sum over its records of their copy means."""
    model = nn.Linear(3, 2)
    x, y = torch.randn(9, 3), torch.randint(0, 2, (9,))
    owner = torch.tensor([0, 0, 1]).repeat_interleave(3)
    gsm = wrap_model(model, grad_sample_mode="hooks", loss_reduction="sum")
    nn.CrossEntropyLoss(reduction="sum")(gsm(x), y).backward()
    params = [p for p in gsm.parameters() if p.requires_grad]
    per_copy = [p.grad_sample.clone() for p in params]
    combine_per_patient(params, owner, 2, how, copies=3)
    for p, gs in zip(params, per_copy, strict=True):
        record_means = gs.reshape(3, 3, *gs.shape[1:]).mean(1)
        unit0 = record_means[:2].mean(0) if how == "mean" else record_means[:2].sum(0)
        torch.testing.assert_close(p.grad_sample[0], unit0)
        torch.testing.assert_close(p.grad_sample[1], record_means[2])


@pytest.mark.parametrize(("extra", "field"), [
    ("augmentation: {multiplicity: 4}", "augmentation: names no transform"),
    ("augmentation: {crop_padding: 4}", "augmentation: crop_padding 4 is not smaller"),
    ("augmentation: {multiplicity: 33, horizontal_flip: true}", "augmentation.multiplicity"),
    ("augmentation: {crop_padding: 1, rotate: true}", "augmentation.rotate"),
])
def test_a_task_naming_bad_augmentation_is_refused_naming_the_field(
        tmp_path: Path, extra: str, field: str) -> None:
    with pytest.raises(PolicyError, match=field):
        image_task(tmp_path, model="{family: cnn, channels: [4]}\n" + extra)


def _site(n: int = 24) -> SiteData:
    rng = np.random.default_rng(0)
    y = (np.arange(n) % 3).astype(np.int64)
    x = (rng.random((n, 1, 4, 4)) * 0.2 + y[:, None, None, None] / 3).astype(np.float32)
    summary = DataSummary(source="-", task="tiny-scans", task_sha256="0", format="npz", rows=n,
                          train=n, test=0, split="-", classes={})
    return SiteData(x, y, x[:0], y[:0], summary)


def test_a_dp_round_with_augmentation_runs_the_record_level_mechanism_it_planned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []

    def counted(x: torch.Tensor, spec: Augmentation, gen: torch.Generator) -> torch.Tensor:
        out = views(x, spec, gen)
        made.append(len(out) // max(len(x), 1))
        return out

    monkeypatch.setattr(patient_sgd, "views", counted)
    plain = image_task(tmp_path, model="{family: cnn, channels: [4]}")
    task = image_task(tmp_path, model="{family: cnn, channels: [4]}\n"
                      "augmentation: {multiplicity: 4, crop_padding: 1}")
    assert isinstance(task.task, ImageTask) and isinstance(plain.task, ImageTask)
    assert task.task.augmentation is not None and plain.task.augmentation is None
    plan = TrainPlan(noise_multiplier=1.1, sample_rate=0.5, max_grad_norm=0.5, steps=3,
                     learning_rate=0.5, accountant="rdp", delta=1e-5)
    start = initial_weights(task.task, 0)
    out = train_dp(start, _site(), plan, task.task)
    assert out.mechanism == plan.mechanism  # the copies change compute, not the mechanism
    assert out.mechanism.unit == "record"
    assert made and set(made) <= {0, 4}  # every step's batch went in as 4 copies of each image
    assert any(not np.array_equal(a, b) for a, b in zip(start, out.weights, strict=True))
