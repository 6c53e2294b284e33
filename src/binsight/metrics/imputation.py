"""ROAD's noisy linear imputation (Rong et al., "A consistent and efficient evaluation strategy for
attribution methods", ICML 2022), as one batched solve in torch on the images' device.

Each removed pixel takes the weighted mean of its 8 neighbours inside the image (weights 1/6 for the direct
neighbours, 1/12 for the diagonal ones, renormalised at the border), whether those are kept or themselves
removed. For one image and channel with removed pixels R this is the linear system

    A v = b,   (A v)_u = d_u v_u - sum_{r in R, r ~ u} w_ur v_r,   b_u = sum_{k not in R, k ~ u} w_uk x_k,

with d_u the sum of the weights of u's neighbours inside the image. A is symmetric (a neighbour's weight is
the same both ways) and weakly diagonally dominant, positive definite when the image keeps a pixel.
An image with every pixel removed has no kept value to spread (A is singular, its null space the constant
images): it takes each channel's mean over the image, the average over which one pixel is kept of the
imputation that keeps only that pixel (a constant image of its value). ROAD needs this value where a group
of tied map values reaches the end of the ranking (:func:`binsight.metrics.faithfulness.road`).

How it is solved: preconditioned conjugate gradients (CG) with the Jacobi preconditioner d_u, each system
(one (image, channel) pair) with its own step sizes and its own stop. On a GPU (or any device but the
CPU) all systems of a call are one tensor (S, H, W) and applying A to all of them is one 3 x 3 stencil (a
separable [1, 2, 1] x [1, 2, 1] filter minus the centre: a handful of shifted adds), so the solve costs
O(iterations x S H W) with no per-image Python work (:func:`_conjugate_gradients`). On the CPU the same
iteration runs as a loop compiled by numba, one system per thread at a time over its removed pixels only
(:mod:`binsight.metrics._cg_kernel`): torch's whole-tensor operations make about sixteen passes over memory
per iteration, the compiled loop keeps a system in the core's cache (about 3x faster on 28 x 28 images). Why CG
and not a direct solve: the hole pattern differs per image, so a direct (banded Cholesky) factorisation is
one sparse factorisation per image; CG needs only the stencil. Its iterations grow with the largest hole's
diameter (about 100 for 28 x 28 and 32 x 32 images with 90 % removed; see
tests/test_metrics_imputation.py), and each system stops on its own once converged, so a system's result
does not depend on the other systems of the call nor on how a call is chunked.

Precision: the solve runs in float64 (on MPS, which has no float64, on the CPU) and stops when a system's
residual is at most :data:`RELATIVE_TOLERANCE` of its right-hand side; it then equals SciPy's direct solve
of the same system to about 1e-9 (tests: 1e-6). The result is cast back to the images' dtype.
Reference: ``NoisyLinearImputer`` of github.com/tleemann/road_evaluation (and Quantus'
``noisy_linear_imputation``, the same system solved by ``scipy.sparse.linalg.spsolve`` per image).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from binsight.metrics._checks import MetricError, check_images

ROAD_NOISE = 0.01
"""Standard deviation of the Gaussian noise added to imputed pixels, in pixel units ([0, 1]) - the
default of Rong et al.'s reference code (and of Quantus' ``noisy_linear_imputation``)."""

RELATIVE_TOLERANCE = 1e-10
"""CG stops for a system when |residual| <= RELATIVE_TOLERANCE |b| (Euclidean norms, float64)."""

_COMPACT_EVERY = 8
"""Iterations between two removals of the converged systems from CG's working set."""

_MIN_ITERATIONS, _ITERATIONS_PER_SIDE = 500, 50
"""CG gives up (MetricError) after max(500, 50 (H + W)) iterations: far above the about 3 (H + W) a
one-kept-pixel image needs (tests/test_metrics_imputation.py)."""


def noisy_linear_imputation(
    images: torch.Tensor,
    removed: torch.Tensor,
    *,
    noise: float = ROAD_NOISE,
    rng: np.random.Generator | None = None,
    fields: torch.Tensor | None = None,
) -> torch.Tensor:
    """Replace the removed pixels of each image by the weighted mean of their neighbours, plus noise.

    images: float (N, C, H, W); removed: bool (N, 1, H, W), True where a pixel is to be imputed. Every
    channel of every image is solved at once (module docstring). Then Gaussian noise of std ``noise`` is
    added to each imputed value: ``rng.standard_normal((M, C))`` (``rng`` default
    ``numpy.random.default_rng(0)``) for the M removed pixels of the call, numbered image by image in
    row-major order, so the noise of a pixel depends only on the stream's position, not on the device.
    An image with every pixel removed takes each channel's mean (module docstring), plus the noise.
    ``fields``: float (N, C, H, W) standard normal draws, or None; given, image n's imputed pixels get
    ``noise`` times ``fields[n]`` at their own positions instead of draws from ``rng``, so that an image's
    noise does not depend on the other images of the call (the chance test scores its chance maps in
    varying company: :mod:`binsight.metrics.chance`).
    Returns the imputed images, same shape, dtype and device as ``images``; kept pixels are unchanged.
    """
    images = check_images(images)
    if not isinstance(removed, torch.Tensor) or removed.dtype != torch.bool:
        raise MetricError("removed must be a bool tensor (N, 1, H, W), True where a pixel is to be imputed")
    n, channels, height, width = images.shape
    if tuple(removed.shape) != (n, 1, height, width):
        raise MetricError(
            f"removed has shape {tuple(removed.shape)}; for these images it must be {(n, 1, height, width)}"
        )
    if not noise >= 0:
        raise MetricError(f"noise is a standard deviation and must be >= 0, got {noise}")
    device = images.device if images.device.type != "mps" else torch.device("cpu")
    holes = removed.detach().to(device)
    pixels = images.detach().to(device, torch.float64)
    solved = linear_imputation(pixels, holes)
    if fields is not None:
        if tuple(fields.shape) != tuple(images.shape):
            raise MetricError(f"fields has shape {tuple(fields.shape)}; it must be the images' {tuple(images.shape)}")
        drawn = noise * holes.to(torch.float64) * fields.detach().to(device, torch.float64)
        return (solved + drawn).to(images.device, images.dtype)
    rng = rng if rng is not None else np.random.default_rng(0)
    return _with_noise(solved, holes, noise, rng).to(images.device, images.dtype)


def _with_noise(solved: torch.Tensor, holes: torch.Tensor, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """``solved`` (N, C, H, W) plus ``noise`` times ``rng``'s normals on the holes (order: docstring above)."""
    n, channels, height, width = solved.shape
    count = int(holes.sum())
    if count == 0:
        return solved
    draws = torch.from_numpy(rng.standard_normal((count, channels))).to(solved.device)
    grid = torch.zeros(n, height * width, channels, dtype=solved.dtype, device=solved.device)
    grid[holes.view(n, -1)] = noise * draws  # boolean indexing walks the holes in row-major order
    return solved + grid.transpose(1, 2).reshape(solved.shape)


def linear_imputation(pixels: torch.Tensor, holes: torch.Tensor) -> torch.Tensor:
    """The noiseless imputation: ``pixels`` float64 (N, C, H, W) with the ``holes`` (bool (N, 1, H, W)) solved.

    One preconditioned CG solve over all N C systems: on the CPU the compiled loop of
    :mod:`binsight.metrics._cg_kernel`, elsewhere (or without numba installed) :func:`_conjugate_gradients`
    (the same iteration and stopping rule); an image with every pixel removed takes each channel's mean
    (module docstring).
    """
    n, channels, height, width = pixels.shape
    inside = holes.expand(n, channels, height, width).reshape(n * channels, height, width)
    values = pixels.reshape(n * channels, height, width)
    if not inside.any():
        return pixels.clone()
    mask = inside.to(pixels.dtype)
    degree = neighbour_sum(torch.ones_like(values[:1]))  # d_u: the weights of u's neighbours inside the image
    rhs = mask * neighbour_sum(values * (1 - mask))
    compiled = rhs.device.type == "cpu" and importlib.util.find_spec("numba") is not None
    solve = _compiled_conjugate_gradients if compiled else _conjugate_gradients
    solution = solve(rhs, mask, degree)  # a fully removed system: rhs 0, solution 0
    removed_all = inside.flatten(1).all(1)
    solution[removed_all] = values[removed_all].mean((1, 2), keepdim=True).expand(-1, height, width)
    return torch.where(inside, solution, values).view(pixels.shape)


def _compiled_conjugate_gradients(rhs: torch.Tensor, mask: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """:func:`_conjugate_gradients` on CPU tensors by :func:`binsight.metrics._cg_kernel.conjugate_gradients`
    (numba), on as many threads as torch uses."""
    from binsight.metrics import _cg_kernel

    height, width = rhs.shape[1:]
    out = np.zeros(tuple(rhs.shape))
    threads = torch.get_num_threads() if len(rhs) > 1 else 1
    converged = _cg_kernel.conjugate_gradients(
        rhs.contiguous().numpy(), mask.contiguous().numpy(), degree[0].contiguous().numpy(), RELATIVE_TOLERANCE,
        max(_MIN_ITERATIONS, _ITERATIONS_PER_SIDE * (height + width)), out, threads)
    if not converged.all():
        raise MetricError(f"the imputation did not converge ({int((~converged).sum())} of {len(converged)} "
                          f"systems); please report this with the image size ({height} x {width}) and the share "
                          "of pixels removed")
    return torch.from_numpy(out)


def neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """sum over the 8 neighbours inside the grid of w * v (w = 1/6 direct, 1/12 diagonal): v (S, H, W).

    The stencil [[1, 2, 1], [2, 0, 2], [1, 2, 1]] / 12 is :func:`_binomial` minus 4 at the centre, over 12;
    outside the grid counts as 0.
    """
    return (_binomial(v) - 4 * v) / 12


def _binomial(v: torch.Tensor) -> torch.Tensor:
    """The separable [1, 2, 1] x [1, 2, 1] filter of v (S, H, W), zero outside the grid."""
    rows = 2 * v
    rows[:, :, 1:] += v[:, :, :-1]
    rows[:, :, :-1] += v[:, :, 1:]
    both = 2 * rows
    both[:, 1:] += rows[:, :-1]
    both[:, :-1] += rows[:, 1:]
    return both


def _conjugate_gradients(rhs: torch.Tensor, mask: torch.Tensor, degree: torch.Tensor) -> torch.Tensor:
    """Solve A v = rhs for every system (S, H, W) at once; A v = mask (degree v - neighbour_sum(v)).

    Jacobi-preconditioned CG, each system with its own step sizes. A system stops when its residual in the
    preconditioner's norm, r . r / d, is at most RELATIVE_TOLERANCE^2 of rhs . rhs / d (d in [5/12, 1],
    so the Euclidean relative residual is within a factor 1.6 of RELATIVE_TOLERANCE); its solution is final
    from that iteration on. Converged systems are written out and dropped from the working set every
    _COMPACT_EVERY iterations. A v is computed as centre v - edge _binomial(v), with centre = mask (d + 1/3)
    and edge = mask / 12 (fewer passes over memory than the stencil as written).
    """
    height, width = rhs.shape[1:]
    solution = torch.zeros_like(rhs)
    active = torch.arange(rhs.shape[0], device=rhs.device)
    centre, edge, inverse = mask * (degree + 1 / 3), mask / 12, mask / degree
    x, r = torch.zeros_like(rhs), rhs.clone()
    p = r * inverse
    rz = _dot(r, p)
    limit = RELATIVE_TOLERANCE**2 * rz
    done = rz <= limit
    for iteration in range(max(_MIN_ITERATIONS, _ITERATIONS_PER_SIDE * (height + width))):
        if iteration % _COMPACT_EVERY == 0:
            solution[active[done]] = x[done]
            keep = ~done
            if not bool(keep.any()):
                return solution
            active, x, r, p, rz, limit, done, centre, edge, inverse = (
                t[keep] for t in (active, x, r, p, rz, limit, done, centre, edge, inverse))
        ap = torch.addcmul(centre * p, edge, _binomial(p), value=-1)
        alpha = _ratio(rz, _dot(p, ap), done)[:, None, None]
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        z = r * inverse
        rz_next = _dot(r, z)
        done = done | (rz_next <= limit)
        p = torch.addcmul(z, _ratio(rz_next, rz, done)[:, None, None], p)
        rz = rz_next
    worst = float((rz / limit.clamp_min(1e-300)).max().sqrt()) * RELATIVE_TOLERANCE
    raise MetricError(f"the imputation did not converge (largest relative residual {worst:.1e}); please report "
                      f"this with the image size ({height} x {width}) and the share of pixels removed")


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-system inner product of (S, H, W) tensors: (S,)."""
    return torch.linalg.vecdot(a.flatten(1), b.flatten(1))


def _ratio(num: torch.Tensor, den: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
    """num / den per system, 0 where the system is done or den is 0 (a converged or empty system)."""
    stop = done | (den == 0)
    return torch.where(stop, torch.zeros_like(num), num / torch.where(stop, torch.ones_like(den), den))
