"""Known answers for ROAD's batched noisy linear imputation (binsight.metrics.imputation): the torch CG
solve against the direct SciPy solve of the same system (the reference: a banded Cholesky per call, as
binsight solved it before), on random holes, holes at the border, a fully removed image and one removed
pixel; independence of the batch and chunking; the seeded noise. Every test runs with both solves: the
compiled CPU loop (numba, what the CPU uses) and the torch CG (what a GPU uses), here on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from binsight.metrics import MetricError, faithfulness, noisy_linear_imputation, road
from binsight.metrics import imputation
from binsight.metrics.imputation import linear_imputation

NEIGHBOURS = (((0, 1), 1 / 6), ((0, -1), 1 / 6), ((1, 0), 1 / 6), ((-1, 0), 1 / 6),
              ((1, 1), 1 / 12), ((1, -1), 1 / 12), ((-1, 1), 1 / 12), ((-1, -1), 1 / 12))
COMPILED = imputation._compiled_conjugate_gradients  # before the solver fixture may replace it

TOLERANCE = 1e-6
"""Largest |CG - SciPy| allowed on an imputed pixel (values in [0, 1]; the float64 solves agree to ~1e-10)."""


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def solver(request, monkeypatch):
    """Run the test with the compiled CPU solve (the default on the CPU) or with the torch CG."""
    if request.param == "torch":
        monkeypatch.setattr(imputation, "_compiled_conjugate_gradients", imputation._conjugate_gradients)
    return request.param


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


def test_a_fully_removed_image_takes_each_channels_mean_and_nothing_removed_is_unchanged():
    pixels, holes = case(n=2)
    nothing = torch.zeros(2, 1, 9, 11, dtype=torch.bool)
    assert torch.equal(noisy_linear_imputation(pixels.float(), nothing), pixels.float())
    holes[1] = True  # image 1 fully removed, image 0 not: the mean is image 1's alone
    imputed = linear_imputation(pixels, holes)
    expected = pixels[1].mean((1, 2), keepdim=True).expand(2, 9, 11)
    np.testing.assert_allclose(imputed[1].numpy(), expected.numpy(), rtol=0, atol=1e-12)
    assert_matches_reference(pixels[:1], holes[:1])
    # the mean is the average over the kept pixel of the one-kept-pixel imputation (a constant image)
    one_kept = []
    for k in range(99):
        keep_k = torch.ones(1, 1, 99, dtype=torch.bool)
        keep_k[..., k] = False
        one_kept.append(linear_imputation(pixels[1:], keep_k.view(1, 1, 9, 11)))
    np.testing.assert_allclose(torch.stack(one_kept).mean(0)[0].numpy(), expected.numpy(), rtol=0, atol=1e-6)


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


def reference_road(model, images: torch.Tensor, maps: np.ndarray, targets, percentages) -> np.ndarray:
    """ROAD most relevant first without noise, one image and percentage at a time with the SciPy solve: a
    count inside a tie group read on the line between the group's boundaries a and b (every tied pixel
    kept, every one removed); every pixel removed: each channel's mean."""
    n, size = images.shape[0], maps[0].size
    out = np.empty((n, len(percentages)))
    for i in range(n):
        values = maps[i].ravel()
        ranked = np.sort(values)[::-1]

        def probability(k: int) -> float:
            holes = (values >= ranked[k - 1]) if k > 0 else np.zeros(size, dtype=bool)
            pixels = images[i:i + 1].double().numpy()
            filled = (np.broadcast_to(pixels.mean(axis=(2, 3), keepdims=True), pixels.shape) if k == size
                      else reference_imputation(pixels, holes.reshape(1, *maps.shape[-2:])))
            with torch.no_grad():
                logits = model(torch.from_numpy(np.ascontiguousarray(filled)).float()).double()
            return float(torch.softmax(logits, 1)[0, targets[i]])

        for j, p in enumerate(percentages):
            c = int(np.rint(p / 100 * size))
            if 0 < c < size and ranked[c - 1] == ranked[c]:
                a, b = int((values > ranked[c]).sum()), int((values >= ranked[c]).sum())
                out[i, j] = probability(a) + (c - a) / (b - a) * (probability(b) - probability(a))
            else:
                out[i, j] = probability(c)
    return out


def test_road_with_tied_map_values_matches_the_reference_solve():
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 99, 3)).eval()
    pixels, _ = case(n=3, share=0.5, seed=8)
    rng = np.random.default_rng(9)
    maps = np.maximum(rng.standard_normal((3, 1, 9, 11)), 0)  # about half zeros: a tie reaching 100 %
    maps = np.ceil(4 * maps)  # positive values in a few levels: ties inside the ranking too
    percentages = (10, 25, 40, 55, 70, 85, 100)
    counts = torch.as_tensor(np.rint(np.array(percentages) / 100 * 99).astype(np.int64))
    assert (faithfulness._Points.of(torch.from_numpy(maps), counts).weight > 0).sum() >= 3  # read inside ties
    ours = road(model, pixels.float(), torch.from_numpy(maps), [0, 1, 2], percentages=percentages, noise=0.0)
    expected = reference_road(model, pixels.float(), maps, [0, 1, 2], percentages)
    np.testing.assert_allclose(ours.probability, expected, rtol=0, atol=TOLERANCE)


def test_the_compiled_and_the_torch_solves_agree_on_large_holes():
    # 28 x 28 with 90 % removed needs the most iterations; the two solves differ only in float64 rounding
    pixels, holes = case(n=4, channels=1, size=(28, 28), share=0.9, seed=11)
    mask = holes[:, 0].double()
    degree = imputation.neighbour_sum(torch.ones(1, 28, 28, dtype=torch.float64))
    rhs = mask * imputation.neighbour_sum(pixels[:, 0] * (1 - mask))
    compiled = COMPILED(rhs, mask, degree)
    torch_cg = imputation._conjugate_gradients(rhs, mask, degree)
    np.testing.assert_allclose(compiled[holes[:, 0]].numpy(), torch_cg[holes[:, 0]].numpy(), rtol=0, atol=1e-9)


def test_a_solve_that_does_not_converge_is_an_error(monkeypatch):
    monkeypatch.setattr(imputation, "_MIN_ITERATIONS", 2)
    monkeypatch.setattr(imputation, "_ITERATIONS_PER_SIDE", 0)
    pixels, holes = case(n=1, channels=1, size=(28, 28), share=0.9, seed=12)
    with pytest.raises(MetricError, match="did not converge"):
        linear_imputation(pixels, holes)


def test_the_compiled_solve_gives_the_same_on_one_thread_and_on_several():
    from binsight.metrics import _cg_kernel

    pixels, holes = case(n=6, channels=1, size=(16, 16), share=0.7, seed=13)
    mask = holes[:, 0].double()
    degree = imputation.neighbour_sum(torch.ones(1, 16, 16, dtype=torch.float64))
    rhs = (mask * imputation.neighbour_sum(pixels[:, 0] * (1 - mask))).numpy()
    outs = []
    for threads in (1, 2):
        out = np.zeros(rhs.shape)
        assert _cg_kernel.conjugate_gradients(rhs, mask.numpy(), degree[0].numpy(), 1e-10, 1000, out, threads).all()
        outs.append(out)
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-12)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through Linux's /proc")
def test_one_thread_starts_no_thread_pool():
    # the study's processes run one thread each: a compiled solve must not leave pool workers spinning
    script = ("import os, torch\n"
              "from binsight.metrics.imputation import linear_imputation\n"
              "torch.set_num_threads(1)\n"
              "x = torch.rand(8, 1, 12, 12, dtype=torch.float64)\n"
              "linear_imputation(x, torch.rand(8, 1, 12, 12) < 0.5)\n"
              "print(len(os.listdir('/proc/self/task')))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "1"
