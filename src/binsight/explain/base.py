"""The one small base every explainer stands on.

Every method has the same shape as Captum's: ``attribute(inputs, target=None) -> maps``.

* ``inputs``: float tensor (N, C, H, W), pixels in whatever space the model takes (binsight's own models
  take [0, 1] pixels and normalise inside).
* ``target``: None (the class the model predicts on each image), an int (the same class for every image),
  or a sequence / 1-D tensor of N class indices.
* returns float32 maps (N, 1, H, W) on the inputs' device: non-negative magnitudes by default, the signed
  map when the explainer was built with ``signed=True`` (methods without a sign ignore it), or
  (N, C, H, W) when a method's channel reduction is ``"none"``.

``explain(...)`` returns the same maps wrapped in an :class:`Explanation` that also records the targets,
the method's parameters, and which sign surrogate a binarized model's backward pass used.

While an explainer runs, the model is in eval mode, its parameters do not require grad, and on the way
out - also when an error is raised - the model is put back exactly as it was found: train/eval mode of
every module, ``requires_grad`` of every parameter, the parameters and buffers themselves, and no hook
left behind (:func:`preserved_model`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import torch
from torch import nn

TargetLike = int | Sequence[int] | torch.Tensor | None

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@dataclass
class Explanation:
    """Saliency maps with what produced them.

    maps: float32 (N, 1, H, W) (or (N, C, H, W) without channel reduction).
    targets: int64 (N,) class explained for each image.
    method: registry name of the method.
    params: the method's parameters, JSON-serialisable.
    surrogate: the sign surrogate used by a binarized model's backward pass, None for a model without
        binarized layers.
    extras: per-method extra results (e.g. NeuroMask's loss history), keyed by name.
    """

    maps: torch.Tensor
    targets: torch.Tensor
    method: str
    params: dict[str, Any]
    surrogate: str | None
    extras: dict[str, Any] = field(default_factory=dict)


class ExplainerError(ValueError):
    """Bad input to an explainer: the message names what was wrong and what to do."""


@contextlib.contextmanager
def preserved_model(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with ``model`` in eval mode and parameters frozen; restore everything on exit.

    Parameters and buffers are copied on entry and written back on exit where their autograd version
    counter moved (every in-place write bumps it, also under ``no_grad``; only writes through ``.data``
    bypass it) - so an unchanged model costs one copy and no comparison pass.
    """
    modes = {m: m.training for m in model.modules()}
    grads = {p: (p.requires_grad, p.grad) for p in model.parameters()}
    tensors = model.state_dict(keep_vars=True)
    state = {k: (v, v._version, v.detach().clone()) for k, v in tensors.items()}
    hooks = {(m, name): set(getattr(m, name, {}).keys()) for m in model.modules() for name in _HOOK_DICTS}
    try:
        model.eval()
        for p in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for (m, name), keys in hooks.items():
            d = getattr(m, name, None)
            if d is not None:
                for k in [k for k in d.keys() if k not in keys]:
                    del d[k]
        with torch.no_grad():
            current = model.state_dict(keep_vars=True)
            for k, (tensor, version, saved) in state.items():
                now = current.get(k)
                if now is not None and (now is not tensor or now._version != version):
                    now.detach().copy_(saved)
        for p, (requires_grad, grad) in grads.items():
            p.requires_grad_(requires_grad)
            p.grad = grad
        for m, training in modes.items():
            m.training = training  # not m.train(): that recurses into children, quadratic in depth


def check_inputs(inputs: torch.Tensor) -> torch.Tensor:
    """Validate a batch of images (N, C, H, W); return it as a detached float tensor."""
    if not isinstance(inputs, torch.Tensor):
        raise ExplainerError(f"inputs must be a torch.Tensor of shape (N, C, H, W), got {type(inputs).__name__}")
    if inputs.dim() != 4:
        raise ExplainerError(
            f"inputs must have 4 dimensions (N, C, H, W), got shape {tuple(inputs.shape)}; "
            "add a batch dimension with inputs.unsqueeze(0) for a single image"
        )
    if inputs.shape[0] == 0:
        raise ExplainerError("inputs is an empty batch (N = 0)")
    if not inputs.is_floating_point():
        raise ExplainerError(f"inputs must be floating point, got {inputs.dtype}; convert with inputs.float() / 255")
    bad = ~torch.isfinite(inputs)
    if bad.any():
        idx = sorted({int(i) for i in bad.flatten(1).any(1).nonzero().flatten()})
        raise ExplainerError(f"inputs contain NaN or infinite pixels (images {idx[:10]}); clean them before explaining")
    return inputs.detach()


def check_logits(out: Any, n: int) -> torch.Tensor:
    """Check that a model output is a (N, K) logit tensor."""
    if not isinstance(out, torch.Tensor):
        raise ExplainerError(
            f"the model returned {type(out).__name__}, not a tensor of logits (N, num_classes); "
            "wrap it so that forward returns only the logits"
        )
    if out.dim() != 2 or out.shape[0] != n:
        raise ExplainerError(
            f"the model returned shape {tuple(out.shape)} for {n} images; expected logits (N, num_classes) = ({n}, K)"
        )
    return out


def requested_targets(target: TargetLike, n: int, device: torch.device) -> torch.Tensor | None:
    """Check the form of ``target`` without running the model: None, or an int64 tensor (N,) on ``device``.

    The range is checked later, against the logits (:func:`pick_targets`).
    """
    if target is None:
        return None
    if isinstance(target, bool):
        raise ExplainerError("target must be an int class index, a sequence of them, or None")
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device=device)
    t = torch.as_tensor(target)
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise ExplainerError(f"target must hold integer class indices, got dtype {t.dtype}")
    t = t.long().flatten()
    if t.numel() != n:
        raise ExplainerError(f"target has {t.numel()} entries for {n} images; give one class per image, one int, or None")
    return t.to(device)


def pick_targets(logits: torch.Tensor, wanted: torch.Tensor | None) -> torch.Tensor:
    """The classes to explain for a batch whose logits (N, K) are known: ``wanted`` checked against K,
    or the predicted class (argmax) where ``wanted`` is None."""
    if wanted is None:
        return logits.detach().argmax(1)
    num_classes = logits.shape[1]
    bad = (wanted < 0) | (wanted >= num_classes)
    if bad.any():
        raise ExplainerError(
            f"target {int(wanted[bad][0])} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return wanted


def resolve_targets(model: nn.Module, inputs: torch.Tensor, target: TargetLike, batch_size: int | None = None) -> torch.Tensor:
    """Turn ``target`` into an int64 tensor (N,) on the inputs' device, checking the range.

    None means the class the model predicts (argmax of the logits) on each image: one forward pass over
    the batch. Given targets only need the number of classes, which one image's forward pass tells.
    Methods whose own forward pass yields the logits use :func:`pick_targets` instead and skip this pass.
    """
    wanted = requested_targets(target, inputs.shape[0], inputs.device)
    with torch.no_grad():
        if wanted is None:
            logits = [check_logits(call_model(model, chunk), chunk.shape[0]) for chunk in _chunks(inputs, batch_size)]
            return torch.cat([lg.argmax(1) for lg in logits])
        pick_targets(check_logits(call_model(model, inputs[:1]), 1), wanted)
    return wanted


def call_model(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)``, with a clear error when the inputs do not fit the model (e.g. wrong channel count)."""
    try:
        return model(x)
    except RuntimeError as e:
        first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        hint = ""
        if first_conv is not None and first_conv.in_channels != x.shape[1]:
            hint = f"; the model's first convolution takes {first_conv.in_channels} channels, the inputs have {x.shape[1]}"
        raise ExplainerError(f"the model failed on inputs of shape {tuple(x.shape)}{hint} ({e})") from e


def _chunks(x: torch.Tensor, size: int | None) -> list[torch.Tensor]:
    if not size or size >= x.shape[0]:
        return [x]
    return list(torch.split(x, size))


def reduce_channels(grads: torch.Tensor, reduction: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W) by ``max`` |.| or ``mean`` |.|; ``none`` keeps (N, C, H, W) as is."""
    if reduction == "max":
        return grads.abs().amax(dim=1, keepdim=True)
    if reduction == "mean":
        return grads.abs().mean(dim=1, keepdim=True)
    if reduction == "none":
        return grads
    raise ExplainerError(f"unknown channel reduction {reduction!r}; use 'max', 'mean' or 'none'")


class Explainer:
    """Base of every method. Subclasses set ``name`` and implement :meth:`_attribute` (or override
    :meth:`_maps_and_targets` to pick targets in their own forward pass or to return extras).

    Args:
        model: any classifier ``nn.Module`` mapping (N, C, H, W) to logits (N, K).
        surrogate: for binarized models, the sign surrogate the backward pass uses while explaining
            (e.g. ``"ste"``, ``"approx"``); None keeps the model's own. Restored afterwards.
        batch_size: at most this many images (or noisy copies, masks, ...) go through the model at once;
            None = the whole batch. Bounds memory; never changes the result.
    """

    name: ClassVar[str] = ""

    def __init__(self, model: nn.Module, *, surrogate: str | None = None, batch_size: int | None = None):
        if not isinstance(model, nn.Module):
            raise ExplainerError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if batch_size is not None and batch_size < 1:
            raise ExplainerError(f"batch_size must be a positive integer or None, got {batch_size}")
        self.model = model
        self.surrogate = surrogate
        self.batch_size = batch_size

    # -- what subclasses implement -------------------------------------------------------------
    def _attribute(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Maps for a validated batch with resolved targets; the model is already in eval mode."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The method's parameters, JSON-serialisable (recorded with every explanation)."""
        return {"batch_size": self.batch_size}

    # -- the public API -------------------------------------------------------------------------
    def attribute(self, inputs: torch.Tensor, target: TargetLike = None) -> torch.Tensor:
        """Saliency maps, float32 (N, 1, H, W). See the module docstring for shapes and targets."""
        return self.explain(inputs, target).maps

    def explain(self, inputs: torch.Tensor, target: TargetLike = None) -> Explanation:
        """Maps wrapped with their targets, parameters and the surrogate used."""
        from binsight.nn import surrogate_of, use_surrogate

        inputs = check_inputs(inputs)
        wanted = requested_targets(target, inputs.shape[0], inputs.device)
        extras: dict[str, Any] = {}
        with preserved_model(self.model) as model:
            ctx = use_surrogate(model, self.surrogate) if self.surrogate else contextlib.nullcontext()
            with ctx:
                maps, targets = self._maps_and_targets(inputs, wanted, extras)
                used = surrogate_of(model)
        if not torch.isfinite(maps).all():
            raise ExplainerError(f"{self.name}: the model produced non-finite gradients; check the model and inputs")
        return Explanation(
            maps=maps.detach().float(),
            targets=targets,
            method=self.name,
            params=self.params(),
            surrogate=used,
            extras=extras,
        )

    def _maps_and_targets(
        self, inputs: torch.Tensor, wanted: torch.Tensor | None, extras: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps and the targets explained. By default the targets are resolved first (a forward pass
        for the predicted class), then :meth:`_attribute` runs. Methods whose own forward pass gives the
        logits override this to pick the targets there (:func:`pick_targets`); methods with extra
        per-image results override it to fill ``extras``."""
        targets = resolve_targets(self.model, inputs, wanted, self.batch_size)
        return self._attribute(inputs, targets), targets

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def input_gradients(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """d logit_target / d input for each image, (N, C, H, W), with the targets used, (N,).

    One forward and one backward pass; ``targets=None`` explains the class predicted in that same forward
    pass (so the predicted class costs nothing extra).
    """
    x = inputs.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = check_logits(call_model(model, x), x.shape[0])
        targets = pick_targets(logits, targets)
        sel = logits.gather(1, targets.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(sel, x)
    return grad, targets


def batched(fn, inputs: torch.Tensor, targets: torch.Tensor | None, batch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``fn(inputs_chunk, targets_chunk_or_None) -> (maps, targets)`` over chunks of at most
    ``batch_size`` images and concatenate both."""
    if not batch_size or batch_size >= inputs.shape[0]:
        return fn(inputs, targets)
    n = math.ceil(inputs.shape[0] / batch_size)
    xs = inputs.chunk(n)
    ts = targets.chunk(n) if targets is not None else [None] * len(xs)
    maps, used = zip(*[fn(x, t) for x, t in zip(xs, ts)])
    return torch.cat(maps), torch.cat(used)
