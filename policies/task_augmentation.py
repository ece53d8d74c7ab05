"""Augmentation multiplicity, as an image task may declare it (De et al. 2022).

DP-SGD on small image sets generalises better when each sampled image enters a step as the
*average* of the gradients of ``multiplicity`` randomly transformed copies of it: the average is
still one example's gradient, clipped once, so the mechanism (and ε) is that of the image (or
of the patient, for a patient-level task) and only the compute grows. Which transforms keep a
label is the task's knowledge (a flipped chest X-ray changes laterality), so the task names them;
none is assumed. The transforms are data-independent: random crops of the zero-padded image and
flips, drawn from operating-system entropy at the site (:mod:`site_node.augmentation`).

Only a model on the pixels augments: features (``features:``) are computed once per image.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt


class Augmentation(BaseModel):
    """The random transforms of each training image, and how many copies a step averages."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    multiplicity: StrictInt = Field(
        8, ge=1, le=32, description="Transformed copies of each sampled image whose gradients "
        "are averaged into its one gradient before clipping (1: one random copy).")
    crop_padding: StrictInt = Field(
        0, ge=0, le=16, description="Random crops of the image padded with this many zero "
        "pixels on each side (a shift of up to this many pixels); 0: no crop.")
    horizontal_flip: StrictBool = Field(False, description="Flip left-right with chance 1/2.")
    vertical_flip: StrictBool = Field(False, description="Flip upside-down with chance 1/2.")

    @property
    def transforms(self) -> tuple[str, ...]:
        """The transforms named (possibly none)."""
        named = (("crop", self.crop_padding > 0), ("horizontal_flip", self.horizontal_flip),
                 ("vertical_flip", self.vertical_flip))
        return tuple(name for name, on in named if on)

    def problem(self, height: int, width: int) -> str | None:
        """Why these transforms do not fit a ``height`` × ``width`` image (None: they do)."""
        if not self.transforms:
            return ("names no transform (crop_padding, horizontal_flip, vertical_flip): the "
                    "copies would all be the image itself")
        if self.crop_padding >= min(height, width):
            return (f"crop_padding {self.crop_padding} is not smaller than the task's "
                    f"{height}×{width} images")
        return None
