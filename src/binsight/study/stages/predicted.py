"""Stage ``predicted``: each base model's maps of its own predicted class, for the methods of verdicts 1 and 2
(``verdicts.similarity_method``, ``verdicts.noise_method``), so that the verdicts' robustness row "each model
explains its predicted class" (:mod:`binsight.study.verdicts.controls`) can be computed.

A correctly classified image's map of its predicted class is its map of its label, so a unit (model x
method x chunk, as the maps stage's) copies the chunk's stored maps and explains again only the images the
model misclassifies (the predictions stage's classes; the chunk's index as a seeded explainer's seed, as in
the maps stage). The chunk is stored under the method label ``M@predicted``
(:func:`binsight.study.names.predicted_label`) with the predicted classes as its targets, and gets the
single-map measures of degeneracy, noise and localisation (no faithfulness, no chance test); after every
rank's chunks, every pair of base models gets the pair measures (the pairs stage's :func:`pair_rows`).

Nothing to do when ``verdicts.predicted_labels`` is off, when ``methods.target`` is already "predicted"
(the maps are the predicted class's) or for a method that does not run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from binsight.study.context import RunContext
from binsight.study.formats import Row, iter_chunks, to_rows
from binsight.study.measures import map_values
from binsight.study.names import predicted_label
from binsight.study.plan import MethodSpec, StudyModel
from binsight.study.stages.maps import explain
from binsight.study.stages.pairs import pair_rows
from binsight.study.stages.predictions import predicted_classes


class PredictedStage:
    name = "predicted"

    def run(self, ctx: RunContext) -> None:
        specs = predicted_methods(ctx)
        units = [(m, spec, c, s) for spec in specs for m in ctx.base for c, s in iter_chunks(spec.n_images,
                                                                                          ctx.plan.chunk_size)]
        todo = [u for u in ctx.mine(units) if not done(ctx, *u)]
        with ctx.progress(len(todo), "predicted-class maps") as bar:
            for m, spec, c, s in todo:
                with ctx.clock(f"predicted/{spec.label}"):
                    chunk_of_predicted(ctx, m, spec, c, s)
                bar.update()
        ctx.sync()  # the pairs read every model's chunks
        pairs = [(a, b, spec) for spec in specs for i, a in enumerate(ctx.base) for b in ctx.base[i + 1:]]
        if not ctx.config.measures.similarity:
            return
        for a, b, spec in ctx.mine(pairs):
            label = predicted_label(spec.label)
            if not ctx.folder.units.done("pairs", (a.name, b.name, label)):
                ctx.folder.units.save("pairs", (a.name, b.name, label), pair_rows(ctx, a.name, b.name, label, ctx.images))


def predicted_methods(ctx: RunContext) -> list[MethodSpec]:
    """The methods whose predicted-class maps are made (module docstring); [] when there is nothing to do."""
    v = ctx.config.verdicts
    if not v.predicted_labels or ctx.config.methods.target == "predicted":
        return []
    wanted = {v.similarity_method, v.noise_method}
    return [spec for spec in ctx.plan.methods if spec.label in wanted and not spec.chance
            and spec.label in ctx.config.methods.run]


def done(ctx: RunContext, model: StudyModel, spec: MethodSpec, chunk: int, positions: slice) -> bool:
    label = predicted_label(spec.label)
    return (ctx.folder.units.done("predicted", (model.name, label, chunk))
            and ctx.folder.maps.done(model.name, label, chunk, images=ctx.images.indices[positions]))


def chunk_of_predicted(ctx: RunContext, model: StudyModel, spec: MethodSpec, chunk: int, positions: slice) -> None:
    """One chunk of ``model``'s predicted-class maps of ``spec``: stored maps where the model is right, new
    maps where it is wrong; saved with their measures (module docstring)."""
    data, label = ctx.images, predicted_label(spec.label)
    stored = ctx.folder.maps.load(model.name, spec.label, chunk, images=data.indices[positions])
    maps, predicted = stored["maps"].copy(), predicted_classes(ctx, model.name)[positions]
    wrong = np.flatnonzero(predicted != stored["targets"])
    if wrong.size:
        x = data.images[positions][wrong].to(ctx.device)
        again, _, _ = explain(ctx, model, spec, x, torch.from_numpy(predicted[wrong]), chunk=chunk)
        maps[wrong] = again.detach().cpu().numpy().astype(np.float32)
    ctx.folder.maps.save(model.name, label, chunk, maps=maps, targets=predicted.astype(np.int64),
                         images=stored["images"])
    ctx.folder.units.save("predicted", (model.name, label, chunk), chunk_rows(ctx, model, label, maps, stored["images"],
                                                                              positions))


def chunk_rows(ctx: RunContext, model: StudyModel, label: str, maps: np.ndarray, images: np.ndarray,
               positions: slice) -> list[Row]:
    """Degeneracy, noise and localisation rows of one chunk's maps (n, 1, H, W)."""
    ms, masks = ctx.config.measures, ctx.images.masks
    values = map_values(torch.from_numpy(maps), None if masks is None else masks[positions], noise_measures=ms.noise,
                        localisation=ms.localisation, dilation=ms.mask_dilation)
    return to_rows(values, images, method=label, model=model.name)


__all__: Sequence[str] = ["PredictedStage", "predicted_methods"]
