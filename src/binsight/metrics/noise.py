"""How noisy and how complex one saliency map is.

Every function takes maps, a float tensor (N, 1, H, W), and returns a float64 array (N,). A measure that
is undefined for a map (constant, all zero, NaN) gives NaN for it; see
:func:`binsight.metrics.baselines.is_degenerate`.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch

from binsight.metrics._checks import check_maps, flat, safe_divide, scaled_to_unit

HIGH_FREQUENCY_CUTOFF = 0.25
"""Radial spatial frequency, in cycles per pixel, above which energy counts as high: half the Nyquist
frequency (0.5 cycles per pixel)."""


WINSOR_QUANTILE = 0.01
"""Share of pixels at each end of a map that :func:`total_variation` clips to the map's 1st and 99th
percentiles before scaling: up to 1 % of hot (or cold) pixels cannot set the scale."""


def total_variation(maps: torch.Tensor) -> np.ndarray:
    """Total variation per pixel of each map scaled by a robust range: 0 (flat) to about 2 (a checkerboard).

    With q_lo and q_hi the map's 1st and 99th percentiles (``numpy.quantile``, linear interpolation), the map
    is clipped to [q_lo, q_hi] and scaled to m' = (clip(m) - q_lo) / (q_hi - q_lo) in [0, 1]; then
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
    values = flat(check_maps(maps))
    finite = np.isfinite(values).all(axis=1)
    low, high = np.zeros(len(values)), np.zeros(len(values))
    if finite.any():
        low[finite], high[finite] = np.quantile(values[finite], [WINSOR_QUANTILE, 1 - WINSOR_QUANTILE], axis=1)
    spiky = high <= low  # at most 1 % of the pixels off one value: fall back to the range
    low[spiky], high[spiky] = values[spiky].min(axis=1), values[spiky].max(axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    clipped[~finite] = np.nan
    return _tv_of_unit(scaled_to_unit(clipped), maps.shape[-2:])


def total_variation_range(maps: torch.Tensor) -> np.ndarray:
    """Total variation per pixel of each map scaled to [0, 1] by its range (min to max); NaN if constant.

    The pre-robust definition, kept for comparison: one hot pixel sets the range, every other pixel is
    scaled towards 0 and the value collapses (use :func:`total_variation`). Same formula otherwise.
    """
    maps = check_maps(maps)
    return _tv_of_unit(scaled_to_unit(flat(maps)), maps.shape[-2:])


def _tv_of_unit(unit: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anisotropic total variation of rows (N, H * W) already scaled to [0, 1], divided by H * W."""
    height, width = size
    unit = unit.reshape(-1, height, width)
    horizontal = np.abs(np.diff(unit, axis=2)).sum(axis=(1, 2))
    vertical = np.abs(np.diff(unit, axis=1)).sum(axis=(1, 2))
    return (horizontal + vertical) / (height * width)


def high_frequency_energy(maps: torch.Tensor) -> np.ndarray:
    """Fraction of each map's spectral energy above half the Nyquist frequency, in [0, 1].

    With F the 2-D discrete Fourier transform of the map minus its mean, and (fy, fx) the frequencies of
    its coefficients in cycles per pixel (``numpy.fft.fftfreq``, each in [-0.5, 0.5)):
    sum |F|^2 over sqrt(fx^2 + fy^2) > 0.25, divided by sum |F|^2 over all coefficients.
    A checkerboard gives 1 (all energy at fx = fy = 0.5); a smooth map close to 0; white noise about
    1 - pi / 16 = 0.80 (the share of the frequency square outside the disc of radius 0.25).
    Invariant to the map's scale and offset. NaN for a constant map (no energy).
    """
    maps = check_maps(maps)
    height, width = maps.shape[-2:]
    values = flat(maps).reshape(-1, height, width)
    centred = values - values.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    high = np.sqrt(fx**2 + fy**2) > HIGH_FREQUENCY_CUTOFF
    total = power.sum(axis=(1, 2))
    constant = values.max(axis=(1, 2)) == values.min(axis=(1, 2))  # rounding would leave a trace of energy
    return safe_divide(power[:, high].sum(axis=1), np.where(constant, 0.0, total))


def rank_total_variation(maps: torch.Tensor) -> np.ndarray:
    """:func:`total_variation_range` of each map's within-map ranks: invariant to any increasing remap.

    Each map's pixels are replaced by their ranks (ties get their average rank, ``scipy.stats.rankdata``),
    scaled to [0, 1] by the ranks' range, and the total variation per pixel of that rank map is returned:
    0 (flat) to about 2 (a checkerboard). A monotone remap of the values (sqrt, exp, a gamma curve) leaves
    the ranks, hence the value, exactly as they were, where :func:`total_variation` moves with the histogram.
    NaN for a constant or non-finite map.
    """
    maps = check_maps(maps)
    return _tv_of_unit(scaled_to_unit(_ranks(flat(maps))), maps.shape[-2:])


def rank_high_frequency_energy(maps: torch.Tensor) -> np.ndarray:
    """:func:`high_frequency_energy` of each map's within-map ranks (average ranks for ties, scaled to
    [0, 1]): invariant to any increasing remap of the map's values. NaN for a constant or non-finite map."""
    maps = check_maps(maps)
    unit = scaled_to_unit(_ranks(flat(maps)))
    return high_frequency_energy(torch.from_numpy(unit).view(maps.shape))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1 to P) of each row of values (N, P); rows with a non-finite value become NaN."""
    finite = np.isfinite(values).all(axis=1)
    ranks = np.full(values.shape, np.nan)
    if finite.any():
        ranks[finite] = scipy.stats.rankdata(values[finite], axis=1)
    return ranks


def gini(maps: torch.Tensor) -> np.ndarray:
    """Gini index of the absolute values of each map's pixels (sparseness), in [0, 1 - 1 / (H W)].

    With c_1 <= ... <= c_n the sorted |m| values (n = H W): G = sum_k (2k - n - 1) c_k / (n sum_k c_k).
    0: all pixels equal; (n - 1) / n: all mass on one pixel. NaN for an all-zero map.
    Reference: Hurley and Rickard, "Comparing measures of sparsity", IEEE Trans. Inf. Theory 2009; as used
    for saliency maps by Chalasani et al., "Concise explanations of neural networks using adversarial
    training", ICML 2020 (Quantus ``Sparseness``, which adds 1e-7 to every value to avoid 0 / 0).
    """
    values = np.sort(np.abs(flat(check_maps(maps))), axis=1)
    n = values.shape[1]
    weights = 2 * np.arange(1, n + 1) - n - 1
    return safe_divide((weights * values).sum(axis=1), n * values.sum(axis=1))


def entropy(maps: torch.Tensor) -> np.ndarray:
    """Shannon entropy, in nats, of each map's |values| normalised to sum to 1: from 0 to log(H W).

    p = |m| / sum |m|; H = -sum p log p (``scipy.stats.entropy``). 0: all mass on one pixel; log(H W): a
    uniform map. NaN for an all-zero map.
    Reference: the complexity measure of Bhatt et al., "Evaluating and aggregating feature-based model
    explanations", IJCAI 2020 (Quantus ``Complexity``).
    """
    values = np.abs(flat(check_maps(maps)))
    total = values.sum(axis=1, keepdims=True)
    result = np.full(values.shape[0], np.nan)
    ok = np.isfinite(total[:, 0]) & (total[:, 0] > 0)
    if ok.any():
        result[ok] = scipy.stats.entropy(values[ok], axis=1)
    return result
