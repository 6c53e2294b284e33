"""The gradient of the Gaussian-smoothed network from forward passes only: surrogate-free SmoothGrad.

SmoothGrad's mean gradient estimates the gradient of the smoothed network g(x) = E_e[f(x + e)],
e ~ N(0, sigma^2 I), f the target logit - but for a binarized network it averages *surrogate* gradients:
the sign has no useful derivative, and what SmoothGrad averages is whatever the surrogate says. g itself
is smooth even when f is a step, and Stein's identity gives its gradient without any derivative of f:

    grad g(x) = E_e[f(x + e) e] / sigma^2 = E_e[(f(x + e) - f(x - e)) e] / (2 sigma^2),

the second form with antithetic pairs (+e, -e), which cancels f(x) and every even-order term of f around x.
This explainer averages it over ``n_samples`` pairs: 2 x ``n_samples`` forward passes per image, no backward
pass (it runs under ``torch.no_grad``), so a BNN's sign never needs a surrogate and the ``surrogate`` option
changes nothing. For a differentiable model its expectation is SmoothGrad's mean gradient at the same sigma;
for a BNN it is the true gradient of the smoothed network, which SmoothGrad's surrogate gradients only
approximate. Per-pixel values are then reduced over channels as
:class:`~binsight.explain.gradient.Gradient`'s.

Monte Carlo error: for a locally linear f the pair term is (e . w) e / sigma^2 with w the gradient, so
each pixel's estimate has variance (|w|^2 + w_j^2) / n: every pixel carries the noise of the whole
gradient's norm, and converging needs n of the order of the number of pixels (SmoothGrad's variance is
only that of the gradient at that pixel). The maps' split-half reliability is measured as SmoothGrad's
(extras ``split_half_reliability`` and ``unconverged``, the same :data:`~binsight.explain.smoothgrad.RELIABLE`).
On the default study's models the reliability and the cost per pair are measured by
``benchmarks/bench_smoothgrad_forward.py`` (numbers in ``docs/verdicts.md``, verdict 2): a BNN's maps need
several times more pairs than an FP model's to settle.

Noise: as :class:`~binsight.explain.smoothgrad.SmoothGrad` (sigma = ``noise_level`` x each image's
(max - min), or ``noise_std``; image i of a call draws from its own generator seeded from (``seed``, i)),
and pair j of image i uses the noise SmoothGrad's copy j of image i uses at the same seed, so the two
methods see the same draws. sigma must be positive (the estimate divides by it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from binsight._utils import batch_slices, check_count
from binsight.explain.base import Attribution, Explainer, ExplainerError, check_reduction, reduce_map
from binsight.explain.registry import register_explainer
from binsight.explain.smoothgrad import check_noise, convergence_extras, copy_noise, noise_stds


@register_explainer
class SmoothGradForward(Explainer):
    """The gradient of the Gaussian-smoothed network by Stein's identity (antithetic pairs), forward passes only.

    Args:
        model, batch_size: as :class:`~binsight.explain.base.Explainer` (``batch_size`` counts noisy copies;
            a pair is two).
        surrogate: accepted for a uniform interface and ignored: no backward pass is taken.
        n_samples: antithetic noise pairs per image (default 1000; 2 x n_samples forward passes). Its Monte
            Carlo error is far larger than SmoothGrad's at equal n (module docstring).
        noise_level: noise std as a fraction of each image's (max - min) (default 0.15); must be > 0.
        noise_std: absolute noise std in pixel units; replaces ``noise_level`` when given; must be > 0.
        reduction, signed: as :class:`~binsight.explain.gradient.Gradient`.
        seed: seed of the noise (as :class:`~binsight.explain.smoothgrad.SmoothGrad`'s).

    Returns maps (N, 1, H, W) float32 in units of logit per pixel-value.
    """

    name = "smoothgrad-forward"
    seeded = True

    def __init__(
        self,
        model: nn.Module,
        *,
        n_samples: int = 1000,
        noise_level: float = 0.15,
        noise_std: float | None = None,
        reduction: str = "max",
        signed: bool = False,
        seed: int = 0,
        surrogate: str | None = None,
        batch_size: int | None = None,
    ):
        super().__init__(model, surrogate=surrogate, batch_size=batch_size)
        check_count(n_samples, "n_samples", least=1, error=ExplainerError)
        check_noise(noise_level, noise_std)
        if noise_level == 0 or noise_std == 0:
            raise ExplainerError("smoothgrad-forward divides by the noise std: give noise_level > 0 or noise_std > 0")
        check_count(seed, "seed", least=0, error=ExplainerError)
        self.n_samples = n_samples
        self.noise_level = float(noise_level)
        self.noise_std = None if noise_std is None else float(noise_std)
        self.reduction = check_reduction(reduction)
        self.signed = bool(signed)
        self.seed = seed

    def _explain(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> Attribution:
        targets = self.resolve_targets(inputs, wanted)
        stds = noise_stds(inputs, self.noise_level, self.noise_std)
        flat = [i for i, s in enumerate(stds) if not s > 0]
        if flat:
            raise ExplainerError(f"smoothgrad-forward: image {flat[0]} is constant, so its noise std "
                                 f"(noise_level x its range) is 0; give noise_std > 0")
        total, first = self._stein_sums(inputs, targets, stds)
        k, half = self.n_samples, self.n_samples // 2
        maps = reduce_map((total / k).float(), self.reduction, self.signed)
        halves = None
        if half:
            halves = (reduce_map((first / half).float(), self.reduction, self.signed),
                      reduce_map(((total - first) / (k - half)).float(), self.reduction, self.signed))
        return Attribution(maps, targets, convergence_extras(halves, inputs, "smoothgrad-forward", k))

    def _stein_sums(self, inputs: torch.Tensor, targets: torch.Tensor,
                    stds: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sums over each image's pairs of (f(x + e) - f(x - e)) e / (2 sigma^2), over all its pairs and over
        its first ``n_samples // 2``: two float64 (N, C, H, W)."""
        k, half = self.n_samples, self.n_samples // 2
        total = torch.zeros(inputs.shape, dtype=torch.float64, device=inputs.device)
        first = torch.zeros_like(total)
        scale = torch.tensor([1 / (2 * s * s) for s in stds], dtype=torch.float64, device=inputs.device)
        pairs_at_once = None if self.batch_size is None else max(1, self.batch_size // 2)
        cache: dict[int, torch.Tensor] = {}
        with torch.no_grad():
            for part in batch_slices(inputs.shape[0] * k, pairs_at_once):
                pair_ids = torch.arange(part.start, part.stop)
                noise = copy_noise(self.seed, k, inputs, stds, pair_ids, cache)
                image_ids = (pair_ids // k).to(inputs.device)
                x = inputs[image_ids]
                up, down = self._target_logits(torch.cat([x + noise, x - noise]), targets[image_ids].repeat(2)).chunk(2)
                terms = ((up - down) * scale[image_ids]).view(-1, *([1] * (noise.dim() - 1))) * noise.double()
                in_first = ((pair_ids % k) < half).to(inputs.device).view(-1, *([1] * (noise.dim() - 1)))
                total.index_add_(0, image_ids, terms)
                first.index_add_(0, image_ids, terms * in_first)
        return total, first

    def _target_logits(self, copies: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The target logit of each copy, float64 (n,), at most ``batch_size`` copies through the model at once."""
        parts = [self.logits(copies[s]).double().gather(1, targets[s].view(-1, 1)).view(-1)
                 for s in batch_slices(copies.shape[0], self.batch_size)]
        return torch.cat(parts)

    def params(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "noise_level": self.noise_level,
            "noise_std": self.noise_std,
            "reduction": self.reduction,
            "signed": self.signed,
            "seed": self.seed,
            **super().params(),
        }
