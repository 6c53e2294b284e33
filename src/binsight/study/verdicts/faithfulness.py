"""Verdict 4: the faithfulness method better than every other method on measures that do not use its own
perturbation (ROAD, deletion / insertion onto blur); against the chance maps as a check. Degenerate maps
(no ranking of pixels) are left out of every mean and counted; each difference is also given for the FP
and the BNN models apart."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from binsight.study.stats import Estimate, effect_size, single_mean
from binsight.study.verdicts.records import Part, Verdict
from binsight.study.verdicts.rules import comparison, conjunction, make_verdict, primary_p, words
from binsight.study.verdicts.table import Context

FINDING = "(Not in the paper.) NeuroMask is more faithful than the other methods."

APART = (("FP", "fp"), ("BNN", "bnn"))
"""The precisions each difference is also given for (level name, precision)."""


def usable(ctx: Context, measure: str, method: str) -> tuple[np.ndarray | None, int]:
    """(``measure`` of ``method``'s maps (M, K) with degenerate maps set to NaN, how many values that
    left out)."""
    values = ctx.singles(measure, method)
    degenerate = ctx.singles("degenerate", method)
    if values is None or degenerate is None:
        return values, 0
    empty = np.isfinite(values) & (degenerate > 0.5)
    return np.where(empty, np.nan, values), int(empty.sum())


def method_difference(ctx: Context, measure: str, method: str, other: str) -> tuple[Estimate | None, dict[str, Estimate]]:
    """Mean over models and images of ``method`` minus ``other`` on ``measure``, paired by model and image,
    signed so that a positive value means ``method`` is better, degenerate maps of either left out; and
    the same over the FP and over the BNN models alone ({"FP": ..., "BNN": ...})."""
    sign = -1.0 if measure in ctx.settings.lower_is_better else 1.0
    return ctx.memo(("methods", measure, method, other, sign), lambda: _method_difference(ctx, measure, method, other, sign))


def _method_difference(ctx: Context, measure: str, method: str, other: str, sign: float):
    (a, _), (b, _) = usable(ctx, measure, method), usable(ctx, measure, other)
    if a is None or b is None:
        return None, {}

    def statistic(precision):
        def stat(draws, diff):
            s = single_mean(diff, draws, precision)
            return dataclasses.replace(s, effect=effect_size(s.per_image))
        return stat

    diff = sign * (a - b)
    apart = {name: ctx.crossed(statistic(p), diff) for name, p in APART if ctx.count(p)}
    return ctx.crossed(statistic(None), diff), {k: e for k, e in apart.items() if e is not None}


def other_methods(ctx: Context) -> list[str]:
    s = ctx.settings
    skip = {s.faithfulness_method, s.convergence_method, s.surrogate_free_method, s.surrogate_free_convergence_method,
            *s.chance_map_methods}  # the surrogate-free ones run for verdict 2's check on its few images
    return [m for m in ctx.methods if m not in skip]


def faithfulness_part(ctx: Context, measure: str, against: Sequence[str]) -> Part:
    s = ctx.settings
    method = s.faithfulness_method
    comps = []
    for other in against:
        together, apart = method_difference(ctx, measure, method, other)
        c = comparison(f"{method} minus {other}", f"Is {method} more faithful than {other} by {measure}?", together,
                       s.faithfulness_margin)
        comps.append(dataclasses.replace(c, levels=apart))
    comps = tuple(comps)
    status = conjunction([c.status for c in comps])
    better = "lower" if measure in s.lower_is_better else "higher"
    images = max((c.estimate.n_images for c in comps if c.estimate), default=0)
    left_out = {m: usable(ctx, measure, m)[1] for m in (method, *against)}
    apart_text = lambda c: "".join(f", {k} {e.text()}" for k, e in c.levels.items())
    sentence = (f"{measure} ({better} is better), {method} minus each, positive = {method} better, on {images} images: "
                + "; ".join(f"{c.name.split(' minus ')[1]} {c.estimate.text() if c.estimate else 'not measured'}"
                            f"{apart_text(c)} ({c.status.value})" for c in comps)
                + f". Degenerate maps left out: {', '.join(f'{m} {n}' for m, n in left_out.items())}."
                + f" Status: {words(status)}.")
    closest = min((c for c in comps if c.estimate), key=lambda c: c.estimate.value, default=None)
    return Part(measure, f"Is {method} more faithful than every other method by {measure}?", status,
                closest.estimate if closest else None, s.faithfulness_margin, sentence, comparisons=comps,
                p_value=primary_p(comps))


def verdict_faithfulness(ctx: Context) -> Verdict:
    """Verdict 4: the faithfulness method beats every other method on measures that do not use its own
    perturbation (a part per measure); its standing against the chance maps is a check."""
    s = ctx.settings
    method = s.faithfulness_method
    others = other_methods(ctx)
    parts = [faithfulness_part(ctx, m, others) for m in s.faithfulness_measures] if others else []
    chance = [m for m in s.chance_map_methods if m in ctx.table.methods]
    checks = [dataclasses.replace(faithfulness_part(ctx, m, chance), name=f"{m} against chance maps",
                                  question=f"Is {method} more faithful than the chance maps by {m}?")
              for m in s.faithfulness_measures] if chance else []
    return make_verdict(4, f"{method}: more faithful than the other methods", FINDING, parts, "",
                        f"needs {method} and another method measured on {', '.join(s.faithfulness_measures)}", checks,
                        primary=(s.primary_faithfulness,))
