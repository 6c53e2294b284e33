"""GradCAM (Selvaraju et al. 2017): class-weighted sum of a layer's feature maps, upsampled to the input.

For the output A (N, K, h, w) of the chosen layer and the logit y_c:
``weights_k = mean_{h,w} d y_c / d A_k``, ``cam = ReLU(sum_k weights_k A_k)`` (N, 1, h, w), then bilinear
upsampling to (H, W) with ``align_corners=False`` - exactly Captum's ``LayerGradCam(...,
relu_attributions=True)`` followed by ``LayerAttribution.interpolate(..., interpolate_mode="bilinear")``.

The layer: ``layer=`` a module name as in ``model.named_modules()`` (e.g. ``"features.3"``); by default the
model's own ``model.gradcam_layer`` (binsight models: the last conv block's real-valued output before its
non-linearity: the tensor before the ReLU (FP) or before the sign (BNN)); with ``use_binary=True``
``model.gradcam_binary_layer`` (the binarized tensor); for a model that names neither, the last ``nn.Conv2d`` (recorded in ``params()["layer_choice"]``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from binsight._utils import call_model
from binsight.explain.base import Attribution, Explainer, ExplainerError, batched, find_module, pick_targets
from binsight.explain.registry import register_explainer

LAST_CONV_NOTE = "last nn.Conv2d (the model has no gradcam_layer attribute)"


def default_layer(model: nn.Module, use_binary: bool) -> tuple[str, str]:
    """(layer name, how it was chosen) when the user names no layer."""
    if use_binary:
        name = getattr(model, "gradcam_binary_layer", None)
        if not name:
            raise ExplainerError(
                "use_binary=True needs model.gradcam_binary_layer (the binarized tensor of a binsight BNN); "
                "this model has none - pass layer= a module name instead"
            )
        return name, "model.gradcam_binary_layer"
    name = getattr(model, "gradcam_layer", None)
    if name:
        return name, "model.gradcam_layer"
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ExplainerError("the model has no nn.Conv2d and no gradcam_layer attribute; pass layer= a module name")
    return convs[-1], LAST_CONV_NOTE


def layer_activation_and_gradient(
    model: nn.Module, layer: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layer's output A and d logit_target / d A, both (N, K, h, w), and the targets (N,) used
    (None = the class predicted in this same forward pass); the hook is removed afterwards.

    The hook makes A a leaf that requires grad, so autograd records only the layers after A: nothing below
    the layer is differentiated or kept for a backward pass. The rest of the network gets a copy of that
    leaf (one activation's memory), so an in-place operation after the layer (``nn.ReLU(inplace=True)`` as
    in VGG and AlexNet) writes into the copy: A stays as the layer produced it and the gradient flows back
    through the in-place op, the same maps as the out-of-place model's.
    """
    outputs: list[torch.Tensor] = []

    def keep_output(_module: nn.Module, _args: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor) and output.is_floating_point():
            leaf = output.detach().requires_grad_(True)
            outputs.append(leaf)
            return leaf.clone()
        outputs.append(output)
        return output

    handle = layer.register_forward_hook(keep_output)
    try:
        with torch.enable_grad():
            logits = call_model(model, inputs, error=ExplainerError)
            act = _single_output(outputs)
            targets = pick_targets(logits, targets)
            sel = logits.gather(1, targets.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(sel, act, allow_unused=True)
    finally:
        handle.remove()
    if grad is None:
        grad = torch.zeros_like(act)
    return act.detach(), grad, targets


def _single_output(outputs: list[Any]) -> torch.Tensor:
    if len(outputs) != 1:
        raise ExplainerError(
            f"the GradCAM layer ran {len(outputs)} times in one forward pass; choose a layer that runs exactly once"
        )
    act = outputs[0]
    if not isinstance(act, torch.Tensor) or act.dim() != 4:
        shape = tuple(act.shape) if isinstance(act, torch.Tensor) else type(act).__name__
        raise ExplainerError(f"the GradCAM layer's output is {shape}; GradCAM needs feature maps (N, K, h, w)")
    return act


def gradcam_maps(act: torch.Tensor, grad: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU(sum_k mean_hw(grad_k) * act_k) upsampled bilinearly to ``size``: (N, 1, H, W)."""
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size, mode="bilinear", align_corners=False)


@register_explainer
class GradCAM(Explainer):
    """GradCAM at a named layer; see the module docstring for the definition and the default layer.

    Args:
        model, surrogate, batch_size: as :class:`~binsight.explain.base.Explainer`.
        layer: module name (dotted, as in ``model.named_modules()``); None = the model's default.
        use_binary: with ``layer=None``, use ``model.gradcam_binary_layer`` (a binsight BNN's binarized
            tensor) instead of ``model.gradcam_layer``.

    Returns maps (N, 1, H, W) float32, non-negative (``signed`` does not apply: GradCAM ends with a ReLU).
    """

    name = "gradcam"

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: str | None = None,
        use_binary: bool = False,
        surrogate: str | None = None,
        batch_size: int | None = None,
    ):
        super().__init__(model, surrogate=surrogate, batch_size=batch_size)
        if layer is not None and use_binary:
            raise ExplainerError("give either layer= or use_binary=True, not both")
        if layer is None:
            self.layer, self.layer_choice = default_layer(model, use_binary)
        else:
            self.layer, self.layer_choice = layer, "given"
        self.module = find_module(model, self.layer)
        self.use_binary = bool(use_binary)

    def _explain(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> Attribution:
        # The predicted class comes from the same forward pass as the gradient: one pass in all.
        size = (inputs.shape[2], inputs.shape[3])

        def one_batch(x: torch.Tensor, t: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
            act, grad, used = layer_activation_and_gradient(self.model, self.module, x, t)
            return gradcam_maps(act, grad, size), used

        return batched(one_batch, inputs, wanted, self.batch_size)

    def params(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "layer_choice": self.layer_choice,
            "use_binary": self.use_binary,
            **super().params(),
        }
