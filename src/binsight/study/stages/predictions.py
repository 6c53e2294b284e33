"""Stage ``predictions``: rows ``predicted`` (class index) and ``correct`` (0/1) of every base model on
every image, one unit per model (read back by :func:`predicted_classes`; the verdicts' control on the
images every model classifies correctly reads the ``correct`` rows)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from binsight.study.context import RunContext
from binsight.study.errors import RunFolderError
from binsight.study.formats import to_rows


class PredictionsStage:
    name = "predictions"

    def run(self, ctx: RunContext) -> None:
        data = ctx.images
        for m in ctx.mine(ctx.base):
            if ctx.folder.units.done("predictions", m.name):
                continue
            predicted = predict(m.module, data.images, ctx.device, ctx.plan.batch_size)
            values = {"predicted": predicted.numpy(), "correct": (predicted == data.labels).numpy()}
            ctx.folder.units.save("predictions", m.name, to_rows(values, data.indices, method="", model=m.name))


def predict(module: nn.Module, images: torch.Tensor, device: torch.device, batch_size: int) -> torch.Tensor:
    """Predicted classes (N,) on the CPU, ``batch_size`` images at a time on ``device``."""
    with torch.no_grad():
        return torch.cat([module(x.to(device)).argmax(1).cpu() for x in torch.split(images, batch_size)])


def predicted_classes(ctx: RunContext, model: str) -> np.ndarray:
    """int64 (n,): the stored predicted class of each of the study's images (``ctx.images`` order) by base
    model ``model``; a :class:`RunFolderError` if its unit lacks an image."""
    rows = ctx.folder.units.read(ctx.folder.units.path("predictions", model))
    by_image = {r.image: int(r.value) for r in rows if r.measure == "predicted"}
    missing = [int(i) for i in ctx.images.indices if int(i) not in by_image]
    if missing:
        raise RunFolderError(f"the predictions of {model} lack image(s) {missing[:5]}; delete "
                             f"{ctx.folder.units.path('predictions', model)} and rerun")
    return np.array([by_image[int(i)] for i in ctx.images.indices], dtype=np.int64)
