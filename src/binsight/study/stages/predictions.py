"""Stage ``predictions``: rows ``predicted`` (class index) and ``correct`` (0/1) of every base model on
every image, one unit per model."""

from __future__ import annotations

import torch
from torch import nn

from binsight.study.context import RunContext
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
