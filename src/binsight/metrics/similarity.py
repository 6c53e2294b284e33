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
import scipy.stats
import torch
from skimage.metrics import structural_similarity

from binsight.metrics._checks import MetricError, check_masks, check_pair, safe_divide, scaled_to_unit, tie_key
from binsight.metrics.baselines import derangement

SSIM_WINDOW = 7
"""Side of SSIM's square sliding window, in pixels (scikit-image's default; 7 x 7 fits 28 x 28 maps)."""


def spearman(a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None) -> np.ndarray:
    """Spearman rank correlation of the pixels of each pair of maps, in [-1, 1].

    The Pearson correlation of the pixels' ranks (ties get their average rank, ``scipy.stats.rankdata``).
    1: same order of pixels; -1: reversed order; NaN when a map is constant. With ``mask``, only the
    mask's pixels are ranked and correlated (NaN where a map is constant on them).
    Reference: Spearman (1904); used for saliency maps by Adebayo et al., "Sanity Checks for Saliency
    Maps", NeurIPS 2018.
    """
    if mask is not None:
        return _per_masked_image(spearman, a, b, mask)
    a, b = check_pair(a, b)
    nan_rows = ~(np.isfinite(a).all(1) & np.isfinite(b).all(1))
    ranks_a = scipy.stats.rankdata(np.nan_to_num(a), axis=1)
    ranks_b = scipy.stats.rankdata(np.nan_to_num(b), axis=1)
    result = _pearson_rows(ranks_a, ranks_b)
    result[nan_rows] = np.nan
    return result


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of x (N, P) with the same row of y; NaN for a constant row."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    return np.clip(safe_divide((x * y).sum(1), den), -1.0, 1.0)


def ssim(a: torch.Tensor, b: torch.Tensor, *, mask: torch.Tensor | None = None) -> np.ndarray:
    """Structural similarity (SSIM) of each pair of maps, in [-1, 1]; 1 for identical maps.

    Each map is first scaled to [0, 1] by its own minimum and maximum, then compared with scikit-image's
    ``structural_similarity`` with ``data_range=1``, a uniform 7 x 7 window (:data:`SSIM_WINDOW`) and its
    default constants K1 = 0.01, K2 = 0.03; the result is the mean SSIM over the window positions that lie
    inside the map. Maps must be at least 7 x 7 pixels. NaN when a map is constant.
    With ``mask``: each map is scaled to [0, 1] by its minimum and maximum on the mask, set to 0 off the
    mask (the same in both maps), and the SSIM map (``full=True``) is averaged over the mask's pixels whose
    window lies inside the map; NaN where there are none or a map is constant on the mask. Two maps equal
    on the mask score 1 whatever they show elsewhere.
    Reference: Wang et al., "Image quality assessment: from error visibility to structural similarity",
    IEEE TIP 2004.
    """
    flat_a, flat_b = check_pair(a, b)
    height, width = a.shape[-2:]
    if min(height, width) < SSIM_WINDOW:
        raise MetricError(f"SSIM needs maps of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {height} x {width}")
    if mask is not None:
        return _masked_ssim(flat_a, flat_b, check_masks(mask, a.shape).reshape(len(flat_a), -1).numpy(),
                            (height, width))
    unit_a = scaled_to_unit(flat_a).reshape(-1, height, width)
    unit_b = scaled_to_unit(flat_b).reshape(-1, height, width)
    result = np.full(unit_a.shape[0], np.nan)
    for i, (map_a, map_b) in enumerate(zip(unit_a, unit_b)):
        if np.isfinite(map_a).all() and np.isfinite(map_b).all():
            result[i] = structural_similarity(map_a, map_b, data_range=1.0, win_size=SSIM_WINDOW)
    return result


def top_k_iou(a: torch.Tensor, b: torch.Tensor, k: float = 0.10, *, mask: torch.Tensor | None = None,
              tie_seed: int | None = None) -> np.ndarray:
    """Intersection over union of the top ``k`` fraction of pixels of each pair of maps, in [0, 1].

    The top set of a map holds its ``max(1, round(k * H * W))`` largest pixels; among equal values the pixel
    that comes first in row-major order is taken first, so the sets always have exactly that size and the
    result is deterministic; with ``tie_seed`` (an int) equal values are taken in a random order instead, a
    uniform key per pixel (:func:`binsight.metrics._checks.tie_key`, the same key for a and b). 1: same top pixels; 0: disjoint (e.g. a map and its negation). NaN for a map
    with NaN values. With ``mask``, the top sets are the ``max(1, round(k * n))`` largest of the mask's n
    pixels.
    Reference: the top-k feature agreement of Krishna et al., "The disagreement problem in explainable
    machine learning", 2022 (|intersection| / k), here with the union as denominator.
    """
    if not 0.0 < k <= 1.0:
        raise MetricError(f"k is the fraction of pixels in the top set and must be in (0, 1], got {k}")
    if mask is not None:
        return _per_masked_image(top_k_iou, a, b, mask, k=k, tie_seed=tie_seed)
    a, b = check_pair(a, b)
    count = max(1, round(k * a.shape[1]))
    key = None if tie_seed is None else tie_key(a.shape, tie_seed)
    top_a = top_k_mask(a, count, key)
    top_b = top_k_mask(b, count, key)
    inter = (top_a & top_b).sum(1)
    result = inter / (2 * count - inter)
    result[~(np.isfinite(a).all(1) & np.isfinite(b).all(1))] = np.nan
    return result.astype(np.float64)


def top_k_mask(values: np.ndarray, count: int, key: np.ndarray | None = None) -> np.ndarray:
    """Boolean (N, P): the ``count`` largest entries of each row; ties go to the lower index, or, with
    ``key`` (N, P), to the lower key."""
    if key is None:
        order = np.argsort(-values, axis=1, kind="stable")[:, :count]
    else:
        order = np.lexsort((key, -values), axis=1)[:, :count]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _per_masked_image(measure, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, **options) -> np.ndarray:
    """``measure`` of each pair on its mask's pixels alone (each image's pixels as a (1, 1, 1, P) map)."""
    flat_a, flat_b = check_pair(a, b)
    inside = check_masks(mask, a.shape).reshape(len(flat_a), -1).numpy()
    result = np.full(len(flat_a), np.nan)
    for i, keep in enumerate(inside):
        if keep.sum() >= 2:
            pick_a, pick_b = (torch.from_numpy(v[i, keep]).view(1, 1, 1, -1) for v in (flat_a, flat_b))
            result[i] = measure(pick_a, pick_b, **options)[0]
    return result


def _masked_ssim(flat_a: np.ndarray, flat_b: np.ndarray, inside: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """SSIM on the mask: see :func:`ssim`. flat_a, flat_b: (N, H * W); inside: bool (N, H * W)."""
    height, width = size
    pad = SSIM_WINDOW // 2
    interior = np.zeros(size, dtype=bool)
    interior[pad : height - pad, pad : width - pad] = True
    result = np.full(len(flat_a), np.nan)
    for i, keep in enumerate(inside):
        if keep.sum() < 2:
            continue
        on_mask = [scaled_to_unit(v[i, keep][None])[0] for v in (flat_a, flat_b)]
        counted = keep.reshape(size) & interior
        if not counted.any() or not all(np.isfinite(u).all() for u in on_mask):
            continue
        planes = []
        for unit in on_mask:
            plane = np.zeros(height * width)
            plane[keep] = unit
            planes.append(plane.reshape(size))
        _, full = structural_similarity(*planes, data_range=1.0, win_size=SSIM_WINDOW, full=True)
        result[i] = full[counted].mean()
    return result


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
