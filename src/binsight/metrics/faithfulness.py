"""Faithfulness: does the model's output follow the pixels the map ranks highest?

* :func:`deletion_insertion` - deletion and insertion curves and their areas (Petsiuk et al., "RISE:
  Randomized input sampling for explanation of black-box models", BMVC 2018).
* :func:`road` - RemOve And Debias, most- or least-relevant first, with noisy linear imputation (Rong et
  al., "A consistent and efficient evaluation strategy for attribution methods", ICML 2022).

Shared conventions. ``images`` are float (N, C, H, W) pixels in [0, 1] as the model takes them; ``maps``
float (N, 1, H, W), finite; ``targets`` int class indices (N,) (or one int for all). A "pixel" is a
position (i, j): removing it changes all C channels at once. Pixels are ranked by their map value, highest
first; equal values are ranked in row-major order (lower index first), so results are deterministic; with
``tie_seed`` (an int) they are ordered at random instead, by a seeded key (:func:`pixel_ranks`). The
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
    correct: bool (N, P), whether the model still predicts the target class (ROAD's accuracy curve is
        ``correct.mean(0)``).
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
    tie_seed: int | None = None,
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

    Equal map values are ordered by ``tie_seed`` (:func:`pixel_ranks`; None: row-major order).
    Returns a :class:`DeletionInsertion`. ``steps`` trades resolution for time: the model sees
    2 N (steps + 1) images.
    """
    images, maps, targets = _check_common(images, maps, targets)
    counts, ranks = _steps(images, maps, steps, batch_size, tie_seed)
    removed_onto = _utils.make_substrate(images, substrate, blur_sigma=blur_sigma, mean=mean, error=MetricError)
    inserted_onto = _utils.make_substrate(images, insertion_substrate, blur_sigma=blur_sigma, mean=mean, error=MetricError)
    deletion = _curve(model, ranks, counts, removed_onto, images, targets, batch_size)
    insertion = _curve(model, ranks, counts, images, inserted_onto, targets, batch_size)
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
    tie_seed: int | None = None,
) -> np.ndarray:
    """The deletion area of :func:`deletion_insertion`, float64 (N,), without the insertion curve (half the
    model's work: it sees N (steps + 1) images)."""
    images, maps, targets = _check_common(images, maps, targets)
    counts, ranks = _steps(images, maps, steps, batch_size, tie_seed)
    removed_onto = _utils.make_substrate(images, substrate, blur_sigma=blur_sigma, mean=mean, error=MetricError)
    deletion = _curve(model, ranks, counts, removed_onto, images, targets, batch_size)
    return scipy.integrate.trapezoid(deletion, counts.numpy() / (images.shape[-2] * images.shape[-1]), axis=1)


def _steps(images: torch.Tensor, maps: torch.Tensor, steps: Any, batch_size: Any,
           tie_seed: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel counts (steps + 1,) of the curve's points, pixel ranks of the maps), after checking ``steps``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise MetricError(f"steps must be a positive integer, got {steps!r}")
    check_batch_size(batch_size)
    n_pixels = images.shape[-2] * images.shape[-1]
    counts = torch.as_tensor(np.rint(np.arange(steps + 1) / steps * n_pixels).astype(np.int64))
    return counts, pixel_ranks(maps, tie_seed).to(images.device)


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
    counts: torch.Tensor,
    inside: torch.Tensor,
    outside: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
) -> np.ndarray:
    """Target probability (N, S) of the images showing ``inside`` on the ``counts[s]`` top-ranked pixels
    and ``outside`` elsewhere, for every image and step; (image, step) pairs are batched together."""
    n, steps = ranks.shape[0], counts.numel()
    image_index = torch.arange(n).repeat_interleave(steps)
    step_index = torch.arange(steps).repeat(n)

    def perturbed(pairs: torch.Tensor) -> torch.Tensor:
        i, s = image_index[pairs], step_index[pairs]
        on_top = ranks[i] < counts[s].view(-1, 1, 1, 1).to(ranks.device)
        return torch.where(on_top, inside[i], outside[i])

    probs, _ = target_probabilities(model, perturbed, image_index, targets, batch_size)
    return probs.reshape(n, steps)


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
    tie_seed: int | None = None,
) -> RoadCurves:
    """ROAD (Rong et al. 2022): remove p% of the pixels and impute them by noisy linear imputation.

    For each p in ``percentages`` the round(p / 100 * H * W) most relevant pixels (``order="morf"``) or least
    relevant ones (``"lerf"``) of each image are removed and replaced by :func:`noisy_linear_imputation`
    (noise std ``noise``, drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same result).
    Equal map values are ordered by ``tie_seed`` (:func:`pixel_ranks`; None: row-major order).
    Every (image, percentage) pair of the call is imputed in one batched solve on the images' device
    (:mod:`binsight.metrics.imputation`; in chunks of :data:`IMPUTATION_ELEMENTS` pixel values, which
    changes nothing), then the model sees every imputed image, ``batch_size`` at a time. Imputed pixels
    are not clipped to [0, 1] (as in the reference code), so they may leave that range by about ``noise``.

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
    n, n_steps = images.shape[0], percentages.size
    counts = torch.as_tensor(np.rint(percentages / 100 * images.shape[-2] * images.shape[-1]).astype(np.int64))
    if (counts >= images.shape[-2] * images.shape[-1]).any():
        raise MetricError("cannot impute an image whose every pixel is removed; use percentages below 100")
    ranks = pixel_ranks(maps if order == "morf" else -maps, tie_seed).to(images.device)
    image_index = torch.arange(n).repeat_interleave(n_steps)
    imputed = _ImputedPairs(images, ranks, counts.to(images.device), noise, np.random.default_rng(seed), batch_size)
    probs, predicted = target_probabilities(model, imputed, image_index, targets, batch_size)
    probability = probs.reshape(n, n_steps)
    correct = predicted.reshape(n, n_steps) == targets.cpu().numpy()[:, None]
    return RoadCurves(
        percentages=percentages,
        probability=probability,
        correct=correct,
        area=probability.mean(axis=1),
        order=order,
    )


class _ImputedPairs:
    """ROAD's imputed images, pair m = (image m // P, percentage m % P), made a chunk of pairs at a time.

    Called with consecutive pair indices that never straddle a chunk (chunks are whole model batches):
    the chunk holding them is imputed in one solve the first time it is asked for, with the noise drawn
    from ``rng`` in chunk order (the same stream as one solve of every pair).
    """

    def __init__(self, images: torch.Tensor, ranks: torch.Tensor, counts: torch.Tensor, noise: float,
                 rng: np.random.Generator, batch_size: int):
        self.images, self.ranks, self.counts, self.noise, self.rng = images, ranks, counts, noise, rng
        per_pair = images[0].numel()
        self.chunk = batch_size * max(1, IMPUTATION_ELEMENTS // (batch_size * per_pair))
        self.start, self.done = -1, torch.empty(0)

    def __call__(self, pairs: torch.Tensor) -> torch.Tensor:
        start = int(pairs[0]) // self.chunk * self.chunk
        if start != self.start:
            total = self.images.shape[0] * self.counts.numel()
            chunk = torch.arange(start, min(start + self.chunk, total), device=self.images.device)
            i, s = chunk // self.counts.numel(), chunk % self.counts.numel()
            removed = self.ranks[i] < self.counts[s].view(-1, 1, 1, 1)
            self.done = noisy_linear_imputation(self.images[i], removed, noise=self.noise, rng=self.rng)
            self.start = start
        return self.done[pairs.to(self.images.device) - start]


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
