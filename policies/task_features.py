"""A data-independent feature extractor an image task may declare, fixed like its preprocessing.

DP-SGD learns a linear model on good fixed features far better than a network from scratch on a
few hundred images (Tramèr & Boneh 2021: ScatterNet + linear beats end-to-end DP CNNs on small
data). Two kinds, each a fixed function of one image, the same at every site:

- ``scattering``: a 2-D wavelet scattering transform (kymatio's ``Scattering2D``, J scales,
  L angles) of the fixed-scaled pixels, optionally normalised per image (``image``: centred and
  scaled to length 1 using that image's own features only). Nothing in it is learnt or
  computed from other records, so nothing differs between sites or leaks across records;
- ``pretrained``: a frozen public backbone, a TorchScript or ``torch.export`` file whose SHA-256
  the task states.
  Public weights cost no ε. Each site checks the file's hash before it reads any record.

Only the model (a ``logistic`` or ``mlp`` head) trains, on the flattened features; features
are computed at the site and never leave it. The extractor's output size follows from the task
alone (:meth:`ScatteringFeatures.output_shape`, :attr:`PretrainedFeatures.dim`), so the
consortium builds the same head without the backbone.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

#: A backbone's file name: a bare name (no folder), looked up in the site's features folder.
FILE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.(pt|pth|ts|pt2)$"
#: Largest flattened feature vector accepted (a bound on a typo, not on memory).
MAX_DIM = 1_000_000


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ScatteringFeatures(_Frozen):
    """A 2-D wavelet scattering transform (order 2) of each channel of the scaled image."""

    kind: Literal["scattering"]
    J: StrictInt = Field(ge=1, le=8, description="Number of scales: the output is 2^J times "
                         "smaller than the image on each side (the image's sides must be "
                         "multiples of 2^J, and larger than 2^J).")
    L: StrictInt = Field(8, ge=1, le=16, description="Number of angles.")
    normalisation: Literal["none", "image"] = Field(
        "none", description="'none': the scattering's own scale (an image of pixels in [0, 1] "
        "gives coefficients in [0, 1]); 'image': each image's features alone are centred and "
        "scaled to length 1 (a function of that image only, never of other records).")

    @property
    def coefficients(self) -> int:
        """Scattering channels per image channel: 1 + J·L + L²·J(J−1)/2 (orders 0, 1, 2)."""
        return 1 + self.J * self.L + self.L ** 2 * self.J * (self.J - 1) // 2

    def problem(self, height: int, width: int) -> str | None:
        """Why this transform does not fit a ``height`` × ``width`` image (None: it fits)."""
        side = 2 ** self.J
        if min(height, width) <= side:
            return (f"J = {self.J} needs images larger than 2^J = {side} pixels on each side; "
                    f"the task's are {height}×{width}")
        if height % side or width % side:
            return (f"J = {self.J} needs image sides that are multiples of 2^J = {side}; the "
                    f"task's are {height}×{width}")
        return None

    def output_shape(self, channels: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of one image's features: (channels · coefficients, H / 2^J, W / 2^J)."""
        side = 2 ** self.J
        return (channels * self.coefficients, height // side, width // side)


class PretrainedFeatures(_Frozen):
    """A frozen public backbone (TorchScript or torch.export), checked by its SHA-256 at every
    site."""

    kind: Literal["pretrained"]
    file: StrictStr = Field(pattern=FILE_NAME, description="The backbone's file name, looked "
                            "up in the site's features folder (default: beside its data).")
    sha256: StrictStr = Field(pattern=r"^[0-9a-f]{64}$",
                              description="SHA-256 of the file (64 lower-case hex digits).")
    format: Literal["torchscript", "exported"] = Field(
        "torchscript", description="How the file is loaded: 'torchscript' (torch.jit.save) or "
        "'exported' (torch.export.save, a .pt2 program).")
    dim: StrictInt = Field(ge=1, le=MAX_DIM,
                           description="Length of one image's flattened output.")

    def output_shape(self, channels: int, height: int, width: int) -> tuple[int, ...]:
        """Shape of one image's features: the declared dimension."""
        del channels, height, width
        return (self.dim,)


Features = Annotated[ScatteringFeatures | PretrainedFeatures, Field(discriminator="kind")]
AnyFeatures = ScatteringFeatures | PretrainedFeatures
#: Model families that take features (the head): the rest are image networks.
HEAD_FAMILIES = ("logistic", "mlp")


def flat_dim(shape: tuple[int, ...]) -> int:
    """Length of one example's flattened features."""
    return math.prod(shape)
