"""A small image task and image files made by the tests: a folder per class, or an npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from policies.task_loader import LoadedTask, load_task

TASK_YAML = """\
version: 1
name: tiny-scans
modality: image
preprocessing: fixed
image: {height: 4, width: 4, channels: CHANNELS, pixel_scaling: divide-by-255}
label:
  classes:
    - {name: clear, values: [0]}
    - {name: nodule, values: [1], folder: nodules}
    - {name: effusion, values: [2]}
  min_classes_per_site: MIN_CLASSES
model: MODEL
split: {test_fraction: 0.25, seed: 3, stratified: true}
"""
FOLDERS = ("clear", "nodules", "effusion")


def image_task(directory: Path, *, channels: int = 1, min_classes: int = 2,
               model: str = "{family: logistic}") -> LoadedTask:
    """The task (``model``: e.g. ``{family: cnn, channels: [4]}``)."""
    text = TASK_YAML.replace("CHANNELS", str(channels)).replace(
        "MIN_CLASSES", str(min_classes)).replace("MODEL", model)
    path = directory / "tiny-scans.yaml"
    path.write_text(text, encoding="utf-8")
    return load_task(path)


def pixels(label: int, rng: np.random.Generator, channels: int = 1, size: int = 4
           ) -> np.ndarray:
    """An image whose brightness follows its class (learnable)."""
    base = 40 + 80 * label
    img = np.clip(base + rng.normal(0, 10, (size, size, channels)), 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def class_folders(root: Path, per_class: int = 8, *, channels: int = 1,
                  classes: tuple[int, ...] = (0, 1, 2), fmt: str = "png") -> Path:
    """``root/<folder>/<i>.<fmt>`` images of each class."""
    rng = np.random.default_rng(0)
    for k in classes:
        folder = root / FOLDERS[k]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(pixels(k, rng, channels)).save(folder / f"{i}.{fmt}")
    return root


def npz_file(path: Path, n: int = 24, *, channels: int = 1, test: bool = True,
             classes: tuple[int, ...] = (0, 1, 2), **arrays: np.ndarray) -> Path:
    """A MedMNIST-format file (labels shaped (N, 1) as MedMNIST's); ``arrays`` replace or add."""
    rng = np.random.default_rng(1)
    labels = np.array([classes[i % len(classes)] for i in range(n)], dtype=np.uint8)
    images = np.stack([pixels(int(k), rng, channels) for k in labels])
    content: dict[str, np.ndarray] = {"train_images": images, "train_labels": labels[:, None]}
    if test:
        content |= {"test_images": images[: n // 3], "test_labels": labels[: n // 3, None]}
    content |= arrays
    np.savez(path, **content)  # type: ignore[arg-type]
    return path
