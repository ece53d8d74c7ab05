"""An image task's rules applied to a site's images: a folder per class, or a MedMNIST ``.npz``.

- **A folder per class**: ``ROOT/<class folder>/*.png|*.jpg|*.jpeg``, the folder of each class
  as the task declares it (its name by default). Every file must open with Pillow as PNG or
  JPEG, in 8-bit grayscale (mode ``L``) for one channel or 8-bit RGB for three, at the task's
  size. Hidden files (``.name``) are skipped; anything else is a problem.
- **MedMNIST format**: an ``.npz`` (read without pickle) with ``train_images`` and
  ``train_labels``, optionally ``test_images``/``test_labels`` (then the file's own split is
  used instead of the task's) and ``val_images``/``val_labels`` (checked, not used: nothing
  here selects models). Images are ``uint8``, shaped ``(N, H, W)`` (or ``(N, H, W, 1)``) for
  one channel and ``(N, H, W, 3)`` for three; labels are integers, shaped ``(N,)`` or
  ``(N, 1)``, each a label value of a class.

Pixels are scaled by the task's fixed rule (divided by 255), never by a site's statistics.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from policies.task import ImageTask
from site_node.data import report as rules
from site_node.data.report import Findings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MODES = {1: "L", 3: "RGB"}
NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "val_images",
            "val_labels")


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


def _want(task: ImageTask) -> str:
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
        findings.add(where, rules.IMAGE_CHANNELS, f"mode {mode}; the task wants {_want(task)}",
                     shown)
    elif size != (spec.width, spec.height):
        findings.add(where, rules.IMAGE_SIZE, f"{size[1]}×{size[0]}; the task wants "
                     f"{_want(task)}", shown)
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


def _npz_images(task: ImageTask, key: str, array: np.ndarray, findings: Findings
                ) -> np.ndarray | None:
    spec, where = task.image, f"array {key}"
    if array.dtype != np.uint8:
        findings.add(where, rules.WRONG_TYPE, f"dtype {array.dtype}; the task wants 8-bit "
                     "pixels (uint8)")
        return None
    if array.ndim == 3 and spec.channels == 1:
        array = array[..., None]
    if array.ndim != 4:
        findings.add(where, rules.IMAGE_CHANNELS, f"shape {array.shape}; the task wants "
                     f"{_want(task)} images, (N, H, W) or (N, H, W, C)")
        return None
    if array.shape[3] != spec.channels:
        findings.add(where, rules.IMAGE_CHANNELS, f"{array.shape[3]} channel(s); the task "
                     f"wants {_want(task)}")
        return None
    if array.shape[1:3] != (spec.height, spec.width):
        findings.add(where, rules.IMAGE_SIZE, f"{array.shape[1]}×{array.shape[2]}; the task "
                     f"wants {_want(task)}")
        return None
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2))


def _npz_labels(task: ImageTask, key: str, array: np.ndarray, n: int, findings: Findings
                ) -> np.ndarray | None:
    where = f"array {key}"
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        findings.add(where, rules.WRONG_TYPE, f"{array.dtype} {array.shape}; labels are "
                     "integers shaped (N,) or (N, 1)")
        return None
    if len(array) != n:
        findings.add(where, rules.WRONG_TYPE, f"{len(array)} labels for {n} images")
        return None
    index = {int(v): k for k, c in enumerate(task.label.classes) for v in c.values}
    out = np.zeros(n, dtype=np.int64)
    for i, value in enumerate(array.tolist()):
        if value in index:
            out[i] = index[value]
        else:
            findings.add(where, rules.UNKNOWN_CLASS, f"not a label value of the classes "
                         f"{sorted(index)}", f"{key}[{i}]")
    return out


def read_npz(task: ImageTask, path: Path, findings: Findings
             ) -> dict[str, ImageSet] | None:
    """Read a MedMNIST-format file: its splits by name (``train``, and ``test``/``val`` if
    present); None (problems recorded) if anything does not fit."""
    where = f"file {path.name}"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        findings.add(where, rules.UNREADABLE, f"not a readable .npz ({type(exc).__name__})")
        return None
    for key in sorted(set(arrays) - set(NPZ_KEYS)):
        findings.add(f"array {key}", rules.WRONG_TYPE, "not a MedMNIST array name "
                     f"{list(NPZ_KEYS)}")
    splits: dict[str, ImageSet] = {}
    for split in ("train", "test", "val"):
        img_key, lbl_key = f"{split}_images", f"{split}_labels"
        if img_key not in arrays and lbl_key not in arrays and split != "train":
            continue
        if img_key not in arrays or lbl_key not in arrays:
            missing = img_key if img_key not in arrays else lbl_key
            findings.add(f"array {missing}", rules.MISSING_COLUMN, "a MedMNIST file holds "
                         f"{img_key} and {lbl_key}")
            continue
        n = arrays[img_key].shape[0] if arrays[img_key].ndim else 0
        images = _npz_images(task, img_key, arrays[img_key], findings)
        labels = _npz_labels(task, lbl_key, arrays[lbl_key], n, findings)
        if images is not None and labels is not None:
            splits[split] = ImageSet(images, labels)
    return None if findings else splits
