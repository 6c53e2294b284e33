"""Verdict 1 (and the similarity parts of verdict 3): FP-vs-BNN similarity against the within-precision
baselines (FP-vs-FP, BNN-vs-BNN) and the image-shuffled chance level, per similarity measure (and inside the
object where measured); a reading per measure."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from binsight.study.stats import Estimate, difference, pair_mean
from binsight.study.verdicts.records import (ALIKE, DIFFER, HELD, INCONCLUSIVE, NOT_HELD, NOT_MEASURED, UNDECIDED,
                                             UNSTABLE, Part, Status, Verdict)
from binsight.study.verdicts.rules import comparison, conjunction, invert, make_verdict, reading_of, words
from binsight.study.verdicts.table import Context

FINDING = "The Gradient method produces very similar-looking maps for BNN and FP networks."

def _common(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays with every image column that one of them lacks entirely set to NaN."""
    has = np.logical_and.reduce([np.isfinite(a).reshape(-1, a.shape[-1]).any(axis=0) for a in arrays])
    return [np.where(has, a, np.nan) for a in arrays]


# ------------------------------------------------------------------------------------------------------
# verdict 1 (and 3a): similarity against the within-precision baselines and chance


def similarity_part(ctx: Context, method: str, measure: str, *, claim: str) -> Part | None:
    """FP-vs-BNN ``measure`` of ``method``'s maps against FP-vs-FP, BNN-vs-BNN and chance.

    claim "alike": held when FP-vs-BNN is within the margin of both baselines and above chance by the
    chance margin. claim "differ": held when FP-vs-BNN is below both baselines by more than the margin.
    None when the table has no FP-vs-BNN value of ``measure``.
    """
    s = ctx.settings
    e = ctx.memo(("similarity", method, measure), lambda: similarity_estimates(ctx, method, measure))
    if e is None:
        return None
    comps = [
        comparison("FP-vs-BNN minus FP-vs-FP", "Are FP-vs-BNN maps as alike as maps of two FP seeds?",
                   e["fb-ff"], -s.similarity_margin),
        comparison("FP-vs-BNN minus BNN-vs-BNN", "Are FP-vs-BNN maps as alike as maps of two BNN seeds?",
                   e["fb-bb"], -s.similarity_margin),
        comparison("FP-vs-BNN minus chance", "Are FP-vs-BNN maps more alike than maps of different images?",
                   e["fb-chance"], s.chance_margin),
        comparison("FP-vs-FP minus chance", "Do FP seeds agree beyond chance?", e["ff-chance"], s.chance_margin),
        comparison("BNN-vs-BNN minus chance", "Do BNN seeds agree beyond chance?", e["bb-chance"], s.chance_margin),
    ]
    reading = similarity_reading(*(c.status for c in comps))
    if comps[0].status == comps[1].status == NOT_MEASURED:
        status = NOT_MEASURED  # no within-precision baseline: nothing to compare FP-vs-BNN with
    elif claim == "alike":  # without a chance level, "alike" cannot be told from "alike as noise"
        chance = INCONCLUSIVE if comps[2].status == NOT_MEASURED else comps[2].status
        status = conjunction([comps[0].status, comps[1].status, chance])
    else:
        status = conjunction([invert(comps[0].status), invert(comps[1].status)])
    levels = {name: e[key] for name, key in (("FP-vs-BNN", "fb"), ("FP-vs-FP", "ff"), ("BNN-vs-BNN", "bb"),
                                             ("chance (FP-vs-BNN, images shuffled)", "fb-shuffled")) if e[key]}
    question = {"alike": f"Are {method} maps of FP and BNN models alike by {measure}?",
                "differ": f"Do {method} maps of FP and BNN models differ by {measure}, beyond seed-to-seed variation?"}[claim]
    sentence = _similarity_sentence(method, measure, levels, reading, comps, status)
    return Part(measure, question, status, e["fb"], None, sentence, reading, levels, tuple(comps))


def similarity_estimates(ctx: Context, method: str, measure: str) -> dict[str, Estimate | None] | None:
    """The pair means of ``measure`` (fb: FP-vs-BNN, ff: FP-vs-FP, bb: BNN-vs-BNN; "-shuffled": of the
    image-shuffled pairs) and their differences, from one set of draws; None without FP-vs-BNN values."""
    values = ctx.pairs(measure, method)
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None
    shuffled = ctx.pairs(f"{measure}_shuffled", method)
    if shuffled is not None:
        values, shuffled = _common(values, shuffled)
    kinds = {"fb": ("fp", "bnn"), "ff": ("fp", "fp"), "bb": ("bnn", "bnn")}
    stats = {k: pair_mean(values, ctx.draws, *kind) for k, kind in kinds.items()}
    if shuffled is not None:
        stats.update({f"{k}-shuffled": pair_mean(shuffled, ctx.draws, *kind) for k, kind in kinds.items()})
    out: dict[str, Estimate | None] = {k: ctx.estimate(v) for k, v in stats.items()}
    out["fb-ff"] = ctx.estimate(difference(stats["fb"], stats["ff"]))
    out["fb-bb"] = ctx.estimate(difference(stats["fb"], stats["bb"]))
    for k in kinds:
        shuffled_stat = stats.get(f"{k}-shuffled")
        out[f"{k}-chance"] = ctx.estimate(difference(stats[k], shuffled_stat)) if shuffled_stat else None
        out.setdefault(f"{k}-shuffled", None)
    return out


def similarity_reading(fp_fp: Status, bnn_bnn: Status, chance: Status, fp_stable: Status, bnn_stable: Status) -> str:
    """Which reading the statuses of the five similarity comparisons support.

    alike: FP-vs-BNN within the margin of both baselines and above chance. differ: below both baselines
    beyond the margin. unstable: FP-vs-BNN definitely not alike, but as low as one baseline, or a baseline
    is at chance, so the low similarity cannot be put down to precision. Otherwise inconclusive.
    """
    if fp_fp == bnn_bnn == chance == HELD:
        return ALIKE
    if fp_fp == NOT_HELD and bnn_bnn == NOT_HELD:
        return DIFFER
    not_alike = NOT_HELD in (fp_fp, bnn_bnn, chance)
    if not_alike and (HELD in (fp_fp, bnn_bnn) or NOT_HELD in (fp_stable, bnn_stable)):
        return UNSTABLE
    return UNDECIDED


def _similarity_sentence(method: str, measure: str, levels: dict[str, Estimate], reading: str,
                         comps: Sequence[Part], status: Status) -> str:
    means = "; ".join(f"{k} {e.value:.3f} [{e.low:.3f}, {e.high:.3f}]" for k, e in levels.items())
    why = {
        ALIKE: "FP-vs-BNN maps are as alike as maps of two seeds of either precision, and well above chance",
        DIFFER: "FP-vs-BNN maps are less alike than maps of two seeds of either precision, beyond the margin",
        UNSTABLE: "FP-vs-BNN maps are not alike, but maps of two seeds of one precision are no more alike "
                  "(or barely above chance), so the difference cannot be put down to precision",
        UNDECIDED: "the intervals do not decide between the readings",
    }[reading]
    causes = [f"{c.name.split(' minus ')[1]} as low as FP-vs-BNN" for c in comps[:2] if c.status == HELD]
    causes += [f"{c.name.split(' minus ')[0]} near chance" for c in comps[3:] if c.status == NOT_HELD]
    extra = f" ({', '.join(causes)})" if reading == UNSTABLE and causes else ""
    no_chance = " No image-shuffled chance level of this measure." if comps[2].status == NOT_MEASURED else ""
    return f"{method}, {measure}: {means}. Reading: {reading}{extra}: {why}.{no_chance} Status: {words(status)}."


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
                    f"needs FP-vs-BNN similarity of {method} maps")
