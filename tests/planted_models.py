"""Models built by hand for the planted datasets (no training): one reads only the pattern, one only the
garment; the known answers of the intervention test and of the evidence verdict (tests/metrics,
tests/study)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from binsight.data import planted

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed "
                                "(scripts/setup.sh installs it)")


def pattern_model() -> nn.Module:
    """Reads the pattern only: one filter per class pattern (+1 on bright, -1 on dark pixels, firing only
    on an exact match), max-pooled over the image; logit k = 2 relu(match_k - bright_k + 0.5)."""
    pats = planted.patterns()
    conv, read = nn.Conv2d(1, 10, 4), nn.Linear(10, 10)
    with torch.no_grad():
        conv.weight.copy_((2 * pats - 1).unsqueeze(1))
        conv.bias.copy_(-(pats.flatten(1).sum(1) - 0.5))
        read.weight.copy_(2 * torch.eye(10))
        read.bias.zero_()
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), read)


class Erode(nn.Module):
    """Grey-level erosion by a 5 x 5 square: a 4 x 4 pattern on a dark ring vanishes, garments stay."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -F.max_pool2d(-x, 5, stride=1, padding=2)


def garment_model(garments) -> nn.Module:
    """Reads the garment only: nearest class mean of the eroded images (means of ``garments``, no training)."""
    eroded = Erode()(garments.images)
    means = torch.stack([eroded[garments.labels == k].mean(0).flatten() for k in range(10)])
    read = nn.Linear(means.shape[1], 10)
    with torch.no_grad():
        read.weight.copy_(means)
        read.bias.copy_(-0.5 * means.square().sum(1))
    return nn.Sequential(Erode(), nn.Flatten(), read)
