"""SmoothGrad (Smilkov et al. 2017) and its variants SmoothGrad-squared and VarGrad.

For each image x and each of n noisy copies x + e_k, e_k ~ N(0, sigma^2), take g_k = d logit_c / d x at the
copy; then per pixel and channel

* ``smoothgrad``: mean_k g_k (signed; the map is its magnitude unless ``signed=True``),
* ``squared``:    mean_k g_k^2,
* ``vargrad``:    mean_k g_k^2 - (mean_k g_k)^2 (the population variance, as Captum's NoiseTunnel),

and finally the channel reduction of :class:`~binsight.explain.gradient.Gradient`.

Noise: sigma = ``noise_level`` x (max - min) of each image (default 0.15), or an absolute ``noise_std``.
Image i of a call gets its noise from its own generator on the inputs' device, seeded from (``seed``, i)
with NumPy's ``SeedSequence``, so the maps of one call do not depend on ``batch_size`` (the CPU and a GPU
draw different noise for the same seed). An image explained in another call at another position i gets
other noise unless the seed is tied to it (e.g. explain it alone, or pass the same batch).

Convergence, measured: the copies of each image are split into halves (copies ``j < n // 2`` and the rest),
each half gives its own map, and the Spearman-Brown reliability of the whole map, ``2 r / (1 + r)`` with r
the Pearson correlation of the two half maps over pixels, estimates how well two runs with other seeds
would agree (free: no extra pass). Below :data:`RELIABLE` the map is mostly noise and a
:class:`~binsight._utils.BinsightWarning` says so. Measured on 8 Fashion-MNIST test images (min-max over the
images, small-cnn trained one epoch, three FP and two BNN checkpoints): FP 0.28-0.65 at n = 10, 0.44-0.91
at n = 50, 0.75-0.97 at n = 200; BNN (STE) 0.06-0.35 at n = 50 and 0.41-0.70 at n = 200. Extras: ``split_half_reliability`` float64 (N,) (NaN for n = 1: nothing to
split) and ``unconverged`` bool (N,) (reliability below :data:`RELIABLE`).

Speed: all images x copies go through the model in one forward and one backward pass (or chunks of at
most ``batch_size`` noisy copies, to bound memory); the sums are kept in float64. ``fast="graph"`` replays
the forward + backward pass of a chunk as a CUDA graph (kept across calls while the model's tensors stay
the same), ``fast="compile"`` runs it through ``torch.compile``; on the CPU ``"graph"`` is the eager path
(see :mod:`binsight.explain.fast`). ``precision="bf16"``: bf16 autocast and channels_last on CUDA.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from binsight._utils import BinsightWarning, batch_slices, call_model, check_count, image_generator
from binsight.explain import fast as fastpath
from binsight.explain.base import (
    Attribution,
    Explainer,
    ExplainerError,
    check_reduction,
    pixel_correlation,
    reduce_map,
)
from binsight.explain.registry import register_explainer

VARIANTS = ("smoothgrad", "squared", "vargrad")
RELIABLE = 0.7
"""Split-half reliability below which a SmoothGrad map counts as not converged (mostly noise)."""


def split_half_reliability(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman-Brown reliability ``2 r / (1 + r)`` of maps averaged from two halves whose own maps (N, ...)
    correlate by r (:func:`~binsight.explain.base.pixel_correlation`): float64 (N,), 1 for identical halves."""
    r = pixel_correlation(first, second).clamp_min(-1 + 1e-12)
    return 2 * r / (1 + r)


def convergence_extras(halves: tuple[torch.Tensor, torch.Tensor] | None, inputs: torch.Tensor, what: str,
                       n_samples: int) -> dict[str, torch.Tensor]:
    """The extras of a map averaged over Monte Carlo samples, from the maps (N, ...) of its two halves of
    samples (None where there is nothing to split) of ``inputs`` (N, C, H, W): ``split_half_reliability`` float64 (N,)
    (:func:`split_half_reliability`; NaN without halves) and ``unconverged`` bool (N,) (below
    :data:`RELIABLE`); a :class:`~binsight._utils.BinsightWarning` naming ``what`` when any map is unconverged."""
    reliability = torch.full((inputs.shape[0],), float("nan"), dtype=torch.float64, device=inputs.device)
    if halves is not None:
        reliability = split_half_reliability(*halves)
    unconverged = reliability < RELIABLE
    if bool(unconverged.any()):
        # the same text for every call of one setting, so that a study's many calls warn once
        warnings.warn(f"{what} maps are not converged at n_samples={n_samples} (split-half reliability below "
                      f"{RELIABLE}: two halves of the noisy copies give maps that disagree); raise n_samples; "
                      "extras['unconverged'] marks them and extras['split_half_reliability'] says how far",
                      BinsightWarning, stacklevel=4)
    return {"split_half_reliability": reliability, "unconverged": unconverged}


def image_noise(
    seed: int, index: int, n_samples: int, shape: tuple[int, ...], std: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The noise of image ``index`` in a call: float32 (n_samples, *shape) ~ N(0, std^2), drawn on ``device``."""
    gen = image_generator(seed, index, device)
    return torch.randn((n_samples, *shape), generator=gen, device=device) * std


def _non_negative(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value)) and value >= 0


def check_noise(noise_level: Any, noise_std: Any) -> None:
    """Refuse a ``noise_level`` that is not a finite number >= 0, or a ``noise_std`` that is neither that
    nor None, with an :class:`ExplainerError`."""
    if not _non_negative(noise_level):
        raise ExplainerError(f"noise_level must be a finite number >= 0, got {noise_level!r}")
    if noise_std is not None and not _non_negative(noise_std):
        raise ExplainerError(f"noise_std must be a finite number >= 0 or None, got {noise_std!r}")


def noise_stds(inputs: torch.Tensor, noise_level: float, noise_std: float | None) -> list[float]:
    """The noise std of each image of ``inputs`` (N, C, H, W), in pixel units: ``noise_std`` where given,
    else ``noise_level`` x the image's (max - min). N values."""
    if noise_std is not None:
        return [float(noise_std)] * inputs.shape[0]
    flat = inputs.flatten(1)
    spans = flat.amax(1) - flat.amin(1)
    return [noise_level * s for s in spans.tolist()]


def copy_noise(seed: int, n_samples: int, inputs: torch.Tensor, stds: list[float], copy_ids: torch.Tensor,
               cache: dict[int, torch.Tensor]) -> torch.Tensor:
    """The noise of the copies numbered ``copy_ids`` (copy j of image i is number i * n_samples + j, its noise
    row j of :func:`image_noise` of image i), in order: float32 (len(copy_ids), C, H, W) on the inputs'
    device. ``cache`` keeps the noise of the last image, whose copies may span chunks of consecutive ids."""
    image_ids = copy_ids // n_samples
    parts = []
    for i in image_ids.unique().tolist():
        if i not in cache:
            cache.clear()
            cache[i] = image_noise(seed, i, n_samples, tuple(inputs.shape[1:]), stds[i], inputs.device)
        js = copy_ids[image_ids == i] % n_samples
        parts.append(cache[i][js[0] : js[-1] + 1])
    return torch.cat(parts)


@register_explainer
class SmoothGrad(Explainer):
    """Gradient averaged over noisy copies of each image.

    Args:
        model, surrogate: as :class:`~binsight.explain.base.Explainer`.
        n_samples: noisy copies per image (default 50).
        noise_level: noise std as a fraction of each image's (max - min) (default 0.15).
        noise_std: absolute noise std in pixel units; replaces ``noise_level`` when given.
        variant: ``"smoothgrad"`` (mean gradient), ``"squared"`` (mean squared gradient) or ``"vargrad"``
            (variance of the gradient).
        reduction, signed: as :class:`~binsight.explain.gradient.Gradient` (``signed`` only changes the
            ``"smoothgrad"`` variant; the other two are non-negative).
        seed: seed of the noise (see the module docstring).
        batch_size: at most this many noisy copies go through the model at once (None: all N x n_samples).
        fast: False (eager), ``"graph"`` or ``"compile"``; see :mod:`binsight.explain.fast`.
        precision: ``"fp32"`` or ``"bf16"`` (CUDA only; elsewhere ignored with a warning).

    Returns maps (N, 1, H, W) float32.
    """

    name = "smoothgrad"
    seeded = True

    def __init__(
        self,
        model: nn.Module,
        *,
        n_samples: int = 50,
        noise_level: float = 0.15,
        noise_std: float | None = None,
        variant: str = "smoothgrad",
        reduction: str = "max",
        signed: bool = False,
        seed: int = 0,
        surrogate: str | None = None,
        batch_size: int | None = None,
        fast: str | bool = False,
        precision: str = "fp32",
    ):
        super().__init__(model, surrogate=surrogate, batch_size=batch_size)
        self.fast = fastpath.check_fast(fast, error=ExplainerError)
        self.precision = fastpath.check_precision(precision, error=ExplainerError)
        self._runner = fastpath.StepRunner(model, self._gradient_step, self.fast)
        self._bf16 = False
        check_count(n_samples, "n_samples", least=1, error=ExplainerError)
        check_noise(noise_level, noise_std)
        if variant not in VARIANTS:
            raise ExplainerError(f"unknown SmoothGrad variant {variant!r}; use one of {', '.join(VARIANTS)}")
        check_count(seed, "seed", least=0, error=ExplainerError)
        self.n_samples = n_samples
        self.noise_level = float(noise_level)
        self.noise_std = None if noise_std is None else float(noise_std)
        self.variant = variant
        self.reduction = check_reduction(reduction)
        self.signed = bool(signed)
        self.seed = seed

    def noise_stds(self, inputs: torch.Tensor) -> list[float]:
        """The noise std of each image (N values, pixel units)."""
        return noise_stds(inputs, self.noise_level, self.noise_std)

    def noise(self, inputs: torch.Tensor, index: int) -> torch.Tensor:
        """The noise added to image ``index``: float32 (n_samples, C, H, W) on the inputs' device."""
        std = self.noise_stds(inputs[index : index + 1])[0]
        return image_noise(self.seed, index, self.n_samples, tuple(inputs.shape[1:]), std, inputs.device)

    def _explain(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> Attribution:
        targets = self.resolve_targets(inputs, wanted)
        (total, first) = self._gradient_sums(inputs, targets)
        k, half = self.n_samples, self.n_samples // 2
        maps = self._reduced(total[0] / k, total[1] / k)
        halves = None
        if half:
            second = [(t - f) / (k - half) for t, f in zip(total, first)]
            halves = (self._reduced(first[0] / half, first[1] / half), self._reduced(*second))
        return Attribution(maps, targets, convergence_extras(halves, inputs, "SmoothGrad", k))

    def _reduced(self, mean: torch.Tensor, mean_sq: torch.Tensor) -> torch.Tensor:
        """The chosen variant of the gradient's mean and mean square (float64 (N, C, H, W)), reduced over
        channels: (N, 1, H, W)."""
        if self.variant == "smoothgrad":
            values = mean
        elif self.variant == "squared":
            values = mean_sq
        else:
            values = (mean_sq - mean.square()).clamp_min(0)
        return reduce_map(values.float(), self.reduction, self.signed)

    def _gradient_sums(self, inputs: torch.Tensor, targets: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], ...]:
        """Sums of each image's gradient and squared gradient over all its copies, and over its first
        ``n_samples // 2`` copies: ((sum, sum of squares), (first-half sum, first-half sum of squares)),
        each float64 (N, C, H, W)."""
        k, half = self.n_samples, self.n_samples // 2
        stds = self.noise_stds(inputs)
        sums = [torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device) for _ in range(4)]
        noise_cache: dict[int, torch.Tensor] = {}
        self._bf16 = fastpath.applies(inputs.device, self.precision)
        for part in batch_slices(inputs.shape[0] * k, self.batch_size):
            copy_ids = torch.arange(part.start, part.stop)
            copies = self._noisy_copies(inputs, stds, copy_ids, noise_cache)
            image_ids = (copy_ids // k).to(inputs.device)
            grads = self._runner(copies, targets[image_ids]).double()
            in_first = ((copy_ids % k) < half).to(inputs.device).view(-1, *([1] * (grads.dim() - 1)))
            for total, values in ((0, grads), (1, grads.square())):
                sums[total].index_add_(0, image_ids, values)
                sums[total + 2].index_add_(0, image_ids, values * in_first)
        return (sums[0], sums[1]), (sums[2], sums[3])

    def _gradient_step(self, model: nn.Module, copies: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """d logit_target / d copy (n, C, H, W) for checked targets (n,): one forward and one backward pass,
        free of host syncs (so that it can be captured as a CUDA graph)."""
        x = copies.detach().requires_grad_(True)
        with torch.enable_grad(), fastpath.autocast(self._bf16):
            logits = call_model(model, fastpath.model_input(x, self._bf16), error=ExplainerError)
            sel = logits.float().gather(1, targets.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(sel, x)
        return grad

    def _noisy_copies(
        self, inputs: torch.Tensor, stds: list[float], copy_ids: torch.Tensor, cache: dict[int, torch.Tensor]
    ) -> torch.Tensor:
        """The noisy copies numbered ``copy_ids`` (copy j of image i is number i * n_samples + j), in order:
        (len(copy_ids), C, H, W). ``cache`` keeps the noise of the last image, whose copies may span chunks."""
        image_ids = (copy_ids // self.n_samples).to(inputs.device)
        return inputs[image_ids] + copy_noise(self.seed, self.n_samples, inputs, stds, copy_ids, cache)

    def params(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "noise_level": self.noise_level,
            "noise_std": self.noise_std,
            "variant": self.variant,
            "reduction": self.reduction,
            "signed": self.signed,
            "seed": self.seed,
            "fast": self.fast,
            "precision": self.precision,
            **super().params(),
        }
