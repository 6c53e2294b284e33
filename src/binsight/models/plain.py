"""Plain convolutional networks: small-cnn (the default, for 28x28) and VGG-Small (CIFAR style)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from binsight.models.blocks import gradcam_names, plain_features
from binsight.models.errors import ModelError
from binsight.models.kit import LayerKit
from binsight.models.registry import register_model


class PlainNet(nn.Module):
    """``features`` (ConvBlocks) -> adaptive average pool to ``pool_size`` x ``pool_size`` -> ``classifier``."""

    def __init__(self, kit: LayerKit, in_channels: int, num_classes: int, widths: Sequence[int],
                 pools: Sequence[bool], pool_size: int):
        super().__init__()
        self.features = plain_features(kit, in_channels, list(widths), list(pools))
        self.pool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = kit.linear(widths[-1] * pool_size * pool_size, num_classes, edge=True)
        self.gradcam_layer, self.gradcam_binary_layer = gradcam_names(kit, f"features.{len(widths) - 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        if features.shape[-2:] != self.pool.output_size:  # pooling to its own size is the identity: skipped,
            features = self.pool(features)  # its backward pass is slow on the CPU (small-cnn on 28x28)
        return self.classifier(features.flatten(1))


@register_model("small-cnn")
def small_cnn(kit: LayerKit, in_channels: int, num_classes: int, widths: Sequence[int] = (32, 64, 128),
                pool_size: int = 7) -> PlainNet:
    """Three conv blocks (28 -> 14 -> 7 -> 7 for Fashion-MNIST) and a linear classifier on the 7 x 7 map."""
    if len(widths) != 3:
        raise ModelError(f"bad options for architecture 'small-cnn': it takes 3 widths, got {list(widths)}")
    return PlainNet(kit, in_channels, num_classes, widths, [True, True, False], pool_size)


@register_model("vgg-small")
def vgg_small(kit: LayerKit, in_channels: int, num_classes: int, width: int = 128, pool_size: int = 1) -> PlainNet:
    """VGG-Small (Zhang et al. 2018, LQ-Nets): 2x128, 2x256, 2x512 conv blocks, pooling after each pair."""
    widths = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    return PlainNet(kit, in_channels, num_classes, widths, [False, True] * 3, pool_size)
