"""Faithfulness: does the model's output follow the pixels the map ranks highest?

* :func:`deletion_insertion` - deletion and insertion curves and their areas (Petsiuk et al., "RISE:
  Randomized input sampling for explanation of black-box models", BMVC 2018).
* :func:`road` - RemOve And Debias, most- or least-relevant first, with noisy linear imputation (Rong et
  al., "A consistent and efficient evaluation strategy for attribution methods", ICML 2022).

Shared conventions. ``images`` are float (N, C, H, W) pixels in [0, 1] as the model takes them; ``maps``
float (N, 1, H, W), finite; ``targets`` int class indices (N,) (or one int for all). A "pixel" is a
position (i, j): removing it changes all C channels at once. Pixels are ranked by their map value, highest
first; equal values are ranked in row-major order (lower index first), so results are deterministic. The
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
import scipy.linalg
import torch
from torch import nn

from binsight import _utils
from binsight._utils import SubstrateLike, batch_slices, call_model, check_target_range, preserved_model
from binsight.metrics._checks import MetricError, check_batch_size, check_images, check_maps, check_targets

DEFAULT_BATCH_SIZE = 512
ROAD_NOISE = 0.01
"""Standard deviation of the Gaussian noise added to imputed pixels, in pixel units ([0, 1]) - the
default of Rong et al.'s reference code (and of Quantus' ``noisy_linear_imputation``)."""


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

    Returns a :class:`DeletionInsertion`. ``steps`` trades resolution for time: the model sees
    2 N (steps + 1) images.
    """
    images, maps, targets = _check_common(images, maps, targets)
    counts, ranks = _steps(images, maps, steps, batch_size)
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
) -> np.ndarray:
    """The deletion area of :func:`deletion_insertion`, float64 (N,), without the insertion curve (half the
    model's work: it sees N (steps + 1) images)."""
    images, maps, targets = _check_common(images, maps, targets)
    counts, ranks = _steps(images, maps, steps, batch_size)
    removed_onto = _utils.make_substrate(images, substrate, blur_sigma=blur_sigma, mean=mean, error=MetricError)
    deletion = _curve(model, ranks, counts, removed_onto, images, targets, batch_size)
    return scipy.integrate.trapezoid(deletion, counts.numpy() / (images.shape[-2] * images.shape[-1]), axis=1)


def _steps(images: torch.Tensor, maps: torch.Tensor, steps: Any, batch_size: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel counts (steps + 1,) of the curve's points, pixel ranks of the maps), after checking ``steps``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise MetricError(f"steps must be a positive integer, got {steps!r}")
    check_batch_size(batch_size)
    n_pixels = images.shape[-2] * images.shape[-1]
    counts = torch.as_tensor(np.rint(np.arange(steps + 1) / steps * n_pixels).astype(np.int64))
    return counts, pixel_ranks(maps).to(images.device)


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel of each map, 0 for the most salient: int64 (N, 1, H, W).

    Highest value first; equal values in row-major order (a stable sort), so the ranking is deterministic.
    """
    values = maps.flatten(1)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(values.shape[1]).expand_as(order).contiguous())
    return ranks.view(maps.shape).to(torch.int64)


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
) -> RoadCurves:
    """ROAD (Rong et al. 2022): remove p% of the pixels and impute them by noisy linear imputation.

    For each p in ``percentages`` the round(p / 100 * H * W) most relevant pixels (``order="morf"``) or least
    relevant ones (``"lerf"``) of each image are removed and replaced by :func:`noisy_linear_imputation`
    (noise std ``noise``, drawn from ``numpy.random.default_rng(seed)``: the same seed gives the same result).
    The model then sees every imputed image. Imputed pixels are not clipped to [0, 1] (as in the reference
    code), so they may leave that range by about ``noise``.

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
    n_pixels = images.shape[-2] * images.shape[-1]
    counts = torch.as_tensor(np.rint(percentages / 100 * n_pixels).astype(np.int64))
    ranks = pixel_ranks(maps if order == "morf" else -maps).to(images.device)
    image_index = torch.arange(n).repeat_interleave(n_steps)
    step_index = torch.arange(n_steps).repeat(n)
    rng = np.random.default_rng(seed)

    def imputed(pairs: torch.Tensor) -> torch.Tensor:
        i, s = image_index[pairs], step_index[pairs]
        removed = ranks[i] < counts[s].view(-1, 1, 1, 1).to(ranks.device)
        return noisy_linear_imputation(images[i], removed, noise=noise, rng=rng)

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


# The 8 neighbours of a pixel and their weights in the imputation (Rong et al.'s reference code):
# direct neighbours 1/6, diagonal ones 1/12.
_NEIGHBOURS = (
    ((0, 1), 1 / 6),
    ((0, -1), 1 / 6),
    ((1, 0), 1 / 6),
    ((-1, 0), 1 / 6),
    ((1, 1), 1 / 12),
    ((1, -1), 1 / 12),
    ((-1, 1), 1 / 12),
    ((-1, -1), 1 / 12),
)


def noisy_linear_imputation(
    images: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = ROAD_NOISE,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Replace the removed pixels of each image by the weighted mean of their neighbours, plus noise.

    images: float (N, C, H, W); removed: bool (N, 1, H, W), True where a pixel is to be imputed.
    Each removed pixel's value is the weighted mean of its 8 neighbours inside the image (weights 1/6 for
    the direct neighbours, 1/12 for the diagonal ones, renormalised at the border), whether those are kept
    or themselves imputed: one sparse linear system per image, all images solved at once as one
    block-diagonal system; every channel is a right-hand side. The system is symmetric positive definite and,
    with the unknowns in row-major order, banded (no unknown couples to one more than W + 1 places away),
    so it is solved as a banded Cholesky system (``scipy.linalg.solveh_banded``, O(M W^2) for M unknowns).
    Then Gaussian noise of std ``noise`` is added to each imputed value (``rng``, default seed 0).
    A removed region with no kept pixel around it has no defined value: the system is singular and a
    :class:`MetricError` is raised (this happens only when every pixel is removed).
    Returns the imputed images, same shape, dtype and device as ``images``.
    Reference: Rong et al. 2022, ``NoisyLinearImputer`` of github.com/tleemann/road_evaluation.
    """
    images = check_images(images)
    if not isinstance(removed, torch.Tensor) or removed.dtype != torch.bool:
        raise MetricError("removed must be a bool tensor (N, 1, H, W), True where a pixel is to be imputed")
    n, channels, height, width = images.shape
    if tuple(removed.shape) != (n, 1, height, width):
        raise MetricError(
            f"removed has shape {tuple(removed.shape)}; for these images it must be {(n, 1, height, width)}"
        )
    pixels = images.detach().cpu().double().numpy().reshape(n, channels, height * width)
    holes = removed.detach().cpu().numpy().reshape(n, height * width)
    if holes.all(axis=1).any():
        raise MetricError("cannot impute an image whose every pixel is removed; use percentages below 100")
    rng = rng if rng is not None else np.random.default_rng(0)
    system, rhs, hole_image, hole_pixel = _imputation_system(pixels, holes, height, width)
    if hole_image.size == 0:
        return images.clone()
    solution = scipy.linalg.solveh_banded(system, rhs, check_finite=False).reshape(hole_image.size, channels)
    solution = solution + noise * rng.standard_normal(solution.shape)
    out = pixels.copy()
    out[hole_image, :, hole_pixel] = solution
    return torch.from_numpy(out.reshape(n, channels, height, width)).to(images.device, images.dtype)


def _imputation_system(pixels: np.ndarray, holes: np.ndarray, height: int, width: int):
    """The block-diagonal system A v = b for every removed pixel of every image.

    pixels: float64 (N, C, H*W); holes: bool (N, H*W). Row u (one per removed pixel, numbered image by image
    in row-major order) reads: (sum of the weights of u's neighbours inside the image) * v_u
    - sum over removed neighbours r of w_r v_r = sum over kept neighbours k of w_k x_k.
    A is symmetric (a neighbour's weight is the same both ways) and diagonally dominant, positive definite
    when every image keeps a pixel. Returns (A in the upper banded form of ``scipy.linalg.solveh_banded``,
    (bandwidth + 1, M), b (M, C), the image and pixel index of each unknown).
    """
    hole_image, hole_pixel = np.nonzero(holes)
    unknown_id = np.full(holes.shape, -1, dtype=np.int64)
    unknown_id[hole_image, hole_pixel] = np.arange(hole_image.size)
    rows, cols = np.divmod(hole_pixel, width)
    diagonal = np.zeros(hole_image.size)
    rhs = np.zeros((hole_image.size, pixels.shape[1]))
    entries_row, entries_col, entries_val = [], [], []
    for (dy, dx), weight in _NEIGHBOURS:
        y, x = rows + dy, cols + dx
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        diagonal[inside] += weight
        u = np.nonzero(inside)[0]
        neighbour = y[u] * width + x[u]
        neighbour_id = unknown_id[hole_image[u], neighbour]
        is_unknown = neighbour_id >= 0
        entries_row.append(u[is_unknown])
        entries_col.append(neighbour_id[is_unknown])
        entries_val.append(np.full(is_unknown.sum(), -weight))
        kept = u[~is_unknown]
        rhs[kept] += weight * pixels[hole_image[kept], :, neighbour[~is_unknown]]
    row, col, value = (np.concatenate(e) for e in (entries_row, entries_col, entries_val))
    upper = row < col  # A is symmetric: its upper triangle and diagonal say everything
    bandwidth = int((col[upper] - row[upper]).max(initial=0))
    banded = np.zeros((bandwidth + 1, hole_image.size))
    banded[bandwidth + row[upper] - col[upper], col[upper]] = value[upper]  # ab[bw + i - j, j] = A[i, j]
    banded[bandwidth] = diagonal
    return banded, rhs, hole_image, hole_pixel


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
