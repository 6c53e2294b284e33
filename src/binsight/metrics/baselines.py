"""Baseline maps for "better than chance" comparisons, and the check for degenerate maps."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from binsight.metrics._checks import MetricError, check_maps


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[1] != 1 or min(shape) < 1:
        raise MetricError(f"shape must be (N, 1, H, W) with positive sizes, got {shape}")
    return shape  # type: ignore[return-value]


def random_map(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Maps of independent uniform [0, 1) pixels: float32 (N, 1, H, W), the same for the same seed.

    Drawn from a private generator, so the global torch random state is left as it was.
    """
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(_check_shape(shape), generator=generator)


def gaussian_map(shape: Sequence[int], sigma: float | None = None) -> torch.Tensor:
    """A centred isotropic Gaussian bump, the same for every image: float32 (N, 1, H, W), peak 1.

    m[i, j] = exp(-((i - (H - 1) / 2)^2 + (j - (W - 1) / 2)^2) / (2 sigma^2)), sigma in pixels;
    default sigma = min(H, W) / 4 (7 pixels for 28 x 28). The "object is in the middle" prior.
    """
    n, _, height, width = _check_shape(shape)
    if sigma is None:
        sigma = min(height, width) / 4
    if not sigma > 0:
        raise MetricError(f"sigma must be a positive number of pixels, got {sigma}")
    rows = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    cols = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    squared = rows[:, None] ** 2 + cols[None, :] ** 2
    bump = torch.exp(-squared / (2 * sigma**2)).float()
    return bump.expand(n, 1, height, width).clone()


def is_degenerate(maps: torch.Tensor) -> np.ndarray:
    """Bool array (N,): True where a map carries no ranking of pixels.

    A map is degenerate when it contains NaN or infinite values, or is constant (which includes all zero).
    Most measures are undefined (NaN) for such maps.
    """
    values = check_maps(maps).flatten(1)
    finite = torch.isfinite(values).all(1)
    constant = values.amax(1) == values.amin(1)
    return (~finite | constant).numpy()
