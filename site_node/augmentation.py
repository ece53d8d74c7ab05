"""Random copies of training images for augmentation multiplicity
(:mod:`policies.task_augmentation`).

:func:`views` turns a batch of ``B`` images into ``B·K`` transformed copies, record-major (copies
``i·K … i·K+K−1`` are image ``i``'s), each a random crop of the zero-padded image and/or a random
flip, as the task names them. The randomness is the training step's own generator (seeded from
operating-system entropy, :mod:`site_node.training`); no statistic of any record is used.
"""

from __future__ import annotations

import torch

from policies.task_augmentation import Augmentation


def _crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Each image shifted by a random offset in [−pad, pad]² (zeros come in at the border)."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    images = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[images, channels, rows, cols]


def _flip(x: torch.Tensor, dim: int, gen: torch.Generator) -> torch.Tensor:
    """Each image flipped along ``dim`` with chance 1/2."""
    chosen = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    return torch.where(chosen[:, None, None, None], x.flip(dim), x)


def views(x: torch.Tensor, spec: Augmentation, gen: torch.Generator) -> torch.Tensor:
    """``spec.multiplicity`` random copies of every image of ``x`` ``[B, C, H, W]``,
    record-major: ``[B·K, C, H, W]``."""
    out = x.repeat_interleave(spec.multiplicity, dim=0)
    if spec.crop_padding > 0:
        out = _crop(out, spec.crop_padding, gen)
    if spec.horizontal_flip:
        out = _flip(out, 3, gen)
    if spec.vertical_flip:
        out = _flip(out, 2, gen)
    return out
