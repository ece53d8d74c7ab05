"""Each image's patient, read where the task says: its file name, an index file, or an npz array.

The task names the source (:class:`policies.task_privacy.PrivacyUnitSpec`); this module reads
it for the images a site holds and hands back one patient index per image (0, 1, … through
:func:`site_node.data.patients.encode_ids`): the ids themselves are kept nowhere.

- ``patient_file_pattern``: the regular expression is searched in each image's file name
  (``P0042_scan3.png`` with ``^(?P<patient>P\\d+)_``); a name it does not match, or whose group
  is empty, is a problem naming the file.
- ``patient_index``: a CSV in the root of the image folder, one row per image. The image cell
  is the image's path under the folder (``nodules/3.png``) or its bare file name where no two
  images share it. Every image must have exactly one row (two rows of one image are a problem,
  even with the same id); rows naming no image the site holds are ignored and counted in the
  log (a hospital-wide index may list more than one task's images).
- ``patient_array``: the npz's own array (:mod:`site_node.data.npz` checks and reads it).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from policies.task import ImageTask
from policies.task_privacy import PATIENT_GROUP, PatientIndexSpec
from site_node.data import report as rules
from site_node.data.images import ImageSet
from site_node.data.patients import encode_ids
from site_node.data.report import Findings

log = logging.getLogger(__name__)

#: The largest index file read (a row per image: 64 MiB is millions of images).
MAX_INDEX_BYTES = 64 * 1024**2


def folder_patients(task: ImageTask, root: Path, files: Sequence[str], findings: Findings
                    ) -> np.ndarray | None:
    """One patient index per image of ``files`` (paths under ``root``, ``class/name.png``);
    None (problems recorded) where any image has no patient or the source is unreadable."""
    unit = task.privacy_unit
    if unit.patient_file_pattern is not None:
        cells = _from_pattern(unit.patient_file_pattern, files, findings)
        where = "privacy_unit.patient_file_pattern"
    elif unit.patient_index is not None:
        cells = _from_index(unit.patient_index, root, files, findings)
        where = f"index file {unit.patient_index.file}"
    else:
        findings.add("privacy_unit.patient_array", rules.UNREADABLE, "an image folder names "
                     "its patients with patient_file_pattern or patient_index; patient_array "
                     "is an npz file's")
        return None
    if cells is None:
        return None
    codes: dict[str, int] = {}
    return encode_ids(cells, codes, where=where, start=0, findings=findings)


def _from_pattern(pattern: str, files: Sequence[str], findings: Findings
                  ) -> list[str | None] | None:
    compiled = re.compile(pattern)
    cells: list[str | None] = []
    for shown in files:
        found = compiled.search(PurePosixPath(shown).name)
        cell = found.group(PATIENT_GROUP) if found else None
        if not cell:
            findings.add("privacy_unit.patient_file_pattern", rules.MISSING_VALUE,
                         f"the file name does not give a patient id ({pattern!r})", shown)
        cells.append(cell or None)
    return None if findings else cells


def _lookup(files: Sequence[str]) -> dict[str, int]:
    """Each image's position by its path, and by its bare file name where that is unique."""
    by_name: dict[str, list[int]] = {}
    for i, shown in enumerate(files):
        by_name.setdefault(PurePosixPath(shown).name, []).append(i)
    table = {name: at[0] for name, at in by_name.items() if len(at) == 1}
    table.update({shown: i for i, shown in enumerate(files)})
    return table


def _read_index(spec: PatientIndexSpec, root: Path, findings: Findings
                ) -> list[dict[str, str]] | None:
    where = f"index file {spec.file}"
    path = root / spec.file
    if not path.is_file():
        findings.add(where, rules.UNREADABLE, f"no such file in {root.name} (the task's "
                     "privacy_unit.patient_index.file)")
        return None
    if path.stat().st_size > MAX_INDEX_BYTES:
        findings.add(where, rules.TOO_LARGE, f"{path.stat().st_size:,} bytes, above the "
                     f"limit of {MAX_INDEX_BYTES:,} for an index file")
        return None
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in (spec.image_column, spec.patient_column) if c not in header]
            for column in missing:
                findings.add(f"{where} column {column}", rules.MISSING_COLUMN,
                             f"the index's columns are {header}")
            return None if missing else list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        findings.add(where, rules.UNREADABLE, f"not a readable UTF-8 CSV ({type(exc).__name__})")
        return None


def _from_index(spec: PatientIndexSpec, root: Path, files: Sequence[str], findings: Findings
                ) -> list[str | None] | None:
    rows = _read_index(spec, root, findings)
    if rows is None:
        return None
    where, lookup = f"index file {spec.file}", _lookup(files)
    cells: list[str | None] = [None] * len(files)
    seen, unmatched = [False] * len(files), 0
    for line, row in enumerate(rows, start=2):
        at = lookup.get((row.get(spec.image_column) or "").strip())
        if at is None:
            unmatched += 1
            continue
        if seen[at]:
            findings.add(where, rules.DUPLICATE_COLUMN, "an image listed twice", f"line {line}: "
                         f"{files[at]}")
        seen[at], cells[at] = True, (row.get(spec.patient_column) or "").strip() or None
        if cells[at] is None:
            findings.add(where, rules.MISSING_VALUE, "an image without its patient id",
                         f"line {line}: {files[at]}")
    for i, shown in enumerate(files):
        if not seen[i]:
            findings.add(where, rules.MISSING_VALUE, "an image the index does not list (name "
                         "it by class/file or by its unique file name)", shown)
    if unmatched:
        log.info("%s: %d row(s) name no image of this folder; ignored", where, unmatched)
    return None if findings else cells


def npz_patients(task: ImageTask, splits: dict[str, ImageSet], findings: Findings
                  ) -> np.ndarray | None:
    """The training images' patient indices of an npz that holds them (None without); a test
    patient who also has training images is logged (the file's split is the file's)."""
    name = task.privacy_unit.patient_array
    train_ids = splits["train"].patient_ids
    if name is None or train_ids is None:
        return None
    codes: dict[str, int] = {}
    patients = encode_ids(train_ids.tolist(), codes, where=f"array train_{name}", start=-1,
                          findings=findings)
    test_ids = splits["test"].patient_ids if "test" in splits else None
    if test_ids is not None:
        known = len(codes)
        test = encode_ids(test_ids.tolist(), codes, where=f"array test_{name}", start=-1,
                          findings=findings)
        shared = len(np.unique(test[(test >= 0) & (test < known)]))
        if shared:
            log.warning("%d patient(s) of test_%s also have training images: the file's own "
                        "split is not by patient", shared, name)
    return patients
