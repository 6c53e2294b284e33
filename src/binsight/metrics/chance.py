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
is 1 / (1 + 2 ``n_chance``), so ``n_chance`` must be at least 10 at 0.05). Scoring stops for a measure once
too many chance maps do as well for p to reach ``level`` (:class:`ChanceTest`, sequential scoring: the same
decisions as scoring every chance map; that measure's p-value is then Besag and Clifford's h / l). The rule (:func:`chance_test`,
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

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from binsight import _utils
from binsight.metrics import faithfulness
from binsight.metrics._checks import MetricError, check_images, check_maps, check_masks, ranks_in_key_order
from binsight.metrics.baselines import FLAT_TOLERANCE, degeneracy, derangement, gaussian_map
from binsight.metrics.evidence import edge_map
from binsight.metrics.localisation import DEFAULT_DILATION, dilate, energy_inside
from binsight.metrics.chance_maps import (SIGMAS, ChanceMaps, ImageNoise, chance_maps,  # noqa: F401 (kept here too)
                                          chance_maps_of, check_count)

MEASURES = ("deletion_blur", "deletion_mean", "road_morf", "energy_inside")
"""The measures of the test, in the order :class:`ChanceResult` lists them."""

HIGHER_IS_BETTER = {"deletion_blur": False, "deletion_mean": False, "road_morf": False, "energy_inside": True}

DEFAULT_PERCENTAGES = (10.0, 30.0, 50.0, 70.0, 90.0)
"""Percent of pixels ROAD imputes by default in the chance test."""

LEVEL = 0.05
"""A map is better than chance on a measure when its rank p-value among its chance maps is at most this."""


@dataclass
class ChanceResult:
    """The chance test of N maps.

    nonsensical: bool (N,), degenerate or not better than chance on a strict majority of the applicable
        measures (the rule of the module docstring); not_better: bool (N,), the latter part (False for a
        degenerate map); p_value: measure -> float64 (N,), the map's rank p-value (NaN where degenerate);
        level: the p-value at or below which a map is better than chance on a measure.
    degenerate: bool (N,); reasons: str (N,), :func:`binsight.metrics.baselines.degeneracy` ("" if usable).
    measures: the measures applied (energy only with masks), in :data:`MEASURES` order.
    fraction: measure -> float64 (N,), fraction of the chance maps scored (all 2 K, or fewer where the
        sequential test stopped: :class:`ChanceTest`) that do strictly better than the map, in [0, 1]; NaN
        for a degenerate map (or, for energy, an empty mask).
    value: measure -> float64 (N,), the map's own value; chance: measure -> float64 (N, 2 K), the chance
        maps' values (first the K unstructured, then the K smooth ones); NaN rows for degenerate maps, NaN
        for the chance maps the sequential test did not need.
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


class ChanceTest:
    """The chance test of maps of N images (N, C, H, W) in [0, 1], bound to one model, the images, the
    classes the maps explain (``targets``: an int, or N ints), the object masks (bool (N, 1, H, W) or None:
    then no energy measure) and the test's settings; :meth:`test` tests maps, :meth:`controls` their
    controls.

    Settings: ``n_chance`` chance maps of each kind; the deletion measures use ``steps`` steps
    (``steps`` + 1 points) and the blur of ``blur_sigma`` pixels (default min(H, W) / 14); ROAD imputes
    ``percentages`` (its noise: standard normal fields drawn per image and chance map from ``seed``, see
    below); energy uses the masks grown by ``dilation`` pixels. ``tolerance`` and ``span`` define a
    degenerate map (:func:`binsight.metrics.baselines.degeneracy`); degenerate maps are not scored (they
    are nonsensical). ``level``: the p-value at or below which a map is better than chance on a measure;
    1 / (2 n_chance + 1) must not exceed it.

    **What is shared.** An unstructured chance map is the map's values at random positions, its ties in a
    random order: its ranking of the pixels is a uniformly random permutation whatever the map, so it is
    taken as the ranking of its noise (:func:`unstructured_ranks`; for a map without ties the very ranking
    the placed values have) and its deletion and ROAD scores do not depend on the map. They are computed
    once, for every image, the first time they are needed, and so are the results of the model-ignorant
    controls (edges, blob: :data:`MODEL_IGNORANT`) and each image's noise (:class:`ImageNoise`); every
    later :meth:`test` or :meth:`controls` of any maps of these images (another method's) reuses them. A
    fresh ChanceTest per call gives exactly the same results, at the cost of scoring them again.

    **Sequential scoring** (``sequential``, default True). A map is better than chance on a measure only
    while at most ``level`` (2 K + 1) - 1 of its chance maps do at least as well (1 at the defaults): once
    more do, no further chance map can change that measure's decision. The map is scored first, then
    its K unstructured chance maps (shared), then its smooth chance maps in blocks of
    :data:`SEQUENTIAL_BLOCK`, each measure only for the maps whose decision on it is still open. Every
    decision (per measure, hence per map) is exactly the one of scoring all 2 K chance maps
    (``sequential=False``; tested); what changes is the reported p-value of a measure that stopped early:
    Besag and Clifford's sequential p-value h / l (h chance maps at least as good among the l scored,
    above ``level`` by construction), and its fraction over the l scored. Chance maps not scored are NaN in
    :attr:`ChanceResult.chance`. So an uninformative map, or an inverted one, costs little more than its
    own scoring; a map better than chance costs the full test. Each chance map's ROAD noise is its own
    field (``numpy.random.default_rng([seed, index, 2])``, slot 0 the map, 1..K unstructured, K + 1..2 K
    smooth), so a score does not depend on which other maps shared its batch.

    Cost: per usable map, the model sees 2 (steps - 1) + R images (R = len(percentages); each deletion
    curve's two ends, the image and its substrate, are scored once per image: 3 images) for the map and as
    many per smooth chance map scored (at most K), ROAD imputing R per map scored; once per image,
    K (2 (steps - 1) + R) for the unstructured chance maps.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor | Sequence[int] | int,
                 masks: torch.Tensor | None = None, *, n_chance: int = 20, seed: int = 0, steps: int = 10,
                 percentages: Sequence[float] = DEFAULT_PERCENTAGES, dilation: int = DEFAULT_DILATION,
                 blur_sigma: float | None = None, tolerance: float = FLAT_TOLERANCE, span: float | None = None,
                 batch_size: int = faithfulness.DEFAULT_BATCH_SIZE, level: float = LEVEL, sequential: bool = True):
        self.images = check_images(images)
        n, _, height, width = self.images.shape
        self.masks = None if masks is None else check_masks(masks, torch.Size((n, 1, height, width)))
        check_count(n_chance)
        _check_level(level, n_chance)
        self.model, self.targets = model, _targets_of(targets, n)
        self.n_chance, self.seed, self.level, self.dilation = n_chance, seed, level, dilation
        self.tolerance, self.span, self.sequential = tolerance, span, bool(sequential)
        self.scoring = dict(steps=steps, percentages=percentages, blur_sigma=blur_sigma, batch_size=batch_size)
        self.measures = MEASURES if masks is not None else MEASURES[:-1]
        self._unstructured: dict[str, np.ndarray] | None = None
        self._ignorant: dict[str, ChanceResult] | None = None
        self._noise: dict[int, ImageNoise] = {}
        self._fields: dict[int, torch.Tensor] = {}
        self._key_orders: dict[int, np.ndarray] = {}
        self._end_points: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._heads: dict[int, ChanceTest] = {}

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
            made = chance_maps_of(values[keep], [self._image_noise(int(i)) for i in usable])
            result.sigma[usable] = made.sigma
            ranked = _ties_broken(torch.cat([values[keep].unsqueeze(1), made.smooth], dim=1),
                                  [self._key_order(int(i)) for i in usable])
            self._score_sequentially(result, usable, ranked)
            if self.masks is not None:
                stacked = torch.cat([values[keep].unsqueeze(1), made.unstructured, made.smooth], dim=1)
                energy = _energy(stacked, self.masks[keep], self.dilation)
                result.value["energy_inside"][usable], result.chance["energy_inside"][usable] = energy[:, 0], energy[:, 1:]
        return _decide(result)

    def _score_sequentially(self, result: "ChanceResult", usable: np.ndarray, ranked: torch.Tensor) -> None:
        """Fill ``result``'s model measures for the ``usable`` maps from ``ranked`` (U, 1 + K, 1, H, W: each
        map's pixel ranks, then its smooth chance maps'): the map, the shared unstructured scores, then the
        smooth chance maps block by block where a decision is still open (class docstring)."""
        k, shared = self.n_chance, self.unstructured_scores()
        fields = torch.stack([self._image_fields(int(i)) for i in usable])  # (U, 1 + 2 K, C, H, W)
        most_as_good = _most_as_good(self.level, k)
        for m in SCORED:
            result.value[m][usable] = self._score(m, usable, ranked[:, :1], fields[:, :1])[:, 0]
            result.chance[m][usable, :k] = shared[m][usable]
            for start in range(0, k, SEQUENTIAL_BLOCK):
                block = np.arange(start, min(k, start + SEQUENTIAL_BLOCK))
                rows = np.arange(len(usable))
                if self.sequential:
                    rows = rows[_as_good_count(result, m, usable) <= most_as_good]
                if rows.size == 0:
                    break
                at = torch.from_numpy(rows)
                scores = self._score(m, usable[rows], ranked[at][:, 1 + block], fields[at][:, 1 + k + block])
                result.chance[m][usable[rows][:, None], k + block[None, :]] = scores

    def _score(self, measure: str, images: np.ndarray, ranked: torch.Tensor, fields: torch.Tensor) -> np.ndarray:
        """Scores on ``measure`` of the maps ``ranked`` (U, M, 1, H, W) of images ``images`` (U,), with
        ROAD noise ``fields`` (U, M, C, H, W): float64 (U, M)."""
        at = np.asarray(images, dtype=np.int64)
        ends = None if measure == "road_morf" else tuple(e[at] for e in self._ends()[measure])
        at = torch.from_numpy(at)
        return _scores(measure, self.model, self.images[at], ranked, self.targets[at], fields, ends=ends,
                       **self.scoring)

    def _ends(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each deletion measure's end points, shared by every map of an image: the target probability of
        every image unperturbed and of its substrate (blur, mean), float64 (N,) each; 3 N passes, once."""
        if self._end_points is None:
            substrates = {"deletion_blur": _utils.make_substrate(self.images, "blur", blur_sigma=self.scoring["blur_sigma"],
                                                                 error=MetricError),
                          "deletion_mean": self.images.mean(dim=(2, 3), keepdim=True).expand_as(self.images)}
            every = torch.arange(len(self.images))

            def probabilities(batch: torch.Tensor) -> np.ndarray:
                return faithfulness.target_probabilities(self.model, lambda k: batch[k], every, self.targets,
                                                         self.scoring["batch_size"])[0]

            unperturbed = probabilities(self.images)
            self._end_points = {m: (unperturbed, probabilities(substrate)) for m, substrate in substrates.items()}
        return self._end_points

    def _image_noise(self, index: int) -> "ImageNoise":
        if index not in self._noise:
            self._noise[index] = ImageNoise.draw(self.seed, index, self.n_chance, self.images.shape[-2:])
        return self._noise[index]

    def _key_order(self, index: int) -> np.ndarray:
        """The order of image ``index``'s random tie-breaking keys (``numpy.random.default_rng([seed, index,
        1])``, one per pixel of the map and each smooth chance map): int64 (1 + K, H W), stable argsort;
        drawn once and shared by every method's maps."""
        if index not in self._key_orders:
            key = np.random.default_rng([self.seed, index, 1]).random((1 + self.n_chance, self.images[0, 0].numel()))
            self._key_orders[index] = np.argsort(key, axis=-1, kind="stable")
        return self._key_orders[index]

    def _image_fields(self, index: int) -> torch.Tensor:
        """ROAD's noise of image ``index``'s map and chance maps: float64 (1 + 2 K, C, H, W) normals."""
        if index not in self._fields:
            shape = (1 + 2 * self.n_chance, *self.images.shape[1:])
            self._fields[index] = torch.from_numpy(np.random.default_rng([self.seed, index, 2]).standard_normal(shape))
        return self._fields[index]

    def head(self, n: int) -> "ChanceTest":
        """The test of the first ``n`` images alone, sharing what this one has scored or drawn for them (an
        image's noise depends only on the seed and its index, the same in both): the study tests controls
        on fewer images than maps. Memoised: every call with one ``n`` gives the same test."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= len(self.images):
            raise MetricError(f"head: a number of images in 1..{len(self.images)}, got {n!r}")
        n = int(n)
        if n == len(self.images):
            return self
        heads = self._heads
        if n not in heads:
            head = copy.copy(self)
            head.images, head.targets = self.images[:n], self.targets[:n]
            head.masks = None if self.masks is None else self.masks[:n]
            head._ignorant, head._heads = None, {}
            head._unstructured = None if self._unstructured is None else {
                m: v[:n] for m, v in self._unstructured.items()}
            head._end_points = None if self._end_points is None else {
                m: (a[:n], b[:n]) for m, (a, b) in self._end_points.items()}
            heads[n] = head  # _noise, _fields and _key_orders: the same dicts, keyed by image index
        return heads[n]

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
            n, k = len(self.images), self.n_chance
            ranks = torch.from_numpy(np.stack([self._image_noise(i).unstructured for i in range(n)]).astype(np.float64))
            ranks = ranks.view(n, k, 1, *self.images.shape[-2:])
            fields = torch.stack([self._image_fields(i)[1:1 + k] for i in range(n)])
            every = np.arange(n)
            self._unstructured = {m: self._score(m, every, ranks, fields) for m in SCORED}
        return self._unstructured


SCORED = ("deletion_blur", "deletion_mean", "road_morf")
"""The measures of :data:`MEASURES` that need the model (energy needs only the maps and masks)."""

SEQUENTIAL_BLOCK = 5
"""Smooth chance maps scored at a time by the sequential test (:class:`ChanceTest`)."""


def _most_as_good(level: float, n_chance: int) -> int:
    """The most chance maps (of 2 n_chance) that may do at least as well as a map better than chance:
    the largest h with (1 + h) / (1 + 2 n_chance) <= level."""
    return int(np.floor(level * (1 + 2 * n_chance) - 1 + 1e-9))


def _as_good_count(result: "ChanceResult", measure: str, usable: np.ndarray) -> np.ndarray:
    """How many scored chance maps do at least as well as each usable map on ``measure``: int (U,)."""
    own, chance = result.value[measure][usable][:, None], result.chance[measure][usable]
    as_good = chance >= own if HIGHER_IS_BETTER[measure] else chance <= own
    return as_good.sum(axis=1)


def unstructured_ranks(n: int, size: tuple[int, int], *, n_chance: int, seed: int) -> torch.Tensor:
    """The pixel rankings of the unstructured chance maps of N images, float64 (N, K, 1, H, W), each pixel's
    rank 0..H W - 1 (0 = lowest): the ranks of the noise ``numpy.random.default_rng([seed, i]).standard_normal
    ((K, H W))`` of image i, the first draw of its :func:`chance_maps` (whose unstructured maps place the
    map's values in that order), so the same ranking as those maps' where the map has no ties."""
    ranks = np.stack([ImageNoise.draw(seed, i, n_chance, size).unstructured for i in range(n)])
    return torch.from_numpy(ranks.astype(np.float64)).view(n, n_chance, 1, *size)


def chance_test(model: nn.Module, images: torch.Tensor, maps: torch.Tensor,
                targets: torch.Tensor | Sequence[int] | int, masks: torch.Tensor | None = None,
                **options) -> ChanceResult:
    """Test each map (N, 1, H, W) of ``images`` (N, C, H, W) against its chance maps: :meth:`ChanceTest.test`
    of a fresh :class:`ChanceTest` (``options``: its settings). Returns a :class:`ChanceResult`."""
    values = check_maps(maps, finite=False)
    images = check_images(images, n=values.shape[0])
    return ChanceTest(model, images, targets, masks, **options).test(values)


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


def _ties_broken(stacked: torch.Tensor, key_orders: list[np.ndarray]) -> torch.Tensor:
    """Each map of ``stacked`` (U, M, 1, H, W) replaced by its pixels' ranks as float64 (0 = lowest), equal
    values ordered by a random key: ``key_orders[u]`` (M, H W) is the stable argsort of image u's keys
    (:meth:`ChanceTest._key_order`; :func:`binsight.metrics._checks.ranks_in_key_order`)."""
    u, m = stacked.shape[:2]
    keys = torch.from_numpy(np.concatenate(key_orders)).to(stacked.device)
    ranks = ranks_in_key_order(stacked.reshape(u * m, -1), keys, descending=False)
    return ranks.to(torch.float64).view(stacked.shape)


def _energy(stacked: torch.Tensor, masks: torch.Tensor, dilation: int) -> np.ndarray:
    """energy_inside of every map of ``stacked`` (U, M, 1, H, W) on its image's mask: float64 (U, M)."""
    u, m = stacked.shape[:2]
    flat_maps = stacked.reshape(u * m, *stacked.shape[2:])
    grown = dilate(masks, dilation).repeat_interleave(m, dim=0)  # each mask grown once, not once per map
    return energy_inside(flat_maps, grown, dilation=0).reshape(u, m)


def _scores(measure: str, model, images, stacked, targets, fields, *, steps, percentages, blur_sigma,
            batch_size, ends=None) -> np.ndarray:
    """``measure``'s score of every map of ``stacked`` (U, M, 1, H, W) of ``images`` (U, C, H, W), as float64
    (U, M): deletion onto the blur or onto each image's mean (``ends``: each image's probabilities
    unperturbed and fully deleted, float64 (U,) each, or None), or ROAD with the noise ``fields``
    (U, M, C, H, W). Every map is scored on its own: a score does not depend on the other maps of the call."""
    u, m = stacked.shape[:2]
    flat_maps = stacked.reshape(u * m, *stacked.shape[2:])
    flat_images = images.repeat_interleave(m, dim=0)
    flat_targets = targets.repeat_interleave(m)
    if measure == "road_morf":
        score = faithfulness.road(model, flat_images, flat_maps, flat_targets, percentages=percentages, order="morf",
                                  batch_size=batch_size, noise_fields=fields.reshape(u * m, *fields.shape[2:])).area
    else:
        substrate = "blur" if measure == "deletion_blur" else flat_images.mean(dim=(2, 3), keepdim=True)
        flat_ends = None if ends is None else tuple(np.repeat(e, m) for e in ends)
        score = faithfulness.deletion_area(model, flat_images, flat_maps, flat_targets, steps=steps,
                                           substrate=substrate, blur_sigma=blur_sigma, batch_size=batch_size,
                                           ends=flat_ends)
    return np.asarray(score, dtype=np.float64).reshape(u, m)


def _decide(result: ChanceResult) -> ChanceResult:
    """Fill fraction, p_value, not_better and nonsensical from value and chance (the rule of the module
    docstring)."""
    applicable = np.zeros(len(result.degenerate), dtype=np.int64)
    not_better = np.zeros(len(result.degenerate), dtype=np.int64)
    for m in result.measures:
        own, chance = result.value[m][:, None], result.chance[m]
        better = chance > own if HIGHER_IS_BETTER[m] else chance < own
        as_good = (chance >= own if HIGHER_IS_BETTER[m] else chance <= own).sum(axis=1)
        scored = np.isfinite(chance).sum(axis=1)
        defined = np.isfinite(result.value[m]) & (scored > 0)
        complete = scored == chance.shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            result.fraction[m] = np.where(defined, better.sum(axis=1) / scored, np.nan)
            p = np.where(complete, (1 + as_good) / (1 + chance.shape[1]), as_good / scored)  # Besag-Clifford
        result.p_value[m] = np.where(defined, p, np.nan)
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
