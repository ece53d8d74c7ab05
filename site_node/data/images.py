"""An image task's rules applied to a site's images in a folder per class (a MedMNIST ``.npz``
is :mod:`site_node.data.npz`'s).

``ROOT/<class folder>/*.png|*.jpg|*.jpeg``, the folder of each class as the task declares it
(its name by default). Every file must open with Pillow as PNG or JPEG, in 8-bit grayscale
(mode ``L``) for one channel or 8-bit RGB for three, at the task's size. Hidden files
(``.name``) are skipped; anything else is a problem.

Pixels are scaled by the task's fixed rule (divided by 255), never by a site's statistics.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from policies.task import ImageTask
from site_node.data import report as rules
from site_node.data.report import Findings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class ImageSet:
    """Images as ``uint8`` ``(N, C, H, W)`` and their class indices."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def pixels(images: np.ndarray) -> np.ndarray:
    """The task's fixed pixel scaling: 8-bit values divided by 255, as float32."""
    return (images.astype(np.float32) / 255.0).astype(np.float32)


def wanted(task: ImageTask) -> str:
    spec = task.image
    kind = "8-bit grayscale" if spec.channels == 1 else "8-bit RGB"
    return f"{spec.height}×{spec.width} {kind}"


def _one_image(task: ImageTask, path: Path, shown: str, findings: Findings) -> np.ndarray | None:
    where, spec = f"class folder {path.parent.name}", task.image
    try:
        with Image.open(path) as img:
            img.load()
            fmt, mode, size = img.format, img.mode, img.size
            array = np.asarray(img, dtype=np.uint8) if mode == MODES[spec.channels] else None
    except (OSError, ValueError, SyntaxError, UnidentifiedImageError,
            Image.DecompressionBombError) as exc:
        findings.add(where, rules.UNREADABLE, f"not a readable image ({type(exc).__name__})",
                     shown)
        return None
    if fmt not in ("PNG", "JPEG"):
        findings.add(where, rules.NOT_AN_IMAGE, f"a {fmt} file, not PNG or JPEG", shown)
    elif mode != MODES[spec.channels]:
        findings.add(where, rules.IMAGE_CHANNELS, f"mode {mode}; the task wants {wanted(task)}",
                     shown)
    elif size != (spec.width, spec.height):
        findings.add(where, rules.IMAGE_SIZE, f"{size[1]}×{size[0]}; the task wants "
                     f"{wanted(task)}", shown)
    else:
        assert array is not None
        return array.reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)
    return None


def read_folders(task: ImageTask, root: Path, findings: Findings) -> ImageSet | None:
    """Read ``root/<class folder>/*``; None (problems recorded) if anything does not fit."""
    folders = {c.folder_name: k for k, c in enumerate(task.label.classes)}
    images, labels = [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            findings.add(f"folder {root.name}", rules.NOT_AN_IMAGE,
                         "a file outside the class folders", entry.name)
            continue
        if entry.name not in folders:
            findings.add(f"folder {entry.name}", rules.UNKNOWN_CLASS,
                         f"not the folder of a class {sorted(folders)}")
            continue
        for file in sorted(entry.iterdir()):
            shown = f"{entry.name}/{file.name}"
            if file.name.startswith("."):
                continue
            if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                findings.add(f"class folder {entry.name}", rules.NOT_AN_IMAGE,
                             "not a .png/.jpg/.jpeg file", shown)
                continue
            array = _one_image(task, file, shown, findings)
            if array is not None:
                images.append(array)
                labels.append(folders[entry.name])
    if findings:
        return None
    shape = (0, *task.input_shape)
    stacked = np.stack(images) if images else np.zeros(shape, np.uint8)
    return ImageSet(stacked, np.asarray(labels, dtype=np.int64))
