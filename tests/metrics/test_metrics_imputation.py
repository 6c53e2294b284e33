"""Known answers for ROAD's batched noisy linear imputation (binsight.metrics.imputation): the torch CG
solve against the direct SciPy solve of the same system (the reference: a banded Cholesky per call, as
binsight solved it before), on random holes, holes at the border, a fully removed image and one removed
pixel; independence of the batch and chunking; the seeded noise."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from binsight.metrics import MetricError, noisy_linear_imputation, road
from binsight.metrics.imputation import linear_imputation

NEIGHBOURS = (((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
              ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12))
TOLERANCE = 1e-6
"""Largest |CG - SciPy| allowed on an imputed pixel (values in [0, 1]; the float64 solves agree to ~1e-10)."""


def reference_imputation(pixels: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """The noiseless imputation by SciPy's banded Cholesky solve: pixels float64 (N, C, H, W), holes bool
    (N, H, W); every removed pixel's equation d_u v_u - sum w v_removed = sum w x_kept, one banded system."""
    n, channels, height, width = pixels.shape
    flat, hole = pixels.reshape(n, channels, -1), holes.reshape(n, -1)
    hole_image, hole_pixel = np.nonzero(hole)
    unknown = np.full(hole.shape, -1)
    unknown[hole_image, hole_pixel] = np.arange(hole_image.size)
    rows, cols = np.divmod(hole_pixel, width)
    dense = np.zeros((hole_image.size, hole_image.size))
    rhs = np.zeros((hole_image.size, channels))
    for (dy, dx), weight in NEIGHBOURS:
        y, x = rows + dy, cols + dx
        for u in np.nonzero((y >= 0) & (y < height) & (x >= 0) & (x < width))[0]:
            neighbour = y[u] * width + x[u]
            dense[u, u] += weight
            if unknown[hole_image[u], neighbour] >= 0:
                dense[u, unknown[hole_image[u], neighbour]] -= weight
            else:
                rhs[u] += weight * flat[hole_image[u], :, neighbour]
    bandwidth = width + 1
    banded = np.zeros((bandwidth + 1, hole_image.size))
    for k in range(bandwidth + 1):  # upper form: ab[bandwidth + i - j, j] = A[i, j]
        banded[bandwidth - k, k:] = np.diagonal(dense, k)
    solution = scipy.linalg.solveh_banded(banded, rhs)
    out = flat.copy()
    out[hole_image, :, hole_pixel] = solution
    return out.reshape(pixels.shape)


def case(n: int = 3, channels: int = 2, size: tuple[int, int] = (9, 11), share: float = 0.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.rand(n, channels, *size, generator=g, dtype=torch.float64)
    holes = torch.rand(n, 1, *size, generator=g) < share
    return pixels, holes


def assert_matches_reference(pixels: torch.Tensor, holes: torch.Tensor) -> None:
    ours = linear_imputation(pixels, holes).numpy()
    theirs = reference_imputation(pixels.numpy(), holes[:, 0].numpy())
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOLERANCE)
    kept = ~holes.expand_as(pixels).numpy()
    np.testing.assert_array_equal(ours[kept], pixels.numpy()[kept])  # kept pixels exactly as given


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_random_holes_match_the_direct_solve(share):
    assert_matches_reference(*case(share=share, seed=int(share * 10)))


def test_holes_at_the_border_and_corners_match_the_direct_solve():
    pixels, _ = case(n=2, size=(8, 10))
    holes = torch.zeros(2, 1, 8, 10, dtype=torch.bool)
    holes[0, 0, 0, :] = holes[0, 0, :, -1] = True  # top row and right column: corner (0, 9) has 3 neighbours
    holes[1, 0, -3:, :4] = True  # a block in the bottom-left corner
    holes[1, 0, 0, 0] = True
    assert_matches_reference(pixels, holes)


def test_one_kept_pixel_and_one_removed_pixel_match_the_direct_solve():
    pixels, _ = case(n=2, size=(12, 12))
    holes = torch.ones(2, 1, 12, 12, dtype=torch.bool)
    holes[0, 0, 5, 7] = False  # all but one pixel removed: every imputed value is that pixel's
    holes[1] = False
    holes[1, 0, 0, 3] = True  # one removed pixel on the border: the mean of its 5 neighbours
    ours = linear_imputation(pixels, holes)
    np.testing.assert_allclose(ours[0].numpy(), pixels[0, :, 5, 7, None, None].expand(2, 12, 12).numpy(),
                               rtol=0, atol=TOLERANCE)
    weights = pixels[1, :, 0, [2, 4]].sum(1) / 6 + pixels[1, :, 1, 3] / 6 + pixels[1, :, 1, [2, 4]].sum(1) / 12
    np.testing.assert_allclose(ours[1, :, 0, 3].numpy(), (weights / (3 / 6 + 2 / 12)).numpy(), rtol=0, atol=1e-12)
    assert_matches_reference(pixels, holes)


def test_a_fully_removed_image_is_refused_and_nothing_removed_is_unchanged():
    pixels, _ = case(n=2)
    holes = torch.zeros(2, 1, 9, 11, dtype=torch.bool)
    assert torch.equal(noisy_linear_imputation(pixels.float(), holes), pixels.float())
    holes[1] = True
    with pytest.raises(MetricError, match="every pixel"):
        noisy_linear_imputation(pixels.float(), holes)


def test_a_ramp_is_reproduced_and_a_larger_image_matches_the_direct_solve():
    ramp = torch.linspace(0, 1, 28, dtype=torch.float64).expand(1, 1, 28, 28).clone()
    holes = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    holes[0, 0, 5:20, 3:25] = True  # interior: the symmetric weights are exact on a linear function
    np.testing.assert_allclose(linear_imputation(ramp, holes).numpy(), ramp.numpy(), rtol=0, atol=TOLERANCE)
    assert_matches_reference(*case(n=2, channels=3, size=(28, 28), share=0.9, seed=5))


def test_results_do_not_depend_on_the_batch():
    pixels, holes = case(n=6, share=0.6, seed=3)
    together = linear_imputation(pixels, holes)
    for part in (slice(0, 1), slice(1, 4), slice(4, 6)):
        # each system converges on its own, so the others in the call change nothing (float64 rounding only)
        np.testing.assert_allclose(linear_imputation(pixels[part], holes[part]).numpy(), together[part].numpy(),
                                   rtol=0, atol=1e-12)


def test_noise_is_seeded_and_only_on_removed_pixels():
    pixels, holes = case(n=2, share=0.3, seed=4)
    images = pixels.float()
    a = noisy_linear_imputation(images, holes, noise=0.01, rng=np.random.default_rng(7))
    b = noisy_linear_imputation(images, holes, noise=0.01, rng=np.random.default_rng(7))
    assert torch.equal(a, b) and a.dtype == torch.float32
    clean = noisy_linear_imputation(images, holes, noise=0.0)
    moved = (a - clean).abs() > 0
    assert torch.equal(moved, holes.expand_as(images))
    # the noise of the M removed pixels is rng.standard_normal((M, C)), pixels numbered image by image
    draws = np.random.default_rng(7).standard_normal((int(holes.sum()), 2))
    hole_image, hole_pixel = np.nonzero(holes[:, 0].reshape(2, -1).numpy())
    expected = clean.double().reshape(2, 2, -1).numpy()
    expected[hole_image, :, hole_pixel] += 0.01 * draws
    np.testing.assert_allclose(a.double().reshape(2, 2, -1).numpy(), expected, rtol=0, atol=1e-6)


def test_road_does_not_depend_on_the_batch_size():
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 99, 3)).eval()
    pixels, _ = case(n=5, share=0.5, seed=6)
    maps = torch.rand(5, 1, 9, 11, generator=torch.Generator().manual_seed(1))
    runs = [road(model, pixels.float(), maps, [0, 1, 2, 0, 1], percentages=(10, 50, 90), batch_size=size)
            for size in (1, 4, 1000)]
    for run in runs[1:]:
        np.testing.assert_allclose(run.probability, runs[0].probability, rtol=0, atol=1e-7)
