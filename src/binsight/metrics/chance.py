"""Nonsensical maps: is a saliency map no better than maps that know nothing about the model?

A map is compared with chance maps of its own image, of two kinds, ``n_chance`` of each:

* unstructured: the map's own pixel values shuffled (a random permutation, i.i.d. in position);
* smoothness-matched: the map's own pixel values placed in the order of white noise blurred by a Gaussian
  of sigma pixels, with sigma chosen per map from :data:`SIGMAS` so that the chance maps' mean total
  variation (:func:`binsight.metrics.noise.total_variation`) is closest to the map's own.

Both kinds keep the map's histogram (its sparsity, its offset) and change only where its values sit, so
a noisy map is not rewarded nor a smooth one penalised for its texture alone.

Measures, each changing the image where the map points (:data:`MEASURES`; lower is better except energy):

* ``deletion_blur``: deletion area onto a blurred copy of the image (the model sees the most salient
  pixels replaced by the blur; :func:`binsight.metrics.faithfulness.deletion_insertion`);
* ``deletion_mean``: deletion area onto each image's own channel mean (a black background is changed
  too, unlike deletion onto black);
* ``road_morf``: ROAD area, most relevant first (:func:`binsight.metrics.faithfulness.road`);
* ``energy_inside``: share of the map's energy on the object mask grown by ``dilation`` pixels (only
  where masks are given; higher is better).

Pixels of equal value (a binary mask, a map clipped at 0) are not ranked by the map: for deletion and
ROAD they are ordered at random (seeded), in the map and in its chance maps alike, instead of in row-major
order, which would sweep through a tied region like a structured map. An unstructured chance map's ranking
is then a uniformly random permutation whatever the map: it is taken as its noise's ranking, the same for
every map of an image, so its scores are computed once per image and shared by every method's maps
(:class:`ChanceTest`).

For each measure, the map's rank among its 2 ``n_chance`` chance maps is a p-value: p = (1 + the number of
chance maps that do at least as well as the map) / (1 + 2 ``n_chance``), ties counted against the map; a
map is *better than chance* on a measure when p <= ``level`` (default :data:`LEVEL`, 0.05; the smallest p
is 1 / (1 + 2 ``n_chance``), so ``n_chance`` must be at least 10 at 0.05). The rule (:func:`chance_test`,
``ChanceResult.nonsensical``): a map is **nonsensical** when it is *not better* than chance on a strict
majority of the applicable measures (2 of 3 without masks, 3 of 4 with), or when it is degenerate
(:func:`binsight.metrics.baselines.degeneracy`: no ranking of pixels at all). Degenerate maps are counted,
never dropped: :meth:`ChanceResult.rates` gives the not-better rate, the degenerate rate and their sum.
(The former rule, worse than *every* chance map on a majority of the measures, flagged an uninformative map
at most a few percent of the time; it is gone.)

**Controls** (:func:`control_maps`, :func:`control_test`, :func:`controls_behaved`): maps whose answer is
known, scored by the same test next to a method's maps: the map inverted (its order reversed) and the map
of another image of the batch must be flagged; the Sobel edges of the image (a model-ignorant map that
points at the object's contours, :func:`binsight.metrics.evidence.edge_map`) should mostly not be; a
centred Gaussian blob is reported (it points at the object only where objects are centred). A run whose
controls do not behave so cannot decide whether its maps are nonsensical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.ndimage
import torch
from torch import nn

from binsight.metrics import faithfulness
from binsight.metrics._checks import MetricError, check_images, check_maps, check_masks
from binsight.metrics.baselines import FLAT_TOLERANCE, degeneracy, derangement, gaussian_map
from binsight.metrics.evidence import edge_map
from binsight.metrics.localisation import DEFAULT_DILATION, energy_inside
from binsight.metrics.noise import total_variation

SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
"""Candidate Gaussian sigmas, in pixels, of the smoothness-matched chance maps."""

MEASURES = ("deletion_blur", "deletion_mean", "road_morf", "energy_inside")
"""The measures of the test, in the order :class:`ChanceResult` lists them."""

HIGHER_IS_BETTER = {"deletion_blur": False, "deletion_mean": False, "road_morf": False, "energy_inside": True}

DEFAULT_PERCENTAGES = (10.0, 30.0, 50.0, 70.0, 90.0)
"""Percent of pixels ROAD imputes by default in the chance test."""

LEVEL = 0.05
"""A map is better than chance on a measure when its rank p-value among its chance maps is at most this."""


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


@dataclass
class ChanceResult:
    """The chance test of N maps.

    nonsensical: bool (N,), degenerate or not better than chance on a strict majority of the applicable
        measures (the rule of the module docstring); not_better: bool (N,), the latter part (False for a
        degenerate map); p_value: measure -> float64 (N,), the map's rank p-value (NaN where degenerate);
        level: the p-value at or below which a map is better than chance on a measure.
    degenerate: bool (N,); reasons: str (N,), :func:`binsight.metrics.baselines.degeneracy` ("" if usable).
    measures: the measures applied (energy only with masks), in :data:`MEASURES` order.
    fraction: measure -> float64 (N,), fraction of the 2 K chance maps that do strictly better than the map,
        in [0, 1]; NaN for a degenerate map (or, for energy, an empty mask).
    value: measure -> float64 (N,), the map's own value; chance: measure -> float64 (N, 2 K), the chance
        maps' values (first the K unstructured, then the K smooth ones); NaN rows for degenerate maps.
    sigma: float64 (N,), the smooth chance maps' Gaussian sigma in pixels (NaN if degenerate).
    n_chance: K, chance maps of each kind.
    """

    degenerate: np.ndarray
    reasons: np.ndarray
    measures: tuple[str, ...]
    fraction: dict[str, np.ndarray]
    value: dict[str, np.ndarray]
    chance: dict[str, np.ndarray]
    sigma: np.ndarray
    n_chance: int
    nonsensical: np.ndarray
    not_better: np.ndarray
    p_value: dict[str, np.ndarray]
    level: float = LEVEL

    def table_values(self) -> dict[str, np.ndarray]:
        """The study's per-image values, float64 (N,): "nonsensical" (0/1, 1 for a degenerate map: never
        left out), "not_better_chance" (0/1), "chance_p_M" and "chance_fraction_M" per measure (the last
        three NaN for degenerate maps, which the table leaves out)."""
        values = {"nonsensical": self.nonsensical.astype(np.float64),
                  "not_better_chance": np.where(self.degenerate, np.nan, self.not_better.astype(np.float64))}
        values.update({f"chance_p_{m}": self.p_value[m] for m in self.measures})
        values.update({f"chance_fraction_{m}": self.fraction[m] for m in self.measures})
        return values

    def rates(self) -> dict[str, float]:
        """Fractions of all N maps: "not_better" (not better than chance), "degenerate", and
        "nonsensical" (their sum: a map is one or the other or neither). NaN for no map."""
        n = len(self.nonsensical)
        if n == 0:
            return {"not_better": float("nan"), "degenerate": float("nan"), "nonsensical": float("nan")}
        return {"not_better": float(self.not_better.mean()), "degenerate": float(self.degenerate.mean()),
                "nonsensical": float(self.nonsensical.mean())}


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
    _check_count(n_chance)
    n, _, height, width = values.shape
    flat_values = values.reshape(n, -1).numpy()
    target_tv = total_variation(values)
    unstructured = np.empty((n, n_chance, height * width))
    smooth = np.empty_like(unstructured)
    sigma = np.full(n, np.nan)
    indices = range(n) if indices is None else [int(i) for i in indices]
    if len(indices) != n:
        raise MetricError(f"indices: one per map, got {len(indices)} for {n} maps")
    for i, index in enumerate(indices):
        rng = np.random.default_rng([seed, index])
        sorted_values = np.sort(flat_values[i])
        unstructured[i] = _placed(sorted_values, rng.standard_normal((n_chance, height * width)))
        white = rng.standard_normal((n_chance, height, width))
        smooth[i], sigma[i] = _smoothness_matched(sorted_values, white, target_tv[i])
    shape = (n, n_chance, 1, height, width)
    return ChanceMaps(torch.from_numpy(unstructured.reshape(shape)), torch.from_numpy(smooth.reshape(shape)), sigma)


def _placed(sorted_values: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Rows (K, P): the j-th smallest value at the pixel of each noise row's j-th smallest value."""
    placed = np.empty(noise.shape)
    np.put_along_axis(placed, np.argsort(noise, axis=1), sorted_values[None, :], axis=1)
    return placed


def _smoothness_matched(sorted_values: np.ndarray, white: np.ndarray, target_tv: float) -> tuple[np.ndarray, float]:
    """(chance maps (K, P), sigma): the blur of ``white`` (K, H, W) whose maps' mean TV is nearest target."""
    best, best_gap, best_sigma = None, np.inf, np.nan
    k, height, width = white.shape
    for sigma in SIGMAS:
        blurred = scipy.ndimage.gaussian_filter(white, sigma=(0, sigma, sigma), mode="reflect")
        placed = _placed(sorted_values, blurred.reshape(k, -1))
        gap = abs(np.nanmean(total_variation(torch.from_numpy(placed).view(k, 1, height, width))) - target_tv)
        if best is None or gap < best_gap:
            best, best_gap, best_sigma = placed, gap, sigma
    return best, (best_sigma if np.isfinite(target_tv) else np.nan)


class ChanceTest:
    """The chance test of maps of N images (N, C, H, W) in [0, 1], bound to one model, the images, the
    classes the maps explain (``targets``: an int, or N ints), the object masks (bool (N, 1, H, W) or None:
    then no energy measure) and the test's settings; :meth:`test` tests maps, :meth:`controls` their
    controls.

    Settings: ``n_chance`` chance maps of each kind; the deletion measures use ``steps`` steps
    (``steps`` + 1 points) and the blur of ``blur_sigma`` pixels (default min(H, W) / 14); ROAD imputes
    ``percentages`` (its noise seeded by ``seed``); energy uses the masks grown by ``dilation`` pixels.
    ``tolerance`` and ``span`` define a degenerate map (:func:`binsight.metrics.baselines.degeneracy`);
    degenerate maps are not scored (they are nonsensical). ``level``: the p-value at or below which a map
    is better than chance on a measure; 1 / (2 n_chance + 1) must not exceed it.

    **What is shared.** An unstructured chance map is the map's values at random positions, its ties in a
    random order: its ranking of the pixels is a uniformly random permutation whatever the map, so it is
    taken as the ranking of its noise (:func:`unstructured_ranks`; for a map without ties the very ranking
    the placed values have) and its deletion and ROAD scores do not depend on the map. They are computed
    once, for every image, the first time they are needed, and so are the results of the model-ignorant
    controls (edges, blob: :data:`MODEL_IGNORANT`); every later :meth:`test` or :meth:`controls` of any
    maps of these images (another method's) reuses them. A fresh ChanceTest per call gives exactly the
    same results, at the cost of scoring them again.

    Cost: the model sees (n_chance + 1) (2 (steps + 1) + R) images per usable map (R = len(percentages))
    and ROAD imputes (n_chance + 1) R, plus, once, n_chance (2 (steps + 1) + R) per image for the
    unstructured chance maps (fewer where a count is repeated: each distinct count is evaluated once).
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | Sequence[int] | int,
                 masks: torch.Tensor | None = None, *, n_chance: int = 20, seed: int = 0, steps: int = 10,
                 percentages: Sequence[float] = DEFAULT_PERCENTAGES, dilation: int = DEFAULT_DILATION,
                 blur_sigma: float | None = None, tolerance: float = FLAT_TOLERANCE, span: float | None = None,
                 batch_size: int = faithfulness.DEFAULT_BATCH_SIZE, level: float = LEVEL):
        self.images = check_images(images)
        n, _, height, width = self.images.shape
        self.masks = None if masks is None else check_masks(masks, torch.Size((n, 1, height, width)))
        _check_count(n_chance)
        _check_level(level, n_chance)
        self.model, self.targets = model, _targets_of(targets, n)
        self.n_chance, self.seed, self.level, self.dilation = n_chance, seed, level, dilation
        self.tolerance, self.span = tolerance, span
        self.scoring = dict(steps=steps, percentages=percentages, blur_sigma=blur_sigma, seed=seed,
                            batch_size=batch_size)
        self.measures = MEASURES if masks is not None else MEASURES[:-1]
        self._unstructured: dict[str, np.ndarray] | None = None
        self._ignorant: dict[str, ChanceResult] | None = None

    def test(self, maps: torch.Tensor) -> ChanceResult:
        """The test of each map (N, 1, H, W) against its chance maps; the rule is in the module's docstring."""
        values = check_maps(maps, finite=False)
        if tuple(values.shape) != (self.images.shape[0], 1, *self.images.shape[-2:]):
            raise MetricError(f"maps are {tuple(values.shape)}; the chance test of these images needs "
                              f"{(self.images.shape[0], 1, *self.images.shape[-2:])}")
        reasons = degeneracy(values, tolerance=self.tolerance, span=self.span)
        usable = np.flatnonzero(reasons == "")
        result = _empty_result(len(values), self.n_chance, self.measures, reasons, self.level)
        if usable.size:
            keep = torch.from_numpy(usable)
            made = chance_maps(values[keep], n_chance=self.n_chance, seed=self.seed, indices=usable)
            result.sigma[usable] = made.sigma
            own = torch.cat([values[keep].unsqueeze(1), made.smooth], dim=1)  # (U, 1 + K, 1, H, W)
            scores = _scores(self.model, self.images[keep], _ties_broken(own, usable, self.seed), self.targets[keep],
                             **self.scoring)
            shared = self.unstructured_scores()
            for m in scores:  # the measures that need the model
                result.value[m][usable] = scores[m][:, 0]
                result.chance[m][usable] = np.concatenate([shared[m][usable], scores[m][:, 1:]], axis=1)
            if self.masks is not None:
                stacked = torch.cat([values[keep].unsqueeze(1), made.unstructured, made.smooth], dim=1)
                energy = _energy(stacked, self.masks[keep], self.dilation)
                result.value["energy_inside"][usable], result.chance["energy_inside"][usable] = energy[:, 0], energy[:, 1:]
        return _decide(result)

    def controls(self, maps: torch.Tensor) -> dict[str, ChanceResult]:
        """:meth:`test` of each control of ``maps`` (:func:`control_maps` with this test's seed), by
        :data:`CONTROLS` name; the model-ignorant ones are tested once per ChanceTest."""
        if self._ignorant is None:
            self._ignorant = {name: self.test(m) for name, m in
                              _model_ignorant_maps(self.images, (len(self.images), 1, *self.images.shape[-2:])).items()}
        own = {name: self.test(m) for name, m in _map_controls(check_maps(maps).double(), self.seed).items()}
        return {name: own[name] if name in own else self._ignorant[name] for name in CONTROLS
                if name in own or name in self._ignorant}

    def unstructured_scores(self) -> dict[str, np.ndarray]:
        """Deletion and ROAD scores of every image's unstructured chance maps, measure -> float64 (N, K)
        (:func:`unstructured_ranks`), computed on the first call."""
        if self._unstructured is None:
            n, _, height, width = self.images.shape
            ranks = unstructured_ranks(n, (height, width), n_chance=self.n_chance, seed=self.seed)
            self._unstructured = _scores(self.model, self.images, ranks, self.targets, **self.scoring)
        return self._unstructured


def unstructured_ranks(n: int, size: tuple[int, int], *, n_chance: int, seed: int) -> torch.Tensor:
    """The pixel rankings of the unstructured chance maps of N images, float64 (N, K, 1, H, W), each pixel's
    rank 0..H W - 1 (0 = lowest): the ranks of the noise ``numpy.random.default_rng([seed, i]).standard_normal
    ((K, H W))`` of image i, the first draw of its :func:`chance_maps` (whose unstructured maps place the
    map's values in that order), so the same ranking as those maps' where the map has no ties."""
    ranks = np.empty((n, n_chance, size[0] * size[1]))
    for i in range(n):
        noise = np.random.default_rng([seed, i]).standard_normal((n_chance, size[0] * size[1]))
        np.put_along_axis(ranks[i], np.argsort(noise, axis=1), np.arange(noise.shape[1], dtype=np.float64)[None],
                          axis=1)
    return torch.from_numpy(ranks).view(n, n_chance, 1, *size)


def chance_test(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                targets: torch.Tensor | Sequence[int] | int, masks: torch.Tensor | None = None,
                **options) -> ChanceResult:
    """Test each map (N, 1, H, W) of ``images`` (N, C, H, W) against its chance maps: :meth:`ChanceTest.test`
    of a fresh :class:`ChanceTest` (``options``: its settings). Returns a :class:`ChanceResult`."""
    values = check_maps(maps, finite=False)
    images = check_images(images, n=values.shape[0])
    return ChanceTest(model, images, targets, masks, **options).test(values)


def _check_count(n_chance: int) -> None:
    if isinstance(n_chance, bool) or not isinstance(n_chance, (int, np.integer)) or n_chance < 1:
        raise MetricError(f"n_chance is the number of chance maps of each kind, a positive int; got {n_chance!r}")


def _check_level(level: float, n_chance: int) -> None:
    if not 0 < level < 1:
        raise MetricError(f"level is a p-value in (0, 1), got {level!r}")
    if 1 / (2 * n_chance + 1) > level:
        raise MetricError(f"with n_chance = {n_chance} no map can be better than chance at level {level} (the "
                          f"smallest p-value is 1 / {2 * n_chance + 1}); use n_chance >= {int(np.ceil((1 / level - 1) / 2))}")


def _targets_of(targets, n: int) -> torch.Tensor:
    if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
        return torch.full((n,), int(targets), dtype=torch.long)
    t = torch.as_tensor(targets)
    if t.is_floating_point() or t.dtype == torch.bool or t.numel() != n:
        raise MetricError(f"targets must be one class index or {n} of them (one per map), got {tuple(t.shape)}")
    return t.detach().cpu().long().flatten()


def _empty_result(n: int, n_chance: int, measures: tuple[str, ...], reasons: np.ndarray,
                  level: float = LEVEL) -> ChanceResult:
    degenerate = reasons != ""
    return ChanceResult(
        degenerate=degenerate, reasons=reasons, measures=measures,
        fraction={m: np.full(n, np.nan) for m in measures}, value={m: np.full(n, np.nan) for m in measures},
        chance={m: np.full((n, 2 * n_chance), np.nan) for m in measures},
        sigma=np.full(n, np.nan), n_chance=n_chance, nonsensical=degenerate.copy(),
        not_better=np.zeros(n, dtype=bool), p_value={m: np.full(n, np.nan) for m in measures}, level=level,
    )


def _ties_broken(stacked: torch.Tensor, indices: np.ndarray, seed: int) -> torch.Tensor:
    """Each map of ``stacked`` (U, M, 1, H, W) replaced by its pixels' ranks (0 = lowest), equal values
    ordered at random (``numpy.random.default_rng([seed, index, 1])`` for image ``indices[u]``)."""
    u, m = stacked.shape[:2]
    values = stacked.reshape(u, m, -1).numpy()
    ranks = np.empty(values.shape)
    for j, index in enumerate(indices):
        key = np.random.default_rng([seed, int(index), 1]).random(values.shape[1:])
        order = np.lexsort((key, values[j]), axis=-1)
        np.put_along_axis(ranks[j], order, np.arange(values.shape[-1], dtype=np.float64)[None, :], axis=-1)
    return torch.from_numpy(ranks).view(stacked.shape)


def _energy(stacked: torch.Tensor, masks: torch.Tensor, dilation: int) -> np.ndarray:
    """energy_inside of every map of ``stacked`` (U, M, 1, H, W) on its image's mask: float64 (U, M)."""
    u, m = stacked.shape[:2]
    flat_maps = stacked.reshape(u * m, *stacked.shape[2:])
    return energy_inside(flat_maps, masks.repeat_interleave(m, dim=0), dilation=dilation).reshape(u, m)


def _scores(model, images, stacked, targets, *, steps, percentages, blur_sigma, seed,
            batch_size) -> dict[str, np.ndarray]:
    """Deletion and ROAD areas of every map of ``stacked`` (U, M, 1, H, W), as float64 (U, M): the maps of
    image u go through the faithfulness measures together with the other images' maps (ROAD's noise is
    drawn in that order, from ``seed``)."""
    u, m = stacked.shape[:2]
    flat_maps = stacked.reshape(u * m, *stacked.shape[2:])
    flat_images = images.repeat_interleave(m, dim=0)
    flat_targets = targets.repeat_interleave(m)
    mean = flat_images.mean(dim=(2, 3), keepdim=True)
    scores = {}
    for name, substrate in (("deletion_blur", "blur"), ("deletion_mean", mean)):
        scores[name] = faithfulness.deletion_area(model, flat_images, flat_maps, flat_targets, steps=steps,
                                                  substrate=substrate, blur_sigma=blur_sigma, batch_size=batch_size)
    scores["road_morf"] = faithfulness.road(model, flat_images, flat_maps, flat_targets, percentages=percentages,
                                            order="morf", seed=seed, batch_size=batch_size).area
    return {name: np.asarray(v, dtype=np.float64).reshape(u, m) for name, v in scores.items()}


def _decide(result: ChanceResult) -> ChanceResult:
    """Fill fraction, p_value, not_better and nonsensical from value and chance (the rule of the module
    docstring)."""
    applicable = np.zeros(len(result.degenerate), dtype=np.int64)
    not_better = np.zeros(len(result.degenerate), dtype=np.int64)
    for m in result.measures:
        own, chance = result.value[m][:, None], result.chance[m]
        better = chance > own if HIGHER_IS_BETTER[m] else chance < own
        as_good = chance >= own if HIGHER_IS_BETTER[m] else chance <= own
        defined = np.isfinite(result.value[m])
        result.fraction[m] = np.where(defined, better.mean(axis=1), np.nan)
        result.p_value[m] = np.where(defined, (1 + as_good.sum(axis=1)) / (1 + chance.shape[1]), np.nan)
        not_better += (defined & (result.p_value[m] > result.level)).astype(np.int64)
        applicable += defined.astype(np.int64)
    result.not_better = (~result.degenerate) & (2 * not_better > applicable)
    result.nonsensical = result.degenerate | result.not_better
    return result


# ------------------------------------------------------------------------------------------------------
# controls

CONTROLS = ("inverted", "other image", "edges", "blob")
"""The control maps scored next to a method's maps (:func:`control_maps`)."""

NEGATIVE_CONTROLS = ("inverted", "other image")
"""Controls the test must flag as nonsensical: they point away from what the model uses."""

POSITIVE_CONTROLS = ("edges",)
"""Controls the test should mostly not flag: model-ignorant maps that point at the image's structure."""

MODEL_IGNORANT = ("edges", "blob")
"""Controls made from the images alone, the same for every method's maps: tested once per
:class:`ChanceTest`."""


def control_maps(maps: torch.Tensor, images: torch.Tensor, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """The control maps of N maps (N, 1, H, W) of ``images`` (N, C, H, W), float64, by :data:`CONTROLS` name.

    inverted: max + min - map (the order reversed, the range kept); other image: the map of image
    ``derangement(N, seed)[i]`` (absent for N < 2); edges: :func:`binsight.metrics.evidence.edge_map` of
    the image; blob: :func:`binsight.metrics.baselines.gaussian_map` (centred, sigma min(H, W) / 4).
    """
    values = check_maps(maps, finite=False).double()
    images = check_images(images, n=values.shape[0])
    return {**_map_controls(values, seed), **_model_ignorant_maps(images, values.shape)}


def _map_controls(values: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """The controls made from the maps (N, 1, H, W): "inverted" and (N >= 2) "other image"."""
    low = values.amin(dim=(1, 2, 3), keepdim=True)
    high = values.amax(dim=(1, 2, 3), keepdim=True)
    out = {"inverted": high + low - values}
    if len(values) >= 2:
        out["other image"] = values[torch.from_numpy(derangement(len(values), seed))]
    return out


def _model_ignorant_maps(images: torch.Tensor, shape) -> dict[str, torch.Tensor]:
    """The controls that depend on neither the maps nor the model (:data:`MODEL_IGNORANT`)."""
    return {"edges": edge_map(images).double(), "blob": gaussian_map(tuple(shape)).double()}


def control_test(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, targets, masks: torch.Tensor | None = None,
                 *, seed: int = 0, **options) -> dict[str, ChanceResult]:
    """:func:`chance_test` of each control of ``maps`` (:func:`control_maps`, with ``seed``), with the same
    ``seed`` and ``options`` as the maps' own test (the same chance maps' noise per image index):
    :meth:`ChanceTest.controls` of a fresh :class:`ChanceTest`."""
    values = check_maps(maps, finite=False)
    images = check_images(images, n=values.shape[0])
    return ChanceTest(model, images, targets, masks, seed=seed, **options).controls(values)


@dataclass(frozen=True)
class ControlCheck:
    """Whether the controls behaved: ``ok``; ``problems``: one sentence per control that did not; rates:
    each control's nonsensical rate."""

    ok: bool
    problems: tuple[str, ...]
    rates: dict[str, float]


def controls_behaved(rates: dict[str, float], *, negative_at_least: float = 0.8,
                     positive_at_most: float = 0.5) -> ControlCheck:
    """Check the controls' nonsensical rates (control name -> fraction of its maps flagged).

    Every negative control present (:data:`NEGATIVE_CONTROLS`) must be flagged on at least
    ``negative_at_least`` of its maps (else the test has no power: it cannot find a map nonsensical);
    every positive control present (:data:`POSITIVE_CONTROLS`) on at most ``positive_at_most`` (else the
    test flags maps that point at the image's structure: it is too harsh). Other controls are reported
    only. With no negative control present the check fails (nothing shows the test can flag a map).
    """
    problems = []
    for name in NEGATIVE_CONTROLS:
        if name in rates and not rates[name] >= negative_at_least:
            problems.append(f"{name} maps flagged on {rates[name]:.0%} (expected at least {negative_at_least:.0%}): "
                            "the test cannot find nonsensical maps")
    for name in POSITIVE_CONTROLS:
        if name in rates and not rates[name] <= positive_at_most:
            problems.append(f"{name} maps flagged on {rates[name]:.0%} (expected at most {positive_at_most:.0%}): "
                            "the test flags maps that follow the image")
    if not any(name in rates for name in NEGATIVE_CONTROLS):
        problems.append("no negative control was scored")
    return ControlCheck(not problems, tuple(problems), dict(rates))
