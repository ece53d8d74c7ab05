"""A site's data for a task: read, validated, split and encoded, or refused with a report.

:func:`load_site_data` is the one entry point: a tabular task reads a CSV or Parquet file, an
image task a folder per class or a MedMNIST ``.npz``. Every rule of the task is checked before
anything is trained (:mod:`site_node.data.report`): a file that does not fit raises
:class:`~site_node.data.report.DataRefused` naming the column or file, the rule and the first
offending rows. Then the task's fixed split is made (unless an ``.npz`` holds its own), and the
training split must hold enough classes and rows. :func:`site_node.data.cache.load_cached`
keeps the result per process while the task and the files are unchanged (the site checks again
before every round).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from policies.task import AnyTask, ImageTask, TabularTask
from policies.task_loader import LoadedTask
from site_node.backbone_file import backbone_problem
from site_node.data import report as rules
from site_node.data.image_patients import folder_patients, npz_patients
from site_node.data.images import ImageSet, pixels, read_folders
from site_node.data.npz import read_npz
from site_node.data.patients import PatientStats, cap_mask, patient_split_mask, renumber
from site_node.data.report import DataRefused, Findings
from site_node.data.split import split_mask
from site_node.data.summary import DataSummary
from site_node.data.table_check import ProgressFn, check_table
from site_node.data.tables import CHUNK_ROWS
from site_node.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteData:
    """A site's encoded split: float32 features and int64 class indices, and its summary;
    with a task that names patients, each training record's patient index (0, 1, …; never
    the id)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    summary: DataSummary
    patients_train: np.ndarray | None = None

    @property
    def num_patients(self) -> int | None:
        """Number of patients in the training split (None unless the task names patients)."""
        p = self.patients_train
        return None if p is None else len(np.unique(p))

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return len(self.y_train)

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return len(self.y_test)


@dataclass(frozen=True)
class _Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    how: str
    patients_train: np.ndarray | None = None
    patients: PatientStats | None = None


def _task_split(loaded: LoadedTask, x: np.ndarray, y: np.ndarray,
                patients: np.ndarray | None = None) -> _Split:
    s = loaded.task.split
    how = (f"the task's {'stratified ' if s.stratified else ''}split, test fraction "
           f"{s.test_fraction:g}, seed {s.seed}")
    if patients is None:
        is_test = split_mask(y, test_fraction=s.test_fraction, seed=s.seed,
                             stratified=s.stratified)
        return _Split(x[~is_test], y[~is_test], x[is_test], y[is_test], how)
    keep = cap_mask(patients, loaded.task.privacy_unit.max_records_per_patient)
    x, y, capped = x[keep], y[keep], patients[keep]
    is_test = patient_split_mask(capped, y, test_fraction=s.test_fraction, seed=s.seed,
                                 stratified=s.stratified)
    train_p = renumber(capped[~is_test])
    before = None
    if loaded.task.privacy_unit.max_records_per_patient is not None:
        before = patients[np.isin(patients, capped[~is_test])]
    stats = PatientStats.of(train_p, before=before)
    return _Split(x[~is_test], y[~is_test], x[is_test], y[is_test], how + ", by patient",
                  train_p, stats)


def _check_split(loaded: LoadedTask, split: _Split, findings: Findings) -> None:
    label = loaded.task.label
    rows = len(split.y_train) + len(split.y_test)
    if len(split.y_train) == 0 or len(split.y_test) == 0:
        findings.add("data", rules.TOO_FEW_ROWS, f"{rows} example(s) leave {len(split.y_train)}"
                     f" for training and {len(split.y_test)} for testing; each needs at least 1")
        return
    present = sorted({int(k) for k in split.y_train})
    if len(present) == 1:
        findings.add("label", rules.SINGLE_CLASS, f"every training example is of class "
                     f"{label.names[present[0]]!r}")
    elif len(present) < label.min_classes_per_site:
        findings.add("label", rules.CLASS_COUNT, f"the training data hold {len(present)} "
                     f"classes; the task requires at least {label.min_classes_per_site}")


def _classes(loaded: LoadedTask, split: _Split) -> dict[str, dict[str, int]]:
    names = loaded.task.label.names
    train = np.bincount(split.y_train, minlength=len(names))
    test = np.bincount(split.y_test, minlength=len(names))
    return {n: {"train": int(train[k]), "test": int(test[k])} for k, n in enumerate(names)}


def _tabular(loaded: LoadedTask, task: TabularTask, path: Path, findings: Findings,
             read: _Reading) -> tuple[_Split, str, dict[str, float]] | None:
    if not path.is_file():
        findings.add(f"file {path.name}", rules.UNREADABLE, "not a file")
        return None
    checked = check_table(task, path, findings, chunk_rows=read.chunk_rows,
                          progress=read.progress)
    if checked is None:
        return None
    encoded, fmt = checked
    return (_task_split(loaded, encoded.x, encoded.y, encoded.patients), fmt,
            encoded.missing_rates)


def _own_split(loaded: LoadedTask, train: ImageSet, test: ImageSet,
               patients: np.ndarray | None) -> _Split:
    """An npz's own train/test split; with patients, the task's cap on the training images."""
    how = "the file's own train/test split"
    x, y = pixels(train.images), train.labels
    if patients is None:
        return _Split(x, y, pixels(test.images), test.labels, how)
    cap = loaded.task.privacy_unit.max_records_per_patient
    keep = cap_mask(patients, cap)
    kept = renumber(patients[keep])
    stats = PatientStats.of(kept, before=None if cap is None else patients)
    return _Split(x[keep], y[keep], pixels(test.images), test.labels, how + ", by the file",
                  kept, stats)


def _folder_images(loaded: LoadedTask, task: ImageTask, path: Path, findings: Findings
                   ) -> _Split | None:
    found = read_folders(task, path, findings)
    if found is None:
        return None
    patients = None
    if task.privacy_unit.has_patients:
        patients = folder_patients(task, path, found.files, findings)
        if patients is None:
            return None
    return _task_split(loaded, pixels(found.images), found.labels, patients)


def _npz_images(loaded: LoadedTask, task: ImageTask, path: Path, findings: Findings
                ) -> _Split | None:
    unit = task.privacy_unit
    if unit.has_patients and unit.patient_array is None:
        findings.add(f"privacy_unit.{unit.sources[0]}", rules.UNREADABLE, "an npz file names "
                     "its patients with privacy_unit.patient_array (an array of the file)")
        return None
    splits = read_npz(task, path, findings)
    if splits is None:
        return None
    patients = npz_patients(task, splits, findings)
    if findings:
        return None
    train = splits["train"]
    if "test" not in splits:
        return _task_split(loaded, pixels(train.images), train.labels, patients)
    return _own_split(loaded, train, splits["test"], patients)


def _images(loaded: LoadedTask, task: ImageTask, path: Path, findings: Findings
            ) -> tuple[_Split, str] | None:
    if path.is_dir():
        split = _folder_images(loaded, task, path, findings)
        return None if split is None else (split, "image folders")
    if path.is_file() and path.suffix.lower() == ".npz":
        split = _npz_images(loaded, task, path, findings)
        return None if split is None else (split, "npz")
    findings.add(f"path {path.name}", rules.UNREADABLE,
                 "an image task reads a folder (a folder per class) or a MedMNIST .npz file")
    return None


@dataclass(frozen=True)
class _Reading:
    chunk_rows: int
    progress: ProgressFn | None


def load_site_data(loaded: LoadedTask, path: Path | str, *, progress: ProgressFn | None = None,
                   chunk_rows: int = CHUNK_ROWS, features_dir: Path | None = None) -> SiteData:
    """Read, validate, split and encode a site's data for ``loaded``'s task. A table is read
    ``chunk_rows`` rows at a time, ``progress`` called after each chunk. An image task's
    features (:mod:`site_node.features`) are computed from the scaled images; its backbone
    file is looked up in ``features_dir`` (default: the folder holding ``path``) and checked
    before any record is read.

    Raises
    ------
    DataRefused
        With the report of every problem found (nothing may be trained on these data).
    """
    path = Path(path)
    findings = Findings(str(path), loaded.name)
    task = loaded.task
    rates: dict[str, float] = {}
    split: _Split | None = None
    folder = features_dir or path.absolute().parent
    backbone = backbone_problem(task, folder=folder) if isinstance(task, ImageTask) else None
    if backbone is not None:
        findings.add(backbone.where, rules.FEATURES_FILE, backbone.detail)
    elif not path.exists():
        findings.add(f"path {path.name}", rules.UNREADABLE, "no such file or folder")
    elif isinstance(task, TabularTask):
        got = _tabular(loaded, task, path, findings, _Reading(chunk_rows, progress))
        if got is not None:
            split, fmt, rates = got
    else:
        got_images = _images(loaded, task, path, findings)
        if got_images is not None:
            split, fmt = got_images
    if split is not None:
        _check_split(loaded, split, findings)
    findings.refuse_if_any()
    assert split is not None
    size = None
    if isinstance(task, ImageTask):
        spec = task.image
        size = f"{spec.height}×{spec.width}, {spec.channels} channel(s), every image"
        if task.features is not None:
            size += (f"; {task.features.kind} features, {task.model_input_shape[0]} per image "
                     "(computed here, never sent)")
            from site_node.features import apply as apply_features  # torch: only when used

            x_train, x_test = apply_features(task, folder=folder,
                                             splits=(split.x_train, split.x_test))
            split = replace(split, x_train=x_train, x_test=x_test)
    summary = DataSummary(
        source=str(path), task=loaded.name, task_sha256=loaded.sha256, format=fmt,
        rows=len(split.y_train) + len(split.y_test), train=len(split.y_train),
        test=len(split.y_test), split=split.how, classes=_classes(loaded, split),
        missing_rates=rates, image_size=size, privacy_unit=task.privacy_unit.unit,
        patients=split.patients)
    return SiteData(split.x_train, split.y_train, split.x_test, split.y_test, summary,
                    split.patients_train)


__all__ = ["DataRefused", "SiteData", "load_site_data"]


def with_site_indicator(data: SiteData, task: AnyTask, site: str) -> SiteData:
    """The data with the task's site indicator appended (unchanged without one): a one-hot of
    ``site`` among the run's member sites, the same for every row of this site."""
    levels = task.site_levels if isinstance(task, TabularTask) else ()
    if not levels:
        return data
    if site not in levels:
        raise DataError(f"site {site} is not a member of this run ({', '.join(levels)})")
    one = np.zeros((1, len(levels)), dtype=np.float32)
    one[0, levels.index(site)] = 1.0
    return replace(data, x_train=np.hstack([data.x_train, np.repeat(one, data.num_train, 0)]),
                   x_test=np.hstack([data.x_test, np.repeat(one, data.num_test, 0)]))
