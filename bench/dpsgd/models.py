"""Opacus-friendly image models for DP-SGD: a small GroupNorm CNN and a ResNet-18-class backbone
(the product's, :mod:`site_node.resnet`).

Both models follow the rules that make every Opacus per-sample-gradient mode work
("hooks", "ghost", "functorch", "ew"):

- GroupNorm instead of BatchNorm (BatchNorm mixes samples, so it has no per-sample gradient);
- no in-place operation on a tensor that a hooked module produced: ``ReLU(inplace=False)``
  and the residual add written ``out = out + identity`` (torchvision's ``out += identity``
  breaks the backward hooks of modes hooks/ghost/functorch);
- one module instance per use (no module reused twice in ``forward``), so no parameter tying.

Both pass ``opacus.validators.ModuleValidator.validate(model, strict=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from site_node.resnet import LARGE_STEM_FROM, BasicBlock, group_norm
from site_node.resnet import ResNet18GN as ProductResNet18GN

__all__ = ["BasicBlock", "GroupNormCNN", "ResNet18GN", "build_model", "group_norm"]


class GroupNormCNN(nn.Module):
    """A small image CNN: ``len(widths)`` blocks of conv3x3 → GroupNorm → ReLU → 2×2 max-pool.

    Pooling stops once the feature map is 1×1, so 8×8, 28×28 and 64×64 inputs all work;
    an adaptive average pool and one linear layer give the logits.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for grey-scale scans).
    num_classes : int
        Output logits.
    image_size : int
        Input height = width; only used to decide where to stop pooling.
    widths : sequence of int
        Output channels of each block (default 32-64-128-128: four blocks, ~0.27M parameters).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 64,
        widths: Sequence[int] = (32, 64, 128, 128),
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size, ch = image_size, in_channels
        for width in widths:
            layers += [
                nn.Conv2d(ch, width, kernel_size=3, padding=1),
                group_norm(width, 8),
                nn.ReLU(inplace=False),
            ]
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            ch = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class ResNet18GN(ProductResNet18GN):
    """The product's ResNet-18-class network (:class:`site_node.resnet.ResNet18GN`, the task
    family ``resnet18``), with this bench's way of naming the stem.

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and logits.
    stem : {"imagenet", "cifar"}
        "imagenet": conv7×7 stride 2 + 3×3 max-pool (torchvision's stem; /4 resolution), for
        inputs ≥ 64 px. "cifar": one conv3×3 stride 1, for small inputs (8–32 px).
    widths : sequence of int
        Stage widths (default 64-128-256-512).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        stem: str = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        size = LARGE_STEM_FROM if stem == "imagenet" else LARGE_STEM_FROM - 1
        super().__init__(in_channels, num_classes, size, widths)


def build_model(
    name: str, *, in_channels: int, image_size: int, num_classes: int = 10
) -> nn.Module:
    """``"cnn"`` → :class:`GroupNormCNN`; ``"resnet18"`` → :class:`ResNet18GN` (stem by size)."""
    if name == "cnn":
        return GroupNormCNN(in_channels, num_classes, image_size)
    if name == "resnet18":
        return ResNet18GN(in_channels, num_classes, "imagenet" if image_size >= 64 else "cifar")
    raise ValueError(f"unknown model {name!r}: expected 'cnn' or 'resnet18'")


def num_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
