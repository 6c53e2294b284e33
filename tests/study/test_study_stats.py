"""The two-level bootstrap: hand-computed weighted means, paired differences, what an interval covers,
intervals that widen with model variance, and coverage on a simulated two-level model."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.study.stats import (
    Draws,
    covers,
    difference,
    draw,
    effect_size,
    estimate,
    pair_mean,
    relative_difference,
    single_mean,
)

FP3_BNN3 = ("fp",) * 3 + ("bnn",) * 3


def fixed_draws(models: list[list[float]], images: list[list[float]], precisions: tuple[str, ...]) -> Draws:
    return Draws(precisions, np.array(models, dtype=float), np.array(images, dtype=float), 0.95)


def symmetric(values: np.ndarray) -> np.ndarray:
    out = np.triu(values.transpose(2, 0, 1), 1).transpose(1, 2, 0)
    return out + out.transpose(1, 0, 2)


def test_pair_mean_skips_a_model_paired_with_itself_and_weights_by_counts():
    prec = ("fp", "fp", "fp", "bnn")
    p = np.zeros((4, 4, 2))
    p[0, 1] = p[1, 0] = [0.1, 0.3]
    p[0, 2] = p[2, 0] = [0.5, 0.5]
    p[1, 2] = p[2, 1] = [0.9, 0.9]
    p[0, 0] = p[1, 1] = [100.0, 100.0]  # the diagonal is never read
    # row 0: the sample; row 1: fp-0 drawn twice, fp-1 once; image 0 drawn twice; row 2: fp-0 three times
    d = fixed_draws([[1, 1, 1, 1], [2, 1, 0, 1], [3, 0, 0, 1]], [[1, 1], [2, 0], [1, 1]], prec)
    stat = pair_mean(p, d, "fp", "fp")
    assert stat.values[0] == pytest.approx(np.mean([0.1, 0.3, 0.5, 0.5, 0.9, 0.9]))
    assert stat.values[1] == pytest.approx(0.1)  # only the pair (fp-0, fp-1), on image 0
    assert np.isnan(stat.values[2])  # one model drawn: no pair
    assert stat.per_image == pytest.approx([0.5, 1.7 / 3])
    est = estimate(stat, d)
    assert est.n_resamples == 1 and est.low == est.high == pytest.approx(0.1)


def test_single_mean_of_one_precision_with_missing_cells():
    x = np.array([[1.0, np.nan, 3.0], [5.0, 5.0, 5.0], [10.0, 20.0, 30.0]])
    d = fixed_draws([[1, 1, 1], [0, 2, 1]], [[1, 1, 1], [0, 0, 3]], ("fp", "fp", "bnn"))
    fp = single_mean(x, d, "fp")
    assert fp.values[0] == pytest.approx((1 + 3 + 5 * 3) / 5)
    assert fp.values[1] == pytest.approx(5.0)
    assert fp.per_image == pytest.approx([3.0, 5.0, 4.0])
    assert single_mean(x, d).values[1] == pytest.approx((2 * 5 + 30) / 3)


def test_a_difference_is_paired_by_model_and_image():
    rng = np.random.default_rng(0)
    image_effect = rng.normal(0, 1.0, 50)
    values = symmetric(image_effect + rng.normal(0, 0.01, (6, 6, 50)))
    values[:3, 3:] += 0.2
    values[3:, :3] += 0.2
    d = draw(FP3_BNN3, 50, n_resamples=300, seed=1, confidence=0.95)
    fb, ff = pair_mean(values, d, "fp", "bnn"), pair_mean(values, d, "fp", "fp")
    diff, level = estimate(difference(fb, ff), d), estimate(ff, d)
    assert diff.low < 0.2 < diff.high
    # the image effect, shared by both terms of every draw, cancels: the difference is far more precise
    assert diff.high - diff.low < 0.05 * (level.high - level.low)
    exact = values.copy()
    exact[:3, 3:], exact[3:, :3], exact[:3, :3] = 0.7, 0.7, 0.5
    exact_diff = estimate(difference(pair_mean(exact, d, "fp", "bnn"), pair_mean(exact, d, "fp", "fp")), d)
    assert exact_diff.value == pytest.approx(0.2) and exact_diff.low == pytest.approx(exact_diff.high)


def test_draws_are_seeded_and_resample_within_precision():
    a = draw(FP3_BNN3, 20, n_resamples=200, seed=3, confidence=0.9)
    b = draw(FP3_BNN3, 20, n_resamples=200, seed=3, confidence=0.9)
    assert np.array_equal(a.models, b.models) and np.array_equal(a.images, b.images)
    assert (a.models[0] == 1).all() and (a.images[0] == 1).all()
    assert (a.models[1:, :3].sum(axis=1) == 3).all() and (a.models[1:, 3:].sum(axis=1) == 3).all()
    assert (a.images[1:].sum(axis=1) == 20).all() and a.models[1:].std() > 0
    single = draw(("fp", "bnn"), 20, n_resamples=50, seed=0, confidence=0.9)
    assert (single.models == 1).all()  # one model per precision: not resampled


def test_covers_says_what_was_resampled():
    both = draw(FP3_BNN3, 128, n_resamples=5, seed=0, confidence=0.95)
    assert covers(both, frozenset({"fp", "bnn"}), 128) == (
        "3 FP and 3 BNN models (resampled within precision) and 128 images (resampled)")
    one = draw(("fp", "bnn"), 64, n_resamples=5, seed=0, confidence=0.95)
    text = covers(one, frozenset({"fp", "bnn"}), 64)
    assert "models not resampled: 1 model per precision; the interval does not cover model variance" in text
    mixed = draw(("fp", "fp", "bnn"), 64, n_resamples=5, seed=0, confidence=0.95)
    text = covers(mixed, frozenset({"fp", "bnn"}), 64)
    assert "2 FP models (resampled)" in text and "does not cover BNN model variance" in text


def test_effect_sizes():
    assert effect_size(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0])) == pytest.approx(1.0)
    assert effect_size(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)
    assert effect_size(np.array([1.0, 1.0])) is None
    x = np.array([[2.0, 4.0], [1.0, 2.0]])
    d = fixed_draws([[1, 1]], [[1, 1]], ("bnn", "fp"))
    rel = relative_difference(single_mean(x, d, "bnn"), single_mean(x, d, "fp"))
    assert rel.values[0] == pytest.approx(1.0)  # BNN mean 3 is FP mean 1.5 plus 100 %


def simulate(rng: np.random.Generator, n_models: int, n_images: int, model_sd: float) -> np.ndarray:
    """Single-map values (2 n_models, n_images): precision means 0 (FP) and 1 (BNN), model effects,
    image effects per precision, cell noise."""
    mean = np.repeat([0.0, 1.0], n_models)[:, None]
    models = rng.normal(0, model_sd, (2 * n_models, 1))
    images = np.repeat(rng.normal(0, 0.5, (2, n_images)), n_models, axis=0)
    return mean + models + images + rng.normal(0, 0.5, (2 * n_models, n_images))


def bnn_minus_fp(x: np.ndarray, precisions: tuple[str, ...], seed: int, n_resamples: int = 400):
    d = draw(precisions, x.shape[1], n_resamples=n_resamples, seed=seed, confidence=0.9)
    return estimate(difference(single_mean(x, d, "bnn"), single_mean(x, d, "fp")), d)


def test_interval_widens_with_model_variance():
    rng = np.random.default_rng(0)
    prec = ("fp",) * 4 + ("bnn",) * 4
    widths = {}
    for sd in (0.0, 0.5):
        est = [bnn_minus_fp(simulate(rng, 4, 64, sd), prec, seed=i) for i in range(5)]
        widths[sd] = np.mean([e.high - e.low for e in est])
    assert widths[0.5] > 2 * widths[0.0]


def test_coverage_on_a_simulated_two_level_model_is_near_nominal():
    rng = np.random.default_rng(0)
    n_models, n_images, model_sd, reps = 8, 32, 0.6, 100
    prec = ("fp",) * n_models + ("bnn",) * n_models
    # the estimator's true SD: model effects, per-precision image effects and cell noise
    true_sd = np.sqrt(2 * model_sd**2 / n_models + 2 * 0.25 / n_images + 2 * 0.25 / (n_models * n_images))
    hits, widths, image_only_hits = 0, [], 0
    for rep in range(reps):
        x = simulate(rng, n_models, n_images, model_sd)
        est = bnn_minus_fp(x, prec, seed=rep)
        hits += est.low <= 1.0 <= est.high
        widths.append(est.high - est.low)
        # the same data with models averaged first: images are the only unit resampled
        pooled = np.stack([x[:n_models].mean(axis=0), x[n_models:].mean(axis=0)])
        naive = bnn_minus_fp(pooled, ("fp", "bnn"), seed=rep)
        image_only_hits += naive.low <= 1.0 <= naive.high
    # nominal 0.9; a bootstrap over 8 models per precision is a little narrow ((n - 1) / n of the variance)
    assert hits / reps >= 0.75
    assert 0.75 < np.mean(widths) / (2 * 1.645 * true_sd) < 1.25
    assert image_only_hits / reps < 0.65  # ignoring model variance undercovers: the check can tell
