"""Faithfulness: does the model's output follow the pixels the map ranks highest?

* :func:`deletion_insertion` - deletion and insertion curves and their areas (Petsiuk et al., "RISE:
  Randomized input sampling for explanation of black-box models", BMVC 2018).
* :func:`road` - RemOve And Debias, most- or least-relevant first, with noisy linear imputation (Rong et
  al., "A consistent and efficient evaluation strategy for attribution methods", ICML 2022).

Shared conventions. ``images`` are float (N, C, H, W) pixels in [0, 1] as the model takes them; ``maps``
float (N, 1, H, W), finite; ``targets`` int class indices (N,) (or one int for all). A "pixel" is a
position (i, j): removing it changes all C channels at once. Pixels are ranked by their map value, highest
first. Pixels of equal value (a tie group, e.g. GradCAM's zeros) have no order among them, and none is
made up: a point of a curve whose pixel count falls strictly inside a tie group (a < count < b, with a
pixels ranked above the group and b - a in it) is evaluated with the whole group kept (a pixels removed)
and with the whole group removed (b), and read on the straight line between the two at its count,
(1 - w) f(a) + w f(b), w = (count - a) / (b - a) (:class:`_Points`). So no result depends on any order
of tied pixels, and a map without ties is evaluated at exactly its nominal counts, as before. The
model is any ``nn.Module`` mapping images to logits (N, K); the curves follow the softmax probability of
the target class. Perturbed images of many steps and many images go through the model together, at most
``batch_size`` at a time (this bounds memory and never changes the result). While a measure runs the model
is in eval mode; it is left exactly as it was found (:func:`binsight._utils.preserved_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.integrate
import torch
from torch import nn

from binsight import _utils
from binsight._utils import SubstrateLike, batch_slices, call_model, check_target_range, preserved_model
from binsight.metrics._checks import (
    MetricError,
    check_batch_size,
    check_images,
    check_maps,
    check_targets,
    descending_ranks,
)
from binsight.metrics.imputation import ROAD_NOISE, noisy_linear_imputation

DEFAULT_BATCH_SIZE = 512
IMPUTATION_ELEMENTS = 2**22
"""About how many pixel values (images x channels x H x W) ROAD imputes in one solve: each solve holds about
a dozen float64 tensors of this size (about 400 MB at the default). A call's (image, percentage) pairs are
imputed in chunks of at most that many (a whole number of model batches, at least one); the chunking never
changes the result."""


@dataclass
class DeletionInsertion:
    """Deletion and insertion curves of N images and their areas.

    fractions: float64 (S + 1,), fraction of pixels removed (deletion) or restored (insertion) at each
        step, from 0 to 1.
    deletion, insertion: float64 (N, S + 1), softmax probability of the target class at each step.
    deletion_area, insertion_area: float64 (N,), area under each curve over ``fractions`` (trapezoid rule),
        so in [0, 1]. Deletion: lower is more faithful; insertion: higher is more faithful.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_area: np.ndarray
    insertion_area: np.ndarray


@dataclass
class RoadCurves:
    """ROAD results of N images for one order.

    percentages: float64 (P,), percent of pixels removed (imputed) at each point.
    probability: float64 (N, P), softmax probability of the target class on the imputed image.
    correct: float64 (N, P), 1 where the model still predicts the target class, 0 where not (ROAD's accuracy
        curve is ``correct.mean(0)``); a point inside a tie group is read between the group's boundaries,
        like ``probability``, so it may lie between 0 and 1.
    area: float64 (N,), mean of ``probability`` over the percentages. Most relevant first (morf): lower is
        more faithful; least relevant first (lerf): higher is more faithful.
    order: "morf" or "lerf".
    """

    percentages: np.ndarray
    probability: np.ndarray
    correct: np.ndarray
    area: np.ndarray
    order: str


# -- deletion and insertion ----------------------------------------------------------------------------


def deletion_insertion(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: _utils.TargetLike,
    *,
    steps: int = 100,
    substrate: SubstrateLike = "black",
    insertion_substrate: SubstrateLike = "blur",
    batch_size: int = DEFAULT_BATCH_SIZE,
    blur_sigma: float | None = None,
    mean: Sequence[float] | torch.Tensor | None = None,
) -> DeletionInsertion:
    """Deletion and insertion curves (Petsiuk et al. 2018) of each image, and their normalised areas.

    Step s = 0..steps covers the round(s / steps * H * W) most salient pixels. Deletion: those pixels are
    replaced by ``substrate``, the others keep the image. Insertion: those pixels show the image, the others
    ``insertion_substrate``. Both curves therefore have steps + 1 points, the first deletion point and the
    last insertion point being the unperturbed image.

    Substrates, each an image of the same shape as ``images`` built per image:
    "black": 0; "blur": the image blurred by a Gaussian of ``blur_sigma`` pixels (default min(H, W) / 14,
    i.e. 2 px for 28 x 28); "mean": each channel's mean, from ``mean`` (C values, e.g. the training set's)
    or, when None, each image's own; a tensor broadcastable to (N, C, H, W) is used as given
    (:func:`binsight._utils.make_substrate`).

    A step inside a tie group is read between the group's boundaries (module docstring).
    Returns a :class:`DeletionInsertion`. ``steps`` trades resolution for time: the model sees at most
    2 N (steps + 1) images (each distinct pixel count of an image once; steps inside a tie group cost none).
    """
    images, maps, targets = _check_common(images, maps, targets)
    counts, points, ranks = _steps(images, maps, steps, batch_size)
    removed_onto = _utils.make_substrate(images, substrate, blur_sigma=blur_sigma, mean=mean, error=MetricError)
    inserted_onto = _utils.make_substrate(images, insertion_substrate, blur_sigma=blur_sigma, mean=mean, error=MetricError)
    deletion = _curve(model, ranks, points, removed_onto, images, targets, batch_size)
    insertion = _curve(model, ranks, points, images, inserted_onto, targets, batch_size)
    fractions = counts.numpy() / (images.shape[-2] * images.shape[-1])
    return DeletionInsertion(
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_area=scipy.integrate.trapezoid(deletion, fractions, axis=1),
        insertion_area=scipy.integrate.trapezoid(insertion, fractions, axis=1),
    )


def deletion_area(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: _utils.TargetLike,
    *,
    steps: int = 100,
    substrate: SubstrateLike = "black",
    batch_size: int = DEFAULT_BATCH_SIZE,
    blur_sigma: float | None = None,
    mean: Sequence[float] | torch.Tensor | None = None,
    ends: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The deletion area of :func:`deletion_insertion`, float64 (N,), without the insertion curve (half the
    model's work: it sees at most N (steps + 1) images). ``ends``: the target probabilities (float64 (N,)
    each) of every image unperturbed and of its substrate, where the caller knows them (many maps of one
    image: the chance test); the points at 0 and at every pixel are then read from them, not evaluated."""
    images, maps, targets = _check_common(images, maps, targets)
    counts, points, ranks = _steps(images, maps, steps, batch_size)
    removed_onto = _utils.make_substrate(images, substrate, blur_sigma=blur_sigma, mean=mean, error=MetricError)
    deletion = _curve(model, ranks, points, removed_onto, images, targets, batch_size, ends)
    return scipy.integrate.trapezoid(deletion, counts.numpy() / (images.shape[-2] * images.shape[-1]), axis=1)


def _steps(images: torch.Tensor, maps: torch.Tensor, steps: Any,
           batch_size: Any) -> tuple[torch.Tensor, "_Points", torch.Tensor]:
    """(pixel counts (steps + 1,) of the curve's points, where they are evaluated, pixel ranks of the maps),
    after checking ``steps``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise MetricError(f"steps must be a positive integer, got {steps!r}")
    check_batch_size(batch_size)
    n_pixels = images.shape[-2] * images.shape[-1]
    counts = torch.as_tensor(np.rint(np.arange(steps + 1) / steps * n_pixels).astype(np.int64))
    return counts, _Points.of(maps, counts), pixel_ranks(maps).to(images.device)


def pixel_ranks(maps: torch.Tensor, tie_seed: int | None = None) -> torch.Tensor:
    """Rank of every pixel of each map, 0 for the most salient: int64 (N, 1, H, W), on the maps' device.

    Highest value first. Equal values: with ``tie_seed`` None in row-major order (a stable sort), so the
    ranking is deterministic; with an int, in the order of a random key per pixel
    (:func:`binsight.metrics._checks.tie_key`: uniform [0, 1) from ``numpy.random.default_rng(tie_seed)``
    for the whole (N, H W) call, on the CPU). Only ties move: pixels of different values keep their order.
    """
    return descending_ranks(maps.flatten(1), tie_seed).view(maps.shape)


def _curve(
    model: nn.Module,
    ranks: torch.Tensor,
    points: "_Points",
    inside: torch.Tensor,
    outside: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    ends: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Target probability (N, S) of the images showing ``inside`` on their top-ranked pixels and ``outside``
    elsewhere at every point of ``points``; the evaluations of all images are batched together. ``ends``
    (float64 (N,) each, or None): the probabilities with no pixel and with every pixel on top, read instead
    of evaluated."""

    def perturbed(items: torch.Tensor) -> torch.Tensor:
        i = points.image[items]
        on_top = ranks[i] < points.count[items].view(-1, 1, 1, 1).to(ranks.device)
        return torch.where(on_top, inside[i], outside[i])

    image, count = points.image.numpy(), points.count.numpy()
    probs, todo = np.empty(count.size), torch.arange(count.size)
    if ends is not None:
        none, every = (np.asarray(e, dtype=np.float64).reshape(-1) for e in ends)
        if none.shape != (len(targets),) or every.shape != (len(targets),):
            raise MetricError(f"ends: two arrays of {len(targets)} probabilities (one per image), got shapes "
                              f"{none.shape} and {every.shape}")
        probs = np.where(count == 0, none[image], every[image])
        todo = torch.from_numpy(np.flatnonzero((count > 0) & (count < ranks[0].numel())))
    if todo.numel():
        probs[todo.numpy()] = target_probabilities(model, lambda k: perturbed(todo[k]), points.image[todo], targets,
                                                   batch_size)[0]
    return points.read(probs)


@dataclass
class _Points:
    """Where the points of N curves are evaluated, and how each point is read from the evaluations.

    Point (n, p) removes image n's ``counts[p]`` top-ranked pixels. Strictly inside a tie group (a < count
    < b: module docstring) it is read as (1 - weight) f(lower) + weight f(upper) from the evaluations at a
    and b; elsewhere a = b = count and weight = 0 (the evaluation itself, exactly). Every count evaluated
    is a group boundary, so the pixels it removes are those of value above a threshold, whatever order the
    ranks give ties. Each distinct (image, count) is evaluated once, in the order first needed (image by
    image, point by point, a before b).

    image, count: int64 (M,), the evaluations' image and pixels removed; lower, upper: int64 (N, P), the
    evaluations of each point's a and b; weight: float64 (N, P), (count - a) / (b - a), in [0, 1).
    """

    image: torch.Tensor
    count: torch.Tensor
    lower: np.ndarray
    upper: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, maps: torch.Tensor, counts: torch.Tensor) -> "_Points":
        """The points of ``maps`` (N, 1, H, W), highest value first, at pixel ``counts`` (P,)."""
        n, n_counts = maps.shape[0], counts.numel()
        a, b = _tie_bounds(maps.detach().flatten(1).cpu(), counts.cpu())
        keys = (torch.arange(n)[:, None, None] * (maps[0].numel() + 1) + torch.stack([a, b], 2)).flatten()
        unique, inverse = torch.unique(keys, return_inverse=True)
        first = torch.full(unique.shape, keys.numel()).scatter_reduce(0, inverse, torch.arange(keys.numel()), "amin")
        order = torch.argsort(first)
        position = torch.empty_like(order)
        position[order] = torch.arange(order.numel())
        index = position[inverse].view(n, n_counts, 2).numpy()
        evaluations = unique[order]
        span = (b - a).double()
        weight = torch.where(span > 0, (counts.double() - a) / span.clamp_min(1), 0.0)
        return cls(evaluations // (maps[0].numel() + 1), evaluations % (maps[0].numel() + 1),
                   index[..., 0], index[..., 1], weight.numpy())

    def read(self, evaluated: np.ndarray) -> np.ndarray:
        """Each point's value, float64 (N, P), from the values of the evaluations (M,)."""
        return (1 - self.weight) * evaluated[self.lower] + self.weight * evaluated[self.upper]


def _tie_bounds(values: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b), int64 (N, P): for each row of ``values`` (N, Q) ranked highest first and each count, the tie
    group the count falls strictly inside (a pixels above it, b - a in it), or a = b = count where it falls
    between two different values (or at 0 or Q)."""
    n_pixels = values.shape[1]
    c = counts.view(1, -1).expand(values.shape[0], -1)
    if n_pixels < 2:
        return c, c
    ascending = values.sort(dim=1).values
    descending = ascending.flip(1)
    at = c.clamp(1, n_pixels - 1)
    last_kept_out, first_kept = descending.gather(1, at - 1), descending.gather(1, at)
    tied = (c > 0) & (c < n_pixels) & (last_kept_out == first_kept)
    above = n_pixels - torch.searchsorted(ascending, first_kept, right=True)
    at_least = n_pixels - torch.searchsorted(ascending, first_kept, right=False)
    return torch.where(tied, above, c), torch.where(tied, at_least, c)


def target_probabilities(
    model: nn.Module,
    make_batch: Callable[[torch.Tensor], torch.Tensor],
    image_index: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probability of each item's target class, float64 (M,), and the predicted class, int64 (M,).

    Item m is the image ``make_batch(indices)[k]`` for ``indices[k] = m``, built ``batch_size`` at a time;
    its target is ``targets[image_index[m]]``. The model runs in eval mode and is restored afterwards.
    """
    total = image_index.numel()
    probs = np.empty(total, dtype=np.float64)
    predicted = np.empty(total, dtype=np.int64)
    with preserved_model(model), torch.no_grad():
        for part in batch_slices(total, batch_size):
            items = torch.arange(part.start, part.stop)
            logits = call_model(model, make_batch(items), error=MetricError)
            chosen = check_target_range(targets[image_index[items]], logits.shape[1], error=MetricError)
            p = torch.softmax(logits.double(), dim=1)
            probs[part] = p.gather(1, chosen.to(logits.device).view(-1, 1)).flatten().cpu().numpy()
            predicted[part] = logits.argmax(1).cpu().numpy()
    return probs, predicted


# -- ROAD --------------------------------------------------------------------------------------------


def road(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: _utils.TargetLike,
    *,
    percentages: Sequence[float] = (10, 20, 30, 40, 50, 60, 70, 80, 90),
    order: str = "morf",
    noise: float = ROAD_NOISE,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    noise_fields: torch.Tensor | None = None,
) -> RoadCurves:
    """ROAD (Rong et al. 2022): remove p% of the pixels and impute them by noisy linear imputation.

    For each p in ``percentages`` the round(p / 100 * H * W) most relevant pixels (``order="morf"``) or least
    relevant ones (``"lerf"``) of each image are removed and replaced by :func:`noisy_linear_imputation`
    (noise std ``noise``, drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same result).
    A percentage inside a tie group is read between the group's boundaries (module docstring), which may be
    the whole image (100 %: each channel's mean, :func:`noisy_linear_imputation`).
    Every evaluation of the call (each distinct (image, pixel count)) is imputed in one batched solve on
    the images' device (:mod:`binsight.metrics.imputation`; in chunks of :data:`IMPUTATION_ELEMENTS` pixel
    values, which changes nothing), then the model sees every imputed image, ``batch_size`` at a time; the
    noise is drawn evaluation by evaluation in that order. Imputed pixels are not clipped to [0, 1] (as in
    the reference code), so they may leave that range by about ``noise``. ``noise_fields`` (float (N, C,
    H, W) standard normal draws, or None): image n's imputed pixels get ``noise`` times ``noise_fields[n]``
    at every percentage instead of the stream of ``seed``, so an image's curve does not depend on the
    other images of the call.

    Returns a :class:`RoadCurves`.
    """
    images, maps, targets = _check_common(images, maps, targets)
    if order not in ("morf", "lerf"):
        raise MetricError(f"order must be 'morf' (most relevant first) or 'lerf' (least relevant first), got {order!r}")
    percentages = np.asarray(percentages, dtype=np.float64).ravel()
    if percentages.size == 0 or not ((percentages >= 0) & (percentages <= 100)).all():
        raise MetricError(f"percentages must be a non-empty list of numbers in [0, 100], got {percentages.tolist()}")
    if not noise >= 0:
        raise MetricError(f"noise is a standard deviation and must be >= 0, got {noise}")
    check_batch_size(batch_size)
    counts = torch.as_tensor(np.rint(percentages / 100 * images.shape[-2] * images.shape[-1]).astype(np.int64))
    ordered = maps if order == "morf" else -maps
    points = _Points.of(ordered, counts)
    ranks = pixel_ranks(ordered).to(images.device)
    if noise_fields is not None and tuple(noise_fields.shape) != tuple(images.shape):
        raise MetricError(f"noise_fields has shape {tuple(noise_fields.shape)}; it must be the images' "
                          f"{tuple(images.shape)}")
    imputed = _Imputed(images, ranks, points, noise, np.random.default_rng(seed), batch_size, noise_fields)
    probs, predicted = target_probabilities(model, imputed, points.image, targets, batch_size)
    probability = points.read(probs)
    correct = points.read((predicted == targets.cpu().numpy()[points.image.numpy()]).astype(np.float64))
    return RoadCurves(
        percentages=percentages,
        probability=probability,
        correct=correct,
        area=probability.mean(axis=1),
        order=order,
    )


class _Imputed:
    """ROAD's imputed images, evaluation m = (image ``points.image[m]``, ``points.count[m]`` pixels removed),
    made a chunk of evaluations at a time.

    Called with consecutive evaluation indices that never straddle a chunk (chunks are whole model
    batches): the chunk holding them is imputed in one solve the first time it is asked for, with the noise
    drawn from ``rng`` in chunk order (the same stream as one solve of every evaluation).
    """

    def __init__(self, images: torch.Tensor, ranks: torch.Tensor, points: _Points, noise: float,
                 rng: np.random.Generator, batch_size: int, fields: torch.Tensor | None = None):
        self.images, self.ranks, self.points, self.noise, self.rng = images, ranks, points, noise, rng
        self.fields = fields
        per_pair = images[0].numel()
        self.chunk = batch_size * max(1, IMPUTATION_ELEMENTS // (batch_size * per_pair))
        self.start, self.done = -1, torch.empty(0)

    def __call__(self, items: torch.Tensor) -> torch.Tensor:
        start = int(items[0]) // self.chunk * self.chunk
        if start != self.start:
            chunk = slice(start, min(start + self.chunk, self.points.image.numel()))
            i, count = self.points.image[chunk], self.points.count[chunk].to(self.images.device)
            removed = self.ranks[i] < count.view(-1, 1, 1, 1)
            fields = None if self.fields is None else self.fields[i.to(self.fields.device)]
            self.done = noisy_linear_imputation(self.images[i], removed, noise=self.noise, rng=self.rng, fields=fields)
            self.start = start
        return self.done[items.to(self.images.device) - start]


# -- checks ------------------------------------------------------------------------------------------


def _check_common(images, maps, targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated images (N, C, H, W), maps (N, 1, H, W) float64 CPU and targets int64 (N,) CPU."""
    maps = check_maps(maps, finite=True)
    images = check_images(images, n=maps.shape[0])
    if images.shape[-2:] != maps.shape[-2:]:
        raise MetricError(
            f"maps are {tuple(maps.shape[-2:])} pixels, images {tuple(images.shape[-2:])}; "
            "upsample the maps to the image size first"
        )
    return images, maps, check_targets(targets, maps.shape[0])
