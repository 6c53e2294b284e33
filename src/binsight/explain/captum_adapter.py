"""Any Captum attribution class behind binsight's explainer API: ``get_explainer("captum:Occlusion", model)``.

The adapter builds ``captum.attr.<class_name>(model)`` (with ``layer=`` the named module for classes that
take a layer), calls its ``attribute(inputs, target=targets, **attribution kwargs)``, and shapes the result
like the built-in methods: the channel reduction of :class:`~binsight.explain.gradient.Gradient` gives
(N, 1, H, W); attributions at a layer of another spatial size are upsampled bilinearly to (H, W), as
Captum's ``LayerAttribution.interpolate(..., interpolate_mode="bilinear")``.

Keyword arguments go to the Captum class's constructor or to its ``attribute`` (e.g. ``baselines``,
``n_steps``, ``sliding_window_shapes``), whichever accepts them. With ``batch_size``, tensors among the
attribution kwargs whose first dimension equals the number of images (per-image baselines) are split
with the images.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from binsight.explain.base import Explainer, ExplainerError, batched
from binsight.explain.gradcam import find_module
from binsight.explain.gradient import check_reduction, reduce_map


def captum_classes() -> dict[str, type]:
    """Captum's attribution classes usable here: a model as first argument, and a ``target`` to explain."""
    import captum.attr as ca

    found = {}
    for name in dir(ca):
        cls = getattr(ca, name)
        if not (inspect.isclass(cls) and issubclass(cls, ca.Attribution)) or inspect.isabstract(cls):
            continue
        first = list(inspect.signature(cls.__init__).parameters)[1:2]
        attribute = getattr(cls, "attribute", None)
        if first in (["forward_func"], ["model"]) and callable(attribute):
            if "target" in inspect.signature(attribute).parameters:
                found[name] = cls
    return found


def captum_class(class_name: str) -> type:
    """The Captum class called ``class_name``; a clear error with close or example names otherwise."""
    classes = captum_classes()
    if class_name in classes:
        return classes[class_name]
    close = difflib.get_close_matches(class_name, list(classes), n=5, cutoff=0.5)
    examples = close or ["Saliency", "IntegratedGradients", "InputXGradient", "Occlusion", "LayerGradCam"]
    hint = " (NoiseTunnel wraps another method; use binsight's 'smoothgrad')" if class_name == "NoiseTunnel" else ""
    raise ExplainerError(
        f"unknown or unsupported Captum attribution class {class_name!r}{hint}; "
        f"for example: {', '.join(examples)} (all {len(classes)}: binsight.explain.captum_adapter.captum_classes())"
    )


class CaptumExplainer(Explainer):
    """A Captum attribution class as a binsight explainer (registry name ``captum:ClassName``).

    Args:
        model: any classifier ``nn.Module``.
        class_name: a class of ``captum.attr``, e.g. ``"IntegratedGradients"`` or ``"LayerGradCam"``.
        reduction, signed: channel reduction as :class:`~binsight.explain.gradient.Gradient`.
        batch_size, surrogate: as :class:`~binsight.explain.base.Explainer`.
        layer: module name (as in ``model.named_modules()``) for classes that take a layer; default the
            model's ``gradcam_layer`` if it has one.
        **captum_kwargs: for the Captum constructor or its ``attribute`` (whichever takes each name).

    Returns maps (N, 1, H, W) float32 (or (N, C, H, W) with ``reduction="none"``).
    """

    name = "captum"

    def __init__(
        self,
        model: nn.Module,
        class_name: str,
        reduction: str = "max",
        signed: bool = False,
        batch_size: int | None = None,
        *,
        surrogate: str | None = None,
        layer: str | None = None,
        **captum_kwargs: Any,
    ):
        super().__init__(model, surrogate=surrogate, batch_size=batch_size)
        self.class_name = class_name
        self.name = f"captum:{class_name}"
        cls = captum_class(class_name)
        self.reduction = check_reduction(reduction)
        self.signed = bool(signed)
        init_names = set(inspect.signature(cls.__init__).parameters) - {"self", "forward_func", "model", "layer"}
        call_names = set(inspect.signature(cls.attribute).parameters) - {"self", "inputs", "target"}
        unknown = sorted(set(captum_kwargs) - init_names - call_names)
        if unknown:
            raise ExplainerError(
                f"captum:{class_name} takes no argument {', '.join(map(repr, unknown))}; "
                f"it takes: {', '.join(sorted(init_names | call_names))}"
            )
        self.init_kwargs = {k: v for k, v in captum_kwargs.items() if k in init_names}
        self.call_kwargs = {k: v for k, v in captum_kwargs.items() if k not in init_names}
        self.layer = self._layer_name(cls, layer)
        if self.layer is not None:
            self.init_kwargs["layer"] = find_module(model, self.layer)
        self.method = cls(model, **self.init_kwargs)

    def _layer_name(self, cls: type, layer: str | None) -> str | None:
        takes_layer = "layer" in inspect.signature(cls.__init__).parameters
        if not takes_layer:
            if layer is not None:
                raise ExplainerError(f"captum:{self.class_name} works on the input and takes no layer=")
            return None
        layer = layer or getattr(self.model, "gradcam_layer", None)
        if not layer:
            raise ExplainerError(f"captum:{self.class_name} needs layer= a module name (as in model.named_modules())")
        return layer

    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n = inputs.shape[0]
        per_image = {k for k, v in self.call_kwargs.items() if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n > 1}
        offset = [0]

        def one_batch(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            lo, hi = offset[0], offset[0] + x.shape[0]
            offset[0] = hi
            kwargs = {k: (v[lo:hi] if k in per_image else v) for k, v in self.call_kwargs.items()}
            out = self.method.attribute(x, target=t, **kwargs)
            if isinstance(out, tuple):  # (attributions, convergence delta)
                out = out[0]
            return self._shape_like_builtins(out, x), t

        return batched(one_batch, inputs, targets, self.batch_size)[0]

    def _shape_like_builtins(self, out: Any, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ExplainerError(
                f"captum:{self.class_name} returned {shape}; binsight needs (N, C, h, w) attributions - "
                "for layer methods choose a convolutional layer"
            )
        maps = reduce_map(out.detach().float(), self.reduction, self.signed)
        if maps.shape[2:] != x.shape[2:]:
            maps = F.interpolate(maps, tuple(x.shape[2:]), mode="bilinear", align_corners=False)
        return maps

    def params(self) -> dict[str, Any]:
        simple = (bool, int, float, str, type(None))
        kwargs = {k: (v if isinstance(v, simple) else f"<{type(v).__name__}>") for k, v in self.call_kwargs.items()}
        init = {k: v for k, v in self.init_kwargs.items() if k != "layer" and isinstance(v, simple)}
        return {
            "class_name": self.class_name,
            "reduction": self.reduction,
            "signed": self.signed,
            "layer": self.layer,
            **init,
            **kwargs,
            **super().params(),
        }
