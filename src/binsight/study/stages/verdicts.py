"""Stage ``verdicts`` (rank 0): the merged table (measurements.csv) and the verdicts decided on it,
written to verdicts.json by the store; ``ctx.verdicts`` holds the typed
:class:`~binsight.study.verdicts.StudyVerdicts`."""

from __future__ import annotations

from typing import Sequence

from binsight.explain.options import keyword_options
from binsight.study import verdicts
from binsight.study.config import explainer_class
from binsight.study.context import RunContext
from binsight.study.plan import MethodSpec, StudyModel


class VerdictsStage:
    name = "verdicts"

    def run(self, ctx: RunContext) -> None:
        if not ctx.main:
            return
        rows = ctx.folder.units.merge()
        infos = [model_info(m) for m in ctx.models]
        ctx.verdicts = verdicts.compute_verdicts(rows, infos, ctx.config.verdicts, methods=list(ctx.config.methods.run),
                                                 samples=sample_counts(ctx.plan.methods))
        ctx.folder.records.write_verdicts(ctx.verdicts)


def sample_counts(methods: Sequence[MethodSpec]) -> dict[str, int]:
    """Method label -> the ``n_samples`` its explainer averages (the option given, else the explainer's
    default), for the methods whose explainer takes one (SmoothGrad and its convergence variant)."""
    out = {}
    for spec in methods:
        if not spec.explainer:
            continue
        option = keyword_options(explainer_class(spec.explainer)).get("n_samples")
        if "n_samples" in spec.options:
            out[spec.label] = int(spec.options["n_samples"])
        elif option is not None and isinstance(option.default, int):
            out[spec.label] = option.default
    return out


def model_info(model: StudyModel) -> verdicts.ModelInfo:
    """The verdicts' description of a model of the table (name, precision, group, surrogate)."""
    return verdicts.ModelInfo(model.name, model.precision, model.group, model.surrogate)
