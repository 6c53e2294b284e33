"""Calibrated inference for the verdicts (binsight.study.inference): the crossed interval against the
two-way ANOVA by hand and its coverage in four regimes, the scale-free similarity reading on synthetic
maps, clustered exact proportions, Holm's correction and the convergence extrapolation; each rule on both
sides of its bound. Statistics are computed by binsight.study.stats on the design's rows, as the verdicts do."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.study import inference
from binsight.study.inference import (ALIKE, CANNOT_TELL, DIFFER, MODEL_PROPERTY, MONTE_CARLO, NOT_REPRODUCIBLE,
                                      UNDECIDED, InferenceError, clustered_proportion, convergence_reading,
                                      crossed_interval, extrapolated, holm, jackknife_design, proportion_difference,
                                      scale_free_similarity)
from binsight.study.stats import Draws, difference, pair_mean, single_mean

FP3_BNN3 = ("fp",) * 3 + ("bnn",) * 3


def rows_of(precisions: tuple[str, ...], n_images: int):
    design = jackknife_design(precisions, n_images)
    return design, Draws(precisions, design.models, design.images, 0.95)


# -- the crossed interval ------------------------------------------------------------------------------------


def test_design_rows_leave_out_one_model_one_image_and_both():
    design = jackknife_design(("fp", "fp", "bnn"), 4)
    assert design.models.shape == (1 + 3 + 4 + 12, 3) and design.images.shape == (20, 4)
    assert (design.models[0] == 1).all() and (design.images[0] == 1).all()
    assert list(design.models[2]) == [1, 0, 1] and (design.images[2] == 1).all()
    assert (design.models[5] == 1).all() and list(design.images[5]) == [1, 0, 1, 1]
    row = 1 + 3 + 4 + 2 * 4 + 3  # model 2 and image 3 left out
    assert list(design.models[row]) == [1, 1, 0] and list(design.images[row]) == [1, 1, 1, 0]
    with pytest.raises(InferenceError, match="2 images"):
        jackknife_design(("fp",), 1)


def test_a_precision_mean_has_the_two_way_anova_variance_and_satterthwaite_df():
    rng = np.random.default_rng(0)
    m, k = 4, 10
    x = rng.normal(0, 1, (m, 1)) + rng.normal(0, 1, (1, k)) + rng.normal(0, 0.5, (m, k))
    design, draws = rows_of(("fp",) * m, k)
    est = crossed_interval(single_mean(x, draws).values, design)
    grand, rows, cols = x.mean(), x.mean(axis=1), x.mean(axis=0)
    ms_models = k * np.sum((rows - grand) ** 2) / (m - 1)
    ms_images = m * np.sum((cols - grand) ** 2) / (k - 1)
    ms_resid = np.sum((x - rows[:, None] - cols[None, :] + grand) ** 2) / ((m - 1) * (k - 1))
    variance = (ms_models + ms_images - ms_resid) / (m * k)
    df = (ms_models + ms_images - ms_resid) ** 2 / (
        ms_models**2 / (m - 1) + ms_images**2 / (k - 1) + ms_resid**2 / ((m - 1) * (k - 1)))
    assert est.value == pytest.approx(grand)
    assert est.se**2 == pytest.approx(variance) and est.df == pytest.approx(df)
    assert est.split.models == pytest.approx((ms_models - ms_resid) / (m * k))
    assert est.split.images == pytest.approx((ms_images - ms_resid) / (m * k))
    assert est.split.residual == pytest.approx(ms_resid / (m * k))
    half = est.high - est.value
    from scipy import stats

    assert half == pytest.approx(stats.t.ppf(0.975, df) * np.sqrt(variance))
    assert est.p_above(est.low) == pytest.approx(0.025) and est.p_above(est.high) == pytest.approx(0.975)


def test_one_model_of_a_precision_is_named_as_not_covered():
    x = np.random.default_rng(1).normal(0, 1, (3, 8))
    design, draws = rows_of(("fp", "fp", "bnn"), 8)
    est = crossed_interval(difference(single_mean(x, draws, "bnn"), single_mean(x, draws, "fp")).values, design)
    assert est.uncovered == ("bnn",) and "does not cover BNN model variance" in est.covers
    fp_only = crossed_interval(single_mean(x, draws, "fp").values, design)
    assert fp_only.uncovered == () and fp_only.covers.startswith("2 FP and 1 BNN models and 8 images")
    with pytest.raises(InferenceError, match="rows of this design"):
        crossed_interval(np.zeros(5), design)


def single_values(rng, n_images: int, model_sd: float, shared_sd: float, image_sd: float, cell_sd: float):
    """(6, K): FP mean 0, BNN mean 1; model effects, image effects shared by both precisions and per precision,
    cell noise."""
    mean = np.repeat([0.0, 1.0], 3)[:, None]
    per_precision = np.repeat(rng.normal(0, image_sd, (2, n_images)), 3, axis=0)
    return (mean + rng.normal(0, model_sd, (6, 1)) + rng.normal(0, shared_sd, n_images) + per_precision
            + rng.normal(0, cell_sd, (6, n_images)))


def pair_values(rng, n_images: int):
    """(6, 6, K) symmetric pair similarities: kind means (0.5 within a precision, 0.3 across), model
    effects shared by every pair of the model, pair effects, image effects (shared, and per kind), noise."""
    within = np.equal.outer(np.arange(6) < 3, np.arange(6) < 3)
    kind = np.where(within, 0.5, 0.3)
    u = rng.normal(0, 0.3, 6)
    w = np.triu(rng.normal(0, 0.1, (6, 6)), 1)
    kind_of = np.where(within, np.where(np.arange(6)[:, None] < 3, 0, 1), 2)
    e = np.triu(rng.normal(0, 0.3, (n_images, 6, 6)), 1).transpose(1, 2, 0)
    per_kind = rng.normal(0, 0.3, (3, n_images))
    return ((kind + u[:, None] + u[None, :] + w + w.T)[:, :, None] + rng.normal(0, 0.3, n_images)
            + per_kind[kind_of] + e + e.transpose(1, 0, 2))


REGIMES = {  # single-map values: SDs of (model, shared image, per-precision image, cell); pairs: None
    "model variance dominant": (1.0, 0.3, 0.2, 0.5),
    "image variance dominant": (0.0, 0.5, 1.0, 0.5),
    "mixed": (0.2, 0.5, 0.5, 1.0),
    "pair statistics": None,
}


def coverage(regime: str, studies: int = 2000, n_images: int = 24, seed: int = 0):
    """(coverage of the nominal 95 % crossed interval, mean variance shares) over simulated studies of 3 FP
    and 3 BNN models: BNN minus FP of single-map values, or FP-vs-BNN minus FP-vs-FP of pair values."""
    rng = np.random.default_rng(seed)
    design, draws = rows_of(FP3_BNN3, n_images)
    sds = REGIMES[regime]
    hits, shares = 0, []
    for _ in range(studies):
        if sds is None:
            p = pair_values(rng, n_images)
            stat, truth = difference(pair_mean(p, draws, "fp", "bnn"), pair_mean(p, draws, "fp", "fp")), -0.2
        else:
            x = single_values(rng, n_images, *sds)
            stat, truth = difference(single_mean(x, draws, "bnn"), single_mean(x, draws, "fp")), 1.0
        est = crossed_interval(stat.values, design)
        hits += est.low <= truth <= est.high
        shares.append(list(est.split.shares().values()))
        assert min(est.split.models, est.split.images, est.split.residual) >= 0
        assert est.split.total == pytest.approx(est.se**2)
    return hits / studies, np.mean(shares, axis=0)


@pytest.mark.parametrize("regime", list(REGIMES))
def test_crossed_interval_covers_93_to_97_percent_at_3_models_per_precision(regime):
    covered, (models, images, _) = coverage(regime)
    assert 0.93 <= covered <= 0.97, f"{regime}: {covered:.3f}"
    if regime in ("model variance dominant", "pair statistics"):
        assert models > 0.8
    if regime == "image variance dominant":
        assert images > 0.8


# -- scale-free similarity -------------------------------------------------------------------------------------


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of maps a and b (..., P) along the last axis."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))


def synthetic_maps(rng, n_images: int, shared: float, fp_own: float, bnn_own: float, pixels: int = 64):
    """Maps (6, K, P) of 3 FP and 3 BNN models: ``shared`` x content of the image seen by every model, plus
    ``fp_own`` / ``bnn_own`` x content seen by every model of that precision only, plus seed noise."""
    image = rng.standard_normal((n_images, pixels))
    own = {p: rng.standard_normal((n_images, pixels)) for p in ("fp", "bnn")}
    weight = {"fp": fp_own, "bnn": bnn_own}
    return np.stack([shared * image + weight[p] * own[p] + rng.standard_normal((n_images, pixels)) for p in FP3_BNN3])


def similarity_reading(maps: np.ndarray, scale: float = 1.0):
    """The scale-free reading of Pearson similarity (times ``scale``) of ``maps``; chance: each image's map
    against the next image's map of the other model."""
    n_images = maps.shape[1]
    same = scale * correlation(maps[:, None], maps[None, :])  # (6, 6, K)
    shuffled = scale * correlation(maps[:, None], np.roll(maps, 1, axis=1)[None, :])
    shuffled = (shuffled + shuffled.transpose(1, 0, 2)) / 2
    design, draws = rows_of(FP3_BNN3, n_images)
    kinds = (("fp", "bnn"), ("fp", "fp"), ("bnn", "bnn"))
    levels = [pair_mean(same, draws, *k).values for k in kinds] + [pair_mean(shuffled, draws, *k).values for k in kinds]
    return scale_free_similarity(*levels, design)


def test_maps_sharing_nothing_beyond_chance_with_reproducible_seeds_differ():
    result = similarity_reading(synthetic_maps(np.random.default_rng(0), 32, shared=0.0, fp_own=1.0, bnn_own=1.0))
    assert result.reading == DIFFER
    assert abs(result.ratio.value) < 0.1 and result.excess["fp-fp"].low > 0.3
    # the same maps on a measure with a tenth of the scale (baselines 0.05 above chance): the same reading
    small = similarity_reading(synthetic_maps(np.random.default_rng(0), 32, 0.0, 1.0, 1.0), scale=0.1)
    assert small.reading == DIFFER and small.excess["fp-fp"].value < 0.1
    assert small.ratio.value == pytest.approx(result.ratio.value)


def test_maps_sharing_everything_are_alike_and_half_shared_maps_differ():
    alike = similarity_reading(synthetic_maps(np.random.default_rng(1), 32, shared=1.5, fp_own=0.0, bnn_own=0.0))
    assert alike.reading == ALIKE and alike.ratio.low > 0.8
    half = similarity_reading(synthetic_maps(np.random.default_rng(1), 32, shared=1.0, fp_own=1.0, bnn_own=1.0))
    assert half.reading == DIFFER and 0.3 < half.ratio.value < 0.7


def test_seed_baselines_at_chance_are_not_reproducible():
    noise = similarity_reading(synthetic_maps(np.random.default_rng(2), 32, shared=0.0, fp_own=1.0, bnn_own=0.0))
    assert noise.reading == NOT_REPRODUCIBLE
    assert noise.excess["bnn-bnn"].low <= 0 < noise.excess["fp-fp"].low


def test_a_ratio_near_the_bound_on_few_images_is_inconclusive():
    few = similarity_reading(synthetic_maps(np.random.default_rng(3), 12, shared=1.0, fp_own=0.5, bnn_own=0.5))
    assert few.reading == UNDECIDED and few.ratio.low < 0.8 < few.ratio.high


# -- proportions -----------------------------------------------------------------------------------------------


def test_none_of_48_maps_has_the_exact_upper_bound_and_is_inconclusive_against_2_percent():
    zero = clustered_proportion(np.zeros((3, 16)))
    assert zero.value == 0 and zero.low == 0 and zero.high == pytest.approx(1 - 0.025 ** (1 / 48))
    assert 0.07 < zero.high < 0.075
    diff = proportion_difference(zero, clustered_proportion(np.zeros((3, 16))))
    assert diff.low < 0.02 < diff.high  # inconclusive: neither above nor at or below the margin
    assert diff.p_above(0.02) >= 0.5


def test_all_bnn_maps_flagged_against_no_fp_map_is_held():
    bnn, fp = clustered_proportion(np.ones((3, 16))), clustered_proportion(np.zeros((3, 16)))
    diff = proportion_difference(bnn, fp)
    assert diff.value == 1 and diff.low > 0.8 and diff.p_above(0.02) < 1e-4
    some = np.zeros((3, 16))
    some[0, :3] = 1  # 3 of 48 maps, all of one model
    few = proportion_difference(clustered_proportion(some), fp)
    assert few.a.design_effect > 2 and few.low < 0.02 < few.high and 0.025 < few.p_above(0.02) < 0.5


def test_models_that_disagree_widen_the_interval():
    together = clustered_proportion(np.tile([1.0, 0.0], (3, 12)))  # every model at 50 %
    apart = clustered_proportion(np.stack([np.ones(24), np.zeros(24), np.tile([1.0, 0.0], 12)]))  # 100, 0, 50 %
    assert together.value == apart.value == 0.5
    assert together.design_effect == 1 and apart.design_effect > 10
    assert apart.high - apart.low > 2 * (together.high - together.low)
    gaps = np.array([[1.0, np.nan], [np.nan, np.nan]])
    assert clustered_proportion(gaps).n == 1 and clustered_proportion(np.full((2, 2), np.nan)) is None


def test_holm_adjusts_step_down_and_leaves_unmeasured_tests_out():
    result = holm([0.01, 0.04, 0.03, 0.005])
    assert result.adjusted == pytest.approx((0.03, 0.06, 0.06, 0.02))
    assert result.rejected == (True, False, False, True)
    partial = holm([0.02, float("nan"), 0.04])
    assert partial.adjusted[0] == pytest.approx(0.04) and np.isnan(partial.adjusted[1])
    assert partial.rejected == (True, False, True)
    assert inference.one_sided_p(1.6448536) == pytest.approx(0.05)
    with pytest.raises(InferenceError, match="p-values"):
        holm([1.5])


# -- convergence -------------------------------------------------------------------------------------------------


def convergence_limit(fp: dict[int, float], bnn: dict[int, float], exponent: float, n_images: int = 64):
    """The crossed estimate of (BNN - FP) / FP at infinitely many samples from noise values whose model means
    are ``fp[n]`` and ``bnn[n]`` with 50 and 200 samples (same models and images, small noise)."""
    rng = np.random.default_rng(4)
    design, draws = rows_of(FP3_BNN3, n_images)
    base = rng.normal(0, 0.02, (6, n_images))
    means = {}
    for n in (50, 200):
        x = np.repeat([fp[n], bnn[n]], 3)[:, None] * (1 + base + rng.normal(0, 0.01, (6, n_images)))
        means[n] = (single_mean(x, draws, "fp").values, single_mean(x, draws, "bnn").values)
    fp_inf, bnn_inf = (extrapolated(means[50][i], means[200][i], 50, 200, exponent) for i in (0, 1))
    return crossed_interval((bnn_inf - fp_inf) / fp_inf, design)


def test_a_difference_that_halves_from_50_to_200_samples_is_monte_carlo_noise():
    # total variation, noise amplitude as n^-1/2: +60 % at 50 samples, +30 % at 200, no difference in the limit
    limit = convergence_limit({50: 1.0, 200: 1.0}, {50: 1.6, 200: 1.3}, exponent=0.5)
    assert limit.value == pytest.approx(0.0, abs=0.01) and convergence_reading(limit, 0.05) == MONTE_CARLO
    # an energy (1/n): +60 % at 50 and +15 % at 200 is noise; +60 % and +30 % leaves +20 % in the limit
    assert convergence_reading(convergence_limit({50: 1.0, 200: 1.0}, {50: 1.6, 200: 1.15}, 1.0), 0.05) == MONTE_CARLO
    energy = convergence_limit({50: 1.0, 200: 1.0}, {50: 1.6, 200: 1.3}, exponent=1.0)
    assert energy.value == pytest.approx(0.2, abs=0.01) and convergence_reading(energy, 0.05) == MODEL_PROPERTY


def test_a_stable_difference_is_a_model_property_and_a_borderline_one_cannot_tell():
    stable = convergence_limit({50: 1.0, 200: 1.0}, {50: 1.4, 200: 1.4}, exponent=0.5)
    assert stable.value == pytest.approx(0.4, abs=0.01) and convergence_reading(stable, 0.05) == MODEL_PROPERTY
    border = convergence_limit({50: 1.0, 200: 1.0}, {50: 1.1, 200: 1.075}, exponent=0.5)  # 0.05 in the limit
    assert border.low < 0.05 < border.high and convergence_reading(border, 0.05) == CANNOT_TELL
    assert convergence_reading(None, 0.05) == CANNOT_TELL
    assert extrapolated(np.array([0.615]), np.array([0.289]), 50, 200, 1.0) == pytest.approx((4 * 0.289 - 0.615) / 3)
    with pytest.raises(InferenceError, match="n_few < n_many"):
        extrapolated(1.0, 1.0, 200, 50, 1.0)
