"""How noisy and how complex one saliency map is.

Every function takes maps, a float tensor (N, 1, H, W), and returns a float64 array (N,). A measure that
is undefined for a map (constant, all zero, NaN) gives NaN for it; see
:func:`binsight.metrics.baselines.is_degenerate`. All are computed in torch, float64, on the maps' device
(the CPU for MPS), every map at once; they equal the former NumPy / SciPy computations to 1e-10
(tests/test_metrics_torch.py).
"""

from __future__ import annotations

import numpy as np
import torch

from binsight.metrics._checks import average_ranks, check_maps

HIGH_FREQUENCY_CUTOFF = 0.25
"""Radial spatial frequency, in cycles per pixel, above which energy counts as high: half the Nyquist
frequency (0.5 cycles per pixel)."""


WINSOR_QUANTILE = 0.01
"""Share of pixels at each end of a map that :func:`total_variation` clips to the map's 1st and 99th
percentiles before scaling: up to 1 % of hot (or cold) pixels cannot set the scale."""


def total_variation(maps: torch.Tensor) -> np.ndarray:
    """Total variation per pixel of each map scaled by a robust range: 0 (flat) to about 2 (a checkerboard).

    With q_lo and q_hi the map's 1st and 99th percentiles (linear interpolation, as ``numpy.quantile``), the
    map is clipped to [q_lo, q_hi] and scaled to m' = (clip(m) - q_lo) / (q_hi - q_lo) in [0, 1]; then
    TV = (sum over pixel pairs of |m'[i, j+1] - m'[i, j]| + |m'[i+1, j] - m'[i, j]|) / (H * W),
    the anisotropic total variation divided by the number of pixels. A 0/1 checkerboard gives
    (H (W - 1) + W (H - 1)) / (H W). A single hot pixel is clipped to q_hi, so it moves TV by at most
    4 / (H W), where scaling by the range (:func:`total_variation_range`) would shrink every other pixel
    towards 0. When q_lo = q_hi (at most 1 % of the pixels differ from one value) the map is scaled by its
    range instead. Invariant to the map's scale (of either sign) and offset. NaN for a constant or
    non-finite map.
    Reference: Rudin, Osher and Fatemi, "Nonlinear total variation based noise removal algorithms",
    Physica D 1992 (the anisotropic form).
    """
    maps = check_maps(maps, on_device=True)
    return tv_of_unit(robust_unit(maps).view(maps.shape))


def robust_unit(maps: torch.Tensor) -> torch.Tensor:
    """The values :func:`total_variation` measures: each map (N, 1, H, W) clipped to its 1st and 99th
    percentiles and scaled to [0, 1] (the range where those coincide), as rows (N, H W); NaN rows for
    constant or non-finite maps. Each value's image depends only on the map's multiset of values, not on
    where they sit: the same values in another order give the same numbers in that order, so
    ``tv_of_unit`` of such a permutation equals :func:`total_variation` of the permuted map (the chance maps
    use this: :mod:`binsight.metrics.chance_maps`)."""
    maps = check_maps(maps, on_device=True)
    values = maps.flatten(1)
    finite = torch.isfinite(values).all(1, keepdim=True)
    safe = torch.where(finite, values, 0.0)
    q = torch.tensor([WINSOR_QUANTILE, 1 - WINSOR_QUANTILE], dtype=values.dtype, device=values.device)
    low, high = torch.quantile(safe, q, dim=1, keepdim=True)
    spiky = high <= low  # at most 1 % of the pixels off one value: fall back to the range
    low = torch.where(spiky, safe.amin(1, keepdim=True), low)
    high = torch.where(spiky, safe.amax(1, keepdim=True), high)
    clipped = torch.where(finite, torch.minimum(torch.maximum(safe, low), high), torch.nan)
    return _unit_rows(clipped)


def total_variation_range(maps: torch.Tensor) -> np.ndarray:
    """Total variation per pixel of each map scaled to [0, 1] by its range (min to max); NaN if constant.

    The pre-robust definition, kept for comparison: one hot pixel sets the range, every other pixel is
    scaled towards 0 and the value collapses (use :func:`total_variation`). Same formula otherwise.
    """
    maps = check_maps(maps, on_device=True)
    return tv_of_unit(_unit_rows(maps.flatten(1)).view(maps.shape))


def rank_total_variation(maps: torch.Tensor) -> np.ndarray:
    """:func:`total_variation_range` of each map's within-map ranks: invariant to any increasing remap.

    Each map's pixels are replaced by their ranks (ties get their average rank, as ``scipy.stats.rankdata``),
    scaled to [0, 1] by the ranks' range, and the total variation per pixel of that rank map is returned:
    0 (flat) to about 2 (a checkerboard). A monotone remap of the values (sqrt, exp, a gamma curve) leaves
    the ranks, hence the value, exactly as they were, where :func:`total_variation` moves with the histogram.
    NaN for a constant or non-finite map.
    """
    maps = check_maps(maps, on_device=True)
    return tv_of_unit(_unit_rows(_finite_ranks(maps.flatten(1))).view(maps.shape))


def rank_high_frequency_energy(maps: torch.Tensor) -> np.ndarray:
    """:func:`high_frequency_energy` of each map's within-map ranks (average ranks for ties, scaled to
    [0, 1]): invariant to any increasing remap of the map's values. NaN for a constant or non-finite map."""
    maps = check_maps(maps, on_device=True)
    return high_frequency_energy(_unit_rows(_finite_ranks(maps.flatten(1))).view(maps.shape))


def _finite_ranks(values: torch.Tensor) -> torch.Tensor:
    """Average ranks (1 to P) of each row of values (N, P); rows with a non-finite value become NaN."""
    finite = torch.isfinite(values).all(1, keepdim=True)
    return torch.where(finite, average_ranks(torch.where(finite, values, 0.0)), torch.nan)


def _unit_rows(values: torch.Tensor) -> torch.Tensor:
    """Each row of values (N, P) scaled to [0, 1] by its min and max; constant or non-finite rows NaN."""
    low = values.amin(1, keepdim=True)
    span = values.amax(1, keepdim=True) - low
    ok = torch.isfinite(span) & (span > 0)
    return torch.where(ok, (values - low) / torch.where(ok, span, 1.0), torch.nan)


def tv_of_unit(unit: torch.Tensor) -> np.ndarray:
    """Anisotropic total variation of maps (N, 1, H, W) already scaled to [0, 1], divided by H * W."""
    height, width = unit.shape[-2:]
    horizontal = unit.diff(dim=-1).abs().sum((1, 2, 3))
    vertical = unit.diff(dim=-2).abs().sum((1, 2, 3))
    return ((horizontal + vertical) / (height * width)).cpu().numpy()


def high_frequency_energy(maps: torch.Tensor) -> np.ndarray:
    """Fraction of each map's spectral energy above half the Nyquist frequency, in [0, 1].

    With F the 2-D discrete Fourier transform of the map minus its mean, and (fy, fx) the frequencies of
    its coefficients in cycles per pixel (as ``numpy.fft.fftfreq``, each in [-0.5, 0.5)):
    sum |F|^2 over sqrt(fx^2 + fy^2) > 0.25, divided by sum |F|^2 over all coefficients.
    A checkerboard gives 1 (all energy at fx = fy = 0.5); a smooth map close to 0; white noise about
    1 - pi / 16 = 0.80 (the share of the frequency square outside the disc of radius 0.25).
    Invariant to the map's scale and offset. NaN for a constant map (no energy).
    """
    maps = check_maps(maps, on_device=True)
    height, width = maps.shape[-2:]
    values = maps[:, 0]
    centred = values - values.mean((1, 2), keepdim=True)
    power = torch.fft.fft2(centred).abs() ** 2
    fy = torch.fft.fftfreq(height, dtype=values.dtype, device=values.device)[:, None]
    fx = torch.fft.fftfreq(width, dtype=values.dtype, device=values.device)[None, :]
    high = (fx**2 + fy**2).sqrt() > HIGH_FREQUENCY_CUTOFF
    total = power.sum((1, 2))
    constant = values.amax((1, 2)) == values.amin((1, 2))  # rounding would leave a trace of energy
    ok = torch.isfinite(total) & (total != 0) & ~constant
    share = torch.where(ok, (power * high).sum((1, 2)) / torch.where(ok, total, 1.0), torch.nan)
    return share.cpu().numpy()


def gini(maps: torch.Tensor) -> np.ndarray:
    """Gini index of the absolute values of each map's pixels (sparseness), in [0, 1 - 1 / (H W)].

    With c_1 <= ... <= c_n the sorted |m| values (n = H W): G = sum_k (2k - n - 1) c_k / (n sum_k c_k).
    0: all pixels equal; (n - 1) / n: all mass on one pixel. NaN for an all-zero map.
    Reference: Hurley and Rickard, "Comparing measures of sparsity", IEEE Trans. Inf. Theory 2009; as used
    for saliency maps by Chalasani et al., "Concise explanations of neural networks using adversarial
    training", ICML 2020 (Quantus ``Sparseness``, which adds 1e-7 to every value to avoid 0 / 0).
    """
    values = check_maps(maps, on_device=True).flatten(1).abs().sort(dim=1).values
    n = values.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=values.dtype, device=values.device) - n - 1
    total = n * values.sum(1)
    ok = torch.isfinite(total) & (total != 0)
    return torch.where(ok, (weights * values).sum(1) / torch.where(ok, total, 1.0), torch.nan).cpu().numpy()


def entropy(maps: torch.Tensor) -> np.ndarray:
    """Shannon entropy, in nats, of each map's |values| normalised to sum to 1: from 0 to log(H W).

    p = |m| / sum |m|; H = -sum p log p (0 log 0 = 0, as ``scipy.stats.entropy``). 0: all mass on one
    pixel; log(H W): a uniform map. NaN for an all-zero map.
    Reference: the complexity measure of Bhatt et al., "Evaluating and aggregating feature-based model
    explanations", IJCAI 2020 (Quantus ``Complexity``).
    """
    values = check_maps(maps, on_device=True).flatten(1).abs()
    total = values.sum(1, keepdim=True)
    ok = torch.isfinite(total) & (total > 0)
    p = values / torch.where(ok, total, 1.0)
    terms = torch.where(p > 0, -p * torch.log(torch.where(p > 0, p, 1.0)), 0.0)
    return torch.where(ok[:, 0], terms.sum(1), torch.nan).cpu().numpy()
