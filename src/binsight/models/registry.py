"""Build any registered architecture, full precision or binarized, by name (timm-style registry)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import torch
from torch import nn

from binsight._registry import Registry
from binsight.data.images import MAX_PIXELS
from binsight.models.errors import ModelError
from binsight.models.kit import PRECISIONS, LayerKit
from binsight.models.normalize import Normalize, resolve_stats
from binsight.nn import get_surrogate

DEFAULT_MODEL = "small-cnn"

# Bounds on the sizes a spec (a checkpoint's side file, an own model's table) may declare, checked before
# anything of that size is made: a side file of a kilobyte must not cost gigabytes before it is refused.
MAX_CHANNELS = 4096
"""Most input channels a model may take (hyperspectral images have a few hundred)."""
MAX_CLASSES = 2**20
"""Most classes (logits) a model may have: 1,048,576."""
MAX_INPUT_PIXELS = MAX_PIXELS
"""Most pixels (H x W) of a model's input: the image reader's limit, 67,108,864."""

#: name -> constructor ``(kit, in_channels, num_classes, **options) -> nn.Module`` (the body, after
#: normalisation). A body sets ``gradcam_layer`` and ``gradcam_binary_layer`` (names inside the body).
ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture", ModelError)


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding an architecture constructor under ``name`` (a name is registered once)."""
    return ARCHITECTURES.register(name)


def available() -> list[str]:
    """Names of the registered architectures, the default first."""
    return sorted(ARCHITECTURES.names(), key=lambda n: (n != DEFAULT_MODEL, n))


class Classifier(nn.Module):
    """``normalize`` (pixels in [0, 1] -> normalised) then ``net`` (the architecture body) -> logits (N, K).

    Attributes: ``gradcam_layer`` / ``gradcam_binary_layer`` (module names, see docs/DESIGN.md) and
    ``binsight_spec`` (the arguments of :func:`build_model` that rebuild it).
    """

    def __init__(self, normalize: Normalize, net: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.normalize = normalize
        self.net = net
        self.gradcam_layer: str = f"net.{net.gradcam_layer}"
        self.gradcam_binary_layer: str | None = (
            f"net.{net.gradcam_binary_layer}" if net.gradcam_binary_layer else None
        )
        self.binsight_spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K) of pixels (N, C, H, W) in [0, 1]. The body runs on channels-last tensors (the same
        numbers; on the CPU max pooling in channels-first layout takes several times as long, so the
        forward pass of small-cnn is about 3x faster this way: ``benchmarks/bench_explain.py``)."""
        return self.net(self.normalize(x).to(memory_format=torch.channels_last))


def build_model(
    name: str = DEFAULT_MODEL,
    precision: str = "fp",
    in_channels: int = 1,
    num_classes: int = 10,
    input_size: int | Sequence[int] = 28,
    mean: Sequence[float] | float | None = None,
    std: Sequence[float] | float | None = None,
    first_last_fp: bool = True,
    scaling: bool = False,
    surrogate: str = "ste",
    **options: Any,
) -> Classifier:
    """Build architecture ``name`` in ``precision`` ("fp" or "bnn").

    Args:
        in_channels, num_classes: image channels C and classes K; the model maps (N, C, H, W) -> (N, K).
        input_size: H (= W) or (H, W) of the training images; recorded in the spec (every architecture
            pools adaptively, so other sizes run too).
        mean, std: per-channel normalisation applied inside the model; default: Fashion-MNIST (1 channel)
            or CIFAR-10 (3 channels) statistics, 0.5 / 0.25 otherwise.
        first_last_fp: in a BNN, keep the first conv and the classifier full precision.
        scaling: in a BNN, scale binary weights per output channel by their mean |latent weight|.
        surrogate: the sign surrogate of every SignActivation (switchable later with ``use_surrogate``).
        options: architecture-specific (e.g. ``widths`` for small-cnn).
    """
    constructor = ARCHITECTURES.get(name)
    if precision not in PRECISIONS:
        raise ModelError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    _check_positive_int("in_channels", in_channels, most=MAX_CHANNELS)
    _check_positive_int("num_classes", num_classes, most=MAX_CLASSES)
    size = _resolve_size(input_size)
    get_surrogate(surrogate)
    mean_list, std_list = resolve_stats(in_channels, mean, std)
    kit = LayerKit(precision, surrogate, bool(scaling), bool(first_last_fp))
    try:
        inspect.signature(constructor).bind(kit, in_channels, num_classes, **options)
    except TypeError as e:
        raise ModelError(f"bad options for architecture {name!r}: {e}") from None
    net = constructor(kit, in_channels, num_classes, **options)
    spec = dict(
        name=name, precision=precision, in_channels=in_channels, num_classes=num_classes, input_size=size,
        mean=mean_list, std=std_list, first_last_fp=bool(first_last_fp), scaling=bool(scaling),
        surrogate=surrogate, options=dict(options),
    )
    return Classifier(Normalize(mean_list, std_list), net, spec)


def build_from_spec(spec: dict[str, Any]) -> Classifier:
    """Rebuild a model from its ``binsight_spec`` (as stored in a checkpoint's side file)."""
    spec = dict(spec)
    options = spec.pop("options", {}) or {}
    return build_model(**spec, **options)


def _check_positive_int(what: str, value: Any, *, most: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (most is not None and value > most):
        bound = "" if most is None else f" of at most {most:,}"
        raise ModelError(f"{what} must be a positive integer{bound}, got {value!r}")


def check_input_pixels(height: int, width: int) -> str:
    """"" when an input of ``height`` x ``width`` pixels is within :data:`MAX_INPUT_PIXELS`, else why not."""
    if height * width <= MAX_INPUT_PIXELS:
        return ""
    return (f"input_size of {height}x{width} = {height * width:,} pixels is more than binsight takes "
            f"({MAX_INPUT_PIXELS:,})")


def _resolve_size(input_size: int | Sequence[int]) -> list[int]:
    size = [input_size, input_size] if isinstance(input_size, int) else list(input_size)
    if len(size) != 2:
        raise ModelError(f"input_size must be an int or (H, W), got {input_size!r}")
    for s in size:
        _check_positive_int("input_size", s)
    too_large = check_input_pixels(*size)
    if too_large:
        raise ModelError(f"{too_large}; give the (H, W) the model is trained on")
    return size
