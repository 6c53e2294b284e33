"""Mechanics shared by the explainers (``binsight.explain``) and the measures (``binsight.metrics``).

* devices: :func:`resolve_device`; :class:`BinsightWarning` for settings that do not apply;
* the model: :func:`preserved_model` (leave a model exactly as found), :func:`call_model` (logits (N, K)
  or a clear error);
* inputs: :func:`check_images`, :func:`check_batch_size`;
* targets: :func:`requested_targets` (the accepted forms), :func:`check_target_range`;
* substrates (what a hidden or removed pixel shows): :func:`make_substrate`, :func:`blurred`;
* randomness: :func:`derived_seed`, :func:`image_generator` (one generator per image, so results do not
  depend on the batch an image is in), :func:`model_digest` (a seed part that differs between models);
* batching: :func:`batch_slices`;
* maps: :func:`flat_maps` (a range within float noise: :data:`FLAT_TOLERANCE`).

Every check raises the error class it is given (``error=``; the explainers pass ``ExplainerError``, the
measures ``MetricError``), always a :class:`~binsight.errors.BinsightError`. This module imports no other
binsight module but :mod:`binsight.errors`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import numbers
import warnings
import weakref
from typing import Any, Iterator, Sequence

import numpy as np
import scipy.ndimage
import torch
from torch import nn

from binsight.errors import BinsightError

Error = type[BinsightError]
TargetLike = int | Sequence[int] | np.ndarray | torch.Tensor | None
"""None (the predicted class), one int / 0-d tensor / numpy integer (the same class for every image), or N
class indices (a list, a 1-D numpy array or a 1-D tensor)."""

SubstrateLike = str | torch.Tensor
SUBSTRATES = ("black", "blur", "mean")

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


class BinsightWarning(UserWarning):
    """A setting that does not apply and was ignored, or a result to read with care; the message says which."""


FLAT_TOLERANCE = 1e-3
"""A map whose range (max - min) is at most this share of its magnitude (max |value|, or of the range its
method's values can take) counts as flat: its variation is float noise on an offset (e.g. every pixel near
sigmoid(-10) = 4.5e-5), not a ranking of pixels."""


def flat_maps(maps: torch.Tensor, *, span: float | None = None, tolerance: float = FLAT_TOLERANCE) -> torch.Tensor:
    """Bool (N,): map i's range (max - min) is at most ``tolerance`` x its magnitude max |m|, or x ``span`` (the
    width of the range its method's values can take, e.g. 1.0 for a mask in [0, 1]) where that is larger.
    ``maps``: (N, ...) finite values. A constant map (zero range) is flat too."""
    values = maps.flatten(1)
    width = values.amax(1) - values.amin(1)
    magnitude = values.abs().amax(1)
    return width <= tolerance * (magnitude if span is None else torch.clamp(magnitude, min=span))


# -- devices -------------------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def resolve_device(device: str | torch.device = "auto", *, error: Error = BinsightError) -> torch.device:
    """The torch device for ``"auto"`` (CUDA when torch sees a GPU, else the CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"`` (or a ``torch.device``); a device this machine lacks raises ``error`` naming
    what to use instead."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise error(f"unknown device {name!r}; use one of {', '.join(DEVICES)}") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise error(f"device {name!r} asked for, but torch sees no CUDA GPU here; use 'auto' or 'cpu', "
                        "or install a CUDA build of torch")
        if dev.index is not None and dev.index >= count:
            raise error(f"device {name!r} asked for, but there are {count} CUDA GPU(s); use cuda:0 .. cuda:{count - 1}")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise error(f"device {name!r} asked for, but MPS (Apple GPU) is not available here; use 'auto' or 'cpu'")
    elif dev.type != "cpu":
        raise error(f"unsupported device {name!r}; use one of {', '.join(DEVICES)}")
    return dev


# -- the model -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def preserved_model(model: nn.Module) -> Iterator[nn.Module]:
    """Run the body with ``model`` in eval mode and its parameters frozen; restore everything on exit.

    Restored, also when the body raises: the train/eval mode of every module, ``requires_grad`` and
    ``.grad`` of every parameter, the parameter and buffer objects of every module (one replaced, added or
    removed inside is put back), their values, the submodules, the hooks (hooks added inside are removed,
    the user's own stay), and module attributes (an attribute set on a module inside, e.g. a stored
    ``input``, is deleted).

    Values cost nothing per call: a tensor whose autograd version counter moved inside the body (every
    in-place write bumps it, also under ``no_grad``) is written back from a copy that is kept per model and
    made again only when the tensor changed since the last call (version counter or storage moved, e.g.
    after a training step or ``load_state_dict``). The copies live on the CPU. A write through ``.data``
    bypasses the version counter and is not seen.
    """
    modules = [_ModuleState.of(m) for m in model.modules()]
    tensors = _tracked_tensors(modules)
    saved = _saved_values(model, tensors)
    grads = {p: (p.requires_grad, p.grad) for p in tensors if isinstance(p, nn.Parameter)}
    try:
        if any(state.training for state in modules):
            model.eval()
        for p, (requires_grad, _) in grads.items():
            if requires_grad:
                p.requires_grad_(False)
        yield model
    finally:
        for state in modules:
            state.restore()
        _restore_values(model, tensors, saved)
        for p, (requires_grad, grad) in grads.items():
            p.requires_grad_(requires_grad)
            if p.grad is not grad:
                p.grad = grad


class _ModuleState:
    """One module's mode, attributes, hooks, parameters, buffers and children, shallow (no tensor copies)."""

    __slots__ = ("module", "training", "attributes", "hooks", "members")

    @classmethod
    def of(cls, m: nn.Module) -> "_ModuleState":
        state = cls()
        state.module, state.training, state.attributes = m, m.training, set(vars(m))
        state.hooks = [(d, tuple(d)) for d in (getattr(m, name, None) for name in _HOOK_DICTS) if d is not None]
        state.members = [(d, dict(d), tuple(map(id, d.values()))) for d in (m._parameters, m._buffers, m._modules)]
        return state

    def restore(self) -> None:
        m = self.module
        if vars(m).keys() != self.attributes:
            for name in vars(m).keys() - self.attributes:
                delattr(m, name)
        for d, keys in self.hooks:
            if (d or keys) and tuple(d) != keys:
                kept = set(keys)
                for k in [k for k in d if k not in kept]:
                    del d[k]
        for d, before, ids in self.members:
            if tuple(d) != tuple(before) or tuple(map(id, d.values())) != ids:
                d.clear()
                d.update(before)
        if m.training != self.training:
            object.__setattr__(m, "training", self.training)  # not m.train(): that recurses, quadratic in depth


def _tracked_tensors(modules: list[_ModuleState]) -> dict[torch.Tensor, tuple[int, int]]:
    """Every parameter and buffer (each once) with its (version counter, data pointer) on entry."""
    tensors: dict[torch.Tensor, tuple[int, int]] = {}
    for state in modules:
        for _, before, _ in state.members[:2]:
            for t in before.values():
                if t is not None and t not in tensors:
                    tensors[t] = _stamp(t)
    return tensors


def _stamp(t: torch.Tensor) -> tuple[int, int]:
    return t._version, (0 if t.is_meta else t.data_ptr())


class _Saved:
    __slots__ = ("ref", "stamp", "copy")

    def __init__(self, t: torch.Tensor, stamp: tuple[int, int]):
        self.ref, self.stamp = weakref.ref(t), stamp
        self.copy = t.detach().to("cpu", copy=True)


_SAVED: "weakref.WeakKeyDictionary[nn.Module, dict[int, _Saved]]" = weakref.WeakKeyDictionary()


def _saved_values(model: nn.Module, tensors: dict[torch.Tensor, tuple[int, int]]) -> dict[int, _Saved]:
    """The model's kept copies, made again for the tensors that changed since they were taken."""
    old = _SAVED.get(model, {})
    saved = {}
    for t, stamp in tensors.items():
        entry = old.get(id(t))
        if entry is None or entry.ref() is not t or entry.stamp != stamp:
            entry = None if t.is_meta else _Saved(t, stamp)
        if entry is not None:
            saved[id(t)] = entry
    _SAVED[model] = saved
    return saved


@torch.no_grad()
def _restore_values(model: nn.Module, tensors: dict[torch.Tensor, tuple[int, int]], saved: dict[int, _Saved]) -> None:
    for t, stamp in tensors.items():
        entry = saved.get(id(t))
        if entry is None or _stamp(t) == stamp:
            continue
        if t.is_meta or t.data_ptr() != stamp[1] or t.shape != entry.copy.shape:
            t.data = entry.copy.to(t.device, copy=True)
        else:
            t.detach().copy_(entry.copy)
        entry.stamp = _stamp(t)  # its values are the copy's again


def call_model(model: nn.Module, x: torch.Tensor, *, error: Error = BinsightError) -> torch.Tensor:
    """``model(x)`` checked to be logits (N, K) for the N images of ``x``.

    A model that fails on the inputs (e.g. a wrong channel count) or returns anything but a floating-point
    (N, K) tensor (integer logits have no gradient) raises ``error`` naming the problem; the model's own
    exception is chained. Float64 logits are returned as float32 (differentiably), the precision of every
    map and measure.
    """
    try:
        out = model(x)
    except RuntimeError as e:
        first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        hint = ""
        if first_conv is not None and first_conv.in_channels != x.shape[1]:
            hint = f"; the model's first convolution takes {first_conv.in_channels} channels, the inputs have {x.shape[1]}"
        raise error(f"the model failed on inputs of shape {tuple(x.shape)}{hint} ({e})") from e
    if not isinstance(out, torch.Tensor):
        raise error(
            f"the model returned {type(out).__name__}, not a tensor of logits (N, num_classes); "
            "wrap it so that forward returns only the logits"
        )
    n = x.shape[0]
    if out.dim() != 2 or out.shape[0] != n:
        raise error(f"the model returned shape {tuple(out.shape)} for {n} images; expected logits (N, num_classes) = ({n}, K)")
    if not out.is_floating_point():
        raise error(f"the model returned logits of dtype {out.dtype}; binsight needs floating-point logits (their "
                    "gradient is what is explained): return the scores before any rounding, argmax or cast")
    return out.float() if out.dtype == torch.float64 else out


def all_finite(values: torch.Tensor) -> bool:
    """True when every entry of ``values`` is finite: one reduction (the sum) and one host sync, with the
    elementwise test only where the sum is not finite (NaN or inf inside, or an overflowing sum)."""
    if values.numel() == 0 or bool(torch.isfinite(values.sum())):
        return True
    return bool(torch.isfinite(values).all())


# -- inputs --------------------------------------------------------------------------------------------


def check_images(
    images: Any, *, what: str = "images", n: int | None = None, error: Error = BinsightError
) -> torch.Tensor:
    """A batch of images (N, C, H, W): a non-empty, finite, floating-point tensor (``n`` images if given);
    returned detached."""
    if not isinstance(images, torch.Tensor):
        raise error(f"{what} must be a torch.Tensor of shape (N, C, H, W), got {type(images).__name__}")
    if images.dim() != 4:
        raise error(
            f"{what} must have 4 dimensions (N, C, H, W), got shape {tuple(images.shape)}; "
            f"add a batch dimension with {what}.unsqueeze(0) for a single image"
        )
    if images.shape[0] == 0:
        raise error(f"{what} is an empty batch (N = 0)")
    if not images.is_floating_point():
        raise error(f"{what} must be floating point in [0, 1], got {images.dtype}; convert with {what}.float() / 255")
    if n is not None and images.shape[0] != n:
        raise error(f"there are {images.shape[0]} {what} for {n} maps; give one map per image")
    if not all_finite(images):
        bad = ~torch.isfinite(images)
        idx = sorted({int(i) for i in bad.flatten(1).any(1).nonzero().flatten()})
        raise error(f"{what} contain NaN or infinite pixels (images {idx[:10]}); clean them first")
    return images.detach()


def check_count(value: Any, name: str, *, least: int, error: Error = BinsightError, note: str = "") -> int:
    """``value`` if it is an int (not a bool) of at least ``least`` (0 or 1); anything else raises ``error``
    naming ``name`` ("must be a positive integer" / "a non-negative integer", then ``note``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        kind = "a positive integer" if least == 1 else "a non-negative integer"
        raise error(f"{name} must be {kind}{note}, got {value!r}")
    return value


def check_batch_size(batch_size: Any, *, optional: bool = True, error: Error = BinsightError) -> int | None:
    """``batch_size`` if it is a positive int (or None where ``optional``); anything else raises ``error``."""
    if batch_size is None and optional:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        none = " or None" if optional else ""
        raise error(f"batch_size must be a positive integer{none}, got {batch_size!r}")
    return int(batch_size)


# -- targets -------------------------------------------------------------------------------------------


def requested_targets(
    target: TargetLike, n: int, *, device: torch.device | str | None = None, error: Error = BinsightError
) -> torch.Tensor | None:
    """The classes asked for, as int64 (N,) on ``device``; None stays None (the predicted class).

    Accepted: an int, a numpy integer or a 0-d tensor (the same class for all N images); a list, 1-D numpy
    array or 1-D tensor of N class indices. Booleans, floats, negative indices and a wrong count raise
    ``error``. The upper end of the range needs the model: :func:`check_target_range`.
    """
    if target is None:
        return None
    if isinstance(target, (bool, np.bool_)):
        raise error("target must be an int class index, a sequence of them, or None")
    try:
        t = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise error(f"target must be class indices (an int, or a list / array / tensor of ints), got {target!r}") from None
    if t.is_floating_point() or t.dtype == torch.bool or t.is_complex():
        raise error(f"target must hold integer class indices, got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(n)
    if t.dim() != 1:
        raise error(f"target must be one class index or a 1-D sequence of N of them, got shape {tuple(t.shape)}")
    if t.numel() != n:
        raise error(f"target has {t.numel()} entries for {n} images; give one class per image, one int, or None")
    t = t.detach()
    if (t < 0).any():  # checked where the targets are (usually the CPU), before any copy to the device
        raise error(f"target {int(t.min())} is out of range: class indices start at 0")
    return t.to(device=device, dtype=torch.long, copy=True)


def check_target_range(targets: torch.Tensor, num_classes: int, *, error: Error = BinsightError) -> torch.Tensor:
    """``targets`` (N,) if every class index is below ``num_classes`` (the logits' K); else raises ``error``."""
    bad = targets >= num_classes
    if bad.any():
        raise error(
            f"target {int(targets[bad][0])} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return targets


# -- substrates ----------------------------------------------------------------------------------------


def make_substrate(
    images: torch.Tensor,
    kind: SubstrateLike,
    *,
    blur_sigma: float | None = None,
    mean: Sequence[float] | torch.Tensor | None = None,
    error: Error = BinsightError,
) -> torch.Tensor:
    """What a hidden or removed pixel shows: a tensor like ``images`` (N, C, H, W), built per image.

    ``"black"``: 0. ``"blur"``: :func:`blurred` (Gaussian of ``blur_sigma`` pixels). ``"mean"``: each channel's
    value from ``mean`` (C numbers, or one for all channels), or, when None, each image's own channel mean.
    A tensor broadcastable to (N, C, H, W) is used as given.
    """
    if isinstance(kind, torch.Tensor):
        try:
            return kind.to(images.device, images.dtype).expand_as(images)
        except RuntimeError:
            raise error(
                f"a substrate tensor must broadcast to the images' shape {tuple(images.shape)}, got {tuple(kind.shape)}"
            ) from None
    if kind == "black":
        return torch.zeros_like(images)
    if kind == "blur":
        return blurred(images, blur_sigma, error=error)
    if kind == "mean":
        return _channel_mean(images, mean, error=error).expand_as(images)
    raise error(f"unknown substrate {kind!r}; use one of {', '.join(SUBSTRATES)} (or a tensor)")


def blurred(images: torch.Tensor, sigma: float | None = None, *, error: Error = BinsightError) -> torch.Tensor:
    """Each image and channel blurred by a Gaussian of ``sigma`` pixels (default min(H, W) / 14, i.e. 2 for
    28 x 28), reflecting at the borders (``scipy.ndimage.gaussian_filter``); same shape, dtype and device."""
    if sigma is None:
        sigma = min(images.shape[-2:]) / 14
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not sigma > 0:
        raise error(f"blur_sigma must be a positive number of pixels, got {sigma!r}")
    pixels = images.detach().cpu().double().numpy()
    smooth = scipy.ndimage.gaussian_filter(pixels, sigma=(0, 0, sigma, sigma), mode="reflect")
    return torch.from_numpy(smooth).to(images.device, images.dtype)


def _channel_mean(images: torch.Tensor, mean: Sequence[float] | torch.Tensor | None, *, error: Error) -> torch.Tensor:
    channels = images.shape[1]
    if mean is None:
        return images.mean(dim=(2, 3), keepdim=True)
    values = torch.as_tensor(mean, dtype=images.dtype, device=images.device).flatten()
    if values.numel() == 1:
        values = values.expand(channels)
    if values.numel() != channels:
        raise error(f"mean has {values.numel()} values for {channels} channels; give one per channel")
    return values.view(1, channels, 1, 1)


# -- randomness ----------------------------------------------------------------------------------------


def derived_seed(seed: int, index: int) -> int:
    """A 64-bit seed for item ``index`` under ``seed`` (numpy's ``SeedSequence`` hash of the pair): distinct
    pairs give unrelated streams, unlike ``seed + index``."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 32 | int(state[1])


def model_digest(model: nn.Module) -> int:
    """A 63-bit digest of ``model``'s weights: BLAKE2b of the name, shape, dtype and bytes of every parameter
    and buffer, in module order. Models with identical weights (a copy, a surrogate switched) share it; any
    other pair differs. Reads every tensor once (copied to the CPU): about 0.1 s per 100 MB of weights."""
    digest = hashlib.blake2b(digest_size=8)
    for name, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        if not t.is_meta:
            digest.update(t.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy())
    return int.from_bytes(digest.digest(), "big") >> 1


def image_generator(seed: int, index: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of image ``index`` of a call, on ``device``, seeded with :func:`derived_seed`."""
    return torch.Generator(device=device).manual_seed(derived_seed(seed, index))


# -- batching ------------------------------------------------------------------------------------------


def batch_slices(total: int, batch_size: int | None) -> list[slice]:
    """Consecutive slices covering ``range(total)``, each at most ``batch_size`` long (None: one slice)."""
    size = batch_size or max(total, 1)
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]
