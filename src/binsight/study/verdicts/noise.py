"""Verdict 2: BNN minus FP noise of the noise method's maps, relative to FP noise, per noise measure; a
convergence check extrapolates the difference to infinitely many samples from the noise method's maps and
the convergence method's (more samples, same images) and says whether it is Monte Carlo noise."""

from __future__ import annotations

import dataclasses

import numpy as np

from binsight.study.inference import CONVERGENCE_EXPONENTS, convergence_reading, extrapolated
from binsight.study.stats import Estimate, Stat, relative_difference, single_mean
from binsight.study.verdicts.records import NOT_MEASURED, Part, Verdict
from binsight.study.verdicts.rules import at_least, comparison, make_verdict, p_of
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
    """The noise difference at infinitely many samples, extrapolated from the noise method's maps and the
    convergence method's maps of the same images (:func:`binsight.study.inference.extrapolated`, each
    precision's mean, then the relative BNN-minus-FP difference, with its crossed interval).

    reading (:func:`binsight.study.inference.convergence_reading`): a property of the model (the
    extrapolated difference lies above the margin), Monte Carlo noise (within plus or minus the margin),
    cannot tell (otherwise). Not measured without the convergence method's maps, the two methods' sample
    counts, or a known rate (:data:`~binsight.study.inference.CONVERGENCE_EXPONENTS`) for ``measure``.
    """
    s = ctx.settings
    name = f"{measure} at infinitely many samples"
    question = "Does the noise difference stay at infinitely many samples?"
    many_values = ctx.singles(measure, s.convergence_method)
    n_few, n_many = ctx.samples.get(s.noise_method), ctx.samples.get(s.convergence_method)
    exponent = CONVERGENCE_EXPONENTS.get(measure)
    missing = ("no maps of " + s.convergence_method if many_values is None else
               "sample counts of the two methods unknown" if not (n_few and n_many and n_few < n_many) else
               f"no known convergence rate of {measure}" if exponent is None else "")
    if missing:
        return Part(name, question, NOT_MEASURED, None, s.noise_margin, f"{name}: not measured ({missing}).")
    keep = np.isfinite(many_values).any(axis=0)
    few = comparison(f"{measure} with {s.noise_method} (same images)",
                     f"Are BNN maps noisier by {measure} with {s.noise_method} on the same images?",
                     noise_difference(ctx, s.noise_method, measure, s.convergence_method)[0], s.noise_margin)
    many = comparison(f"{measure} with {s.convergence_method}", f"Are BNN maps noisier by {measure} with "
                      f"{s.convergence_method}?", noise_difference(ctx, s.convergence_method, measure)[0], s.noise_margin)
    few_values = np.where(keep, ctx.singles(measure, s.noise_method), np.nan)

    def limit_of(draws, a, b):
        means = {}
        for p in ("fp", "bnn"):
            x, y = single_mean(a, draws, p), single_mean(b, draws, p)
            means[p] = Stat(extrapolated(x.values, y.values, n_few, n_many, exponent),
                            extrapolated(x.per_image, y.per_image, n_few, n_many, exponent), x.groups)
        return relative_difference(means["bnn"], means["fp"])

    limit = ctx.crossed(limit_of, few_values, many_values)
    reading = convergence_reading(limit, s.noise_margin)
    status = at_least(limit, s.noise_margin)
    text = lambda e: e.text() if e else "n/a"
    sentence = (f"Convergence ({measure}, {int(keep.sum())} images): BNN minus FP as a fraction of FP, "
                f"{s.noise_method} ({n_few} samples) {text(few.estimate)}, {s.convergence_method} ({n_many} samples) "
                f"{text(many.estimate)}; extrapolated as n^-{exponent:g} to infinitely many samples {text(limit)}"
                f" against +-{s.noise_margin:g}: {reading}.")
    return Part(name, question, status, limit, s.noise_margin, sentence, reading, comparisons=(few, many),
                p_value=p_of(limit, s.noise_margin))


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
