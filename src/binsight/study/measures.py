"""The study's measures by name, and the tidy rows they become.

Registries (``binsight._registry.Registry``): :data:`PAIR_MEASURES` (similarity of two maps of one image,
float64 (N,)), :data:`NOISE_MEASURES` (one number per map) and :data:`CHANCE_MAPS` (the chance baselines
"explained" as methods: "random", uniform noise; "smooth-random", noise blurred to a fixed scale). The
configuration checks its measure names against these, and the runner loops over them.

Every function returns float64 values (N,) per measure name; a value that is undefined for a map (NaN,
e.g. the Spearman correlation of a constant map) stays NaN here and becomes a ``"MEASURE:undefined"``
row in the table (:func:`binsight.study.formats.to_rows`).
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
import torch

from binsight._registry import Registry
from binsight.errors import BinsightError
from binsight.metrics import baselines, chance, faithfulness, noise, similarity

PairFn = Callable[..., np.ndarray]

PAIR_MEASURES: Registry[PairFn] = Registry("pair measure", BinsightError)
PAIR_MEASURES.add("spearman", similarity.spearman)
PAIR_MEASURES.add("ssim", similarity.ssim)
PAIR_MEASURES.add("top_k_iou", similarity.top_k_iou)

NOISE_MEASURES: Registry[Callable[[torch.Tensor], np.ndarray]] = Registry("noise measure", BinsightError)
NOISE_MEASURES.add("total_variation", noise.total_variation)
NOISE_MEASURES.add("high_frequency_energy", noise.high_frequency_energy)
NOISE_MEASURES.add("rank_total_variation", noise.rank_total_variation)
NOISE_MEASURES.add("rank_high_frequency_energy", noise.rank_high_frequency_energy)

FAITHFULNESS_MEASURES = ("deletion_auc", "insertion_auc", "deletion_blur_auc", "insertion_blur_auc", "road_morf",
                         "road_lerf")
"""The faithfulness measures the runner writes (onto black: deletion_auc, insertion_auc; onto a blurred
copy: *_blur_auc; ROAD most- and least-relevant first)."""

CHANCE_MAPS: Registry[Callable[[tuple[int, int, int, int], int], torch.Tensor]] = Registry("chance map", BinsightError)


@CHANCE_MAPS.register("random")
def _random(shape: tuple[int, int, int, int], seed: int) -> torch.Tensor:
    return baselines.random_map(shape, seed=seed)


@CHANCE_MAPS.register("smooth-random")
def _smooth_random(shape: tuple[int, int, int, int], seed: int) -> torch.Tensor:
    return baselines.smooth_random_map(shape, seed=seed)


CONTROL_MEASURES = {name: "nonsensical_" + name.replace(" ", "_") for name in chance.CONTROLS}
"""The table's measure of each chance-test control (:data:`binsight.metrics.chance.CONTROLS`): 1 where the
control map of a map was flagged nonsensical, 0 where not (e.g. "nonsensical_other_image")."""


def chance_labels() -> list[str]:
    """The method labels of the chance baselines ("random", "smooth-random")."""
    return CHANCE_MAPS.names()


# -- pairs -----------------------------------------------------------------------------------------------


def masked_measure(name: str) -> PairFn | None:
    """The pair measure ``name`` restricted to a mask (its ``mask=`` keyword), None where it has none."""
    fn = PAIR_MEASURES.get(name)
    return fn if "mask" in inspect.signature(fn).parameters else None


def pair_values(a: torch.Tensor, b: torch.Tensor, *, top_k: float, masks: torch.Tensor | None,
                perm: np.ndarray | None, tie_seed: int = 0) -> dict[str, np.ndarray]:
    """Every pair measure of maps ``a`` and ``b`` (N, 1, H, W) of the same images: whole maps; inside
    ``masks`` (suffix ``_object``); ``a[i]`` against ``b[perm[i]]`` (suffix ``_shuffled``, the
    image-shuffled chance level); and, with masks, ``a[i]`` against ``b[perm[i]]`` inside image i's mask
    (suffix ``_object_shuffled``, the chance level of the ``_object`` measures). The top-k IoU takes
    tied pixels in a random order seeded by ``tie_seed`` (never row-major order)."""
    values = {}
    for name in PAIR_MEASURES.names():
        fn = PAIR_MEASURES.get(name)
        options = {"k": top_k, "tie_seed": tie_seed} if name == "top_k_iou" else {}
        values[name] = fn(a, b, **options)
        masked = masked_measure(name)
        if masks is not None and masked is not None:
            values[f"{name}_object"] = masked(a, b, mask=masks, **options)
        if perm is not None:
            shuffled = b[torch.from_numpy(perm)]
            values[f"{name}_shuffled"] = fn(a, shuffled, **options)
            if masks is not None and masked is not None:
                values[f"{name}_object_shuffled"] = masked(a, shuffled, mask=masks, **options)
    return values


# -- single maps -----------------------------------------------------------------------------------------


def faithfulness_scores(model: torch.nn.Module, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                        steps: int, percentages, batch_size: int, seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """(curves, values) of maps (N, 1, H, W) of ``images``: curves "black" and "blur" (deletion /
    insertion onto black, the reference, and onto a blurred copy, ``steps`` steps), values their areas
    (``deletion_auc``, ``insertion_auc``, ``deletion_blur_auc``, ``insertion_blur_auc``) and ROAD's
    (``road_morf``, ``road_lerf``, imputing ``percentages``, the noise seeded by ``seed``). Pixels of equal
    value (GradCAM's zeros) are read as a group, never in an order (:mod:`binsight.metrics.faithfulness`)."""
    curves = {substrate: faithfulness.deletion_insertion(model, images, maps, targets, steps=steps, substrate=substrate,
                                                         insertion_substrate=substrate, batch_size=batch_size)
              for substrate in ("black", "blur")}
    road = {order: faithfulness.road(model, images, maps, targets, percentages=percentages, order=order, seed=seed,
                                     batch_size=batch_size) for order in ("morf", "lerf")}
    values = {"deletion_auc": curves["black"].deletion_area, "insertion_auc": curves["black"].insertion_area,
              "deletion_blur_auc": curves["blur"].deletion_area, "insertion_blur_auc": curves["blur"].insertion_area,
              "road_morf": road["morf"].area, "road_lerf": road["lerf"].area}
    return curves, values


def map_values(maps: torch.Tensor, masks: torch.Tensor | None, *, noise_measures: bool, localisation: bool,
               dilation: int) -> dict[str, np.ndarray]:
    """Degeneracy, noise and localisation of maps (N, 1, H, W); masks (N, 1, H, W) or None."""
    values = {"degenerate": baselines.is_degenerate(maps).astype(np.float64)}
    if noise_measures:
        values.update({name: NOISE_MEASURES.get(name)(maps) for name in NOISE_MEASURES.names()})
    if localisation and masks is not None:
        values.update(localisation_values(maps, masks, dilation))
    return values


def localisation_values(maps: torch.Tensor, masks: torch.Tensor, dilation: int) -> dict[str, np.ndarray]:
    """Pointing game and energy on the object mask dilated by ``dilation`` pixels."""
    from binsight.metrics import localisation

    grown = localisation.dilate(masks, dilation)
    return {"pointing_game": localisation.pointing_game(maps, grown),
            "energy_inside": localisation.energy_inside(maps, grown)}
