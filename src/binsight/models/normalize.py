"""Per-channel normalisation as a model's first module: models take [0, 1] pixels."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from binsight.models.errors import ModelError

#: (mean, std) per channel count when the caller gives none: Fashion-MNIST for 1 channel, CIFAR-10 for 3.
DEFAULT_STATS: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {
    1: ((0.2860,), (0.3530,)),
    3: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
FALLBACK_MEAN, FALLBACK_STD = 0.5, 0.25


def resolve_stats(
    in_channels: int, mean: Sequence[float] | float | None, std: Sequence[float] | float | None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std lists of length ``in_channels``; defaults from :data:`DEFAULT_STATS`.

    A single number is used for every channel. Channel counts without defaults use 0.5 / 0.25.
    """
    default_mean, default_std = DEFAULT_STATS.get(
        in_channels, ((FALLBACK_MEAN,) * in_channels, (FALLBACK_STD,) * in_channels)
    )
    mean_list = _per_channel("mean", default_mean if mean is None else mean, in_channels)
    std_list = _per_channel("std", default_std if std is None else std, in_channels)
    if any(s <= 0 for s in std_list):
        raise ModelError(f"normalisation std must be positive for every channel, got {std_list}")
    return mean_list, std_list


def _per_channel(what: str, value: Sequence[float] | float, channels: int) -> list[float]:
    values = [float(value)] * channels if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != channels:
        raise ModelError(f"normalisation {what} has {len(values)} values for {channels} input channels; give one per channel")
    return values


class Normalize(nn.Module):
    """(x - mean) / std per channel. Input: (N, C, H, W) pixels in [0, 1]. Buffers ``mean``/``std`` (1, C, 1, 1)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.mean.shape[1]:
            raise ModelError(
                f"the model expects images (N, {self.mean.shape[1]}, H, W), got shape {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
