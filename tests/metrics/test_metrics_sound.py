"""Known answers for the measures the study's verdicts rest on: robust noise, degenerate maps, similarity
inside an object mask, the image-shuffled pairing, localisation on a dilated mask."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from binsight.metrics._checks import MetricError
from binsight.metrics.baselines import degeneracy, derangement, is_degenerate, smooth_random_map
from binsight.metrics.localisation import dilate, energy_inside, pointing_game
from binsight.metrics.noise import high_frequency_energy, total_variation, total_variation_range
from binsight.metrics.similarity import shuffled_pairs, spearman, ssim, top_k_iou


def bump(size: int = 28, sigma: float = 5.0) -> np.ndarray:
    """A centred Gaussian bump, peak 1."""
    axis = np.arange(size) - (size - 1) / 2
    return np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))


def as_maps(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)[:, None].astype(np.float64))


# -- noise ---------------------------------------------------------------------------------------------


def test_structured_noise_raises_both_noise_measures():
    smooth = bump()
    rng = np.random.default_rng(0)
    stripes = 0.15 * np.tile(np.cos(np.pi * np.arange(28)), (28, 1))  # +-0.15 at the highest frequency
    speckle = 0.15 * rng.standard_normal((28, 28))
    maps = as_maps(smooth, smooth + stripes, smooth + speckle)
    tv, hfe = total_variation(maps), high_frequency_energy(maps)
    assert tv[1] > 2 * tv[0] and tv[2] > 2 * tv[0]
    assert hfe[1] > 10 * hfe[0] and hfe[2] > 10 * hfe[0]


def test_one_hot_pixel_barely_moves_robust_tv_but_collapses_range_tv():
    smooth = bump() + 0.05 * np.random.default_rng(1).standard_normal((28, 28))
    hot = smooth.copy()
    hot[5, 9] = 100.0
    maps = as_maps(smooth, hot)
    robust, by_range = total_variation(maps), total_variation_range(maps)
    assert abs(robust[1] - robust[0]) < 0.05 * robust[0]  # one pixel in 784: at most 4 / 784 added
    assert by_range[1] < 0.1 * by_range[0]  # every other pixel scaled towards 0


def test_robust_tv_is_invariant_to_scale_and_offset_and_matches_the_checkerboard():
    rng = np.random.default_rng(2)
    base = scipy.ndimage.gaussian_filter(rng.standard_normal((20, 20)), 1.5)
    tv = total_variation(as_maps(base, 3.0 * base + 7.0, -0.01 * base, base))
    np.testing.assert_allclose(tv, tv[0], rtol=1e-12)
    board = np.indices((8, 8)).sum(0) % 2
    np.testing.assert_allclose(total_variation(as_maps(board)), (8 * 7 + 8 * 7) / 64)
    assert np.isnan(total_variation(as_maps(np.full((8, 8), 0.5)))).all()


def test_spiky_map_falls_back_to_the_range():
    spikes = np.zeros((28, 28))
    spikes[3, 4] = spikes[20, 20] = 1.0  # 2 of 784 pixels: the 99th percentile is 0
    np.testing.assert_allclose(total_variation(as_maps(spikes)), 8 / 784)


# -- degenerate maps -------------------------------------------------------------------------------------


def test_degeneracy_names_each_kind_of_useless_map():
    rng = np.random.default_rng(3)
    ok = rng.random((10, 10))
    near_off = 1 / (1 + np.exp(10 - 1e-4 * rng.random((10, 10))))  # every pixel near sigmoid(-10): range 5e-9
    offset = 0.9995 + 4e-4 * rng.random((10, 10))  # range 4e-4 on 1: within the 1e-3 tolerance
    nan = ok.copy()
    nan[2, 2] = np.nan
    negative = -ok - 0.1
    maps = as_maps(ok, np.zeros((10, 10)), np.full((10, 10), 2.0), near_off, offset, nan, negative, ok * 1e-6)
    assert list(degeneracy(maps)) == ["", "all zero", "constant", "flat", "flat", "not finite", "", ""]
    assert list(degeneracy(maps, relu=True))[6] == "all zero"  # nothing left after max(m, 0)
    assert list(is_degenerate(maps)) == [False, True, True, True, True, True, False, False]  # tiny is not flat


def test_span_catches_a_mask_that_is_off_everywhere():
    off = as_maps(4.5e-5 + 4e-4 * np.random.default_rng(4).random((10, 10)))  # range 4e-4 of a [0, 1] mask
    assert not is_degenerate(off)[0]  # relative to its own magnitude it varies a lot
    assert is_degenerate(off, span=1.0)[0]
    with pytest.raises(MetricError, match="span"):
        is_degenerate(off, span=0.0)


# -- similarity inside a mask ------------------------------------------------------------------------------


def object_and_background():
    """Masks of an object, map a (the object's saliency, zero elsewhere) and b (a plus background noise)."""
    rng = np.random.default_rng(5)
    mask = np.zeros((28, 28), dtype=bool)
    mask[4:24, 6:22] = True  # 320 of 784 pixels (41 %), about a Fashion-MNIST object's share
    inside = scipy.ndimage.gaussian_filter(rng.random((28, 28)), 2) * 10
    a = np.where(mask, inside + 1.0, 0.0)
    b = np.where(mask, inside + 1.0, 0.3 * rng.random((28, 28)))
    return torch.from_numpy(mask)[None, None], as_maps(a), as_maps(b)


def test_maps_identical_on_the_object_score_one_inside_the_mask():
    mask, a, b = object_and_background()
    for measure in (spearman, ssim, top_k_iou):
        np.testing.assert_allclose(measure(a, b, mask=mask), 1.0, rtol=0, atol=1e-12)
    other = b.clone()
    other[mask] = other[mask].flip(0)  # the same values in another order on the object
    for measure in (spearman, ssim, top_k_iou):
        assert measure(a, other, mask=mask)[0] < 0.7


def test_whole_image_spearman_is_driven_by_the_background():
    # The review's finding: two maps identical on the object, one zero elsewhere, the other noisy there,
    # give whole-image Spearman 0.90 and top-10 % IoU 1.00: the whole-image number is set by how the
    # background is ranked, not by the object; inside the object mask both are 1.
    mask, a, b = object_and_background()
    whole, inside = spearman(a, b)[0], spearman(a, b, mask=mask)[0]
    assert 0.85 < whole < 0.95 and inside == pytest.approx(1.0)
    assert top_k_iou(a, b)[0] == 1.0  # the top pixels are on the object in both maps
    shuffled_b = as_maps(np.random.default_rng(6).permutation(b.numpy().ravel()).reshape(28, 28))
    assert spearman(a, shuffled_b, mask=mask)[0] < 0.3  # a different order on the object is caught


def test_masked_measures_need_two_pixels_and_a_valid_mask():
    _, a, b = object_and_background()
    one = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    one[0, 0, 3, 3] = True
    assert np.isnan(spearman(a, b, mask=one)).all() and np.isnan(ssim(a, b, mask=one)).all()
    with pytest.raises(MetricError, match="dtype torch.bool"):
        spearman(a, b, mask=one.float())


def test_shuffled_pairs_is_a_seeded_derangement():
    for n, seed in [(2, 0), (5, 1), (128, 7)]:
        perm = shuffled_pairs(n, seed)
        assert sorted(perm) == list(range(n)) and (perm != np.arange(n)).all()
        np.testing.assert_array_equal(perm, derangement(n, seed))
    assert not np.array_equal(shuffled_pairs(50, 0), shuffled_pairs(50, 1))
    with pytest.raises(MetricError, match="at least 2"):
        shuffled_pairs(1, 0)


def test_smooth_random_map_is_seeded_smooth_and_in_unit_range():
    a, b = smooth_random_map((2, 1, 28, 28), seed=3), smooth_random_map((2, 1, 28, 28), seed=3)
    assert torch.equal(a, b) and float(a.min()) == 0.0 and float(a.max()) == 1.0
    assert (high_frequency_energy(a) < 0.2).all() and (high_frequency_energy(torch.rand(2, 1, 28, 28)) > 0.6).all()


# -- localisation on a dilated mask -------------------------------------------------------------------------


def test_dilation_counts_the_contour_as_on_the_object():
    mask = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    mask[0, 0, 10:18, 10:18] = True
    ring = dilate(mask, 2) & ~mask  # within 2 pixels outside the object
    assert int(dilate(mask, 0).sum()) == 64 and int(dilate(mask, 2).sum()) == 12 * 12 - 4 * 3  # 3 pixels of each corner are > 2 away
    ring_map = ring.double()
    assert energy_inside(ring_map, mask)[0] == 0.0 and energy_inside(ring_map, mask, dilation=2)[0] == 1.0
    peak = torch.zeros(1, 1, 28, 28)
    peak[0, 0, 9, 13] = 1.0  # one pixel above the object
    assert pointing_game(peak, mask)[0] == 0.0 and pointing_game(peak, mask, tolerance=1)[0] == 1.0
    with pytest.raises(MetricError, match="whole pixels"):
        dilate(mask, 1.5)
