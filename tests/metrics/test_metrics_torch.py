"""The torch measures (similarity, noise) equal their former NumPy / SciPy / scikit-image per-image
computations (kept here as references) on random and degenerate maps: constant, all zero, one hot pixel, ties, NaN; with and
without a mask; whatever the batch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import structural_similarity

from binsight.metrics import noise
from binsight.metrics.similarity import SSIM_WINDOW, spearman, ssim, top_k_iou

TOLERANCE = 1e-10
"""Largest |torch - reference| allowed (both float64: the ranks are exact, SSIM's window means are sums
of 49 values taken in another order)."""


def unit(v: np.ndarray) -> np.ndarray:
    span = v.max() - v.min()
    return (v - v.min()) / span if np.isfinite(span) and span > 0 else np.full(v.shape, np.nan)


def reference_spearman(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The former definition: average ranks (scipy.stats.rankdata) of the (masked) pixels, Pearson r."""
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        keep = np.ones(a[i].shape, bool) if mask is None else mask[i]
        x, y = a[i][keep], b[i][keep]
        if keep.sum() < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
            continue
        rx, ry = scipy.stats.rankdata(x), scipy.stats.rankdata(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        den = np.sqrt((rx * rx).sum() * (ry * ry).sum())
        if den > 0:
            out[i] = np.clip((rx * ry).sum() / den, -1, 1)
    return out


def reference_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The former definition: scikit-image's structural_similarity of the maps scaled to [0, 1]; with a
    mask, scaled on the mask, 0 off it, the full SSIM map averaged on the mask's interior pixels."""
    out = np.full(len(a), np.nan)
    height, width = a.shape[-2:]
    pad = SSIM_WINDOW // 2
    interior = np.zeros((height, width), bool)
    interior[pad:height - pad, pad:width - pad] = True
    for i in range(len(a)):
        if mask is None:
            x, y = unit(a[i]), unit(b[i])
            if np.isfinite(x).all() and np.isfinite(y).all():
                out[i] = structural_similarity(x, y, data_range=1.0, win_size=SSIM_WINDOW)
            continue
        keep = mask[i]
        counted = keep & interior
        if keep.sum() < 2 or not counted.any():
            continue
        planes = []
        for v in (a[i], b[i]):
            plane = np.zeros((height, width))
            plane[keep] = unit(v[keep])
            planes.append(plane)
        if all(np.isfinite(p).all() for p in planes):
            _, full = structural_similarity(*planes, data_range=1.0, win_size=SSIM_WINDOW, full=True)
            out[i] = full[counted].mean()
    return out


def reference_top_k_iou(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None, k: float = 0.1) -> np.ndarray:
    """The former definition: the max(1, round(k n)) largest (masked) pixels by a stable argsort, IoU."""
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        keep = np.ones(a[i].shape, bool) if mask is None else mask[i]
        x, y = a[i][keep], b[i][keep]
        if (mask is not None and keep.sum() < 2) or not (np.isfinite(x).all() and np.isfinite(y).all()):
            continue
        count = max(1, round(k * x.size))
        top_x = set(np.argsort(-x, kind="stable")[:count])
        top_y = set(np.argsort(-y, kind="stable")[:count])
        out[i] = len(top_x & top_y) / len(top_x | top_y)
    return out


def maps_with_degenerate_ones(seed: int, size: int = 12) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """a, b float64 (N, 1, size, size) and a mask: random pairs, then constant, all-zero, one-hot, tied
    (4 levels), NaN, and a map identical / reversed to its partner."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    a = [rng.random(shape) for _ in range(4)]
    b = [rng.random(shape) for _ in range(4)]
    hot = np.zeros(shape)
    hot[3, 5] = 2.0
    tied = np.floor(rng.random(shape) * 4)
    nan = rng.random(shape)
    nan[1, 1] = np.nan
    a += [np.full(shape, 0.5), np.zeros(shape), hot, tied, nan, tied, a[0], hot]
    b += [rng.random(shape), rng.random(shape), rng.random(shape), np.floor(rng.random(shape) * 3), rng.random(shape),
          tied, -a[0], hot.T]
    mask = rng.random((len(a), *shape)) < 0.6
    mask[-1] = False
    mask[-1, 3, 5] = True  # one pixel: too few
    mask[-2, :2] = True  # covers the NaN of map 8 in the rows it adds
    to_maps = lambda arrays: torch.from_numpy(np.stack(arrays)[:, None])  # noqa: E731
    return to_maps(a), to_maps(b), torch.from_numpy(mask)[:, None]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("masked", [False, True])
def test_spearman_and_ssim_equal_the_reference(seed, masked):
    a, b, mask = maps_with_degenerate_ones(seed)
    m = mask if masked else None
    m_np = mask[:, 0].numpy() if masked else None
    pairs = ((spearman, reference_spearman), (ssim, reference_ssim), (top_k_iou, reference_top_k_iou))
    for measure, reference in pairs:
        ours = measure(a, b, mask=m)
        theirs = reference(a[:, 0].numpy(), b[:, 0].numpy(), m_np)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE, equal_nan=True)
        assert ours.dtype == np.float64 and ours.shape == (len(a),)
    assert np.isnan(spearman(a, b)[4:6]).all() and np.isnan(ssim(a, b)[4:6]).all()  # constant, all zero


def test_torch_similarity_does_not_depend_on_the_batch_and_takes_float32():
    a, b, mask = maps_with_degenerate_ones(2, size=10)
    for measure in (spearman, ssim, top_k_iou):
        whole = measure(a, b, mask=mask)
        parts = np.concatenate([measure(a[s], b[s], mask=mask[s]) for s in (slice(0, 3), slice(3, None))])
        np.testing.assert_array_equal(whole, parts)
        single = measure(a.float(), b.float())
        np.testing.assert_allclose(single, measure(a.float().double(), b.float().double()), rtol=0, atol=0)


def test_top_k_iou_takes_k_of_the_mask_and_breaks_ties_by_position():
    a, b, mask = maps_with_degenerate_ones(3, size=10)
    for k in (0.05, 0.25, 1.0):
        theirs = reference_top_k_iou(a[:, 0].numpy(), b[:, 0].numpy(), mask[:, 0].numpy(), k)
        np.testing.assert_allclose(top_k_iou(a, b, k, mask=mask), theirs, rtol=0, atol=TOLERANCE)


# -- noise ------------------------------------------------------------------------------------------------


def reference_tv(values: np.ndarray, robust: bool) -> np.ndarray:
    """The former NumPy definitions: clipped to the 1st / 99th percentiles (range when they coincide) or not,
    scaled to [0, 1], anisotropic TV per pixel. values (N, H, W)."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if not np.isfinite(v).all():
            continue
        if robust:
            low, high = np.quantile(v, [0.01, 0.99])
            if high <= low:
                low, high = v.min(), v.max()
            v = np.clip(v, low, high)
        u = unit(v)
        out[i] = (np.abs(np.diff(u, axis=1)).sum() + np.abs(np.diff(u, axis=0)).sum()) / v.size
    return out


def reference_hfe(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if not np.isfinite(v).all() or v.max() == v.min():
            continue
        power = np.abs(np.fft.fft2(v - v.mean())) ** 2
        fy, fx = np.fft.fftfreq(v.shape[0])[:, None], np.fft.fftfreq(v.shape[1])[None, :]
        out[i] = power[np.sqrt(fx**2 + fy**2) > 0.25].sum() / power.sum()
    return out


def reference_gini_entropy(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g, e = np.full(len(values), np.nan), np.full(len(values), np.nan)
    for i, v in enumerate(values):
        c = np.sort(np.abs(v.ravel()))
        if np.isfinite(c).all() and c.sum() > 0:
            n = c.size
            g[i] = ((2 * np.arange(1, n + 1) - n - 1) * c).sum() / (n * c.sum())
            e[i] = scipy.stats.entropy(c)
    return g, e


def reference_ranks(values: np.ndarray) -> np.ndarray:
    return np.stack([scipy.stats.rankdata(v.ravel()).reshape(v.shape) if np.isfinite(v).all()
                     else np.full(v.shape, np.nan) for v in values])


def test_noise_measures_equal_the_reference():
    a, b, _ = maps_with_degenerate_ones(4, size=14)
    spiky = np.zeros((14, 14))
    spiky[2, 3] = 1.0  # 1 pixel in 196: the 99th percentile is 0, the range is used
    maps = torch.cat([a, b, torch.from_numpy(spiky)[None, None]])
    values = maps[:, 0].numpy()
    cases = [(noise.total_variation, reference_tv(values, robust=True)),
             (noise.total_variation_range, reference_tv(values, robust=False)),
             (noise.high_frequency_energy, reference_hfe(values)),
             (noise.gini, reference_gini_entropy(values)[0]), (noise.entropy, reference_gini_entropy(values)[1]),
             (noise.rank_total_variation, reference_tv(reference_ranks(values), robust=False)),
             (noise.rank_high_frequency_energy, reference_hfe(reference_ranks(values)))]
    for measure, theirs in cases:
        ours = measure(maps)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=measure.__name__)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE, equal_nan=True, err_msg=measure.__name__)
    parts = np.concatenate([noise.total_variation(maps[:5]), noise.total_variation(maps[5:])])
    np.testing.assert_array_equal(parts, noise.total_variation(maps))


# -- chance-map primitives ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma, size", [(0.5, (9, 7)), (2.0, (28, 28)), (3.0, (5, 6)), (6.0, (12, 3))])
def test_gaussian_blur_equals_scipy_also_when_the_kernel_outgrows_the_map(sigma, size):
    import scipy.ndimage

    from binsight.metrics.baselines import gaussian_blur

    values = torch.rand(3, 2, *size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theirs = scipy.ndimage.gaussian_filter(values.numpy(), sigma=(0, 0, sigma, sigma), mode="reflect")
    np.testing.assert_allclose(gaussian_blur(values, sigma).numpy(), theirs, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(gaussian_blur(values[1:], sigma).numpy(), gaussian_blur(values, sigma)[1:].numpy())


def test_smooth_random_map_equals_the_former_scipy_blur():
    import scipy.ndimage

    from binsight.metrics.baselines import random_map, smooth_random_map

    noise = random_map((3, 1, 28, 28), seed=5).double().numpy()
    smooth = scipy.ndimage.gaussian_filter(noise, sigma=(0, 0, 2.0, 2.0), mode="reflect")
    low, high = smooth.min(axis=(1, 2, 3), keepdims=True), smooth.max(axis=(1, 2, 3), keepdims=True)
    expected = ((smooth - low) / (high - low)).astype(np.float32)
    np.testing.assert_allclose(smooth_random_map((3, 1, 28, 28), seed=5).numpy(), expected, rtol=0, atol=1e-6)


# -- localisation -------------------------------------------------------------------------------------------


def test_dilation_pointing_game_and_energy_equal_the_reference():
    import scipy.ndimage
    from skimage.morphology import disk

    from binsight.metrics.localisation import dilate, energy_inside, pointing_game

    a, _, mask = maps_with_degenerate_ones(5, size=11)
    mask[2] = False  # an empty mask
    mask[3, 0, 0, :] = True  # on the border
    values, inside = a[:, 0].numpy(), mask.numpy()
    for radius in (0, 1, 2, 3):
        grown = (scipy.ndimage.binary_dilation(inside, structure=disk(radius).astype(bool)[None, None])
                 if radius else inside)
        np.testing.assert_array_equal(dilate(mask, radius).numpy(), grown)
        objects = grown[:, 0].reshape(len(values), -1)
        flat = values.reshape(len(values), -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            is_max = flat == flat.max(1, keepdims=True)
            pointing = np.where(objects.any(1), (is_max & objects).sum(1) / is_max.sum(1), np.nan)
            energy = np.abs(flat)
            share = np.where(objects.any(1) & (energy.sum(1) > 0), (energy * objects).sum(1) / energy.sum(1), np.nan)
        np.testing.assert_allclose(pointing_game(a, mask, tolerance=radius), pointing, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(energy_inside(a, mask, dilation=radius), share, rtol=0, atol=TOLERANCE)
