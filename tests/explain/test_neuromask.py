"""NeuroMask: the reference definition (loss, kernels, RMSProp, presets), batching, options, a trained model."""

from __future__ import annotations

import copy
import json
import math
import warnings

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from torch import nn

from binsight._utils import BinsightWarning
from binsight.data import DatasetError, load_dataset
from binsight.explain import get_explainer
from binsight.explain.neuromask import (
    NEAR_START,
    NeuroMask,
    NeuroMaskError,
    initial_w,
    laplacian_kernel,
    laplacian_response,
    laplacian_transpose,
    preset_for_size,
    regulariser_terms,
    rmsprop_step_,
    start_correlation,
    start_seed,
)
from binsight.models import build_model


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/explain/conftest.py


def tiny_cnn(in_channels: int = 1, classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, classes),
    ).eval()


def reference_loss(model, x, w, target, weights, temperature, kernel_size, substrate=None, bound=10.0):
    """The reference loss for ONE image, written out plainly (autograd-friendly): x (1, C, H, W), w (1, 1, h, w)."""
    l_pred, l_sparse, l_smooth = weights
    up = w if w.shape[2:] == x.shape[2:] else F.interpolate(w, size=x.shape[2:], mode="bilinear", align_corners=False)
    mask = torch.sigmoid(up / temperature)
    s = torch.zeros_like(x) if substrate is None else substrate
    logits = model(s + (x - s) * mask)
    kernel = -torch.ones(1, 1, kernel_size, kernel_size, dtype=w.dtype)
    kernel[0, 0, kernel_size // 2, kernel_size // 2] = kernel_size**2 - 1
    return (l_pred * F.cross_entropy(logits, torch.tensor([target]))
            + l_sparse * (w + bound).abs().mean()
            + l_smooth * F.conv2d(w, kernel).pow(2).mean())


# -- the reference definition ---------------------------------------------------------------------------

def test_first_loss_imagenet_preset_at_299():
    """First loss = 600 (smoothness) + 3.5 (sparsity) + 0.4 * CE, for random w ~ U(-10, 10) at 299x299.

    The model predicts all-zero logits, so CE = log(10) exactly and the expectation is 604.42.
    Tolerance: the smoothness term is 0.03 * the mean of (K * w)^2 over 295^2 correlated positions. Its exact
    std, from the covariances Cov(Z_p^2, Z_q^2) = 2 (sigma^2 R(p - q))^2 + kappa4 sum k_i^2 k_(i+p-q)^2 of the
    Laplacian's autocorrelation R (sigma^2 = 100/3, kappa4 = -1.2 sigma^4), is 67.2 (Monte Carlo with 400
    draws: 66.0), so 2.0 in loss units; the sparsity term's std is 0.007. Each image: 5 sigma = 10; the mean of
    4 images: 5 sigma = 5.
    """
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    nn.init.zeros_(model[2].weight), nn.init.zeros_(model[2].bias)
    x = torch.rand(4, 3, 299, 299, generator=torch.Generator().manual_seed(1))
    ex = NeuroMask(model, iterations=1).explain(x)
    assert ex.extras["preset"] == "imagenet"
    first = ex.extras["loss_history"][:, 0].double()
    expected = 600 + 3.5 + 0.4 * math.log(10)
    assert (first - expected).abs().max() < 10, first
    assert abs(first.mean() - expected) < 5, first


def test_presets_by_input_size():
    assert preset_for_size(28, 28) == preset_for_size(32, 32) == preset_for_size(127, 500) == "cifar"
    assert preset_for_size(128, 128) == preset_for_size(224, 224) == preset_for_size(299, 299) == "imagenet"


def test_laplacian_kernels_match_the_reference():
    k3, k5 = laplacian_kernel(3)[0, 0], laplacian_kernel(5)[0, 0]
    assert k3[1, 1] == 8 and (k3.sum() == 0) and (k3 == -1).sum() == 8
    assert k5[2, 2] == 24 and (k5.sum() == 0) and (k5 == -1).sum() == 24
    assert k5.square().sum() == 600


def sparsity_term(w: torch.Tensor, bound: float = 10.0) -> torch.Tensor:
    """mean |w + B| per image, written out plainly: w (N, 1, h, w) -> (N,)."""
    return (w + bound).abs().mean(dim=(1, 2, 3))


def smoothness_term(w: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """mean ((K * w)^2) per image over the valid positions, with the conv2d kernel: w (N, 1, h, w) -> (N,)."""
    return F.conv2d(w, laplacian_kernel(kernel_size, w.dtype)).square().mean(dim=(1, 2, 3))


def test_sparsity_and_smoothness_on_a_hand_made_w():
    """w = -10 with a bump of 2 at (1, 1) of a 4x4 grid: the 3x3 valid response is 2x2: 8a, -a, -a, -a."""
    w = torch.full((1, 1, 4, 4), -10.0)
    w[0, 0, 1, 1] += 2.0
    assert sparsity_term(w).item() == pytest.approx(2.0 / 16)
    assert smoothness_term(w, 3).item() == pytest.approx((16**2 + 3 * 2**2) / 4)
    value, _ = regulariser_terms(w, 3, l_sparse=0.35, l_smooth=0.15)
    assert value.item() == pytest.approx(0.35 * 2 / 16 + 0.15 * 67)


@pytest.mark.parametrize("size", [3, 5])
def test_laplacian_by_box_sums_equals_the_conv2d_kernel(size):
    w = torch.randn(3, 1, 9, 11, dtype=torch.float64)
    kernel = laplacian_kernel(size, torch.float64)
    response = laplacian_response(w, size)
    torch.testing.assert_close(response, F.conv2d(w, kernel))
    torch.testing.assert_close(laplacian_transpose(response, size), F.conv_transpose2d(response, kernel))


@pytest.mark.parametrize("size", [3, 5])
def test_closed_form_regulariser_gradient_matches_autograd(size):
    w = (torch.rand(3, 1, 9, 11, dtype=torch.float64) * 2 - 1) * 10
    kernel = laplacian_kernel(size, torch.float64)
    wg = w.clone().requires_grad_(True)
    (0.35 * (wg + 10).abs().mean((1, 2, 3)) + 0.03 * F.conv2d(wg, kernel).square().mean((1, 2, 3))).sum().backward()
    value, grad = regulariser_terms(w, size, l_sparse=0.35, l_smooth=0.03)
    torch.testing.assert_close(grad, wg.grad)
    torch.testing.assert_close(value, 0.35 * sparsity_term(w) + 0.03 * smoothness_term(w, size))


def test_rmsprop_first_steps_by_hand():
    """Mean square starts at ONES (TF1): step 1 is lr * g / sqrt(0.9 + 0.1 g^2 + eps)."""
    g1 = torch.tensor([0.5, -2.0, 0.0, 1e-3], dtype=torch.float64)
    g2 = torch.tensor([0.5, 1.0, -3.0, 1e-3], dtype=torch.float64)
    w, ms = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    rmsprop_step_(w, g1, ms)
    ms1 = 0.9 + 0.1 * g1**2
    torch.testing.assert_close(ms, ms1)
    torch.testing.assert_close(w, -0.03 * g1 / torch.sqrt(ms1 + 1e-10))
    rmsprop_step_(w, g2, ms)
    ms2 = 0.9 * ms1 + 0.1 * g2**2
    torch.testing.assert_close(w, -0.03 * g1 / torch.sqrt(ms1 + 1e-10) - 0.03 * g2 / torch.sqrt(ms2 + 1e-10))


def test_batched_run_matches_a_plain_one_image_reference():
    """Three steps on three images (float64), against the reference definition written out one image at a time with autograd."""
    model = tiny_cnn(in_channels=3).double()
    x = torch.rand(3, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    targets = [0, 3, 7]
    ex = NeuroMask(model, iterations=3, seed=5).explain(x, targets)
    w0 = initial_w((12, 12), range(3), seed=start_seed(5, model), dtype=torch.float64)
    for i in range(3):
        w, ms = w0[i:i + 1].clone(), torch.ones_like(w0[i:i + 1])
        for _ in range(3):
            wg = w.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(reference_loss(model, x[i:i + 1], wg, targets[i], (0.4, 0.35, 0.15), 1.0, 3), wg)
            ms = 0.9 * ms + 0.1 * g**2
            w = w - 0.03 * g / torch.sqrt(ms + 1e-10)
        torch.testing.assert_close(ex.maps[i:i + 1].double(), torch.sigmoid(w).float().double(), atol=1e-6, rtol=0)
        final = reference_loss(model, x[i:i + 1], w, targets[i], (0.4, 0.35, 0.15), 1.0, 3)
        assert ex.extras["final_loss"][i].item() == pytest.approx(final.item(), rel=1e-9)


# -- batching -----------------------------------------------------------------------------------------------

def test_each_image_is_independent_of_its_batch():
    """64 images optimised together (loss summed) give each image the same mask as optimised alone."""
    model = tiny_cnn()
    x = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    together = NeuroMask(model, iterations=30, seed=7).explain(x)
    alone = NeuroMask(model, iterations=30, seed=7, batch_size=1).explain(x)
    torch.testing.assert_close(together.maps, alone.maps, atol=1e-5, rtol=0)
    torch.testing.assert_close(together.extras["loss_history"], alone.extras["loss_history"], atol=1e-3, rtol=1e-5)
    first = NeuroMask(model, iterations=30, seed=7).explain(x[:1])
    torch.testing.assert_close(first.maps, together.maps[:1], atol=1e-5, rtol=0)
    other_seed = NeuroMask(model, iterations=30, seed=8).explain(x[:1])
    assert (other_seed.maps - first.maps).abs().max() > 0.1


def test_model_is_left_untouched():
    model = tiny_cnn().train()
    model[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    NeuroMask(model, iterations=5).explain(torch.rand(4, 1, 16, 16))
    assert model.training and all(m.training for m in model.modules())
    assert not model[0].weight.requires_grad and model[5].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_class_zero_is_a_real_target():
    """The reference treats target 0 as 'no target' (a truthiness bug): here it is optimised for."""
    model = tiny_cnn(classes=3)
    with torch.no_grad():
        model[5].bias.copy_(torch.tensor([-2.0, 2.0, 0.0]))  # class 1 predicted, class 0 unlikely
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    explainer = NeuroMask(model, iterations=150)
    for_zero = explainer.explain(x, target=0)
    for_predicted = explainer.explain(x)
    assert for_zero.targets.tolist() == [0] * 6 and for_predicted.targets.tolist() == [1] * 6
    with torch.no_grad():
        p_zero = model(x * for_zero.maps).softmax(1)[:, 0]
        p_pred = model(x * for_predicted.maps).softmax(1)[:, 0]
        keeps = model(x * for_zero.maps).argmax(1) == 0
    assert (p_zero > p_pred).all()
    assert torch.equal(for_zero.extras["keeps_target"], keeps)


# -- options ------------------------------------------------------------------------------------------------

def test_early_stopping_stops_freezes_and_reports():
    model = tiny_cnn()
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    ex = NeuroMask(model, iterations=400, early_stopping=True, patience=20, tolerance=0.05).explain(x)
    runs, history = ex.extras["iterations_run"], ex.extras["loss_history"]
    assert (runs < 400).all() and (runs > 100).all() and len(set(runs.tolist())) > 1
    for i, n in enumerate(runs.tolist()):
        assert torch.isfinite(history[i, : n + 1]).all() and torch.isnan(history[i, n + 1:]).all()
        assert history[i, n].item() == pytest.approx(ex.extras["final_loss"][i].item(), rel=1e-5)
    never = NeuroMask(model, iterations=40, early_stopping=True, patience=10**6).explain(x)
    plain = NeuroMask(model, iterations=40).explain(x)
    torch.testing.assert_close(never.maps, plain.maps, atol=1e-6, rtol=0)
    assert (never.extras["iterations_run"] == 40).all()


@pytest.mark.parametrize("substrate", ["black", "blur", "mean"])
def test_first_loss_with_low_res_mask_and_substrates(substrate):
    """A 7x7 w upsampled to 28x28; sparsity and the 3x3 smoothness kernel act on the 7x7 w."""
    model = tiny_cnn(in_channels=3)
    x = torch.rand(3, 3, 28, 28, generator=torch.Generator().manual_seed(6))
    ex = NeuroMask(model, iterations=1, mask_size=7, substrate=substrate, blur_sigma=2.0, seed=3).explain(x)
    assert ex.maps.shape == (3, 1, 28, 28)
    w0 = initial_w((7, 7), range(3), seed=start_seed(3, model))
    s = {"black": torch.zeros_like(x), "mean": x.mean((2, 3), keepdim=True).expand_as(x),
         "blur": torch.from_numpy(scipy.ndimage.gaussian_filter(x.double().numpy(), (0, 0, 2, 2))).float()}[substrate]
    for i in range(3):
        expected = reference_loss(model, x[i:i + 1], w0[i:i + 1], int(ex.targets[i]), (0.4, 0.35, 0.15), 1.0, 3, s[i:i + 1])
        assert ex.extras["loss_history"][i, 0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_return_history_off():
    ex = NeuroMask(tiny_cnn(), iterations=3, return_history=False).explain(torch.rand(2, 1, 8, 8))
    assert "loss_history" not in ex.extras and set(ex.extras) >= {"final_loss", "keeps_target", "iterations_run"}


def test_a_model_blind_to_its_input_gets_flat_masks_marked_and_warned():
    """Known answer: logits that ignore the input leave only the sparsity term, which drives every w to -B
    (mask sigmoid(-10) everywhere): a flat mask, marked in the extras and warned about, never silent."""
    blind = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    nn.init.zeros_(blind[1].weight)
    with pytest.warns(UserWarning, match="flat masks"):
        ex = NeuroMask(blind.eval(), iterations=1500).explain(torch.rand(2, 1, 8, 8), 0)
    assert ex.extras["flat"].tolist() == [True, True]
    assert float(ex.maps.max()) < 1e-3
    seeing = NeuroMask(tiny_cnn(), iterations=5).explain(torch.rand(2, 1, 8, 8), 0)
    assert not seeing.extras["flat"].any()


def test_progress_bar_counts_every_step_and_changes_no_mask(monkeypatch, capsys):
    import binsight.explain.neuromask as module

    closed = []

    class Recorded(module.tqdm):
        def close(self):
            closed.append((getattr(self, "desc", None), self.n, self.total, self.disable))  # a disabled bar has no desc
            super().close()

    monkeypatch.setattr(module, "tqdm", Recorded)
    x = torch.rand(3, 1, 8, 8)
    quiet = NeuroMask(tiny_cnn(), iterations=120, batch_size=2).explain(x, 1)
    shown = NeuroMask(tiny_cnn(), iterations=120, batch_size=2, show_progress=True).explain(x, 1)
    assert torch.equal(quiet.maps, shown.maps)
    drawn = [c for c in closed if not c[3]]
    assert set(drawn) == {("neuromask (3 images)", 240, 240, False)}  # 2 groups x 120 steps, all counted
    assert len(drawn) < len(closed) and "neuromask" in capsys.readouterr().err  # the default bar is not drawn


def test_registry_params_and_bad_input():
    model = tiny_cnn()
    explainer = get_explainer("neuromask", model, iterations=10, mask_size=(4, 6))
    assert isinstance(explainer, NeuroMask)
    json.dumps(explainer.params())
    for bad in [dict(preset="mnist"), dict(iterations=0), dict(substrate="white"), dict(mask_size=(3,)),
                dict(seed=-1), dict(patience=0), dict(tolerance=1.5), dict(blur_sigma=0), dict(blur_sigma="5")]:
        with pytest.raises(NeuroMaskError):
            NeuroMask(model, **bad)
    with pytest.raises(NeuroMaskError, match="smaller than"):
        NeuroMask(model, mask_size=2).explain(torch.rand(1, 1, 8, 8))


def test_binarized_model_through_the_surrogate():
    model = build_model("small-cnn", "bnn")
    ex = get_explainer("neuromask", model, iterations=20, surrogate="ste").explain(torch.rand(4, 1, 28, 28))
    assert ex.surrogate == "ste"
    assert torch.isfinite(ex.maps).all() and ex.maps.min() >= 0 and ex.maps.max() <= 1
    history = ex.extras["loss_history"]
    assert (history[:, -1] < history[:, 0]).all()


# -- a trained model ----------------------------------------------------------------------------------------

def test_trained_model_masks_keep_the_class_and_hide_most_of_the_image():
    """A small CNN trained in the test (3 epochs, about 2 s) on the first 2,000 images of Fashion-MNIST's test
    split (a 0.2 s read, against 5 s for the 60,000-image train split), then faithful NeuroMask (cifar preset)
    on 16 other images of that split. 1,000 iterations instead of 2,000 to halve the time: by then the mean loss
    has fallen from 359 to 1.24 (2,000: 0.84), the mean mask is 0.069 (2,000: 0.049) and 16/16 masked images
    keep their class (2,000: 15/16), measured with this seed.
    Most masked images must keep the predicted class, and the mean mask must be well below its initial ~0.5.
    """
    try:
        images = load_dataset("fashion-mnist", "test", download=False)
    except DatasetError as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")
    train_x, train_y, explained = images.images[:2000], images.labels[:2000], images.images[-16:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(3):
        for xb, yb in zip(train_x.split(64), train_y.split(64)):
            optimiser.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            optimiser.step()
    model.eval()
    ex = NeuroMask(model, iterations=1000).explain(explained)
    assert ex.extras["preset"] == "cifar"
    keeps = ex.extras["keeps_target"].float().mean().item()
    mean_mask = ex.maps.mean().item()
    history = ex.extras["loss_history"]
    assert keeps >= 0.75, keeps
    assert mean_mask < 0.25, mean_mask
    assert (history[:, -1] < 0.05 * history[:, 0]).all()


def test_a_model_without_input_gradient_gets_a_clear_error():
    class Detached(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 3) + x.detach().mean()

    with pytest.raises(NeuroMaskError, match="differentiably"):
        NeuroMask(Detached(), iterations=2).explain(torch.rand(2, 1, 8, 8))


# -- the random start: measured, and different for different models ---------------------------------------

def row_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_start_correlation_known_answers():
    g = torch.Generator().manual_seed(0)
    start = torch.rand(3, 1, 12, 12, generator=g)
    other = torch.rand(3, 1, 12, 12, generator=g)
    flat = torch.zeros(3, 1, 12, 12)
    assert torch.allclose(start_correlation(start, start), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(start_correlation(0.5 * start + 0.1, start), torch.ones(3, dtype=torch.float64))
    assert (start_correlation(other, start).abs() < 0.25).all()
    assert torch.equal(start_correlation(flat, start), torch.zeros(3, dtype=torch.float64))  # a flat mask moved
    near = 0.8 * start + 0.2 * other
    assert (start_correlation(near, start) > NEAR_START).all()
    assert not (start_correlation(0.2 * start + 0.8 * other, start) > NEAR_START).any()


def test_20_iterations_leave_the_masks_at_their_random_start_and_warn():
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    with pytest.warns(BinsightWarning, match=r"NeuroMask masks are still near their random start after 20 "
                                             r"iterations.*raise iterations"):
        ex = NeuroMask(tiny_cnn(), iterations=20).explain(x)
    assert ex.extras["near_start"].all() and (ex.extras["start_correlation"] > 0.9).all()


def test_the_default_iterations_leave_the_start_without_a_warning():
    """The default 2,000 iterations (about 2.5 s here): the masks keep no trace of their start."""
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = NeuroMask(tiny_cnn()).explain(x)
    assert not [w for w in caught if "random start" in str(w.message)]
    assert not ex.extras["near_start"].any() and (ex.extras["start_correlation"].abs() < 0.2).all()


def test_different_models_start_from_different_draws_identical_models_from_one():
    x = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    first, second = tiny_cnn(seed=0), tiny_cnn(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BinsightWarning)  # 20 iterations: near the start, on purpose
        a = NeuroMask(first, iterations=20).attribute(x, 0)
        b = NeuroMask(second, iterations=20).attribute(x, 0)
        a_other_seed = NeuroMask(first, iterations=20, seed=1).attribute(x, 0)
        a_copy = NeuroMask(copy.deepcopy(first), iterations=20).attribute(x, 0)
        shared = [NeuroMask(m, iterations=20, shared_start=True).attribute(x, 0) for m in (first, second)]
    between_models = row_correlation(a, b)
    between_starts = row_correlation(a, a_other_seed)
    assert (between_models.abs() < 0.3).all() and (between_starts.abs() < 0.3).all()
    assert torch.equal(a, a_copy)  # identical weights: the same start
    assert (row_correlation(*shared) > 0.9).all()  # shared_start: one draw for every model
