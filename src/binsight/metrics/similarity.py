"""How alike two saliency maps of the same image are.

Every function takes two batches of maps ``a`` and ``b``, float tensors (N, 1, H, W) (any units: each
measure is invariant to a positive scale of either map, SSIM and top-k IoU also to a shift), and returns a
float64 array (N,): the similarity of ``a[i]`` and ``b[i]``. A measure that is undefined for a pair (a
constant map, NaN values) gives NaN for it; :func:`binsight.metrics.baselines.is_degenerate` flags such maps.

``mask=``: bool (N, 1, H, W) - e.g. the object mask dilated by :func:`binsight.metrics.localisation.dilate`.
Spearman, SSIM and top-k IoU then compare the two maps on the mask's pixels only, so that pixels outside
it (a black background on which both maps are near zero) neither add agreement nor take it away. NaN for
an image whose mask has fewer than 2 pixels. :func:`shuffled_pairs` gives the image-shuffled chance pairing.
"""

from __future__ import annotations

import numpy as np
import torch

from binsight.metrics._checks import (
    MetricError,
    average_ranks,
    check_masks,
    check_pair,
    check_pair_tensors,
    descending_ranks,
    safe_divide,
)
from binsight.metrics.baselines import derangement

SSIM_WINDOW = 7
"""Side of SSIM's square sliding window, in pixels (scikit-image's default; 7 x 7 fits 28 x 28 maps)."""


def spearman(a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None) -> np.ndarray:
    """Spearman rank correlation of the pixels of each pair of maps, in [-1, 1].

    The Pearson correlation of the pixels' ranks (ties get their average rank, as ``scipy.stats.rankdata``).
    1: same order of pixels; -1: reversed order; NaN when a map is constant or has a NaN value. With
    ``mask``, only the mask's pixels are ranked and correlated (NaN where a map is constant or not finite on
    them, or the mask has fewer than 2 pixels). Computed in torch, float64, on the maps' device, every pair
    at once (equal to the former SciPy per-image computation to 1e-12: tests/test_metrics_torch.py).
    Reference: Spearman (1904); used for saliency maps by Adebayo et al., "Sanity Checks for Saliency
    Maps", NeurIPS 2018.
    """
    a, b = check_pair_tensors(a, b)
    n = a.shape[0]
    keep = torch.ones_like(a, dtype=torch.bool) if mask is None else check_masks(mask, a.shape).to(a.device)
    keep, flat_a, flat_b = keep.view(n, -1), a.view(n, -1), b.view(n, -1)
    finite = ((torch.isfinite(flat_a) & torch.isfinite(flat_b)) | ~keep).all(1)
    weight = keep.to(a.dtype)
    ranks = [average_ranks(torch.where(keep, torch.nan_to_num(v), torch.inf)) for v in (flat_a, flat_b)]
    result = _weighted_pearson(*ranks, weight)
    result[~finite | (weight.sum(1) < 2)] = torch.nan
    return result.cpu().numpy()


def _weighted_pearson(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of x and y (N, P) over the entries of weight 1 (weight 0 ignored),
    clipped to [-1, 1]; NaN for a row constant on those entries."""
    count = weight.sum(1, keepdim=True).clamp_min(1)
    dx = (x - (x * weight).sum(1, keepdim=True) / count) * weight
    dy = (y - (y * weight).sum(1, keepdim=True) / count) * weight
    den = ((dx * dx).sum(1) * (dy * dy).sum(1)).sqrt()
    ok = torch.isfinite(den) & (den != 0)
    return torch.where(ok, (dx * dy).sum(1) / torch.where(ok, den, 1.0), torch.nan).clamp(-1.0, 1.0)


SSIM_K1, SSIM_K2 = 0.01, 0.03
"""SSIM's constants (scikit-image's defaults): C1 = (K1 L)^2, C2 = (K2 L)^2 with the data range L = 1."""


def ssim(a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None) -> np.ndarray:
    """Structural similarity (SSIM) of each pair of maps, in [-1, 1]; 1 for identical maps.

    Each map is first scaled to [0, 1] by its own minimum and maximum, then compared as scikit-image's
    ``structural_similarity`` does with ``data_range=1``, a uniform 7 x 7 window (:data:`SSIM_WINDOW`), its
    sample covariances (normalised by 49 - 1) and constants K1 = 0.01, K2 = 0.03; the result is the mean SSIM
    over the window positions that lie inside the map. Maps must be at least 7 x 7 pixels. NaN when a map is
    constant. With ``mask``: each map is scaled to [0, 1] by its minimum and maximum on the mask, set to 0 off
    the mask (the same in both maps), and the SSIM map is averaged over the mask's pixels whose window lies
    inside the map; NaN where there are none, the mask has fewer than 2 pixels or a map is constant or not
    finite on the mask. Two maps equal on the mask score 1 whatever they show elsewhere.
    Computed in torch, float64, on the maps' device, every pair at once: the window means are a 7 x 7
    average pool over the positions inside the map, exactly the ones scikit-image averages (its borders are
    cropped), so the values equal scikit-image's to 1e-12 (tests/test_metrics_torch.py).
    Reference: Wang et al., "Image quality assessment: from error visibility to structural similarity",
    IEEE TIP 2004.
    """
    a, b = check_pair_tensors(a, b)
    height, width = a.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise MetricError(f"SSIM needs maps of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {height} x {width}")
    keep = torch.ones_like(a, dtype=torch.bool) if mask is None else check_masks(mask, a.shape).to(a.device)
    unit_a, unit_b = _unit_on(a, keep), _unit_on(b, keep)
    pad = SSIM_WINDOW // 2
    counted = keep[:, :, pad : height - pad, pad : width - pad].to(a.dtype)
    total = counted.sum((1, 2, 3))
    result = (_ssim_inside(unit_a, unit_b) * counted).sum((1, 2, 3)) / total.clamp_min(1)
    result[(total == 0) | (keep.flatten(1).sum(1) < 2)] = torch.nan
    return result.cpu().numpy()


def _unit_on(maps: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Each map (N, 1, H, W) scaled to [0, 1] by its min and max on ``keep`` and 0 off it; a map constant or
    not finite on ``keep`` becomes NaN everywhere."""
    n = maps.shape[0]
    values, inside = maps.view(n, -1), keep.view(n, -1)
    low = torch.where(inside, values, torch.inf).amin(1, keepdim=True)
    span = torch.where(inside, values, -torch.inf).amax(1, keepdim=True) - low
    usable = (torch.isfinite(values) | ~inside).all(1, keepdim=True) & torch.isfinite(span) & (span > 0)
    unit = torch.where(inside, (values - low) / torch.where(usable, span, 1.0), 0.0)
    return torch.where(usable, unit, torch.nan).view(maps.shape)


def _ssim_inside(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of (N, 1, H, W) maps in [0, 1] at every window position inside them: (N, 1, H - 6, W - 6)."""
    def mean(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(t, SSIM_WINDOW, stride=1)

    samples = SSIM_WINDOW**2
    covariance = samples / (samples - 1)
    mx, my = mean(x), mean(y)
    vx = covariance * (mean(x * x) - mx * mx)
    vy = covariance * (mean(y * y) - my * my)
    vxy = covariance * (mean(x * y) - mx * my)
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    return (2 * mx * my + c1) * (2 * vxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def top_k_iou(a: torch.Tensor, b: torch.Tensor, k: float = 0.10, *, mask: torch.Tensor | None = None,
              tie_seed: int | None = None) -> np.ndarray:
    """Intersection over union of the top ``k`` fraction of pixels of each pair of maps, in [0, 1].

    The top set of a map holds its ``max(1, round(k * H * W))`` largest pixels; among equal values the pixel
    that comes first in row-major order is taken first, so the sets always have exactly that size and the
    result is deterministic; with ``tie_seed`` (an int) equal values are taken in a random order instead, a
    uniform key per pixel (:func:`binsight.metrics._checks.tie_key` of the (N, H W) call, the same key for a
    and b). 1: same top pixels; 0: disjoint (e.g. a map and its negation). NaN for a map with NaN values.
    With ``mask``, the top sets are the ``max(1, round(k * n))`` largest of the mask's n pixels (NaN where
    n < 2 or a map is not finite on the mask). Computed in torch on the maps' device, every pair at once.
    Reference: the top-k feature agreement of Krishna et al., "The disagreement problem in explainable
    machine learning", 2022 (|intersection| / k), here with the union as denominator.
    """
    if not 0.0 < k <= 1.0:
        raise MetricError(f"k is the fraction of pixels in the top set and must be in (0, 1], got {k}")
    a, b = check_pair_tensors(a, b)
    n = a.shape[0]
    keep = torch.ones_like(a, dtype=torch.bool) if mask is None else check_masks(mask, a.shape).to(a.device)
    keep, flat_a, flat_b = keep.view(n, -1), a.view(n, -1), b.view(n, -1)
    pixels = keep.sum(1)
    count = torch.round(k * pixels.to(torch.float64)).clamp_min(1)
    top_a, top_b = (keep & (descending_ranks(torch.where(keep, v, -torch.inf), tie_seed) < count[:, None])
                    for v in (flat_a, flat_b))
    inter = (top_a & top_b).sum(1).to(torch.float64)
    result = inter / (2 * count - inter)
    finite = ((torch.isfinite(flat_a) & torch.isfinite(flat_b)) | ~keep).all(1)
    result[~finite | ((pixels < 2) if mask is not None else torch.zeros_like(finite))] = torch.nan
    return result.cpu().numpy()


def shuffled_pairs(n: int, seed: int = 0) -> np.ndarray:
    """The image-shuffled chance pairing: int64 (n,), image i is compared with image perm[i] != i.

    A fixed seeded derangement (:func:`binsight.metrics.baselines.derangement`): the similarity of maps of
    different images is what two maps share by chance (e.g. a centred object, a black background).
    """
    return derangement(n, seed=seed)


def cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Cosine similarity of each pair of maps seen as vectors of H * W pixels, in [-1, 1].

    a . b / (|a| |b|); NaN when a map is all zero. Unlike the other measures it depends on the maps' offset.
    """
    a, b = check_pair(a, b)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.clip(safe_divide((a * b).sum(1), den), -1.0, 1.0)
