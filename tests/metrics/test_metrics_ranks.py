"""Known answers for the rank-based noise measures (invariant to a monotone remap of a map's values) and the
seeded random tie-breaking of the pixel ranks and the top-k IoU (deletion / insertion and ROAD read tied
pixels as a group: tests/metrics/test_metrics_ties.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from binsight.metrics import MetricError, top_k_iou
from binsight.metrics.faithfulness import pixel_ranks
from binsight.metrics.noise import (
    high_frequency_energy,
    rank_high_frequency_energy,
    rank_total_variation,
    total_variation,
)


def as_maps(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)[:, None].astype(np.float64))


def smooth_and_noisy(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    smooth = scipy.ndimage.gaussian_filter(rng.random((28, 28)), 3)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) + 0.01  # positive, for sqrt and log
    noisy = np.clip(smooth + 0.2 * rng.standard_normal((28, 28)), 0.01, None)
    return smooth, noisy


# -- rank noise ------------------------------------------------------------------------------------------


def test_rank_noise_is_unchanged_by_monotone_remaps_where_the_value_measures_move():
    smooth, noisy = smooth_and_noisy()
    ties = np.round(smooth * 4) / 4  # 5 levels: many ties, average ranks
    for base in (smooth, noisy, ties):
        maps = as_maps(base, np.sqrt(base), np.exp(5 * base), base**3, 2 * base - 7)
        for measure in (rank_total_variation, rank_high_frequency_energy):
            values = measure(maps)
            np.testing.assert_array_equal(values, np.full(5, values[0]))  # identical, not merely close
    remapped = as_maps(noisy, np.exp(5 * noisy))
    assert abs(np.diff(total_variation(remapped))[0]) > 1e-3  # the value-based measure does move
    assert abs(np.diff(high_frequency_energy(remapped))[0]) > 1e-3


def test_rank_noise_scores_a_noisier_map_higher_and_knows_the_checkerboard():
    smooth, noisy = smooth_and_noisy(1)
    tv, hfe = rank_total_variation(as_maps(smooth, noisy)), rank_high_frequency_energy(as_maps(smooth, noisy))
    assert tv[1] > 2 * tv[0] and hfe[1] > 5 * hfe[0]
    board = np.indices((8, 8)).sum(0) % 2  # two tied levels: ranks 16.5 and 48.5, scaled to 0 and 1
    np.testing.assert_allclose(rank_total_variation(as_maps(board)), (8 * 7 + 8 * 7) / 64)
    np.testing.assert_allclose(rank_high_frequency_energy(as_maps(board)), 1.0)
    constant, nan = np.full((8, 8), 0.3), board.astype(float)
    nan[0, 0] = np.nan
    assert np.isnan(rank_total_variation(as_maps(constant, nan))).all()
    assert np.isnan(rank_high_frequency_energy(as_maps(constant, nan))).all()


# -- tie-breaking ------------------------------------------------------------------------------------------


def test_pixel_ranks_break_ties_at_random_by_seed_and_keep_distinct_values_in_order():
    maps = as_maps(np.repeat([3.0, 2.0, 1.0, 0.0], 16).reshape(8, 8), np.zeros((8, 8)))
    plain = pixel_ranks(maps)
    assert torch.equal(plain, pixel_ranks(maps, tie_seed=None))
    assert torch.equal(plain[1].flatten(), torch.arange(64))  # row-major without a seed
    a, b, c = pixel_ranks(maps, tie_seed=1), pixel_ranks(maps, tie_seed=1), pixel_ranks(maps, tie_seed=2)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, plain)
    for ranks in (a, c):
        assert sorted(ranks[1].flatten().tolist()) == list(range(64))
        level = ranks[0].flatten() // 16  # each block of 16 equal values keeps its place in the order
        assert torch.equal(level, torch.arange(64) // 16)
    distinct = torch.rand(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(pixel_ranks(distinct, tie_seed=5), pixel_ranks(distinct))  # no ties, nothing moves
    with pytest.raises(MetricError, match="tie_seed"):
        pixel_ranks(maps, tie_seed=-1)


def test_top_k_iou_tie_seed_draws_ties_at_random_and_none_keeps_row_major():
    tied = torch.zeros(2, 1, 10, 10)
    first = torch.zeros(2, 100)
    first[:, :10] = 1.0
    first = first.view(2, 1, 10, 10)
    np.testing.assert_allclose(top_k_iou(tied, first), 1.0)  # row-major: the first 10 pixels
    seeded = top_k_iou(tied, first, tie_seed=0)
    np.testing.assert_array_equal(seeded, top_k_iou(tied, first, tie_seed=0))
    assert (seeded < 0.5).all()  # 10 random pixels of 100 rarely overlap the first 10 much
    distinct = torch.rand(2, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(top_k_iou(distinct, first, tie_seed=4), top_k_iou(distinct, first))
