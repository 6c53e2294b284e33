"""Residual networks (CIFAR style, 3x3 stem, no stem pooling): ResNet-18 and a Bi-Real-style binary ResNet.

* ``resnet18``: basic blocks, conv -> bn -> act -> conv -> bn -> (+ shortcut) -> act. As a BNN the
  activations are signs, so every binary conv sees a binary input and the block output is binary
  (XNOR-Net-style ResNet: the shortcut carries binary values).
* ``birealnet``: Bi-Real Net (Liu et al. 2018): every conv has its own shortcut,
  ``x + bn(conv(act(x)))``, so the residual stream stays real-valued in a BNN.

Downsampling shortcuts (1x1 conv + batch norm) are full precision in both, as is common for BNNs.
"""

from __future__ import annotations

import torch
from torch import nn

from binsight.models.kit import LayerKit
from binsight.models.registry import register_model

STAGE_STRIDES = (1, 2, 2, 2)


def downsample(cin: int, cout: int, stride: int, avg_pool: bool) -> nn.Module:
    """Full-precision shortcut: identity, or [2x2 average pool ->] 1x1 conv -> batch norm."""
    if stride == 1 and cin == cout:
        return nn.Identity()
    if avg_pool and stride > 1:
        return nn.Sequential(
            nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet basic block. ``residual`` is an identity whose output is the real-valued sum before ``act2``."""

    def __init__(self, kit: LayerKit, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = kit.conv(cin, cout, 3, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = kit.act()
        self.conv2 = kit.conv(cout, cout, 3)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = downsample(cin, cout, stride, avg_pool=False)
        self.residual = nn.Identity()
        self.act2 = kit.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(self.residual(out + self.shortcut(x)))


class BiRealUnit(nn.Module):
    """One Bi-Real unit: ``shortcut(x) + bn(conv(act(x)))``; its output is real-valued in both precisions."""

    def __init__(self, kit: LayerKit, cin: int, cout: int, stride: int):
        super().__init__()
        self.act = kit.act()
        self.conv = kit.conv(cin, cout, 3, stride)
        self.bn = nn.BatchNorm2d(cout)
        self.shortcut = downsample(cin, cout, stride, avg_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.bn(self.conv(self.act(x)))


class ResNet18(nn.Module):
    """stem (conv -> bn -> act) -> 4 stages of 2 basic blocks -> global average pool -> classifier."""

    def __init__(self, kit: LayerKit, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(kit.conv(in_channels, width, 3, edge=True), nn.BatchNorm2d(width), kit.act())
        blocks, cin = [], width
        for i, stride in enumerate(STAGE_STRIDES):
            cout = width * 2**i
            blocks += [BasicBlock(kit, cin, cout, stride), BasicBlock(kit, cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = kit.linear(cin, num_classes, edge=True)
        last = f"blocks.{len(blocks) - 1}"
        self.gradcam_layer = f"{last}.residual"  # the real-valued sum before the last ReLU / sign
        self.gradcam_binary_layer = f"{last}.act2" if kit.binary else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.blocks(self.stem(x))).flatten(1))


class BiRealNet(nn.Module):
    """stem (conv -> bn) -> 4 stages of 4 Bi-Real units -> global average pool -> classifier (Bi-Real-18).

    No sign follows the last unit, so ``gradcam_binary_layer`` is None in both precisions.
    """

    def __init__(self, kit: LayerKit, in_channels: int, num_classes: int, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(kit.conv(in_channels, width, 3, edge=True), nn.BatchNorm2d(width))
        units, cin = [], width
        for i, stride in enumerate(STAGE_STRIDES):
            cout = width * 2**i
            units += [BiRealUnit(kit, cin, cout, stride)] + [BiRealUnit(kit, cout, cout, 1) for _ in range(3)]
            cin = cout
        self.units = nn.Sequential(*units)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = kit.linear(cin, num_classes, edge=True)
        self.gradcam_layer = f"units.{len(units) - 1}"
        self.gradcam_binary_layer = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.units(self.stem(x))).flatten(1))


@register_model("resnet18")
def resnet18(kit: LayerKit, in_channels: int, num_classes: int, width: int = 64) -> ResNet18:
    """ResNet-18, CIFAR style (He et al. 2016); ``width`` = channels of the first stage."""
    return ResNet18(kit, in_channels, num_classes, width)


@register_model("birealnet")
def birealnet(kit: LayerKit, in_channels: int, num_classes: int, width: int = 64) -> BiRealNet:
    """Bi-Real Net 18 (Liu et al. 2018), CIFAR style; ``width`` = channels of the first stage."""
    return BiRealNet(kit, in_channels, num_classes, width)
