"""Baseline maps for "better than chance" comparisons, the image-shuffled pairing, and the check for
degenerate maps (maps that carry no ranking of pixels)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from binsight._utils import FLAT_TOLERANCE, flat_maps
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


def smooth_random_map(shape: Sequence[int], seed: int = 0, sigma: float = 2.0) -> torch.Tensor:
    """Maps of uniform [0, 1) noise (:func:`random_map`, same seed) blurred by a Gaussian of ``sigma``
    pixels (:func:`gaussian_blur`, reflecting borders), then rescaled to [0, 1] by each map's range:
    float32 (N, 1, H, W).

    Structured chance at a fixed spatial scale; :mod:`binsight.metrics.chance` matches the scale per map.
    """
    if not sigma > 0:
        raise MetricError(f"sigma must be a positive number of pixels, got {sigma}")
    smooth = gaussian_blur(random_map(shape, seed=seed).double(), sigma)
    low = smooth.amin((1, 2, 3), keepdim=True)
    span = smooth.amax((1, 2, 3), keepdim=True) - low
    return ((smooth - low) / torch.where(span > 0, span, 1.0)).float()


GAUSSIAN_TRUNCATE = 4.0
"""The Gaussian kernel of :func:`gaussian_blur` reaches int(4 sigma + 0.5) pixels each side (SciPy's default)."""


def gaussian_blur(values: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each (H, W) plane of values (..., H, W) blurred by a Gaussian of ``sigma`` pixels, in torch on its
    device: the same as ``scipy.ndimage.gaussian_filter(values, (0, ..., sigma, sigma), mode="reflect")``
    (kernel exp(-x^2 / (2 sigma^2)) over |x| <= int(4 sigma + 0.5), normalised to sum 1; borders reflected
    with the edge pixel repeated, d c b a | a b c d, as often as the kernel needs). Same shape and dtype.
    """
    if not sigma > 0:
        raise MetricError(f"sigma must be a positive number of pixels, got {sigma}")
    radius = int(GAUSSIAN_TRUNCATE * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64, device=values.device)
    kernel = torch.exp(-0.5 * offsets**2 / float(sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(values.dtype)
    rows = _blur_last_axis(values, kernel, radius)
    return _blur_last_axis(rows.transpose(-1, -2), kernel, radius).transpose(-1, -2).contiguous()


def _blur_last_axis(values: torch.Tensor, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    """values (..., L) correlated with kernel (2 radius + 1,) along the last axis, borders reflected."""
    length = values.shape[-1]
    position = torch.arange(-radius, length + radius, device=values.device) % (2 * length)
    padded = values.index_select(-1, torch.where(position < length, position, 2 * length - 1 - position))
    flat = padded.reshape(-1, 1, length + 2 * radius)
    return torch.nn.functional.conv1d(flat, kernel.view(1, 1, -1)).view(values.shape)


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A seeded permutation of range(n) with no fixed point: int64 (n,), perm[i] != i for every i.

    A random cyclic order: images are shuffled (``numpy.random.default_rng(seed).permutation``) and each is
    paired with the next in that order, the last with the first - one cycle through all n. The same
    (n, seed) always gives the same pairing. Needs n >= 2.
    """
    if int(n) != n or n < 2:
        raise MetricError(f"a derangement needs at least 2 items, got n = {n}")
    order = np.random.default_rng(seed).permutation(int(n))
    perm = np.empty(int(n), dtype=np.int64)
    perm[order] = np.roll(order, -1)
    return perm



DEGENERATE_REASONS = ("not finite", "all zero", "constant", "flat")


def degeneracy(maps: torch.Tensor, *, tolerance: float = FLAT_TOLERANCE, span: float | None = None,
               relu: bool = False) -> np.ndarray:
    """Why each map carries no ranking of pixels: an array (N,) of str, "" for a usable map.

    Checked in this order, the first that applies is the reason:
    "not finite": a NaN or infinite value; "all zero": every value 0 (after ReLU, i.e. max(m, 0), when
    ``relu``: a map with no positive value); "constant": max = min; "flat": max - min <= tolerance * max|m|,
    or, when ``span`` is given (the width of the range the method's values can take, e.g. 1.0 for a mask in
    [0, 1]), also when max - min <= tolerance * span. With the default tolerance 1e-3 a map varying by less
    than 0.1 % of its magnitude is flat; a map with a minimum at 0 (most saliency maps) is never flat.
    """
    if not 0 <= tolerance < 1:
        raise MetricError(f"tolerance is a share of the map's magnitude, in [0, 1); got {tolerance}")
    if span is not None and not span > 0:
        raise MetricError(f"span is the width of the map's possible values and must be > 0, got {span}")
    values = check_maps(maps).flatten(1)
    if relu:
        values = values.clamp(min=0)
    finite = torch.isfinite(values).all(1)
    safe = torch.where(finite[:, None], values, torch.zeros_like(values))
    constant = (safe == safe[:, :1]).all(1)
    reasons = np.full(values.shape[0], "", dtype=object)
    for reason, hit in (("flat", flat_maps(safe, span=span, tolerance=tolerance)), ("constant", constant),
                        ("all zero", (safe == 0).all(1)), ("not finite", ~finite)):
        reasons[hit.numpy()] = reason  # later, more specific reasons overwrite earlier ones
    return reasons.astype(str)


def is_degenerate(maps: torch.Tensor, *, tolerance: float = FLAT_TOLERANCE, span: float | None = None,
                  relu: bool = False) -> np.ndarray:
    """Bool array (N,): True where a map carries no ranking of pixels (:func:`degeneracy` gives a reason).

    A map is degenerate when it contains NaN or infinite values, is all zero (after ReLU when ``relu``),
    constant, or flat: its range is at most ``tolerance`` (default 1e-3) of its magnitude max |m| (or of
    ``span``, when given). Most measures are undefined (NaN) for such maps, and chance tests skip them.
    """
    return degeneracy(maps, tolerance=tolerance, span=span, relu=relu) != ""
