"""An image task's rules applied to a site's images in a folder per class (a MedMNIST ``.npz``
is :mod:`site_node.data.npz`'s).

``ROOT/<class folder>/*.png|*.jpg|*.jpeg``, the folder of each class as the task declares it
(its name by default). Every file must open with Pillow as PNG or JPEG, in 8-bit grayscale
(mode ``L``) for one channel or 8-bit RGB for three, at the task's size. Hidden files
(``.name``) and the task's patient index file in the root (:mod:`site_node.data.image_patients`)
are skipped; anything else is a problem. Each file is checked from its header
before it is decoded: only Pillow's PNG and JPEG readers are tried, the format must be the
suffix's, and the mode and size the task's; a decompression bomb is a "wrong image size".

Pixels are scaled by the task's fixed rule (divided by 255), never by a site's statistics.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from policies.task import ImageTask
from site_node.data import report as rules
from site_node.data.report import Findings

log = logging.getLogger(__name__)

#: The image format each suffix must hold.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
IMAGE_SUFFIXES = tuple(FORMATS)
#: The first bytes of each accepted format (a file that starts so but does not open is damaged).
SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class ImageSet:
    """Images as ``uint8`` ``(N, C, H, W)`` and their class indices; from a folder, each
    image's path under it (``class/name.png``); from an npz that holds them, each image's
    patient id as stored (never used but to group the images)."""

    images: np.ndarray
    labels: np.ndarray
    files: tuple[str, ...] = ()
    patient_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


def pixels(images: np.ndarray) -> np.ndarray:
    """The task's fixed pixel scaling: 8-bit values divided by 255, as float32."""
    return (images.astype(np.float32) / 255.0).astype(np.float32)


def wanted(task: ImageTask) -> str:
    """``28×28 8-bit grayscale``: what the task wants of every image."""
    spec = task.image
    kind = "8-bit grayscale" if spec.channels == 1 else "8-bit RGB"
    return f"{spec.height}×{spec.width} {kind}"


def _bomb(exc: Warning | Exception) -> str:
    """Pillow's decompression-bomb refusal as a detail: the pixel count its header declares."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return (f"{int(found.group(1)):,} pixels" if found else "too many pixels") + (
        f", above Pillow's decompression-bomb limit ({Image.MAX_IMAGE_PIXELS:,})")


def _unidentified(path: Path) -> tuple[str, str]:
    """Rule and detail for a file neither Pillow's PNG nor its JPEG reader opens: another
    format (named by Pillow's readers' signature checks, nothing decoded), or unreadable."""
    with path.open("rb") as fh:
        head = fh.read(16)
    if any(head.startswith(sig) for sig in SIGNATURES.values()):
        return rules.UNREADABLE, "not a readable image (a damaged PNG or JPEG)"
    Image.init()
    for fmt, (_, accept) in Image.OPEN.items():
        if accept is not None and accept(head):
            return rules.NOT_AN_IMAGE, f"a {fmt} file, not PNG or JPEG"
    return rules.UNREADABLE, "not a readable image"


def _header_problem(task: ImageTask, img: Image.Image, path: Path) -> tuple[str, str] | None:
    """What the header (format, mode, size) says is wrong, before anything is decoded."""
    spec, expected = task.image, FORMATS[path.suffix.lower()]
    if img.format != expected:
        return rules.NOT_AN_IMAGE, f"a {img.format} file named {path.suffix}"
    if img.mode != MODES[spec.channels]:
        return rules.IMAGE_CHANNELS, f"mode {img.mode}; the task wants {wanted(task)}"
    if img.size != (spec.width, spec.height):
        return rules.IMAGE_SIZE, f"{img.size[1]}×{img.size[0]}; the task wants {wanted(task)}"
    return None


def _decode(task: ImageTask, path: Path) -> np.ndarray | tuple[str, str]:
    """The image's pixels, or the rule and detail it breaks. Pillow reads the header only at
    open (and only its PNG and JPEG readers are tried); the pixels are decoded after the
    format, mode and size fit the task. Pillow's warnings are logged, never printed; its
    decompression-bomb warning is a refusal."""
    with warnings.catch_warnings(record=True) as caught, path.open("rb") as fh:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(fh, formats=tuple(SIGNATURES)) as img:
                problem = _header_problem(task, img, path)
                if problem is not None:
                    return problem
                img.load()
                array = np.asarray(img, dtype=np.uint8)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            return rules.IMAGE_SIZE, f"{_bomb(exc)}; the task wants {wanted(task)}"
        except UnidentifiedImageError:
            return _unidentified(path)
        except (OSError, ValueError, SyntaxError) as exc:
            return rules.UNREADABLE, f"not a readable image ({type(exc).__name__})"
    for warning in caught:
        log.debug("%s: %s", path, warning.message)
    return array


def _one_image(task: ImageTask, path: Path, shown: str, findings: Findings) -> np.ndarray | None:
    spec = task.image
    try:
        got = _decode(task, path)
    except OSError as exc:
        got = rules.UNREADABLE, f"not a readable file ({type(exc).__name__})"
    if isinstance(got, tuple):
        findings.add(f"class folder {path.parent.name}", got[0], got[1], shown)
        return None
    return got.reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)


def read_folders(task: ImageTask, root: Path, findings: Findings) -> ImageSet | None:
    """Read ``root/<class folder>/*``; None (problems recorded) if anything does not fit."""
    folders = {c.folder_name: k for k, c in enumerate(task.label.classes)}
    index = task.privacy_unit.patient_index
    images, labels, files = [], [], []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or (index is not None and entry.name == index.file):
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
                files.append(shown)
    if findings:
        return None
    shape = (0, *task.input_shape)
    stacked = np.stack(images) if images else np.zeros(shape, np.uint8)
    return ImageSet(stacked, np.asarray(labels, dtype=np.int64), tuple(files))
