"""Sanity checks by model parameter randomisation (Adebayo et al., "Sanity Checks for Saliency Maps",
NeurIPS 2018).

A map that explains the model must change when the model's weights are replaced by random ones.
:func:`randomisation_test` re-initialises the layers of a *deep copy* of the model - cascading, from the
top (output) layer down, or one layer at a time ("independent") - recomputes the maps with the same
explain function and the same target classes, and measures how similar each new map is to the original.
The user's model is never modified: all randomisation happens on the copy.

Layers are the modules that own parameters (``module.parameters(recurse=False)`` is not empty), in the
order their forward pass ends during one forward pass of the model (a forward-hook trace), so "top" is the
layer closest to the output whatever order the modules were registered in. Modules that own parameters
but take no part in the forward pass are left out. How a layer is randomised (:func:`randomise_layer`):

* binsight's binary layers (``BinaryConv2d``, ``BinaryLinear``): ``reset_parameters()`` for the bias, then
  latent weights drawn uniformly from [-1, 1]; the forward pass binarizes them again;
* other layers with ``reset_parameters()`` (``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d`` - which also
  resets its running statistics -, ...): that method, i.e. the layer's own initialisation, as in Adebayo
  et al. and Quantus' ``MPRT``;
* layers without it: each parameter tensor redrawn from a normal distribution with mean 0 and the
  tensor's own standard deviation (1 when that is 0 or undefined, e.g. a single value).

Randomness: before randomising the l-th layer in randomisation order, torch's generator is seeded with
:func:`layer_seed` ``(seed, l)`` inside ``torch.random.fork_rng``, so results repeat for a seed and the global
random state is left as it was. The layer seed is a hash of (seed, l), not a small number like ``seed + l``:
an untrained model built right after ``torch.manual_seed(0)`` would otherwise get a layer's initial
weights back - no randomisation at all.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from binsight._utils import TargetLike, call_model, check_target_range, derived_seed, requested_targets
from binsight.explain import get_explainer
from binsight.metrics import similarity as _similarity
from binsight.metrics._checks import MetricError, check_images, check_maps
from binsight.nn import BinaryConv2d, BinaryLinear

ExplainFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(model, images (N, C, H, W), targets int64 (N,)) -> maps (N, 1, H, W)``."""

SIMILARITIES: dict[str, Callable[[torch.Tensor, torch.Tensor], np.ndarray]] = {
    "spearman": _similarity.spearman,
    "ssim": _similarity.ssim,
    "top_k_iou": _similarity.top_k_iou,
    "cosine": _similarity.cosine,
}

MODES = ("cascading", "independent")


@dataclass
class SanityResult:
    """Similarity of the maps of a randomised model to the original maps.

    mode: "cascading" (row l: layers[0..l] all randomised) or "independent" (row l: only layers[l]).
    layers: names of the randomised layers, in randomisation order (top layer first when cascading).
    similarity: measure name -> float64 (L, N), similarity of each image's map after row l's randomisation
        to its original map.
    original_maps: float (N, 1, H, W), the maps of the unmodified model.
    targets: int64 (N,), the class explained, the same for every row.
    maps: the maps after each row's randomisation, (L, N, 1, H, W), when asked for with ``keep_maps``.
    """

    mode: str
    layers: list[str]
    similarity: dict[str, np.ndarray]
    original_maps: torch.Tensor
    targets: torch.Tensor
    maps: torch.Tensor | None = None


def explain_with(explainer: str | Callable[..., Any], **kwargs: Any) -> ExplainFn:
    """An explain function from an explainer: a registry name (``"gradient"``, ``"captum:Saliency"``) or a
    factory ``factory(model, **kwargs)`` returning an object with ``attribute(images, target)``."""

    def explain(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if isinstance(explainer, str):
            method = get_explainer(explainer, model, **kwargs)
        else:
            method = explainer(model, **kwargs)
        return method.attribute(images, targets)

    return explain


def randomisation_test(
    model: nn.Module,
    images: torch.Tensor,
    explain: ExplainFn | str,
    targets: TargetLike = None,
    *,
    mode: str = "cascading",
    measures: Sequence[str] = ("spearman", "ssim"),
    seed: int = 0,
    layers: Sequence[str] | None = None,
    original_maps: torch.Tensor | None = None,
    keep_maps: bool = False,
) -> SanityResult:
    """Randomise a deep copy of ``model`` layer by layer and compare the new maps with the original ones.

    Args:
        model: any classifier ``nn.Module`` (left untouched).
        images: float (N, C, H, W) as the model takes them.
        explain: ``fn(model, images, targets) -> maps`` (:data:`ExplainFn`), or an explainer name for
            :func:`explain_with`.
        targets: the classes to explain; None: the class the unmodified model predicts. Kept fixed for
            every randomised model.
        mode: "cascading" (top layer to bottom, accumulating) or "independent" (one layer at a time).
        measures: names in :data:`SIMILARITIES`.
        seed: see the module docstring.
        layers: module names to randomise, bottom (input side) to top; default: every layer (module
            docstring).
        original_maps: the maps of the unmodified model, if already computed with the same ``explain``.
        keep_maps: also return every randomised model's maps.
    """
    images = check_images(images)
    if mode not in MODES:
        raise MetricError(f"mode must be one of {MODES}, got {mode!r}")
    unknown = [m for m in measures if m not in SIMILARITIES]
    if unknown or not measures:
        raise MetricError(f"unknown similarity measures {unknown}; choose from {sorted(SIMILARITIES)}")
    if isinstance(explain, str):
        explain = explain_with(explain)
    work = _private_copy(model)
    targets = _targets(work, images, targets)
    if original_maps is None:
        original_maps = _maps(explain, work, images, targets)
    else:
        original_maps = check_maps(original_maps, "original_maps").to(images.device)
    chosen = _chosen_layers(work, images, layers)
    order = chosen[::-1] if mode == "cascading" else chosen
    pristine = {k: v.detach().clone() for k, v in work.state_dict().items()}
    rows: list[torch.Tensor] = []
    for index, (_, module) in enumerate(order):
        if mode == "independent":
            work.load_state_dict(pristine)
        randomise_layer(module, layer_seed(seed, index))
        rows.append(_maps(explain, work, images, targets).detach().cpu())
    original_cpu = original_maps.detach().cpu()
    scores = {m: np.stack([SIMILARITIES[m](original_cpu, row) for row in rows]) for m in measures}
    return SanityResult(
        mode=mode,
        layers=[name for name, _ in order],
        similarity=scores,
        original_maps=original_maps,
        targets=targets,
        maps=torch.stack(rows) if keep_maps else None,
    )


def _private_copy(model: nn.Module) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise MetricError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    try:
        work = copy.deepcopy(model)
    except Exception as e:  # noqa: BLE001 - any failure means the same thing to the user
        raise MetricError(f"the sanity check works on a copy of the model, but it cannot be copied: {e}") from None
    return work.eval()


def _targets(model: nn.Module, images: torch.Tensor, targets: TargetLike) -> torch.Tensor:
    """``targets`` as int64 (N,) on the images' device, checked against the model; None: the predicted class."""
    wanted = requested_targets(targets, images.shape[0], device=images.device, error=MetricError)
    with torch.no_grad():
        logits = call_model(model, images if wanted is None else images[:1], error=MetricError)
    if wanted is None:
        return logits.argmax(1)
    return check_target_range(wanted, logits.shape[1], error=MetricError)


def _maps(explain: ExplainFn, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    maps = explain(model, images, targets)
    return check_maps(maps, "the explain function's maps").to(images.device)


def model_layers(model: nn.Module, images: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module that owns parameters, in the order its forward pass ends during
    one forward pass of ``model`` on the first image; modules never called are left out."""
    owners = {m: name for name, m in model.named_modules() if next(m.parameters(recurse=False), None) is not None}
    seen: list[nn.Module] = []

    def record(module: nn.Module, args: Any, output: Any) -> None:
        if module not in seen:
            seen.append(module)

    handles = [m.register_forward_hook(record) for m in owners]
    try:
        with torch.no_grad():
            model(images[:1])
    finally:
        for handle in handles:
            handle.remove()
    return [(owners[m], m) for m in seen]


def _chosen_layers(model: nn.Module, images: torch.Tensor, names: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    if names is None:
        found = model_layers(model, images)
        if not found:
            raise MetricError("the model has no layer with parameters to randomise")
        return found
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing or not names:
        raise MetricError(f"no module named {missing} in the model; names are those of model.named_modules()")
    return [(n, modules[n]) for n in names]


def layer_seed(seed: int, index: int) -> int:
    """The torch seed for the ``index``-th layer randomised under ``seed`` (:func:`binsight._utils.derived_seed`)."""
    return derived_seed(seed, index)


@torch.no_grad()
def randomise_layer(module: nn.Module, seed: int) -> None:
    """Re-initialise the parameters ``module`` owns, in place (see the module docstring for how)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        else:
            for param in module.parameters(recurse=False):
                std = float(param.std()) if param.numel() > 1 else 0.0
                param.normal_(0.0, std if np.isfinite(std) and std > 0 else 1.0)
        if isinstance(module, (BinaryConv2d, BinaryLinear)):
            module.weight.uniform_(-1.0, 1.0)
