"""Verdict 2: BNN minus FP noise of the noise method's maps, relative to FP noise, per noise measure; a
convergence check extrapolates the difference to infinitely many samples from the noise method's maps and
the convergence method's (more samples, same images) and says whether it is Monte Carlo noise; where the
surrogate-free method ran (forward passes only), the same extrapolation of its maps says whether the extra
noise belongs to the network or to its surrogate."""

from __future__ import annotations

import dataclasses

import numpy as np

from binsight.study.inference import CANNOT_TELL, CONVERGENCE_EXPONENTS, convergence_reading, extrapolated
from binsight.study.stats import Estimate, Stat, relative_difference, single_mean
from binsight.study.verdicts.guards import UNSETTLED
from binsight.study.verdicts.records import HELD, NOT_HELD, NOT_MEASURED, Part, Status, Verdict
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
    convergence method's maps of the same images (:func:`extrapolation`).

    reading (:func:`binsight.study.inference.convergence_reading`): a property of the model (the
    extrapolated difference lies above the margin), Monte Carlo noise (within plus or minus the margin),
    cannot tell (otherwise). Not measured without the convergence method's maps, the two methods' sample
    counts, or a known rate (:data:`~binsight.study.inference.CONVERGENCE_EXPONENTS`) for ``measure``.
    """
    s = ctx.settings
    name = f"{measure} at infinitely many samples"
    question = "Does the noise difference stay at infinitely many samples?"
    found = extrapolation(ctx, measure, s.noise_method, s.convergence_method)
    if isinstance(found, str):
        return Part(name, question, NOT_MEASURED, None, s.noise_margin, f"{name}: not measured ({found}).")
    reading = convergence_reading(found.limit, s.noise_margin)
    sentence = f"Convergence ({measure}, {found.images} images): BNN minus FP as a fraction of FP, {found.text()}: {reading}."
    return Part(name, question, at_least(found.limit, s.noise_margin), found.limit, s.noise_margin, sentence, reading,
                comparisons=(found.few, found.many), p_value=p_of(found.limit, s.noise_margin))


NETWORK, SURROGATE, NO_EXTRA = "belongs to the network", "belongs to the surrogate", "none to attribute"
"""The readings of :func:`surrogate_free_check` (besides :data:`~binsight.study.inference.CANNOT_TELL`)."""


def attribution(with_surrogate: Status, without: Status) -> str:
    """Whose is the BNN maps' extra noise, from the status of "BNN maps noisier" with the surrogate
    (the noise method's maps) and without it (the surrogate-free maps at infinitely many samples):
    noisier both ways, the network's; noisier only with the surrogate, the surrogate's; not noisier with
    the surrogate, nothing to attribute; otherwise cannot tell."""
    if with_surrogate == NOT_HELD:
        return NO_EXTRA
    if with_surrogate != HELD:
        return CANNOT_TELL
    return {HELD: NETWORK, NOT_HELD: SURROGATE}.get(without, CANNOT_TELL)


def surrogate_free_check(ctx: Context, measure: str) -> Part:
    """Whether BNN maps stay noisier without a surrogate gradient: the noise difference of the
    surrogate-free method's maps (``surrogate_free_method``, forward passes only, FP and BNN at equal samples
    and noise) extrapolated to infinitely many samples with its convergence variant
    (``surrogate_free_convergence_method``, same images: :func:`extrapolation`), against the margin, and
    read (:func:`attribution`) together with the noise method's difference on the same images; cannot tell
    where any of the convergence variant's maps did not settle (its ``unsettled`` rows: split-half
    reliability below :data:`binsight.explain.smoothgrad.RELIABLE`), since the extrapolation holds only
    once the Monte Carlo noise is small. Not measured where :func:`extrapolation` cannot be formed (e.g.
    the method not in ``methods.run``)."""
    s = ctx.settings
    name = f"{measure} without the surrogate"
    question = f"Are BNN maps noisier by {measure} without the surrogate gradient?"
    found = extrapolation(ctx, measure, s.surrogate_free_method, s.surrogate_free_convergence_method)
    if isinstance(found, str):
        return Part(name, question, NOT_MEASURED, None, s.noise_margin, f"{name}: not measured ({found}).")
    same = noise_difference(ctx, s.noise_method, measure, s.surrogate_free_convergence_method)[0]
    surrogate = comparison(f"{measure} with {s.noise_method} (same images)",
                           f"Are BNN maps noisier by {measure} with {s.noise_method} on the same images?", same,
                           s.noise_margin)
    status = at_least(found.limit, s.noise_margin)
    flags = ctx.singles(UNSETTLED, s.surrogate_free_convergence_method)
    unsettled = 0 if flags is None else int(np.nansum(flags))
    reading = attribution(surrogate.status, status) if not unsettled else CANNOT_TELL
    why = (f" ({unsettled} of its maps at {found.samples[1]} samples did not settle: the extrapolation assumes "
           "maps whose Monte Carlo noise is small)" if unsettled else "")
    text = surrogate.estimate.text() if surrogate.estimate else "n/a"
    sentence = (f"Without the surrogate ({measure}, {found.images} images): BNN minus FP as a fraction of FP, "
                f"{s.noise_method} {text} ({surrogate.status.value}); surrogate-free {found.text()} "
                f"({status.value}); extra noise: {reading}{why}.")
    return Part(name, question, status, found.limit, s.noise_margin, sentence, reading,
                comparisons=(surrogate, found.few, found.many), p_value=p_of(found.limit, s.noise_margin))


@dataclasses.dataclass(frozen=True)
class Extrapolation:
    """A noise difference at two sample counts on the same images and at infinitely many samples."""

    few: Part
    many: Part
    limit: Estimate | None
    images: int
    labels: tuple[str, str]
    samples: tuple[int, int]
    exponent: float
    margin: float

    def text(self) -> str:
        """The three differences in words, with the methods, their sample counts and the rate."""
        def text(e: Estimate | None) -> str:
            return e.text() if e else "n/a"
        return (f"{self.labels[0]} ({self.samples[0]} samples) {text(self.few.estimate)}, {self.labels[1]} "
                f"({self.samples[1]} samples) {text(self.many.estimate)}; extrapolated as n^-{self.exponent:g} to "
                f"infinitely many samples {text(self.limit)} against +-{self.margin:g}")


def extrapolation(ctx: Context, measure: str, few_label: str, many_label: str) -> Extrapolation | str:
    """The BNN-minus-FP noise difference (relative to FP) of ``few_label``'s and ``many_label``'s maps of the
    same images (those ``many_label`` explains), and at infinitely many samples
    (:func:`binsight.study.inference.extrapolated`: each precision's mean extrapolated, then the relative
    difference, with its crossed interval); or why it cannot be formed (maps or sample counts missing, no
    known rate (:data:`~binsight.study.inference.CONVERGENCE_EXPONENTS`) for ``measure``)."""
    s = ctx.settings
    few_values, many_values = ctx.singles(measure, few_label), ctx.singles(measure, many_label)
    n_few, n_many = ctx.samples.get(few_label), ctx.samples.get(many_label)
    exponent = CONVERGENCE_EXPONENTS.get(measure)
    missing = (f"no maps of {few_label}" if few_values is None else f"no maps of {many_label}" if many_values is None
               else "sample counts of the two methods unknown" if not (n_few and n_many and n_few < n_many)
               else f"no known convergence rate of {measure}" if exponent is None else "")
    if missing:
        return missing
    keep = np.isfinite(many_values).any(axis=0)
    few = comparison(f"{measure} with {few_label} (same images)",
                     f"Are BNN maps noisier by {measure} with {few_label} on the same images?",
                     noise_difference(ctx, few_label, measure, many_label)[0], s.noise_margin)
    many = comparison(f"{measure} with {many_label}", f"Are BNN maps noisier by {measure} with {many_label}?",
                      noise_difference(ctx, many_label, measure)[0], s.noise_margin)

    def limit_of(draws, a, b):
        means = {}
        for p in ("fp", "bnn"):
            x, y = single_mean(a, draws, p), single_mean(b, draws, p)
            means[p] = Stat(extrapolated(x.values, y.values, n_few, n_many, exponent),
                            extrapolated(x.per_image, y.per_image, n_few, n_many, exponent), x.groups)
        return relative_difference(means["bnn"], means["fp"])

    limit = ctx.crossed(limit_of, np.where(keep, few_values, np.nan), many_values)
    return Extrapolation(few, many, limit, int(keep.sum()), (few_label, many_label), (n_few, n_many), exponent,
                         s.noise_margin)


def common_reading(checks: list[Part]) -> str:
    """The measured checks' reading where they agree, "measures disagree" where not, "" without any."""
    readings = {c.reading for c in checks if c.status != NOT_MEASURED}
    return readings.pop() if len(readings) == 1 else "measures disagree" if readings else ""


def verdict_noise(ctx: Context) -> Verdict:
    """Verdict 2: the noise method's maps are noisier for BNNs (each noise measure a part)."""
    s = ctx.settings
    parts = [noise_part(ctx, m) for m in s.noise_measures]
    checks = [convergence_check(ctx, m) for m in s.noise_measures]
    free = [surrogate_free_check(ctx, m) for m in s.noise_measures]
    converged = common_reading(checks)
    reading = f"convergence: {converged}" if converged else "convergence not measured"
    if common_reading(free):
        reading += f"; extra noise: {common_reading(free)}"
    if common_reading(free) or s.surrogate_free_method in ctx.methods:  # run, so shown also when not measured
        checks += free
    return make_verdict(2, f"{s.noise_method}: BNN maps are noisier", FINDING, parts, reading,
                        f"needs {', '.join(s.noise_measures)} of {s.noise_method} maps of FP and BNN models", checks,
                        primary=(s.primary_noise,))
