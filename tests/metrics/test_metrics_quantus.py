"""Cross-checks of binsight.metrics against Quantus 0.6 on the same inputs (tiny, Quantus is slow).

Where the conventions differ the inputs are chosen so that the definitions coincide, and the comment says
why; the tolerances are those of float32 models and of Quantus' own numerical guards.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import quantus
import torch
from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation
from torch import nn

from binsight.metrics import deletion_insertion, gini, noisy_linear_imputation, pointing_game
from binsight.metrics import randomisation_test, sanity

pytestmark = pytest.mark.filterwarnings("ignore")


def images_and_maps(n: int = 3, size: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, size, size, generator=g)
    # Quantus' "black" is each image's minimum, ours is 0: give every image a 0 pixel so they agree.
    images[:, :, 0, 0] = 0.0
    maps = torch.rand(n, 1, size, size, generator=g)  # continuous values: no ties, so Quantus' unstable
    return images, maps  # argsort orders pixels as our stable sort does


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(192, 16), nn.Tanh(), nn.Linear(16, 3)
    ).eval()  # Quantus refuses a model in training mode


def test_deletion_curve_matches_pixel_flipping():
    images, maps = images_and_maps()
    model = tiny_model()
    targets = np.array([0, 1, 2])
    metric = quantus.PixelFlipping(features_in_step=4, perturb_baseline="black", normalise=False, abs=False,
                                   disable_warnings=True)
    theirs = np.asarray(metric(model=model, x_batch=images.numpy(), y_batch=targets, a_batch=maps.numpy(),
                               device="cpu", softmax=True))
    ours = deletion_insertion(model, images, maps, targets, steps=64 // 4, substrate="black")
    # Quantus' curve starts after the first step (no unperturbed point): compare from our step 1 on.
    # Residual: Quantus takes the softmax in float32, we in float64.
    np.testing.assert_allclose(ours.deletion[:, 1:], theirs, atol=1e-6)


def test_pointing_game_matches_quantus_when_the_maximum_is_unique():
    images, maps = images_and_maps()
    masks = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5)) > 0.6
    theirs = quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=images.numpy(), y_batch=np.zeros(3, int), a_batch=maps.numpy(),
        s_batch=masks.numpy().astype(float),
    )
    # Quantus counts a hit if any maximal pixel is on the object, we split ties; with a unique maximum
    # both are the plain pointing game.
    np.testing.assert_array_equal(pointing_game(maps, masks), np.asarray(theirs, dtype=float))
    assert 0 < np.sum(theirs) < 3  # the case has both hits and misses


def test_gini_matches_sparseness():
    images, maps = images_and_maps()
    maps[1] = 0.0
    maps[1, 0, 2, 3] = 1.0  # one-hot: the sparsest map
    theirs = quantus.Sparseness(disable_warnings=True)(
        model=None, x_batch=images.numpy(), y_batch=np.zeros(3, int), a_batch=maps.numpy()
    )
    # Quantus divides the map by its max and adds 1e-7 to every pixel (to avoid 0 / 0): the Gini index is
    # scale invariant, and the offset moves it by ~1e-7 * n / sum|m| (< 1e-5 here).
    np.testing.assert_allclose(gini(maps), theirs, atol=1e-5)


def gradient_map(model, images, targets):
    x = images.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x).gather(1, targets.view(-1, 1)).sum(), x)
    return grad.abs().amax(1, keepdim=True)


def quantus_gradient(model, inputs, targets, **kwargs):
    return gradient_map(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()


@pytest.mark.parametrize("mode, order", [("cascading", "top_down"), ("independent", "independent")])
def test_randomisation_matches_mprt(monkeypatch, mode, order):
    images, _ = images_and_maps()
    model = tiny_model()
    targets = np.array([0, 1, 2])
    metric = quantus.MPRT(layer_order=order, seed=42, normalise=False, abs=False, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = metric(model=model, x_batch=images.numpy(), y_batch=targets,
                        a_batch=quantus_gradient(model, images.numpy(), targets),
                        explain_func=quantus_gradient, device="cpu")
    # Quantus seeds torch with seed + 1 before re-initialising every layer; make ours do the same here
    # (our own per-layer seeds differ on purpose, see binsight.metrics.sanity).
    monkeypatch.setattr(sanity, "layer_seed", lambda seed, index: 43)
    ours = randomisation_test(model, images, gradient_map, targets=targets, mode=mode, measures=("spearman",))
    assert ours.layers == [name for name in theirs if name != "original"]
    for row, name in enumerate(ours.layers):
        np.testing.assert_allclose(ours.similarity["spearman"][row], theirs[name], atol=1e-10)


def test_linear_imputation_matches_quantus():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 7, 9, generator=g)
    removed = torch.rand(2, 1, 7, 9, generator=g) < 0.4  # holes at the border and inside
    ours = noisy_linear_imputation(images, removed, noise=0.0)
    for i in range(2):
        indices = np.flatnonzero(removed[i, 0].numpy())
        theirs = quantus_imputation(images[i].double().numpy(), indices, noise=0.0)
        np.testing.assert_allclose(ours[i].double().numpy(), theirs, atol=1e-6)
