"""A small image task with fixed features, its sites' files and a public backbone file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from policies.task_loader import LoadedTask, load_task

SIZE = 16
TASK_YAML = f"""\
version: 1
name: stripes
modality: image
preprocessing: fixed
image: {{height: {SIZE}, width: {SIZE}, channels: 1, pixel_scaling: divide-by-255}}
label:
  classes:
    - {{name: horizontal, values: [0]}}
    - {{name: vertical, values: [1]}}
model: {{family: logistic}}
split: {{test_fraction: 0.25, seed: 3, stratified: true}}
FEATURES
"""
SCATTERING = "features: {kind: scattering, J: 2, L: 4}"


def write_task(directory: Path, features: str = SCATTERING) -> Path:
    """The task file (``features``: its ``features:`` line)."""
    path = directory / "stripes.yaml"
    path.write_text(TASK_YAML.replace("FEATURES", features), encoding="utf-8")
    return path


def task(directory: Path, features: str = SCATTERING) -> LoadedTask:
    """The task, loaded."""
    return load_task(write_task(directory, features))


def images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Noisy horizontal (class 0) or vertical (class 1) stripes, 8-bit."""
    rng = np.random.default_rng(seed)
    stripes = (np.arange(SIZE) // 2 % 2 * 160).astype(float)
    out = []
    for k in labels:
        img = np.repeat(stripes[:, None], SIZE, 1) if k == 0 else np.repeat(stripes[None], SIZE, 0)
        out.append(np.clip(img + 40 + rng.normal(0, 30, img.shape), 0, 255))
    return np.stack(out).astype(np.uint8)


def npz(path: Path, n: int = 40, *, seed: int = 0) -> Path:
    """A MedMNIST-format file of ``n`` training and ``n // 4`` test images."""
    labels = np.arange(n) % 2
    test = labels[: n // 4]
    np.savez(path, train_images=images(labels, seed), train_labels=labels[:, None],
             test_images=images(test, seed + 100), test_labels=test[:, None])
    return path


def backbone(path: Path, dim: int = 6) -> str:
    """A small frozen TorchScript backbone (pixels to ``dim`` values); its SHA-256."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, dim),
                              torch.nn.Tanh())
    torch.jit.save(torch.jit.script(net), str(path))  # type: ignore[no-untyped-call]
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pretrained(file: str, sha256: str, dim: int = 6) -> str:
    """The ``features:`` line of a backbone."""
    return f"features: {{kind: pretrained, file: {file}, sha256: '{sha256}', dim: {dim}}}"
