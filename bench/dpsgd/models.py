"""Opacus-friendly image models for DP-SGD: a small GroupNorm CNN and a ResNet-18-class backbone.

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

__all__ = ["BasicBlock", "GroupNormCNN", "ResNet18GN", "build_model", "group_norm"]


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels``."""
    groups = min(max_groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


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


class BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm and an out-of-place residual add."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.gn1 = group_norm(out_ch)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.gn2 = group_norm(out_ch)
        self.relu2 = nn.ReLU(inplace=False)
        self.shortcut: nn.Module
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), group_norm(out_ch)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x)
        out = self.relu1(self.gn1(self.conv1(x)))
        out = self.gn2(self.conv2(out))
        out = out + identity  # NOT in place: `out += identity` breaks Opacus' backward hooks
        return self.relu2(out)


class ResNet18GN(nn.Module):
    """ResNet-18-class backbone: 4 stages × 2 basic blocks, widths 64-128-256-512, GroupNorm.

    11.2M parameters with 3 input channels and 10 classes (torchvision's ResNet-18 has 11.7M
    with its 1000-class head).

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
        super().__init__()
        w0 = widths[0]
        if stem == "imagenet":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, w0, 7, stride=2, padding=3, bias=False),
                group_norm(w0),
                nn.ReLU(inplace=False),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        elif stem == "cifar":
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, w0, 3, stride=1, padding=1, bias=False),
                group_norm(w0),
                nn.ReLU(inplace=False),
            )
        else:
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        blocks: list[nn.Module] = []
        ch = w0
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks += [BasicBlock(ch, width, stride), BasicBlock(width, width, 1)]
            ch = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


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
