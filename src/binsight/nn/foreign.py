"""Binarized models whose sign comes from elsewhere: what their backward pass uses, and switching it.

A BNN's saliency maps depend on the surrogate derivative its sign uses in the backward pass. binsight's
own signs (:class:`~binsight.nn.SignActivation`) name theirs; a user's BNN may binarize with another
library or with its own ``torch.autograd.Function``. :func:`sign_report` (and its short form
:func:`describe_surrogate`) finds out which, structurally: it runs one forward pass on a dummy batch with
the parameters frozen and the input requiring grad, and looks at the autograd Functions whose outputs
feed the next operations (a binarizing Function is one whose output takes at most two values per
channel) and at the Brevitas binary quantisers that ran on input-dependent tensors. Weight binarization
is not reported: with frozen weights it plays no part in gradients with respect to the input.

What is reported (``SignReport.surrogate``):

* binsight's surrogate name (``"ste"``, ``"approx"``, ``"identity"``) for binsight signs, and for Brevitas
  quantisers while :func:`use_surrogate_foreign` switches them;
* ``"brevitas-ste"`` for Brevitas's clipped binary quantiser (``ClampedBinaryQuant`` with ``TensorClamp``,
  the default of ``SignedBinaryActPerTensorConst``): derivative ``scale * 1{|x| <= scale}``, which
  binsight's ``"ste"`` reproduces exactly through the adapter;
* ``"brevitas-ste-unclipped"`` for Brevitas's unclipped binary quantisers (``BinaryQuant``, or a
  straight-through clamp): derivative ``scale`` everywhere, binsight's ``"identity"``;
* ``"own (custom autograd.Function, not switchable)"`` (:data:`OWN`) for any other binarizing
  autograd Function: the model's own backward is used and binsight cannot switch it, so the study's
  surrogate robustness rows do not apply to that model;
* ``""`` for a model with no binarized activations (full precision);
* ``"mixed (a; b)"`` when several of the above occur in one model.

Brevitas compiled with ``BREVITAS_JIT=1`` runs TorchScript quantisers that cannot be traced or switched
(:func:`use_surrogate_foreign` refuses them); run with ``BREVITAS_JIT=0``, Brevitas's default.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from binsight._utils import BinsightWarning, preserved_model
from binsight.nn.layers import SignActivation, _Sign, sign_values
from binsight.nn.surrogates import SurrogateError, get_surrogate
from binsight.nn.switch import use_surrogate

OWN = "own (custom autograd.Function, not switchable)"
BREVITAS_CLIPPED = "brevitas-ste"
BREVITAS_UNCLIPPED = "brevitas-ste-unclipped"

#: Brevitas quantisers switched right now by :func:`use_surrogate_foreign`: module -> surrogate name.
_SWITCHED: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class SignReport:
    """What a model's binarized activations use in the backward pass.

    surrogate: see the module docstring ("" for a full-precision model).
    switchable: True when every binarized activation can take binsight's surrogates (binsight signs,
        Brevitas binary quantisers); False when one is a custom Function or when there is none.
    sources: one line per kind of sign found, e.g. ``"3 x binsight SignActivation (ste)"``.
    """

    surrogate: str
    switchable: bool
    sources: tuple[str, ...]


class _ScaledSign(torch.autograd.Function):
    """sign(x) (sign(0) = +1) forward; ``grad * surrogate(x / scale)`` backward to x (none to ``scale``,
    which reaches the output only through the caller's ``* scale``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, surrogate: str) -> torch.Tensor:
        ctx.save_for_backward(x, scale)
        ctx.surrogate = surrogate
        return sign_values(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, scale = ctx.saved_tensors
        return grad_output * get_surrogate(ctx.surrogate)(x / scale), None, None


# -- Brevitas, imported only when the caller has imported it (a model cannot hold its modules otherwise) ---


def _brevitas() -> dict[str, Any] | None:
    if "brevitas" not in sys.modules:
        return None
    from brevitas.core.function_wrapper.clamp import TensorClamp
    from brevitas.core.quant.binary import BinaryQuant, ClampedBinaryQuant
    from brevitas.ops.autograd_ste_ops import BinarySignSteFn
    from brevitas.proxy.parameter_quant import ParameterQuantProxyFromInjector

    return {"quants": (BinaryQuant, ClampedBinaryQuant), "clamped": ClampedBinaryQuant, "clip": TensorClamp,
            "sign_fn": BinarySignSteFn, "param_proxy": ParameterQuantProxyFromInjector}


def brevitas_activation_quantisers(model: nn.Module) -> list[nn.Module]:
    """Every Brevitas binary quantiser of ``model`` that binarizes activations (not weights), in module order."""
    b = _brevitas()
    if b is None:
        return []
    weight_quants = {id(q) for m in model.modules() if isinstance(m, b["param_proxy"]) for q in m.modules()}
    return [m for m in model.modules() if isinstance(m, b["quants"]) and id(m) not in weight_quants]


def _brevitas_form(quant: nn.Module) -> str:
    b = _brevitas()
    clipped = isinstance(quant, b["clamped"]) and type(quant.tensor_clamp_impl) is b["clip"]
    return BREVITAS_CLIPPED if clipped else BREVITAS_UNCLIPPED


def _switched_forward(quant: nn.Module, name: str):
    """A forward for a Brevitas (Clamped)BinaryQuant: same values, backward ``scale * surrogate(x / scale)``."""

    def forward(x: torch.Tensor):
        scale = quant.scaling_impl(x)
        y = _ScaledSign.apply(x, scale, name) * scale
        y = quant.delay_wrapper(x, y)
        return y, scale, quant.zero_point(), quant.bit_width()

    return forward


# -- the report ---------------------------------------------------------------------------------------


class _SeenFunctions(TorchFunctionMode):
    """Records the autograd-Function nodes (custom Functions) of tensors passed to any torch operation."""

    def __init__(self):
        super().__init__()
        self.nodes: dict[int, tuple[Any, torch.Tensor]] = {}

    def note(self, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            node = value.grad_fn
            if isinstance(node, torch.autograd.function.BackwardCFunction) and id(node) not in self.nodes:
                self.nodes[id(node)] = (node, value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self.note(v)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.note(args)
        self.note(tuple(kwargs.values()))
        return func(*args, **kwargs)


def _is_binary(t: torch.Tensor) -> bool:
    """At most two values (three with 0) in the whole tensor, or at most two per channel (dim 1)."""
    t = t.detach()
    if t.numel() == 0 or t.unique().numel() <= 3:
        return t.numel() > 0
    if t.dim() < 2:
        return False
    return all(t.select(1, c).unique().numel() <= 2 for c in range(t.shape[1]))


def dummy_images(model: nn.Module, size: Sequence[int], n: int = 2) -> torch.Tensor:
    """``n`` uniform [0, 1] images of ``size`` (C, H, W), the same every call, on the device and in the
    floating dtype of the model's first parameter or buffer (CPU float32 for a model without any)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    images = torch.rand(n, *size, generator=torch.Generator().manual_seed(0))
    if first is None:
        return images
    return images.to(first.device, first.dtype if first.is_floating_point() else None)


def _dummy_batch(model: nn.Module, inputs: torch.Tensor | None) -> torch.Tensor:
    if inputs is not None:
        return inputs.detach()
    size = getattr(model, "input_size", None)
    if size is None:
        raise SurrogateError("to trace the model's signs give inputs= (a small batch the model takes) or set "
                             "model.input_size = (C, H, W)")
    return dummy_images(model, size)


def sign_report(model: nn.Module, inputs: torch.Tensor | None = None) -> SignReport:
    """Trace one forward pass of ``model`` and report what its binarized activations use backward.

    ``inputs``: a batch (N, C, H, W) the model takes; None = two uniform [0, 1] images of
    ``model.input_size`` (C, H, W) (set by :func:`binsight.models.factory.load_model`). The model is
    left exactly as found (:func:`binsight._utils.preserved_model`).
    """
    x = _dummy_batch(model, inputs)
    called: dict[int, nn.Module] = {}

    def note_quant(module: nn.Module, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor) and args[0].requires_grad:
            called[id(module)] = module

    brevitas_quants = brevitas_activation_quantisers(model)
    with preserved_model(model):
        handles = [q.register_forward_pre_hook(note_quant) for q in brevitas_quants]
        try:
            with torch.enable_grad(), _SeenFunctions() as seen:
                seen.note(model(x.requires_grad_(True)))
        except Exception as e:  # the user's model failed on the batch: say on which
            first_line = (str(e).strip().splitlines() or [""])[0]
            raise SurrogateError(f"tracing the model's signs failed on inputs of shape {tuple(x.shape)} "
                                 f"({type(e).__name__}: {first_line}); give inputs= a batch the model takes") from e
        finally:
            for h in handles:
                h.remove()
    return _report(seen.nodes.values(), list(called.values()))


def _report(nodes: Any, brevitas_called: list[nn.Module]) -> SignReport:
    counts: dict[tuple[str, str], int] = {}  # (surrogate, source kind) -> count
    b = _brevitas()
    for node, value in nodes:
        cls = node._forward_cls
        if not _is_binary(value) or (b is not None and cls is b["sign_fn"] and brevitas_called):
            continue  # Brevitas signs are reported by their quantiser modules, which know the clipping
        if cls in (_Sign, _ScaledSign):
            key = (node.surrogate, "binsight sign" if cls is _Sign else "Brevitas quantiser, switched")
        elif b is not None and cls is b["sign_fn"]:
            key = (BREVITAS_UNCLIPPED, "Brevitas binary_sign_ste")
        else:
            key = (OWN, f"custom autograd.Function {cls.__qualname__}")
        counts[key] = counts.get(key, 0) + 1
    for quant in brevitas_called:
        if quant not in _SWITCHED:
            key = (_brevitas_form(quant), f"Brevitas {type(quant).__name__}")
            counts[key] = counts.get(key, 0) + 1
    names = sorted({s for s, _ in counts})
    surrogate = names[0] if len(names) == 1 else (f"mixed ({'; '.join(names)})" if names else "")
    sources = tuple(f"{n} x {kind} ({s})" for (s, kind), n in sorted(counts.items()))
    return SignReport(surrogate, bool(names) and OWN not in names, sources)


def no_input_gradient(model: nn.Module, inputs: torch.Tensor | None = None) -> bool:
    """True when the model's backward pass carries no gradient to its input: the gradient of the logits
    (each image's logits weighted by fixed random weights, so no class cancels another) with respect to
    ``inputs`` is exactly zero on every image and pixel.

    A BNN whose sign has a zero derivative almost everywhere (``torch.sign``, a rounding) gives True: its
    Gradient and SmoothGrad maps are all zero. ``inputs``: a batch (N, C, H, W) the model takes; None = the
    dummy batch of :func:`sign_report` (two uniform images of ``model.input_size``). One forward and one
    backward pass; the model is left exactly as found.
    """
    x = _dummy_batch(model, inputs).clone().requires_grad_(True)
    with preserved_model(model), torch.enable_grad():
        logits = model(x)
        weights = torch.rand(logits.shape, generator=torch.Generator().manual_seed(0)).to(logits)
        if not logits.requires_grad:
            return True
        (grad,) = torch.autograd.grad((logits * weights).sum(), x, allow_unused=True)
    return grad is None or not bool(grad.ne(0).any())


def warn_if_no_gradient(model: nn.Module, inputs: torch.Tensor | None = None, *, name: str = "the model") -> bool:
    """:func:`no_input_gradient`, with a :class:`~binsight._utils.BinsightWarning` naming ``name`` and the
    remedy when it holds; returns whether it warned (a caller such as the study flags the model's maps)."""
    if not no_input_gradient(model, inputs):
        return False
    n = len(_dummy_batch(model, inputs))
    warnings.warn(f"{name}: its backward pass carries no gradient to the input (the input gradient of the logits "
                  f"on {n} images is zero everywhere), so every Gradient and SmoothGrad map of it is zero; a step "
                  "like torch.sign or torch.round has a zero derivative almost everywhere: in a BNN, binarize with a "
                  "straight-through sign (binsight.nn.SignActivation, or an autograd.Function whose backward passes "
                  "the gradient on)",
                  BinsightWarning, stacklevel=2)
    return True


def describe_surrogate(model: nn.Module, inputs: torch.Tensor | None = None) -> str:
    """``sign_report(model, inputs).surrogate``: what the model's binarized activations use backward."""
    return sign_report(model, inputs).surrogate


# -- switching ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def use_surrogate_foreign(model: nn.Module, name: str, *, strict: bool = True) -> Iterator[nn.Module]:
    """Inside the block, binsight's surrogate ``name`` drives the backward pass of every binarized
    activation binsight can switch: binsight signs (as :func:`binsight.nn.use_surrogate`) and Brevitas
    binary activation quantisers.

    A switched Brevitas quantiser computes the same values (``scale * sign(x)``, sign(0) = +1) with
    derivative ``scale * surrogate(x / scale)``: ``"ste"`` reproduces Brevitas's clipped quantiser exactly
    and ``"identity"`` its unclipped one. A learned scale gets the gradient ``sign(x)`` inside the block
    (the share Brevitas's clamp adds is dropped: explaining needs only gradients with respect to the
    input). Weight quantisers are left alone.

    A custom ``torch.autograd.Function`` sign cannot be switched: it keeps its own backward
    (:func:`sign_report` says ``switchable=False``). A model with nothing to switch is refused
    (:class:`SurrogateError`) unless ``strict=False`` (then it is left as it is, as
    :func:`binsight.nn.use_surrogate` does); a Brevitas quantiser compiled by TorchScript is always
    refused. Everything is restored on exit, also when the block raises.
    """
    get_surrogate(name)
    quants = brevitas_activation_quantisers(model)
    if strict and not quants and not any(isinstance(m, SignActivation) for m in model.modules()):
        raise SurrogateError(f"the model has no binsight sign and no Brevitas binary activation quantiser, so "
                             f"surrogate {name!r} cannot be switched on; sign_report(model) says what it uses")
    compiled = [type(q).__name__ for q in quants if isinstance(q, torch.jit.ScriptModule)]
    if compiled:
        raise SurrogateError(f"Brevitas quantisers compiled by TorchScript ({compiled[0]}) cannot be switched; "
                             "run with the environment variable BREVITAS_JIT=0 (Brevitas's default)")
    own = {q: q.__dict__["forward"] for q in quants if "forward" in q.__dict__}
    before = {q: _SWITCHED.get(q) for q in quants}
    try:
        with use_surrogate(model, name):
            for q in quants:
                q.forward = _switched_forward(q, name)
                _SWITCHED[q] = name
            yield model
    finally:
        for q in quants:
            _SWITCHED.pop(q, None)
            if before[q] is not None:
                _SWITCHED[q] = before[q]
            if q in own:
                q.forward = own[q]
            else:
                q.__dict__.pop("forward", None)
