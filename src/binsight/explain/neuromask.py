"""NeuroMask: learn a small, smooth mask that keeps the classifier's decision.

Faithful to the reference definition (Alzantot et al., SMARTCOMP 2019, and their TensorFlow 1 code), but
batched: many images are optimised at once, each independently of the others.

For one image x (C, H, W) in [0, 1] pixels and target class c, with a free variable w (1, H, W):

    M        = sigmoid(w / T)                                   mask in [0, 1], broadcast over colour channels
    x_masked = x * M                                            hidden pixels are black (substrate 0)
    L(w)     = l_pred   * CE(model(x_masked), c)
             + l_sparse * mean | w + B |                        B = 10, pushes the mask to 0
             + l_smooth * mean ((K * w)^2)                      K: Laplacian, "valid" (no padding)

w starts Uniform(-B, B) and takes ``iterations`` (2000) steps of TF1 RMSProp (lr 0.03, rho 0.9, momentum 0,
eps 1e-10, mean square initialised to ONES). The final M is the saliency map.

Batching: the loss is SUMMED over the images of a group, so the gradient with respect to image i's w is exactly
the gradient of image i's own loss (a mean would scale it by 1/N). RMSProp acts elementwise, so the update of
image i depends on its gradients only. Image i's initial w comes from a generator seeded with ``(s, i)``
(i its index in the call), so its mask does not depend on the other images or on ``batch_size`` (up to float
rounding of the model's batched kernels). The model must treat samples independently (true of every classifier
in eval mode, BatchNorm included).

The start: ``s = start_seed(seed, model)`` mixes ``seed`` with a digest of the model's weights
(:func:`binsight._utils.model_digest`), so two different models never start from the same draw (their masks
would look alike while they are near the start), and identical weights (a copy, another surrogate of one BNN)
start from one draw. ``shared_start=True`` uses ``s = seed`` for every model: one draw, for comparisons
that must be paired by the start. ``start=k`` (k >= 1) takes the model's k-th other starting draw,
``derived_seed(s, k)``, independent of the default one (``start=0``, the stream above, unchanged): the same
model explained from two starts is NeuroMask's own seed check (a study's ``seed_check_images``), how much of a
mask the model fixes and how much its random start.

How far a mask left its start is measured, not guessed from ``iterations``: ``start_correlation`` is the
Pearson correlation over pixels between the final mask and the start mask ``sigmoid(w0 / T)``; above
:data:`NEAR_START` the mask still shows its random start more than the model (20 iterations: 0.99; 300:
about 0.4; 1,000 and the default 2,000: below 0.2 on Fashion-MNIST and on tiny test models), and a
:class:`~binsight._utils.BinsightWarning` says so.

Presets (the reference code's two demos), chosen by input size unless ``preset`` is given:

    preset     (l_pred, l_sparse, l_smooth)   T     kernel   used when
    cifar      (0.4, 0.35, 0.15)              1.0   3x3      min(H, W) <  128  (28x28, 32x32, 64x64, ...)
    imagenet   (0.4, 0.35, 0.03)              0.3   5x5      min(H, W) >= 128  (224x224, 299x299, ...)

Options beyond the reference (each off by default, so the default is the faithful mode):

* ``early_stopping``: an image stops when its loss has not dropped below ``best * (1 - tolerance)`` for
  ``patience`` consecutive iterations; its w is frozen from then on (and it leaves the batch, so later
  iterations cost less). The loop ends when every image has stopped or after ``iterations``. The faithful
  loss keeps falling slowly to the end (the sparsity term drives hidden pixels' w towards -B long after their
  mask is ~0), so a stopped image's mask differs slightly from the faithful one.
* ``mask_size``: w lives at a lower resolution (h, w) and is upsampled bilinearly (align_corners=False) to
  H x W before the sigmoid. The sparsity and smoothness terms (and the kernel) act on the low-resolution w.
* ``substrate``: what a hidden pixel shows. ``"black"`` (reference: 0), ``"blur"`` (the image blurred with a
  Gaussian of ``blur_sigma`` pixels), ``"mean"`` (the image's per-channel mean); see
  :func:`binsight._utils.make_substrate`. x_masked = s + (x - s) * M.

Speed (opt-in, :mod:`binsight.explain.fast`): ``fast="graph"`` captures one whole step of the faithful loop
(mask, forward, loss, backward, regulariser gradient, RMSProp update) as a CUDA graph and replays it
``iterations`` times; ``fast="compile"`` runs the step with a ``torch.compile``d model. On the CPU ``"graph"``
is the eager loop, and ``early_stopping`` always runs eager (its batch shrinks as images stop).
``precision="bf16"``: the model's forward pass under bf16 autocast with channels_last inputs, on CUDA only.

Extras returned in ``Explanation.extras`` (tensors on the inputs' device, one row per image):

* ``final_loss`` float (N,): the loss of the final mask.
* ``keeps_target`` bool (N,): argmax model(x_masked) == target with the final mask.
* ``iterations_run`` int64 (N,): the RMSProp steps applied to each image.
* ``loss_history`` float32 (N, iterations), when ``return_history``: entry t is the loss of w before step t
  (so column 0 is the loss of the random initial mask). An image stopped early has its final loss at column
  ``iterations_run`` and NaN after it.
* ``flat`` bool (N,): the mask's range is within float noise (:data:`binsight._utils.FLAT_TOLERANCE` of the
  mask's [0, 1] span: every pixel hidden, or every pixel kept), so it ranks no pixel; a
  :class:`~binsight._utils.BinsightWarning` says when any mask is flat.
* ``preset``: the name of the preset used (str).
* ``start_correlation`` float64 (N,): the final mask's correlation with its start mask (0 for a flat mask).
* ``near_start`` bool (N,): ``start_correlation > NEAR_START``: the mask has not left its random start; a
  study marks results resting on such masks.

``show_progress=True`` draws a progress bar of the optimisation steps (on stderr, updated every
:data:`_PROGRESS_EVERY` steps of each group of ``batch_size`` images); it changes no result.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tqdm.auto import tqdm

from binsight._utils import (
    SUBSTRATES,
    BinsightWarning,
    batch_slices,
    call_model,
    check_count,
    flat_maps,
    derived_seed,
    image_generator,
    make_substrate,
    model_digest,
)
from binsight.explain import fast as fastpath
from binsight.explain.base import Attribution, Explainer, ExplainerError, pixel_correlation
from binsight.explain.registry import register_explainer

INIT_BOUND = 10.0  # B: w ~ Uniform(-B, B); the sparsity term pulls w towards -B
LEARNING_RATE = 0.03
RMS_DECAY = 0.9
RMS_EPSILON = 1e-10
ITERATIONS = 2000  # both reference demos
IMAGENET_MIN_SIDE = 128  # min(H, W) at or above this selects the "imagenet" preset
_STOP_CHECK_EVERY = 10  # early stopping: how often (iterations) stopped images leave the batch (one sync each)
_PROGRESS_EVERY = 50  # show_progress: steps between two updates of the bar
NEAR_START = 0.3
"""A mask whose correlation with its random start mask is above this has not left the start."""


@dataclass(frozen=True)
class Preset:
    """Loss weights, temperature T and Laplacian kernel size of one reference setting."""

    l_pred: float
    l_sparse: float
    l_smooth: float
    temperature: float
    kernel_size: int


PRESETS: dict[str, Preset] = {
    "cifar": Preset(l_pred=0.4, l_sparse=0.35, l_smooth=0.15, temperature=1.0, kernel_size=3),
    "imagenet": Preset(l_pred=0.4, l_sparse=0.35, l_smooth=0.03, temperature=0.3, kernel_size=5),
}


class NeuroMaskError(ExplainerError):
    """Bad NeuroMask parameters; the message says which and what to use."""


def preset_for_size(height: int, width: int) -> str:
    """``"imagenet"`` for inputs with min(H, W) >= 128, else ``"cifar"``."""
    return "imagenet" if min(height, width) >= IMAGENET_MIN_SIDE else "cifar"


def laplacian_kernel(size: int, dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
    """The reference's high-pass kernel as a conv2d weight (1, 1, k, k): -1 everywhere, k*k - 1 in the centre.

    3x3 -> centre 8, 5x5 -> centre 24; its entries sum to 0.
    """
    kernel = -torch.ones(1, 1, size, size, dtype=dtype, device=device)
    kernel[0, 0, size // 2, size // 2] = size * size - 1
    return kernel


def box_sum(w: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of every size x size window ("valid"): (N, 1, h, w) -> (N, 1, h - size + 1, w - size + 1).

    Separable sums of shifted slices; on CPU several times faster than a one-channel conv2d.
    """
    height, width = w.shape[2] - size + 1, w.shape[3] - size + 1
    rows = w[:, :, :, :width].clone()
    for j in range(1, size):
        rows += w[:, :, :, j:j + width]
    total = rows[:, :, :height].clone()
    for i in range(1, size):
        total += rows[:, :, i:i + height]
    return total


def laplacian_response(w: torch.Tensor, size: int) -> torch.Tensor:
    """K * w with no padding, K = :func:`laplacian_kernel` (size): (N, 1, h, w) -> (N, 1, h - size + 1, ...).

    Since K = size^2 * delta_centre - ones, K * w = size^2 * w(centre of each window) - box_sum(w).
    Equals ``F.conv2d(w, laplacian_kernel(size))`` (tested).
    """
    c = size // 2
    centre = w[:, :, c:w.shape[2] - c, c:w.shape[3] - c]
    return box_sum(w, size).neg_().add_(centre, alpha=size * size)


def laplacian_transpose(response: torch.Tensor, size: int) -> torch.Tensor:
    """K^T r, the adjoint of :func:`laplacian_response`: (N, 1, h', w') -> (N, 1, h' + size - 1, w' + size - 1).

    Equals ``F.conv_transpose2d(r, laplacian_kernel(size))`` (K is symmetric: a full-padded correlation).
    """
    c = size // 2
    padded = F.pad(response, (size - 1,) * 4)
    return box_sum(padded, size).neg_().add_(F.pad(response, (c,) * 4), alpha=size * size)


def regulariser_terms(
    w: torch.Tensor, kernel_size: int, l_sparse: float, l_smooth: float, bound: float = INIT_BOUND
) -> tuple[torch.Tensor, torch.Tensor]:
    """Value (N,) and gradient (N, 1, h, w) of l_sparse * mean|w + B| + l_smooth * mean((K * w)^2), in closed form.

    d/dw mean|w + B|     = sign(w + B) / (h * w)            (0 at w = -B, as TF's and PyTorch's |.|)
    d/dw mean((K * w)^2) = 2 K^T(K * w) / (valid positions)
    """
    response = laplacian_response(w, kernel_size)
    shifted = w + bound
    value = l_sparse * shifted.abs().mean(dim=(1, 2, 3)) + l_smooth * response.square().mean(dim=(1, 2, 3))
    grad = laplacian_transpose(response, kernel_size).mul_(2.0 * l_smooth / response[0].numel())
    grad.add_(shifted.sign_(), alpha=l_sparse / w[0].numel())
    return value, grad


def rmsprop_step_(w: torch.Tensor, grad: torch.Tensor, mean_square: torch.Tensor, lr: float = LEARNING_RATE,
                  rho: float = RMS_DECAY, eps: float = RMS_EPSILON) -> None:
    """One TF1 RMSProp step (momentum 0), in place on ``w`` and ``mean_square``, elementwise.

    TensorFlow's ApplyRMSProp kernel (tensorflow/core/kernels/training_ops.cc; documented in
    tf.raw_ops.ApplyRMSProp):
        ms  <- ms + (grad^2 - ms) * (1 - rho)            # = rho * ms + (1 - rho) * grad^2
        mom <- momentum * mom + lr * grad / sqrt(ms + epsilon)   # epsilon INSIDE the square root
        var <- var - mom
    and tf.compat.v1.train.RMSPropOptimizer creates ms with ones_initializer (the caller starts ``mean_square``
    at ones). With momentum 0, mom is just the step.
    """
    mean_square.add_((grad * grad - mean_square).mul_(1.0 - rho))
    w.addcdiv_(grad, (mean_square + eps).sqrt_(), value=-lr)


def initial_w(shape: tuple[int, int], indices: range | list[int], seed: int,
              dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
    """w ~ Uniform(-B, B), (len(indices), 1, h, w); row j drawn from a generator seeded by (seed, indices[j])."""
    rows = [torch.rand((1, 1, *shape), generator=image_generator(seed, index), dtype=torch.float64) for index in indices]
    w = (torch.cat(rows) * 2.0 - 1.0) * INIT_BOUND
    return w.to(dtype=dtype, device=device)


def start_seed(seed: int, model: nn.Module | None, start: int = 0) -> int:
    """The seed of the initial w of ``model``'s masks: ``seed`` mixed with the digest of the model's weights
    (:func:`binsight._utils.model_digest`); ``model=None``: ``seed`` itself (the start shared by every model).
    ``start`` k >= 1: the k-th other draw of the same model, ``derived_seed(that seed, k)``; 0 (the default
    stream) leaves it as it is."""
    first = seed if model is None else derived_seed(seed, model_digest(model))
    return first if start == 0 else derived_seed(first, start)


def start_correlation(masks: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """Pearson correlation over pixels of each mask with its start mask: float64 (N,) from (N, 1, H, W) each.

    1: the mask is (an affine copy of) its start; near 0: no trace of it. A flat mask gives 0: it holds nothing
    of the (random, never flat) start (:func:`~binsight.explain.base.pixel_correlation`)."""
    return pixel_correlation(masks, start)


@dataclass
class _Group:
    """One optimisation group: the constants of the problem for n images (tensors on the inputs' device)."""

    substrate: torch.Tensor  # (n, C, H, W)
    difference: torch.Tensor  # inputs - substrate, (n, C, H, W)
    targets: torch.Tensor  # int64 (n,)

    def select(self, keep: torch.Tensor) -> "_Group":
        return _Group(self.substrate[keep], self.difference[keep], self.targets[keep])


@register_explainer
class NeuroMask(Explainer):
    """NeuroMask saliency (Alzantot et al. 2019): the learned mask M (N, 1, H, W) in [0, 1].

    Args:
        model: any classifier mapping (N, C, H, W) pixels to logits (N, K).
        preset: ``"cifar"``, ``"imagenet"`` or None (chosen by input size, see the module docstring).
        iterations: RMSProp steps (reference: 2000).
        seed: seeds each image's initial w together with the image's index in the call and the model's
            weights (:func:`start_seed`).
        shared_start: the initial w depends on ``seed`` and the image index only, the same for every model.
        start: which of the model's starting draws (0: the default one; k >= 1: the k-th other, independent
            draw, :func:`start_seed`), for a seed check of the same model from two starts.
        mask_size: None (full resolution, reference) or (h, w) / int for a low-resolution w, upsampled.
        substrate: ``"black"`` (reference), ``"blur"`` or ``"mean"``.
        blur_sigma: Gaussian sigma in pixels for the blur substrate.
        early_stopping: stop each image when its loss stops improving (see ``patience``, ``tolerance``).
        patience: iterations without a relative improvement of ``tolerance`` before an image stops.
        tolerance: relative improvement of the best loss that counts as progress.
        return_history: put each image's loss at every iteration in the extras.
        show_progress: a progress bar of the optimisation steps on stderr (changes no result).
        surrogate, batch_size: as in :class:`Explainer`; ``batch_size`` bounds the images optimised together.
        fast: False (eager), ``"graph"`` or ``"compile"`` (see the module docstring).
        precision: ``"fp32"`` or ``"bf16"`` (CUDA only; elsewhere ignored with a warning).
    """

    name = "neuromask"
    seeded = True

    def __init__(
        self,
        model: nn.Module,
        *,
        preset: str | None = None,
        iterations: int = ITERATIONS,
        seed: int = 0,
        shared_start: bool = False,
        start: int = 0,
        mask_size: int | tuple[int, int] | None = None,
        substrate: str = "black",
        blur_sigma: float = 5.0,
        early_stopping: bool = False,
        patience: int = 50,
        tolerance: float = 1e-2,
        return_history: bool = True,
        show_progress: bool = False,
        surrogate: str | None = None,
        batch_size: int | None = None,
        fast: str | bool = False,
        precision: str = "fp32",
    ):
        super().__init__(model, surrogate=surrogate, batch_size=batch_size)
        self.fast = fastpath.check_fast(fast, error=NeuroMaskError)
        self.precision = fastpath.check_precision(precision, error=NeuroMaskError)
        self._runner = fastpath.StepRunner(model, self._step, self.fast, inplace=(0, 1))
        self._bf16 = False
        self._step_setting: tuple[Preset, tuple[int, int]] | None = None
        if preset is not None and preset not in PRESETS:
            raise NeuroMaskError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)} or None (by input size)")
        check_count(iterations, "iterations", least=1, error=NeuroMaskError)
        check_count(seed, "seed", least=0, error=NeuroMaskError)
        check_count(start, "start", least=0, error=NeuroMaskError, note=" (0: the default starting draw)")
        if substrate not in SUBSTRATES:
            raise NeuroMaskError(f"unknown substrate {substrate!r}; use one of {', '.join(SUBSTRATES)}")
        if not isinstance(blur_sigma, (int, float)) or not blur_sigma > 0:
            raise NeuroMaskError(f"blur_sigma must be > 0 pixels, got {blur_sigma!r}")
        check_count(patience, "patience", least=1, error=NeuroMaskError)
        if not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
            raise NeuroMaskError(f"tolerance is a relative improvement in [0, 1), got {tolerance!r}")
        self.preset = preset
        self.iterations = iterations
        self.seed = seed
        self.shared_start = bool(shared_start)
        self.start = start
        self.mask_size = _parse_mask_size(mask_size)
        self.substrate = substrate
        self.blur_sigma = float(blur_sigma)
        self.early_stopping = bool(early_stopping)
        self.patience = patience
        self.tolerance = float(tolerance)
        self.return_history = bool(return_history)
        self.show_progress = bool(show_progress)
        self._bar: Any = None

    def params(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "iterations": self.iterations,
            "seed": self.seed,
            "shared_start": self.shared_start,
            "start": self.start,
            "mask_size": list(self.mask_size) if self.mask_size else None,
            "substrate": self.substrate,
            "blur_sigma": self.blur_sigma,
            "early_stopping": self.early_stopping,
            "patience": self.patience,
            "tolerance": self.tolerance,
            "return_history": self.return_history,
            "batch_size": self.batch_size,
            "fast": self.fast,
            "precision": self.precision,
        }

    # -- the explainer hook ------------------------------------------------------------------------
    def _explain(self, inputs: torch.Tensor, wanted: torch.Tensor | None) -> Attribution:
        """The final masks (N, 1, H, W) with the per-image results of the module docstring as extras."""
        targets = self.resolve_targets(inputs, wanted)
        height, width = inputs.shape[2:]
        preset_name = self.preset or preset_for_size(height, width)
        preset = PRESETS[preset_name]
        w_shape = self.mask_size or (height, width)
        if min(w_shape) < preset.kernel_size:
            raise NeuroMaskError(
                f"the mask ({w_shape[0]}x{w_shape[1]}) is smaller than the {preset_name} preset's "
                f"{preset.kernel_size}x{preset.kernel_size} smoothness kernel; use a larger mask_size or input"
            )
        substrate = make_substrate(inputs, self.substrate, blur_sigma=self.blur_sigma, error=NeuroMaskError)
        self._bf16 = fastpath.applies(inputs.device, self.precision)
        self._step_setting = (preset, (height, width))
        results, starts = [], []
        seed = start_seed(self.seed, None if self.shared_start else self.model, self.start)
        groups = batch_slices(inputs.shape[0], self.batch_size)
        with tqdm(total=len(groups) * self.iterations, desc=f"neuromask ({inputs.shape[0]} images)", unit="step",
                  disable=not self.show_progress, leave=False) as self._bar:
            for done, part in enumerate(groups, start=1):
                group = _Group(substrate[part], inputs[part] - substrate[part], targets[part])
                w0 = initial_w(w_shape, range(part.start, part.stop), seed, inputs.dtype, inputs.device)
                starts.append(_mask(w0, preset, (height, width)))
                results.append(self._optimise(group, w0, preset, (height, width)))  # moves w0 in place
                self._bar.update(done * self.iterations - self._bar.n)  # a group that stopped early counts whole
        self._bar = None
        masks, final_loss, keeps, runs, history = (torch.cat(parts) for parts in zip(*results))
        flat = flat_maps(masks, span=1.0)  # the rule of binsight.metrics.baselines.degeneracy, for [0, 1] masks
        if bool(flat.any()):
            warnings.warn("NeuroMask returned flat masks (range within float noise: every pixel hidden or every "
                          "pixel kept), which rank no pixel; extras['flat'] marks them. More iterations, another "
                          "preset or substrate may give a usable mask", BinsightWarning, stacklevel=3)
        correlation = start_correlation(masks, torch.cat(starts))
        near = correlation > NEAR_START
        if bool(near.any()):
            # the same text for every call of one setting, so that a study's many calls warn once
            warnings.warn(f"NeuroMask masks are still near their random start after {self.iterations} iterations "
                          f"(correlation with the start mask above {NEAR_START}): they show the start more than the "
                          f"model; raise iterations (reference: {ITERATIONS}); extras['near_start'] marks them and "
                          "extras['start_correlation'] says how near", BinsightWarning, stacklevel=3)
        extras: dict[str, Any] = dict(final_loss=final_loss, keeps_target=keeps, iterations_run=runs, flat=flat,
                                      preset=preset_name, start_correlation=correlation, near_start=near)
        if self.return_history:
            extras["loss_history"] = history
        return Attribution(masks, targets, extras)

    def _advance(self, step: int) -> None:
        """Move the progress bar on after ``step`` (0-based) of a group, every :data:`_PROGRESS_EVERY` steps."""
        if self._bar is not None and not self._bar.disable and (step + 1) % _PROGRESS_EVERY == 0:
            self._bar.update(_PROGRESS_EVERY)

    # -- the optimisation -----------------------------------------------------------------------------
    def _optimise(self, group: _Group, w: torch.Tensor, preset: Preset,
                  image_size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """Run RMSProp on one group's w (n, 1, h, w); return (masks, final loss, keeps target, steps, history)."""
        n = w.shape[0]
        history = torch.full((n, self.iterations if self.return_history else 0), math.nan, device=w.device)
        if self.early_stopping:
            final_w, runs = self._descend_until_stopped(group, w, preset, image_size, history)
        else:
            final_w = self._descend(group, w, preset, image_size, history)
            runs = torch.full((n,), self.iterations, dtype=torch.long, device=w.device)
        with torch.no_grad():
            logits, masks = self._forward(group, final_w, preset, image_size)
            ce = F.cross_entropy(logits, group.targets, reduction="none")
            regular, _ = regulariser_terms(final_w, preset.kernel_size, preset.l_sparse, preset.l_smooth)
        return masks, preset.l_pred * ce + regular, logits.argmax(dim=1) == group.targets, runs, history

    def _descend(self, group: _Group, w: torch.Tensor, preset: Preset, image_size: tuple[int, int],
                 history: torch.Tensor) -> torch.Tensor:
        """The faithful loop: ``iterations`` RMSProp steps on w (n, 1, h, w), in place; fills ``history``."""
        mean_square = torch.ones_like(w)
        for step in range(self.iterations):
            loss = self._runner(w, mean_square, group.substrate, group.difference, group.targets)
            if self.return_history:
                history[:, step] = loss
            self._advance(step)
        return w

    def _step(self, model: nn.Module, w: torch.Tensor, mean_square: torch.Tensor, substrate: torch.Tensor,
              difference: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One step of the faithful loop, in place on w and mean_square (n, 1, h, w): the loss (n,) of w
        before the step. Free of host syncs, so that it can be captured as a CUDA graph."""
        preset, image_size = self._step_setting
        loss, grad = self._loss_and_grad(_Group(substrate, difference, targets), w, preset, image_size, model)
        rmsprop_step_(w, grad, mean_square)
        return loss

    def _descend_until_stopped(self, group: _Group, w: torch.Tensor, preset: Preset, image_size: tuple[int, int],
                               history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`_descend`, but each image stops (its w frozen) once its loss stops improving.

        Stopped images leave the batch every ``_STOP_CHECK_EVERY`` iterations (the only host syncs); in between,
        their update is zeroed. Returns the final w (n, 1, h, w) and the steps applied to each image (n,).
        """
        n, device = w.shape[0], w.device
        runs = torch.zeros(n, dtype=torch.long, device=device)
        final_w = w.clone()
        idx = torch.arange(n, device=device)  # the group's images still in the batch
        mean_square = torch.ones_like(w)
        best = torch.full((n,), math.inf, dtype=w.dtype, device=device)
        since_best = torch.zeros(n, dtype=torch.long, device=device)
        for step in range(self.iterations):
            if step % _STOP_CHECK_EVERY == 0 and step > 0:
                keep = runs[idx] == step  # images that took every step so far
                if not bool(keep.all()):
                    final_w[idx] = w
                    idx, w, mean_square = idx[keep], w[keep], mean_square[keep]
                    best, since_best, group = best[keep], since_best[keep], group.select(keep)
                    if idx.numel() == 0:
                        break
            loss, grad = self._loss_and_grad(group, w, preset, image_size)
            was_active = runs[idx] == step  # the stopping step's loss (that of the final w) is still recorded
            active = self._still_improving(loss, best, since_best)
            grad.mul_(active.view(-1, 1, 1, 1))  # a stopped image's w stays where it is
            runs[idx] += active
            if self.return_history:
                history[idx, step] = torch.where(was_active, loss, math.nan).float()
            rmsprop_step_(w, grad, mean_square)
            self._advance(step)
        final_w[idx] = w
        return final_w, runs

    def _still_improving(self, loss: torch.Tensor, best: torch.Tensor, since_best: torch.Tensor) -> torch.Tensor:
        """Update each image's best loss and iterations since it improved, in place; True (n,) where still going."""
        improved = loss < best * (1.0 - self.tolerance)
        best.copy_(torch.where(improved, loss, best))
        since_best.copy_(torch.where(improved, 0, since_best + 1))
        return since_best < self.patience

    def _forward(self, group: _Group, w: torch.Tensor, preset: Preset, image_size: tuple[int, int],
                 model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (n, K) of the masked images and the masks (n, 1, H, W) for w (n, 1, h, w)."""
        mask = _mask(w, preset, image_size)
        masked = fastpath.model_input(torch.addcmul(group.substrate, group.difference, mask), self._bf16)
        with fastpath.autocast(self._bf16):
            logits = call_model(model or self.model, masked, error=NeuroMaskError)
        return logits.float(), mask

    def _loss_and_grad(self, group: _Group, w: torch.Tensor, preset: Preset, image_size: tuple[int, int],
                       model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image loss (n,) and its gradient with respect to w (n, 1, h, w).

        The prediction term goes through autograd (model backward); the sparsity and smoothness terms use their
        closed-form gradients. The prediction losses are summed over images, so each image gets its own gradient.
        """
        w_leaf = w.detach().requires_grad_(True)
        with torch.enable_grad():
            logits, _ = self._forward(group, w_leaf, preset, image_size, model)
            if not logits.requires_grad:
                raise NeuroMaskError("the model's logits do not depend differentiably on its input (no gradient "
                                     "reaches the mask); NeuroMask needs a model that autograd can differentiate")
            ce = F.cross_entropy(logits, group.targets, reduction="none")
            (grad,) = torch.autograd.grad(ce.sum() * preset.l_pred, w_leaf)
        with torch.no_grad():
            regular, regular_grad = regulariser_terms(w, preset.kernel_size, preset.l_sparse, preset.l_smooth)
            return preset.l_pred * ce.detach() + regular, grad.add_(regular_grad)


def _mask(w: torch.Tensor, preset: Preset, image_size: tuple[int, int]) -> torch.Tensor:
    """M = sigmoid(w / T), w (n, 1, h, w) upsampled bilinearly to ``image_size`` first: (n, 1, H, W)."""
    if w.shape[2:] != image_size:
        w = F.interpolate(w, size=image_size, mode="bilinear", align_corners=False)
    return torch.sigmoid(w / preset.temperature)


def _parse_mask_size(mask_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if mask_size is None:
        return None
    size = (mask_size, mask_size) if isinstance(mask_size, int) else tuple(mask_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise NeuroMaskError(f"mask_size must be None, a positive int or (height, width), got {mask_size!r}")
    return size  # type: ignore[return-value]
