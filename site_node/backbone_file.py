"""A task's pretrained backbone file at a site: found by name, checked by SHA-256 before use.

Kept apart from :mod:`site_node.features` (which needs torch) so that the data loader and the
command lines check the file without loading torch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from policies.task import ImageTask
from policies.task_features import PretrainedFeatures
from site_node.errors import DataError

_READ = 1 << 20


class BackboneMismatch(DataError):
    """The backbone file is missing, or is not the one the task names (its hash differs)."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_READ), b""):
            digest.update(block)
    return digest.hexdigest()


def check_backbone(spec: PretrainedFeatures, *, folder: Path) -> Path:
    """The backbone file in ``folder``, once its SHA-256 is the task's.

    Raises
    ------
    BackboneMismatch
        If the file is missing or its hash is not the task's (both hashes named).
    """
    path = folder / spec.file
    if not path.is_file():
        raise BackboneMismatch(f"features.file {spec.file}",
                               f"no such file in the site's features folder {folder}")
    actual = file_sha256(path)
    if actual != spec.sha256:
        raise BackboneMismatch(f"features.file {spec.file}",
                               f"its SHA-256 is {actual}, the task names {spec.sha256}: not "
                               "the backbone the task was reviewed with; no record was read")
    return path


def backbone_problem(task: ImageTask, *, folder: Path) -> BackboneMismatch | None:
    """Why the task's backbone file in ``folder`` may not be used (None: it is the task's, or
    the task names none)."""
    if not isinstance(task.features, PretrainedFeatures):
        return None
    try:
        check_backbone(task.features, folder=folder)
    except BackboneMismatch as exc:
        return exc
    return None
