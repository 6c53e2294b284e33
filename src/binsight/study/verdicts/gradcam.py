"""Verdict 3: the GradCAM method's FP-vs-BNN maps differ beyond its own seed baselines (the scale-free
reading of verdict 1, claim "differ"), and its BNN maps are nonsensical more often than its FP maps (the
chance test's flags, degenerate maps counted; exact intervals clustered by model; decided only when the
planted controls behaved)."""

from __future__ import annotations

import numpy as np

from binsight.metrics.chance import CONTROLS, controls_behaved
from binsight.study.inference import Proportion, ProportionDifference, clustered_proportion, proportion_difference
from binsight.study.measures import CONTROL_MEASURES
from binsight.study.stats import Estimate
from binsight.study.verdicts.records import HELD, INCONCLUSIVE, NOT_HELD, NOT_MEASURED, Part, Verdict
from binsight.study.verdicts.rules import at_least, make_verdict, reading_of, words
from binsight.study.verdicts.similarity import similarity_parts
from binsight.study.verdicts.table import Context

FINDING = "GradCAM maps differ between network types, and some BNNs give seemingly nonsensical explanations."

RATES = ("nonsensical", "not better than chance", "degenerate")
"""The rates of 3(b) per precision: nonsensical = not better than chance + degenerate (of the tested maps)."""


def proportion_estimate(p: Proportion | ProportionDifference, n_images: int) -> Estimate:
    """A clustered proportion (or a difference of two) as the verdicts' Estimate (n_resamples 0)."""
    return Estimate(p.value, p.low, p.high, p.confidence, p.covers, n_images, 0)


def nonsensical_rates(ctx: Context, method: str) -> dict[tuple[str, str], Proportion] | None:
    """(precision, rate) -> the clustered proportion of ``method``'s tested maps (those with a
    ``nonsensical`` row) that are nonsensical, not better than chance, degenerate; None without tested
    maps of both precisions."""
    flags = ctx.singles("nonsensical", method)
    if flags is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None
    tested = np.isfinite(flags)
    degenerate = ctx.singles("degenerate", method)
    degenerate = np.zeros_like(flags) if degenerate is None else np.nan_to_num(degenerate)
    arrays = {"nonsensical": flags, "degenerate": np.where(tested, degenerate, np.nan)}
    arrays["not better than chance"] = np.where(tested, flags * (1 - arrays["degenerate"]), np.nan)
    precision = np.array([m.precision for m in ctx.models])
    out = {(p, name): clustered_proportion(arrays[name][precision == p], ctx.settings.confidence)
           for p in ("bnn", "fp") for name in RATES}
    return None if any(v is None for v in out.values()) else out


def control_rates(ctx: Context, method: str) -> dict[str, Proportion]:
    """Control name -> the clustered proportion of its maps flagged nonsensical (every model of the
    context), for the controls the table holds."""
    out = {}
    for name in CONTROLS:
        flags = ctx.singles(CONTROL_MEASURES[name], method)
        found = None if flags is None else clustered_proportion(flags, ctx.settings.confidence)
        if found is not None:
            out[name] = found
    return out


def nonsensical_part(ctx: Context, method: str) -> tuple[Part, Part]:
    """(3(b), the controls' check): BNN minus FP nonsensical rate above ``nonsensical_margin``; inconclusive
    whatever the interval when the controls did not behave (:func:`binsight.metrics.chance.controls_behaved`)."""
    s = ctx.settings
    question = "Are BNN maps nonsensical more often than FP maps?"
    rates, controls = nonsensical_rates(ctx, method), control_rates(ctx, method)
    n_images = int(np.isfinite(ctx.singles("nonsensical", method)).any(axis=0).sum()) if rates else 0
    check = controls_behaved({k: p.value for k, p in controls.items()})
    control_levels = {k: proportion_estimate(p, n_images) for k, p in controls.items()}
    shown = "; ".join(f"{k} {p.value:.0%}" for k, p in controls.items())
    if not controls:
        control_part = Part("controls", "Does the chance test flag the controls as expected?", NOT_MEASURED, None,
                            None, f"Controls of {method} maps: not scored; 3 (b) cannot decide without them.")
    else:
        control_part = Part("controls", "Does the chance test flag the controls as expected?",
                            HELD if check.ok else NOT_HELD, None, None,
                            f"Controls of {method} maps flagged nonsensical: {shown}. "
                            + ("As expected." if check.ok else "Not as expected: " + "; ".join(check.problems) + "."),
                            levels=control_levels)
    if rates is None:
        return Part("nonsensical", question, NOT_MEASURED, None, s.nonsensical_margin,
                    f"Nonsensical {method} maps: not measured."), control_part
    diff = proportion_difference(rates[("bnn", "nonsensical")], rates[("fp", "nonsensical")])
    estimate = proportion_estimate(diff, n_images)
    status, p_value = at_least(estimate, s.nonsensical_margin), diff.p_above(s.nonsensical_margin)
    levels = {f"{p.upper()} {name}": proportion_estimate(rates[(p, name)], n_images) for p in ("bnn", "fp") for name in RATES}
    split = "; ".join(f"{p.upper()} {rates[(p, 'nonsensical')].value:.1%} = {rates[(p, 'not better than chance')].value:.1%} "
                      f"not better than chance + {rates[(p, 'degenerate')].value:.1%} degenerate" for p in ("bnn", "fp"))
    sentence = (f"Nonsensical {method} maps (not better than chance on a majority of measures, or degenerate): {split}. "
                f"BNN minus FP = {estimate.text()} ({estimate.confidence:.0%} interval over {estimate.covers}), above "
                f"{s.nonsensical_margin:+.3g}? {words(status)}.")
    if not check.ok:
        status, p_value = INCONCLUSIVE, None
        sentence += (" The controls did not behave as expected, so the test cannot decide: "
                     + ("; ".join(check.problems) if controls else "no control was scored") + ".")
    return Part("nonsensical", question, status, estimate, s.nonsensical_margin, sentence, levels=levels,
                p_value=p_value), control_part


def degenerate_check(ctx: Context, method: str) -> Part:
    """BNN minus FP rate of degenerate maps among all of ``method``'s maps (a check)."""
    values = ctx.singles("degenerate", method)
    question = "Are BNN maps degenerate more often than FP maps?"
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return Part("degenerate", question, NOT_MEASURED, None, 0.0, f"Degenerate {method} maps: not measured.")
    precision = np.array([m.precision for m in ctx.models])
    bnn, fp = (clustered_proportion(values[precision == p], ctx.settings.confidence) for p in ("bnn", "fp"))
    if bnn is None or fp is None:
        return Part("degenerate", question, NOT_MEASURED, None, 0.0, f"Degenerate {method} maps: not measured.")
    n_images = int(np.isfinite(values).any(axis=0).sum())
    estimate = proportion_estimate(proportion_difference(bnn, fp), n_images)
    status = at_least(estimate, 0.0)
    sentence = (f"Degenerate {method} maps (constant, all zero or flat; counted as nonsensical): BNN {bnn.value:.1%}, "
                f"FP {fp.value:.1%}; BNN minus FP = {estimate.text()} ({estimate.confidence:.0%} interval over "
                f"{estimate.covers}), above +0? {words(status)}.")
    levels = {"BNN": proportion_estimate(bnn, n_images), "FP": proportion_estimate(fp, n_images)}
    return Part("degenerate", question, status, estimate, 0.0, sentence, levels=levels)


def verdict_gradcam(ctx: Context) -> Verdict:
    """Verdict 3: (a) the GradCAM method's FP-vs-BNN maps differ beyond its own seed baselines (a part per
    similarity measure); (b) its BNN maps are nonsensical more often than its FP maps."""
    method = ctx.settings.gradcam_method
    parts = similarity_parts(ctx, method, claim="differ")
    nonsensical, controls = nonsensical_part(ctx, method)
    reading = reading_of(parts)
    parts.append(nonsensical)
    return make_verdict(3, f"{method}: FP and BNN maps differ; some BNN maps nonsensical", FINDING, parts, reading,
                        f"needs FP-vs-BNN similarity and the chance test of {method} maps",
                        [controls, degenerate_check(ctx, method)],
                        primary=(ctx.settings.primary_similarity, "nonsensical"))
