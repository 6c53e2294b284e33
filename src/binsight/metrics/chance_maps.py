"""Chance maps: a map's own values put where noise puts them (:mod:`binsight.metrics.chance` tests maps
against them).

Two kinds, K of each per map: *unstructured*, the map's values at the positions of i.i.d. normals (a
random permutation), and *smoothness-matched*, its values in the order of white noise blurred by a
Gaussian of sigma pixels, sigma from :data:`SIGMAS` chosen per map so that the chance maps' mean total
variation (:func:`binsight.metrics.noise.total_variation`) is closest to the map's own. Both keep the
map's histogram. An image's noise (:class:`ImageNoise`) depends only on the seed and the image's index,
never on a map: it is drawn once per image and serves every map of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.ndimage
import torch

from binsight.metrics._checks import MetricError, check_maps
from binsight.metrics.noise import robust_unit, total_variation, tv_of_unit

SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
"""Candidate Gaussian sigmas, in pixels, of the smoothness-matched chance maps."""

@dataclass
class ChanceMaps:
    """Chance maps of N maps, K of each kind, float64 (N, K, 1, H, W), and the matched scale.

    unstructured: the map's values at shuffled positions. smooth: the map's values in the order of white
    noise blurred by ``sigma[i]`` pixels. sigma: float64 (N,), NaN for a map whose total variation is
    undefined (a constant map; its smooth chance maps then use the first sigma of :data:`SIGMAS`).
    """

    unstructured: torch.Tensor
    smooth: torch.Tensor
    sigma: np.ndarray


def chance_maps(maps: torch.Tensor, *, n_chance: int = 20, seed: int = 0,
                indices: Sequence[int] | None = None) -> ChanceMaps:
    """``n_chance`` unstructured and ``n_chance`` smoothness-matched chance maps of each map (N, 1, H, W).

    Map i's noise comes from ``numpy.random.default_rng([seed, indices[i]])`` (indices default 0..N-1), so
    its chance maps depend only on the seed, its index and its values. Smooth scale: for each sigma of :data:`SIGMAS` the K noise
    fields are blurred (``scipy.ndimage.gaussian_filter``, reflecting borders) and given the map's values;
    the sigma whose chance maps' mean :func:`~binsight.metrics.noise.total_variation` is nearest the map's
    is kept.
    """
    values = check_maps(maps, finite=True)
    check_count(n_chance)
    n = values.shape[0]
    indices = range(n) if indices is None else [int(i) for i in indices]
    if len(indices) != n:
        raise MetricError(f"indices: one per map, got {len(indices)} for {n} maps")
    return chance_maps_of(values, [ImageNoise.draw(seed, i, n_chance, values.shape[-2:]) for i in indices])


@dataclass
class ImageNoise:
    """The noise of one image's chance maps (``numpy.random.default_rng([seed, index])``: K (P,) normals,
    then K (H, W) white fields), as pixel ranks: ``unstructured`` int64 (K, P), the rank of each pixel in
    its normals; ``smooth`` int64 (len(SIGMAS), K, P), the ranks of the white fields blurred by each sigma
    (0 = lowest). It depends on no map, so a test draws it once per image and reuses it for every map."""

    unstructured: np.ndarray
    smooth: np.ndarray

    @classmethod
    def draw(cls, seed: int, index: int, n_chance: int, size) -> "ImageNoise":
        height, width = int(size[0]), int(size[1])
        rng = np.random.default_rng([seed, index])
        unstructured = ranks_of(rng.standard_normal((n_chance, height * width)))
        white = rng.standard_normal((n_chance, height, width))
        smooth = np.stack([ranks_of(scipy.ndimage.gaussian_filter(white, sigma=(0, sigma, sigma), mode="reflect")
                                     .reshape(n_chance, -1)) for sigma in SIGMAS])
        return cls(unstructured, smooth)


def ranks_of(noise: np.ndarray) -> np.ndarray:
    """The rank of each entry of each row of ``noise`` (K, P) within its row, int64 (0 = lowest)."""
    ranks = np.empty(noise.shape, dtype=np.int64)
    np.put_along_axis(ranks, np.argsort(noise, axis=1), np.arange(noise.shape[1])[None, :], axis=1)
    return ranks


def chance_maps_of(values: torch.Tensor, noise: list["ImageNoise"]) -> ChanceMaps:
    """The chance maps of maps (N, 1, H, W) from each map's image noise: the j-th smallest value of a map
    goes to the pixel of rank j (unstructured: in the normals; smooth: in the blurred field whose chance
    maps' mean total variation is nearest the map's)."""
    n, _, height, width = values.shape
    flat = values.reshape(n, -1).double().numpy()
    target_tv = total_variation(values)
    units = robust_unit(values.double()).numpy()  # a chance map's TV: the map's own scaled values, placed
    k = noise[0].unstructured.shape[0] if n else 0
    unstructured = np.empty((n, k, height * width))
    smooth = np.empty_like(unstructured)
    sigma = np.full(n, np.nan)
    for i in range(n):
        ordered = np.sort(flat[i])
        unstructured[i] = ordered[noise[i].unstructured]
        candidates = ordered[noise[i].smooth]  # (len(SIGMAS), K, P)
        placed_units = np.sort(units[i])[noise[i].smooth]  # scaling is monotone: sorted units pair with sorted values
        tv = tv_of_unit(torch.from_numpy(placed_units).view(-1, 1, height, width)).reshape(len(SIGMAS), k)
        gaps = np.abs(np.nanmean(tv, axis=1) - target_tv[i]) if np.isfinite(target_tv[i]) else np.full(len(SIGMAS), np.nan)
        best = int(np.nanargmin(gaps)) if np.isfinite(gaps).any() else 0
        smooth[i] = candidates[best]
        sigma[i] = SIGMAS[best] if np.isfinite(target_tv[i]) else np.nan
    shape = (n, k, 1, height, width)
    return ChanceMaps(torch.from_numpy(unstructured.reshape(shape)), torch.from_numpy(smooth.reshape(shape)), sigma)


def check_count(n_chance: int) -> None:
    if isinstance(n_chance, bool) or not isinstance(n_chance, (int, np.integer)) or n_chance < 1:
        raise MetricError(f"n_chance is the number of chance maps of each kind, a positive int; got {n_chance!r}")
