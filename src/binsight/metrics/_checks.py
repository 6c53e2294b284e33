"""Input checks shared by the measures: clear errors instead of stack traces from deep inside numpy/torch."""

from __future__ import annotations

import functools

import numpy as np
import torch

from binsight import _utils
from binsight.errors import BinsightError


class MetricError(BinsightError):
    """Bad input to a measure: the message names what was wrong and what to do."""


def check_maps(maps: torch.Tensor, what: str = "maps", finite: bool = False, on_device: bool = False) -> torch.Tensor:
    """Validate saliency maps (N, 1, H, W); return them detached as float64 on the CPU (``on_device``: on
    their own device, except MPS, which has no float64: there on the CPU).

    NaN maps are allowed unless ``finite`` (the measures return NaN for them); see ``is_degenerate``.
    """
    if not isinstance(maps, torch.Tensor):
        raise MetricError(f"{what} must be a torch.Tensor of shape (N, 1, H, W), got {type(maps).__name__}")
    if maps.dim() != 4 or maps.shape[1] != 1:
        hint = (
            "; reduce the channels first, e.g. maps.abs().amax(1, keepdim=True)"
            if maps.dim() == 4
            else "; add the missing dimensions with maps.view(N, 1, H, W)"
        )
        raise MetricError(f"{what} must have shape (N, 1, H, W), got {tuple(maps.shape)}{hint}")
    if maps.shape[0] == 0:
        raise MetricError(f"{what} is an empty batch (N = 0)")
    if maps.is_complex() or maps.dtype == torch.bool:
        raise MetricError(f"{what} must be real floating point values, got dtype {maps.dtype}")
    device = maps.device if on_device and maps.device.type != "mps" else torch.device("cpu")
    maps = maps.detach().to(device, torch.float64)
    if finite and not torch.isfinite(maps).all():
        bad = sorted({int(i) for i in (~torch.isfinite(maps)).flatten(1).any(1).nonzero().flatten()})
        raise MetricError(f"{what} contain NaN or infinite values (images {bad[:10]}); drop those images first")
    return maps


def check_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Two batches of maps of the same shape, as float64 arrays (N, H * W)."""
    a = check_maps(a, "a")
    b = check_maps(b, "b")
    if a.shape != b.shape:
        raise MetricError(f"the two batches of maps differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    return flat(a), flat(b)


def check_pair_tensors(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of maps of the same shape, as float64 tensors (N, 1, H, W) on a's device (CPU for MPS)."""
    a = check_maps(a, "a", on_device=True)
    b = check_maps(b, "b", on_device=True).to(a.device)
    if a.shape != b.shape:
        raise MetricError(f"the two batches of maps differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


def check_images(images: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Validate images (N, C, H, W), finite floating point (``n`` of them if given); return them detached."""
    return _utils.check_images(images, n=n, error=MetricError)


def check_targets(targets: _utils.TargetLike, n: int) -> torch.Tensor:
    """Class indices for ``n`` images as int64 (N,) on the CPU (forms: :func:`binsight._utils.requested_targets`)."""
    if targets is None:
        raise MetricError("targets are needed: the class of each image (an int, or a list / array / tensor of N ints)")
    return _utils.requested_targets(targets, n, device="cpu", error=MetricError)


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is a positive int, else :class:`MetricError`."""
    return _utils.check_batch_size(batch_size, optional=False, error=MetricError)


def check_masks(masks: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Validate boolean masks of the given (N, 1, H, W) shape; return them as a bool CPU tensor."""
    if not isinstance(masks, torch.Tensor):
        raise MetricError(f"masks must be a bool torch.Tensor of shape (N, 1, H, W), got {type(masks).__name__}")
    if masks.dtype != torch.bool:
        raise MetricError(f"masks must have dtype torch.bool, got {masks.dtype}; convert with masks > 0.5")
    if tuple(masks.shape) != tuple(shape):
        raise MetricError(f"masks have shape {tuple(masks.shape)}, the maps {tuple(shape)}; they must match")
    return masks.detach().cpu()


def flat(maps: torch.Tensor) -> np.ndarray:
    """(N, 1, H, W) tensor -> float64 array (N, H * W)."""
    return maps.detach().to("cpu", torch.float64).reshape(maps.shape[0], -1).numpy()


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den element-wise, NaN where den is 0 or not finite."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    ok = np.isfinite(den) & (den != 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def tie_key(shape: tuple[int, ...], tie_seed) -> np.ndarray:
    """The random order of tied pixels: uniform [0, 1) keys, float64 of ``shape`` (N, P), from
    ``numpy.random.default_rng(tie_seed)`` (:class:`MetricError` unless ``tie_seed`` is an int >= 0).
    Drawn for a whole call, so the key of map i depends on the seed and i's position in the call."""
    return np.random.default_rng(tie_key_seed(tie_seed)).random(shape)


def tie_key_seed(tie_seed) -> int:
    """``tie_seed`` as an int, or :class:`MetricError` unless it is an int >= 0."""
    if isinstance(tie_seed, bool) or not isinstance(tie_seed, (int, np.integer)) or tie_seed < 0:
        raise MetricError(f"tie_seed must be None (ties in row-major order) or an int >= 0, got {tie_seed!r}")
    return int(tie_seed)


@functools.lru_cache(maxsize=8)
def _tie_order(shape: tuple[int, ...], tie_seed: int) -> torch.Tensor:
    """argsort of each row of :func:`tie_key` (CPU int64 (N, P)), kept for the next calls of the same shape
    and seed (the study's pair measures rank many maps of one chunk with one seed; the same values)."""
    return torch.argsort(torch.from_numpy(tie_key(shape, tie_seed)), dim=1)


def descending_ranks(values: torch.Tensor, tie_seed=None) -> torch.Tensor:
    """Rank of each entry of each row of values (N, P), 0 for the largest: int64 (N, P), same device.

    Equal values: in index order (a stable sort) when ``tie_seed`` is None, else in the order of
    :func:`tie_key` (drawn on the CPU, so the same on every device). Only ties move.
    """
    if tie_seed is None:
        return _ranks_of(torch.sort(values, dim=1, descending=True, stable=True).indices)
    key_order = _tie_order(tuple(values.shape), tie_key_seed(tie_seed)).to(values.device)
    return ranks_in_key_order(values, key_order, descending=True)


def ranks_in_key_order(values: torch.Tensor, key_order: torch.Tensor, *, descending: bool) -> torch.Tensor:
    """Rank of each entry of each row of values (N, P), 0 for the largest (``descending``) or the smallest:
    int64 (N, P), same device. Equal values are ranked in the order in which ``key_order`` (int64 (N, P),
    each row a permutation of 0..P - 1, e.g. the argsort of random keys) lists their positions: one stable
    sort of the values taken in that order."""
    by_value = torch.sort(values.gather(1, key_order), dim=1, descending=descending, stable=True).indices
    return _ranks_of(key_order.gather(1, by_value))


def _ranks_of(order: torch.Tensor) -> torch.Tensor:
    """The ranks of a sort's ``order`` (N, P: the positions from first to last): int64 (N, P)."""
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order).contiguous())
    return ranks


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..P of each row of values (N, P), ties given their average rank (as ``scipy.stats.rankdata``):
    float64 (N, P), same device. One sort; each run of equal sorted values gets (first + last) / 2 + 1 of
    its positions (a running max of run starts, a reversed running min of run ends)."""
    ordered, order = values.sort(dim=1)
    size = values.shape[1]
    position = torch.arange(size, device=values.device).expand_as(order)
    starts = torch.ones_like(order, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = torch.ones_like(starts)
    ends[:, :-1] = starts[:, 1:]
    first = torch.where(starts, position, 0).cummax(1).values
    last = torch.where(ends, position, size).flip(1).cummin(1).values.flip(1)
    ranks = torch.empty(values.shape, dtype=torch.float64, device=values.device)
    return ranks.scatter_(1, order, (first + last).to(torch.float64) / 2 + 1)
