"""Every verdict of a study: :data:`VERDICTS` lists the findings (one function each, in its own module),
:func:`compute_verdicts` computes them with their robustness rows and what verdicts.json holds beside them."""

from __future__ import annotations

from typing import Callable, Sequence

from binsight.study.config import VerdictsConfig
from binsight.study.formats import Row
from binsight.study.verdicts import evidence, faithfulness, gradcam, noise, similarity
from binsight.study.names import PRECISIONS
from binsight.study.verdicts.records import ModelInfo, StudyVerdicts, Verdict, VerdictError
from binsight.study.verdicts.robustness import with_robustness
from binsight.study.verdicts.settings import VerdictSettings
from binsight.study.verdicts.summary import per_pair_values, predictions, undefined_counts
from binsight.study.verdicts.table import Context, Table

VERDICTS: tuple[tuple[Callable[[Context], Verdict], str], ...] = (
    (similarity.verdict_similarity, "similarity_measures"),
    (noise.verdict_noise, "noise_measures"),
    (gradcam.verdict_gradcam, "similarity_measures"),
    (faithfulness.verdict_faithfulness, "faithfulness_measures"),
    (evidence.verdict_evidence, "evidence_measures"),
)
"""(verdict function, the VerdictSettings field of the measures its robustness rows take one at a time), in
the order of the verdicts' numbers. A new verdict: a module with its ``FINDING`` and one function
``Context -> Verdict``, and a line here."""

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
                     *, methods: Sequence[str] | None = None) -> StudyVerdicts:
    """The four verdicts, with robustness, per-pair values, prediction agreement and undefined counts.

    rows: the study's tidy rows. models: every model of the table, surrogate variants included (a
    variant's name holds "+"); the verdicts use the base models, the robustness rows each surrogate's
    variants in place of the base BNNs. config: a :class:`VerdictsConfig` (or settings; None: defaults).
    methods: the explanation methods the study ran (None: every method label in the rows); verdict 4
    compares the faithfulness method with each of them except the chance maps and the convergence
    method. The chance maps are found in the rows by their labels (``chance_map_methods``).
    """
    check_models(models)
    settings = config if isinstance(config, VerdictSettings) else VerdictSettings.from_config(config)
    table = Table(rows)
    if methods is None:
        methods = sorted(table.methods)
    ctx = Context(table, models, settings, methods)
    base_ctx = ctx.replace(models=[m for m in models if not m.is_variant])
    verdicts = tuple(with_robustness(compute(base_ctx), compute, ctx, field_name) for compute, field_name in VERDICTS)
    return StudyVerdicts(verdicts, tuple(per_pair_values(table, models)), predictions(table, models),
                         tuple(undefined_counts(table)), settings)
