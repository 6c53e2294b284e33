"""ROAD's imputation solve on the CPU: the same Jacobi-preconditioned conjugate gradients as
:func:`binsight.metrics.imputation._conjugate_gradients`, one system at a time in a loop compiled by numba.

Why a compiled loop on the CPU: torch applies CG one whole-tensor operation at a time, about sixteen passes
over memory per iteration; a compiled loop keeps one system's few kilobytes in the core's cache and visits
only its removed pixels: about 3x faster on 28 x 28 images (1.35 -> 0.43 ms per image of 9 percentages on
2 threads: ``python benchmarks/bench_measures.py --only road`` prints the imputation alone). Systems are
independent (one per thread at a time), so a system's result does not depend on the others of the call.
Imported on first use: numba compiles the loop once and keeps it in its on-disk cache (``cache=True``), so
later processes load it in well under a second.
"""

from __future__ import annotations

import numba
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


@njit(cache=True)
def _solve(rhs, mask, degree, tolerance, max_iterations, out):  # pragma: no cover - compiled
    """One system of :func:`conjugate_gradients`: rhs, mask, out (H, W); whether it converged."""
    height, width = rhs.shape
    stride = width + 2  # p lives on the grid padded by a ring of zeros: no bounds tests in the stencil
    n = 0
    for i in range(height):
        for j in range(width):
            if mask[i, j] != 0.0:
                n += 1
    where = np.empty(n, dtype=np.int64)  # the removed pixels' positions on the padded grid
    diagonal, inverse = np.empty(n), np.empty(n)
    r, x, ap = np.empty(n), np.zeros(n), np.empty(n)
    p = np.zeros((height + 2) * stride)
    k = 0
    for i in range(height):
        for j in range(width):
            if mask[i, j] != 0.0:
                where[k] = (i + 1) * stride + j + 1
                diagonal[k] = 12.0 * degree[i, j]
                inverse[k] = 1.0 / degree[i, j]
                r[k] = rhs[i, j]
                k += 1
    rz = 0.0
    for u in range(n):
        z = r[u] * inverse[u]
        p[where[u]] = z
        rz += r[u] * z
    limit = tolerance * tolerance * rz
    iteration = 0
    while rz > limit and iteration < max_iterations:
        pap = 0.0
        for u in range(n):
            q = where[u]
            edge = (2.0 * (p[q - stride] + p[q + stride] + p[q - 1] + p[q + 1])
                    + p[q - stride - 1] + p[q - stride + 1] + p[q + stride - 1] + p[q + stride + 1])
            v = (diagonal[u] * p[q] - edge) / 12.0
            ap[u] = v
            pap += p[q] * v
        alpha = rz / pap if pap != 0.0 else 0.0
        rz_next = 0.0
        for u in range(n):
            x[u] += alpha * p[where[u]]
            r[u] -= alpha * ap[u]
            rz_next += r[u] * r[u] * inverse[u]
        beta = rz_next / rz
        for u in range(n):
            q = where[u]
            p[q] = r[u] * inverse[u] + beta * p[q]
        rz = rz_next
        iteration += 1
    for u in range(n):
        q = where[u]
        out[q // stride - 1, q % stride - 1] = x[u]
    return rz <= limit
