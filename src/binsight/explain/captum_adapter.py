"""Any Captum attribution class behind binsight's explainer API: ``get_explainer("captum:Occlusion", model,
sliding_window_shapes=(1, 4, 4))``.

The adapter builds ``captum.attr.<class_name>(model)`` (with ``layer=`` the named module for classes that
take a layer), calls its ``attribute(inputs, target=targets, **options)`` on inputs that require grad, and
shapes the result like the built-in methods: the channel reduction of
:class:`~binsight.explain.gradient.Gradient` gives (N, 1, H, W); attributions at a layer of another spatial
size are upsampled bilinearly to (H, W), as Captum's ``LayerAttribution.interpolate(...,
interpolate_mode="bilinear")``.

Keyword options go to the Captum class's constructor or to its ``attribute`` (e.g. ``baselines``,
``n_steps``, ``sliding_window_shapes``), whichever accepts them; an option that neither takes, or a
required one left out, is an :class:`~binsight.explain.base.ExplainerError` that lists the class's
options. With ``batch_size``, tensors among the attribute options whose first dimension equals the number
of images (per-image baselines) are split with the images.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from binsight._utils import batch_slices
from binsight.errors import BinsightError
from binsight.explain.base import Attribution, Explainer, ExplainerError, check_reduction, find_module, reduce_map
from binsight.explain.registry import register_explainer

#: parameters binsight itself supplies to a Captum constructor / attribute call
_GIVEN_INIT = {"self", "forward_func", "model", "layer"}
_GIVEN_CALL = {"self", "inputs", "target"}


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


def _options(fn: Any, given: set[str]) -> tuple[set[str], set[str]]:
    """(all keyword options, required ones) of ``fn``, leaving out the ``given`` names and *args/**kwargs."""
    names, required = set(), set()
    for p in inspect.signature(fn).parameters.values():
        if p.name in given or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        names.add(p.name)
        if p.default is p.empty:
            required.add(p.name)
    return names, required


@register_explainer
class CaptumExplainer(Explainer):
    """A Captum attribution class as a binsight explainer (registry name ``captum:ClassName``).

    Args:
        model: any classifier ``nn.Module``.
        class_name: a class of ``captum.attr``, e.g. ``"IntegratedGradients"`` or ``"LayerGradCam"``.
        reduction, signed: channel reduction as :class:`~binsight.explain.gradient.Gradient`.
        layer: module name (as in ``model.named_modules()``) for classes that take a layer; default the
            model's ``gradcam_layer`` if it has one.
        batch_size, surrogate: as :class:`~binsight.explain.base.Explainer`.
        **options: for the Captum constructor or its ``attribute`` (whichever takes each name).

    Returns maps (N, 1, H, W) float32 (or (N, C, H, W) with ``reduction="none"``).
    """

    name = "captum"
    member_option = "class_name"

    def __init__(
        self,
        model: nn.Module,
        *,
        class_name: str,
        reduction: str = "max",
        signed: bool = False,
        layer: str | None = None,
        surrogate: str | None = None,
        batch_size: int | None = None,
        **options: Any,
    ):
        super().__init__(model, surrogate=surrogate, batch_size=batch_size)
        self.class_name = class_name
        self.name = f"captum:{class_name}"
        cls = captum_class(class_name)
        self.reduction = check_reduction(reduction)
        self.signed = bool(signed)
        self.init_kwargs, self.call_kwargs = self._split_options(cls, options)
        self.layer = self._layer_name(cls, layer)
        if self.layer is not None:
            self.init_kwargs["layer"] = find_module(model, self.layer)
        self.method = cls(model, **self.init_kwargs)

    def _split_options(self, cls: type, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The options for the constructor and for ``attribute``; unknown or missing ones raise."""
        init_names, init_required = _options(cls.__init__, _GIVEN_INIT)
        call_names, call_required = _options(cls.attribute, _GIVEN_CALL)
        takes = ", ".join(sorted(init_names | call_names)) or "nothing"
        unknown = sorted(set(options) - init_names - call_names)
        if unknown:
            raise ExplainerError(
                f"{self.name} takes no argument {', '.join(map(repr, unknown))}; it takes: {takes}"
            )
        required = init_required | call_required
        missing = sorted(required - set(options))
        if missing:
            raise ExplainerError(
                f"{self.name} needs {', '.join(map(repr, missing))} (its required options: "
                f"{', '.join(sorted(required))}; all: {takes}); pass them as keywords to get_explainer"
            )
        init = {k: v for k, v in options.items() if k in init_names}
        return init, {k: v for k, v in options.items() if k not in init_names}

    def _layer_name(self, cls: type, layer: str | None) -> str | None:
        takes_layer = "layer" in inspect.signature(cls.__init__).parameters
        if not takes_layer:
            if layer is not None:
                raise ExplainerError(f"{self.name} works on the input and takes no layer=")
            return None
        layer = layer or getattr(self.model, "gradcam_layer", None)
        if not layer:
            raise ExplainerError(f"{self.name} needs layer= a module name (as in model.named_modules())")
        return layer

    def _explain(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> Attribution:
        targets = self.resolve_targets(inputs, wanted)
        n = inputs.shape[0]
        per_image = {k for k, v in self.call_kwargs.items() if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n > 1}
        maps = []
        for part in batch_slices(n, self.batch_size):
            kwargs = {k: (v[part] if k in per_image else v) for k, v in self.call_kwargs.items()}
            # inputs that require grad: layer methods hook tensors inside the (frozen) model
            x = inputs[part].detach().requires_grad_(True)
            maps.append(self._shape_like_builtins(self._captum_attribute(x, targets[part], kwargs), x))
        return Attribution(torch.cat(maps), targets)

    def _captum_attribute(self, x: torch.Tensor, targets: torch.Tensor, kwargs: dict[str, Any]) -> Any:
        """Captum's attributions for one batch; Captum or the model failing on this model and these options
        is an :class:`ExplainerError` naming the class (the original exception chained)."""
        try:
            with torch.enable_grad():
                out = self.method.attribute(x, target=targets, **kwargs)
        except BinsightError:
            raise
        except (RuntimeError, TypeError, ValueError, AssertionError) as e:
            message = " ".join(str(e).split())
            raise ExplainerError(f"{self.name} failed on this model with these options: {message}") from e
        return out[0] if isinstance(out, tuple) else out  # (attributions, convergence delta)

    def _shape_like_builtins(self, out: Any, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[0] != x.shape[0]:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ExplainerError(
                f"{self.name} returned {shape}; binsight needs (N, C, h, w) attributions - "
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
