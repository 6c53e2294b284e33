"""Stage ``sanity``: cascading randomisation (Adebayo et al. 2018) of every base model, on the first
``measures.sanity_images`` images, for the methods whose table sets ``sanity``."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from binsight.metrics import sanity
from binsight.study.context import RunContext
from binsight.study.formats import Row, to_rows
from binsight.study.plan import MethodSpec, StudyModel
from binsight.study.stages.maps import create_explainer


class SanityStage:
    name = "sanity"

    def run(self, ctx: RunContext) -> None:
        if not ctx.config.measures.sanity:
            return
        data = ctx.images
        n = min(ctx.config.measures.sanity_images, ctx.config.data.n_images)
        units = [(m, spec) for m in ctx.base for spec in ctx.plan.methods if spec.sanity]
        todo = [(m, spec) for m, spec in ctx.mine(units) if not ctx.folder.units.done("sanity", (m.name, spec.label))]
        with ctx.progress(len(todo), "sanity") as bar:
            for m, spec in todo:
                bar.set_postfix_str(f"{m.name} {spec.label}")
                rows = sanity_rows(ctx, m, spec, data.images[:n].to(ctx.device), data.labels[:n], data.indices[:n])
                ctx.folder.units.save("sanity", (m.name, spec.label), rows)
                bar.update()


def sanity_rows(ctx: RunContext, model: StudyModel, spec: MethodSpec, x: torch.Tensor, labels: torch.Tensor,
                idx: np.ndarray) -> list[Row]:
    """Similarity (Spearman, SSIM) of each image's map after randomising 1, 2, ... layers from the top
    (cascading) to its original map; the layers' names go to ``sanity_layers_MODEL.json``."""
    def explain(module: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        other = StudyModel(model.name, model.precision, model.group, model.surrogate, module)
        return create_explainer(spec, other, chunk=0, batch_size=ctx.plan.batch_size,
                                options=spec.sanity_options).attribute(images, targets)

    targets = labels.to(x.device) if ctx.config.methods.target == "label" else None
    result = sanity.randomisation_test(model.module, x, explain, targets=targets, mode="cascading",
                                       measures=("spearman", "ssim"), seed=0)
    ctx.folder.records.write_sanity_layers(model.name, result.layers)
    return [row for measure, table in result.similarity.items() for step, sims in enumerate(table, start=1)
            for row in to_rows({f"sanity_{measure}": sims}, idx, method=spec.label, model=model.name, step=step)]
