"""The one small base every explainer stands on, and the helpers its methods share.

Every method has the same shape as Captum's: ``attribute(inputs, target=None) -> maps``.

* ``inputs``: float tensor (N, C, H, W), pixels in whatever space the model takes (binsight's own models
  take [0, 1] pixels and normalise inside).
* ``target``: None (the class the model predicts on each image), one int (the same class for every image),
  or N class indices (list, 1-D numpy array or tensor); see :func:`binsight._utils.requested_targets`.
* returns float32 maps (N, 1, H, W) on the inputs' device: non-negative magnitudes by default, the signed
  map when the explainer was built with ``signed=True`` (methods that take that option), or (N, C, H, W)
  when a method's channel reduction is ``"none"``.

``explain(...)`` returns the same maps wrapped in an :class:`Explanation` that also records the targets,
the method's parameters, per-method extras, and which sign surrogate a binarized model's backward pass used.

A method is one subclass of :class:`Explainer` that sets ``name``, takes its options by keyword, and
implements ONE hook, :meth:`Explainer._explain`, returning an :class:`Attribution` (maps, targets, extras).
Class attributes tell a generic caller (the study) what it needs without naming the method:

* ``name``: the registry name;
* ``seeded``: the constructor takes ``seed=`` (a non-negative int) and the maps depend on it;
* ``signed``: the maps may carry a sign (may be negative). A class default; an instance built with
  ``signed=True`` sets its own ``signed`` to True;
* ``member_option``: for a family of methods reached as ``"family:member"`` (Captum's classes), the keyword
  the member name is passed as; None for a single method.

While an explainer runs, the model is in eval mode, its parameters do not require grad, and on the way
out - also when an error is raised - the model is put back exactly as it was found
(:func:`binsight._utils.preserved_model`).
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from binsight._utils import (
    BinsightWarning,
    TargetLike,
    all_finite,
    batch_slices,
    call_model,
    check_batch_size,
    check_images,
    check_target_range,
    preserved_model,
    requested_targets,
)
from binsight.errors import BinsightError
from binsight.nn import sign_activations, surrogate_of
from binsight.nn.foreign import SignReport, brevitas_activation_quantisers, sign_report, use_surrogate_foreign

__all__ = [
    "Attribution",
    "Explainer",
    "ExplainerError",
    "Explanation",
    "TargetLike",
    "preserved_model",
]

REDUCTIONS = ("max", "mean", "none")


class ExplainerError(BinsightError):
    """Bad input to an explainer: the message names what was wrong and what to do."""


@dataclass
class Attribution:
    """What a method's :meth:`Explainer._explain` computes.

    maps: float (N, 1, H, W) (or (N, C, H, W) without channel reduction).
    targets: int64 (N,), the class explained for each image.
    extras: per-method extra results (e.g. NeuroMask's loss history), keyed by name.
    """

    maps: torch.Tensor
    targets: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Explanation:
    """Saliency maps with what produced them.

    maps: float32 (N, 1, H, W) (or (N, C, H, W) without channel reduction).
    targets: int64 (N,) class explained for each image.
    method: registry name of the method.
    params: the method's parameters, JSON-serialisable.
    surrogate: what a binarized model's backward pass used: a binsight surrogate name ("ste", ...), a
        foreign form (e.g. "brevitas-ste"), ``binsight.nn.foreign.OWN`` for a sign binsight cannot switch
        (the model's own backward), None for a model without binarized activations.
    extras: per-method extra results (e.g. NeuroMask's loss history), keyed by name.
    """

    maps: torch.Tensor
    targets: torch.Tensor
    method: str
    params: dict[str, Any]
    surrogate: str | None
    extras: dict[str, Any] = field(default_factory=dict)


class Explainer:
    """Base of every method (see the module docstring for what a subclass provides).

    Args:
        model: any classifier ``nn.Module`` mapping (N, C, H, W) to logits (N, K).
        surrogate: for binarized models, the sign surrogate the backward pass uses while explaining
            (e.g. ``"ste"``, ``"approx"``), switched on binsight signs and Brevitas binary quantisers
            (:func:`binsight.nn.foreign.use_surrogate_foreign`); None keeps the model's own. Restored
            afterwards. A sign that cannot be switched keeps its own backward (recorded as ``OWN``); asked
            of a full-precision model it does not apply and a :class:`~binsight._utils.BinsightWarning` says so.
        batch_size: at most this many images (or noisy copies, masks, ...) go through the model at once;
            None = the whole batch. Bounds memory; never changes the result.
    """

    name: str = ""  # a class attribute; a family's instance names its member ("captum:Occlusion")
    seeded: ClassVar[bool] = False
    signed: bool = False
    member_option: ClassVar[str | None] = None

    def __init__(self, model: nn.Module, *, surrogate: str | None = None, batch_size: int | None = None):
        if not isinstance(model, nn.Module):
            raise ExplainerError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.surrogate = surrogate
        self.batch_size = check_batch_size(batch_size, error=ExplainerError)

    # -- what a method implements -----------------------------------------------------------------------
    def _explain(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> Attribution:
        """Maps, targets and extras for a checked batch (N, C, H, W).

        ``wanted``: int64 (N,) classes asked for (not yet checked against the number of classes), or None
        for the predicted class. The model is in eval mode with the chosen surrogate. Methods whose own
        forward pass yields the logits pick the targets there (:func:`pick_targets`); others call
        :meth:`resolve_targets` first.
        """
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The method's parameters, JSON-serialisable (recorded with every explanation)."""
        return {"batch_size": self.batch_size}

    # -- the public API -------------------------------------------------------------------------------
    def attribute(self, inputs: torch.Tensor, target: TargetLike = None) -> torch.Tensor:
        """Saliency maps, float32 (N, 1, H, W). See the module docstring for shapes and targets."""
        return self.explain(inputs, target).maps

    def explain(self, inputs: torch.Tensor, target: TargetLike = None) -> Explanation:
        """Maps wrapped with their targets, parameters, extras and the surrogate used."""
        inputs = check_images(inputs, what="inputs", error=ExplainerError)
        wanted = requested_targets(target, inputs.shape[0], device=inputs.device, error=ExplainerError)
        with preserved_model(self.model) as model:
            if self.surrogate:
                with use_surrogate_foreign(model, self.surrogate, strict=False):
                    result = self._explain(inputs, wanted)
                    used = self._surrogate_used(model, inputs)
            else:
                result = self._explain(inputs, wanted)
                used = self._surrogate_used(model, inputs)
        if not all_finite(result.maps):
            raise ExplainerError(f"{self.name}: the model produced non-finite gradients; check the model and inputs")
        return Explanation(
            maps=result.maps.detach().float(),
            targets=result.targets,
            method=self.name,
            params=self.params(),
            surrogate=used,
            extras=result.extras,
        )

    def _surrogate_used(self, model: nn.Module, inputs: torch.Tensor) -> str | None:
        """What the backward pass of the model's binarized activations used in this call.

        binsight signs alone: their surrogate (:func:`binsight.nn.surrogate_of`, read every call). Any
        other model is traced once per explainer (:func:`binsight.nn.foreign.sign_report` on two of the
        inputs, with the surrogate switched): a switched Brevitas quantiser gives the surrogate's name, a
        sign binsight cannot switch gives ``OWN`` (the model's own, not switchable), a model without
        binarized activations None - and a warning when a surrogate was asked of it (it does not apply).
        """
        if sign_activations(model) and not brevitas_activation_quantisers(model):
            return surrogate_of(model)
        report = self.__dict__.get("_sign_report")
        if report is None:
            try:
                report = sign_report(model, inputs[:2])
            except BinsightError:  # the model cannot be traced apart from the method's own passes
                report = SignReport(surrogate_of(model) or "", False, ())
            self._sign_report = report
        if not report.surrogate:
            if self.surrogate:
                warnings.warn(f"surrogate {self.surrogate!r} does not apply: the model has no binarized activations "
                              "(full precision); leave surrogate=None", BinsightWarning, stacklevel=4)
            return None
        return report.surrogate

    def resolve_targets(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> torch.Tensor:
        """``wanted`` checked against the model's classes, or the predicted classes where None: int64 (N,).

        None costs one forward pass over the batch (``batch_size`` at a time); given targets need only the
        number of classes, which one image's forward pass tells.
        """
        with torch.no_grad():
            if wanted is None:
                parts = [self.logits(inputs[s]).argmax(1) for s in batch_slices(inputs.shape[0], self.batch_size)]
                return torch.cat(parts)
            return pick_targets(self.logits(inputs[:1]), wanted)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits (N, K) for ``x``, or an :class:`ExplainerError` naming what went wrong."""
        return call_model(self.model, x, error=ExplainerError)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def pick_targets(logits: torch.Tensor, wanted: torch.Tensor | None) -> torch.Tensor:
    """The classes to explain for a batch whose logits (N, K) are known: ``wanted`` checked against K,
    or the predicted class (argmax) where ``wanted`` is None."""
    if wanted is None:
        return logits.detach().argmax(1)
    return check_target_range(wanted, logits.shape[1], error=ExplainerError)


def batched(
    fn: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
    inputs: torch.Tensor,
    targets: torch.Tensor | None,
    batch_size: int | None,
) -> Attribution:
    """Apply ``fn(inputs_chunk, targets_chunk_or_None) -> (maps, targets)`` over chunks of at most
    ``batch_size`` images; the concatenated maps and targets."""
    parts = [fn(inputs[s], None if targets is None else targets[s]) for s in batch_slices(inputs.shape[0], batch_size)]
    maps, used = zip(*parts)
    return Attribution(torch.cat(maps), torch.cat(used))


def input_gradients(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """d logit_target / d input for each image, (N, C, H, W), with the targets used, (N,).

    One forward and one backward pass; ``targets=None`` explains the class predicted in that same forward
    pass (so the predicted class costs nothing extra).
    """
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = call_model(model, x, error=ExplainerError)
        targets = pick_targets(logits, targets)
        sel = logits.gather(1, targets.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(sel, x)
    return grad, targets


def pixel_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over pixels of each pair of maps: float64 (N,) from two (N, ...) tensors.

    Where a row of either is flat (zero variance), 1.0 if the two rows are equal and 0.0 otherwise."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    da, db = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    norms = da.norm(dim=1) * db.norm(dim=1)
    flat = torch.where((a == b).all(1), 1.0, 0.0).to(norms)
    return torch.where(norms > 0, (da * db).sum(1) / norms.clamp_min(1e-300), flat)


# -- channel reduction and layers, shared by the gradient methods and the Captum adapter --------------------


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of :data:`REDUCTIONS`, else raise :class:`ExplainerError`."""
    if reduction not in REDUCTIONS:
        raise ExplainerError(f"unknown channel reduction {reduction!r}; use one of {', '.join(REDUCTIONS)}")
    return reduction


def reduce_map(values: torch.Tensor, reduction: str, signed: bool) -> torch.Tensor:
    """Per-channel values (N, C, H, W) -> a map (N, 1, H, W); ``"none"`` keeps (N, C, H, W).

    Magnitudes (``signed=False``): ``max`` or ``mean`` of |values| over channels. Signed: ``max`` takes, per
    pixel, the channel value of largest magnitude with its sign (so its magnitude equals the unsigned
    ``max`` map); ``mean`` is the plain channel mean (signs may cancel); ``none`` keeps the signed values.
    """
    check_reduction(reduction)
    if reduction == "none":
        return values if signed else values.abs()
    if not signed:
        magnitude = values.abs()
        return magnitude.amax(dim=1, keepdim=True) if reduction == "max" else magnitude.mean(dim=1, keepdim=True)
    if reduction == "max":
        return values.gather(1, values.abs().argmax(dim=1, keepdim=True))
    return values.mean(dim=1, keepdim=True)


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted, as in ``named_modules()``); a clear error with close matches."""
    modules = dict(model.named_modules())
    if isinstance(name, str) and name in modules and name != "":
        return modules[name]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(str(name), names, n=5, cutoff=0.5) or names[-5:]
    raise ExplainerError(f"the model has no layer called {name!r}; close matches: {', '.join(close)}")
