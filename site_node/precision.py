"""The float precision a device trains in, and how closely per-sample norms must then agree.

The per-sample gradient mode check (:mod:`site_node.grad_mode`) compares each Opacus mode's
per-sample gradient norms with an exact reference. How close "exact" can be depends on the
arithmetic the device really does: on a CPU, float32 throughout; on an NVIDIA GPU from Ampere on
(the H100 and H200 among them), PyTorch runs cuDNN convolutions, and optionally matrix products,
in **TF32** (a 10-bit mantissa, unit roundoff 2⁻¹¹ ≈ 4.9e-4) unless told not to. Measured on an
H200: per-sample norms then differ from a float64-summed reference by about 1.4e-3 (ResNet-18)
and 5e-4 (a GroupNorm CNN) in every mode, so a float32 tolerance (1e-3) refused every mode.

The check therefore

- computes the reference with TF32 off (:func:`full_float32`, the flags restored afterwards),
- checks each mode's norms with TF32 off too, at the float32 tolerance :data:`FLOAT32_RTOL`,
- and, where training will run in TF32, checks them again in the training precision at
  :data:`TF32_RTOL` (:func:`tolerance`): still 20× tighter than a bug-sized error (a missed
  layer, another sample's gradient, a wrong scale move norms by percents, not per mille).

TF32 changes how accurately a gradient is computed, not the privacy guarantee: Opacus clips the
per-sample gradients it computed to their own computed norm, so each clipped contribution is at
most C whatever the precision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["float32", "tf32"]
#: Largest relative norm difference accepted when the device computes in float32.
FLOAT32_RTOL = 1e-3
#: Largest relative norm difference accepted when the device computes in TF32.
TF32_RTOL = 1e-2


def tf32_enabled() -> bool:
    """Whether CUDA convolutions or matrix products may run in TF32 right now."""
    return bool(torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32)


def training_precision(device: torch.device) -> Precision:
    """The precision float32 training runs in on ``device`` with the current settings."""
    return "tf32" if device.type == "cuda" and tf32_enabled() else "float32"


def tolerance(precision: Precision) -> float:
    """The largest relative per-sample norm difference accepted in ``precision``."""
    return TF32_RTOL if precision == "tf32" else FLOAT32_RTOL


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """TF32 off for CUDA convolutions and matrix products; the previous settings restored
    afterwards, also on error."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn
