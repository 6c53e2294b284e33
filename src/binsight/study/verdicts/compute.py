"""Every verdict of a study: :data:`VERDICTS` lists the findings (one function each, in its own module),
:func:`compute_verdicts` computes them with their robustness rows and what verdicts.json holds beside them."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from binsight.study.config import VerdictsConfig
from binsight.study.formats import Row
from binsight.study.verdicts import evidence, faithfulness, gradcam, noise, similarity
from binsight.study.names import PRECISIONS, PREDICTED_SUFFIX
from binsight.study.inference import holm
from binsight.study.verdicts.records import HELD, INCONCLUSIVE, ModelInfo, StudyVerdicts, Verdict, VerdictError
from binsight.study.verdicts.guards import with_guards
from binsight.study.verdicts.robustness import with_robustness
from binsight.study.verdicts.settings import VerdictSettings
from binsight.study.verdicts.summary import per_pair_values, predictions, undefined_counts
from binsight.study.verdicts.table import Context, Table

VERDICTS: tuple[tuple[Callable[[Context], Verdict], str, str], ...] = (
    (similarity.verdict_similarity, "similarity_measures", "primary_similarity"),
    (noise.verdict_noise, "noise_measures", "primary_noise"),
    (gradcam.verdict_gradcam, "similarity_measures", "primary_similarity"),
    (faithfulness.verdict_faithfulness, "faithfulness_measures", "primary_faithfulness"),
    (evidence.verdict_evidence, "evidence_measures", "primary_evidence"),
)
"""(verdict function, the VerdictSettings field of the measures its robustness rows take one at a time, the
field of its primary measure), in the order of the verdicts' numbers. A new verdict: a module with its
``FINDING`` and one function ``Context -> Verdict``, and a line here."""

FINDINGS = {1: similarity.FINDING, 2: noise.FINDING, 3: gradcam.FINDING, 4: faithfulness.FINDING, 5: evidence.FINDING}
"""Each verdict's finding, by number, as the paper states it."""

def check_models(models: Sequence[ModelInfo]) -> None:
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise VerdictError(f"model names repeat: {sorted({n for n in names if names.count(n) > 1})}; give each model once")
    for m in models:
        if m.precision not in PRECISIONS:
            raise VerdictError(f"model {m.name!r}: precision {m.precision!r} is not one of 'fp', 'bnn'")


def compute_verdicts(rows: Sequence[Row], models: Sequence[ModelInfo], config: VerdictsConfig | VerdictSettings | None = None,
                     *, methods: Sequence[str] | None = None, samples: dict[str, int] | None = None) -> StudyVerdicts:
    """The four verdicts, with robustness, per-pair values, prediction agreement and undefined counts.

    rows: the study's tidy rows. models: every model of the table, surrogate variants included (a
    variant's name holds "+"); the verdicts use the base models, the robustness rows each surrogate's
    variants in place of the base BNNs. config: a :class:`VerdictsConfig` (or settings; None: defaults).
    methods: the explanation methods the study ran (None: every method label in the rows); verdict 4
    compares the faithfulness method with each of them except the chance maps and the convergence
    method. The chance maps are found in the rows by their labels (``chance_map_methods``). samples: method
    label -> the Monte Carlo samples its maps average (the noise and convergence methods'; without them
    verdict 2's convergence check is not measured).
    """
    check_models(models)
    settings = config if isinstance(config, VerdictSettings) else VerdictSettings.from_config(config)
    table = Table(rows)
    if methods is None:  # a method's predicted-class maps (verdicts.controls) are a robustness row, no method
        methods = sorted(m for m in table.methods if not m.endswith(PREDICTED_SUFFIX))
    ctx = Context(table, models, settings, methods, samples)
    base_ctx = ctx.replace(models=[m for m in models if not m.is_variant])
    verdicts = [with_guards(with_robustness(compute(base_ctx), compute, ctx, measures, primary), base_ctx)
                for compute, measures, primary in VERDICTS]
    return StudyVerdicts(tuple(corrected(verdicts, settings.confidence)), tuple(per_pair_values(table, models)),
                         predictions(table, models), tuple(undefined_counts(table)), settings)


def corrected(verdicts: Sequence[Verdict], confidence: float) -> list[Verdict]:
    """The verdicts after Holm's correction of their primary tests (:func:`binsight.study.inference.holm`
    at alpha = (1 - confidence) / 2, the one-sided level of the intervals): each gets its adjusted p-value,
    and a held verdict whose adjusted p-value exceeds alpha becomes inconclusive. Verdicts without a
    primary p-value (not measured, or no test) are left out of the count."""
    alpha = (1 - confidence) / 2
    adjusted = holm([np.nan if v.p_value is None else v.p_value for v in verdicts], alpha).adjusted
    out = []
    for v, p in zip(verdicts, adjusted):
        v = dataclasses.replace(v, adjusted_p=None if np.isnan(p) else p)
        if v.status == HELD and v.adjusted_p is not None and v.adjusted_p > alpha:
            note = (f" Held on its own, but not after Holm's correction across the findings' primary tests "
                    f"(adjusted p = {v.adjusted_p:.3g} > {alpha:.3g}): inconclusive.")
            v = dataclasses.replace(v, status=INCONCLUSIVE, sentence=v.sentence + note)
        out.append(v)
    return out
