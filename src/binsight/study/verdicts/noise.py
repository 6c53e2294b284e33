"""Verdict 2: BNN minus FP noise of the noise method's maps, relative to FP noise, per noise measure; a
convergence check with more samples (the convergence method) says whether the difference is Monte Carlo
noise."""

from __future__ import annotations

import dataclasses

import numpy as np

from binsight.study.stats import Estimate, relative_difference, single_mean
from binsight.study.verdicts.records import (CANNOT_TELL, HELD, MODEL_PROPERTY, MONTE_CARLO, NOT_HELD, NOT_MEASURED,
                                             Part, Verdict)
from binsight.study.verdicts.rules import comparison, make_verdict
from binsight.study.verdicts.table import Context

FINDING = "SmoothGrad produces significantly noisier maps for BNNs."

def noise_difference(ctx: Context, method: str, measure: str, keep_method: str = "") -> tuple[Estimate | None, dict[str, Estimate]]:
    """(BNN mean - FP mean) / FP mean of ``measure`` of ``method``'s maps, on the images where
    ``keep_method`` has values of ``measure`` ("" = every image); and each precision's own mean."""
    return ctx.memo(("noise", method, measure, keep_method), lambda: _noise_difference(ctx, method, measure, keep_method))


def _noise_difference(ctx: Context, method: str, measure: str, keep_method: str) -> tuple[Estimate | None, dict[str, Estimate]]:
    values = ctx.singles(measure, method)
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None, {}
    keep = ctx.singles(measure, keep_method) if keep_method else None
    if keep is not None:
        values = np.where(np.isfinite(keep).any(axis=0), values, np.nan)
    levels = {name: ctx.crossed(lambda d, v, p=p: single_mean(v, d, p), values) for name, p in (("FP", "fp"), ("BNN", "bnn"))}
    levels = {k: e for k, e in levels.items() if e is not None}
    if len(levels) < 2:
        return None, {}
    return ctx.crossed(lambda d, v: relative_difference(single_mean(v, d, "bnn"), single_mean(v, d, "fp")), values), levels


def noise_part(ctx: Context, measure: str) -> Part:
    s = ctx.settings
    diff, levels = noise_difference(ctx, s.noise_method, measure)
    means = ", ".join(f"{k} {e.value:.3g}" for k, e in levels.items())
    part = comparison(measure, f"Are {s.noise_method} maps of BNNs noisier by {measure}?", diff, s.noise_margin,
                      describe=f"{measure} of {s.noise_method} maps ({means}), BNN minus FP as a fraction of FP")
    return dataclasses.replace(part, levels=levels)


def convergence_check(ctx: Context, measure: str) -> Part:
    """The noise difference with the convergence method's maps against the noise method's on the same images.

    reading: a property of the model (the difference stays beyond the margin with more samples), Monte
    Carlo noise (it does with the noise method and does not with more samples), cannot tell (otherwise).
    """
    s = ctx.settings
    more = ctx.singles(measure, s.convergence_method)
    name = f"{measure} with {s.convergence_method}"
    if more is None:
        return Part(name, "Does the noise difference stay with more samples?", NOT_MEASURED, None, s.noise_margin,
                    f"{name}: not measured.")
    keep = np.isfinite(more).any(axis=0)
    many = comparison(name, f"Are BNN maps noisier by {measure} with {s.convergence_method}?",
                      noise_difference(ctx, s.convergence_method, measure)[0], s.noise_margin)
    few = comparison(f"{measure} with {s.noise_method} (same images)",
                     f"Are BNN maps noisier by {measure} with {s.noise_method} on the same images?",
                     noise_difference(ctx, s.noise_method, measure, s.convergence_method)[0], s.noise_margin)
    if many.status == HELD:
        reading = MODEL_PROPERTY
    elif many.status == NOT_HELD and few.status == HELD:
        reading = MONTE_CARLO
    else:
        reading = CANNOT_TELL
    sentence = (f"Convergence ({measure}, {int(keep.sum())} images): BNN minus FP as a fraction of FP, "
                f"{s.noise_method} {few.estimate.text() if few.estimate else 'n/a'}, {s.convergence_method} "
                f"{many.estimate.text() if many.estimate else 'n/a'}: the difference is {reading}.")
    return Part(name, "Does the noise difference stay with more samples?", many.status, many.estimate, s.noise_margin,
                sentence, reading, comparisons=(few, many))


def verdict_noise(ctx: Context) -> Verdict:
    """Verdict 2: the noise method's maps are noisier for BNNs (each noise measure a part)."""
    s = ctx.settings
    parts = [noise_part(ctx, m) for m in s.noise_measures]
    checks = [convergence_check(ctx, m) for m in s.noise_measures]
    readings = {c.reading for c in checks if c.status != NOT_MEASURED}
    reading = ("convergence: " + readings.pop()) if len(readings) == 1 else (
        "convergence: measures disagree" if readings else "convergence not measured")
    return make_verdict(2, f"{s.noise_method}: BNN maps are noisier", FINDING, parts, reading,
                        f"needs {', '.join(s.noise_measures)} of {s.noise_method} maps of FP and BNN models", checks,
                        primary=(s.primary_noise,))
