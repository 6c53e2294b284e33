"""Gradient (vanilla saliency, Simonyan et al. 2014): d logit_c / d x, reduced over colour channels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from binsight.explain.base import Attribution, Explainer, batched, check_reduction, input_gradients, reduce_map
from binsight.explain.registry import register_explainer


@register_explainer
class Gradient(Explainer):
    """d logit_c / d x for each image, one forward and one backward pass per batch.

    Args:
        model, surrogate, batch_size: as :class:`~binsight.explain.base.Explainer`.
        reduction: over colour channels: ``"max"`` of |grad| (default), ``"mean"`` of |grad|, or ``"none"``
            (maps keep all C channels).
        signed: return the signed gradient instead of its magnitude; with ``"max"`` each pixel takes the
            channel value of largest magnitude (sign kept), with ``"mean"`` the plain channel mean.

    Returns maps (N, 1, H, W) float32 in units of logit per pixel-value.
    """

    name = "gradient"

    def __init__(
        self,
        model: nn.Module,
        *,
        reduction: str = "max",
        signed: bool = False,
        surrogate: str | None = None,
        batch_size: int | None = None,
    ):
        super().__init__(model, surrogate=surrogate, batch_size=batch_size)
        self.reduction = check_reduction(reduction)
        self.signed = bool(signed)

    def _explain(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> Attribution:
        # The predicted class comes from the same forward pass as the gradient: one pass in all.
        def one_batch(x: torch.Tensor, t: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            grad, used = input_gradients(self.model, x, t)
            return reduce_map(grad, self.reduction, self.signed), used

        return batched(one_batch, inputs, wanted, self.batch_size)

    def params(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "signed": self.signed, **super().params()}
