"""Guards: a verdict that rests on maps that did not settle says so.

The maps stage records, per map, whether its explainer measured it as unsettled (``unsettled`` rows, 0 or 1):
a NeuroMask mask that has not left its random start (``extras["near_start"]``, its correlation with the
start mask above :data:`binsight.explain.neuromask.NEAR_START`) or a SmoothGrad map whose two halves of
samples disagree (``extras["unconverged"]``, split-half reliability below
:data:`binsight.explain.smoothgrad.RELIABLE`). Both are measured on the maps, not guessed from the settings.

Each verdict gets one check per method it reads whose maps have ``unsettled`` rows: the share of that
method's maps (base models) that did not settle, with its exact interval clustered by model. The check is an
observation of this run's maps, not an inference: *held* when at least one map did not settle, *not held*
when none did. It never changes the verdict's status; a held check adds a caution to its sentence.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from binsight.study.inference import clustered_proportion
from binsight.study.verdicts.evidence import evidence_methods
from binsight.study.verdicts.faithfulness import other_methods
from binsight.study.verdicts.gradcam import proportion_estimate
from binsight.study.verdicts.records import HELD, NOT_HELD, NOT_MEASURED, Part, Verdict
from binsight.study.verdicts.table import Context

UNSETTLED = "unsettled"
"""The table's measure: 1 where a map did not settle (module docs), 0 where it did."""


def verdict_methods(ctx: Context, number: int) -> list[str]:
    """The methods verdict ``number`` reads (1 similarity, 2 noise, 3 GradCAM, 4 faithfulness and the
    methods it is compared with, 5 every method)."""
    s = ctx.settings
    if number == 1:
        return [s.similarity_method]
    if number == 2:
        return [s.noise_method, s.convergence_method, s.surrogate_free_method, s.surrogate_free_convergence_method]
    if number == 3:
        return [s.gradcam_method]
    return [s.faithfulness_method, *other_methods(ctx)] if number == 4 else evidence_methods(ctx)


def unsettled_check(ctx: Context, method: str) -> Part | None:
    """The share of ``method``'s maps that did not settle, as a check; None without ``unsettled`` rows."""
    flags = ctx.singles(UNSETTLED, method)
    found = None if flags is None else clustered_proportion(flags, ctx.settings.confidence)
    if found is None:
        return None
    status = HELD if found.count > 0 else NOT_HELD
    sentence = (f"{found.count} of {found.n} {method} maps did not settle (a NeuroMask mask near its random start, "
                f"or SmoothGrad halves that disagree): {'the verdict rests on them' if found.count else 'none'}.")
    return Part(f"{method}: maps unsettled", f"Did any {method} map fail to settle?", status,
                proportion_estimate(found, flags.shape[-1]), None, sentence)


def with_guards(verdict: Verdict, ctx: Context) -> Verdict:
    """``verdict`` with one unsettled-maps check per method it reads (module docs)."""
    if verdict.status == NOT_MEASURED:
        return verdict
    checks = [c for c in (unsettled_check(ctx, m) for m in dict.fromkeys(verdict_methods(ctx, verdict.id))) if c]
    if not checks:
        return verdict
    held = [c.name.split(":")[0] for c in checks if c.status == HELD]
    sentence = verdict.sentence
    if held:
        sentence += (f" Caution: it rests on maps that did not settle ({', '.join(held)}); raise the method's "
                     "iterations or samples.")
    return dataclasses.replace(verdict, checks=(*verdict.checks, *checks), sentence=sentence)


__all__: Sequence[str] = ["UNSETTLED", "unsettled_check", "verdict_methods", "with_guards"]
