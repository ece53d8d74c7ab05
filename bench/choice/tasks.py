"""The bench's tasks: each a loaded task and every site's encoded data (the product's loader).

``digits32-cnn`` is made here, once, into a temporary directory: digits 0, 1 and 2 of the
embedded digits example's files (all their images, train and test, pooled), upscaled from 8×8
to 32×32 (bilinear), dealt to three sites in turn per class (seed 0), about 100 images each,
written as MedMNIST-format ``.npz`` files with a task file of a GroupNorm CNN
(``digits32-cnn-aug``: the CNN with augmentation multiplicity;
``digits32-logistic``: the same files, a logistic regression over the pixels;
``digits32-scattering``: a logistic regression over their wavelet scattering features).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from policies.example import load_example
from policies.task_loader import LoadedTask, load_task
from site_node.data import SiteData, load_site_data, with_site_indicator

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "site_node" / "data" / "examples" / "digits"
CLASSES = (0, 1, 2)
IMAGE_TASK = """\
version: 1
name: digits32
description: Three digits upscaled to 32x32 (bench/choice).
modality: image
preprocessing: fixed
image: {height: 32, width: 32, channels: 1, pixel_scaling: divide-by-255}
label:
  classes:
    - {name: "0", values: [0]}
    - {name: "1", values: [1]}
    - {name: "2", values: [2]}
  min_classes_per_site: 2
model: {family: cnn, channels: [8, 16], groups: 4}
split: {test_fraction: 0.25, seed: 20240601, stratified: true}
"""

#: ``digits32-scattering``: a logistic head on wavelet scattering features (J = 2, L = 8:
#: 81 coefficients of 8×8 each, 5184 per image), computed at each site.
SCATTERING = "features: {kind: scattering, J: 2, L: 8}\n"
#: ``digits32-cnn-aug``: the CNN, each sampled image's gradient averaged over 8 random shifts of
#: up to 2 pixels (augmentation multiplicity; no flips: a flipped 2 is not a 2).
AUGMENTATION = "augmentation: {multiplicity: 8, crop_padding: 2}\n"


def _digits32(directory: Path) -> tuple[Path, dict[str, Path]]:
    images, labels = [], []
    for f in sorted(DIGITS.glob("*.npz")):
        with np.load(f) as z:
            for part in ("train", "test"):
                images.append(z[f"{part}_images"])
                labels.append(z[f"{part}_labels"].reshape(-1))
    x, y = np.concatenate(images), np.concatenate(labels)
    keep = np.isin(y, CLASSES)
    x, y = x[keep], y[keep]
    big = torch.nn.functional.interpolate(torch.from_numpy(x).float()[:, None], size=(32, 32),
                                          mode="bilinear", align_corners=False)
    x32 = big[:, 0].round().clamp(0, 255).numpy().astype(np.uint8)
    rng = np.random.default_rng(0)
    sites = {"site_a": [], "site_b": [], "site_c": []}  # type: dict[str, list[int]]
    for k in CLASSES:
        idx = rng.permutation(np.flatnonzero(y == k))[:105]
        for i, j in enumerate(idx):
            sites[list(sites)[i % 3]].append(int(j))
    files = {}
    for site, idx in sites.items():
        ids = rng.permutation(np.array(idx))
        n_test = len(ids) // 4
        test, train = ids[:n_test], ids[n_test:]
        path = directory / f"{site}.npz"
        np.savez(path, train_images=x32[train], train_labels=y[train].reshape(-1, 1),
                 test_images=x32[test], test_labels=y[test].reshape(-1, 1))
        files[site] = path
    task = directory / "digits32.yaml"
    task.write_text(IMAGE_TASK, encoding="utf-8")
    return task, files


def load(name: str) -> tuple[LoadedTask, dict[str, SiteData]]:
    """The task and each site's data (with the site indicator, if the task has one)."""
    if name.startswith("digits32-"):
        directory = Path(tempfile.mkdtemp(prefix="choice-bench-"))
        task_path, files = _digits32(directory)
        if name == "digits32-cnn-aug":  # the CNN with augmentation multiplicity (issue 16)
            task_path.write_text(IMAGE_TASK + AUGMENTATION, encoding="utf-8")
        elif name != "digits32-cnn":  # the same images, the task declares a linear model
            linear = IMAGE_TASK.replace("{family: cnn, channels: [8, 16], groups: 4}",
                                        "{family: logistic}")
            if name == "digits32-scattering":  # on fixed scattering features (issue 16)
                linear += SCATTERING
            task_path.write_text(linear, encoding="utf-8")
        task = load_task(task_path)
    else:
        ex = load_example("heart-disease")
        task = load_task(ex.task)
        wanted = {"heart-3": ("hungary", "long_beach", "switzerland"),
                  "heart-4": tuple(ex.data)}[name]
        files = {s: ex.data[s] for s in wanted}
    model_task = task.task.for_members(tuple(files))
    return task, {s: with_site_indicator(load_site_data(task, p), model_task, s)
                  for s, p in files.items()}
