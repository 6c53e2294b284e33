"""Gradient (vanilla saliency, Simonyan et al. 2014): d logit_c / d x, reduced over colour channels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from binsight.explain.base import Explainer, ExplainerError, batched, input_gradients, reduce_channels
from binsight.explain.registry import register

REDUCTIONS = ("max", "mean", "none")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`, else raise :class:`ExplainerError`."""
    if reduction not in REDUCTIONS:
        raise ExplainerError(f"unknown channel reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    return reduction


def reduce_signed(grads: torch.Tensor, reduction: str) -> torch.Tensor:
    """Channel reduction that keeps the sign: (N, C, H, W) -> (N, 1, H, W).

    ``max``: per pixel, the channel value with the largest magnitude, with its sign (so the magnitude of
    the result equals the unsigned ``max`` map); ``mean``: the plain mean over channels (signs may cancel);
    ``none``: unchanged (N, C, H, W).
    """
    if reduction == "max":
        idx = grads.abs().argmax(dim=1, keepdim=True)
        return grads.gather(1, idx)
    if reduction == "mean":
        return grads.mean(dim=1, keepdim=True)
    return reduce_channels(grads, reduction)


def reduce_map(grads: torch.Tensor, reduction: str, signed: bool) -> torch.Tensor:
    """Reduce per-channel values (N, C, H, W) to a map: magnitudes by default, signed on request."""
    return reduce_signed(grads, reduction) if signed else reduce_channels(grads, reduction)


@register
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

    def _maps_and_targets(self, inputs, wanted, extras):
        # The predicted class comes from the same forward pass as the gradient: one pass in all.
        def one_batch(x: torch.Tensor, t: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            grad, used = input_gradients(self.model, x, t)
            return reduce_map(grad, self.reduction, self.signed), used

        return batched(one_batch, inputs, wanted, self.batch_size)

    def params(self) -> dict[str, Any]:
        return {"reduction": self.reduction, "signed": self.signed, **super().params()}
