"""A site's MedMNIST-format ``.npz``, checked from its arrays' headers before any array is read.

An ``.npz`` is a zip of ``.npy`` members, each a small header (dtype, shape, order) followed by
the raw array. The header is all that is needed to check a member against the task, and reading
an array first costs what its header declares: a 3 MB file of zeros can hold a 3 GiB array, and a
header can declare ``(10**12, 8, 8)`` over a few bytes. So every member is checked first, from
its header alone (:mod:`numpy.lib.format`): its name, that it holds no Python objects (pickle is
never read), that the bytes it holds are the bytes its shape and dtype declare, the dtype and
shape the task wants, and that the arrays of the file together stay under :data:`MAX_NPZ_BYTES`.
Only a file that passes is read.

The arrays: ``train_images`` and ``train_labels``, optionally ``test_images``/``test_labels``
(then the file's own split is used instead of the task's) and ``val_images``/``val_labels``
(checked, not used); with a task whose patients are an npz array (``privacy_unit.patient_array:
NAME``), ``train_NAME`` (required) and ``test_NAME``/``val_NAME``: one patient id per image of the
split, integers or text (numpy's fixed-width unicode; never objects). Images are ``uint8``,
shaped ``(N, H, W)`` (or ``(N, H, W, 1)``) for one channel and ``(N, H, W, 3)`` for three;
labels are integers, shaped ``(N,)`` or ``(N, 1)``, each a label value of a class.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from policies.task import ImageTask
from site_node.data import report as rules
from site_node.data.images import ImageSet, wanted
from site_node.data.report import Findings

NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "val_images",
            "val_labels")
SPLITS = ("train", "test", "val")
#: The most bytes the arrays of one file may declare (2 GiB: 2.7 million 28×28 images).
MAX_NPZ_BYTES = 2 * 1024**3
#: The longest ``.npy`` header read (numpy's own default).
MAX_HEADER_BYTES = 10_000
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError,
                NotImplementedError)


@dataclass(frozen=True)
class Declared:
    """What one member's header declares, and where it lies in the zip."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    info: zipfile.ZipInfo

    def shown(self) -> str:
        """``shape (24, 28, 28) uint8``."""
        return f"shape {self.shape} {self.dtype}"


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, findings: Findings
            ) -> Declared | None:
    """The member's header, checked to hold no objects and to match the member's size."""
    where = f"array {key}"
    try:
        with zf.open(info) as fp:
            version = npy.read_magic(fp)
            if version not in ((1, 0), (2, 0)):
                findings.add(where, rules.UNREADABLE, f"npy format version {version} is not read")
                return None
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read(fp, max_header_size=MAX_HEADER_BYTES)
            header_bytes = fp.tell()
    except _READ_ERRORS as exc:
        findings.add(where, rules.UNREADABLE, f"not a readable .npy header ({type(exc).__name__})")
        return None
    if dtype.hasobject:
        findings.add(where, rules.UNREADABLE, f"dtype {dtype} holds Python objects; an npz is read "
                     "without pickle")
        return None
    declared = Declared(key, tuple(int(n) for n in shape), dtype,
                        math.prod(shape) * dtype.itemsize, info)
    held = info.file_size - header_bytes
    if held != declared.nbytes:
        findings.add(where, rules.UNREADABLE, f"declares {declared.shown()} ({declared.nbytes:,} "
                     f"bytes) but holds {held:,} bytes")
        return None
    return declared


def array_names(task: ImageTask) -> tuple[str, ...]:
    """The array names a file may hold for ``task``: MedMNIST's, and the patient arrays."""
    name = task.privacy_unit.patient_array
    return NPZ_KEYS + (() if name is None else tuple(f"{s}_{name}" for s in SPLITS))


def _members(zf: zipfile.ZipFile, keys: tuple[str, ...], seen: set[str], findings: Findings
             ) -> dict[str, Declared]:
    """Every member's checked header, by array name (``seen``: every known name present,
    refused or not); names not in ``keys`` are refused unread."""
    found: dict[str, Declared] = {}
    for info in zf.infolist():
        key = info.filename.removesuffix(".npy")
        if key not in keys or not info.filename.endswith(".npy"):
            findings.add(f"array {key}", rules.WRONG_TYPE, "not an array name of this task "
                         f"{list(keys)}")
            continue
        if key in seen:
            findings.add(f"array {key}", rules.DUPLICATE_COLUMN, "the file holds it twice")
            continue
        seen.add(key)
        declared = _header(zf, info, key, findings)
        if declared is not None:
            found[key] = declared
    return found


def _check_images(task: ImageTask, d: Declared, findings: Findings) -> bool:
    spec, where, shape = task.image, f"array {d.key}", d.shape
    if d.dtype != np.uint8:
        findings.add(where, rules.WRONG_TYPE, f"dtype {d.dtype}; the task wants 8-bit pixels "
                     "(uint8)")
        return False
    if len(shape) == 3 and spec.channels == 1:
        shape = (*shape, 1)
    if len(shape) != 4:
        findings.add(where, rules.IMAGE_CHANNELS, f"shape {d.shape}; the task wants "
                     f"{wanted(task)} images, (N, H, W) or (N, H, W, C)")
    elif shape[3] != spec.channels:
        findings.add(where, rules.IMAGE_CHANNELS, f"{shape[3]} channel(s); the task wants "
                     f"{wanted(task)}")
    elif shape[1:3] != (spec.height, spec.width):
        findings.add(where, rules.IMAGE_SIZE, f"{shape[1]}×{shape[2]}; the task wants "
                     f"{wanted(task)}")
    else:
        return True
    return False


def _check_labels(d: Declared, n: int | None, findings: Findings) -> bool:
    where = f"array {d.key}"
    rows = d.shape[0] if len(d.shape) in (1, 2) else None
    if (len(d.shape) not in (1, 2) or (len(d.shape) == 2 and d.shape[1] != 1)
            or not np.issubdtype(d.dtype, np.integer)):
        findings.add(where, rules.WRONG_TYPE, f"{d.dtype} {d.shape}; labels are integers shaped "
                     "(N,) or (N, 1)")
        return False
    if n is not None and rows != n:
        findings.add(where, rules.WRONG_TYPE, f"{rows} labels for {n} images")
        return False
    return True


def _check_patients(d: Declared, n: int | None, findings: Findings) -> bool:
    where = f"array {d.key}"
    if (len(d.shape) not in (1, 2) or (len(d.shape) == 2 and d.shape[1] != 1)
            or not (np.issubdtype(d.dtype, np.integer) or d.dtype.kind == "U")):
        findings.add(where, rules.WRONG_TYPE, f"{d.dtype} {d.shape}; patient ids are integers "
                     "or text shaped (N,) or (N, 1)")
        return False
    if n is not None and d.shape[0] != n:
        findings.add(where, rules.WRONG_TYPE, f"{d.shape[0]} patient ids for {n} images")
        return False
    return True


def _check_split(task: ImageTask, split: str, members: dict[str, Declared], seen: set[str],
                 findings: Findings) -> bool:
    img_key, lbl_key = f"{split}_images", f"{split}_labels"
    if img_key not in members or lbl_key not in members:
        return False
    images = members[img_key]
    n = images.shape[0] if images.shape else None
    ok = _check_images(task, images, findings) & _check_labels(members[lbl_key], n, findings)
    name = task.privacy_unit.patient_array
    if name is None:
        return ok
    key = f"{split}_{name}"
    if key not in seen:
        if split == "train":
            findings.add(f"array {key}", rules.MISSING_COLUMN, "the task's patient ids of "
                         "the training images (privacy_unit.patient_array)")
            return False
        return ok
    return ok & (key in members and _check_patients(members[key], n, findings))


def _check_size(members: dict[str, Declared], max_bytes: int, findings: Findings) -> None:
    total = sum(d.nbytes for d in members.values())
    if total > max_bytes:
        largest = max(members.values(), key=lambda d: d.nbytes)
        findings.add(f"array {largest.key}", rules.TOO_LARGE, f"declares {largest.shown()} "
                     f"({largest.nbytes:,} bytes); the file's arrays declare {total:,} bytes, "
                     f"above the limit of {max_bytes:,} for one file")


def _load(zf: zipfile.ZipFile, d: Declared, findings: Findings) -> np.ndarray | None:
    try:
        with zf.open(d.info) as fp:
            array = npy.read_array(fp, allow_pickle=False, max_header_size=MAX_HEADER_BYTES)
    except _READ_ERRORS as exc:
        findings.add(f"array {d.key}", rules.UNREADABLE, f"not a readable array "
                     f"({type(exc).__name__})")
        return None
    return np.asarray(array)


def _labels(task: ImageTask, key: str, array: np.ndarray, findings: Findings) -> np.ndarray:
    index = {int(v): k for k, c in enumerate(task.label.classes) for v in c.values}
    out = np.zeros(len(array), dtype=np.int64)
    for i, value in enumerate(array.reshape(-1).tolist()):
        if value in index:
            out[i] = index[value]
        else:
            findings.add(f"array {key}", rules.UNKNOWN_CLASS, f"not a label value of the "
                         f"classes {sorted(index)}", f"{key}[{i}]")
    return out


def _declared_splits(task: ImageTask, members: dict[str, Declared], seen: set[str],
                     findings: Findings) -> list[str]:
    """The splits present, each checked from its headers (a half split is a problem)."""
    present = []
    for split in SPLITS:
        img_key, lbl_key = f"{split}_images", f"{split}_labels"
        if img_key not in seen and lbl_key not in seen and split != "train":
            continue
        if img_key not in seen or lbl_key not in seen:
            missing = img_key if img_key not in seen else lbl_key
            findings.add(f"array {missing}", rules.MISSING_COLUMN, "a MedMNIST file holds "
                         f"{img_key} and {lbl_key}")
        if _check_split(task, split, members, seen, findings):
            present.append(split)
    return present


def read_npz(task: ImageTask, path: Path, findings: Findings, *, max_bytes: int | None = None
             ) -> dict[str, ImageSet] | None:
    """Read a MedMNIST-format file: its splits by name (``train``, and ``test``/``val`` if
    present); None (problems recorded) if anything does not fit. Every array is checked from
    its header, and nothing is read unless all of them fit and together declare at most
    ``max_bytes`` (default :data:`MAX_NPZ_BYTES`)."""
    try:
        with zipfile.ZipFile(path) as zf:
            seen: set[str] = set()
            members = _members(zf, array_names(task), seen, findings)
            present = _declared_splits(task, members, seen, findings)
            _check_size(members, MAX_NPZ_BYTES if max_bytes is None else max_bytes, findings)
            if findings:
                return None
            return _read_splits(task, zf, members, present, findings)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        findings.add(f"file {path.name}", rules.UNREADABLE, f"not a readable .npz "
                     f"({type(exc).__name__})")
        return None


def _read_splits(task: ImageTask, zf: zipfile.ZipFile, members: dict[str, Declared],
                 present: list[str], findings: Findings) -> dict[str, ImageSet] | None:
    splits: dict[str, ImageSet] = {}
    for split in present:
        img_key, lbl_key = f"{split}_images", f"{split}_labels"
        images, labels = _load(zf, members[img_key], findings), _load(zf, members[lbl_key],
                                                                       findings)
        name = task.privacy_unit.patient_array
        pat_key = None if name is None else f"{split}_{name}"
        ids = _load(zf, members[pat_key], findings) if pat_key in members else None
        if images is None or labels is None:
            continue
        if images.ndim == 3:
            images = images[..., None]
        splits[split] = ImageSet(np.ascontiguousarray(images.transpose(0, 3, 1, 2)),
                                 _labels(task, lbl_key, labels, findings),
                                 patient_ids=None if ids is None else ids.reshape(-1))
    return None if findings else splits
