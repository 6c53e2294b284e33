"""Measures of saliency maps: similarity, noise, faithfulness, localisation, sanity, and chance baselines.

Pure functions on tensors - maps (N, 1, H, W), images (N, C, H, W) in [0, 1], masks bool (N, 1, H, W) -
returning per-image float64 numpy arrays (N,) unless stated. Bad input raises :class:`MetricError`.
"""

from binsight.metrics._checks import MetricError
from binsight.metrics.baselines import gaussian_map, is_degenerate, random_map
from binsight.metrics.faithfulness import (
    DeletionInsertion,
    RoadCurves,
    deletion_area,
    deletion_insertion,
    noisy_linear_imputation,
    road,
)
from binsight.metrics.localisation import boxes_to_masks, energy_inside, pointing_game
from binsight.metrics.noise import (
    entropy,
    gini,
    high_frequency_energy,
    rank_high_frequency_energy,
    rank_total_variation,
    total_variation,
)
from binsight.metrics.sanity import SanityResult, explain_with, randomisation_test
from binsight.metrics.similarity import cosine, spearman, ssim, top_k_iou

__all__ = [
    "DeletionInsertion",
    "MetricError",
    "RoadCurves",
    "SanityResult",
    "boxes_to_masks",
    "cosine",
    "deletion_area",
    "deletion_insertion",
    "energy_inside",
    "entropy",
    "explain_with",
    "gaussian_map",
    "gini",
    "high_frequency_energy",
    "is_degenerate",
    "noisy_linear_imputation",
    "pointing_game",
    "random_map",
    "randomisation_test",
    "rank_high_frequency_energy",
    "rank_total_variation",
    "road",
    "spearman",
    "ssim",
    "top_k_iou",
    "total_variation",
]
