"""ROAD's imputation solve on the CPU: the same Jacobi-preconditioned conjugate gradients as
:func:`binsight.metrics.imputation._conjugate_gradients`, one system at a time in a loop compiled by numba.

Why a compiled loop on the CPU: torch applies CG one whole-tensor operation at a time, about sixteen passes
over memory per iteration; a compiled loop keeps one system's few kilobytes in the core's cache and makes
each iteration three vectorised sweeps of the grid, about 3x faster on 28 x 28 images (``python
benchmarks/bench_measures.py --only road`` prints the imputation alone). Systems are independent (one per thread at a time), so a system's result does
not depend on the others of the call. Imported on first use: numba compiles the loop once and keeps it in
its on-disk cache (``cache=True``), so later processes load it in well under a second.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def conjugate_gradients(rhs, mask, degree, tolerance, max_iterations, out, threads: int = 1):
    """Solve A v = rhs for each system s; (A v)_u = mask_u (degree_u v_u - sum_r w_ur v_r) on the removed
    pixels u (mask_u = 1), the 8-neighbour weights w 1/6 (direct) and 1/12 (diagonal).

    rhs, mask: float64 (S, H, W), rhs 0 where mask is 0; degree: float64 (H, W), each pixel's neighbour
    weights inside the image. Each system stops when r . r / d <= tolerance^2 rhs . rhs / d (the torch
    solve's rule) or after max_iterations. Writes the solutions into out (S, H, W) on the removed pixels
    (the others are left as they are) and returns bool (S,): whether each system met the tolerance.
    ``threads`` > 1 solves systems side by side on numba's thread pool; one thread never starts that pool
    (the study runs one process of one thread per core, where a pool's idle workers would spin beside the
    other processes' model passes).
    """
    if threads <= 1:
        return _serial(rhs, mask, degree, tolerance, max_iterations, out)
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return _parallel(rhs, mask, degree, tolerance, max_iterations, out)


@njit(cache=True)
def _serial(rhs, mask, degree, tolerance, max_iterations, out):  # pragma: no cover - compiled
    converged = np.zeros(rhs.shape[0], dtype=np.bool_)
    for s in range(rhs.shape[0]):
        converged[s] = _solve(rhs[s], mask[s], degree, tolerance, max_iterations, out[s])
    return converged


@njit(parallel=True, cache=True)
def _parallel(rhs, mask, degree, tolerance, max_iterations, out):  # pragma: no cover - compiled
    converged = np.zeros(rhs.shape[0], dtype=np.bool_)
    for s in prange(rhs.shape[0]):
        converged[s] = _solve(rhs[s], mask[s], degree, tolerance, max_iterations, out[s])
    return converged


@njit(cache=True, fastmath={"reassoc", "contract"})
def _solve(rhs, mask, degree, tolerance, max_iterations, out):  # pragma: no cover - compiled
    """One system of :func:`conjugate_gradients`: rhs, mask, out (H, W); whether it converged.

    Every array is the whole (H, W) grid, the kept pixels carrying zeros (mask 0): row after row of
    contiguous values, which the compiler turns into vector instructions (its sums reassociated: the result
    may differ by about 1e-16 between processors with vectors of other widths, never between two runs on
    one)."""
    height, width = rhs.shape
    p = np.zeros((height + 2, width + 2))  # padded by a ring of zeros: no bounds tests in the stencil
    x, r, ap = np.zeros((height, width)), np.empty((height, width)), np.empty((height, width))
    inverse, diagonal, edge_weight = np.empty((height, width)), np.empty((height, width)), np.empty((height, width))
    rz = 0.0
    for i in range(height):
        for j in range(width):
            m = mask[i, j]
            inverse[i, j] = m / degree[i, j]
            diagonal[i, j] = m * degree[i, j]
            edge_weight[i, j] = m * (1.0 / 12.0)
            r[i, j] = rhs[i, j]
            z = r[i, j] * inverse[i, j]
            p[i + 1, j + 1] = z
            rz += r[i, j] * z
    limit = tolerance * tolerance * rz
    iteration = 0
    while rz > limit and iteration < max_iterations:
        pap = 0.0
        for i in range(height):
            for j in range(width):
                q = p[i + 1, j + 1]
                edge = (2.0 * (p[i, j + 1] + p[i + 2, j + 1] + p[i + 1, j] + p[i + 1, j + 2])
                        + p[i, j] + p[i, j + 2] + p[i + 2, j] + p[i + 2, j + 2])
                v = diagonal[i, j] * q - edge_weight[i, j] * edge
                ap[i, j] = v
                pap += q * v
        alpha = rz / pap if pap != 0.0 else 0.0
        rz_next = 0.0
        for i in range(height):
            for j in range(width):
                x[i, j] += alpha * p[i + 1, j + 1]
                residual = r[i, j] - alpha * ap[i, j]
                r[i, j] = residual
                rz_next += residual * residual * inverse[i, j]
        beta = rz_next / rz
        for i in range(height):
            for j in range(width):
                p[i + 1, j + 1] = r[i, j] * inverse[i, j] + beta * p[i + 1, j + 1]
        rz = rz_next
        iteration += 1
    for i in range(height):
        for j in range(width):
            if mask[i, j] != 0.0:
                out[i, j] = x[i, j]
    return rz <= limit
