"""Verdict 5 (planted data only): do the maps find the evidence their model provably uses, FP and BNN alike?

It reads the rows of the ``evidence`` stage (:mod:`binsight.study.stages.evidence`: each base model's
intervention result, the scenario, the region's area and the edge map's measures) beside each method's
localisation rows on the planted window (``verdicts.evidence_measures``: ``energy_inside``, the share of
a map's mass on the window, and ``pointing_game``). Only models that passed their scenario's
intervention test count (a surrogate variant counts with its base model); the others are named in the
verdict's sentence and left out. With no model left the verdict is inconclusive, saying why; without
intervention rows (not a planted dataset) it is not measured.

Per method, on the models that passed (excess = a measure minus the area: a map spreading its mass
evenly, or placing its maximum at random, scores 0):

- shortcut (the window holds the evidence): "FP maps find it" and "BNN maps find it": the mean excess
  is above 0 and the mean measure above the edge map's (a map of the image's edges ignores the model
  but finds a bright pattern on a dark background), on every measure;
- decoy (the window holds an irrelevant pattern): "FP / BNN maps keep off it": the mean excess is below
  0 (the mass put on the pattern is mass wrongly put there; a map that ignores the image, a centred blob,
  also keeps off it: the decoy alone tells misplaced mass, not found evidence);
- "BNN maps find it as well as FP maps": (BNN excess - FP excess) / FP excess above
  ``-verdicts.evidence_margin`` (scale-free, as verdict 2 reads noise), on every measure.

Checks (shown, not deciding): per method and precision the share of *nonsensical maps with a known
answer*: on the shortcut a map whose mass on the window is at most the area or that loses the pointing
game (its maximum off the window), on the decoy a map that puts more than the area on the irrelevant
pattern or its maximum on it. Means and ratios take the crossed models-by-images t-interval, shares of
maps exact intervals clustered by model, as the other verdicts (docs/verdicts.md).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from binsight.study.names import split_variant
from binsight.study.inference import clustered_proportion
from binsight.study.stats import PRECISION_NAMES, Estimate, relative_difference, single_mean
from binsight.study.verdicts.gradcam import proportion_estimate
from binsight.study.verdicts.records import HELD, INCONCLUSIVE, NOT_MEASURED, ModelInfo, Part, Verdict
from binsight.study.verdicts.rules import comparison, conjunction, make_verdict, words
from binsight.study.verdicts.table import Context

FINDING = ("(Not in the paper.) Maps find the evidence their model provably uses, BNN maps as well as FP maps; "
           "the paper's \"seemingly nonsensical\" BNN maps, settled against a known answer.")
TITLE = "evidence: maps find what the model provably uses"
PASSED, RELEVANT, AREA = "intervention_passed", "pattern_relevant", "evidence_area"
EDGE = "edge_"  # the edge map's measure: EDGE + measure


def base_rows(ctx: Context, measure: str, method: str, models: Sequence[ModelInfo]) -> np.ndarray | None:
    """(M, K) values of ``measure`` of each model, a surrogate variant's read under its base model's name
    (the evidence stage writes the base models' rows); None when no model has any."""
    vectors = [ctx.table.vector(measure, method, split_variant(m.name)[0]) for m in models]
    if all(v is None for v in vectors):
        return None
    return np.stack([np.full(len(ctx.table.images), np.nan) if v is None else v for v in vectors])


def known_models(ctx: Context) -> tuple[list[ModelInfo], list[str], set[str]]:
    """(models that passed their intervention test, names of the base models that did not, the scenarios
    of those tested: "shortcut", "decoy"); models without an intervention row are in neither list."""
    passed, left_out, scenarios = [], [], set()
    for m in ctx.models:
        flag = base_rows(ctx, PASSED, "", [m])
        if flag is None or not np.isfinite(flag).any():
            continue
        relevant = base_rows(ctx, RELEVANT, "", [m])
        scenarios.add("shortcut" if np.nanmax(relevant) == 1.0 else "decoy")
        if np.nanmin(flag) == 1.0:
            passed.append(m)
        elif split_variant(m.name)[0] not in left_out:
            left_out.append(split_variant(m.name)[0])
    return passed, left_out, scenarios


def excess(ctx: Context, measure: str, method: str, reference: str = AREA) -> np.ndarray | None:
    """(M, K) ``measure`` of ``method``'s maps minus the reference rows (the area, or the edge map's measure)."""
    values, ref = ctx.singles(measure, method), base_rows(ctx, reference, "", ctx.models)
    if values is None or ref is None:
        return None
    return values - ref


def mean_of(ctx: Context, values: np.ndarray | None, precision: str) -> Estimate | None:
    """The crossed interval (models and images at once, as every other verdict's) of the mean of
    ``values`` (M, K) over ``precision``'s models."""
    if values is None or ctx.count(precision) == 0:
        return None
    return ctx.crossed(lambda draws, v: single_mean(v, draws, precision), values)


def share_of(ctx: Context, flags: np.ndarray | None, precision: str) -> Estimate | None:
    """The share of ``precision``'s maps flagged 1 in ``flags`` (M, K; NaN = unmeasured), with its exact
    interval clustered by model (as verdict 3 (b)'s rates)."""
    if flags is None or ctx.count(precision) == 0:
        return None
    precisions = np.array([m.precision for m in ctx.models])
    found = clustered_proportion(flags[precisions == precision], ctx.settings.confidence)
    return None if found is None else proportion_estimate(found, flags.shape[-1])


def finds_part(ctx: Context, method: str, precision: str, scenario: str) -> Part:
    """"FP / BNN maps find it" (shortcut) or "keep off it" (decoy), on every evidence measure (module docs)."""
    name = PRECISION_NAMES[precision]
    comps = []
    for measure in ctx.settings.evidence_measures:
        est = estimate_of(ctx, ("excess", method, measure, precision),
                          lambda: mean_of(ctx, excess(ctx, measure, method), precision))
        if scenario == "shortcut":
            edge = estimate_of(ctx, ("edge", method, measure, precision),
                               lambda: mean_of(ctx, excess(ctx, measure, method, EDGE + measure), precision))
            comps += [comparison(f"{measure} minus area", f"Do {name} {method} maps put more than the area on the "
                                 f"evidence by {measure}?", est, 0.0),
                      comparison(f"{measure} minus edge map", f"Do {name} {method} maps beat the edge map of the image "
                                 f"by {measure}?", edge, 0.0)]
        else:
            comps.append(comparison(f"{measure} minus area", f"Do {name} {method} maps put less than the area on the "
                                    f"irrelevant pattern by {measure}?", est, 0.0, below=True))
    verb = "find the evidence" if scenario == "shortcut" else "keep off the irrelevant pattern"
    return combined(f"{method}: {name} maps {verb}", f"Do {name} {method} maps {verb} their model provably "
                    f"{'uses' if scenario == 'shortcut' else 'ignores'}?", comps)


def as_well_part(ctx: Context, method: str, scenario: str) -> Part:
    """"BNN maps find it as well as FP maps": the BNN excess relative to the FP excess, per measure."""
    comps = []
    for measure in ctx.settings.evidence_measures:
        def relative() -> Estimate | None:
            values = excess(ctx, measure, method)
            if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
                return None
            return ctx.crossed(lambda draws, v: relative_difference(single_mean(v, draws, "bnn"),
                                                                    single_mean(v, draws, "fp")), values)
        est = estimate_of(ctx, ("relative", method, measure), relative)
        comps.append(comparison(f"{measure}: (BNN - FP) / FP excess", f"Is the BNN {method} maps' excess over the area "
                                f"by {measure} at most {ctx.settings.evidence_margin:.0%} below the FP maps'?",
                                est, -ctx.settings.evidence_margin))
    what = "find the evidence" if scenario == "shortcut" else "keep off the irrelevant pattern"
    return combined(f"{method}: BNN maps {what} as well as FP maps",
                    f"Do BNN {method} maps {what} as well as FP maps (scale-free)?", comps)


def combined(name: str, question: str, comps: Sequence[Part]) -> Part:
    status = conjunction([c.status for c in comps])
    est = next((c.estimate for c in comps if c.estimate is not None), None)
    sentence = f"{name}: " + " ".join(c.sentence for c in comps) + f" Status: {words(status)}."
    return Part(name, question, status, est, None, sentence, comparisons=tuple(comps))


def estimate_of(ctx: Context, key: tuple, estimate: Callable[[], Estimate | None]) -> Estimate | None:
    """``estimate()``, memoised per model set."""
    return ctx.memo(("evidence", *key), estimate)


def nonsensical(ctx: Context, method: str, scenario: str) -> np.ndarray | None:
    """(M, K) 1 where ``method``'s map misses the known answer, 0 where it finds it, NaN where unmeasured:
    shortcut: mass on the window at most the area or the pointing game lost (< 0.5); decoy: more than
    the area on the irrelevant pattern or its maximum on it (> 0.5)."""
    mass, pointing = excess(ctx, "energy_inside", method), ctx.singles("pointing_game", method)
    misses = []
    for values, cut in ((mass, 0.0), (pointing, 0.5)):
        if values is not None:
            bad = values <= cut if scenario == "shortcut" else values > cut
            misses.append(np.where(np.isfinite(values), bad.astype(np.float64), np.nan))
    if not misses:
        return None
    return misses[0] if len(misses) == 1 else np.fmax(misses[0], misses[1])


def nonsensical_checks(ctx: Context, methods: Sequence[str], scenario: str) -> list[Part]:
    """Per method and precision: the share of maps that miss the known answer (an interval above 0: some do)."""
    checks = []
    for method in methods:
        for precision in ("fp", "bnn"):
            name = PRECISION_NAMES[precision]
            est = estimate_of(ctx, ("nonsensical", method, precision, scenario),
                              lambda: share_of(ctx, nonsensical(ctx, method, scenario), precision))
            if est is None:
                continue
            checks.append(comparison(f"{method}: some {name} maps nonsensical",
                                     f"Do more than {ctx.settings.nonsensical_margin:.0%} of the {name} {method} maps "
                                     "miss the known answer (share of maps)?", est, ctx.settings.nonsensical_margin,
                                     describe=f"share of {name} {method} maps that miss the known answer"))
    return checks


def method_parts(ctx: Context, method: str, scenario: str) -> list[Part]:
    """FP maps find it, BNN maps find it, BNN as well as FP; the last only where FP maps find it (else not
    measured, as a similarity without baseline: the FP excess is no scale to measure the BNN's against)."""
    fp, bnn, as_well = (finds_part(ctx, method, "fp", scenario), finds_part(ctx, method, "bnn", scenario),
                        as_well_part(ctx, method, scenario))
    if fp.status not in (HELD, NOT_MEASURED) and as_well.status != NOT_MEASURED:
        as_well = dataclasses.replace(as_well, status=NOT_MEASURED, sentence=as_well.sentence.rsplit(" Status:", 1)[0]
                                      + f" FP maps do not find it ({fp.status.value}): their excess is no scale for the "
                                      "BNN maps'. Status: was not measured.")
    return [fp, bnn, as_well]


def evidence_methods(ctx: Context) -> list[str]:
    s = ctx.settings
    skip = {s.convergence_method, *s.chance_map_methods}
    return [m for m in ctx.methods if m not in skip]


def verdict_evidence(ctx: Context) -> Verdict:
    """Verdict 5: per method, FP maps find the known answer, BNN maps do, and BNN maps as well as FP maps
    (module docs); the shares of nonsensical maps as checks."""
    passed, left_out, scenarios = known_models(ctx)
    why = "needs a study on planted data (data.name fashion-mnist-shortcut or fashion-mnist-decoy) with localisation"
    if not passed and left_out:
        sentence = (f"Inconclusive: no model passed its intervention test ({', '.join(left_out)} did not): no map "
                    "has a known answer.")
        return Verdict(5, TITLE, FINDING, INCONCLUSIVE, (), "", sentence)
    if len(scenarios) > 1:
        return Verdict(5, TITLE, FINDING, INCONCLUSIVE, (), "", "Inconclusive: models of both scenarios in one table.")
    if not passed:
        return make_verdict(5, TITLE, FINDING, [], "", why)
    scenario = scenarios.pop()
    known = ctx.replace(models=passed)
    methods = evidence_methods(known)
    parts = [p for method in methods for p in method_parts(known, method, scenario)]
    verdict = make_verdict(5, TITLE, FINDING, parts, "", why, nonsensical_checks(known, methods, scenario),
                           primary=[p.name for p in parts])
    # every part decides; verdict 5 checks against planted ground truth and stays outside Holm's correction
    # of the four findings (compute.corrected counts the verdicts with a p-value)
    verdict = dataclasses.replace(verdict, p_value=None)
    if left_out and verdict.status != NOT_MEASURED:
        verdict = dataclasses.replace(verdict, sentence=verdict.sentence + f" Left out (did not pass the {scenario} "
                                      f"intervention test): {', '.join(left_out)}.")
    return verdict
