"""What the report calls each measure, method and kind of model pair, and which plot suits each measure.

Table names (``road_lerf``) stay in ``measurements.csv``; the page and the figures show :func:`label`
("ROAD, least relevant first (higher = more faithful)"). A measure is *binary* when every value is 0 or 1
(drawn as a proportion with an interval) and *continuous* otherwise (drawn as box plots with medians).
"""

from __future__ import annotations

from binsight.study.names import UNDEFINED

SINGLE = {
    "degenerate": "Degenerate map: constant, all zero or flat within float noise (share)",
    "unsettled": "Map did not settle: a NeuroMask mask near its random start, or SmoothGrad halves that "
                 "disagree (share)",
    "total_variation": "Total variation, robust scale (higher = noisier)",
    "high_frequency_energy": "High-frequency energy share (higher = noisier)",
    "rank_total_variation": "Total variation of the map's ranks (higher = noisier; a monotone remap changes nothing)",
    "rank_high_frequency_energy": "High-frequency energy share of the map's ranks (higher = noisier; a monotone "
                                  "remap changes nothing)",
    "deletion_auc": "Deletion onto black, area under curve (lower = more faithful; reference only)",
    "insertion_auc": "Insertion from black, area under curve (higher = more faithful; reference only)",
    "deletion_blur_auc": "Deletion onto a blurred copy, area under curve (lower = more faithful)",
    "insertion_blur_auc": "Insertion from a blurred copy, area under curve (higher = more faithful)",
    "road_morf": "ROAD, most relevant first (lower = more faithful)",
    "road_lerf": "ROAD, least relevant first (higher = more faithful)",
    "pointing_game": "Pointing game: top pixel on the object (share of maps; higher = better localised)",
    "energy_inside": "Energy inside the dilated object mask (higher = better localised)",
    "nonsensical": "Nonsensical: not better than chance on a majority of measures, or degenerate (share of maps; lower = better)",
    "not_better_chance": "Not better than chance on a majority of measures (share of non-degenerate maps)",
    "nonsensical_inverted": "Control: the map inverted, flagged nonsensical (share; expected high)",
    "nonsensical_other_image": "Control: another image's map, flagged nonsensical (share; expected high)",
    "nonsensical_edges": "Control: the image's edges, flagged nonsensical (share; expected low)",
    "nonsensical_blob": "Control: a centred blob, flagged nonsensical (share; reported only)",
    "correct": "Prediction correct (share of images)",
    "predicted": "Predicted class (its index in the dataset's classes)",
}

PAIR = {
    "spearman": "Spearman rank correlation of two maps",
    "ssim": "SSIM of two maps",
    "top_k_iou": "IoU of the two maps' top pixels",
}

PAIR_SUFFIX = {
    "": "whole map",
    "_object": "inside the dilated object mask",
    "_shuffled": "image-shuffled chance baseline: map of image i against map of image j",
}

SANITY = {
    "sanity_spearman": "Spearman rank correlation with the un-randomised map",
    "sanity_ssim": "SSIM with the un-randomised map",
}

BINARY = {"degenerate", "unsettled", "pointing_game", "nonsensical", "not_better_chance", "nonsensical_inverted",
          "nonsensical_other_image", "nonsensical_edges", "nonsensical_blob", "correct"}
"""Measures whose every value is 0 or 1: drawn as proportions with an interval, never as box plots."""

NOT_DRAWN = {"predicted"}
"""Rows that are not measures of a map (the predicted class index)."""

PAIR_KINDS = {"fp-fp": "FP vs FP (seeds)", "bnn-bnn": "BNN vs BNN (seeds)", "fp-bnn": "FP vs BNN",
              "shuffled": "image-shuffled (chance)"}

METHODS = {
    "gradient": "Gradient",
    "smoothgrad": "SmoothGrad",
    "smoothgrad-n200": "SmoothGrad, 200 samples (convergence check)",
    "smoothgrad-forward": "SmoothGrad from forward passes (no surrogate)",
    "smoothgrad-forward-n16000": "SmoothGrad from forward passes, 16000 pairs (convergence check)",
    "gradcam": "GradCAM",
    "neuromask": "NeuroMask",
    "random": "random map (chance)",
    "smooth-random": "smooth random map (chance)",
    "gaussian": "Gaussian blob (baseline)",
}


def pair_parts(measure: str) -> tuple[str, str] | None:
    """("spearman", "_object") for "spearman_object"; None when ``measure`` is not a pair measure."""
    for suffix in ("_object", "_shuffled"):
        if measure.endswith(suffix) and measure[: -len(suffix)] in PAIR:
            return measure[: -len(suffix)], suffix
    if measure in PAIR:
        return measure, ""
    return None


def label(measure: str, *, top_k: float | None = None) -> str:
    """The reader's name of a table measure; unknown names are returned as they are."""
    if measure in SINGLE:
        return SINGLE[measure]
    if measure in SANITY:
        return SANITY[measure]
    if measure.startswith("chance_fraction_"):
        inner = measure[len("chance_fraction_"):]
        return f"Share of chance maps it does worse than, on {short_label(inner)} (lower = better)"
    if measure.endswith(UNDEFINED):
        return f"{short_label(measure[: -len(UNDEFINED)])}: undefined (count)"
    parts = pair_parts(measure)
    if parts is not None:
        base, suffix = parts
        text = PAIR[base]
        if base == "top_k_iou" and top_k:
            text = f"IoU of the two maps' top {top_k:.0%} pixels"
        return f"{text}, {PAIR_SUFFIX[suffix]}"
    return measure


def short_label(measure: str) -> str:
    """A label without the parenthesised reading direction (for axis titles and inline text)."""
    return label(measure).split(" (")[0]


def axis_label(measure: str) -> str:
    """The name on a value axis: the measure without where it is taken or how to read it."""
    parts = pair_parts(measure)
    if parts is not None:
        return {"spearman": "Spearman rank correlation", "ssim": "SSIM", "top_k_iou": "top-k IoU"}[parts[0]]
    return short_label(measure)


def method_label(method: str) -> str:
    if method.startswith("captum:"):
        return f"Captum {method[len('captum:'):]}"
    return METHODS.get(method, method)


def is_binary(measure: str) -> bool:
    return measure in BINARY
