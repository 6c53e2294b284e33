"""Stage ``verdicts`` (rank 0): the merged table (measurements.csv) and the verdicts decided on it,
written to verdicts.json by the store; ``ctx.verdicts`` holds the typed
:class:`~binsight.study.verdicts.StudyVerdicts`."""

from __future__ import annotations

from binsight.study import verdicts
from binsight.study.context import RunContext
from binsight.study.plan import StudyModel


class VerdictsStage:
    name = "verdicts"

    def run(self, ctx: RunContext) -> None:
        if not ctx.main:
            return
        rows = ctx.folder.units.merge()
        infos = [model_info(m) for m in ctx.models]
        ctx.verdicts = verdicts.compute_verdicts(rows, infos, ctx.config.verdicts, methods=list(ctx.config.methods.run))
        ctx.folder.records.write_verdicts(ctx.verdicts)


def model_info(model: StudyModel) -> verdicts.ModelInfo:
    """The verdicts' description of a model of the table (name, precision, group, surrogate)."""
    return verdicts.ModelInfo(model.name, model.precision, model.group, model.surrogate)
