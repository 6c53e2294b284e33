"""Verdict 3: the GradCAM method's FP-vs-BNN maps below its own within-precision baselines, and BNN maps
below chance more often than FP maps (degenerate maps counted apart, as a check)."""

from __future__ import annotations

import dataclasses

from binsight.study.stats import Estimate, difference, single_mean
from binsight.study.verdicts.records import Verdict
from binsight.study.verdicts.rules import comparison, make_verdict, reading_of
from binsight.study.verdicts.similarity import similarity_parts
from binsight.study.verdicts.table import Context

FINDING = "GradCAM maps differ between network types, and some BNNs give seemingly nonsensical explanations."

def fraction_difference(ctx: Context, measure: str, method: str) -> tuple[Estimate | None, dict[str, Estimate]]:
    """BNN minus FP mean of the 0/1 ``measure`` of ``method``'s maps, and each precision's own mean."""
    return ctx.memo(("fraction", measure, method), lambda: _fraction_difference(ctx, measure, method))


def _fraction_difference(ctx: Context, measure: str, method: str) -> tuple[Estimate | None, dict[str, Estimate]]:
    values = ctx.singles(measure, method)
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None, {}
    fp, bnn = single_mean(values, ctx.draws, "fp"), single_mean(values, ctx.draws, "bnn")
    levels = {k: e for k, e in (("FP", ctx.estimate(fp)), ("BNN", ctx.estimate(bnn))) if e}
    return ctx.estimate(difference(bnn, fp)), levels


def verdict_gradcam(ctx: Context) -> Verdict:
    """Verdict 3: the GradCAM method's FP-vs-BNN maps differ beyond its own seed baselines (a part per
    similarity measure), and its BNN maps are below chance more often than its FP maps."""
    s = ctx.settings
    method = s.gradcam_method
    parts = similarity_parts(ctx, method, claim="differ")
    below, below_levels = fraction_difference(ctx, "below_chance", method)
    part = comparison("below chance", "Are BNN maps below chance more often than FP maps?", below, s.below_chance_margin,
                      describe=f"Fraction of non-degenerate {method} maps below chance{_fractions(below_levels)}, "
                               "BNN minus FP")
    parts.append(dataclasses.replace(part, levels=below_levels))
    degenerate, deg_levels = fraction_difference(ctx, "degenerate", method)
    check = comparison("degenerate", "Are BNN maps degenerate more often than FP maps?", degenerate, 0.0,
                       describe=f"Fraction of degenerate {method} maps (constant or flat; never tested against "
                                f"chance){_fractions(deg_levels)}, BNN minus FP")
    check = dataclasses.replace(check, levels=deg_levels)
    reading = reading_of(parts[:-1])
    return make_verdict(3, f"{method}: FP and BNN maps differ; some BNN maps below chance", FINDING, parts,
                    reading, f"needs FP-vs-BNN similarity and below-chance tests of {method} maps", [check])


def _fractions(levels: dict[str, Estimate]) -> str:
    return f" ({', '.join(f'{k} {e.value:.1%}' for k, e in levels.items())})" if levels else ""
