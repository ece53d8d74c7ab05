"""The task's fixed feature extractor, applied at the site to its scaled images.

An image task may declare ``features:`` (:mod:`policies.task_features`): a wavelet scattering
transform or a frozen public backbone. :func:`extract` maps each image, alone, to its flattened
features; the data loader (:func:`site_node.data.load_site_data`) applies it to both splits
after the fixed pixel scaling, so training, the site's evaluation and ``consortium compare``
all see the same features, and the model (a logistic or MLP head) is built for them.

DP is unaffected: the extractor reads no other record and learns nothing (scattering filters
are fixed by J and L; a backbone's weights are public and frozen), so each record's features
are a fixed function of that record and DP-SGD on them protects the record as on its pixels.
Features never leave the site; only the head's updates do.

A backbone file is looked up by its bare name in the site's features folder and its SHA-256
checked against the task's (:func:`check_backbone`) before any record is read: a different file
is a refusal naming the file and both hashes. kymatio and the backbone are loaded lazily, when
a task with features is loaded.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from policies.task import ImageTask
from policies.task_features import PretrainedFeatures, ScatteringFeatures
from site_node.backbone_file import BackboneMismatch, backbone_problem, check_backbone, file_sha256
from site_node.errors import DataError

__all__ = ["BackboneMismatch", "apply", "backbone_problem", "check_backbone", "extract",
           "extractor", "file_sha256"]

log = logging.getLogger(__name__)
#: Images transformed at once (bounds the extractor's memory, not its result).
CHUNK = 256


def _scattering(spec: ScatteringFeatures, height: int, width: int) -> nn.Module:
    # The 2-D torch frontend directly: ``kymatio.torch`` imports the 3-D one too, which needs
    # scipy.special.sph_harm (removed in SciPy 1.17).
    from kymatio.scattering2d.frontend.torch_frontend import ScatteringTorch2D

    module: nn.Module = ScatteringTorch2D(J=spec.J, shape=(height, width), L=spec.L)
    return module


def _backbone(spec: PretrainedFeatures, folder: Path) -> nn.Module:
    path = check_backbone(spec, folder=folder)
    if spec.format == "exported":
        # An exported program runs as it was exported (it has no train/eval switch).
        exported: nn.Module = torch.export.load(str(path)).module()
        return exported
    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript in favour of torch.export; both are accepted.
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*deprecated")
        module: nn.Module = torch.jit.load(  # type: ignore[no-untyped-call]
            str(path), map_location="cpu")
    return module.eval()


class _Normalised(nn.Module):
    """Scattering coefficients, flattened, then the task's per-image normalisation (if any):
    each image's vector centred and scaled to length 1 from its own values only."""

    def __init__(self, scattering: nn.Module, spec: ScatteringFeatures) -> None:
        super().__init__()
        self.scattering = scattering
        self.per_image = spec.normalisation == "image"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s: torch.Tensor = self.scattering(x).reshape(len(x), -1)
        if not self.per_image:
            return s
        centred = s - s.mean(dim=1, keepdim=True)
        unit: torch.Tensor = centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return unit


def extractor(task: ImageTask, *, folder: Path) -> nn.Module:
    """The task's feature extractor, frozen and in evaluation mode (CPU).

    Raises
    ------
    BackboneMismatch
        If the task's backbone file is not in ``folder`` or is not the one it names.
    """
    spec = task.features
    if spec is None:
        raise ValueError(f"task {task.name} declares no features")
    if isinstance(spec, ScatteringFeatures):
        module: nn.Module = _Normalised(_scattering(spec, task.image.height, task.image.width),
                                        spec).eval()
    else:
        module = _backbone(spec, folder)
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def extract(module: nn.Module, images: np.ndarray, *, task: ImageTask) -> np.ndarray:
    """Each image's flattened features (float32, one row per image), ``CHUNK`` at a time.

    Raises
    ------
    DataError
        If the extractor's output is not of the size the task declares.
    """
    dim = math.prod(task.model_input_shape)
    out = np.empty((len(images), dim), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(images), CHUNK):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + CHUNK]))
            got = module(batch).reshape(len(batch), -1)
            if got.shape[1] != dim:
                raise DataError(f"features: the extractor gives {got.shape[1]} values per "
                                f"image; the task declares {dim}")
            out[start:start + len(batch)] = got.numpy()
    if not np.isfinite(out).all():
        raise DataError("features: the extractor gave a non-finite value")
    return out


def apply(task: ImageTask, *, folder: Path, splits: tuple[np.ndarray, ...]
          ) -> tuple[np.ndarray, ...]:
    """The task's features of each array of scaled images in ``splits`` (unchanged without
    features)."""
    if task.features is None:
        return splits
    module = extractor(task, folder=folder)
    log.info("computing %s features of %d image(s)", task.features.kind,
             sum(len(s) for s in splits))
    return tuple(extract(module, s, task=task) for s in splits)
