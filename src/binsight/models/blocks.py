"""Blocks shared by the plain (non-residual) architectures."""

from __future__ import annotations

import torch
from torch import nn

from binsight.models.errors import ModelError
from binsight.models.kit import LayerKit


class ConvBlock(nn.Module):
    """conv -> [2x2 max pool] -> batch norm -> act. (N, cin, H, W) -> (N, cout, ceil(H/2) or H, ...).

    In a BNN ``act`` is a SignActivation, so batch norm always comes right before the sign, and ``bn``'s
    output is the block's real-valued output.
    """

    def __init__(self, kit: LayerKit, cin: int, cout: int, *, pool: bool, first: bool = False):
        super().__init__()
        self.conv = kit.conv(cin, cout, 3, edge=first)
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if pool else nn.Identity()
        self.bn = nn.BatchNorm2d(cout)
        self.act = kit.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pool(self.conv(x))))


def plain_features(kit: LayerKit, in_channels: int, widths: list[int], pools: list[bool]) -> nn.Sequential:
    """A stack of ConvBlocks with the given output widths and pooling flags (the first block is the edge)."""
    if len(widths) != len(pools) or not widths:
        raise ModelError(f"widths {widths} and pools {pools} must be non-empty and of the same length")
    blocks, cin = [], in_channels
    for i, (cout, pool) in enumerate(zip(widths, pools)):
        blocks.append(ConvBlock(kit, cin, cout, pool=pool, first=i == 0))
        cin = cout
    return nn.Sequential(*blocks)


def gradcam_names(kit: LayerKit, last_block: str) -> tuple[str, str | None]:
    """(gradcam_layer, gradcam_binary_layer) for a ConvBlock called ``last_block``.

    gradcam_layer is the batch norm output, the real-valued tensor before the non-linearity in both
    precisions (before the ReLU in FP, before the sign in a BNN); gradcam_binary_layer is the sign (BNN) or
    None (FP).
    """
    return f"{last_block}.bn", (f"{last_block}.act" if kit.binary else None)
