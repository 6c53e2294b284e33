"""Robustness: each verdict recomputed under every explanation surrogate of the BNNs, every single measure,
half and twice the margins, and the controls for binarization (:mod:`binsight.study.verdicts.controls`: the
images every model classifies correctly, each model's predicted class, accuracy-matched FP models); a
verdict whose status changes under one of them (a secondary measure alone excepted) is fragile. A row that
cannot be computed reads not measured, with the reason, and changes nothing."""

from __future__ import annotations

import dataclasses
from typing import Callable

from binsight.study.names import FOREIGN_SURROGATE
from binsight.study.verdicts.controls import control_contexts
from binsight.study.verdicts.records import NOT_MEASURED, Robustness, Verdict
from binsight.study.verdicts.table import Context

def alternatives(ctx: Context, measures_field: str, primary_field: str) -> list[tuple[str, Context, bool]]:
    """(setting, context, secondary) for each surrogate variant set, each single measure (decided on that
    measure; secondary unless it is the primary one), and half / twice the margins."""
    out = []
    base = [m for m in ctx.models if not m.is_variant]
    fp = [m for m in base if m.precision != "bnn"]
    variants = [m for m in ctx.models if m.is_variant and m.precision == "bnn"]
    for surrogate in sorted({m.surrogate for m in variants}):
        models = fp + [m for m in variants if m.surrogate == surrogate]
        out.append((f"BNNs explained with surrogate {surrogate}", ctx.replace(models=models), False))
    base_ctx = ctx.replace(models=base)
    measures = getattr(ctx.settings, measures_field)
    if len(measures) > 1:
        primary = getattr(ctx.settings, primary_field)
        for m in measures:
            alone = dataclasses.replace(ctx.settings, **{measures_field: (m,), primary_field: m})
            out.append((f"{m} only", base_ctx.replace(settings=alone), m != primary))
    for factor, words in ((0.5, "half"), (2.0, "twice")):
        out.append((f"margins at {words} the default", base_ctx.replace(settings=ctx.settings.scaled_margins(factor)),
                    False))
    return out


def recomputed(verdict: Verdict, compute: Callable[[Context], Verdict], setting: str, alt: Context | str,
               secondary: bool, note: str = "") -> Robustness:
    """The row of ``setting``: ``compute`` on ``alt`` (``note`` before its reading), or not measured with the
    reason ``alt`` gives; changed when measured with another status than ``verdict``'s."""
    if isinstance(alt, str):
        return Robustness(setting, NOT_MEASURED, f"not measured: {alt}", False, secondary)
    v = compute(alt)
    changed = v.status != NOT_MEASURED and v.status != verdict.status
    return Robustness(setting, v.status, "; ".join(t for t in (note, v.reading) if t), changed, secondary)


def with_robustness(verdict: Verdict, compute: Callable[[Context], Verdict], ctx: Context, measures_field: str,
                    primary_field: str) -> Verdict:
    """``verdict`` with its robustness rows; fragile when a measured row that keeps the primary measure
    (a surrogate, the margins, the primary measure alone, a control for binarization) has another status
    than its own."""
    if verdict.status == NOT_MEASURED:
        return verdict
    rows = []
    for setting, alt, secondary in alternatives(ctx, measures_field, primary_field):
        rows.append(recomputed(verdict, compute, setting, alt, secondary))
    for setting, alt, note in control_contexts(ctx, verdict.id):
        rows.append(recomputed(verdict, compute, setting, alt, False, note))
    own = sorted(m.name for m in ctx.models if m.precision == "bnn" and not m.is_variant and m.surrogate == FOREIGN_SURROGATE)
    if own:  # a foreign BNN's sign cannot be switched: the surrogate rows leave it out
        rows.append(Robustness("BNNs explained with another surrogate", NOT_MEASURED,
                               f"does not apply to {', '.join(own)}: the sign's backward is the model's own, "
                               "not switchable", False))
    fragile = any(r.changed and not r.secondary for r in rows)
    sentence = verdict.sentence
    if fragile:
        sentence += " Fragile: its status changes with " + "; ".join(
            f"{r.setting} ({r.status.value})" for r in rows if r.changed and not r.secondary) + "."
    return dataclasses.replace(verdict, robustness=tuple(rows), fragile=fragile, sentence=sentence)
