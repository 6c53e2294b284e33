"""Verdict 1 (and the similarity parts of verdict 3): the scale-free reading of FP-vs-BNN similarity against
the within-precision baselines (FP-vs-FP, BNN-vs-BNN), each kind of pair against its own image-shuffled
chance level (:func:`binsight.study.inference.scale_free_similarity`), per similarity measure (and inside
the object where measured).

A method with a seed check (NeuroMask: its maps depend on a random starting draw) also has its own seed
baseline, each model's start-to-start similarity (its maps against its maps from a second start, stored as
the pair of a model with itself under :func:`~binsight.study.names.seed_check_label`): FP-vs-BNN agreement
is credited only up to that baseline, and a start baseline not above chance reads not reproducible
(:func:`start_baseline`, docs/verdicts.md)."""

from __future__ import annotations

from typing import Any

import dataclasses

import numpy as np

from binsight.study.inference import JackknifeDesign, crossed_interval, defined_images, scale_free_similarity
from binsight.study.names import seed_check_label
from binsight.study.stats import Draws, Estimate, pair_mean, single_mean
from binsight.study.verdicts.records import (ALIKE, DIFFER, INCONCLUSIVE, NOT_MEASURED, NOT_REPRODUCIBLE, UNDECIDED,
                                             Part, Verdict)
from binsight.study.verdicts.rules import at_least, comparison, invert, make_verdict, p_of, reading_of, words
from binsight.study.verdicts.table import Context, as_estimate

FINDING = "The Gradient method produces very similar-looking maps for BNN and FP networks."

KINDS = {"FP-vs-BNN": ("fp", "bnn"), "FP-vs-FP": ("fp", "fp"), "BNN-vs-BNN": ("bnn", "bnn")}
"""The kinds of pair, by the name the levels give them, and their precisions."""
STARTS = {"FP start-to-start": "fp", "BNN start-to-start": "bnn"}
"""The seed check's kinds of pair (a model with itself from two starts), by level name, and their precision."""


def similarity_estimates(ctx: Context, method: str, measure: str) -> dict[str, Any] | None:
    """The crossed estimates of one similarity measure of ``method``'s maps, on the images where both the
    measure and its image-shuffled chance level (``MEASURE_shuffled``) have values.

    Returns {"levels": {kind: Estimate, f"chance {kind}": Estimate}, "ratio": the
    :class:`~binsight.study.inference.SimilarityRatio` (None without a chance level), "start": the method's
    start baseline (:func:`start_baseline`; None for a method without a seed check)}; None without
    FP-vs-BNN values or with fewer than 2 images.
    """
    values = ctx.pairs(measure, method)
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None
    shuffled = ctx.pairs(f"{measure}_shuffled", method)
    arrays = (values,) if shuffled is None else (values, shuffled)
    keep = defined_images(*arrays)
    if keep.sum() < 2:
        return None
    design, draws = ctx.jackknife(int(keep.sum()))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = [pair_mean(values[..., keep], draws, *kind).values for kind in KINDS.values()]
        chance = [] if shuffled is None else [pair_mean(shuffled[..., keep], draws, *k).values for k in KINDS.values()]
    conf = ctx.settings.confidence
    levels = {name: as_estimate(crossed_interval(v, design, conf)) for name, v in zip(KINDS, means)}
    levels.update({f"chance {name}": as_estimate(crossed_interval(v, design, conf)) for name, v in zip(KINDS, chance)})
    ratio, start = None, None
    if chance:
        start = start_baseline(ctx, method, measure, keep, design, draws)
        credited = means[0] if start is None else chance[0] + np.minimum(means[0] - chance[0], start["ceiling"])
        ratio = scale_free_similarity(credited, *means[1:], *chance, design, margin=ctx.settings.similarity_margin,
                                      confidence=conf)
        if start is not None:
            levels.update(start["levels"])
            ratio = ratio if start["reproducible"] else dataclasses.replace(ratio, reading=NOT_REPRODUCIBLE)
    return {"levels": {k: e for k, e in levels.items() if e is not None}, "ratio": ratio, "start": start}


def start_values(ctx: Context, measure: str, method: str) -> np.ndarray | None:
    """(M, K) start-to-start values of ``measure`` (each model's maps of ``method`` against its seed
    check's, NaN where none) of the context's models; None when no model has one."""
    label = seed_check_label(method)
    vectors = [ctx.table.vector(measure, label, m.name, m.name) for m in ctx.models]
    if all(v is None for v in vectors):
        return None
    return np.stack([np.full(len(ctx.table.images), np.nan) if v is None else v for v in vectors])


def start_baseline(ctx: Context, method: str, measure: str, keep: np.ndarray, design: JackknifeDesign,
                   draws: Draws) -> dict[str, Any] | None:
    """The start baseline of ``method`` by ``measure`` on the image columns ``keep``: None for a method
    without a seed check (no start-to-start values), else {"levels": each precision's start-to-start mean
    and its image-shuffled chance level, "excess": {precision: the crossed interval of its start-to-start
    mean minus chance}, "ceiling": (J,) on the design's rows, the geometric mean of the FP and BNN excesses
    (NaN where either is not above 0), "reproducible": both excesses' intervals above 0}.

    The ceiling is how much FP-vs-BNN agreement beyond chance is credited: two models' maps cannot share more
    of the models than one model's maps from two starts share; agreement beyond that is the starts' or
    noise (docs/verdicts.md). A precision whose models have no start-to-start value (or no chance level)
    gives no ceiling (NaN) and not reproducible.
    """
    values, shuffled = start_values(ctx, measure, method), start_values(ctx, f"{measure}_shuffled", method)
    if values is None:
        return None
    conf, found = ctx.settings.confidence, {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, precision in STARTS.items():
            mean = single_mean(values[..., keep], draws, precision).values if ctx.count(precision) else None
            chance = (single_mean(shuffled[..., keep], draws, precision).values
                      if shuffled is not None and ctx.count(precision) else None)
            found[precision] = (name, mean, chance)
    levels, excess = {}, {}
    for precision, (name, mean, chance) in found.items():
        levels[name] = None if mean is None else as_estimate(crossed_interval(mean, design, conf))
        levels[f"chance {name}"] = None if chance is None else as_estimate(crossed_interval(chance, design, conf))
        excess[precision] = None if mean is None or chance is None else mean - chance
    ceiling = np.full(len(design.models), np.nan)
    if all(e is not None for e in excess.values()):
        with np.errstate(invalid="ignore"):
            both = (excess["fp"] > 0) & (excess["bnn"] > 0)
            ceiling = np.sqrt(np.where(both, excess["fp"] * excess["bnn"], np.nan))
    intervals = {p: None if e is None else crossed_interval(e, design, conf) for p, e in excess.items()}
    reproducible = all(c is not None and c.low > 0 for c in intervals.values())
    return {"levels": {k: e for k, e in levels.items() if e is not None}, "excess": intervals, "ceiling": ceiling,
            "reproducible": reproducible}


def similarity_part(ctx: Context, method: str, measure: str, *, claim: str) -> Part | None:
    """The scale-free reading of ``measure`` of ``method``'s maps, as a part claiming ``claim``.

    The agreement ratio r = (FP-vs-BNN - chance) / sqrt((FP-vs-FP - chance) (BNN-vs-BNN - chance)) (each
    kind against its own chance level) with its crossed interval; readings alike (above 1 - margin), differ
    (at or below it), not reproducible (a seed baseline not above its chance level), inconclusive. claim
    "alike": held when alike, not held when differ; claim "differ": the opposite; inconclusive otherwise
    (not reproducible, no chance level, or the interval straddles 1 - margin). Not measured without a
    within-precision baseline (fewer than 2 models of a precision); None without FP-vs-BNN values.
    """
    s = ctx.settings
    e = ctx.memo(("similarity", method, measure, s.similarity_margin), lambda: similarity_estimates(ctx, method, measure))
    if e is None:
        return None
    question = {"alike": f"Are {method} maps of FP and BNN models alike by {measure}?",
                "differ": f"Do {method} maps of FP and BNN models differ by {measure}, beyond seed-to-seed variation?"}[claim]
    levels, result, bound = e["levels"], e["ratio"], 1 - s.similarity_margin
    if "FP-vs-FP" not in levels or "BNN-vs-BNN" not in levels:
        return Part(measure, question, NOT_MEASURED, None, bound,
                    f"{method}, {measure}: no within-precision baseline (fewer than 2 models of a precision).")
    if result is None:
        return Part(measure, question, INCONCLUSIVE, None, bound,
                    f"{method}, {measure}: {_means(levels)}. No image-shuffled chance level of this measure: the "
                    f"agreement ratio needs one. Status: {words(INCONCLUSIVE)}.", UNDECIDED, levels)
    ratio, start = as_estimate(result.ratio), e["start"]
    comps = tuple(comparison(f"{kind} minus chance", f"Do {kind} maps agree beyond chance?",
                             as_estimate(result.excess[key]), 0.0)
                  for kind, key in (("FP-vs-FP", "fp-fp"), ("BNN-vs-BNN", "bnn-bnn"), ("FP-vs-BNN", "fp-bnn")))
    if start is not None:
        comps = comps[:2] + (comparison("FP-vs-BNN minus chance, credited up to the start baseline",
                                        "Do FP-vs-BNN maps agree beyond chance, counting no more than one model's "
                                        "maps from two starts share?", as_estimate(result.excess["fp-bnn"]), 0.0),)
        comps += tuple(comparison(f"{name} minus chance", f"Do one {name.split()[0]} model's maps from two starts "
                                  "agree beyond chance?", as_estimate(start["excess"][p]), 0.0)
                       for name, p in STARTS.items())
    comps += (comparison("agreement ratio", "Do FP and BNN maps share as much beyond chance as two seeds do?",
                         ratio, bound, describe="r"),) if ratio is not None else ()
    reading, status, p = result.reading, INCONCLUSIVE, None
    if reading != NOT_REPRODUCIBLE:
        status = at_least(ratio, bound) if claim == "alike" else invert(at_least(ratio, bound))
        p = p_of(ratio, bound, below=claim == "differ")
    sentence = _similarity_sentence(method, measure, levels, ratio, bound, reading, status, start is not None)
    return Part(measure, question, status, ratio, bound, sentence, reading, levels, comps, p)


def _means(levels: dict[str, Estimate]) -> str:
    return "; ".join(f"{k} {e.value:.3f} [{e.low:.3f}, {e.high:.3f}]" for k, e in levels.items())


def _similarity_sentence(method: str, measure: str, levels: dict[str, Estimate], ratio: Estimate | None, bound: float,
                         reading: str, status, starts: bool = False) -> str:
    why = {
        ALIKE: "FP and BNN maps share as much beyond chance as two seeds of one precision do, within the margin",
        DIFFER: "FP and BNN maps share less beyond chance than two seeds of one precision do, beyond the margin",
        NOT_REPRODUCIBLE: "the maps of two seeds of one precision do not agree beyond chance, so there is nothing "
                          "to compare FP-vs-BNN with",
        UNDECIDED: "the interval of the agreement ratio contains 1 - margin",
    }[reading]
    if starts and reading == NOT_REPRODUCIBLE:
        why = ("the maps of two seeds of one precision, or one model's maps from two starts, do not agree beyond "
               "chance, so there is nothing to compare FP-vs-BNN with")
    r = (f"agreement ratio r = {ratio.text()} ({ratio.confidence:.0%} interval over {ratio.covers}) against "
         f"1 - margin = {bound:.3g}" if ratio is not None else "agreement ratio undefined")
    if starts:
        r += ("; FP-vs-BNN agreement beyond chance is credited up to the start baseline (the geometric mean of the "
              "FP and BNN start-to-start agreement beyond chance)")
    return f"{method}, {measure}: {_means(levels)}; {r}. Reading: {reading}: {why}. Status: {words(status)}."


def similarity_parts(ctx: Context, method: str, *, claim: str) -> list[Part]:
    """A similarity part per configured measure, whole map then inside the object (where measured)."""
    parts = []
    for measure in ctx.settings.similarity_measures:
        for name in (measure, f"{measure}_object"):
            part = similarity_part(ctx, method, name, claim=claim)
            if part is not None:
                parts.append(part)
    return parts


def verdict_similarity(ctx: Context) -> Verdict:
    """Verdict 1: the similarity method's maps are alike for FP and BNN models."""
    method = ctx.settings.similarity_method
    parts = similarity_parts(ctx, method, claim="alike")
    return make_verdict(1, f"{method}: FP and BNN maps look alike", FINDING, parts, reading_of(parts),
                        f"needs FP-vs-BNN similarity of {method} maps", primary=(ctx.settings.primary_similarity,))
