"""Calibrated inference for the verdicts: crossed models-by-images intervals, a scale-free similarity
ratio, clustered proportions, Holm's correction and a convergence extrapolation (see docs/verdicts.md).

Pure numpy / scipy; nothing here knows what a map is. The statistics themselves (weighted means over
models and images) are computed by :mod:`binsight.study.stats` on the rows of a :class:`JackknifeDesign`:
give ``design.models`` and ``design.images`` to ``stats.Draws`` in place of the bootstrap counts, and the
statistic's values on those rows (``Stat.values``, shape (J,)) to :func:`crossed_interval`.

**The crossed interval.** Every model explains every image, so models and images are crossed random
factors. A statistic T (a mean over models and images, or a difference or smooth function of such means)
is recomputed with one model left out (within its precision), with one image left out, and with one model
and one image left out. From these deletion values:

- V_M,g: the delete-one-model jackknife variance over the models of precision g;
- V_K: the delete-one-image jackknife variance;
- V_MK,g: the model-by-image residual, from the per-image pseudo-values (K T - (K - 1) T(-k)) with and
  without each model: the mean over images of their jackknife-by-model variance, minus V_M,g, over K - 1.

For T a mean of x[m, k] = mu + a_m + b_k + e_mk these are, in expectation, var(a)/M + var(e)/(M K),
var(b)/K + var(e)/(M K) and var(e)/(M K); so Var(T) = sum_g (V_M,g - V_MK,g) + V_K is the two-way
random-effects ANOVA decomposition (models, images, residual), written for any statistic that is smooth in
the cells. A precision's model part below zero is set to zero. The interval is T +- t * sqrt(Var(T)) with
Satterthwaite's degrees of freedom for the sum of mean squares (M_g - 1, K - 1, (M_g - 1)(K - 1)).

Pairs of models share models: a pair mean left without one model loses every pair holding it, so the
delete-one-model jackknife carries that dependence. Within one precision of 3 models the spread of the 3
pair means cannot tell a model's effect (shared by its 2 pairs) from a pair's own; the jackknife then
counts the pair's own variation as if it were shared (4/3 of the pair means' variance), exact when model
effects dominate and wider otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.stats

from binsight.errors import BinsightError


class InferenceError(BinsightError):
    """Inputs the interval computations cannot use (wrong shapes, too few units, a bad level)."""


# ------------------------------------------------------------------------------------------------------
# the crossed interval


@dataclass(frozen=True)
class JackknifeDesign:
    """Deletion rows over M models (each of a precision) and K images.

    models: float64 (J, M) model weights; images: float64 (J, K) image weights; J = 1 + M + K + M K. Row 0
    is the sample (all weights 1); rows 1..M leave out model m; rows 1+M..M+K leave out image k; row
    1 + M + K + m K + k leaves out model m and image k. The weights are the counts ``stats.Draws`` takes.
    """

    precisions: tuple[str, ...]
    models: np.ndarray
    images: np.ndarray

    @property
    def n_models(self) -> int:
        return len(self.precisions)

    @property
    def n_images(self) -> int:
        return self.images.shape[1]

    def parts(self, values: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(T, T(-m) (M,), T(-k) (K,), T(-m,-k) (M, K)) from a statistic's values (J,) on these rows."""
        m, k = self.n_models, self.n_images
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (1 + m + k + m * k,):
            raise InferenceError(f"a statistic on the design's rows has shape ({1 + m + k + m * k},), got "
                                 f"{values.shape}; compute it on the rows of this design")
        return float(values[0]), values[1:1 + m], values[1 + m:1 + m + k], values[1 + m + k:].reshape(m, k)


def jackknife_design(precisions: Sequence[str], n_images: int) -> JackknifeDesign:
    """The deletion rows of :class:`JackknifeDesign` for models of ``precisions`` (model order) and
    ``n_images`` images (only images that hold values: leave out image columns without any first)."""
    m, k = len(precisions), int(n_images)
    if m < 1 or k < 2:
        raise InferenceError(f"a crossed interval needs at least 1 model and 2 images, got {m} and {k}")
    eye_m, eye_k = np.eye(m), np.eye(k)
    models = np.concatenate([np.ones((1, m)), 1 - eye_m, np.ones((k, m)), np.repeat(1 - eye_m, k, axis=0)])
    images = np.concatenate([np.ones((1 + m, k)), 1 - eye_k, np.tile(1 - eye_k, (m, 1))])
    return JackknifeDesign(tuple(precisions), models, images)


@dataclass(frozen=True)
class VarianceSplit:
    """The variance of a statistic (its squared standard error) split by source, in the statistic's
    squared units: models (within precision), images, and the model-by-image residual; they sum to it."""

    models: float
    images: float
    residual: float

    @property
    def total(self) -> float:
        return self.models + self.images + self.residual

    def shares(self) -> dict[str, float]:
        """Each source's share of the variance (NaN when the variance is 0)."""
        total = self.total
        return {k: (v / total if total > 0 else float("nan"))
                for k, v in (("models", self.models), ("images", self.images), ("residual", self.residual))}


@dataclass(frozen=True)
class CrossedEstimate:
    """A statistic with its crossed models-by-images t-interval.

    value: the statistic; low, high: the interval at ``confidence``; se: the standard error; df:
    Satterthwaite's degrees of freedom; split: the variance by source; n_images: images used;
    uncovered: the precisions whose model variance the interval does not cover (a single model, or a
    within-precision pair mean of 2 models).
    """

    value: float
    low: float
    high: float
    confidence: float
    se: float
    df: float
    split: VarianceSplit
    n_images: int
    uncovered: tuple[str, ...] = ()
    covers: str = ""

    def p_above(self, bound: float) -> float:
        """One-sided p-value of "the true value is above ``bound``" (small: the data say it is)."""
        if self.se == 0:
            return 0.0 if self.value > bound else 1.0
        return float(scipy.stats.t.sf((self.value - bound) / self.se, self.df))

    def text(self, digits: int = 3) -> str:
        """``value [low, high]`` with signs, e.g. "+0.120 [+0.080, +0.160]"."""
        return f"{self.value:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def crossed_interval(values: np.ndarray, design: JackknifeDesign, confidence: float = 0.95) -> CrossedEstimate | None:
    """The crossed t-interval of a statistic from its values (J,) on ``design``'s rows (module docstring).

    None when the statistic is undefined on the sample or with an image left out. A precision whose
    models cannot be left out (the statistic is undefined without one of them) contributes no model
    variance and is named in ``uncovered``.
    """
    _check_confidence(confidence)
    t, t_m, t_k, t_mk = design.parts(values)
    if not np.isfinite(t) or not np.isfinite(t_k).all():
        return None
    k = design.n_images
    pseudo_k = k * t - (k - 1) * t_k  # (K,) per-image pseudo-values
    v_images = pseudo_k.var(ddof=1) / k
    terms = [(v_images, k - 1)]  # (mean square, degrees of freedom) added to the variance
    model_part, residual, uncovered = 0.0, 0.0, []
    for precision in sorted(set(design.precisions)):
        idx = np.array([i for i, p in enumerate(design.precisions) if p == precision])
        v_m, v_mk = _model_terms(t, t_m[idx], t_mk[idx], k)
        if v_m is None:
            if not np.all(t_m[idx] == t):  # the statistic reads these models (NaN without one of them)
                uncovered.append(precision)
            continue
        residual += v_mk
        if v_m > v_mk:  # a model part below zero is set to zero (its terms leave the sum)
            model_part += v_m - v_mk
            terms += [(v_m, len(idx) - 1), (-v_mk, (len(idx) - 1) * (k - 1))]
    residual = min(residual, v_images)  # the split keeps every part >= 0 and sums to the variance
    images_part = v_images - residual
    variance = model_part + v_images
    se = float(np.sqrt(max(variance, 0.0)))
    denominator = sum(term**2 / df for term, df in terms if df > 0)
    df = variance**2 / denominator if denominator > 0 else float("inf")
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df)) * se if se > 0 else 0.0
    return CrossedEstimate(t, t - half, t + half, confidence, se, float(df),
                           VarianceSplit(model_part, images_part, residual), k, tuple(uncovered),
                           _covers(design, k, df, uncovered))


def _covers(design: JackknifeDesign, k: int, df: float, uncovered: Sequence[str]) -> str:
    """What a crossed interval covers, in words, e.g. "3 FP and 3 BNN models and 128 images (crossed
    t-interval, 3.2 degrees of freedom)"."""
    counts = " and ".join(f"{design.precisions.count(p)} {p.upper()}" for p in dict.fromkeys(design.precisions))
    text = f"{counts} models and {k} images (crossed t-interval, {df:.1f} degrees of freedom)"
    if uncovered:
        text += f"; does not cover {' or '.join(p.upper() for p in uncovered)} model variance"
    return text


def _model_terms(t: float, t_m: np.ndarray, t_mk: np.ndarray, k: int) -> tuple[float | None, float]:
    """(V_M, V_MK) of one precision's models: T(-m) (G,), T(-m,-k) (G, K); (None, 0) when a model cannot
    be left out (fewer than 2 models, or the statistic undefined without one)."""
    g = len(t_m)
    if g < 2 or not np.isfinite(t_m).all() or not np.isfinite(t_mk).all():
        return None, 0.0
    v_m = (g - 1) / g * np.sum((t_m - t_m.mean()) ** 2)
    pseudo = k * t_m[:, None] - (k - 1) * t_mk  # (G, K): per-image pseudo-values without model m
    per_image = (g - 1) / g * np.sum((pseudo - pseudo.mean(axis=0)) ** 2, axis=0)
    v_mk = max((per_image.mean() - v_m) / (k - 1), 0.0)
    return float(v_m), float(v_mk)


def defined_images(*arrays: np.ndarray) -> np.ndarray:
    """Bool (K,): image columns (last axis) where every array holds at least one finite value."""
    return np.logical_and.reduce([np.isfinite(a).reshape(-1, a.shape[-1]).any(axis=0) for a in arrays])


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise InferenceError(f"confidence is a probability in (0, 1), got {confidence}")



# ------------------------------------------------------------------------------------------------------
# scale-free similarity (verdicts 1 and 3a)

ALIKE, DIFFER, NOT_REPRODUCIBLE, UNDECIDED = "alike", "differ", "not reproducible", "inconclusive"
RATIO_MARGIN = 0.2
"""How far below 1 the agreement ratio may lie and still read "alike" (one margin for every measure)."""


def agreement_ratio(fp_bnn: np.ndarray, fp_fp: np.ndarray, bnn_bnn: np.ndarray, chance_fp_bnn: np.ndarray,
                    chance_fp_fp: np.ndarray, chance_bnn_bnn: np.ndarray) -> np.ndarray:
    """(FP-vs-BNN - its chance) / sqrt((FP-vs-FP - its chance) (BNN-vs-BNN - its chance)), elementwise.

    Each argument holds a mean pair similarity (any shape, e.g. a statistic's values on a design's rows);
    the chance levels are the image-shuffled similarities of the same kind of pair. NaN where a seed
    baseline is not above its chance level (the ratio is undefined). 1: FP and BNN maps share as much
    beyond chance as two seeds of each precision do; 0: nothing beyond chance.
    """
    fp_excess, bnn_excess = np.asarray(fp_fp) - chance_fp_fp, np.asarray(bnn_bnn) - chance_bnn_bnn
    scale = np.sqrt(np.where((fp_excess > 0) & (bnn_excess > 0), fp_excess * bnn_excess, np.nan))
    return (np.asarray(fp_bnn) - chance_fp_bnn) / scale


@dataclass(frozen=True)
class SimilarityRatio:
    """The scale-free similarity reading of one measure.

    ratio: :func:`agreement_ratio` with its crossed interval (None when undefined: a seed baseline is not
    above chance on the sample or without one model or image). excess: "fp-bnn", "fp-fp", "bnn-bnn" ->
    the kind's similarity minus its chance level. chance: the same keys -> the chance level itself.
    reading: alike (the ratio's interval above 1 - margin), differ (below it), not reproducible (a seed
    baseline's excess over chance not above 0: the ratio is undefined) or inconclusive.
    """

    ratio: CrossedEstimate | None
    excess: dict[str, CrossedEstimate | None]
    chance: dict[str, CrossedEstimate | None]
    reading: str
    margin: float


def scale_free_similarity(fp_bnn: np.ndarray, fp_fp: np.ndarray, bnn_bnn: np.ndarray, chance_fp_bnn: np.ndarray,
                          chance_fp_fp: np.ndarray, chance_bnn_bnn: np.ndarray, design: JackknifeDesign, *,
                          margin: float = RATIO_MARGIN, confidence: float = 0.95) -> SimilarityRatio:
    """The reading of FP-vs-BNN similarity against the seed baselines, on one scale for every measure.

    Arguments: the six pair means as values (J,) on ``design``'s rows (e.g. ``stats.pair_mean(values,
    Draws(precisions, design.models, design.images, confidence), "fp", "bnn").values``, the chance ones
    from the image-shuffled pairs). Each interval is :func:`crossed_interval`'s.
    """
    levels = {"fp-bnn": (fp_bnn, chance_fp_bnn), "fp-fp": (fp_fp, chance_fp_fp), "bnn-bnn": (bnn_bnn, chance_bnn_bnn)}
    excess = {k: crossed_interval(np.asarray(v) - c, design, confidence) for k, (v, c) in levels.items()}
    chance = {k: crossed_interval(c, design, confidence) for k, (_, c) in levels.items()}
    values = agreement_ratio(fp_bnn, fp_fp, bnn_bnn, chance_fp_bnn, chance_fp_fp, chance_bnn_bnn)
    reproducible = all(e is not None and e.low > 0 for e in (excess["fp-fp"], excess["bnn-bnn"]))
    ratio = crossed_interval(values, design, confidence) if np.isfinite(values).all() else None
    return SimilarityRatio(ratio, excess, chance, ratio_reading(ratio if reproducible else None, margin), margin)


def ratio_reading(ratio: CrossedEstimate | None, margin: float = RATIO_MARGIN) -> str:
    """alike: the interval lies above 1 - ``margin``; differ: at or below it; inconclusive: it straddles
    it; not reproducible: no ratio (a seed baseline is not shown above chance)."""
    if ratio is None:
        return NOT_REPRODUCIBLE
    if ratio.low > 1 - margin:
        return ALIKE
    if ratio.high <= 1 - margin:
        return DIFFER
    return UNDECIDED


# ------------------------------------------------------------------------------------------------------
# proportions clustered by model (verdict 3b)


@dataclass(frozen=True)
class Proportion:
    """A proportion of flagged maps with an exact interval clustered by model.

    value: flagged / maps; low, high: the Clopper-Pearson interval at ``confidence`` of ``value`` on
    ``n_effective`` maps; count, n: flagged and tested maps; n_models: models that hold a map;
    design_effect: how much the models' own proportions vary beyond binomial noise (>= 1).
    """

    value: float
    low: float
    high: float
    confidence: float
    count: int
    n: int
    n_models: int
    n_effective: float
    design_effect: float

    @property
    def covers(self) -> str:
        return (f"{self.n} maps of {self.n_models} models (exact interval, clustered by model: "
                f"{self.n_effective:.0f} effective maps)")

    def text(self, digits: int = 3) -> str:
        return f"{self.value:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def clustered_proportion(flags: np.ndarray, confidence: float = 0.95) -> Proportion | None:
    """The proportion of 1s in ``flags`` (M, K) (1 flagged, 0 not, NaN no map) with its interval.

    Maps of one model are not independent: the dispersion of the models' own proportions, phi = sum_m
    n_m (p_m - p)^2 / ((M - 1) p (1 - p)) (at least 1; 1 with one model or p in {0, 1}), shrinks the
    sample to n / phi effective maps, and the Clopper-Pearson interval of p on n / phi maps (beta
    quantiles, continuous in the count) is returned. None when no map was tested.
    """
    _check_confidence(confidence)
    flags = np.asarray(flags, dtype=np.float64)
    if flags.ndim != 2:
        raise InferenceError(f"flags are (models, images), got shape {flags.shape}")
    present = np.isfinite(flags)
    per_model_n = present.sum(axis=1)
    n = int(per_model_n.sum())
    if n == 0:
        return None
    count = int(np.nansum(flags))
    p = count / n
    held = per_model_n > 0
    phi = 1.0
    if held.sum() >= 2 and 0 < p < 1:
        p_m = np.nansum(flags, axis=1)[held] / per_model_n[held]
        phi = max(1.0, float(np.sum(per_model_n[held] * (p_m - p) ** 2) / ((held.sum() - 1) * p * (1 - p))))
    n_eff = n / phi
    low, high = _clopper_pearson(p * n_eff, n_eff, confidence)
    return Proportion(p, low, high, confidence, count, n, int(held.sum()), n_eff, phi)


def _clopper_pearson(x: float, n: float, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low = 0.0 if x <= 0 else float(scipy.stats.beta.ppf(alpha / 2, x, n - x + 1))
    high = 1.0 if x >= n else float(scipy.stats.beta.ppf(1 - alpha / 2, x + 1, n - x))
    return low, high


@dataclass(frozen=True)
class ProportionDifference:
    """a - b of two clustered proportions with Newcombe's interval (each end combines the two exact
    intervals' distances: low = d - sqrt((a - a_low)^2 + (b_high - b)^2), high likewise)."""

    value: float
    low: float
    high: float
    confidence: float
    a: Proportion
    b: Proportion

    @property
    def covers(self) -> str:
        return f"{self.a.covers} against {self.b.covers}"

    def text(self, digits: int = 3) -> str:
        return f"{self.value:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def p_above(self, bound: float) -> float:
        """One-sided p-value of "a - b is above ``bound``": the alpha at which the lower end of the
        two-sided interval at 1 - 2 alpha reaches ``bound`` (bisection, 1e-6)."""
        def lower(alpha: float) -> float:
            return proportion_difference(_at(self.a, 1 - 2 * alpha), _at(self.b, 1 - 2 * alpha)).low

        if lower(0.5 - 1e-9) <= bound:
            return 1.0 if self.value <= bound else 0.5
        lo, hi = 1e-9, 0.5 - 1e-9
        if lower(lo) > bound:
            return lo
        while hi - lo > 1e-6:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if lower(mid) > bound else (mid, hi)
        return hi


def _at(p: Proportion, confidence: float) -> Proportion:
    low, high = _clopper_pearson(p.value * p.n_effective, p.n_effective, confidence)
    return Proportion(p.value, low, high, confidence, p.count, p.n, p.n_models, p.n_effective, p.design_effect)


def proportion_difference(a: Proportion, b: Proportion) -> ProportionDifference:
    """a - b with Newcombe's interval from the two proportions' own intervals (same confidence)."""
    d = a.value - b.value
    low = d - np.hypot(a.value - a.low, b.high - b.value)
    high = d + np.hypot(a.high - a.value, b.value - b.low)
    return ProportionDifference(d, float(max(low, -1.0)), float(min(high, 1.0)), a.confidence, a, b)


# ------------------------------------------------------------------------------------------------------
# multiplicity


@dataclass(frozen=True)
class Holm:
    """Holm's step-down correction: adjusted p-values and decisions, in the order the tests were given."""

    adjusted: tuple[float, ...]
    rejected: tuple[bool, ...]
    alpha: float


def holm(p_values: Sequence[float], alpha: float = 0.05) -> Holm:
    """Holm's correction of one-sided p-values (one per primary test; NaN: a test not measured, never
    rejected and left out of the count). The i-th smallest of n p-values is multiplied by n - i + 1
    (running maximum, capped at 1); a test is rejected (its claim held) when its adjusted p <= alpha.
    Controls the chance of any false claim among the tests at alpha, whatever their dependence."""
    if not 0 < alpha < 1:
        raise InferenceError(f"alpha is a probability in (0, 1), got {alpha}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any((p < 0) | (p > 1)):
        raise InferenceError(f"p-values are a list of numbers in [0, 1], got {list(p_values)}")
    measured = np.flatnonzero(np.isfinite(p))
    adjusted = np.full(p.shape, np.nan)
    order = measured[np.argsort(p[measured], kind="stable")]
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[j]))
        adjusted[j] = running
    rejected = tuple(bool(np.isfinite(a) and a <= alpha) for a in adjusted)
    return Holm(tuple(float(a) for a in adjusted), rejected, alpha)


def one_sided_p(statistic: float, df: float = float("inf")) -> float:
    """The p-value of a one-sided test statistic (estimate minus bound over its standard error): the
    t (normal for infinite ``df``) upper tail."""
    return float(scipy.stats.t.sf(statistic, df)) if np.isfinite(df) else float(scipy.stats.norm.sf(statistic))


# ------------------------------------------------------------------------------------------------------
# convergence (verdict 2)

MODEL_PROPERTY, MONTE_CARLO, CANNOT_TELL = "a property of the model", "Monte Carlo noise", "cannot tell"

CONVERGENCE_EXPONENTS = {"total_variation": 0.5, "high_frequency_energy": 1.0}
"""How a noise measure's Monte Carlo part shrinks with n samples, as n^-exponent. A mean of n noisy
gradients has a per-pixel Monte Carlo variance proportional to 1/n, so its noise amplitude falls as
n^-1/2: a measure of the map's differences (total variation, degree 1 in the amplitude) as n^-1/2, a
measure of the noise's energy (degree 2) as 1/n."""


def extrapolated(few: np.ndarray, many: np.ndarray, n_few: int, n_many: int, exponent: float) -> np.ndarray:
    """The value at infinitely many samples of a quantity measured with ``n_few`` and ``n_many`` samples on
    the same images, under d(n) = d_inf + c n^-exponent: (q d_many - d_few) / (q - 1), q = (n_many /
    n_few)^exponent, elementwise (e.g. a statistic's values on a design's rows; then its interval is
    :func:`crossed_interval`'s). exponent 1 with 50 and 200 samples: (4 d200 - d50) / 3."""
    if not (0 < n_few < n_many) or not exponent > 0:
        raise InferenceError(f"extrapolation needs 0 < n_few < n_many and exponent > 0, got {n_few}, {n_many}, {exponent}")
    q = (n_many / n_few) ** exponent
    return (q * np.asarray(many, dtype=np.float64) - np.asarray(few, dtype=np.float64)) / (q - 1)


def convergence_reading(limit: CrossedEstimate | None, margin: float) -> str:
    """The noise difference at infinitely many samples (``limit``) against ``margin``: a property of the
    model when its interval lies above the margin, Monte Carlo noise when it lies within +-margin,
    cannot tell otherwise (or without an estimate)."""
    if limit is None:
        return CANNOT_TELL
    if limit.low > margin:
        return MODEL_PROPERTY
    if -margin <= limit.low and limit.high <= margin:
        return MONTE_CARLO
    return CANNOT_TELL
