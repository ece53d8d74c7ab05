"""An imaging-size model for DP-SGD: a ResNet-18-class network with GroupNorm.

It follows the rules that make every Opacus per-sample gradient mode work ("hooks", "ghost",
"functorch", "ew"), which torchvision's ResNet-18 breaks:

- GroupNorm instead of BatchNorm (BatchNorm mixes samples: it has no per-sample gradient);
- no in-place operation on a tensor a hooked module produced: ``ReLU(inplace=False)`` and the
  residual add written ``out = out + identity`` (torchvision's ``out += identity`` breaks the
  backward hooks of modes hooks, ghost and functorch);
- one module instance per use (no parameter tying).

It passes ``opacus.validators.ModuleValidator.validate(model, strict=True)`` (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Images at least this large get torchvision's 7×7 stride-2 stem and max pooling (÷4).
LARGE_STEM_FROM = 64


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count ≤ ``max_groups`` that divides ``channels``."""
    groups = min(max_groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm and an out-of-place residual add."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, groups: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.gn1 = group_norm(out_ch, groups)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.gn2 = group_norm(out_ch, groups)
        self.relu2 = nn.ReLU(inplace=False)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), group_norm(out_ch, groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut(x)
        out = self.relu1(self.gn1(self.conv1(x)))
        out = self.gn2(self.conv2(out))
        out = out + identity  # NOT in place: `out += identity` breaks Opacus' backward hooks
        result: torch.Tensor = self.relu2(out)
        return result


def _stem(in_channels: int, width: int, large: bool, groups: int) -> nn.Sequential:
    if large:
        return nn.Sequential(nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
                             group_norm(width, groups), nn.ReLU(inplace=False),
                             nn.MaxPool2d(3, stride=2, padding=1))
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
                         group_norm(width, groups), nn.ReLU(inplace=False))


class ResNet18GN(nn.Module):
    """ResNet-18-class network: a stem, 4 stages × 2 basic blocks, average pool, linear head.

    11.2 M parameters with the default widths (64-128-256-512), 3 input channels and 10
    classes (torchvision's ResNet-18 has 11.7 M with its 1000-class head).

    Parameters
    ----------
    in_channels, num_classes : int
        Input channels and logits.
    image_size : int
        The smaller image side: from :data:`LARGE_STEM_FROM` pixels, torchvision's 7×7
        stride-2 stem with max pooling; below, one 3×3 convolution at full resolution.
    widths : sequence of int
        The 4 stage widths.
    groups : int
        GroupNorm groups (at most; the largest divisor of each width up to it).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 64,
                 widths: Sequence[int] = (64, 128, 256, 512), groups: int = 32) -> None:
        super().__init__()
        self.stem = _stem(in_channels, widths[0], image_size >= LARGE_STEM_FROM, groups)
        blocks: list[nn.Module] = []
        ch = widths[0]
        for i, width in enumerate(widths):
            blocks += [BasicBlock(ch, width, 1 if i == 0 else 2, groups),
                       BasicBlock(width, width, 1, groups)]
            ch = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))
        return logits
