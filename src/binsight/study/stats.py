"""A two-level bootstrap for the study's means: models resampled within each precision, then images.

Values come as arrays over the models of a study (axis M, each model with a precision) and its images
(axis K), with NaN where a value does not exist (not measured, or undefined):

- single-map values ``X`` (M, K): one value per model and image (e.g. a map's total variation);
- pair values ``P`` (M, M, K), symmetric: ``P[a, b, k]`` = the similarity of model a's and model b's maps
  of image k (the diagonal is never read).

One :class:`Draws` holds every resample at once: ``models`` (R+1, M) counts how often each model was
drawn (models drawn with replacement among the models of the same precision; a precision with a single
model is not resampled) and ``images`` (R+1, K) how often each image was drawn (with replacement). Row 0
is the sample itself (every count 1). A statistic evaluated on a draw is a weighted mean whose weights
are these counts, so that every statistic of one study, and every difference of two statistics, is
computed from the same draws: a difference is paired by model and by image.

A pair mean over a resample forms the pairs of the drawn models: a model drawn twice is paired with
every other drawn model twice, but never with itself, so a within-precision mean is undefined (NaN) in a
resample that drew one model only; such resamples are left out of the interval and counted.

Intervals are percentile intervals of the resampled statistic at ``confidence``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PRECISION_NAMES = {"fp": "FP", "bnn": "BNN"}


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap interval, and what that interval covers.

    value: the statistic on the sample. low, high: the percentile interval at ``confidence``.
    covers: in words, which units were resampled (e.g. "3 FP and 3 BNN models (resampled within
    precision) and 128 images (resampled)"). n_images: images that hold a value. n_resamples: resamples
    in which the statistic was defined (of those drawn; 0 for an interval that is not a bootstrap's).
    effect: the standardised effect (see :func:`effect_size`), None where it does not apply or the spread
    is zero. se, df, split: for a crossed t-interval (:func:`binsight.study.inference.crossed_interval`),
    its standard error, degrees of freedom and variance split ("models", "images", "residual": squared
    units, summing to se squared); None and empty otherwise.
    """

    value: float
    low: float
    high: float
    confidence: float
    covers: str
    n_images: int
    n_resamples: int
    effect: float | None = None
    se: float | None = None
    df: float | None = None
    split: dict[str, float] = field(default_factory=dict)

    def text(self, digits: int = 3) -> str:
        """``value [low, high]`` with signs, e.g. "+0.120 [+0.080, +0.160]"."""
        return f"{self.value:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


@dataclass(frozen=True)
class Draws:
    """Resampling counts: ``models`` (R+1, M) and ``images`` (R+1, K), float64; row 0 is the sample."""

    precisions: tuple[str, ...]
    models: np.ndarray
    images: np.ndarray
    confidence: float

    def resampled(self, precision: str) -> bool:
        """Whether the models of ``precision`` are resampled (there are at least 2 of them)."""
        return self.precisions.count(precision) >= 2


@dataclass(frozen=True)
class Stat:
    """A statistic over every draw: ``values`` (R+1,), row 0 the sample; ``per_image`` (K,) its per-image
    values on the sample (NaN where undefined); ``groups``: the precisions of the models it reads;
    ``effect``: its standardised effect where one applies."""

    values: np.ndarray
    per_image: np.ndarray
    groups: frozenset[str]
    effect: float | None = None


def draw(precisions: tuple[str, ...], n_images: int, *, n_resamples: int, seed: int, confidence: float) -> Draws:
    """Seeded resampling counts for models of the given precisions (in model order) and ``n_images`` images."""
    rng = np.random.default_rng(seed)
    models = np.ones((n_resamples + 1, len(precisions)))
    for precision in sorted(set(precisions)):
        idx = np.array([i for i, p in enumerate(precisions) if p == precision])
        if len(idx) >= 2:
            models[1:, idx] = _counts(rng, n_resamples, len(idx))
    images = np.ones((n_resamples + 1, n_images))
    if n_images:
        images[1:] = _counts(rng, n_resamples, n_images)
    return Draws(tuple(precisions), models, images, confidence)


def _counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """(rows, n) counts of ``n`` draws with replacement from ``n`` units, one row per resample."""
    picks = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)


def _weighted(weights: np.ndarray, values: np.ndarray, draws: Draws) -> tuple[np.ndarray, np.ndarray]:
    """(statistic (R+1,), per-image sample values (K,)) of the mean of ``values`` (U, K) over units with
    per-draw unit weights ``weights`` (R+1, U) and the draws' image counts; cells with NaN left out.

    Sums over images first (einsum loops, no BLAS threads: these products are small and many).
    """
    present = np.isfinite(values)
    filled = np.where(present, values, 0.0)
    num = (np.einsum("rk,uk->ru", draws.images, filled) * weights).sum(axis=1)
    if present.all():
        den = weights.sum(axis=1) * draws.images.sum(axis=1)
    else:
        den = (np.einsum("rk,uk->ru", draws.images, present.astype(np.float64)) * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den, (weights[0] @ filled) / (weights[0] @ present)


def single_mean(values: np.ndarray, draws: Draws, precision: str | None = None) -> Stat:
    """The mean of single-map ``values`` (M, K) over the models of ``precision`` (None: every model) and images."""
    select = np.array([precision is None or p == precision for p in draws.precisions])
    stat, per_image = _weighted(draws.models[:, select], values[select], draws)
    groups = frozenset(draws.precisions) if precision is None else frozenset({precision})
    return Stat(stat, per_image, groups)


def pair_mean(values: np.ndarray, draws: Draws, first: str, second: str) -> Stat:
    """The mean of pair ``values`` (M, M, K) over the pairs of a model of ``first`` and a model of
    ``second`` precision (never a model with itself), and over images."""
    prec = np.array(draws.precisions)
    first_idx, second_idx = np.nonzero(np.outer(prec == first, prec == second) & ~np.eye(len(prec), dtype=bool))
    weights = draws.models[:, first_idx] * draws.models[:, second_idx]  # (R+1, pairs)
    stat, per_image = _weighted(weights, values[first_idx, second_idx], draws)
    return Stat(stat, per_image, frozenset({first, second}))


def difference(a: Stat, b: Stat) -> Stat:
    """a - b, draw by draw; its effect is the difference over the pooled per-image SD of a and b."""
    return Stat(a.values - b.values, a.per_image - b.per_image, a.groups | b.groups, effect_size(a.per_image, b.per_image))


def relative_difference(a: Stat, b: Stat) -> Stat:
    """(a - b) / b, draw by draw (a fraction of b); its effect is as for :func:`difference`."""
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (a.values - b.values) / b.values
    return Stat(values, a.per_image - b.per_image, a.groups | b.groups, effect_size(a.per_image, b.per_image))


def effect_size(a: np.ndarray, b: np.ndarray | None = None) -> float | None:
    """Standardised effect of per-image values (NaN ignored).

    With ``b``: (mean a - mean b) / sqrt((var a + var b) / 2), over images where both are defined.
    Without: mean a / SD a (``a`` being per-image paired differences). None when the SD is 0 or fewer
    than 2 images hold values.
    """
    if b is None:
        x = a[np.isfinite(a)]
        if x.size < 2 or x.std(ddof=1) == 0:
            return None
        return float(x.mean() / x.std(ddof=1))
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 2:
        return None
    sd = np.sqrt((a[keep].var(ddof=1) + b[keep].var(ddof=1)) / 2)
    return float((a[keep].mean() - b[keep].mean()) / sd) if sd > 0 else None


def estimate(stat: Stat, draws: Draws) -> Estimate | None:
    """The sample value with its percentile interval; None when the statistic is undefined on the sample."""
    value = float(stat.values[0])
    boot = stat.values[1:][np.isfinite(stat.values[1:])]
    if not np.isfinite(value) or boot.size == 0:
        return None
    alpha = (1 - draws.confidence) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    n_images = int(np.isfinite(stat.per_image).sum())
    return Estimate(value, float(low), float(high), draws.confidence, covers(draws, stat.groups, n_images),
                    n_images, int(boot.size), stat.effect)


def covers(draws: Draws, groups: frozenset[str], n_images: int) -> str:
    """What an interval over ``groups``' models and ``n_images`` images covers, in words."""
    known = list(PRECISION_NAMES)
    order = sorted(groups, key=lambda p: (known.index(p) if p in known else len(known), p))
    named = [(PRECISION_NAMES.get(p, p), draws.precisions.count(p), draws.resampled(p)) for p in order]
    images = f"{n_images} images (resampled)"
    if all(r for _, _, r in named):
        counts = " and ".join(f"{n} {name}" for name, n, _ in named)
        return f"{counts} models (resampled within precision) and {images}"
    if not any(r for _, _, r in named):
        counts = " and ".join(f"{n} {name}" for name, n, _ in named)
        plural = "models" if sum(n for _, n, _ in named) > 1 else "model"
        return (f"{counts} {plural} and {images}; models not resampled: 1 model per precision; "
                "the interval does not cover model variance")
    parts = [f"{n} {name} models (resampled)" if r else
             f"1 {name} model (not resampled: the interval does not cover {name} model variance)"
             for name, n, r in named]
    return " and ".join(parts) + f" and {images}"
