"""Verdict 4: the faithfulness method better than every other method on measures that do not use its own
perturbation (ROAD, deletion / insertion onto blur); against the chance maps as a check."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from binsight.study.stats import Estimate, effect_size, single_mean
from binsight.study.verdicts.records import Part, Verdict
from binsight.study.verdicts.rules import comparison, conjunction, make_verdict, words
from binsight.study.verdicts.table import Context

FINDING = "(Not in the paper.) NeuroMask is more faithful than the other methods."

def method_difference(ctx: Context, measure: str, method: str, other: str) -> Estimate | None:
    """Mean over models and images of ``method`` minus ``other`` on ``measure``, paired by model and image,
    signed so that a positive value means ``method`` is better."""
    sign = -1.0 if measure in ctx.settings.lower_is_better else 1.0
    return ctx.memo(("methods", measure, method, other, sign), lambda: _method_difference(ctx, measure, method, other, sign))


def _method_difference(ctx: Context, measure: str, method: str, other: str, sign: float) -> Estimate | None:
    a, b = ctx.singles(measure, method), ctx.singles(measure, other)
    if a is None or b is None:
        return None
    def statistic(draws, diff):
        stat = single_mean(diff, draws)
        return dataclasses.replace(stat, effect=effect_size(stat.per_image))
    return ctx.crossed(statistic, sign * (a - b))


def other_methods(ctx: Context) -> list[str]:
    s = ctx.settings
    skip = {s.faithfulness_method, s.convergence_method, *s.chance_map_methods}
    return [m for m in ctx.methods if m not in skip]


def faithfulness_part(ctx: Context, measure: str, against: Sequence[str]) -> Part:
    s = ctx.settings
    method = s.faithfulness_method
    comps = tuple(comparison(f"{method} minus {other}", f"Is {method} more faithful than {other} by {measure}?",
                             method_difference(ctx, measure, method, other), s.faithfulness_margin) for other in against)
    status = conjunction([c.status for c in comps])
    better = "lower" if measure in s.lower_is_better else "higher"
    images = max((c.estimate.n_images for c in comps if c.estimate), default=0)
    sentence = (f"{measure} ({better} is better), {method} minus each, positive = {method} better, on {images} images: "
                + "; ".join(f"{c.name.split(' minus ')[1]} {c.estimate.text() if c.estimate else 'not measured'}"
                            f" ({c.status.value})" for c in comps) + f". Status: {words(status)}.")
    closest = min((c for c in comps if c.estimate), key=lambda c: c.estimate.value, default=None)
    return Part(measure, f"Is {method} more faithful than every other method by {measure}?", status,
                closest.estimate if closest else None, s.faithfulness_margin, sentence, comparisons=comps)


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
                    f"needs {method} and another method measured on {', '.join(s.faithfulness_measures)}", checks)
